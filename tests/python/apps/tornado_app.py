"""A Tornado application for `-k tornado`: handlers of each kind the worker
must serve natively.

- /              RequestHandler: "hello"
- /request       JSON of what the handler sees (remote_ip, protocol, uri, ...)
- /echo          POST: the body back
- /stream?n=N    N chunks, each flushed, 10 ms apart
- /upload        @stream_request_body: how many bytes and chunks arrived
- /status        set_status(418) with a custom reason
- /ws            WebSocketHandler: echoes messages; "close" closes with 4000
"""

import asyncio
import json
import os

from tornado import web, websocket


class Main(web.RequestHandler):
    def get(self):
        self.set_header("X-Worker-Pid", str(os.getpid()))
        self.write("hello")


class Request(web.RequestHandler):
    def get(self):
        r = self.request
        self.write(
            {
                "remote_ip": r.remote_ip,
                "protocol": r.protocol,
                "uri": r.uri,
                "path": r.path,
                "query": r.query,
                "host": r.host,
                "version": r.version,
                "x_custom": r.headers.get("X-Custom"),
            }
        )


class Echo(web.RequestHandler):
    def post(self):
        self.write(self.request.body)


class Stream(web.RequestHandler):
    async def get(self):
        for i in range(int(self.get_argument("n", "5"))):
            self.write("chunk %d\n" % i)
            await self.flush()
            await asyncio.sleep(0.01)


@web.stream_request_body
class Upload(web.RequestHandler):
    def prepare(self):
        self.size = 0
        self.chunks = 0

    async def data_received(self, chunk):
        self.size += len(chunk)
        self.chunks += 1
        await asyncio.sleep(0)

    def put(self):
        self.write(json.dumps({"size": self.size, "chunks": self.chunks}))


class Teapot(web.RequestHandler):
    def get(self):
        self.set_status(418, "I'm a teapot")
        self.write("short and stout")


class Echo_WS(websocket.WebSocketHandler):
    def open(self):
        self.write_message("welcome")

    def on_message(self, message):
        if message == "close":
            self.close(4000, "asked")
        else:
            self.write_message(message, binary=isinstance(message, bytes))


app = web.Application(
    [
        (r"/", Main),
        (r"/request", Request),
        (r"/echo", Echo),
        (r"/stream", Stream),
        (r"/upload", Upload),
        (r"/status", Teapot),
        (r"/ws", Echo_WS),
    ]
)
