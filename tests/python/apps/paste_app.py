"""A PasteDeploy application factory, as an ini file's
``paste.app_factory = paste_app:make_app`` names it."""

import logging


def make_app(global_conf, **local_conf):
    greeting = local_conf.get("greeting", "none")
    color = global_conf.get("color", "-")

    def app(environ, start_response):
        logging.getLogger("paste_app").warning("paste app served %s", environ["PATH_INFO"])
        body = ("%s %s" % (greeting, color)).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app
