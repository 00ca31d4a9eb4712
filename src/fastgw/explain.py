"""`fastgw explain URL`: which rules of the configuration a URL meets.

Strategy: explain must never disagree with the server, so it asks the server's
own pieces rather than re-deriving anything: the URL is percent-decoded as the
HTTP layer does, the mount is chosen by a Router built by `router.table_router`
over the same `route_table` a worker uses (its handlers are the Routes
themselves, so no application is imported), a static file is resolved by
StaticFiles.resolve, a CGI script is found by CgiScripts.locate and the params of
a FastCGI/SCGI mount are rendered by the gateway's own template code (each
kind's lines are fastgw.mountlines, picked through fastgw.mountkinds).
"""
from urllib.parse import unquote_to_bytes, urlsplit

from fastgw._request import Request
from fastgw.errors import ConfigError
from fastgw.mountkinds import KINDS, describe_mount
from fastgw.mountlines import shown
from fastgw.router import route_table, table_router


def request_for(url):
    """A GET Request for `url` (a path, a path?query or http(s)://host/path), decoded as the
    HTTP layer decodes a request target."""
    host, scheme, target = "localhost", "http", url
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"URL {url!r}: expected a path such as /static/app.css or an "
                              f"http(s)://host/path URL")
        host, scheme = parts.netloc, parts.scheme
        target = url[url.index("/", len(parts.scheme) + 3):] if parts.path else "/"
    if not target.startswith("/"):
        raise ConfigError(f"URL {url!r}: expected a path starting with '/' (/static/app.css) "
                          f"or an http(s)://host/path URL")
    raw = target.encode("utf-8", "surrogateescape")
    path, _, query = raw.partition(b"?")
    path = path.partition(b"#")[0]
    req = Request()
    req.method = "GET"
    req.target = raw.decode("latin-1")
    req.path = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
    req.query = query.partition(b"#")[0].decode("latin-1")
    req.script_name = ""
    req.version = "HTTP/1.1"
    req.headers = [("Host", host)]
    req.params = None
    req.peer = None
    req.sockname = None
    req.scheme = scheme
    req.content_length = -1
    return req


def explain(config, url):
    """The text `fastgw explain` prints for `url` under `config`."""
    req = request_for(url)
    routes = route_table(config.mounts)
    prefix, route = table_router(routes, lambda r: r).match(req.path)
    lines = [f"GET {req.target}" + (f" (Host: {req.headers[0][1]})" if "://" in url else ""),
             f"  decoded path:   {shown(req.path)}"]
    if route is None:
        lines.append("  mount:          none: nothing is mounted at this path, the answer is "
                     "404 Not Found")
        return "\n".join(lines) + "\n"
    mount = route.mount
    req.script_name, req.path = prefix, req.path[len(prefix):]
    lines += [f"  mount:          {describe_mount(mount)}",
              f"  defined in:     {mount.source or 'the command line'}",
              f"  SCRIPT_NAME:    {shown(req.script_name)}",
              f"  PATH_INFO:      {shown(req.path)}",
              f"  QUERY_STRING:   {shown(req.query)}"]
    if mount.group:
        group = next(g for g in config.groups if g.name == mount.group)
        lines.append(f"  process group:  {group.describe()}")
    elif KINDS[mount.kind].wsgi:
        lines.append("  process group:  none: the front workers run the application")
    lines += auth_lines(route, config)
    if mount.internal:
        lines.append("  file:           none: an internal mount; a client asking for this URL "
                     "gets 404 Not Found, an application's X-Accel-Redirect to it gets the file")
    elif KINDS[mount.kind].details is not None:
        lines += KINDS[mount.kind].details(mount, req, config)
    return "\n".join(lines) + "\n"


def auth_lines(route, config):
    guard = route.auth
    if guard is None:
        return ["  auth:           none"]
    auth = guard.auth
    rule = ("the mount's own auth" if guard is route.mount
            else f"auth-only mount {guard.path!r} ({guard.source or 'the command line'})")
    lines = [f"  auth:           HTTP Basic, realm {auth.realm!r}, from {rule}",
             f"    check_password:  {auth.check_password}"]
    if auth.require_group is not None:
        lines += [f"    groups_for_user: {auth.groups_for_user}",
                  f"    require_group:   {auth.require_group!r}"]
    if auth.group is not None:
        group = next(g for g in config.groups if g.name == auth.group)
        lines.append(f"    hooks run in:    process group {group.describe()}")
    else:
        lines.append("    hooks run in:    the front workers")
    return lines
