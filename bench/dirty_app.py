"""The app bench/dirty.py serves: every request makes one trivial dirty
call. DIRTY_API names whose client the HTTP side uses (ferrocorn's under
ferrocorn, Gunicorn's under Gunicorn); the dirty app itself is written
against gunicorn.dirty, which runs under both."""

import os

from gunicorn.dirty import DirtyApp

if os.environ.get("DIRTY_API") == "ferrocorn":
    from ferrocorn.dirty import get_dirty_client, get_dirty_client_async
else:
    from gunicorn.dirty import get_dirty_client, get_dirty_client_async


class Echo(DirtyApp):
    def echo(self, value):
        return value


def app(environ, start_response):
    body = str(get_dirty_client().execute("dirty_app:Echo", "echo", 1)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    client = await get_dirty_client_async()
    body = str(await client.execute_async("dirty_app:Echo", "echo", 1)).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
