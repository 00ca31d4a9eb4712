"""The process groups' listening sockets: one private UNIX socket per [[group]], made by the master.

Strategy: the master creates a directory of its own (mkdtemp: mode 0700) the first
time a configuration has a process group, and in it one socket per group (mode
0600), named after the group; a group's processes accept on it and the front workers
connect to it. When the front workers switch user, the directory and the sockets
become theirs. A reload opens the sockets of new groups and closes those of groups
that are gone; the directory goes when the master exits.
"""
import logging
import os

from fastgw.addresses import Bind
from fastgw.listeners import listen

log = logging.getLogger("fastgw.error")


class GroupSockets(dict):
    """Group name -> (listening socket, Bind)."""

    def __init__(self):
        super().__init__()
        self.directory = None
        # (uid or None, gid) of the front workers, once they switch user.
        self.owner = None

    def open(self, groups, backlog):
        """A socket for each of `groups` not served yet."""
        for group in groups:
            if group.name in self:
                continue
            if self.directory is None:
                import tempfile  # only with groups: it pulls in a dozen modules per worker
                self.directory = tempfile.mkdtemp(prefix="fastgw-groups-")
            bind = Bind(path=os.path.join(self.directory, group.name + ".sock"), scheme="fastcgi")
            self[group.name] = (listen(bind, backlog, unix_mode=0o600), bind)
            if self.owner is not None:
                self.give(bind)
            log.info("Process group %r: %d process(es) at %s", group.name, group.processes,
                     bind.path)

    def close_unused(self, groups):
        names = {group.name for group in groups}
        for name in [n for n in self if n not in names]:
            sock, bind = self.pop(name)
            sock.close()
            try:
                os.unlink(bind.path)
            except OSError:
                pass

    def give_to(self, owner):
        """The front workers connect to the sockets: they become theirs (mode 0600)."""
        self.owner = owner
        for _, bind in self.values():
            self.give(bind)

    def give(self, bind):
        uid, gid = self.owner
        uid = os.getuid() if uid is None else uid
        os.chown(self.directory, uid, gid)
        os.chown(bind.path, uid, gid)

    def paths(self):
        return {name: bind.path for name, (_, bind) in self.items()}

    def close_all(self):
        for sock, _ in self.values():
            sock.close()
        if self.directory is not None:
            import shutil
            shutil.rmtree(self.directory, ignore_errors=True)
