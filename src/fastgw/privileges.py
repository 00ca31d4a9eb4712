"""--user/--group: who the workers run as, and what the master (which stays root) does for them.

Strategy: the master checks the names and resolves them to ids before any fork
(an unknown user is a start-up error) and gives the UNIX sockets the workers accept
on to that user. Each worker switches right after the fork, before it imports the
application: supplementary groups first, then the group, then the user (once the
uid is gone it could not change the others). The master keeps root, as nginx's and
gunicorn's do, to remove its pid file and sockets at exit and to read the
configuration again on SIGHUP; it imports fastgw's handler modules, never the
application.
"""
import os

from fastgw.errors import ConfigError


def wanted_ids(config):
    """{pool: (uid or None, gid)} for the front workers (pool None) and each process group
    that switches user; {} when nothing switches. Raises ConfigError."""
    wanted = {None: (config.user, config.group, "--user", "--group")}
    for group in config.groups:
        if group.user or group.group:
            wanted[group.name] = (group.user or config.user, group.group or config.group,
                                  f"{group.source or group.name}: user",
                                  f"{group.source or group.name}: group")
    if not any(user or grp_name for user, grp_name, _, _ in wanted.values()):
        return {}
    if os.getuid() != 0:
        raise ConfigError("--user/--group (or a [[group]]'s user/group): only a server "
                          "started as root can switch user; drop them or start fastgw as root")
    return {pool: lookup_ids(user, group, user_where, group_where)
            for pool, (user, group, user_where, group_where) in wanted.items()
            if user or group}


def switch_to(ids):
    """In a freshly forked worker: become (uid or None, gid), with no supplementary groups."""
    uid, gid = ids
    os.setgroups([])
    os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def lookup_ids(user, group, user_where, group_where):
    """(uid or None, gid) of a user and/or group name."""
    import grp
    import pwd

    try:
        entry = pwd.getpwnam(user) if user else None
    except KeyError:
        raise ConfigError(f"{user_where} {user!r}: no such user") from None
    try:
        gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    except KeyError:
        raise ConfigError(f"{group_where} {group!r}: no such group") from None
    return (entry.pw_uid if entry else None, gid)
