"""Addresses in the configuration: listeners (--bind) and FastCGI/SCGI upstreams.

Strategy: each address is parsed once, when the configuration is read, into one
canonical form (a Bind; 'unix:/abs/path' or 'tcp://HOST:PORT'), and every way of
getting it wrong is a ConfigError naming the flag or key and showing a valid
example. Relative UNIX socket paths are made absolute here, so a later chdir
changes nothing.
"""
import os
import re
from dataclasses import dataclass
from typing import Optional

from fastgw.activation import names_text, resolve_fd
from fastgw.errors import ConfigError


@dataclass(frozen=True)
class Bind:
    """One listener: a TCP host and port, a UNIX socket path, or an inherited descriptor."""

    host: Optional[str] = None
    port: Optional[int] = None
    path: Optional[str] = None
    scheme: str = "http"
    # A listening socket passed by the launcher (fd://N, systemd socket activation).
    fd: Optional[int] = None

    def describe(self, port=None):
        if self.fd is not None:
            return f"fd://{self.fd}" if self.scheme == "http" else f"{self.scheme}://fd://{self.fd}"
        if self.path is not None:
            return f"unix:{self.path}" if self.scheme == "http" else f"{self.scheme}://unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port if port is None else port}"


_IPV6_BIND = re.compile(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)")


SCHEMES = ("http", "https", "fastcgi", "scgi", "uwsgi")


def parse_bind(text, where="--bind"):
    """`[SCHEME://]HOST:PORT`, `[IPv6]:PORT` or `unix:/path` -> Bind; `where` names the flag.

    SCHEME is the protocol spoken on the listener: http (the default), https, fastcgi,
    scgi or uwsgi (e.g. `fastcgi://127.0.0.1:9000`, `scgi://unix:/run/app.sock`).
    """
    how = ("expected [SCHEME://]HOST:PORT, [IPv6]:PORT or [SCHEME://]unix:/path with SCHEME "
           f"one of {', '.join(SCHEMES)} (e.g. 127.0.0.1:8000, fastcgi://unix:/run/app.sock)")
    full = text
    scheme = "http"
    if "://" in text and not text.startswith("fd://"):
        scheme, _, text = text.partition("://")
        if scheme not in SCHEMES:
            raise ConfigError(f"{where} {full!r}: unknown protocol {scheme!r}; {how}")
    if text.startswith("fd://"):
        fd = resolve_fd(text[5:])
        if fd is None:
            raise ConfigError(f"{where} {full!r}: no socket named {text[5:]!r} was passed to "
                              f"fastgw ({names_text()}); use fd://N or a name from "
                              f"LISTEN_FDNAMES (systemd's FileDescriptorName=)")
        return Bind(fd=fd, scheme=scheme)
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError(f"{where} {full!r}: missing socket path; {how}")
        return Bind(path=os.path.abspath(path), scheme=scheme)
    match = _IPV6_BIND.fullmatch(text)
    if match:
        host, port = match.group(1), match.group(2)
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host or ":" in host or "[" in host or "/" in text:
            raise ConfigError(f"{where} {full!r}: {how}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where} {full!r}: port must be a number from 0 to 65535; {how}")
    return Bind(host=host, port=int(port), scheme=scheme)


def parse_upstream(text, where):
    """A FastCGI/SCGI upstream address -> 'unix:/abs/path' or 'tcp://HOST:PORT'.

    Accepted: unix:/path (relative paths are made absolute), tcp://HOST:PORT, HOST:PORT,
    [IPv6]:PORT.
    """
    how = ("expected unix:/path/to.sock, tcp://HOST:PORT or HOST:PORT "
           "(e.g. unix:/run/php/php-fpm.sock, tcp://127.0.0.1:9000)")
    if text.startswith("unix:"):
        path = text[5:]
        if not path or "\0" in path:
            raise ConfigError(f"{where} = {text!r}: missing socket path; {how}")
        return "unix:" + os.path.abspath(path)
    hostport = text[6:] if text.startswith("tcp://") else text
    match = _IPV6_BIND.fullmatch(hostport)
    if match:
        host, port = "[" + match.group(1) + "]", match.group(2)
    else:
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or "/" in hostport or ":" in host or "[" in host:
            raise ConfigError(f"{where} = {text!r}: {how}")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{where} = {text!r}: port must be a number from 1 to 65535; {how}")
    return f"tcp://{host}:{int(port)}"
