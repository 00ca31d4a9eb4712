"""The error log: stderr, one line per record, gunicorn-like `[time] [pid] [LEVEL] message`."""
import logging
import sys
import time


class UtcFormatter(logging.Formatter):
    converter = time.gmtime


def setup_error_log(level):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UtcFormatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
                                      "%Y-%m-%d %H:%M:%S +0000"))
    logger = logging.getLogger("fastgw")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
