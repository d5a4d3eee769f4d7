"""The command line and settings sources, as a Gunicorn user gives them."""

import json
import os
import subprocess
import sys

from helpers import APPS, BIN, run_ferrocorn, server_env


def test_version_and_help(tmp_path):
    r = run_ferrocorn(["--version"], tmp_path)
    assert r.returncode == 0
    assert r.stdout.startswith("ferrocorn (version ")
    r = run_ferrocorn(["--help"], tmp_path)
    assert r.returncode == 0
    for flag in (
        "--bind",
        "--workers",
        "--worker-class",
        "--timeout",
        "--limit-request-field_size",
        "--forwarded-allow-ips",
        "--proxy-protocol",
        "--access-logformat",
    ):
        assert flag in r.stdout


def test_python_dash_m_and_console_script_agree(tmp_path):
    """`python -m ferrocorn` and the installed `ferrocorn` script (the one
    beside this interpreter) give the same answers."""
    env = server_env()
    for args in (["--version"], ["--print-config", "-w", "3", "--timeout", "7", "basic:hello"]):
        by_module, by_script = (
            subprocess.run(argv + args, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=30)
            for argv in ([sys.executable, "-m", "ferrocorn"], [os.path.join(BIN, "ferrocorn")])
        )
        assert by_module.returncode == by_script.returncode == 0, (by_module.stderr, by_script.stderr)
        assert by_module.stdout == by_script.stdout
    assert ["workers", "=", "3"] in [line.split() for line in by_module.stdout.splitlines()]
    assert by_script.stdout.count("\n") > 100


def test_unknown_flag_is_a_usage_error(tmp_path):
    r = run_ferrocorn(["--no-such-flag", "basic:hello"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.endswith("ferrocorn: error: unrecognized arguments: --no-such-flag\n")


def test_no_application(tmp_path):
    r = run_ferrocorn([], tmp_path)
    assert r.returncode == 1
    assert "No application module specified." in r.stderr


def test_unknown_worker_class_lists_the_valid_ones(tmp_path):
    r = run_ferrocorn(["-k", "mypackage.MyWorker", "basic:hello"], tmp_path)
    assert r.returncode == 1
    assert "Invalid worker class 'mypackage.MyWorker'" in r.stderr
    for name in ("sync", "gthread", "asgi", "gevent", "tornado", "eventlet"):
        assert name in r.stderr


def not_yet_in_docs():
    docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "settings.md")
    with open(docs) as f:
        return {line.split("`")[1] for line in f if line.startswith("| `") and "| not yet" in line}


def test_every_gunicorn_setting_is_taken(tmp_path):
    """No setting is left for later: the reference marks none "not yet",
    and the last ones to come (the uwsgi protocol's) start a server."""
    assert not_yet_in_docs() == set()
    r = run_ferrocorn(
        ["--check-config", "--protocol", "uwsgi", "--uwsgi-allow-from", "10.0.0.1", "basic:hello"], tmp_path
    )
    assert r.returncode == 0, r.stderr


USAGE_ERRORS = [
    ["--workers", "abc"],
    ["-w", "1.5"],
    ["-w"],
    ["--work", "3"],
    ["--no-such-flag"],
    ["--max-requests=abc"],
    ["--umask", "zz"],
    ["--umask", "09"],
    ["--control-socket-mode", "rw"],
    ["--timeout", ""],
]


def test_usage_errors_are_gunicorns(tmp_path):
    """Exit status 2, the usage line and argparse's words, exactly as
    Gunicorn 27 prints them (with its program name)."""
    for args in USAGE_ERRORS:
        ours = run_ferrocorn([*args, "basic:hello"], tmp_path)
        theirs = run_ferrocorn([*args, "basic:hello"], tmp_path, program="gunicorn")
        assert theirs.returncode == ours.returncode == 2, (args, ours.stderr, theirs.stderr)
        assert ours.stderr == theirs.stderr.replace("gunicorn", "ferrocorn"), args
        assert ours.stderr.startswith("usage: ferrocorn [OPTIONS] [APP_MODULE]\nferrocorn: error: ")
    # values argparse reads, that the setting's own check then refuses
    # (exit 1, Gunicorn's "Error:" message), or accepts
    for args, status in ((["-w", "-3"], 1), (["-w", " 2"], 0), (["--umask", "0o22"], 0), (["-w", "2_0"], 0)):
        r = run_ferrocorn(["--check-config", *args, "basic:hello"], tmp_path)
        g = run_ferrocorn(["--check-config", *args, "basic:hello"], tmp_path, program="gunicorn")
        assert r.returncode == g.returncode == status, (args, r.stderr, g.stderr)
    # from GUNICORN_CMD_ARGS, with the variable named
    r = run_ferrocorn(["basic:hello"], tmp_path, env={"GUNICORN_CMD_ARGS": "-w abc"})
    assert r.returncode == 2
    assert r.stderr == (
        "usage: ferrocorn [OPTIONS] [APP_MODULE]\n"
        "ferrocorn: error: GUNICORN_CMD_ARGS: argument -w/--workers: invalid int value: 'abc'\n"
    )


def test_help_marks_nothing_as_not_available(tmp_path):
    r = run_ferrocorn(["--help"], tmp_path)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "The protocol for incoming connections (http or uwsgi). [http]" in text
    assert "not available in ferrocorn yet" not in text


def test_invalid_values(tmp_path):
    r = run_ferrocorn(["-w", "-1", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "workers" in r.stderr
    r = run_ferrocorn(["--forwarded-allow-ips", "10.0.0.1/8", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "forwarded_allow_ips" in r.stderr
    r = run_ferrocorn(["-b", "127.0.0.1:notaport", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "not a valid port number" in r.stderr
    r = run_ferrocorn(["-e", "NOEQUALS", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "NOEQUALS" in r.stderr


def print_config(tmp_path, args, env=None, cwd=None, app="basic:hello"):
    """{setting: value as printed} of --print-config."""
    r = run_ferrocorn(["--print-config", *args, *([app] if app else [])], tmp_path, env=env, cwd=cwd)
    assert r.returncode == 0, r.stderr
    values = {}
    for line in r.stdout.splitlines():
        name, _, value = line.partition(" = ")
        values[name.strip()] = value
    return values


def test_print_config_shows_every_setting(tmp_path):
    values = print_config(tmp_path, ["-w", "3", "--timeout", "7"])
    with open(os.path.join(os.path.dirname(__file__), "..", "data", "gunicorn-27-settings.json")) as f:
        names = {s["name"] for s in json.load(f)["settings"]}
    assert names <= set(values)
    assert values["workers"] == "3"
    assert values["timeout"] == "7"
    assert values["bind"] == "['127.0.0.1:8000']"


def test_precedence_cli_over_env_over_config_file(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text("workers = 2\ntimeout = 11\nkeepalive = 9\nbacklog = 100\n")
    env = {"GUNICORN_CMD_ARGS": "--timeout 12 --keep-alive 8", "FERROCORN_CMD_ARGS": "--keep-alive 7"}
    values = print_config(tmp_path, ["--backlog", "50"], env=env)
    assert values["workers"] == "2"  # config file
    assert values["timeout"] == "12"  # GUNICORN_CMD_ARGS over the file
    assert values["keepalive"] == "7"  # FERROCORN_CMD_ARGS over GUNICORN_CMD_ARGS
    assert values["backlog"] == "50"  # command line over everything


def test_explicit_config_file_and_wsgi_app(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("wsgi_app = 'basic:hello'\nworkers = 3\n")
    values = print_config(tmp_path, ["-c", str(conf)], app=None)
    assert (values["wsgi_app"], values["workers"], values["config"]) == ("basic:hello", "3", str(conf))
    # as Gunicorn 27 prints them
    theirs = run_ferrocorn(["-c", str(conf), "--print-config"], tmp_path, program="gunicorn")
    assert theirs.returncode == 0, theirs.stderr
    for name in ("wsgi_app", "workers", "config"):
        assert "%-34s = %s" % (name, values[name]) in theirs.stdout.splitlines(), name


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("workers = \n")
    r = run_ferrocorn(["-c", str(bad), "basic:hello"], tmp_path)
    assert r.returncode == 1 and "Failed to read config file" in r.stderr
    wrong = tmp_path / "wrong.py"
    wrong.write_text("workers = 'many'\n")
    r = run_ferrocorn(["-c", str(wrong), "basic:hello"], tmp_path)
    assert r.returncode == 1 and "Invalid value for workers" in r.stderr
    r = run_ferrocorn(["-c", str(tmp_path / "missing.py"), "basic:hello"], tmp_path)
    assert r.returncode == 1 and "doesn't exist" in r.stderr


def test_check_config(tmp_path):
    assert run_ferrocorn(["--check-config", "basic:hello"], tmp_path).returncode == 0
    r = run_ferrocorn(["--check-config", "basic:nope"], tmp_path)
    assert r.returncode == 1 and "Failed to find attribute 'nope' in 'basic'." in r.stderr
    r = run_ferrocorn(["--check-config", "broken_import:app"], tmp_path)
    assert r.returncode == 1 and "cannot be imported on purpose" in r.stderr


def test_port_and_web_concurrency_defaults(tmp_path):
    values = print_config(tmp_path, [], env={"PORT": "9123", "WEB_CONCURRENCY": "5"})
    assert values["bind"] == "['0.0.0.0:9123']"
    assert values["workers"] == "5"


def test_config_sources_each_override_the_next(tmp_path):
    # defaults < config file < GUNICORN_CMD_ARGS < FERROCORN_CMD_ARGS < command line, one setting each
    (tmp_path / "gunicorn.conf.py").write_text("backlog = 11\ntimeout = 11\nkeepalive = 11\nworkers = 11\n")
    env = {
        "GUNICORN_CMD_ARGS": "--timeout 22 --keep-alive 22 --workers 22",
        "FERROCORN_CMD_ARGS": "--keep-alive 33 --workers 33",
    }
    values = print_config(tmp_path, ["--workers", "44"], env=env)
    assert (
        values["graceful_timeout"],
        values["backlog"],
        values["timeout"],
        values["keepalive"],
        values["workers"],
    ) == ("30", "11", "22", "33", "44")


def test_config_file_forms(tmp_path):
    # ./ferrocorn.conf.py is read before ./gunicorn.conf.py
    (tmp_path / "gunicorn.conf.py").write_text("workers = 2\n")
    (tmp_path / "ferrocorn.conf.py").write_text("workers = 3\n")
    assert print_config(tmp_path, [])["workers"] == "3"
    # -c python:module.name, and -c file:PATH
    pkg = tmp_path / "confpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "settings.py").write_text("workers = 5\nwsgi_app = 'basic:hello'\n")

    env = {"PYTHONPATH": str(tmp_path) + os.pathsep + APPS}
    r = run_ferrocorn(["-c", "python:confpkg.settings", "--print-config"], tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert next(l for l in r.stdout.splitlines() if l.startswith("workers ")).endswith("= 5")
    (tmp_path / "other.py").write_text("workers = 6\n")
    assert print_config(tmp_path, ["-c", "file:" + str(tmp_path / "other.py")])["workers"] == "6"


def test_wsgi_app_from_config_file_serves(server, tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text("wsgi_app = 'basic:hello'\n")
    s = server()
    assert s.request()[2] == b"Hello, world!\n"


def test_print_config_shows_hooks_and_new_types(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text(
        "def on_starting(server):\n    pass\n"
        "statsd_host = 'localhost'\n"
        "logconfig_dict = {'version': 1, 'root': {'level': 'INFO'}}\n"
    )
    values = print_config(tmp_path, [])
    assert values["on_starting"] == "<on_starting()>"
    assert values["statsd_host"] == "('localhost', 8125)"
    assert values["logconfig_dict"] == "{'version': 1, 'root': {'level': 'INFO'}}"
    assert values["logger_class"] == "gunicorn.glogging.Logger"
