"""Objects for APP_MODULE strings that test_app_module.py loads twice, with
Gunicorn's `util.import_app` and with ferrocorn's, to compare the outcomes."""


def hello(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"hi"]


application = app = hello


class Made:
    """What `factory(...)` builds: a WSGI app that remembers its arguments
    (its repr shows their exact types: 1, 1.0 and True differ)."""

    def __init__(self, args, kwargs):
        self.args = args
        self.kwargs = kwargs

    def __call__(self, environ, start_response):
        return hello(environ, start_response)

    def __repr__(self):
        return "Made(*%r, **%r)" % (self.args, self.kwargs)


def factory(*args, **kwargs):
    return Made(args, kwargs)


def strict(greeting, *, loud=False):
    return hello


def broken():
    raise TypeError("raised inside the factory")


def deeper():
    return _helper()


def _helper():
    raise TypeError("raised further in")


class ClassFactory:
    """A factory without `__code__`: Gunicorn's wrong-arguments check reads
    it anyway, and fails with AttributeError."""

    def __init__(self, n):
        self.n = n

    def __call__(self, environ, start_response):
        return hello(environ, start_response)

    def __repr__(self):
        return "ClassFactory(%r)" % (self.n,)


class Holder:
    app = staticmethod(hello)


holder = Holder()
nothing = None
not_callable = 42


def gives_none():
    return None


def __getattr__(name):
    if name == "exploding":
        raise KeyError(name)
    raise AttributeError("module 'app_specs' has no attribute %r" % name)
