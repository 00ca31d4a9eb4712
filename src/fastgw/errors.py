"""Every error fastgw reports to a user: each message says what, where, and how to fix it."""


class FastgwError(Exception):
    """Base of errors that end the command with a one-line message and a non-zero exit."""

    exit_code = 1


class ConfigError(FastgwError):
    """A bad command-line flag or configuration value."""


class AppLoadError(FastgwError):
    """The WSGI application named on the command line cannot be imported or is not callable."""

    def __init__(self, message, traceback_text=None):
        super().__init__(message)
        self.traceback_text = traceback_text


class BindError(FastgwError):
    """A listener cannot be created (address in use, permission denied, bad path)."""


class ClientDisconnected(OSError):
    """The client went away (or stopped reading/sending) while a request was in progress."""


class HttpError(Exception):
    """A request that cannot be framed or served safely; answered with `status` and closed."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
