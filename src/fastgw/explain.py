"""`fastgw explain URL`: which rules of the configuration a URL meets.

Strategy: explain must never disagree with the server, so it asks the server's
own pieces rather than re-deriving anything: the URL is percent-decoded as the
HTTP layer does, the mount is chosen by a Router built by `router.table_router`
over the same `route_table` a worker uses (its handlers are the Routes
themselves, so no application is imported), a static file is resolved by
StaticFiles.resolve, a CGI script is found by CgiScripts.locate and the params of
a FastCGI/SCGI mount are rendered by the gateway's own template code.
"""
import os
import stat
from urllib.parse import unquote_to_bytes, urlsplit

from fastgw.config import GATEWAY_KINDS, printable_path
from fastgw.errors import ConfigError
from fastgw.router import route_table, table_router

STATUS_TEXT = {400: "400 Bad Request (a '.'/'..' segment, a backslash or a NUL)",
               403: "403 Forbidden", 404: "404 Not Found"}


def request_for(url):
    """A GET Request for `url` (a path, a path?query or http(s)://host/path), decoded as the
    HTTP layer decodes a request target."""
    from fastgw._request import Request

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


def shown(wire):
    """A wire-form (latin-1 carried bytes) string as the text it encodes."""
    return repr(wire.encode("latin-1").decode("utf-8", "backslashreplace"))


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
    elif mount.kind == "app":
        lines.append("  process group:  none: the front workers run the application")
    lines += auth_lines(route, config)
    if mount.internal:
        lines.append("  file:           none: an internal mount; a client asking for this URL "
                     "gets 404 Not Found, an application's X-Accel-Redirect to it gets the file")
    elif mount.kind in ("dir", "file"):
        lines += static_lines(mount, req)
    elif mount.kind in ("cgi", "fastcgi", "scgi"):
        lines += gateway_lines(mount, req, config)
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


def static_lines(mount, req):
    from fastgw.static import ENCODINGS, StaticFiles, content_type

    files = StaticFiles.from_mount(mount)
    if files.single_file:
        path = files.root if not req.path else 404
    else:
        path = files.resolve(req)
    if type(path) is int:
        return [f"  file:           none: the answer is {STATUS_TEXT[path]}"]
    lines = []
    try:
        st = os.stat(path)
    except OSError as e:
        return [f"  file:           {printable_path(os.fsdecode(path))} does not exist "
                f"({e.strerror}): the answer is 404 Not Found"]
    if stat.S_ISDIR(st.st_mode):
        if files.index is None:
            return [f"  file:           {printable_path(os.fsdecode(path))} is a directory "
                    f"and index is off: 404 Not Found"]
        if not path.endswith(b"/"):
            return [f"  file:           {printable_path(os.fsdecode(path))} is a directory: "
                    f"301 redirect to the URL with a trailing '/'"]
        path += files.index
        lines.append("  index:          " + files.index.decode("utf-8", "backslashreplace"))
        if not os.path.isfile(path):
            return lines + [f"  file:           {printable_path(os.fsdecode(path))} does not "
                            f"exist: 404 Not Found"]
        st = os.stat(path)
    lines += [f"  file:           {printable_path(os.fsdecode(path))} (exists, "
              f"{st.st_size} bytes)",
              f"  Content-Type:   {files.root_type if files.single_file else content_type(path)}"]
    if files.cache_control:
        lines.append(f"  Cache-Control:  {files.cache_control} (cache_control of the mount)")
    elif files.manifest is not None:
        relative = path[len(files.root) + 1:]
        lines.append(f"  Cache-Control:  {files.manifest.cache_control(relative)} (manifest "
                     f"{mount.manifest}: {'a' if relative in files.manifest.hashed else 'not a'} "
                     f"hashed name)")
    else:
        lines.append("  Cache-Control:  none")
    if files.precompressed:
        siblings = [f"{os.path.basename(os.fsdecode(path + suffix))} ({coding})"
                    for coding, suffix in ENCODINGS if os.path.isfile(path + suffix)]
        lines.append("  precompressed:  " + (", ".join(siblings) + " picked by Accept-Encoding"
                                             if siblings else "no .br or .gz sibling"))
    return lines


def gateway_lines(mount, req, config):
    from fastgw.cgi import apply_params
    from fastgw.router import gateway_handler

    gateway = gateway_handler(mount, config.timeout)
    where = gateway.locate(req)
    if type(where) is int:
        return [f"  script:         none: the answer is {STATUS_TEXT.get(where, where)}"]
    script_name, path_info, specials, context = where
    lines = []
    if mount.kind == "cgi":
        lines.append(f"  script:         {printable_path(os.fsdecode(context))}")
    else:
        lines.append(f"  upstream:       {getattr(mount, mount.kind)} ({mount.kind})")
    lines += [f"  script SCRIPT_NAME: {shown(script_name)}",
              f"  script PATH_INFO:   {shown(path_info)}"]
    if mount.params:
        env = gateway.environ(req, script_name, path_info, EmptyBody, context)
        apply_params(env, gateway.templates, specials)
        lines.append("  params:")
        lines += [f"    {name} = {shown(env[name]) if name in env else '(removed)'}"
                  for name, _ in mount.params]
    return lines


class EmptyBody:
    """The body of the GET request explain imagines."""

    length = None


def describe_mount(mount):
    """One line of the routing table, as `fastgw check` prints it."""
    if mount.kind == "auth":
        return (f"{mount.path:<20} auth only    {mount.auth.describe()}  (guards every URL "
                f"below it, served by the mount it would reach without the rule)")
    if mount.kind in ("app", "group"):
        options = [f"group={mount.group}"] if mount.group else []
        if mount.x_sendfile_roots:
            options.append("x_sendfile_roots=[" + ", ".join(
                repr(printable_path(root)) for root in mount.x_sendfile_roots) + "]")
        if mount.auth is not None:
            options.append(mount.auth.describe())
        options = "  (" + ", ".join(options) + ")" if options else ""
        return f"{mount.path:<20} app          {mount.app}{options}"
    if mount.kind in GATEWAY_KINDS:
        target = getattr(mount, mount.kind)
        line = f"{mount.path:<20} {mount.kind:<12} {printable_path(target) if mount.kind == 'cgi' else target}"
        options = [f"{name}={value!r}" for name, value in mount.params]
        if mount.split_path_info:
            options.append(f"split_path_info={mount.split_path_info!r}")
        if mount.timeout is not None:
            options.append(f"timeout={mount.timeout:g}")
        if mount.auth is not None:
            options.append(mount.auth.describe())
        return line + ("  (" + ", ".join(options) + ")" if options else "")
    what = "static dir " if mount.kind == "dir" else "static file"
    line = f"{mount.path:<20} {what}  {printable_path(mount.static)}"
    options = []
    if mount.kind == "dir":
        options.append(f"index={mount.index}" if mount.index else "index=off")
        if mount.dotfiles:
            options.append("dotfiles")
        if mount.follow_symlinks:
            options.append("follow_symlinks")
    if mount.precompressed:
        options.append("precompressed")
    if mount.cache_control:
        options.append(f"cache_control={mount.cache_control!r}")
    if mount.manifest:
        options.append(f"manifest={mount.manifest!r}")
    if mount.internal:
        options.append("internal: X-Accel-Redirect only")
    if mount.auth is not None:
        options.append(mount.auth.describe())
    return line + ("  (" + ", ".join(options) + ")" if options else "")
