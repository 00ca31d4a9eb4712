"""The routing table: the request path picks the mount (an app or static files) that answers.

Strategy: as Apache's Alias and mod_wsgi's WSGIScriptAlias do, mounts match on
whole path segments and the longest prefix wins (/static matches /static/x and
/static, never /staticfoo). Prefixes are keys of a dict; a path is probed from
its deepest candidate (never deeper than the deepest mount) up towards "/",
one dict lookup per segment. Single-file mounts (/robots.txt) match exactly and
are looked up first. The router moves the prefix from `req.path` to
`req.script_name`, so the WSGI handler sees SCRIPT_NAME=/mysite and the rest in
PATH_INFO. The handlers of each kind of mount are made by fastgw.mountkinds.

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
from typing import NamedTuple, Optional

from fastgw.mount import Mount, covers

NOT_FOUND_BODY = b"404 Not Found: nothing is mounted at this path\n"


class Router:
    """Maps a request to a handler by URL prefix; itself a handler(req, resp)."""

    def __init__(self, routes, served_by=None):
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

    def handler(self):
        """The cheapest callable that routes correctly: with one app at "/" there is
        nothing to route, so it is the app's handler itself."""
        if self.root is not None and not self.exact and not self.prefixes:
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
        (handler or not_found)(req, resp)

    def redispatch(self, req, resp):
        """Route `req` again: a CGI local redirect or an X-Accel-Redirect (the access log
        line is written once, for the request the client sent)."""
        self(req, resp)


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


def table_router(routes, make_handler):
    """A Router over `routes`, the handler of each made by `make_handler(route)`."""
    return Router([(r.prefix, make_handler(r), r.exact) for r in routes],
                  {r.prefix: r.strip for r in routes if r.prefix != r.mount.wire_path})
