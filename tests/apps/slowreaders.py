"""Large responses for the stalled-reader tests: a one-item list, a generator, a
small answer, and a record of the generators whose close() was called."""
import os

BLOCK = b"x" * 65536
LIST_BODY = b"y" * (8 << 20)


class Counted:
    """A 16 MiB generator body whose close() leaves a mark in FASTGW_TEST_DIR."""

    def __init__(self, tag):
        self.tag = tag
        self.inner = (BLOCK for _ in range(256))

    def __iter__(self):
        return self.inner

    def close(self):
        path = os.path.join(os.environ["FASTGW_TEST_DIR"], "closed-" + self.tag)
        with open(path, "w") as f:
            f.write("1")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/list":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [LIST_BODY]
    if path == "/gen":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Counted(environ.get("QUERY_STRING", "") or "anon")
    if path == "/pid":
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
