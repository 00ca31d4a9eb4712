"""How fastgw's processes stop, and how their ending is told in the log.

Strategy: the master and the binary upgrade (a second master started by SIGUSR2)
both block the stop signals around a fork and both log why a child ended; the
two facts live here, below both, so neither imports the other for them.
"""
import os
import signal

# The signals that ask a master to stop (blocked around a fork, so a child never runs
# the parent's handler).
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


def describe_status(status):
    """A wait() status in words: 'exit code 3', 'killed by SIGKILL'."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
