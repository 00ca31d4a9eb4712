"""Validated, frozen configuration; every bad value raises ConfigError naming the flag."""
import os
import re
from dataclasses import dataclass, field
from typing import Optional, Tuple

from fastgw.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Bind:
    """One listener: a TCP host and port, or a UNIX socket path."""

    host: Optional[str] = None
    port: Optional[int] = None
    path: Optional[str] = None
    scheme: str = "http"

    def describe(self, port=None):
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port if port is None else port}"


_IPV6_BIND = re.compile(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)")


def parse_bind(text):
    """`HOST:PORT`, `[IPv6]:PORT` or `unix:/path` -> Bind."""
    how = "expected HOST:PORT, [IPv6]:PORT or unix:/path (e.g. 127.0.0.1:8000)"
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError(f"--bind {text!r}: missing socket path; {how}")
        return Bind(path=os.path.abspath(path))
    match = _IPV6_BIND.fullmatch(text)
    if match:
        host, port = match.group(1), match.group(2)
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host or ":" in host or "[" in host:
            raise ConfigError(f"--bind {text!r}: {how}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--bind {text!r}: port must be a number from 0 to 65535; {how}")
    return Bind(host=host, port=int(port))


@dataclass(frozen=True)
class Config:
    app: str
    binds: Tuple[Bind, ...] = (Bind(host="127.0.0.1", port=8000),)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    chdir: Optional[str] = None
    pythonpath: Tuple[str, ...] = ()
    env: Tuple[Tuple[str, str], ...] = ()
    backlog: int = 2048
    log_level: str = "info"
    access_log: Optional[str] = None
    keepalive: float = 5.0
    graceful_timeout: float = 30.0
    header_timeout: float = 10.0
    io_timeout: float = 30.0
    max_connections: int = 4096
    limit_request_line: int = 8190
    limit_request_field_size: int = 8190
    limit_request_fields: int = 100
    limit_request_head: int = 65536
    limit_request_body: int = 0
    limit_chunk_line: int = 4096
    limit_trailer_size: int = 8192

    def __post_init__(self):
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: must be at least 1")
        if self.backlog < 1:
            raise ConfigError(f"--backlog {self.backlog}: must be at least 1")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level {self.log_level!r}: choose one of {', '.join(LOG_LEVELS)}")
        if self.keepalive < 0:
            raise ConfigError(f"--keepalive {self.keepalive}: must be 0 or more seconds")
        if self.graceful_timeout < 0:
            raise ConfigError(f"--graceful-timeout {self.graceful_timeout}: must be 0 or more seconds")
        for name in ("header_timeout", "io_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be "
                                  f"more than 0 seconds")
        for name in ("max_connections", "limit_request_line", "limit_request_field_size",
                     "limit_request_fields", "limit_request_head", "limit_chunk_line",
                     "limit_trailer_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be "
                                  f"at least 1")
        if self.limit_request_body < 0:
            raise ConfigError(f"--limit-request-body {self.limit_request_body}: must be 0 "
                              f"(no limit) or more bytes")
        if self.chdir is not None and not os.path.isdir(self.chdir):
            raise ConfigError(f"--chdir {self.chdir!r}: no such directory")
        if not self.binds:
            raise ConfigError("no --bind given")


def parse_env(text):
    """`KEY=VALUE` -> (KEY, VALUE)."""
    key, sep, value = text.partition("=")
    if not sep or not key or "\0" in text:
        raise ConfigError(f"--env {text!r}: expected KEY=VALUE")
    return key, value
