"""The command line and settings sources, as a Gunicorn user gives them."""

import json
import os
import subprocess
import sys

from conftest import run_ferrocorn


def test_version_and_help(tmp_path):
    r = run_ferrocorn(["--version"], tmp_path)
    assert r.returncode == 0
    assert r.stdout.startswith("ferrocorn (version ")
    r = run_ferrocorn(["--help"], tmp_path)
    assert r.returncode == 0
    for flag in ("--bind", "--workers", "--worker-class", "--timeout", "--limit-request-field_size",
                 "--forwarded-allow-ips", "--proxy-protocol", "--access-logformat"):
        assert flag in r.stdout


def test_python_dash_m_and_console_script_agree(tmp_path):
    r = subprocess.run(["ferrocorn", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("ferrocorn (version ")


def test_unknown_flag_is_a_usage_error(tmp_path):
    r = run_ferrocorn(["--no-such-flag", "basic:hello"], tmp_path)
    assert r.returncode == 2
    assert "--no-such-flag" in r.stderr


def test_no_application(tmp_path):
    r = run_ferrocorn([], tmp_path)
    assert r.returncode == 1
    assert "No application module specified." in r.stderr


def test_unknown_worker_class_lists_the_valid_ones(tmp_path):
    r = run_ferrocorn(["-k", "mypackage.MyWorker", "basic:hello"], tmp_path)
    assert r.returncode == 1
    assert "Invalid worker class 'mypackage.MyWorker'" in r.stderr
    for name in ("sync", "gthread", "asgi", "gevent", "tornado"):
        assert name in r.stderr


def test_known_worker_classes_not_available_yet(tmp_path):
    for args in (["-k", "uvicorn.workers.UvicornWorker"], ["-k", "gevent"], ["-k", "asgi"], ["-k", "tornado"]):
        r = run_ferrocorn(args + ["basic:hello"], tmp_path)
        assert r.returncode == 1, args
        assert "not available yet" in r.stderr, (args, r.stderr)


def test_unsupported_settings_are_refused_by_name(tmp_path):
    r = run_ferrocorn(["--reload", "--certfile", "x.pem", "--statsd-host", "localhost:8125", "basic:hello"], tmp_path)
    assert r.returncode == 1
    for name in ("reload", "certfile", "statsd_host"):
        assert name in r.stderr
    assert "does not support" in r.stderr


def test_invalid_values(tmp_path):
    r = run_ferrocorn(["-w", "abc", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "workers" in r.stderr
    r = run_ferrocorn(["--forwarded-allow-ips", "10.0.0.1/8", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "forwarded_allow_ips" in r.stderr
    r = run_ferrocorn(["-b", "127.0.0.1:notaport", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "not a valid port number" in r.stderr
    r = run_ferrocorn(["-e", "NOEQUALS", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "NOEQUALS" in r.stderr


def print_config(tmp_path, args, env=None, cwd=None):
    r = run_ferrocorn(["--print-config"] + args + ["basic:hello"], tmp_path, env=env, cwd=cwd)
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
    assert values["workers"] == "2"        # config file
    assert values["timeout"] == "12"       # GUNICORN_CMD_ARGS over the file
    assert values["keepalive"] == "7"      # FERROCORN_CMD_ARGS over GUNICORN_CMD_ARGS
    assert values["backlog"] == "50"       # command line over everything


def test_explicit_config_file_and_wsgi_app(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("wsgi_app = 'basic:hello'\nworkers = 3\n")
    r = run_ferrocorn(["-c", str(conf), "--print-config"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wsgi_app" in r.stdout and "basic:hello" in r.stdout


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


def test_config_file_hooks_are_refused_until_supported(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text("def post_fork(server, worker):\n    pass\n")
    r = run_ferrocorn(["basic:hello"], tmp_path)
    assert r.returncode == 1
    assert "post_fork" in r.stderr and "server hooks" in r.stderr


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
