"""pytest fixtures for the end-to-end tests: `server` starts real
`ferrocorn` processes (see helpers.Server) and stops each by its own pid
(TERM, then KILL) when the test ends; `worker_class` runs a module's tests
under each worker type.

With FERROCORN_CI=1 (set by .ci/run) every test must run: one that skips
(a tool or package missing on the machine) fails instead, so that CI cannot
pass on tests it never ran.
"""

import os

import pytest
from helpers import Server

IN_CI = os.environ.get("FERROCORN_CI") == "1"


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


def _skip_is_failure(report):
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = "skipped under FERROCORN_CI=1, where every test must run: %s" % (report.longrepr,)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _skip_is_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _skip_is_failure(outcome.get_result())
