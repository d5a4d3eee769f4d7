"""Reading a Gunicorn-style config file: a Python file (or ``python:module``)
whose global names are settings. Executed the way Gunicorn executes it, as a
module named ``__config__``, so config files behave identically."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any


def load(location: str) -> dict[str, Any]:
    if location.startswith("python:"):
        return vars(importlib.import_module(location[len("python:") :]))
    filename = location[len("file:") :] if location.startswith("file:") else location
    if not os.path.exists(filename):
        raise RuntimeError("%r doesn't exist" % filename)
    module_name = "__config__"
    if os.path.splitext(filename)[1] in (".py", ".pyc"):
        spec = importlib.util.spec_from_file_location(module_name, filename)
    else:
        sys.stderr.write("!!!\n!!! WARNING: configuration file should have a valid Python extension.\n!!!\n\n")
        loader = importlib.machinery.SourceFileLoader(module_name, filename)
        spec = importlib.util.spec_from_file_location(module_name, filename, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = mod
    spec.loader.exec_module(mod)
    return vars(mod)
