"""HTTP front ends for tests/python/test_dirty.py. A POST body is a JSON
call: {"op": "execute"|"stream"|"stash_put"|"stash_get", "app", "action",
"args", "kwargs", "timeout"}; the answer is {"result": ...} or {"error":
class name, "message": str(e)}, with the HTTP worker's pid. `app` is the
WSGI app (sync, gthread), `asgi` the asyncio one (execute_async,
stream_async). DIRTY_API=gunicorn makes the calls with Gunicorn 27's own
`gunicorn.dirty` client instead of ferrocorn's."""

import json
import os

if os.environ.get("DIRTY_API") == "gunicorn":
    from gunicorn.dirty import get_dirty_client, get_dirty_client_async, stash
else:
    from ferrocorn.dirty import get_dirty_client, get_dirty_client_async, stash


def _shown(value):
    # bytes do not go into JSON: their size tells enough.
    if isinstance(value, bytes):
        return {"bytes": len(value)}
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value


def _call(call):
    op = call.get("op", "execute")
    if op == "stash_put":
        stash.put(call["table"], call["key"], call["value"])
        return True
    if op == "stash_get":
        return stash.get(call["table"], call["key"])
    client = get_dirty_client(timeout=call.get("timeout", 30.0))
    args, kwargs = call.get("args", []), call.get("kwargs", {})
    if call.get("big_arg"):
        args = [b"y" * call["big_arg"]]
    if op == "stream":
        return [_shown(c) for c in client.stream(call["app"], call["action"], *args, **kwargs)]
    return _shown(client.execute(call["app"], call["action"], *args, **kwargs))


def _answer(call):
    try:
        out = {"result": _call(call)}
    except Exception as e:
        out = {"error": type(e).__name__, "message": str(e)}
    out["worker"] = os.getpid()
    return json.dumps(out).encode()


def app(environ, start_response):
    if environ["PATH_INFO"] == "/ping":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pong"]
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = _answer(json.loads(environ["wsgi.input"].read(size) or b"{}"))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def _call_async(call):
    op = call.get("op", "execute")
    if op.startswith("stash_"):
        return _call(call)
    client = await get_dirty_client_async(timeout=call.get("timeout", 30.0))
    args, kwargs = call.get("args", []), call.get("kwargs", {})
    if call.get("big_arg"):
        args = [b"y" * call["big_arg"]]
    if op == "stream":
        return [_shown(c) async for c in client.stream_async(call["app"], call["action"], *args, **kwargs)]
    return _shown(await client.execute_async(call["app"], call["action"], *args, **kwargs))


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    parts = [await receive()]
    while parts[-1].get("more_body"):
        parts.append(await receive())
    body = b"".join(p.get("body", b"") for p in parts)
    if scope["path"] == "/ping":
        out = b"pong"
    else:
        call = json.loads(body or b"{}")
        try:
            answer = {"result": await _call_async(call)}
        except Exception as e:
            answer = {"error": type(e).__name__, "message": str(e)}
        answer["worker"] = os.getpid()
        out = json.dumps(answer).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})
