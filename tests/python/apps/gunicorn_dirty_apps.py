"""A dirty app written against Gunicorn 27's `gunicorn.dirty`, as an app
made for Gunicorn would be: tests/python/test_dirty.py runs it unchanged
under ferrocorn and under Gunicorn and compares the answers."""

from gunicorn.dirty import DirtyApp


class Model(DirtyApp):
    def init(self):
        self.calls = 0

    def predict(self, x, scale=1):
        self.calls += 1
        return {"y": x * scale, "calls": self.calls}

    def tokens(self, text):
        yield from text.split()

    def fail(self):
        raise RuntimeError("model broke")
