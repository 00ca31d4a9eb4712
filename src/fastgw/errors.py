"""Every error fastgw reports to a user: each message says what, where, and how to fix it."""


class FastgwError(Exception):
    """Base of errors that end the command with a one-line message and a non-zero exit."""

    exit_code = 1


class ConfigError(FastgwError):
    """A bad command-line flag or configuration value."""


class TlsConfigError(ConfigError):
    """An HTTPS setting that cannot work: a missing or unreadable certificate or key, a
    key that is not the certificate's, no usable cipher (a usage error: exit 2)."""

    exit_code = 2


class ApacheConfigError(FastgwError):
    """An Apache configuration `fastgw import-apache` cannot read or translate safely."""

    exit_code = 2


class ConfigImportError(FastgwError):
    """A uWSGI or gunicorn configuration `fastgw import-uwsgi` / `import-gunicorn` cannot read,
    or holds a setting whose loss would change what the site does."""

    exit_code = 2


class AppLoadError(FastgwError):
    """The WSGI application named on the command line cannot be imported or is not callable."""

    def __init__(self, message, traceback_text=None):
        super().__init__(message)
        self.traceback_text = traceback_text


class BindError(FastgwError):
    """A listener cannot be created (address in use, permission denied, bad path)."""


class ClientDisconnected(OSError):
    """The client went away (or stopped reading/sending) while a request was in progress."""


REASONS = {
    400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable",
    417: "Expectation Failed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    """A request that cannot be framed or served safely; answered with `status` and closed."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status

    @property
    def status_line(self):
        return f"{self.status} {REASONS.get(self.status, 'Error')}"


class GatewayError(Exception):
    """The back end failed: answered with `status` (None: the gateway's usual one) or cut off."""

    status = None

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status


class GatewayTimeout(GatewayError):
    status = 504
