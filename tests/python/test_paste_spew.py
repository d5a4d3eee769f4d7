"""--paste/--paste-global (PasteDeploy ini apps), --spew, and --check-config
on good and bad configurations."""

import subprocess
import sys

import pytest
from helpers import cmdline, run_ferrocorn, wait_for

pytest.importorskip("paste.deploy", reason="PasteDeploy is in the test extra")

INI = """
[app:main]
paste.app_factory = paste_app:make_app
greeting = hello-main

[app:other]
paste.app_factory = paste_app:make_app
greeting = hello-other
"""

LOGGING = """
[loggers]
keys = root, paste_app

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = WARNING
handlers = file

[logger_paste_app]
level = WARNING
handlers = file
qualname = paste_app
propagate = 0

[handler_file]
class = logging.FileHandler
args = (%(log)r,)
formatter = plain

[formatter_plain]
format = PASTELOG %%(message)s
"""


def test_paste_app_sections_and_globals(server, tmp_path):
    ini = tmp_path / "app.ini"
    ini.write_text(INI)
    s = server("--paste", str(ini), "--paste-global", "color=blue")
    assert s.request()[2] == b"hello-main blue"
    assert cmdline(s.pid).startswith("ferrocorn: master [%s]" % ini)
    s.stop()
    s = server("--paste", "app.ini#other")  # relative to the working directory
    assert s.request()[2] == b"hello-other -"


def test_paste_ini_logging_section_configures_logging(server, tmp_path):
    ini = tmp_path / "logged.ini"
    log = tmp_path / "paste.log"
    ini.write_text(INI + LOGGING % {"log": str(log)})
    s = server("--paste", str(ini))
    assert s.request(path="/seen")[0] == 200
    wait_for(lambda: log.exists() and "PASTELOG paste app served /seen" in log.read_text(), what="the ini's logger")


def test_paste_file_must_exist(tmp_path):
    r = run_ferrocorn(["--paste", "missing.ini"], tmp_path)
    assert r.returncode == 1 and "missing.ini' not found" in r.stderr


def test_check_config_with_paste(tmp_path):
    (tmp_path / "app.ini").write_text(INI)
    assert run_ferrocorn(["--check-config", "--paste", "app.ini"], tmp_path).returncode == 0
    (tmp_path / "bad.ini").write_text("[app:main]\npaste.app_factory = nowhere_module:make\n")
    r = run_ferrocorn(["--check-config", "--paste", "bad.ini"], tmp_path)
    assert r.returncode == 1 and "nowhere_module" in r.stderr


def test_spew_traces_application_lines(server):
    s = server("--spew", "basic:hello")
    assert s.request()[0] == 200
    wait_for(lambda: "basic:10:" in s.out() and "Hello, world!" in s.out(), what="traced lines on stdout")


def test_check_config_good_and_bad_configs(tmp_path):
    good = tmp_path / "good.py"
    good.write_text("workers = 2\ndef post_fork(server, worker):\n    pass\naccesslog = '-'\n")
    r = run_ferrocorn(["-c", str(good), "--check-config", "basic:hello"], tmp_path)
    assert r.returncode == 0, r.stderr
    cases = {
        "def post_fork(server):\n    pass\n": "Value must have an arity of: 2",
        "statsd_host = 'localhost:notaport'\n": "Value must be one of ('host:port', 'unix://PATH')",
        "logconfig_dict = 'not a dict'\n": "Value is not a dictionary",
        "reload_engine = 'magic'\n": "reload_engine",
        "syslog = True\nsyslog_facility = 'nope'\n": "unknown facility name",
        "logger_class = 'no_such_module.Logger'\nlogconfig = None\n": "no_such_module",
        "umask = 'x'\n": "umask",
    }
    for text, expected in cases.items():
        bad = tmp_path / "bad.py"
        bad.write_text(text)
        r = run_ferrocorn(["-c", str(bad), "--check-config", "basic:hello"], tmp_path)
        assert r.returncode != 0 and expected in r.stderr, (text, r.stderr)


TRACED = """
LIMIT = 3


def count(n):
    total = 0
    for i in range(n):
        total += i * LIMIT
    return total
"""

TRACE_BOTH_WAYS = """
import importlib, sys
sys.path.insert(0, sys.argv[2])
import traced
debug = importlib.import_module(sys.argv[1])
for names, values in ((None, True), (["traced"], False), (["[unknown]"], True)):
    debug.spew(names, values)
    traced.count(3)
    exec(compile("x = 1\\ny = x + 1\\n", "<string>", "exec"), {})
    debug.unspew()
"""


def test_spew_prints_what_gunicorns_spew_prints(tmp_path):
    (tmp_path / "traced.py").write_text(TRACED)

    def trace(module):
        r = subprocess.run(
            [sys.executable, "-c", TRACE_BOTH_WAYS, module, str(tmp_path)], capture_output=True, text=True, check=True
        )
        # the tracers' own unspew() differs only by where it is
        return [line for line in r.stdout.splitlines() if not line.startswith(module)]

    ours = trace("ferrocorn.debug")
    assert ours == trace("gunicorn.debug")
    assert "traced:8:         total += i * LIMIT" in ours
    assert "\ttotal=3 i=2 LIMIT=3" in ours
    assert any(line.startswith("[unknown]:2: Unknown code named [<module>]") for line in ours)
