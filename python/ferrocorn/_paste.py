"""``--paste``: a PasteDeploy ini file as the application, loaded the way
Gunicorn's ``gunicorn.app.pasterapp`` loads it (PasteDeploy must be
installed: ``pip install PasteDeploy``)."""

from __future__ import annotations

import os
from typing import Any, Callable


def load(config_uri: str, global_conf: dict[str, str]) -> Callable[..., Any]:
    from paste.deploy import loadapp

    if ":" not in config_uri:
        config_uri = "config:%s" % config_uri
    return loadapp(config_uri, name=None, relative_to=os.getcwd(), global_conf=global_conf)
