"""The Python half of the dirty arbiter: the stash's tables (kept as Python
objects, so keys, equality and ``fnmatch`` patterns behave as in Gunicorn
27), and reading the ``workers`` attribute of app classes for the
allocation (run in a short-lived forked process, so the arbiter never
imports app code its workers should import fresh)."""

from __future__ import annotations

import fnmatch
from typing import Any

from ferrocorn.dirty import protocol
from ferrocorn.dirty.app import get_app_workers_attribute


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"error_type": error_type, "message": message, "details": {}}


class Store:
    """The stash's tables: name -> {key: value}, in insertion order."""

    def __init__(self) -> None:
        self.tables: dict[Any, dict[Any, Any]] = {}

    def handle(self, message: Any) -> tuple[bool, Any]:
        """(True, result) or (False, error dict) for one stash message."""
        if not isinstance(message, dict):
            return False, _error("DirtyError", "Stash message is not a dict")
        try:
            return self._apply(message)
        except Exception as e:
            # An unhashable key, say: the operation fails, the store stays.
            return False, _error("DirtyError", str(e))

    def _apply(self, m: dict[str, Any]) -> tuple[bool, Any]:
        op, name, key = m.get("op"), m.get("table", ""), m.get("key")
        table = self.tables.get(name)
        if op == protocol.STASH_OP_PUT:
            self.tables.setdefault(name, {})[key] = m.get("value")
            return True, True
        if op == protocol.STASH_OP_GET:
            if table is None or key not in table:
                return False, _error("StashKeyNotFoundError", "Key not found: %s" % (key,))
            return True, table[key]
        if op == protocol.STASH_OP_DELETE:
            if table is None or key not in table:
                return True, False
            del table[key]
            return True, True
        if op == protocol.STASH_OP_KEYS:
            keys = list(table or ())
            pattern = m.get("pattern")
            if pattern:
                keys = [k for k in keys if fnmatch.fnmatch(str(k), pattern)]
            return True, keys
        if op == protocol.STASH_OP_CLEAR:
            if table is not None:
                table.clear()
            return True, True
        if op == protocol.STASH_OP_INFO:
            if table is None:
                return False, _error("StashTableNotFoundError", "Table not found: %s" % (name,))
            return True, {"size": len(table), "table": name}
        if op == protocol.STASH_OP_ENSURE:
            self.tables.setdefault(name, {})
            return True, True
        if op == protocol.STASH_OP_DELETE_TABLE:
            return True, self.tables.pop(name, None) is not None
        if op == protocol.STASH_OP_TABLES:
            return True, list(self.tables)
        if op == protocol.STASH_OP_EXISTS:
            if table is None:
                return True, False
            return True, True if key is None else key in table
        return False, _error("DirtyError", "Unknown stash operation: %s" % (op,))


def workers_attributes(paths: list[str]) -> list[Any]:
    """For each ``module:Class``, its ``workers`` attribute: an int, None,
    or the text of why it could not be read."""
    out: list[Any] = []
    for path in paths:
        try:
            value = get_app_workers_attribute(path)
        except Exception as e:
            out.append("%s: %s" % (type(e).__name__, e))
            continue
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            out.append("workers attribute is %r, not an int" % (value,))
            continue
        out.append(value)
    return out
