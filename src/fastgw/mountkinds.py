"""The kinds of mount, one registration each, and a worker's router built from them.

Strategy: the config layer (fastgw.mount) checks a mount and works out its kind
(app, group, dir, file, cgi, fastcgi, scgi or auth); everything the server does
differently per kind is one MountKind entry in KINDS: how a worker makes the
kind's handler, whether it waits on a back end (so the worker runs application
threads), whether the HTTP layer reads a request body for it, whether it is a
WSGI application (auth passes REMOTE_USER as environ entries, X-Sendfile and
X-Accel-Redirect apply), whether it needs the router (local redirects), whether
metrics count it as an upstream, and how `fastgw check` and `fastgw explain`
describe it. The worker, explain and metrics read this table and nothing else
about kinds, so a new kind is its handler module plus one entry here (and its
fields and check in fastgw.mount).
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

from fastgw.auth import AuthGate
from fastgw.cgi import CgiScripts
from fastgw.groupauth import GroupAuthHook
from fastgw.mountlines import (describe_app, describe_auth, describe_gateway, describe_static,
                               gateway_lines, static_lines)
from fastgw.offload import Offload
from fastgw.router import not_found, route_table, table_router
from fastgw.static import StaticFiles
from fastgw.upstream import FastCgiUpstream, GroupForwarder, ScgiUpstream
from fastgw.wsgi import WsgiHandler


@dataclass
class Build:
    """What a worker knows when it makes its handlers: the loaded applications (app spec
    -> WSGI callable), how it runs them, --timeout, and the process groups' sockets."""

    apps: dict = field(default_factory=dict)
    multiprocess: bool = False
    multithread: bool = False
    server_timeout: float = 0.0
    group_sockets: dict = field(default_factory=dict)
    # One WSGI handler per application and X-Sendfile roots (its Offload knows them).
    wsgi_handlers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MountKind:
    # (mount, Build) -> the handler; None for a rule that serves nothing itself (auth).
    make: Optional[Callable]
    # mount -> its line in the routing table (`fastgw check`, explain's "mount:").
    describe: Callable
    # (mount, req, config) -> what explain adds about the URL below the mount.
    details: Optional[Callable] = None
    # Waits on a back end (a script, an upstream, a group): the worker runs threads.
    threads: bool = False
    # False: the answer never needs the request body (the HTTP layer does not read it).
    wants_body: bool = True
    # A WSGI application in this worker (environ extras from auth, X-Sendfile).
    wsgi: bool = False
    # Gets the worker's router (for local redirects and PATH_TRANSLATED).
    routed: bool = False
    # Metrics count its requests as upstream requests.
    upstream: bool = False


def make_app(mount, build):
    key = (mount.app, mount.x_sendfile_roots)
    handler = build.wsgi_handlers.get(key)
    if handler is None:
        handler = build.wsgi_handlers[key] = WsgiHandler(
            build.apps[mount.app], multiprocess=build.multiprocess,
            multithread=build.multithread)
    return handler


def make_group(mount, build):
    return GroupForwarder(mount.group, build.group_sockets[mount.group],
                          mount.gateway_timeout(build.server_timeout))


def make_static(mount, build):
    return StaticFiles.from_mount(mount)


def gateway_maker(cls):
    """The `make` of a cgi, fastcgi or scgi mount served by `cls`."""
    def make(mount, build):
        return cls.from_mount(mount, mount.gateway_timeout(build.server_timeout))
    return make


def gateway_details(mount, req, config):
    gateway = KINDS[mount.kind].make(mount, Build(server_timeout=config.timeout))
    return gateway_lines(mount, req, gateway)


KINDS = {
    "app": MountKind(make_app, describe_app, wsgi=True),
    "group": MountKind(make_group, describe_app, threads=True),
    "dir": MountKind(make_static, describe_static, static_lines, wants_body=False),
    "file": MountKind(make_static, describe_static, static_lines, wants_body=False),
    "cgi": MountKind(gateway_maker(CgiScripts), describe_gateway, gateway_details,
                     threads=True, routed=True),
    "fastcgi": MountKind(gateway_maker(FastCgiUpstream), describe_gateway, gateway_details,
                         threads=True, routed=True, upstream=True),
    "scgi": MountKind(gateway_maker(ScgiUpstream), describe_gateway, gateway_details,
                      threads=True, routed=True, upstream=True),
    "auth": MountKind(None, describe_auth),
}


def describe_mount(mount):
    """One line of the routing table, as `fastgw check` prints it."""
    return KINDS[mount.kind].describe(mount)


def build_router(mounts, build):
    """The Router of a worker over `mounts` (from the Config), the handlers made as `build`
    says; each application is loaded once, even if mounted twice."""
    served = {m.path: KINDS[m.kind].make(m, build) for m in mounts if KINDS[m.kind].make}
    environ_of = WsgiHandler(None).environ

    def make_handler(route, internal=False):
        if route.mount.internal and not internal:
            return not_found  # reached by X-Accel-Redirect only (fastgw.offload)
        handler = served[route.mount.path]
        guard = route.auth
        if guard is None:
            return handler
        group = guard.auth.group
        return AuthGate(handler, guard.auth, environ_of, guard.source or f"mount {guard.path!r}",
                        hooks=GroupAuthHook.pair(build.group_sockets[group], group,
                                                 guard.wire_path) if group else None,
                        takes_environ=KINDS[route.mount.kind].wsgi)

    routes = route_table(mounts)
    router = table_router(routes, make_handler)
    for mount in mounts:
        if KINDS[mount.kind].routed:
            served[mount.path].router = router
    offloading = [m for m in mounts if KINDS[m.kind].wsgi]
    if offloading:
        # The table X-Accel-Redirect is answered from: the internal mounts included.
        internal = (table_router(routes, lambda route: make_handler(route, True))
                    if any(m.internal for m in mounts) else router)
        for mount in offloading:
            served[mount.path].offload = Offload(internal, mount.x_sendfile_roots, files_below)
    return router


def files_below(root):
    """The handler of an X-Sendfile root: every file below it, dot files included."""
    return StaticFiles(root, index=None, dotfiles=True, precompressed=False)
