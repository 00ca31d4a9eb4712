"""The routing table: the request path picks the mount (an app or static files) that answers.

Strategy: as Apache's Alias and mod_wsgi's WSGIScriptAlias do, mounts match on
whole path segments and the longest prefix wins (/static matches /static/x and
/static, never /staticfoo). Prefixes are keys of a dict; a path is probed from
its deepest candidate (never deeper than the deepest mount) up towards "/",
one dict lookup per segment. Single-file mounts (/robots.txt) match exactly and
are looked up first. The router moves the prefix from `req.path` to
`req.script_name`, so the WSGI handler sees SCRIPT_NAME=/mysite and the rest in
PATH_INFO, and it writes the access log line whichever handler answered.

Prefixes are compared in the form the HTTP layer delivers paths: percent-decoded
bytes carried in a latin-1 str (a mount at /médias is stored as its UTF-8 bytes).
"""
import logging

log = logging.getLogger("fastgw.error")

NOT_FOUND_BODY = b"404 Not Found: nothing is mounted at this path\n"


class Router:
    """Maps a request to a handler by URL prefix; itself a handler(req, resp)."""

    def __init__(self, routes, access_log=None):
        """`routes`: (prefix, handler, exact) triples; prefix in the wire form, "/" for the root."""
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
                    return probe, handler
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


def not_found(req, resp):
    resp.send_head("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")],
                   len(NOT_FOUND_BODY), False)
    resp.finish(NOT_FOUND_BODY)


def build_router(mounts, apps, multiprocess=False, access_log=None, multithread=False,
                 server_timeout=0.0, group_sockets=None):
    """The Router of a worker: `mounts` from the Config, `apps` maps app specs to the
    loaded WSGI callables (each loaded once, even if mounted twice). `server_timeout`
    (--timeout) sets the default timeout of cgi/fastcgi/scgi mounts. `group_sockets` maps
    a process group's name to its socket, for mounts and auth hooks run in a group."""
    from fastgw.static import StaticFiles
    from fastgw.wsgi import WsgiHandler

    handlers = {}
    routes = []
    gateways = []
    for mount in mounts:
        if mount.kind in GATEWAYS:
            handler = gateway_handler(mount, server_timeout)
            gateways.append(handler)
        elif mount.kind == "group":
            from fastgw.upstream import GroupForwarder
            handler = GroupForwarder(mount.group, group_sockets[mount.group],
                                     mount.gateway_timeout(server_timeout))
        elif mount.kind == "app":
            handler = handlers.get(mount.app)
            if handler is None:
                handler = handlers[mount.app] = WsgiHandler(apps[mount.app], multiprocess=multiprocess,
                                                            multithread=multithread)
        else:
            handler = StaticFiles.from_mount(mount)
        if mount.auth is not None:
            from fastgw.auth import AuthGate
            group = mount.auth.group
            handler = AuthGate(handler, mount.auth, mount.source or f"mount {mount.path!r}",
                               group_socket=group_sockets[group] if group else None,
                               prefix=mount.wire_path)
        routes.append((mount.wire_path, handler, mount.kind == "file"))
    router = Router(routes, access_log)
    for handler in gateways:
        handler.router = router  # for local redirects and PATH_TRANSLATED
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
