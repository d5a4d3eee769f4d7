"""Worker classes as deployments write them: UvicornWorker subclasses with
CONFIG_KWARGS, one that overrides a method, and a class that is no worker."""

from uvicorn.workers import UvicornWorker


class Tuned(UvicornWorker):
    CONFIG_KWARGS = {  # noqa: RUF012 (uvicorn's own spelling)
        "loop": "asyncio",
        "http": "h11",
        "lifespan": "on",
        "root_path": "/api",
        "timeout_keep_alive": 1,
        "server_header": False,
        "limit_concurrency": 100,
    }


class BadValue(UvicornWorker):
    CONFIG_KWARGS = {"lifespan": "sometimes"}  # noqa: RUF012


class Overrides(UvicornWorker):
    def run(self):
        raise RuntimeError("never called by ferrocorn")


class NotAWorker:
    pass
