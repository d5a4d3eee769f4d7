"""ASGI twin of echo_app.py: answers every request with what the scope and
the body showed the app, in the same JSON shape (the WSGI environ names),
so the conformance corpus can be run through the asgi worker and compared
with what Gunicorn answered."""

import base64
import json


def _latin1(b):
    return b.decode("latin-1")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = {}
    content_type = content_length = None
    for name, value in scope["headers"]:
        name, value = _latin1(name), _latin1(value)
        if name == "content-type":
            content_type = value
            continue
        if name == "content-length":
            content_length = value
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        headers[key] = headers[key] + "," + value if key in headers else value
    query = _latin1(scope["query_string"])
    seen = {
        "REQUEST_METHOD": scope["method"],
        "RAW_URI": _latin1(scope["raw_path"]) + ("?" + query if query else ""),
        "PATH_INFO": scope["path"],
        "QUERY_STRING": query,
        "SCRIPT_NAME": scope["root_path"],
        "SERVER_PROTOCOL": "HTTP/" + scope["http_version"],
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": content_length,
        "REMOTE_ADDR": scope["client"][0] if scope["client"] else None,
        "wsgi.url_scheme": scope["scheme"],
        "headers": sorted(headers.items()),
    }
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # The body could not be framed: the server answers it itself.
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen["body"] = base64.b64encode(body).decode()
    out = json.dumps(seen, sort_keys=True).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": out})
