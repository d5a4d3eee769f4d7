"""A Tornado front end for tests/python/test_dirty.py (`-k tornado`): the
same JSON calls as dirty_web.py, made from a native RequestHandler on
Tornado's asyncio loop with the async client."""

import json
import os

from dirty_web import _call_async
from tornado import web


class Call(web.RequestHandler):
    async def post(self):
        call = json.loads(self.request.body or b"{}")
        try:
            answer = {"result": await _call_async(call)}
        except Exception as e:
            answer = {"error": type(e).__name__, "message": str(e)}
        answer["worker"] = os.getpid()
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(answer))


class Ping(web.RequestHandler):
    def get(self):
        self.write("pong")


app = web.Application([(r"/ping", Ping), (r"/", Call)])
