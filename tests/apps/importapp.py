"""The application the importer tests serve with uWSGI or gunicorn and with fastgw
side by side: its answers depend only on the request and on the configuration the
server was given (environment, path split, scheme), never on which server ran it.

/status/NNN answers that status; /big answers 1 MiB of a pattern; /echo answers the
request body's length and SHA-256; every other path answers what the app saw.
"""
import hashlib
import json
import os


def describe(environ):
    body = environ["wsgi.input"].read()
    return {
        "method": environ["REQUEST_METHOD"],
        "script_name": environ.get("SCRIPT_NAME", ""),
        "path_info": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "scheme": environ["wsgi.url_scheme"],
        "remote_addr": environ.get("REMOTE_ADDR"),
        "env": os.environ.get("IMPORT_TEST_ENV"),
        "header": environ.get("HTTP_X_TEST"),
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/status/"):
        status = path[len("/status/"):]
        body = f"status {status}\n".encode()
        start_response(f"{status} Whatever", [("Content-Type", "text/plain"),
                                               ("Content-Length", str(len(body)))])
        return [body]
    if path == "/big":
        body = bytes(range(256)) * 4096
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    body = json.dumps(describe(environ), sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def second(environ, start_response):
    """A second application, for configurations that mount two."""
    body = json.dumps({"app": "second", **describe(environ)}, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
