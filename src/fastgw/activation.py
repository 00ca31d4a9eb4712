"""Listening sockets handed over by whoever started fastgw: systemd socket activation and fd://N.

Strategy: systemd (or any launcher speaking its protocol) passes listening sockets
as descriptors 3, 4, ... and says so in LISTEN_FDS, with LISTEN_PID naming the
process they are meant for and LISTEN_FDNAMES their names (FileDescriptorName=).
They are read once, in the master, before anything else could open a descriptor,
and the variables are then removed so the application and its children do not take
the sockets for theirs. With no --bind, every passed socket is served as HTTP;
`--bind fd://NAME` or `fd://N` picks one (`fastcgi://fd://N` for another protocol).
A socket passed this way is never unlinked or re-bound: it belongs to the launcher.
"""
import os
import socket

from fastgw.errors import BindError

SD_LISTEN_FDS_START = 3
_passed = None


def passed_sockets(environ=None):
    """[(fd, name)] passed by systemd to this process; read once, the variables removed."""
    global _passed
    if _passed is not None:
        return _passed
    env = os.environ if environ is None else environ
    result = []
    try:
        pid = int(env.get("LISTEN_PID", ""))
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        pid = count = 0
    if pid == os.getpid() and count > 0:
        names = env.get("LISTEN_FDNAMES", "")
        names = names.split(":") if names else []
        for i in range(count):
            fd = SD_LISTEN_FDS_START + i
            result.append((fd, names[i] if i < len(names) and names[i] else f"fd{fd}"))
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    _passed = result
    return result


def pass_on_passed_sockets():
    """Before fastgw execs itself (the pid stays): the passed sockets inheritable again and
    the variables back, so the new program finds them as the launcher left them."""
    passed = passed_sockets()
    for fd, _ in passed:
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass  # not open: the new program reports it, as this one would have
    if passed:
        os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(passed)),
                          LISTEN_FDNAMES=":".join(name for _, name in passed))


def default_binds():
    """What to listen on without --bind: the activated sockets, as fd://N (or none)."""
    return [f"fd://{fd}" for fd, _ in passed_sockets()]


def resolve_fd(text):
    """'3' or a LISTEN_FDNAMES name -> the descriptor number, or None if there is no such name."""
    if text.isdigit():
        return int(text)
    for fd, name in passed_sockets():
        if name == text:
            return fd
    return None


def names_text():
    passed = passed_sockets()
    if not passed:
        return "no sockets were passed (LISTEN_FDS is not set for this process)"
    return "passed: " + ", ".join(f"{name} (fd {fd})" for fd, name in passed)


def socket_from_fd(fd, backlog, where):
    """A listening, non-blocking socket object for an inherited descriptor."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        hint = {9: "it is not open; was the socket passed to fastgw (systemd: a .socket "
                   "unit, or pass_fds/LISTEN_FDS from the launcher)?",
                88: "it is not a socket"}.get(e.errno, e.strerror)
        raise BindError(f"cannot listen on {where}: descriptor {fd}: {hint}") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise BindError(f"cannot listen on {where}: descriptor {fd} is not a stream (TCP or "
                        f"UNIX stream) socket")
    try:
        option = getattr(socket, "SO_ACCEPTCONN", None)
        if option is None or not sock.getsockopt(socket.SOL_SOCKET, option):
            sock.listen(backlog)
    except OSError as e:
        sock.detach()
        raise BindError(f"cannot listen on {where}: descriptor {fd}: {e.strerror}") from None
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock
