"""An app whose import can be slow or can signal the master, so tests can
stop the server while a worker is still booting.

FASTGW_TEST_IMPORT_DELAY=SECONDS   sleep that long during import
FASTGW_TEST_TERM_MASTER_AT_IMPORT=1  as the last step of the import, send
    SIGTERM to the parent process if it is the fastgw master (i.e. this is
    a worker that has not finished booting yet)
"""
import os
import signal
import time
from wsgiref.validate import validator


def _record(line):
    directory = os.environ.get("FASTGW_TEST_DIR")
    if directory:
        with open(os.path.join(directory, "boot.log"), "a") as fh:
            fh.write(line + "\n")


_record("importing %d" % os.getpid())
time.sleep(float(os.environ.get("FASTGW_TEST_IMPORT_DELAY", "0")))


def _parent_is_fastgw_master():
    try:
        with open("/proc/%d/cmdline" % os.getppid(), "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return False
    return b"fastgw" in argv and b"serve" in argv


def _app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


application = validator(_app)
_record("imported %d" % os.getpid())

if os.environ.get("FASTGW_TEST_TERM_MASTER_AT_IMPORT") == "1" and _parent_is_fastgw_master():
    os.kill(os.getppid(), signal.SIGTERM)
