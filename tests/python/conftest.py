"""pytest fixtures for the end-to-end tests: `server` starts real
`ferrocorn` processes (see helpers.Server) and stops each by its own pid
(TERM, then KILL) when the test ends; `worker_class` runs a module's tests
under each worker type.
"""

import pytest
from helpers import Server


@pytest.fixture(params=["sync", "gthread"])
def worker_class(request):
    """Test modules that `usefixtures("worker_class")` run every test under
    each worker type; `server()` then passes `-k <worker_class>`."""
    return request.param


@pytest.fixture
def server(tmp_path, request):
    started = []
    worker = request.getfixturevalue("worker_class") if "worker_class" in request.fixturenames else None

    def start(*args, **kwargs):
        if worker and "-k" not in args:
            args = ("-k", worker) + tuple(args)
        s = Server(args, tmp_path, **kwargs)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A test CA and certificates it signed (helpers.make_tls_files)."""
    from helpers import make_tls_files

    return make_tls_files(tmp_path_factory.mktemp("tls"))
