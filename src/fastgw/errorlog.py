"""The error log: stderr, one line per record, gunicorn-like `[time] [pid] [LEVEL] message`.

With --error-log FILE the file is put in place of descriptor 2 itself, so what is
written to stderr without the logging module (faulthandler's stack dumps, tracebacks
an application prints, wsgi.errors, CGI scripts' stderr) lands in the same file;
SIGUSR1 reopens it (after logrotate moved it) the same way, in every process.
"""
import logging
import os
import sys
import time

from fastgw.errors import ConfigError

_target = None


class UtcFormatter(logging.Formatter):
    converter = time.gmtime


def setup_error_log(level, target=None):
    global _target
    _target = target if target not in (None, "-") else None
    try:
        reopen_error_log()
    except OSError as e:
        raise ConfigError(f"--error-log {target!r}: cannot open it: {e.strerror}") from None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UtcFormatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
                                      "%Y-%m-%d %H:%M:%S +0000"))
    logger = logging.getLogger("fastgw")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def reopen_error_log():
    """Point descriptor 2 at the --error-log file again (created if it was moved away)."""
    if _target is None:
        return
    fd = os.open(_target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(fd, 2)
    os.close(fd)
