"""``-k package.module.Class``: what ferrocorn can do with a Python worker
class, found by importing it in the master, as Gunicorn does.

A subclass of uvicorn's ``UvicornWorker`` that only sets ``CONFIG_KWARGS``
is served by ferrocorn's native asgi worker: its keyword arguments are
mapped onto the settings that do the same there, and the ones with no
counterpart are named (the master logs them in one warning). Any other
subclass of Gunicorn's worker base runs in Python under ferrocorn's master
(``_foreign.py``).
"""

from __future__ import annotations

import importlib
from typing import Any

# uvicorn's worker classes (the deprecated uvicorn.workers and the
# uvicorn-worker package).
UVICORN_BASES = (("uvicorn.workers", "UvicornWorker"), ("uvicorn_worker", "UvicornWorker"))

# CONFIG_KWARGS the asgi worker does the same as, whatever their value:
# ferrocorn's engine is the HTTP and WebSocket implementation, whichever
# uvicorn would have picked.
SAME_ANYWAY = {
    "http": ("auto", "h11", "httptools"),
    "ws": ("auto", "websockets", "websockets-sansio", "wsproto"),
}

# CONFIG_KWARGS that are ferrocorn (Gunicorn) settings under another name.
RENAMED = {
    "timeout_keep_alive": "keepalive",
    "limit_max_requests": "max_requests",
    "timeout_graceful_shutdown": "graceful_timeout",
    "forwarded_allow_ips": "forwarded_allow_ips",
    "root_path": "root_path",
    "backlog": "backlog",
    "ws_max_size": "websocket_max_message_size",
}

# Settings whose values are uvicorn's too. Another loop (uvicorn also
# takes "none" or "module:factory") has no counterpart; another lifespan
# value is invalid for uvicorn as well, and the setting's check says so.
CHOICES = {
    "loop": ("asgi_loop", ("auto", "asyncio", "uvloop")),
    "lifespan": ("asgi_lifespan", None),
}


class WorkerClassError(Exception):
    """The class cannot be loaded, or is no worker class ferrocorn can run."""


def load(path: str) -> type:
    """Imports ``package.module.Class`` (Gunicorn's ``util.load_class`` for a
    dotted path)."""
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise WorkerClassError("'%s' is not a class path (package.module.Class)" % path)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise WorkerClassError("cannot import %s: %s: %s" % (module_name, type(e).__name__, e)) from None
    try:
        cls = getattr(module, name)
    except AttributeError:
        raise WorkerClassError("module %s has no attribute %s" % (module_name, name)) from None
    if not isinstance(cls, type):
        raise WorkerClassError("%s is not a class" % path)
    return cls


def _uvicorn_base(cls: type) -> type | None:
    for module_name, name in UVICORN_BASES:
        try:
            base = getattr(importlib.import_module(module_name), name)
        except Exception:
            continue
        if issubclass(cls, base):
            return base
    return None


def _overridden(cls: type, base: type) -> list[str]:
    """Methods (and other attributes) the classes between ``cls`` and
    ``base`` define, besides CONFIG_KWARGS and the class machinery."""
    found = []
    for klass in cls.__mro__:
        if klass is base:
            break
        for name, value in vars(klass).items():
            if name == "CONFIG_KWARGS" or (name.startswith("__") and name.endswith("__")):
                continue
            if callable(value) or isinstance(value, (property, staticmethod, classmethod)):
                found.append(name)
    return found


def describe(path: str) -> tuple[str, Any]:
    """What the class is, for the master:

    - ``("uvicorn", (settings, unmapped))``: a UvicornWorker subclass served
      natively; ``settings`` are (setting name, value) pairs to apply,
      ``unmapped`` the CONFIG_KWARGS keys with no counterpart;
    - ``("gunicorn", None)``: another Gunicorn worker class, run as it is;
    - ``("refused", why)``: a class ferrocorn cannot run, and why.
    """
    try:
        cls = load(path)
    except WorkerClassError as e:
        return ("refused", str(e))
    base = _uvicorn_base(cls)
    if base is not None and not _overridden(cls, base):
        return ("uvicorn", map_config_kwargs(dict(getattr(cls, "CONFIG_KWARGS", {}) or {})))
    gunicorn_base = _gunicorn_base()
    if gunicorn_base is not None and issubclass(cls, gunicorn_base):
        # Its own code (a UvicornWorker subclass that overrides methods
        # included) runs in Python under ferrocorn's master.
        return ("gunicorn", None)
    if gunicorn_base is None:
        why = "it is no worker class ferrocorn knows, and gunicorn, whose worker base class it would need, is not installed"
    else:
        why = "it is not a subclass of gunicorn.workers.base.Worker"
    return ("refused", why)


def _gunicorn_base() -> type | None:
    try:
        from gunicorn.workers.base import Worker
    except Exception:
        return None
    return Worker


def map_config_kwargs(kwargs: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    settings: list[tuple[str, Any]] = []
    unmapped: list[str] = []
    for key, value in kwargs.items():
        if key in SAME_ANYWAY:
            if value not in SAME_ANYWAY[key]:
                unmapped.append("%s=%r" % (key, value))
        elif key in CHOICES:
            setting, allowed = CHOICES[key]
            if allowed is None or value in allowed:
                settings.append((setting, value))
            else:
                unmapped.append("%s=%r" % (key, value))
        elif key in RENAMED:
            if key == "forwarded_allow_ips" and value is None:
                continue  # uvicorn's default: the environment's or 127.0.0.1, as ferrocorn's
            settings.append((RENAMED[key], value))
        elif key == "proxy_headers":
            if not value:
                # Trust no proxy's headers, as uvicorn then does.
                settings.append(("forwarded_allow_ips", ""))
        elif key in ("app", "log_config") and value is None:
            continue  # what UvicornWorker itself passes
        else:
            unmapped.append("%s=%r" % (key, value))
    return settings, unmapped
