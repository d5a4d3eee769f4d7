"""The base class of dirty apps (Gunicorn 27's ``DirtyApp``): a dirty
worker makes one instance of each app it loads, calls ``init()`` once,
``app(action, *args, **kwargs)`` for every call, and ``close()`` when it
stops. Instance state lives as long as the worker.

``workers = N`` on the class limits how many dirty workers load the app
(``module:Class:N`` in ``dirty_apps`` overrides it); ``stashes`` lists the
stash tables it uses. With ``dirty_threads`` above 1, calls run on several
threads at once and the app must be thread-safe.
"""

from __future__ import annotations

import importlib
from typing import Any

from ferrocorn.dirty.errors import DirtyAppError, DirtyAppNotFoundError


class DirtyApp:
    #: How many dirty workers load this app; None for all of them.
    workers: int | None = None

    def init(self) -> None:
        """Called once in the dirty worker, after the instance is made:
        load models and open connections here (after fork, so anything not
        fork-safe is fine)."""

    def __call__(self, action: str, *args: Any, **kwargs: Any) -> Any:
        """Runs the method named `action`. A generator (or async
        generator) it returns is streamed to the caller chunk by chunk."""
        method = getattr(self, action, None)
        if method is None or action.startswith("_"):
            raise ValueError("Unknown action: %s" % (action,))
        return method(*args, **kwargs)

    def close(self) -> None:
        """Called when the dirty worker stops."""


def _class_of(import_path: str) -> type:
    module_name, _, class_name = import_path.rpartition(":")
    if not module_name:
        raise DirtyAppError(
            "Invalid import path format: %s. Expected 'module.path:ClassName'" % import_path, app_path=import_path
        )
    try:
        found = importlib.import_module(module_name).__dict__
    except ImportError as e:
        raise DirtyAppNotFoundError(import_path) from e
    if class_name not in found:
        raise DirtyAppNotFoundError(import_path)
    cls = found[class_name]
    if not isinstance(cls, type):
        raise DirtyAppError("%s is not a class" % import_path, app_path=import_path)
    return cls


def load_dirty_app(import_path: str) -> Any:
    """An instance of the class `import_path` names (``module:Class``)."""
    cls = _class_of(import_path)
    try:
        app = cls()
    except Exception as e:
        raise DirtyAppError("Failed to instantiate %s: %s" % (import_path, e), app_path=import_path) from e
    for name in ("init", "__call__", "close"):
        if not callable(getattr(app, name, None)):
            raise DirtyAppError("%s is missing required method: %s" % (import_path, name), app_path=import_path)
    return app


def load_dirty_apps(import_paths: list[str]) -> dict[str, Any]:
    return {path: load_dirty_app(path) for path in import_paths}


def get_app_workers_attribute(import_path: str) -> int | None:
    """The class's ``workers`` attribute (None: every worker)."""
    return getattr(_class_of(import_path), "workers", None)
