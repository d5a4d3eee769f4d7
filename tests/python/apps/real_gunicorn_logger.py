"""Gunicorn's own logger class, unmodified, for tests that compare
ferrocorn's Rust-written logs with what Gunicorn's code writes."""

from gunicorn.glogging import Logger


class GunicornLogger(Logger):
    pass
