"""APP_MODULE read as Gunicorn 27 reads it: each string of the table is
loaded by `gunicorn.util.import_app` and by ferrocorn's (the function its
workers load the application with), and both must give the same
application, or fail with the same exception and message."""

import pytest
from ferrocorn._ferrocorn import AppImportError, import_app
from gunicorn.errors import AppImportError as GunicornAppImportError
from gunicorn.util import import_app as gunicorn_import_app
from helpers import APPS, run_ferrocorn

ACCEPTED = [
    "app_specs",
    "app_specs:app",
    "app_specs:(app)",
    "app_specs:app  # the app\n\n",
    "app_specs:\napp\r\n",
    "app_specs:\uff41\uff50\uff50",  # fullwidth "app": identifiers are NFKC-normalized
    "app_specs:factory()",
    "app_specs:factory('x', debug=True, n=-1, t=(1, 2),)",
    "app_specs:factory(1j, -2.5j, 1+2j, (3-4J), -1-0j)",
    r"app_specs:factory('\N{BULLET}', '\N{LATIN SMALL LETTER E WITH ACUTE}x')",
    r"app_specs:factory('\ud800', '\udfff\U0001F600')",
    r"app_specs:factory(b'\x00\xff', rb'\d', b'a' b'b', 'a' 'b' u'c')",
    "app_specs:factory({1, 2}, {'a': [1, {2: (3,)}]}, set(), {}, [], ())",
    "app_specs:factory({(1, 2): frozen}, x=1)".replace("frozen", "{'k': None}"),
    "app_specs:factory(123456789012345678901234567890, 0x_ff, 0o17, 0b101, 1_000, -0)",
    "app_specs:factory(1e400, -0.0, .5, 5., 1_0.0_1e-1)",
    "app_specs:factory(..., None, True, False)",
    "app_specs:factory(a=1, a=2, b=3)",
    "app_specs:ClassFactory(3)",
    "app_specs:strict('x', loud=True)",
]

REFUSED = [
    "app_specs:holder.app",  # ferrocorn took dotted paths before; Gunicorn 27 does not
    "app_specs:a.b",
    "app_specs:a.b()",
    "app_specs:factory()()",
    "app_specs:app[0]",
    "app_specs:1",
    "app_specs:",
    "app_specs:app app",
    "app_specs:factory(",
    "app_specs:app\x00",
    "app_specs:lambda: app",
    "app_specs:factory(x)",
    "app_specs:factory(*[1])",
    "app_specs:factory(1 + 1)",
    "app_specs:factory(-'x')",
    "app_specs:factory(f'x')",
    "app_specs:factory(10**3)",
    "app_specs:factory(**{'a': 1})",
    "app_specs:factory(a=1, **{})",
    "app_specs:nope",
    "app_specs:nope()",
    "app_specs:nothing",
    "app_specs:gives_none()",
    "app_specs:not_callable",
    "app_specs:strict()",
    "app_specs:strict(1, 2)",
    "app_specs:strict('x', quiet=1)",
]

RAISED = [
    "app_specs:factory({[]: 1})",
    "app_specs:factory({[1]})",
    "app_specs:factory({{}: 1}, x=1)",
    "app_specs:factory(1, k={1: {set()}})",
    "app_specs:broken()",
    "app_specs:deeper()",
    "app_specs:ClassFactory()",
    "app_specs:exploding",
    "no_such_module:app",
    "no_such_module:a b",
    "app_specs.py:app",
    "broken_import:app",
]


def outcome(load, spec):
    try:
        app = load(spec)
    except (AppImportError, GunicornAppImportError) as e:
        return ("refused", str(e))
    except Exception as e:
        context = e.__context__
        shown_context = None if context is None else (type(context).__name__, str(context))
        return ("raised", type(e).__name__, str(e), shown_context)
    return ("app", repr(app))


@pytest.mark.parametrize("spec", ACCEPTED + REFUSED + RAISED)
def test_same_outcome_as_gunicorn(spec, monkeypatch):
    monkeypatch.syspath_prepend(APPS)
    monkeypatch.chdir(APPS)  # "app_specs.py:app" names a file that exists
    expected = outcome(gunicorn_import_app, spec)
    kind = "app" if spec in ACCEPTED else "refused" if spec in REFUSED else "raised"
    assert expected[0] == kind, expected
    assert outcome(import_app, spec) == expected


def test_refused_and_raised_exit_as_gunicorns_workers(tmp_path):
    r = run_ferrocorn(["-b", "127.0.0.1:0", "basic:holder.app"], tmp_path)
    assert r.returncode == 4
    assert "Failed to parse 'holder.app' as an attribute name or function call." in r.stderr
    r = run_ferrocorn(["-b", "127.0.0.1:0", "basic:factory({[]: 1})"], tmp_path)
    assert r.returncode == 3
    assert "Traceback" in r.stderr and "TypeError: unhashable type: 'list'" in r.stderr


def test_factory_arguments_reach_the_app(server):
    s = server(r"basic:factory('\N{BULLET}', punctuation='\x21')")
    assert s.request()[2] == "\u2022!".encode()
