"""Unlinked temporary files: where a worker parks bytes that do not fit in memory.

Strategy: one open descriptor and no name, so nothing is left behind when the
worker dies, and the disk space is freed with the last close. On Linux O_TMPFILE
makes the file without a name at all; elsewhere (or on a file system without it)
a mkstemp file is unlinked at once. Response bytes spilled while a client lags and
request bodies gathered before the application is called both live here.
"""
import os
import tempfile

_TMPFILE = getattr(os, "O_TMPFILE", 0)


def open_unlinked(directory=None):
    """A read-write descriptor (close-on-exec) of a new file with no name."""
    directory = directory or tempfile.gettempdir()
    if _TMPFILE:
        try:
            return os.open(directory, _TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            pass  # the file system has no O_TMPFILE: a named file, unlinked at once
    fd, path = tempfile.mkstemp(prefix="fastgw-", dir=directory)
    os.unlink(path)
    return fd
