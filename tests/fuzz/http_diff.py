#!/usr/bin/env python3
"""Differential fuzzing of ferrocorn's HTTP/1 request parsing against
Gunicorn 27's own pure-Python parser, in one process.

The same client reads (a list of byte strings, one per recv(), optionally
followed by the client closing its side) go to:

- Gunicorn: `gunicorn.http.parser.RequestParser` over an iterator source,
  with a `gunicorn.config.Config` built from command-line flags the way
  Gunicorn builds it, each request's body read to its end, refusals turned
  into the bytes `Worker.handle_error` writes;
- ferrocorn: `ferrocorn._ferrocorn.testing.http_exchange`, which runs the
  worker's sans-I/O connection (`src/http/conn.rs`) with settings parsed from
  the same flags.

Both produce a list of events (`head`, `body`, `error`, `end`) that must be
equal: accept/reject, Gunicorn's exception class and message, the error page
on the wire (status, reason, text), and every parsed field (method, target,
path, query, fragment, version, headers in order, URL scheme, 100-continue,
keep-alive, PROXY information, the decoded body). Pipelined requests are
followed as Gunicorn's keep-alive parser follows them.

Differences ferrocorn makes on purpose (docs/compatibility.md) are mapped
before comparing: a Content-Length body cut short by the client is an error
(NoMoreData), never a shorter body.

Inputs are seeded from Gunicorn's request corpus (tests/conformance) and the
seeds below, then mutated. Usage (see README.md):

    python tests/fuzz/http_diff.py --seconds 600            # random seeds
    python tests/fuzz/http_diff.py --seed 1 --iterations 5000
    python tests/fuzz/http_diff.py --replay                  # the corpus only
"""

import argparse
import base64
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus" / "http.json"
CONFORMANCE = ROOT / "tests" / "conformance" / "cases.json"

from ferrocorn._ferrocorn import testing  # noqa: E402
from gunicorn.config import Config  # noqa: E402
from gunicorn.http import errors as gerrors  # noqa: E402
from gunicorn.http.body import LengthReader  # noqa: E402
from gunicorn.http.parser import RequestParser  # noqa: E402
from gunicorn.workers.base import Worker  # noqa: E402

# ---------------------------------------------------------------------------
# Gunicorn's side


class Stall(Exception):
    """The source has nothing more yet: a server would wait in recv()."""


def _source(reads, eof):
    for r in reads:
        if r:
            yield r
    if not eof:
        raise Stall()


_CFGS = {}


def gunicorn_cfg(flags):
    """A Config from command-line flags, as Gunicorn's Application builds it."""
    key = tuple(flags)
    cfg = _CFGS.get(key)
    if cfg is None:
        cfg = Config()
        args = cfg.parser().parse_args(list(flags))
        for k, v in vars(args).items():
            if v is None or k == "args":
                continue
            cfg.set(k.lower(), v)
        # The reference is the pure-Python parser (gunicorn_h1c is optional).
        cfg.set("http_parser", "python")
        _CFGS[key] = cfg
    return cfg


class _Log:
    def __getattr__(self, name):
        return lambda *a, **k: None


class _Sock:
    """What handle_error writes its answer to."""

    def __init__(self):
        self.data = bytearray()

    def sendall(self, b):
        self.data += b

    def send(self, b):
        self.data += b
        return len(b)

    def gettimeout(self):
        return 0.0

    def setblocking(self, flag):
        pass

    def getsockname(self):
        return ("127.0.0.1", 8000)


class _Worker:
    """Stands in for the worker `Worker.handle_error` is a method of."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.log = _Log()


def gunicorn_answer(exc, cfg, addr):
    """The bytes Gunicorn's worker writes for a request that raised exc."""
    sock = _Sock()
    Worker.handle_error(_Worker(cfg), None, sock, addr or None, exc)
    return bytes(sock.data)


def _error(exc, cfg, addr):
    if isinstance(exc, gerrors.NoMoreData):
        return {"event": "error", "kind": "NoMoreData", "text": "No more data after: None", "wire": None}
    if isinstance(exc, gerrors.ParseException):
        kind, text = type(exc).__name__, str(exc)
    else:
        # Not one of Gunicorn's parse errors (a ValueError out of
        # socket.inet_pton, say): only the 500 on the wire is comparable.
        kind, text = "internal:" + type(exc).__name__, None
    return {"event": "error", "kind": kind, "text": text, "wire": gunicorn_answer(exc, cfg, addr)}


def _proxy(info):
    if not info:
        return None
    client = None if info["client_addr"] is None else (info["client_addr"], info["client_port"])
    proxy = None if info["proxy_addr"] is None else (info["proxy_addr"], info["proxy_port"])
    return (info["proxy_protocol"], client, proxy)


def gunicorn_exchange(reads, flags, peer="127.0.0.1", eof=True):
    cfg = gunicorn_cfg(flags)
    # A Unix socket's peer address is a string, which Gunicorn trusts.
    addr = (peer, 40000) if peer is not None else ""
    events = []
    parser = RequestParser(cfg, _source(reads, eof), addr)
    in_body = False
    try:
        for req in parser:
            events.append(
                {
                    "event": "head",
                    "method": req.method,
                    "uri": req.uri,
                    "path": req.path,
                    "query": req.query,
                    "fragment": req.fragment,
                    "version": tuple(req.version),
                    "headers": [(n, v.encode("latin-1")) for n, v in req.headers],
                    "scheme": req.scheme,
                    "expect_continue": req._expected_100_continue,
                    "should_close": req.should_close(),
                    "proxy": _proxy(req.proxy_protocol_info),
                }
            )
            in_body = True
            reader = req.body.reader
            announced = reader.length if isinstance(reader, LengthReader) else None
            data = req.body.read()
            if announced is not None and len(data) < announced:
                # docs/compatibility.md: ferrocorn refuses to hand over a
                # Content-Length body the client cut short.
                raise gerrors.NoMoreData()
            events.append({"event": "body", "data": data})
            in_body = False
        events.append({"event": "end", "how": "eof"})
    except Stall:
        events.append({"event": "end", "how": "waiting"})
    except gerrors.NoMoreData as e:
        if in_body:
            events.append(_error(e, cfg, addr))
        else:
            # Mid-head: Gunicorn closes without an answer.
            events.append({"event": "end", "how": "eof"})
    except Exception as e:
        events.append(_error(e, cfg, addr))
    return events


def ferrocorn_exchange(reads, flags, peer="127.0.0.1", eof=True):
    return testing.http_exchange(list(reads), list(flags), peer, eof)


# ---------------------------------------------------------------------------
# Comparison


def compare(g, f):
    """None when equal, else a short description of the first difference."""
    for i in range(max(len(g), len(f))):
        a = g[i] if i < len(g) else None
        b = f[i] if i < len(f) else None
        if a is None or b is None or a["event"] != b["event"]:
            return "event %d: gunicorn %s, ferrocorn %s" % (i, _brief(a), _brief(b))
        if a["event"] == "error" and a["kind"].startswith("internal:"):
            # Compare what the client sees (the 500 page) only.
            if a["wire"] != b["wire"]:
                return "event %d: gunicorn %s, ferrocorn %s" % (i, _brief(a), _brief(b))
            continue
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return "event %d (%s) field %s: gunicorn %r, ferrocorn %r" % (
                    i,
                    a["event"],
                    k,
                    _short(a.get(k)),
                    _short(b.get(k)),
                )
    return None


def documented(g, f, reads, case):
    """Gunicorn's events, with the differences ferrocorn documents
    (docs/compatibility.md) replaced by ferrocorn's behaviour when Gunicorn
    is shown to behave that way given what it waits for."""
    if (
        len(g) == len(f)
        and g[:-1] == f[:-1]
        and g[-1]["event"] == "end"
        and f[-1]["event"] == "error"
        and f[-1]["text"] == "max buffer headers"
    ):
        # "Oversized header blocks are refused at once": Gunicorn measures
        # the buffer after its next read, and says nothing if none comes.
        # Given one more read, it must refuse the same way.
        more = gunicorn_exchange([*reads, b"\r\n\r\n"], case.flags, case.peer, True)
        if len(more) == len(f) and more[-1] == f[-1]:
            return more
    return g


def _short(v, n=200):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def _brief(e):
    if e is None:
        return "nothing"
    if e["event"] == "error":
        return "error %s %s" % (e["kind"], _short(e.get("text"), 120))
    if e["event"] == "end":
        return "end(%s)" % e["how"]
    if e["event"] == "head":
        return "head %s %s" % (e["method"], _short(e["uri"], 60))
    return e["event"]


def signature(g, f):
    """What kind of difference this is, to group findings."""
    d = compare(g, f) or ""
    head = d.split(":")[0]
    kinds = []
    for side in (g, f):
        last = side[-1] if side else None
        kinds.append(_brief(last).split(" ")[0:2] if last else ["nothing"])
    return head.split(" field ")[-1] + " | " + " / ".join(" ".join(k) for k in kinds)


# ---------------------------------------------------------------------------
# A test input: bytes, where the reads split them, settings, peer, and
# whether the client closes its side after sending them.


class Case:
    __slots__ = ("cuts", "data", "eof", "flags", "name", "peer")

    def __init__(self, data, cuts=(), flags=(), peer="127.0.0.1", eof=True, name=""):
        self.data = bytes(data)
        self.cuts = sorted({c for c in cuts if 0 < c < len(data)})
        self.flags = list(flags)
        self.peer = peer
        self.eof = eof
        self.name = name

    def reads(self):
        bounds = [0, *self.cuts, len(self.data)]
        return [self.data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]

    def run(self):
        reads = self.reads()
        g = gunicorn_exchange(reads, self.flags, self.peer, self.eof)
        f = ferrocorn_exchange(reads, self.flags, self.peer, self.eof)
        return documented(g, f, reads, self), f

    def difference(self):
        g, f = self.run()
        return compare(g, f)

    def to_json(self):
        return {
            "name": self.name,
            "flags": self.flags,
            "peer": self.peer,
            "eof": self.eof,
            "reads": [base64.b64encode(r).decode() for r in self.reads()],
            "repr": [r.decode("latin-1") for r in self.reads()],
        }

    @classmethod
    def from_json(cls, d):
        reads = [base64.b64decode(r) for r in d["reads"]]
        cuts, pos = [], 0
        for r in reads[:-1]:
            pos += len(r)
            cuts.append(pos)
        return cls(b"".join(reads), cuts, d.get("flags", []), d.get("peer", "127.0.0.1"), d.get("eof", True), d["name"])

    def copy(self, **kw):
        c = Case(self.data, self.cuts, self.flags, self.peer, self.eof, self.name)
        for k, v in kw.items():
            setattr(c, k, v)
        c.cuts = sorted({x for x in c.cuts if 0 < x < len(c.data)})
        return c


# ---------------------------------------------------------------------------
# Seeds

CONFORMANCE_FLAGS = {
    "proxy_protocol": lambda v: ["--proxy-protocol", str(v)],
    "permit_obsolete_folding": lambda v: ["--permit-obsolete-folding"] if v else [],
    "header_map": lambda v: ["--header-map", v],
    "limit_request_field_size": lambda v: ["--limit-request-field_size", str(v)],
    "limit_request_line": lambda v: ["--limit-request-line", str(v)],
    "limit_request_fields": lambda v: ["--limit-request-fields", str(v)],
    "strip_header_spaces": lambda v: ["--strip-header-spaces"] if v else [],
    "casefold_http_method": lambda v: ["--casefold-http-method"] if v else [],
    "permit_unconventional_http_method": lambda v: ["--permit-unconventional-http-method"] if v else [],
    "forwarded_allow_ips": lambda v: ["--forwarded-allow-ips", ",".join(v) if isinstance(v, list) else v],
}


def conformance_seeds():
    out = []
    for c in json.loads(CONFORMANCE.read_text())["cases"]:
        flags = []
        for k, v in sorted(c["settings"].items()):
            flags += CONFORMANCE_FLAGS[k](v)
        out.append(Case(base64.b64decode(c["raw"]), (), flags, name="conformance/" + c["name"]))
    return out


def _v2(cmd=0x21, fam=0x11, addr=b"", length=None):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    n = len(addr) if length is None else length
    return sig + bytes([cmd, fam]) + n.to_bytes(2, "big") + addr


V4_ADDR = bytes([192, 168, 0, 1, 10, 0, 0, 2]) + (56324).to_bytes(2, "big") + (443).to_bytes(2, "big")
V6_ADDR = bytes(range(16)) + bytes(15) + b"\x01" + (1).to_bytes(2, "big") + (2).to_bytes(2, "big")

GET = b"GET /p/a%20th?x=1&y=%41#frag HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz/1.0\r\nAccept: */*\r\n\r\n"
POST_CL = b"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
POST_CHUNKED = (
    b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5\r\nhello\r\n6;ext=1;q="a b"\r\n world\r\nA \t; name\r\n0123456789\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n'
)

EXTRA_SEEDS = [
    ("get", GET, []),
    ("post-length", POST_CL, []),
    ("post-chunked", POST_CHUNKED, []),
    ("pipelined", POST_CL + GET + b"GET /last HTTP/1.0\r\n\r\n", []),
    ("keepalive-1.0", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET, []),
    ("expect", b"PUT /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", []),
    ("absolute-form", b"GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n", []),
    ("double-slash", b"GET //a//b?c=//d#e HTTP/1.1\r\n\r\n", []),
    ("ipv6-authority", b"GET http://[::1]:80/x HTTP/1.1\r\n\r\n", []),
    ("connect", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", []),
    ("options-star", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", []),
    ("leading-crlf", b"\r\nGET / HTTP/1.1\r\n\r\n", []),
    (
        "forwarded",
        b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Protocol: ssl\r\n\r\n",
        [],
    ),
    ("script-name", b"GET /app/x HTTP/1.1\r\nScript_Name: /app\r\nX_Custom: 1\r\nPath_Info: /x\r\n\r\n", []),
    ("folding", b"GET / HTTP/1.1\r\nLong: one\r\n two\r\n\tthree\r\nHost: a\r\n\r\n", ["--permit-obsolete-folding"]),
    ("strip-spaces", b"GET / HTTP/1.1\r\nContent-Length \t: 0\r\n\r\n", ["--strip-header-spaces"]),
    ("casefold", b"get / HTTP/1.1\r\n\r\n", ["--casefold-http-method", "--permit-unconventional-http-method"]),
    ("version-2", b"GET / HTTP/2.0\r\n\r\n", ["--permit-unconventional-http-version"]),
    ("te-gzip", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", []),
    ("limits", b"GET /0123456789 HTTP/1.1\r\nA: 1\r\nB: 22\r\nC: 333\r\n\r\n", ["--limit-request-line", "24"]),
    (
        "field-limits",
        b"GET / HTTP/1.1\r\nA: 1\r\nB: 22\r\nC: 333\r\n\r\n",
        ["--limit-request-fields", "2", "--limit-request-field_size", "8"],
    ),
    ("proxy-v1-tcp4", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" + GET, ["--proxy-protocol", "v1"]),
    ("proxy-v1-tcp6", b"PROXY TCP6 2001:db8::1 ::1 56324 443\r\n" + POST_CL, ["--proxy-protocol", "auto"]),
    ("proxy-v1-unknown", b"PROXY UNKNOWN\r\n" + GET, ["--proxy-protocol", "auto"]),
    ("proxy-v2-tcp4", _v2(addr=V4_ADDR) + GET, ["--proxy-protocol", "v2"]),
    ("proxy-v2-tcp6", _v2(fam=0x21, addr=V6_ADDR) + POST_CHUNKED, ["--proxy-protocol", "auto"]),
    ("proxy-v2-tlv", _v2(addr=V4_ADDR + b"\x04\x00\x03abc") + GET, ["--proxy-protocol", "auto"]),
    ("proxy-v2-local", _v2(cmd=0x20, fam=0x00) + GET, ["--proxy-protocol", "v2"]),
    ("proxy-v2-unspec", _v2(fam=0x00, addr=b"xyz") + GET, ["--proxy-protocol", "auto"]),
    ("proxy-v2-udp", _v2(fam=0x12, addr=V4_ADDR) + GET, ["--proxy-protocol", "auto"]),
]


def extra_seeds():
    return [Case(data, (), flags, name="seed/" + name) for name, data, flags in EXTRA_SEEDS]


def all_seeds():
    return conformance_seeds() + extra_seeds()


# ---------------------------------------------------------------------------
# Mutations

TOKENS = [
    b"\r", b"\n", b"\r\n", b" ", b"\t", b"\x00", b"\x0b", b"\x0c", b":", b";", b",", b"=", b'"', b"\\",
    b"_", b"-", b"\x7f", b"\x80", b"\xff", b"\xdf", b"\xb2", b"0", b"a", b"A", b"%", b"%00", b"?", b"#", b"/",
    b"\r\n ", b"\r\n\t", b"\r\n\r\n", b"*", b"[", b"]", b"@", b"::", b"\xc3\xa9", b"z", b"9", b"f",
]  # fmt: skip

METHODS = [
    b"GET", b"get", b"Get", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"CONNECT", b"DELETE", b"PATCH", b"M-SEARCH",
    b"PROPFIND", b"G", b"GE", b"GETGETGETGETGETGETGE", b"GETGETGETGETGETGETGET", b"#GET", b"GE#T", b"G_T",
    b"G\"T", b"", b"GET\x00", b"\xc3\x89T", b"get!", b"~~~", b"1234",
]  # fmt: skip

VERSIONS = [
    b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.10", b"http/1.1", b"HTTP/1", b"HTTP/11",
    b"HTTP/1.1 ", b"HTTP/3.0", b"HTTP/9.9", b"HTTP/1.1\t", b"HTTP/\xb9.1", b"HTTPS/1.1", b"HTTP/1.a", b"",
]  # fmt: skip

HEADER_LINES = [
    b"Content-Length: 0", b"Content-Length: 5", b"Content-Length: 007", b"Content-Length: -1", b"Content-Length: +1",
    b"Content-Length:  5", b"Content-Length: 5 ", b"Content-Length: 1e3", b"Content-Length: 5, 5",
    b"Content-Length: 99999999999999999999", b"Content-Length:", b"Content-Length: \xb2", b"Content-Length: 0x5",
    b"Content-Length: 1_0", b"content-length: 3",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: CHUNKED", b"Transfer-Encoding:  chunked ",
    b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: chunked, gzip", b"Transfer-Encoding: identity",
    b"Transfer-Encoding: identity, chunked", b"Transfer-Encoding: chunked,", b"Transfer-Encoding: ,chunked",
    b"Transfer-Encoding: x, chunked", b"Transfer-Encoding: chunked\t", b"Transfer-Encoding: deflate",
    b"Transfer-Encoding: chunked, chunked", b"Transfer-Encoding: chunk\xe9d",
    b"Expect: 100-continue", b"Expect: 100-Continue", b"Expect: 101-whatever", b"Expect: ",
    b"Connection: close", b"Connection: keep-alive", b"Connection: Upgrade", b"Connection: close, x",
    b"Connection: KEEP-ALIVE",
    b"Host: other", b"Host:", b"Content-Type: text/plain", b"content-type: a/b",
    b"X-Forwarded-Proto: https", b"X-Forwarded-Proto: http", b"X-Forwarded-Ssl: on", b"X-Forwarded-Ssl: off",
    b"X-Forwarded-Protocol: ssl", b"x-forwarded-proto: https", b"X-Forwarded-Proto: HTTPS",
    b"Script_Name: /p", b"Path_Info: /x", b"X_Forwarded_For: 1.2.3.4", b"X-Forwarded-For: 1.2.3.4",
    b"Trailer: X", b"TE: trailers", b": empty", b"Name : x", b"Name\t: x", b" Lead: x", b"\tLead: x",
    b"NoColon", b"A\xdfB: 1", b"X: a\x00b", b"X: a\x7fb", b"X: caf\xc3\xa9", b"X: \x80\xff", b"X:", b"X:\t",
    b"X: a\rb", b"Upgrade: websocket", b"Authorization: x", b"Long: one\r\n two", b"Long: one\r\n\tthree",
]  # fmt: skip

CHUNK_EXTS = [
    b"", b";a", b";a=b", b'; a = "q s"', b';a="\\""', b";a=", b";=b", b";a b", b";;a", b"; a\t;b=c", b";a=\"b",
    b";a=\xff", b";a=\"\x7f\"", b";a\rb", b" ;a", b"\t;a", b";a=\"\\\x01\"", b";\xe9=1",
]  # fmt: skip

TRAILERS = [
    b"X-T: 1\r\n", b"Content-Length: 5\r\n", b"Host: h\r\n", b"X: a\nb\r\n", b"bad line\r\n", b"X_U: 1\r\n",
    b"Expect: nope\r\n", b"Long: a\r\n b\r\n", b"Authorization: x\r\n", b"Te: x\r\n", b"X-Forwarded-Proto: https\r\n",
]  # fmt: skip

FLAG_CHOICES = [
    lambda r: ["--limit-request-line", str(r.choice([0, 1, 3, 10, 16, 20, 24, 32, 100, 4094, 8190, 9000]))],
    lambda r: ["--limit-request-fields", str(r.choice([0, 1, 2, 3, 5, 100, 40000]))],
    lambda r: ["--limit-request-field_size", str(r.choice([0, 1, 5, 8, 10, 20, 50, 100, 8190]))],
    lambda r: ["--permit-obsolete-folding"],
    lambda r: ["--strip-header-spaces"],
    lambda r: ["--casefold-http-method"],
    lambda r: ["--permit-unconventional-http-method"],
    lambda r: ["--permit-unconventional-http-version"],
    lambda r: ["--header-map", r.choice(["drop", "refuse", "dangerous"])],
    lambda r: ["--proxy-protocol", r.choice(["off", "v1", "v2", "auto"])],
    lambda r: ["--proxy-allow-from", r.choice(["*", "10.0.0.0/8", "127.0.0.1", "::1"])],
    lambda r: ["--forwarded-allow-ips", r.choice(["*", "10.0.0.1", "127.0.0.1,::1", "10.0.0.0/8"])],
    lambda r: ["--forwarder-headers", r.choice(["SCRIPT_NAME", "X_CUSTOM,PATH_INFO", "*"])],
]

PEERS = ["127.0.0.1"] * 6 + ["10.0.0.1", "::1", None, "192.168.1.9"]


def _lines(data):
    """Start offsets of lines (after each CRLF) in data."""
    starts = [0]
    i = data.find(b"\r\n")
    while i >= 0:
        starts.append(i + 2)
        i = data.find(b"\r\n", i + 2)
    return starts


def _pos(r, data):
    """A position, more often after the request line: most mutations of the
    request line only make another invalid request line."""
    if r.random() < 0.7:
        _s, e = _first_line(data)
        if e + 2 < len(data):
            return r.randrange(e + 2, len(data) + 1)
    return r.randrange(len(data) + 1)


def m_flip(r, data):
    if not data:
        return data
    i = min(_pos(r, data), len(data) - 1)
    b = r.choice([r.randrange(256), data[i] ^ (1 << r.randrange(8)), r.choice(b" \t\r\n:;0aA\x00\x80")])
    return data[:i] + bytes([b]) + data[i + 1 :]


def m_insert(r, data):
    i = _pos(r, data)
    return data[:i] + r.choice(TOKENS) * r.choice([1, 1, 1, 2, 3]) + data[i:]


def m_delete(r, data):
    if not data:
        return data
    i = min(_pos(r, data), len(data) - 1)
    return data[:i] + data[i + r.randint(1, 4) :]


def m_dup_line(r, data):
    starts = _lines(data)
    if len(starts) < 2:
        return data
    k = r.randrange(len(starts) - 1)
    line = data[starts[k] : starts[k + 1]]
    j = r.choice(starts)
    return data[:j] + line + data[j:]


def m_drop_line(r, data):
    starts = _lines(data)
    if len(starts) < 2:
        return data
    k = r.randrange(len(starts) - 1)
    return data[: starts[k]] + data[starts[k + 1] :]


def m_line_end(r, data):
    idx = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\r\n"]
    if not idx:
        return data
    i = r.choice(idx)
    return (
        data[:i] + r.choice([b"\n", b"\r", b"\r\r\n", b"\n\r", b" \r\n", b"\r\n\r\n", b"\t\r\n", b""]) + data[i + 2 :]
    )


def m_space(r, data):
    idx = [i for i, b in enumerate(data) if b in b" \t"]
    if not idx:
        return data
    i = r.choice(idx)
    return data[:i] + r.choice([b"\t", b"  ", b"", b"\x0b", b" \t", b"\t "]) + data[i + 1 :]


def m_case(r, data):
    if not data:
        return data
    i = r.randrange(len(data))
    j = min(len(data), i + r.randint(1, 12))
    part = data[i:j]
    part = part.lower() if r.random() < 0.5 else part.upper()
    return data[:i] + part + data[j:]


def _first_line(data):
    """(start, end) of the request line (after a PROXY header, if any)."""
    start = 0
    if data.startswith(b"PROXY "):
        start = data.find(b"\r\n") + 2
    elif data.startswith(b"\r\n\r\n\x00\r\nQUIT\n") and len(data) >= 16:
        start = 16 + int.from_bytes(data[14:16], "big")
    end = data.find(b"\r\n", start)
    return start, (end if end >= 0 else len(data))


def m_method(r, data):
    s, e = _first_line(data)
    line = data[s:e]
    sp = line.find(b" ")
    if sp < 0:
        return data
    return data[:s] + r.choice(METHODS) + line[sp:] + data[e:]


def m_version(r, data):
    s, e = _first_line(data)
    line = data[s:e]
    sp = line.rfind(b" ")
    if sp < 0:
        return data
    return data[:s] + line[: sp + 1] + r.choice(VERSIONS) + data[e:]


def m_target(r, data):
    s, e = _first_line(data)
    line = data[s:e]
    parts = line.split(b" ", 2)
    if len(parts) != 3:
        return data
    target = r.choice(
        [
            b"/", b"*", b"", b"//x", b"/a?b", b"/a#b", b"/%zz", b"http://h/p?q#f", b"http://[::1]:8/p", b"http://[v1.x]/",
            b"http://[::1/p", b"http://h]/p", b"a:b", b"h:443", b"x://", b"/a b", b"/\x80", b"/\x7f", b"/?#",
            b"HTTP://H:80", b"//h/p?q", b"/" + b"a" * r.choice([10, 20, 100, 4090, 8200]), b"1http://h/", b"+x://h/",
        ]
    )  # fmt: skip
    return data[:s] + parts[0] + b" " + target + b" " + parts[2] + data[e:]


def m_header(r, data):
    s, _e = _first_line(data)
    starts = [x for x in _lines(data) if x > s]
    if not starts:
        return data
    j = r.choice(starts)
    return data[:j] + r.choice(HEADER_LINES) + b"\r\n" + data[j:]


def m_fold(r, data):
    _s, e = _first_line(data)
    idx = [i for i in range(e + 2, len(data) - 1) if data[i : i + 2] == b"\r\n"]
    if not idx:
        return data
    i = r.choice(idx)
    return data[:i] + b"\r\n" + r.choice([b" ", b"\t", b"  "]) + r.choice([b"cont", b"", b"a: b"]) + data[i:]


def chunked_body(r):
    out = b""
    for _ in range(r.randint(0, 4)):
        n = r.choice([1, 2, 5, 15, 16, 255, 300])
        size = ("%x" % n).encode()
        size = r.choice([size, size.upper(), b"0" * r.randint(1, 3) + size])
        if r.random() < 0.1:
            size = r.choice([b"", b"-1", b"0x5", b" 5", b"5 ", b"g", b"+5", b"\xb2", b"ffffffffffffffffffff"])
        ext = r.choice(CHUNK_EXTS) if r.random() < 0.4 else b""
        payload = bytes(r.choice(b"abc\r\n\x00") for _ in range(n))
        end = b"\r\n" if r.random() < 0.9 else r.choice([b"", b"\n", b"\r", b"xx", b"\r\r"])
        out += size + ext + b"\r\n" + payload + end
    last = r.choice([b"0", b"000", b"0" + r.choice(CHUNK_EXTS)])
    trailers = b"".join(r.choice(TRAILERS) for _ in range(r.choice([0, 0, 1, 2])))
    term = b"\r\n" if r.random() < 0.9 else r.choice([b"", b"\n", b"\r"])
    return out + last + b"\r\n" + trailers + term


def m_chunked(r, data):
    s, _e = _first_line(data)
    head_end = data.find(b"\r\n\r\n", s)
    if head_end < 0:
        return data
    head = data[: head_end + 2]
    if b"chunked" not in head.lower():
        head += b"Transfer-Encoding: chunked\r\n"
    # The request line must be HTTP/1.1 for chunked to be accepted at all.
    return head + b"\r\n" + chunked_body(r)


def m_oversize(r, data):
    starts = _lines(data)
    k = r.randrange(len(starts))
    i = data.find(b"\r\n", starts[k])
    if i < 0:
        i = len(data)
    n = r.choice([1, 2, 3, 8, 100, 4090, 4094, 4096, 8186, 8190, 8192, 8200, 20000])
    return data[:i] + b"x" * n + data[i:]


def m_many_headers(r, data):
    _s, e = _first_line(data)
    n = r.choice([2, 3, 5, 99, 100, 101, 200])
    block = b"".join(b"H%d: v\r\n" % k for k in range(n))
    return data[: e + 2] + block + data[e + 2 :]


TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VALUE_CHARS = bytes(range(0x20, 0x7F)) + b"\t\x80\xa0\xe9\xff"
PATH_CHARS = b"abcXYZ019-._~!$&'()*+,;=:@/%?#"


#: Values that mean something to the parser, for the headers that have them.
MEANINGFUL = {
    b"Connection": [b"close", b"keep-alive", b"KEEP-ALIVE", b"Keep-Alive", b"Close", b"upgrade", b"close, keep-alive",
                    b"keep-alive, close", b"", b"closed", b"keep-alive\t"],
    b"Expect": [b"100-continue", b"100-CONTINUE", b"100-continue ", b"200-ok", b""],
    b"X-Forwarded-Proto": [b"https", b"http", b"HTTPS", b"https "],
    b"X-Forwarded-Ssl": [b"on", b"off", b"ON"],
    b"X-Forwarded-Protocol": [b"ssl", b"tls"],
    b"Content-Type": [b"text/plain", b"a/b; charset=\xe9"],
    b"Upgrade": [b"websocket", b"h2c"],
    b"Script_Name": [b"/", b"/app", b""],
    b"Path_Info": [b"/x", b""],
}  # fmt: skip


def m_generate(r, data):
    """A fresh, mostly well-formed request (the seeds' fields, recombined):
    the parsed fields are compared only for requests both sides accept."""
    method = r.choice([b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"M-SEARCH", b"PURGE"])
    target = b"/" + _random_text(r, PATH_CHARS, r.randint(0, 20))
    if r.random() < 0.1:
        target = r.choice([b"http://h.example:8080", b"https://[::1]/", b"ftp://u@h/"]) + target
    version = r.choice([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"])
    lines = [method + b" " + target + b" " + version]
    names = [b"Host", b"Accept", b"X-A", b"x-a", b"Cookie", b"Connection", b"User-Agent", b"X-Forwarded-For", b"Via"]
    names += list(MEANINGFUL)
    for _ in range(r.randint(0, 8)):
        name = r.choice(names) if r.random() < 0.7 else _random_text(r, TOKEN_CHARS, r.randint(1, 12))
        if name in MEANINGFUL and r.random() < 0.8:
            value = r.choice(MEANINGFUL[name])
        else:
            value = _random_text(r, VALUE_CHARS, r.randint(0, 30))
        ows = r.choice([b"", b" ", b"\t", b"  "])
        lines.append(name + b":" + ows + value + r.choice([b"", b" ", b"\t"]))
    body = b""
    how = r.random()
    if how < 0.3:
        body = _random_text(r, bytes(range(256)), r.randint(0, 40))
        lines.append(b"Content-Length: %d" % len(body))
    elif how < 0.5 and version == b"HTTP/1.1":
        lines.append(b"Transfer-Encoding: chunked")
        body = chunked_body(r)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def m_truncate(r, data):
    return data[: _pos(r, data)]


def m_splice(r, data, seeds):
    other = r.choice(seeds).data
    if r.random() < 0.5:
        return data + other
    i = _pos(r, data)
    j = r.randrange(len(other) + 1)
    return data[:i] + other[j:]


def m_proxy(r, data):
    s, _e = _first_line(data)
    rest = data[s:]
    v1 = [
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", b"PROXY TCP6 ::1 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n", b"PROXY TCP4 1.2.3 5.6.7.8 1 1\r\n", b"PROXY TCP4 ::1 ::1 1 1\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 1\r\n", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 1\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 01\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8  1 1\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 1 \r\n", b"PROXY TCP4 1.2.3.4\x00 5.6.7.8 1 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 \xb9 1\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1_0 1\r\n", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 1\r\n",
        b"PROXY TCP6 ::ffff:1.2.3.4 2001:db8::/32 1 1\r\n", b"PROXY \r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 -0 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 \t1 1\r\n", b"PROXY TCP6 fe80::1%eth0 ::1 1 1\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 1\n",
    ]  # fmt: skip
    choice = r.random()
    if choice < 0.5:
        header = r.choice(v1)
    else:
        cmd = r.choice([0x21, 0x20, 0x22, 0x11, 0x31, 0x2F])
        fam = r.choice([0x11, 0x21, 0x01, 0x12, 0x31, 0x00, 0x10, 0x41])
        addr = r.choice([V4_ADDR, V6_ADDR, b"", V4_ADDR[:11], V6_ADDR[:35], V4_ADDR + b"\x00" * 5])
        length = None if r.random() < 0.8 else r.choice([0, 11, 12, 35, 36, 1000])
        header = _v2(cmd, fam, addr, length)
    return header + rest


def _random_text(r, alphabet, n):
    return bytes(r.choice(alphabet) for _ in range(n))


def m_uri_chars(r, data):
    """A request-target built from the characters urlsplit cares about."""
    s, e = _first_line(data)
    parts = data[s:e].split(b" ", 2)
    if len(parts) != 3:
        return data
    alphabet = b"/:?#[]@.%0123456789abcdefvAZ+-_~!*'()$&=,;"
    prefix = r.choice([b"", b"/", b"//", b"http://", b"HTTPS://", b"h://", b"x+y.z://", b"http:", b"a:"])
    host = r.choice([b"", b"[::1]", b"[v7.x]", b"[::ffff:1.2.3.4]", b"[1:2]", b"h:80", b"[::1]:99", b"[", b"]"])
    target = prefix + host + _random_text(r, alphabet, r.randint(0, 12))
    return data[:s] + parts[0] + b" " + target + b" " + parts[2] + data[e:]


def m_header_value(r, data):
    """A header whose value has random bytes (latin-1, controls, spaces)."""
    _s, e = _first_line(data)
    name = r.choice([b"X-Any", b"Host", b"Content-Length", b"Transfer-Encoding", b"Expect", b"Connection",
                     b"X-Forwarded-Proto", b"Content-Type", b"Script_Name"])  # fmt: skip
    alphabet = b" \t\x00\x01\x0b\x7f\x80\xa0\xb2\xbc\xe9\xff,;=0123456789aAeEkcChunkedgzip-"
    value = _random_text(r, alphabet, r.randint(0, 10))
    return data[: e + 2] + name + b":" + value + b"\r\n" + data[e + 2 :]


def m_proxy_fields(r, data):
    """A PROXY v1 line with random addresses and ports."""
    s, _e = _first_line(data)
    addr_chars = b"0123456789.:abcdefABCDEF%x"
    port_chars = b"0123456789+-_ \t\x0b\x0c\x1c\xa0\xb2"

    def addr():
        return r.choice([b"1.2.3.4", b"::1", _random_text(r, addr_chars, r.randint(0, 18))])

    def port():
        return r.choice([b"80", b"65535", b"65536", _random_text(r, port_chars, r.randint(0, 6))])

    proto = r.choice([b"TCP4", b"TCP6", b"TCP4", b"tcp4", b"UNKNOWN"])
    line = b" ".join([b"PROXY", proto, addr(), addr(), port(), port()])
    return line + b"\r\n" + data[s:]


MUTATORS = [
    (m_flip, 6), (m_insert, 6), (m_delete, 4), (m_dup_line, 3), (m_drop_line, 2), (m_line_end, 4), (m_space, 3),
    (m_case, 2), (m_method, 3), (m_version, 3), (m_target, 3), (m_header, 6), (m_fold, 2), (m_chunked, 4),
    (m_oversize, 2), (m_many_headers, 1), (m_truncate, 2), (m_proxy, 2), (m_uri_chars, 3), (m_header_value, 3),
    (m_proxy_fields, 2), (m_generate, 4),
]  # fmt: skip
_MUT_FUNCS = [m for m, w in MUTATORS for _ in range(w)]


def mutate(r, case, seeds):
    data = case.data
    for _ in range(r.choice([1, 1, 1, 2, 2, 3, 4])):
        if r.random() < 0.04:
            data = m_splice(r, data, seeds)
        else:
            data = r.choice(_MUT_FUNCS)(r, data)
    flags = list(case.flags)
    if r.random() < 0.3:
        flags += r.choice(FLAG_CHOICES)(r)
    if r.random() < 0.05:
        flags = []
    peer = case.peer if r.random() < 0.9 else r.choice(PEERS)
    eof = case.eof if r.random() < 0.8 else not case.eof
    return Case(data, random_cuts(r, data), flags, peer, eof, name=case.name)


def random_cuts(r, data):
    n = len(data)
    if n < 2:
        return []
    how = r.random()
    if how < 0.35:
        return []
    if how < 0.45 and n <= 400:
        return list(range(1, n))  # one byte per read
    if how < 0.65:
        # After each line: the reads a line-by-line client makes.
        return [i for i in _lines(data) if 0 < i < n]
    return sorted(r.sample(range(1, n), min(n - 1, r.randint(1, 6))))


# ---------------------------------------------------------------------------
# Minimizing a failing case


def minimize(case, budget=3000):
    """A smaller case with the same difference signature."""
    g, f = case.run()
    want = signature(g, f)
    tries = [0]

    def still(c):
        tries[0] += 1
        try:
            g, f = c.run()
        except Exception:
            return False
        return compare(g, f) is not None and signature(g, f) == want

    best = case
    # Fewer flags (an option and its value go together).
    groups = []
    for flag in best.flags:
        if flag.startswith("-") or not groups:
            groups.append([flag])
        else:
            groups[-1].append(flag)
    for i in reversed(range(len(groups))):
        if tries[0] >= budget:
            break
        fewer = groups[:i] + groups[i + 1 :]
        c = best.copy(flags=[f for g in fewer for f in g])
        if still(c):
            best = c
            groups = fewer
    # Fewer reads.
    i = 0
    while i < len(best.cuts) and tries[0] < budget:
        c = best.copy(cuts=best.cuts[:i] + best.cuts[i + 1 :])
        if still(c):
            best = c
        else:
            i += 1
    # Fewer bytes, in shrinking blocks.
    size = max(1, len(best.data) // 2)
    while size >= 1 and tries[0] < budget:
        i = 0
        changed = False
        while i < len(best.data) and tries[0] < budget:
            data = best.data[:i] + best.data[i + size :]
            cuts = [c if c <= i else c - size for c in best.cuts if not (i < c <= i + size)]
            c = best.copy(data=data, cuts=cuts)
            if still(c):
                best = c
                changed = True
            else:
                i += size
        if not changed:
            size //= 2
    return best


# ---------------------------------------------------------------------------
# Running


def load_corpus(path=CORPUS):
    if not path.exists():
        return []
    return [Case.from_json(d) for d in json.loads(path.read_text())["cases"]]


def add_to_corpus(case, name, note, path=CORPUS):
    """Keeps a case for good: the bounded run replays every corpus case."""
    data = json.loads(path.read_text()) if path.exists() else {"cases": []}
    entry = case.to_json()
    entry = {"name": name, "note": note, **{k: v for k, v in entry.items() if k != "name"}}
    data["cases"] = [c for c in data["cases"] if c["name"] != name] + [entry]
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def replay(cases):
    """[(case, difference)] for every case that differs."""
    out = []
    for c in cases:
        d = c.difference()
        if d:
            out.append((c, d))
    return out


def fuzz(seed, iterations=None, seconds=None, seeds=None, on_finding=None):
    """Mutates seeds with random.Random(seed); returns the findings as
    {signature: (case, difference)} (first case of each kind)."""
    r = random.Random(seed)
    seeds = seeds or all_seeds()
    pool = list(seeds)
    # Requests both parsers accept, to mutate more often: most mutations of
    # a refused request are refused for the same reason.
    accepted = [c for c in seeds if any(e["event"] == "head" for e in c.run()[1])]
    findings = {}
    start = time.monotonic()
    n = 0
    while True:
        if iterations is not None and n >= iterations:
            break
        if seconds is not None and time.monotonic() - start >= seconds:
            break
        n += 1
        parent = r.choice(accepted if r.random() < 0.5 else pool)
        case = mutate(r, parent, seeds)
        case.name = "%s~s%d.%d" % (parent.name.split("~")[0], seed, n)
        g, f = case.run()
        d = compare(g, f)
        if d:
            sig = signature(g, f)
            if sig not in findings:
                findings[sig] = (case, d)
                if on_finding:
                    on_finding(case, d)
        elif len(pool) < 2000 and r.random() < 0.02:
            # Keep some mutants both sides treat alike, so that mutations
            # stack up over generations; more of those both accept.
            pool.append(case)
        elif len(accepted) < 2000 and f[0]["event"] == "head" and r.random() < 0.05:
            accepted.append(case)
    return findings, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: from the clock)")
    ap.add_argument("--seeds", type=int, default=1, help="how many consecutive seeds to run")
    ap.add_argument("--iterations", type=int, default=None, help="cases per seed")
    ap.add_argument("--seconds", type=float, default=None, help="time per seed")
    ap.add_argument("--replay", action="store_true", help="only replay the corpus and the seeds")
    ap.add_argument("--save", type=Path, default=None, help="write minimized findings to this JSON file")
    ap.add_argument("--no-minimize", action="store_true")
    a = ap.parse_args()

    corpus = load_corpus()
    bad = replay(corpus + all_seeds())
    print("replayed %d corpus cases and %d seeds: %d differ" % (len(corpus), len(all_seeds()), len(bad)))
    for c, d in bad:
        print("  %s: %s" % (c.name, d))
    if a.replay:
        sys.exit(1 if bad else 0)
    if a.iterations is None and a.seconds is None:
        a.seconds = 60.0
    first = a.seed if a.seed is not None else int(time.time())
    found = []
    for seed in range(first, first + a.seeds):

        def report(case, d, seed=seed):
            print("seed %d: %s\n  %r" % (seed, d, case.reads()), flush=True)

        findings, n = fuzz(seed, a.iterations, a.seconds, on_finding=report)
        print("seed %d: %d cases, %d kinds of difference" % (seed, n, len(findings)), flush=True)
        for case, d in findings.values():
            small = case if a.no_minimize else minimize(case)
            print(
                "  minimized: %s\n    %r flags=%r peer=%r eof=%r"
                % (d, small.reads(), small.flags, small.peer, small.eof)
            )
            found.append(small)
    if a.save and found:
        a.save.write_text(json.dumps({"cases": [c.to_json() for c in found]}, indent=1) + "\n")
        print("wrote %d cases to %s" % (len(found), a.save))
    sys.exit(1 if (bad or found) else 0)


if __name__ == "__main__":
    main()
