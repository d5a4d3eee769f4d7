"""Dirty apps for tests/python/test_dirty.py: state kept in the instance,
slow, crashing and streaming actions, and a class that limits how many
dirty workers load it."""

import asyncio
import gc
import os
import time

from ferrocorn.dirty import DirtyApp, stash


class Counter(DirtyApp):
    def init(self):
        self.n = 0
        self.loaded_in = os.getpid()

    def incr(self, by=1):
        self.n += by
        return {"n": self.n, "pid": os.getpid()}

    def pid(self):
        return os.getpid()

    def frozen(self):
        return gc.get_freeze_count()

    def echo(self, *args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    def sleep(self, seconds):
        time.sleep(seconds)
        return "slept %s" % seconds

    def crash(self):
        # Dies mid-call, as a segfault or the OOM killer would end it.
        os._exit(9)

    def count(self, n):
        yield from range(n)

    async def acount(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield "a%d" % i

    def slow_stream(self, n, pause):
        for i in range(n):
            time.sleep(pause)
            yield i

    def size(self, data):
        return len(data)

    def big(self, n):
        return b"x" * n

    def fail(self, message):
        raise ValueError(message)

    def remember(self, key, value):
        stash.put("dirty_test", key, value)
        return True

    def recall(self, key):
        return stash.get("dirty_test", key)


class Limited(DirtyApp):
    """Loaded by one dirty worker only (the class says so)."""

    workers = 1

    def pid(self):
        return os.getpid()


class Other(DirtyApp):
    def pid(self):
        return os.getpid()


class Broken(DirtyApp):
    """Cannot start: its dirty workers fail to boot."""

    def init(self):
        raise RuntimeError("no model file")
