"""``--spew``: print every line of Python as it runs.

The output is that of Gunicorn's ``gunicorn.debug.spew``: one
``module:lineno: source`` line on stdout per line executed and, with
``show_values``, a tab-indented line of ``name=value`` for the words of that
line which the frame's globals or locals hold. ferrocorn's master and HTTP
engine are Rust, so what is traced is the Python that runs: the
application, hooks and configuration code.
"""

from __future__ import annotations

import inspect
import linecache
import re
import sys
from collections.abc import Collection
from types import FrameType
from typing import Any

__all__ = ["spew", "unspew"]

# A line's words are the candidates for name=value.
_NON_WORD = re.compile(r"\W+")


def _source_path(path: str) -> str:
    # a module loaded from bytecode names the .pyc; its text is beside it
    return path[:-1] if path.endswith((".pyc", ".pyo")) else path


def _text_from_code(frame: FrameType) -> str:
    """The current line of code that has no module file (exec'd strings,
    interactive input), or a placeholder naming it."""
    try:
        lines, first = inspect.getsourcelines(frame)
        return lines[frame.f_lineno - first]
    except (OSError, IndexError):
        return "Unknown code named [%s].  VM instruction #%d" % (frame.f_code.co_name, frame.f_lasti)


def _module_and_text(frame: FrameType) -> tuple[str, str]:
    module_globals = frame.f_globals
    if "__file__" not in module_globals:
        return "[unknown]", _text_from_code(frame)
    text = linecache.getline(_source_path(module_globals["__file__"]), frame.f_lineno)
    return module_globals["__name__"], text


def _known_values(frame: FrameType, text: str) -> list[str]:
    """``name=value`` for each word of `text` the frame knows; a name both
    global and local is shown twice, global first."""
    found = []
    for word in _NON_WORD.split(text):
        found.extend("%s=%r" % (word, names[word]) for names in (frame.f_globals, frame.f_locals) if word in names)
    return found


class Spew:
    """The trace function: follows every frame, reports ``line`` events of
    the modules in `trace_names` (all when None)."""

    def __init__(self, trace_names: Collection[str] | None = None, show_values: bool = True) -> None:
        self.trace_names = trace_names
        self.show_values = show_values

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Spew:
        if event == "line":
            self._report(frame)
        return self

    def _report(self, frame: FrameType) -> None:
        module, text = _module_and_text(frame)
        if self.trace_names is not None and module not in self.trace_names:
            return
        print("%s:%s: %s" % (module, frame.f_lineno, text.rstrip()))
        values = _known_values(frame, text) if self.show_values else []
        if values:
            print("\t" + " ".join(values))


def spew(trace_names: Collection[str] | None = None, show_values: bool = False) -> None:
    """Trace the calling thread's Python from now on, to stdout."""
    sys.settrace(Spew(trace_names, show_values))


def unspew() -> None:
    """Stop the tracing :func:`spew` started."""
    sys.settrace(None)
