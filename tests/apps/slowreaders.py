"""Large responses for the stalled-reader tests: a one-item list, a generator (of one
shared block, or of a new block each step as most applications make them), a small
answer, and a record of the generators whose close() was called."""
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
    if path == "/fresh":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"z" * 65536 for _ in range(256))
    if path == "/write":
        # the legacy write() callable: a push-style writer that cannot be parked
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        chunk = b"w" * (1 << 20)
        for _ in range(int(environ.get("QUERY_STRING") or "8")):
            write(chunk)
        return []
    if path == "/pid":
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
