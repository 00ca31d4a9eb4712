"""Importing this module raises; the server must show this traceback."""


def _explode_during_import():
    raise RuntimeError("fastgw-test-import-explosion")


_explode_during_import()


def application(environ, start_response):  # pragma: no cover - never reached
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"unreachable"]
