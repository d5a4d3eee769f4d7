"""--reload: an edited module restarts the workers; a syntax error is served
as a 500 page with the traceback instead of a crash loop, and fixing it
reloads again; extra files and glob patterns are watched too; a change is
reported once, however long the worker takes to stop."""

import os
import threading
import time

import pytest
from helpers import run_ferrocorn, wait_for

APP = """
import time


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(3)
    body = b"%s"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def write_app(path, version):
    path.write_text(APP % version)
    # the poll engine compares modification times: make each edit newer
    now = time.time() + write_app.bump
    write_app.bump += 1
    os.utime(path, (now, now))


write_app.bump = 1


def body(s):
    try:
        status, _, data = s.request(timeout=3)
        return status, data.decode("utf-8", "replace")
    except OSError:
        return None, ""


def reloading(server, tmp_path, engine, name, hooks=""):
    """A --reload server of `name`:app, version v1, and optionally a config
    file with `hooks`, both in a directory apart from the server's log
    files (the inotify engine, like Gunicorn's, reacts to any change in a
    watched directory); (server, the module's file, the first worker)."""
    src = tmp_path / "src"
    src.mkdir()
    module = src / ("%s.py" % name)
    write_app(module, "v1")
    args = ["--reload", "--reload-engine", engine, "--pythonpath", str(src)]
    if hooks:
        (src / "hooks.py").write_text(hooks)
        args += ["-c", str(src / "hooks.py")]
    s = server(*args, "%s:app" % name)
    (first,) = s.wait_workers(1)
    return s, module, first


@pytest.mark.parametrize("engine", ["poll", "inotify"])
def test_reload_after_an_edit_and_a_syntax_error(server, tmp_path, engine):
    s, module, first = reloading(server, tmp_path, engine, "reloadme")
    assert body(s) == (200, "v1")
    time.sleep(1.2)  # the watcher has recorded the files

    write_app(module, "v2")
    wait_for(lambda: body(s) == (200, "v2"), timeout=15, what="the edited app")
    assert first not in s.workers()
    assert "Worker reloading: " in s.log() and "reloadme.py modified" in s.log()
    assert "Reloader is on. Use in development only!" in s.log()

    time.sleep(1.2)
    module.write_text("def app(environ, start_response:\n")
    os.utime(module, (time.time() + 10, time.time() + 10))
    _status, text = wait_for(
        lambda: (lambda r: r if r[0] == 500 else None)(body(s)), timeout=15, what="the syntax error page"
    )
    assert "SyntaxError" in text and "reloadme.py" in text
    assert "SyntaxError" in s.log()
    assert s.proc.poll() is None  # the master lives on

    time.sleep(1.2)
    module.write_text(APP % "v3")
    os.utime(module, (time.time() + 20, time.time() + 20))
    wait_for(lambda: body(s) == (200, "v3"), timeout=15, what="the fixed app")
    assert s.proc.poll() is None


@pytest.mark.parametrize("engine", ["poll", "inotify"])
def test_a_change_is_reported_once(server, tmp_path, engine):
    # Gunicorn's watcher thread ends with its first report: a worker that
    # takes seconds to finish its request logs the change and runs
    # worker_int once, however many more changes or events follow.
    hooks = "def worker_int(worker):\n    worker.log.info('worker_int ran')\n"
    s, module, first = reloading(server, tmp_path, engine, "reportonce", hooks)
    time.sleep(1.2)
    slow = threading.Thread(target=s.request, kwargs={"path": "/slow"})
    slow.start()
    time.sleep(0.3)
    write_app(module, "v2")
    time.sleep(1.2)
    write_app(module, "v3")
    s.wait_workers(1, exclude=[first])
    slow.join()
    assert s.log().count("Worker reloading: ") == 1
    assert s.log().count("worker_int ran") == 1


def test_reload_extra_files_and_globs(server, tmp_path):
    module = tmp_path / "reloadme2.py"
    write_app(module, "same")
    (tmp_path / "templates").mkdir()
    settings = tmp_path / "settings.ini"
    settings.write_text("a=1\n")
    s = server(
        "--reload",
        "--reload-engine",
        "poll",
        "--reload-extra-file",
        str(settings),
        "--reload-extra-file",
        str(tmp_path / "templates" / "*.html"),
        "reloadme2:app",
    )
    (first,) = s.wait_workers(1)
    time.sleep(1.2)
    later = time.time() + 30
    os.utime(settings, (later, later))
    (second,) = s.wait_workers(1, exclude=[first])
    wait_for(lambda: "settings.ini modified" in s.log(), what="the reload message")
    time.sleep(1.5)
    page = tmp_path / "templates" / "index.html"
    page.write_text("<p>")  # a file matching the glob, made after boot
    time.sleep(1.5)
    os.utime(page, (later + 10, later + 10))
    s.wait_workers(1, exclude=[first, second])
    wait_for(lambda: "index.html modified" in s.log(), what="the glob reload message")


def test_missing_extra_file_is_refused(tmp_path):

    r = run_ferrocorn(["--reload", "--reload-extra-file", str(tmp_path / "nope.txt"), "basic:hello"], tmp_path)
    assert r.returncode == 1 and "does not exists" in r.stderr
