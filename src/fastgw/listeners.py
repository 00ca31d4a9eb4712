"""Create the listening sockets the master binds once and every worker shares."""
import errno
import os
import socket
import stat

from fastgw.errors import BindError

HINTS = {
    errno.EADDRINUSE: "address already in use; is another server running there? "
                      "Stop it or choose another --bind",
    errno.EACCES: "permission denied; ports below 1024 need root, and a UNIX socket "
                  "needs a writable directory",
    errno.EADDRNOTAVAIL: "this machine has no such address; use one of its own addresses "
                         "or 0.0.0.0",
}


def listen(bind, backlog):
    """Return a non-blocking listening socket for `bind`, or raise BindError."""
    try:
        sock = _unix_socket(bind) if bind.path is not None else _tcp_socket(bind)
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


def _tcp_socket(bind):
    family, kind, proto, _, address = socket.getaddrinfo(
        bind.host, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
