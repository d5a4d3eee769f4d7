"""An app whose import takes SLOW_BOOT seconds (default 3): its workers are
forked, alive and not booted for that long, which /readyz must tell."""

import os
import time

time.sleep(float(os.environ.get("SLOW_BOOT", "3")))


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"booted\n"]
