#!/usr/bin/env python3
"""Writes uwsgi-cases.json: uwsgi protocol packets (as nginx's uwsgi_pass
sends them, and broken ones) for conformance.py, which sends each case's
bytes on a fresh connection and records every answer.

A uwsgi packet is a 4-byte header (modifier1, the vars block's size as
16-bit little-endian, modifier2), the vars block (pairs of 16-bit
little-endian length-prefixed key and value) and then the body, whose
length is the CONTENT_LENGTH var.

    python3 uwsgi_cases.py > uwsgi-cases.json
"""

import base64
import json
import struct

ON = {"protocol": "uwsgi"}


def block(pairs):
    out = b""
    for key, value in pairs:
        key = key.encode("latin-1") if isinstance(key, str) else key
        value = value.encode("latin-1") if isinstance(value, str) else value
        out += struct.pack("<H", len(key)) + key + struct.pack("<H", len(value)) + value
    return out


def packet(pairs, body=b"", modifier1=0, modifier2=0, size=None):
    data = block(pairs)
    n = len(data) if size is None else size
    return bytes([modifier1]) + struct.pack("<H", n) + bytes([modifier2]) + data + body


def nginx(method="GET", uri="/", body=b"", extra=(), content_type=""):
    """The vars nginx's stock uwsgi_params sends, in its order."""
    path, _, query = uri.partition("?")
    return [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", content_type),
        ("CONTENT_LENGTH", str(len(body)) if body else ""),
        ("REQUEST_URI", uri),
        ("PATH_INFO", path),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "192.0.2.7"),
        ("REMOTE_PORT", "51234"),
        ("SERVER_PORT", "8080"),
        ("SERVER_NAME", "example.org"),
        ("HTTP_HOST", "example.org:8080"),
        ("HTTP_USER_AGENT", "curl/7.88.1"),
        ("HTTP_ACCEPT", "*/*"),
    ] + list(extra)


def cases():
    c = {}
    c["get_nginx_params"] = packet(nginx(uri="/path/to?x=1&y=%20z"))
    c["get_minimal"] = packet([("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")])
    c["no_vars"] = packet([])
    c["path_only_request_uri"] = packet([("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/only/uri?q=1")])
    c["path_percent_encoded"] = packet(nginx(uri="/a%2Fb%20c"))
    c["path_latin1"] = packet([("REQUEST_METHOD", "GET"), ("PATH_INFO", b"/caf\xe9"), ("REQUEST_URI", b"/caf\xe9")])
    c["method_lowercase"] = packet(nginx(method="get"))
    c["method_unusual"] = packet(nginx(method="PROPFIND"))
    body = b'{"hello": "world"}'
    c["post_body"] = packet(nginx("POST", "/submit", body, content_type="application/json"), body)
    c["post_body_larger"] = packet(nginx("PUT", "/up", b"x" * 70000), b"x" * 70000)
    c["content_length_invalid"] = packet(
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/"), ("CONTENT_LENGTH", "abc")], b"ignored"
    )
    c["content_length_negative"] = packet([("REQUEST_METHOD", "POST"), ("PATH_INFO", "/"), ("CONTENT_LENGTH", "-5")])
    c["content_length_spaces"] = packet(
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/"), ("CONTENT_LENGTH", " 3 ")], b"abc"
    )
    c["content_length_plus"] = packet(
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/"), ("CONTENT_LENGTH", "+3")], b"abc"
    )
    c["content_length_underscore"] = packet(
        [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/"), ("CONTENT_LENGTH", "1_0")], b"0123456789"
    )
    c["body_truncated"] = packet([("REQUEST_METHOD", "POST"), ("PATH_INFO", "/"), ("CONTENT_LENGTH", "100")], b"short")
    c["transfer_encoding_var_ignored"] = packet(
        nginx("POST", "/te", b"abc", extra=[("HTTP_TRANSFER_ENCODING", "chunked")]), b"abc"
    )
    c["expect_continue_var"] = packet(nginx("POST", "/e", b"abc", extra=[("HTTP_EXPECT", "100-continue")]), b"abc")
    c["https_on"] = packet(nginx(extra=[("HTTPS", "on")]))
    c["https_one"] = packet(nginx(extra=[("HTTPS", "1")]))
    c["https_upper"] = packet(nginx(extra=[("HTTPS", "ON")]))
    c["https_off"] = packet(nginx(extra=[("HTTPS", "off")]))
    c["url_scheme_var"] = packet(nginx(extra=[("wsgi.url_scheme", "https")]))
    c["forwarded_proto_header"] = packet(nginx(extra=[("HTTP_X_FORWARDED_PROTO", "https")]))
    c["duplicate_var_last_wins"] = packet(nginx(extra=[("HTTP_X_DUP", "one"), ("HTTP_X_DUP", "two")]))
    c["header_underscore_names"] = packet(nginx(extra=[("HTTP_X_CUSTOM_HEADER", "v")]))
    c["lowercase_http_prefix_dropped"] = packet(nginx(extra=[("http_x_lower", "v")]))
    c["empty_header_name"] = packet(nginx(extra=[("HTTP_", "v")]))
    c["script_name_var"] = packet(nginx(uri="/app/x", extra=[("SCRIPT_NAME", "/app")]))
    c["value_with_crlf"] = packet(nginx(extra=[("HTTP_X_CRLF", "a\r\nb")]))
    c["value_latin1"] = packet(nginx(extra=[("HTTP_X_LATIN", b"\xe9t\xe9")]))
    c["value_empty"] = packet(nginx(extra=[("HTTP_X_EMPTY", "")]))
    c["modifier2_set"] = packet(nginx(), modifier2=7)
    c["modifier1_unsupported"] = packet(nginx(), modifier1=5)
    c["modifier1_http_request"] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    c["vars_exactly_1000"] = packet([("REQUEST_METHOD", "GET")] + [("V%d" % i, "") for i in range(999)])
    c["vars_1001"] = packet([("REQUEST_METHOD", "GET")] + [("V%d" % i, "") for i in range(1000)])
    c["vars_block_max"] = packet([("REQUEST_METHOD", "GET"), ("HTTP_X_BIG", "b" * (65535 - 21 - 14))])
    good = block([("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")])
    c["truncated_key_size"] = packet([], size=len(good) + 1)[:4] + good + b"\x05"
    c["truncated_key"] = b"\x00" + struct.pack("<H", 5) + b"\x00" + b"\x09\x00abc"
    c["truncated_value_size"] = b"\x00" + struct.pack("<H", 5) + b"\x00" + b"\x03\x00abc"
    c["truncated_value"] = b"\x00" + struct.pack("<H", 8) + b"\x00" + b"\x01\x00a\x09\x00bc"
    c["keep_alive_two_packets"] = packet(nginx(uri="/one")) + packet(nginx(uri="/two"))
    c["connection_close_var"] = packet(nginx(uri="/one", extra=[("HTTP_CONNECTION", "close")])) + packet(
        nginx(uri="/two")
    )
    c["connection_keep_alive_var"] = packet(nginx(uri="/one", extra=[("HTTP_CONNECTION", "Keep-Alive")])) + packet(
        nginx(uri="/two")
    )
    c["pipelined_with_bodies"] = packet(nginx("POST", "/a", b"12345"), b"12345") + packet(
        nginx("POST", "/b", b"678"), b"678"
    )
    c["good_then_bad_modifier"] = packet(nginx(uri="/one")) + packet(nginx(), modifier1=9)
    out = [
        {"name": "uwsgi/" + name, "kind": "uwsgi", "raw": base64.b64encode(raw).decode(), "settings": dict(ON)}
        for name, raw in c.items()
    ]
    for name, allow in [("forbidden_peer", "192.0.2.1"), ("allowed_wildcard", "*"), ("allowed_listed", "127.0.0.1")]:
        raw = packet(nginx(uri="/peer"))
        settings = dict(ON, uwsgi_allow_ips=allow)
        out.append(
            {"name": "uwsgi/" + name, "kind": "uwsgi", "raw": base64.b64encode(raw).decode(), "settings": settings}
        )
    return out


if __name__ == "__main__":
    doc = {
        "source": "written for ferrocorn (tests/conformance/uwsgi_cases.py): uwsgi packets as nginx sends them, "
        "and malformed ones",
        "cases": cases(),
    }
    print(json.dumps(doc, indent=1))
