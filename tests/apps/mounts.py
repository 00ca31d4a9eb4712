"""Apps for the routing tests: each answers with its name and what it was routed as.

``main`` and ``api`` echo SCRIPT_NAME, PATH_INFO, QUERY_STRING and REQUEST_URI as
JSON, so a test sees exactly how the router split the path.
"""
import json


def _echo(name):
    def app(environ, start_response):
        body = json.dumps({
            "app": name,
            "SCRIPT_NAME": environ["SCRIPT_NAME"],
            "PATH_INFO": environ["PATH_INFO"],
            "QUERY_STRING": environ["QUERY_STRING"],
            "REQUEST_URI": environ.get("REQUEST_URI"),
        }).encode("utf-8")
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    app.__name__ = name
    return app


main = _echo("main")
api = _echo("api")
deep = _echo("deep")


def info(environ, start_response):
    """The worker's locale view, to prove a LANG=C test really runs with an ASCII locale."""
    import locale
    import sys

    body = json.dumps({
        "filesystem_encoding": sys.getfilesystemencoding(),
        "preferred_encoding": locale.getpreferredencoding(False),
        "utf8_mode": sys.flags.utf8_mode,
    }).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
