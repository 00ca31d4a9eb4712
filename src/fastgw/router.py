"""The routing table: the request path picks the mount (an app or static files) that answers.

Strategy: as Apache's Alias and mod_wsgi's WSGIScriptAlias do, mounts match on
whole path segments and the longest prefix wins (/static matches /static/x and
/static, never /staticfoo). Prefixes are keys of a dict; a path is probed from
its deepest candidate (never deeper than the deepest mount) up towards "/",
one dict lookup per segment. Single-file mounts (/robots.txt) match exactly and
are looked up first. The router moves the prefix from `req.path` to
`req.script_name`, so the WSGI handler sees SCRIPT_NAME=/mysite and the rest in
PATH_INFO, and it writes the access log line whichever handler answered.

An auth-only mount (a login rule at /secret inside the app at "/") is one more
prefix in the table: its handler is an AuthGate around the handler of the mount
that would serve /secret without it, and `served_by` maps the rule's prefix to
that mount's, so the router strips "" and not "/secret" and the app sees the
SCRIPT_NAME it always sees. Only a prefix match pays for it: one dict lookup,
when rules exist. Mounts below a rule get the rule's gate unless they have an
auth of their own: the deepest auth covering a path wins.

Prefixes are compared in the form the HTTP layer delivers paths: percent-decoded
bytes carried in a latin-1 str (a mount at /médias is stored as its UTF-8 bytes).
"""
import logging
from typing import NamedTuple, Optional

from fastgw.config import Mount, covers

log = logging.getLogger("fastgw.error")

NOT_FOUND_BODY = b"404 Not Found: nothing is mounted at this path\n"


class Router:
    """Maps a request to a handler by URL prefix; itself a handler(req, resp)."""

    def __init__(self, routes, access_log=None, served_by=None):
        """`routes`: (prefix, handler, exact) triples; prefix in the wire form, "/" for the root.
        `served_by`: {prefix of an auth-only rule: the prefix to strip ("" for the root)}."""
        self.served_by = served_by or {}
        self.exact = {}
        self.prefixes = {}
        self.root = None
        self.depth = 0
        for prefix, handler, exact in routes:
            if exact:
                self.exact[prefix] = handler
            elif prefix == "/":
                self.root = handler
            else:
                self.prefixes[prefix] = handler
                self.depth = max(self.depth, prefix.count("/"))
        self.access_log = access_log

    def handler(self):
        """The cheapest callable that routes correctly: with one app at "/" and no access
        log there is nothing to route, so it is the app's handler itself."""
        if self.root is not None and not self.exact and not self.prefixes and self.access_log is None:
            return self.root
        return self

    def match(self, path):
        """(prefix, handler) for a request path; the prefix is "" for the root mount."""
        handler = self.exact.get(path)
        if handler is not None:
            return path, handler
        prefixes = self.prefixes
        if prefixes:
            # Start at most `depth` segments deep: with only /static mounted, /a/b/c/d
            # costs one lookup (/a), not four.
            probe = path
            end = 0
            for _ in range(self.depth):
                end = path.find("/", end + 1)
                if end < 0:
                    break
            if end > 0:
                probe = path[:end]
            while True:
                handler = prefixes.get(probe)
                if handler is not None:
                    served_by = self.served_by
                    return (served_by.get(probe, probe) if served_by else probe), handler
                cut = probe.rfind("/")
                if cut <= 0:
                    break
                probe = probe[:cut]
        return "", self.root

    def __call__(self, req, resp):
        prefix, handler = self.match(req.path)
        if prefix:
            # += : behind FastCGI the web server may already have put a SCRIPT_NAME there.
            req.script_name += prefix
            req.path = req.path[len(prefix):]
        if handler is None:
            handler = not_found
        access_log = self.access_log
        if access_log is None:
            handler(req, resp)
            return
        try:
            handler(req, resp)
        finally:
            self.log_access(req, resp)

    def redispatch(self, req, resp):
        """Route `req` again without an access log line: a CGI local redirect (the line is
        written once, for the request the client sent)."""
        prefix, handler = self.match(req.path)
        if prefix:
            req.script_name += prefix
            req.path = req.path[len(prefix):]
        (handler or not_found)(req, resp)

    def log_access(self, req, resp):
        """Write the access log line of a finished request (a handler that completes a
        response later, e.g. on another thread, calls this itself)."""
        try:
            self.access_log.log(req, resp.status_code, resp.bytes_sent)
        except Exception:
            log.exception("cannot write the access log")


def body_policies(router, mounts):
    """The HTTP layer's ProtocolLimits.body_policy: for a request path, whether its body is
    gathered before the call (most mounts), streamed to the application as it arrives
    (request_buffering = false) or not wanted (static files, or no mount: the answer
    needs no body). None when every path gathers."""
    from fastgw._limits import BodyPolicy
    policies = {}
    for m in mounts:
        prefix = "" if m.path == "/" else m.wire_path
        if m.static is not None:
            policies[prefix] = BodyPolicy.BODY_UNWANTED
        elif not m.request_buffering:
            policies[prefix] = BodyPolicy.BODY_STREAM
    if "" not in policies and not any(m.path == "/" for m in mounts):
        policies[""] = BodyPolicy.BODY_UNWANTED
    if not policies:
        return None
    gather = BodyPolicy.BODY_GATHER

    def policy(path):
        return policies.get(router.match(path)[0], gather)
    return policy


def not_found(req, resp):
    resp.send_head("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")],
                   len(NOT_FOUND_BODY), False)
    resp.finish(NOT_FOUND_BODY)


class Route(NamedTuple):
    """One entry of the routing table, before handlers exist."""

    prefix: str  # matched, in the wire form ("/" for the root)
    mount: Mount  # the mount that serves it
    auth: Optional[Mount]  # the mount or auth-only rule whose `auth` guards it

    @property
    def exact(self):
        return self.mount.kind == "file"

    @property
    def strip(self):
        """The prefix moved to SCRIPT_NAME: the serving mount's ("" for the root)."""
        return "" if self.mount.path == "/" else self.mount.wire_path


def route_table(mounts):
    """The Routes of `mounts`: one per serving mount, guarded by its own auth or else by
    the deepest auth-only rule above it, and one per auth-only rule that lies inside a
    (non-file) mount, served by the deepest such mount."""
    rules = [m for m in mounts if m.kind == "auth"]
    serving = [m for m in mounts if m.kind != "auth"]
    routes = [Route(m.wire_path, m, m if m.auth is not None else deepest(rules, m.path))
              for m in serving]
    for rule in rules:
        above = deepest([m for m in serving if m.kind != "file"], rule.path)
        if above is not None:
            routes.append(Route(rule.wire_path, above, rule))
    return routes


def deepest(mounts, path):
    """The mount with the longest prefix covering `path`, or None."""
    best = None
    for mount in mounts:
        if covers(mount.path, path) and (best is None or len(mount.path) > len(best.path)):
            best = mount
    return best


def table_router(routes, make_handler, access_log=None):
    """A Router over `routes`, the handler of each made by `make_handler(route)`."""
    return Router([(r.prefix, make_handler(r), r.exact) for r in routes], access_log,
                  {r.prefix: r.strip for r in routes if r.prefix != r.mount.wire_path})


def build_router(mounts, apps, multiprocess=False, access_log=None, multithread=False,
                 server_timeout=0.0, group_sockets=None):
    """The Router of a worker: `mounts` from the Config, `apps` maps app specs to the
    loaded WSGI callables (each loaded once, even if mounted twice). `server_timeout`
    (--timeout) sets the default timeout of cgi/fastcgi/scgi mounts. `group_sockets` maps
    a process group's name to its socket, for mounts and auth hooks run in a group."""
    from fastgw.static import StaticFiles
    from fastgw.wsgi import WsgiHandler

    handlers = {}
    served = {}
    gateways = []
    for mount in mounts:
        if mount.kind == "auth":
            continue
        if mount.kind in GATEWAYS:
            handler = gateway_handler(mount, server_timeout)
            gateways.append(handler)
        elif mount.kind == "group":
            from fastgw.upstream import GroupForwarder
            handler = GroupForwarder(mount.group, group_sockets[mount.group],
                                     mount.gateway_timeout(server_timeout))
        elif mount.kind == "app":
            # One handler per application and X-Sendfile roots (its Offload knows them).
            key = (mount.app, mount.x_sendfile_roots)
            handler = handlers.get(key)
            if handler is None:
                handler = handlers[key] = WsgiHandler(apps[mount.app], multiprocess=multiprocess,
                                                      multithread=multithread)
        else:
            handler = StaticFiles.from_mount(mount)
        served[mount.path] = handler

    def make_handler(route, internal=False):
        if route.mount.internal and not internal:
            return not_found  # reached by X-Accel-Redirect only (fastgw.offload)
        handler = served[route.mount.path]
        guard = route.auth
        if guard is None:
            return handler
        from fastgw.auth import AuthGate
        group = guard.auth.group
        return AuthGate(handler, guard.auth, guard.source or f"mount {guard.path!r}",
                        group_socket=group_sockets[group] if group else None,
                        prefix=guard.wire_path)

    routes = route_table(mounts)
    router = table_router(routes, make_handler, access_log)
    for handler in gateways:
        handler.router = router  # for local redirects and PATH_TRANSLATED
    offloading = [m for m in mounts if m.kind == "app"]
    if offloading:
        from fastgw.offload import Offload

        # The table X-Accel-Redirect is answered from: the internal mounts included.
        internal = (table_router(routes, lambda route: make_handler(route, True))
                    if any(m.internal for m in mounts) else router)
        for mount in offloading:
            handlers[(mount.app, mount.x_sendfile_roots)].offload = Offload(
                internal, mount.x_sendfile_roots)
    return router


GATEWAYS = ("cgi", "fastcgi", "scgi")


def gateway_handler(mount, server_timeout):
    """The handler of a cgi, fastcgi or scgi mount (docs/gateway.md)."""
    timeout = mount.gateway_timeout(server_timeout)
    if mount.kind == "cgi":
        from fastgw.cgi import CgiScripts

        return CgiScripts.from_mount(mount, timeout)
    from fastgw.upstream import FastCgiUpstream, ScgiUpstream

    cls = FastCgiUpstream if mount.kind == "fastcgi" else ScgiUpstream
    return cls.from_mount(mount, timeout)
