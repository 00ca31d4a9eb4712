"""Create the listening sockets the master binds once and every worker shares.

A bind is a TCP address (SO_REUSEADDR; SO_REUSEPORT with --reuse-port, so a new
fastgw can start on the port before the old one stops), a UNIX socket path (a stale
socket file is removed; --unix-socket-mode sets its permissions), or a descriptor
passed by the launcher (fd://N, systemd socket activation: fastgw.activation).
"""
import errno
import os
import socket
import stat

from fastgw.activation import socket_from_fd
from fastgw.errors import BindError

HINTS = {
    errno.EADDRINUSE: "address already in use; is another server running there? "
                      "Stop it or choose another --bind",
    errno.EACCES: "permission denied; ports below 1024 need root, and a UNIX socket "
                  "needs a writable directory",
    errno.EADDRNOTAVAIL: "this machine has no such address; use one of its own addresses "
                         "or 0.0.0.0",
}


def listen(bind, backlog, reuse_port=False, unix_mode=None):
    """Return a non-blocking listening socket for `bind`, or raise BindError."""
    if getattr(bind, "fd", None) is not None:
        return socket_from_fd(bind.fd, backlog, bind.describe())
    try:
        if bind.path is not None:
            sock = _unix_socket(bind)
            if unix_mode is not None:
                try:
                    os.chmod(bind.path, unix_mode)
                except OSError:
                    sock.close()
                    raise
        else:
            sock = _tcp_socket(bind, reuse_port)
    except socket.gaierror as e:
        raise BindError(f"cannot listen on {bind.describe()}: cannot resolve host "
                        f"{bind.host!r} ({e.strerror})") from None
    except OSError as e:
        hint = HINTS.get(e.errno, e.strerror)
        raise BindError(f"cannot listen on {bind.describe()}: {hint}") from None
    try:
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise BindError(f"cannot listen on {bind.describe()}: {e.strerror}") from None
    sock.setblocking(False)
    return sock


def _tcp_socket(bind, reuse_port=False):
    family, kind, proto, _, address = socket.getaddrinfo(
        bind.host, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise BindError(f"cannot listen on {bind.describe()}: --reuse-port: this system has "
                        f"no SO_REUSEPORT")
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _unix_socket(bind):
    path = bind.path
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode) and not _in_use(path):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    return sock


def _in_use(path):
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def describe_listener(sock, bind):
    """How the `Listening at:` line names a listener: its real address (port 0 resolved;
    an inherited socket by what it is bound to, and its descriptor)."""
    if getattr(bind, "fd", None) is None:
        return bind.describe(sock.getsockname()[1] if bind.path is None else None)
    prefix = "" if bind.scheme == "http" and sock.family == socket.AF_UNIX else f"{bind.scheme}://"
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):
            name = name.decode("utf-8", "backslashreplace")
        where = f"unix:{name or '(unnamed)'}"
    elif sock.family == socket.AF_INET6:
        where = f"[{name[0]}]:{name[1]}"
    else:
        where = f"{name[0]}:{name[1]}"
    return f"{prefix}{where} (fd {bind.fd})"


def pending_connections(sockets):
    """True if a connection waits in the backlog of one of these listening sockets."""
    import select

    try:
        readable, _, _ = select.select([s for s in sockets if s.fileno() >= 0], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)
