"""The real-framework apps the servers are measured with: one JSON endpoint,
`GET /users/<id>` answering a small dict, in Flask, Django (WSGI and ASGI;
without a database, and with a query against SQLite) and FastAPI. Each is
built when a server first asks for it (a module `__getattr__`), so a
server only needs the framework it serves.

    granian --interface wsgi real_apps:flask_app
    ferrocorn -k asgi real_apps:django_asgi
"""

import os
import sqlite3
import tempfile

# The SQLite file every worker of a run shares (each builds it if missing).
DB = os.environ.get("BENCH_SQLITE", os.path.join(tempfile.gettempdir(), "ferrocorn-bench-users.sqlite3"))
USERS = 1000


def user(uid):
    return {"id": uid, "name": "user %d" % uid, "email": "user%d@example.org" % uid, "active": uid % 3 != 0}


def _flask():
    from flask import Flask, jsonify

    app = Flask("bench")

    @app.get("/users/<int:uid>")
    def one(uid):
        return jsonify(user(uid))

    return app


def _ensure_db():
    """Creates the users table once; concurrent workers wait on SQLite's lock."""
    with sqlite3.connect(DB, timeout=30) as c:
        c.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, active INTEGER)")
        c.executemany(
            "INSERT OR IGNORE INTO users VALUES (?, ?, ?, ?)",
            [(u["id"], u["name"], u["email"], int(u["active"])) for u in map(user, range(1, USERS + 1))],
        )


def _django():
    """Django with one common middleware and two views: no database, and one
    query. Settings in code: this module is the URLconf."""
    import django
    from django.conf import settings

    if not settings.configured:
        _ensure_db()
        settings.configure(
            DEBUG=False,
            SECRET_KEY="bench-only",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF="real_apps",
            MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
            INSTALLED_APPS=[],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB}},
            USE_TZ=True,
        )
        django.setup()


def _django_urls():
    from django.db import connection
    from django.http import Http404, JsonResponse
    from django.urls import path

    def one(request, uid):
        return JsonResponse(user(uid))

    def from_db(request, uid):
        with connection.cursor() as c:
            c.execute("SELECT id, name, email, active FROM users WHERE id = %s", [uid])
            row = c.fetchone()
        if row is None:
            raise Http404
        return JsonResponse({"id": row[0], "name": row[1], "email": row[2], "active": bool(row[3])})

    return [path("users/<int:uid>", one), path("db/users/<int:uid>", from_db)]


def _django_wsgi():
    _django()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def _django_asgi():
    _django()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def _fastapi():
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/users/{uid}")
    async def one(uid: int):
        return user(uid)

    return app


_BUILD = {
    "flask_app": _flask,
    "django_wsgi": _django_wsgi,
    "django_asgi": _django_asgi,
    "fastapi_app": _fastapi,
}


def __getattr__(name):
    if name == "urlpatterns":
        value = _django_urls()
    elif name in _BUILD:
        value = _BUILD[name]()
    else:
        raise AttributeError(name)
    globals()[name] = value
    return value
