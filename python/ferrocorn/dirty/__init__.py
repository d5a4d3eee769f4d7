"""Dirty arbiters: a separate pool of processes for long, blocking or
stateful work (model inference, heavy computation), called from request
handlers. The names are Gunicorn 27's ``gunicorn.dirty``; an app written
against either runs under ferrocorn.

    # gunicorn.conf.py
    dirty_apps = ["myapp.ml:MLApp"]
    dirty_workers = 2

    # a view
    from ferrocorn.dirty import get_dirty_client
    result = get_dirty_client().execute("myapp.ml:MLApp", "predict", data)

See docs/dirty.md.
"""

from ferrocorn.dirty import stash
from ferrocorn.dirty.app import DirtyApp
from ferrocorn.dirty.client import (
    DirtyClient,
    close_dirty_client,
    close_dirty_client_async,
    get_dirty_client,
    get_dirty_client_async,
    set_dirty_socket_path,
)
from ferrocorn.dirty.errors import (
    DirtyAppError,
    DirtyAppNotFoundError,
    DirtyConnectionError,
    DirtyError,
    DirtyNoWorkersAvailableError,
    DirtyProtocolError,
    DirtyTimeoutError,
    DirtyWorkerError,
)
from ferrocorn.dirty.stash import StashClient, StashError, StashKeyNotFoundError, StashTable, StashTableNotFoundError

__all__ = [
    "DirtyApp",
    "DirtyAppError",
    "DirtyAppNotFoundError",
    "DirtyClient",
    "DirtyConnectionError",
    "DirtyError",
    "DirtyNoWorkersAvailableError",
    "DirtyProtocolError",
    "DirtyTimeoutError",
    "DirtyWorkerError",
    "StashClient",
    "StashError",
    "StashKeyNotFoundError",
    "StashTable",
    "StashTableNotFoundError",
    "close_dirty_client",
    "close_dirty_client_async",
    "get_dirty_client",
    "get_dirty_client_async",
    "set_dirty_socket_path",
    "stash",
]
