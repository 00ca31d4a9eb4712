"""Uploads for the slow-sender tests: the sha256 of the body, the pid, and a
streaming reader that leaves a mark in FASTGW_TEST_DIR once it has read the first
piece (so a test can tell whether the application runs before the body is whole)."""
import hashlib
import json
import os


def application(environ, start_response):
    path = environ["PATH_INFO"]
    inp = environ["wsgi.input"]
    if path.startswith("/sha256") or path.startswith("/stream"):
        digest = hashlib.sha256()
        total = 0
        first = True
        while True:
            chunk = inp.read(65536)
            if not chunk:
                break
            digest.update(chunk)
            total += len(chunk)
            if first and path.startswith("/stream"):
                first = False
                mark = os.path.join(os.environ["FASTGW_TEST_DIR"], "first-" + environ["QUERY_STRING"])
                with open(mark, "w") as f:
                    f.write(str(total))
        body = json.dumps({"sha256": digest.hexdigest(), "length": total}).encode()
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
