"""The errors of ``ferrocorn.dirty``, with the names, attributes and
dictionary form of Gunicorn 27's ``gunicorn.dirty.errors``: an error raised
in a dirty worker or by the dirty arbiter travels as
``{"error_type", "message", "details"}`` and is raised again, as the same
class, in the caller."""

from __future__ import annotations

from typing import Any


class DirtyError(Exception):
    """Every dirty error: a message and a dict of details."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        self.message = message
        self.details = details or {}
        super().__init__(message)

    def __str__(self) -> str:
        return "%s: %s" % (self.message, self.details) if self.details else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"error_type": type(self).__name__, "message": self.message, "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DirtyError:
        """The error an answer describes, as its own class (DirtyError for
        a name this module does not know), with the attributes that class
        has, read from the details."""
        kind = _CLASSES.get(data.get("error_type", "DirtyError"), DirtyError)
        err = Exception.__new__(kind)
        err.message = data.get("message", "Unknown error")
        err.details = data.get("details") or {}
        Exception.__init__(err, err.message)
        for attr in _ATTRIBUTES.get(kind, ()):
            setattr(err, attr, err.details.get(attr))
        return err


def _details(**fields: Any) -> dict[str, Any]:
    """The fields that carry something, as Gunicorn keeps them."""
    return {k: v for k, v in fields.items() if v}


class DirtyTimeoutError(DirtyError):
    """A call took longer than allowed (``dirty_timeout``, or the client's
    own timeout)."""

    def __init__(self, message: str = "Operation timed out", timeout: float | None = None) -> None:
        super().__init__(message, _details(timeout=timeout))
        self.timeout = timeout


class DirtyConnectionError(DirtyError):
    """The dirty arbiter could not be reached, or the connection broke."""

    def __init__(self, message: str = "Connection failed", socket_path: str | None = None) -> None:
        super().__init__(message, _details(socket_path=socket_path))
        self.socket_path = socket_path


class DirtyWorkerError(DirtyError):
    """A dirty worker failed (it died during the call, or was given
    something it cannot take)."""

    def __init__(self, message: str, worker_id: int | None = None, traceback: str | None = None) -> None:
        details = _details(traceback=traceback)
        if worker_id is not None:
            details = {"worker_id": worker_id, **details}
        super().__init__(message, details)
        self.worker_id = worker_id
        self.traceback = traceback


class DirtyAppError(DirtyError):
    """The dirty app raised; ``traceback`` is the worker's."""

    def __init__(
        self, message: str, app_path: str | None = None, action: str | None = None, traceback: str | None = None
    ) -> None:
        super().__init__(message, _details(app_path=app_path, action=action, traceback=traceback))
        self.app_path = app_path
        self.action = action
        self.traceback = traceback


class DirtyAppNotFoundError(DirtyAppError):
    """The worker that got the call does not load that app."""

    def __init__(self, app_path: str) -> None:
        super().__init__("Dirty app not found: %s" % (app_path,), app_path=app_path)


class DirtyNoWorkersAvailableError(DirtyError):
    """No dirty worker loads the app now (none configured, or all of those
    that load it are down). Catch it to degrade gracefully."""

    def __init__(self, app_path: str, message: str | None = None) -> None:
        if message is None:
            message = "No workers available for app: %s" % (app_path,)
        super().__init__(message, {"app_path": app_path})
        self.app_path = app_path


class DirtyProtocolError(DirtyError):
    """Bytes on the dirty socket that are not the protocol."""

    def __init__(self, message: str = "Protocol error", raw_data: Any = None) -> None:
        details = {}
        if raw_data is not None:
            shown = raw_data[:100].hex() if isinstance(raw_data, bytes) else raw_data
            details["raw_data"] = str(shown)[:200]
        super().__init__(message, details)


# Every class an answer may name, by name (the subclasses of DirtyError
# defined above, which are the protocol's).
_CLASSES: dict[str, type[DirtyError]] = {DirtyError.__name__: DirtyError}
_CLASSES.update((c.__name__, c) for c in DirtyError.__subclasses__())
_CLASSES.update((c.__name__, c) for c in DirtyAppError.__subclasses__())

# What each class carries as attributes besides message and details.
_ATTRIBUTES: dict[type[DirtyError], tuple[str, ...]] = {
    DirtyTimeoutError: ("timeout",),
    DirtyConnectionError: ("socket_path",),
    DirtyWorkerError: ("worker_id", "traceback"),
    DirtyAppError: ("app_path", "action", "traceback"),
    DirtyAppNotFoundError: ("app_path", "action", "traceback"),
    DirtyNoWorkersAvailableError: ("app_path",),
}
