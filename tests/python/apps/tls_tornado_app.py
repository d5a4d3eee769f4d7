"""tls_app's routes as a Tornado application (`-k tornado`): /info answers
the scheme Tornado's request sees, /big?N sends N bytes in flushed chunks,
/echo answers the body's length and digest, /ws echoes WebSocket messages."""

import hashlib
import json

from tornado import web, websocket

_CHUNK = b"0123456789abcdef" * 4096


class Info(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"scheme": self.request.protocol}))


class Big(web.RequestHandler):
    async def get(self):
        n = int(self.request.query or "1000000")
        self.set_header("Content-Length", str(n))
        while n > 0:
            part = _CHUNK[: min(n, len(_CHUNK))]
            n -= len(part)
            self.write(part)
            await self.flush()


class Echo(web.RequestHandler):
    def post(self):
        data = self.request.body
        self.write("%d %s" % (len(data), hashlib.sha256(data).hexdigest()))


class Ws(websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


app = web.Application([("/info", Info), ("/big", Big), ("/echo", Echo), ("/ws", Ws)])
