"""Validated, frozen configuration; every bad value raises ConfigError naming the flag.

Where a value came from (a command-line flag or a key of the --config file) is
kept in `Config.sources`, so an error names the place the user has to edit.
File system paths are str in one convention: their bytes decoded as UTF-8 with
surrogateescape (see `fs_bytes`), so they survive any locale, even LANG=C.
"""
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from fastgw.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Bind:
    """One listener: a TCP host and port, a UNIX socket path, or an inherited descriptor."""

    host: Optional[str] = None
    port: Optional[int] = None
    path: Optional[str] = None
    scheme: str = "http"
    # A listening socket passed by the launcher (fd://N, systemd socket activation).
    fd: Optional[int] = None

    def describe(self, port=None):
        if self.fd is not None:
            return f"fd://{self.fd}" if self.scheme == "http" else f"{self.scheme}://fd://{self.fd}"
        if self.path is not None:
            return f"unix:{self.path}" if self.scheme == "http" else f"{self.scheme}://unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port if port is None else port}"


_IPV6_BIND = re.compile(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)")


SCHEMES = ("http", "fastcgi", "scgi", "uwsgi")


def parse_bind(text, where="--bind"):
    """`[SCHEME://]HOST:PORT`, `[IPv6]:PORT` or `unix:/path` -> Bind; `where` names the flag.

    SCHEME is the protocol spoken on the listener: http (the default), fastcgi, scgi
    or uwsgi (e.g. `fastcgi://127.0.0.1:9000`, `scgi://unix:/run/app.sock`).
    """
    how = ("expected [SCHEME://]HOST:PORT, [IPv6]:PORT or [SCHEME://]unix:/path with SCHEME "
           f"one of {', '.join(SCHEMES)} (e.g. 127.0.0.1:8000, fastcgi://unix:/run/app.sock)")
    full = text
    scheme = "http"
    if "://" in text and not text.startswith("fd://"):
        scheme, _, text = text.partition("://")
        if scheme not in SCHEMES:
            raise ConfigError(f"{where} {full!r}: unknown protocol {scheme!r}; {how}")
    if text.startswith("fd://"):
        from fastgw.activation import names_text, resolve_fd

        fd = resolve_fd(text[5:])
        if fd is None:
            raise ConfigError(f"{where} {full!r}: no socket named {text[5:]!r} was passed to "
                              f"fastgw ({names_text()}); use fd://N or a name from "
                              f"LISTEN_FDNAMES (systemd's FileDescriptorName=)")
        return Bind(fd=fd, scheme=scheme)
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError(f"{where} {full!r}: missing socket path; {how}")
        return Bind(path=os.path.abspath(path), scheme=scheme)
    match = _IPV6_BIND.fullmatch(text)
    if match:
        host, port = match.group(1), match.group(2)
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host or ":" in host or "[" in host or "/" in text:
            raise ConfigError(f"{where} {full!r}: {how}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where} {full!r}: port must be a number from 0 to 65535; {how}")
    return Bind(host=host, port=int(port), scheme=scheme)


def fs_bytes(path):
    """The file system bytes of a path str kept in fastgw's convention."""
    return path.encode("utf-8", "surrogateescape")


def fs_str(raw):
    """bytes from the file system (or os.fsencode of an argv str) -> a path str."""
    return raw.decode("utf-8", "surrogateescape")


def printable_path(path):
    """A path str safe to print in any locale (undecodable bytes as \\xNN)."""
    return fs_bytes(path).decode("utf-8", "backslashreplace")


def wire_path(path):
    """A URL path as the HTTP layer delivers it: UTF-8 bytes carried in a latin-1 str."""
    return path.encode("utf-8", "surrogateescape").decode("latin-1")


_BAD_PREFIX_CHARS = re.compile(r"[\x00-\x20\x7f?#%\\\\]")


@dataclass(frozen=True)
class Mount:
    """One entry of the routing table: a URL prefix served by an app or by static files.

    `app` is a WSGI application spec (module:callable). `static` is a directory
    (served below the prefix) or one file (served at exactly the prefix, e.g.
    /robots.txt). The other options only apply to static mounts.
    """

    path: str
    app: Optional[str] = None
    static: Optional[str] = None
    index: Optional[str] = "index.html"
    cache_control: Optional[str] = None
    dotfiles: bool = False
    follow_symlinks: bool = False
    precompressed: bool = True
    # Gateway mounts (docs/gateway.md): a directory of CGI scripts, or the address of a
    # FastCGI or SCGI upstream; with extra CGI variables (templates) and a timeout.
    cgi: Optional[str] = None
    fastcgi: Optional[str] = None
    scgi: Optional[str] = None
    params: Tuple[Tuple[str, str], ...] = ()
    split_path_info: Optional[str] = None
    timeout: Optional[float] = None
    # HTTP Basic authentication in front of any mount (an auth.AuthConfig, docs/django.md).
    auth: Optional[object] = None
    # Static mounts: Django's staticfiles.json (relative to the directory) for cache headers.
    manifest: Optional[str] = None
    # App mounts: the process group (config.groups) whose processes run the app.
    group: Optional[str] = None
    # False: the application reads the request body as it arrives (nginx's
    # request_buffering off), instead of being called once the loop has it all.
    request_buffering: bool = True
    # Protected downloads (fastgw.offload): a static mount only X-Accel-Redirect reaches,
    # and the directories an app mount's X-Sendfile may name files below.
    internal: bool = False
    x_sendfile_roots: Tuple[str, ...] = ()
    # "--mount '/api=api:app'" or "fastgw.toml: [[mount]] #2": where to fix a mistake.
    source: str = field(default="", compare=False)
    # "app", "group" (an app in a process group), "dir", "file", "cgi", "fastcgi", "scgi"
    # or "auth" (auth only: a login rule below the prefix); worked out when validated.
    kind: str = field(default="", init=False, compare=False)

    def __post_init__(self):
        where = self.source or f"mount {self.path!r}"
        path = self.path
        if type(path) is not str or not path.startswith("/"):
            raise ConfigError(f"{where}: the URL prefix {path!r} must start with '/', "
                              f"e.g. /static or /api")
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        if _BAD_PREFIX_CHARS.search(path):
            raise ConfigError(f"{where}: the URL prefix {self.path!r} may not contain spaces, "
                              f"control characters, '?', '#', '%' or backslashes; write it "
                              f"decoded, e.g. /media/files")
        if "//" in path or any(seg in (".", "..") for seg in path.split("/")):
            raise ConfigError(f"{where}: the URL prefix {self.path!r} may not contain empty, "
                              f"'.' or '..' segments")
        object.__setattr__(self, "path", path)
        if self.auth is not None:
            from fastgw.auth import AuthConfig
            if type(self.auth) is not AuthConfig:
                raise ConfigError(f"{where}: auth must be an AuthConfig (auth = {{ ... }} table)")
        if self.manifest is not None and self.static is None:
            raise ConfigError(f"{where}: manifest only applies to static mounts")
        if self.group is not None and (self.app is None or type(self.group) is not str):
            raise ConfigError(f"{where}: group = {self.group!r} only applies to app mounts and "
                              f"must name a [[group]]")
        if self.internal is not False or self.x_sendfile_roots:
            from fastgw.offload import check_mount
            check_mount(self, where)
        given = [k for k in ("app", "static") + GATEWAY_KINDS if getattr(self, k) is not None]
        if len(given) > 1 and given[1] in GATEWAY_KINDS:
            raise ConfigError(f"{where}: give one of app, static, cgi, fastcgi or scgi, not both "
                              f"{given[0]} and {given[1]}")
        if given and given[0] in GATEWAY_KINDS:
            self.check_gateway(where, given[0])
            return
        for key in ("params", "split_path_info", "timeout"):
            if getattr(self, key) not in (None, ()):
                raise ConfigError(f"{where}: {key} only applies to cgi, fastcgi and scgi mounts")
        if not given and self.auth is not None:
            # An auth-only mount: a rule guarding the URLs below `path`, whichever mount
            # serves them (Apache's <Location> with AuthType Basic).
            object.__setattr__(self, "kind", "auth")
            return
        if (self.app is None) == (self.static is None):
            hint = "not both" if self.app else ("not neither (or only auth, to require a "
                                                "login below the prefix)")
            raise ConfigError(f"{where}: give either an app (module:callable) or a static "
                              f"directory or file, {hint}")
        if self.app is not None:
            from fastgw.loader import parse_app_spec
            try:
                parse_app_spec(self.app)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            object.__setattr__(self, "kind", "app" if self.group is None else "group")
            return
        self.check_static(where)

    def check_static(self, where):
        raw = fs_bytes(self.static)
        if not raw or b"\0" in raw:
            raise ConfigError(f"{where}: static path {self.static!r} is empty or contains a NUL")
        raw = os.path.abspath(raw)
        try:
            st = os.stat(raw)
        except OSError as e:
            raise ConfigError(f"{where}: static path {printable_path(fs_str(raw))!r}: "
                              f"{e.strerror.lower()}; give an existing directory or file") from None
        if stat.S_ISDIR(st.st_mode):
            kind = "dir"
        elif stat.S_ISREG(st.st_mode):
            kind = "file"
        else:
            raise ConfigError(f"{where}: static path {printable_path(fs_str(raw))!r} is neither "
                              f"a directory nor a regular file")
        object.__setattr__(self, "static", fs_str(raw))
        object.__setattr__(self, "kind", kind)
        if self.index is not None:
            if (type(self.index) is not str or not self.index or "/" in self.index
                    or self.index in (".", "..") or "\0" in self.index):
                raise ConfigError(f"{where}: index {self.index!r} must be a file name such as "
                                  f"index.html (no '/'), or off")
        if self.cache_control is not None:
            if type(self.cache_control) is not str or any(
                    c < " " or c == "\x7f" or c > "\x7e" for c in self.cache_control):
                raise ConfigError(f"{where}: cache_control {self.cache_control!r} must be "
                                  f"printable ASCII, e.g. 'public, max-age=3600'")
        for name in ("dotfiles", "follow_symlinks", "precompressed"):
            if type(getattr(self, name)) is not bool:
                raise ConfigError(f"{where}: {name} {getattr(self, name)!r} must be true or false")
        if self.manifest is not None:
            self.check_manifest(where, raw, kind)

    def check_manifest(self, where, root, kind):
        """manifest: a file below the static directory, e.g. staticfiles.json."""
        name = self.manifest
        if kind != "dir":
            raise ConfigError(f"{where}: manifest only applies to a static directory")
        if (type(name) is not str or not name or name.startswith("/") or "\0" in name
                or any(seg in ("", ".", "..") for seg in name.split("/"))):
            raise ConfigError(f"{where}: manifest {name!r} must be a file name below the "
                              f"directory, e.g. staticfiles.json")
        if not os.path.isfile(os.path.join(root, fs_bytes(name))):
            raise ConfigError(f"{where}: manifest {name!r} is not a file in "
                              f"{printable_path(fs_str(root))!r}; run `manage.py collectstatic` "
                              f"(with ManifestStaticFilesStorage) first")

    def check_gateway(self, where, kind):
        """A cgi, fastcgi or scgi mount: the directory or address, params, timeout."""
        target = getattr(self, kind)
        if type(target) is not str or not target:
            raise ConfigError(f"{where}: {kind} must be a non-empty string")
        if kind == "cgi":
            raw = fs_bytes(target)
            if b"\0" in raw:
                raise ConfigError(f"{where}: cgi path {target!r} contains a NUL")
            raw = os.path.abspath(raw)
            if not os.path.isdir(raw):
                raise ConfigError(f"{where}: cgi directory {printable_path(fs_str(raw))!r} does "
                                  f"not exist or is not a directory; give the directory holding "
                                  f"the scripts")
            object.__setattr__(self, "cgi", fs_str(raw))
            if self.split_path_info is not None:
                raise ConfigError(f"{where}: split_path_info is for fastcgi and scgi mounts; a "
                                  f"cgi mount finds the script on the file system")
        else:
            object.__setattr__(self, kind, parse_upstream(target, f"{where}: {kind}"))
        params = self.params
        if isinstance(params, Mapping):
            params = tuple(params.items())
        if type(params) is not tuple or not all(type(p) is tuple and len(p) == 2 for p in params):
            raise ConfigError(f"{where}: params must be a table of strings, e.g. "
                              f'params = {{ SCRIPT_FILENAME = "/srv/php{{path_info}}" }}')
        from fastgw.cgi import check_params
        check_params(params, where)
        object.__setattr__(self, "params", params)
        if self.split_path_info is not None:
            try:
                groups = re.compile(self.split_path_info).groups
            except (re.error, TypeError) as e:
                raise ConfigError(f"{where}: split_path_info {self.split_path_info!r} is not a "
                                  f"regular expression: {e}") from None
            if groups != 2:
                raise ConfigError(f"{where}: split_path_info {self.split_path_info!r} needs two "
                                  f"groups (script, path info), e.g. '^(.+?\\.php)(/.*)?$'")
        if self.timeout is not None:
            if type(self.timeout) not in (int, float) or not self.timeout > 0:
                raise ConfigError(f"{where}: timeout {self.timeout!r} must be a number of "
                                  f"seconds above 0")
            object.__setattr__(self, "timeout", float(self.timeout))
        object.__setattr__(self, "kind", kind)

    def gateway_timeout(self, server_timeout):
        """Seconds a cgi/fastcgi/scgi request may take: the mount's timeout, by default 1 s
        less than the server's --timeout (so the gateway answers 504 before the worker
        watchdog fires), DEFAULT_GATEWAY_TIMEOUT when --timeout is 0."""
        if self.timeout is not None:
            return self.timeout
        if server_timeout:
            return max(server_timeout - 1.0, server_timeout / 2)
        return DEFAULT_GATEWAY_TIMEOUT

    @property
    def wire_path(self):
        return wire_path(self.path)


def parse_mount_arg(text, flag):
    """`--mount PREFIX=APP` / `--static PREFIX=PATH` / `--cgi PREFIX=DIR` /
    `--fastcgi PREFIX=ADDRESS` / `--scgi PREFIX=ADDRESS` -> Mount."""
    prefix, sep, target = text.partition("=")
    if flag in ("--cgi", "--fastcgi", "--scgi"):
        kind = flag[2:]
        example = {"--cgi": "/cgi-bin/=/srv/cgi-bin", "--fastcgi": "/php=unix:/run/php/php-fpm.sock",
                   "--scgi": "/app=tcp://127.0.0.1:4000"}[flag]
        if not sep or not prefix or not target:
            raise ConfigError(f"{flag} {text!r}: expected PREFIX={'DIR' if kind == 'cgi' else 'ADDRESS'}"
                              f", e.g. {flag} {example}")
        if kind == "cgi":
            target = fs_str(os.fsencode(target))
        return Mount(path=prefix, source=f"{flag} {text!r}", **{kind: target})
    example = "/api=api.wsgi:application" if flag == "--mount" else "/static=/srv/site/static"
    if not sep or not prefix or not target:
        raise ConfigError(f"{flag} {text!r}: expected PREFIX={'APP' if flag == '--mount' else 'PATH'}"
                          f", e.g. {flag} {example}")
    source = f"{flag} {text!r}"
    if flag == "--mount":
        return Mount(path=prefix, app=target, source=source)
    return Mount(path=prefix, static=fs_str(os.fsencode(target)), source=source)


def covers(prefix, path):
    """Does the mount prefix `prefix` match the URL path (or prefix) `path`? Whole segments."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


GATEWAY_KINDS = ("cgi", "fastcgi", "scgi")
# The timeout of cgi/fastcgi/scgi mounts when neither they nor --timeout set one.
DEFAULT_GATEWAY_TIMEOUT = 60.0


def parse_upstream(text, where):
    """A FastCGI/SCGI upstream address -> 'unix:/abs/path' or 'tcp://HOST:PORT'.

    Accepted: unix:/path (relative paths are made absolute), tcp://HOST:PORT, HOST:PORT,
    [IPv6]:PORT.
    """
    how = ("expected unix:/path/to.sock, tcp://HOST:PORT or HOST:PORT "
           "(e.g. unix:/run/php/php-fpm.sock, tcp://127.0.0.1:9000)")
    if text.startswith("unix:"):
        path = text[5:]
        if not path or "\0" in path:
            raise ConfigError(f"{where} = {text!r}: missing socket path; {how}")
        return "unix:" + os.path.abspath(path)
    hostport = text[6:] if text.startswith("tcp://") else text
    match = _IPV6_BIND.fullmatch(hostport)
    if match:
        host, port = "[" + match.group(1) + "]", match.group(2)
    else:
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or "/" in hostport or ":" in host or "[" in host:
            raise ConfigError(f"{where} = {text!r}: {how}")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{where} = {text!r}: port must be a number from 1 to 65535; {how}")
    return f"tcp://{host}:{int(port)}"


@dataclass(frozen=True)
class Config:
    app: Optional[str] = None
    binds: Tuple[Bind, ...] = (Bind(host="127.0.0.1", port=8000),)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    chdir: Optional[str] = None
    pythonpath: Tuple[str, ...] = ()
    env: Tuple[Tuple[str, str], ...] = ()
    backlog: int = 2048
    log_level: str = "info"
    access_log: Optional[str] = None
    keepalive: float = 5.0
    graceful_timeout: float = 30.0
    header_timeout: float = 10.0
    io_timeout: float = 30.0
    body_buffer_dir: Optional[str] = None
    max_connections: int = 4096
    limit_request_line: int = 8190
    limit_request_field_size: int = 8190
    limit_request_fields: int = 100
    limit_request_head: int = 65536
    limit_request_body: int = 0
    limit_chunk_line: int = 4096
    limit_trailer_size: int = 8192
    threads: int = 1
    timeout: float = 30.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    # MiB of resident memory past which a worker is replaced after a request; 0 = off.
    reload_on_rss: int = 0
    pid: Optional[str] = None
    user: Optional[str] = None
    group: Optional[str] = None
    reload: bool = False
    proxy_protocol: bool = False
    # Operations (docs/operations.md).
    access_log_format: str = "combined"
    error_log: Optional[str] = None
    request_id: bool = False
    metrics: Optional[str] = None
    drain_seconds: float = 0.0
    reuse_port: bool = False
    unix_socket_mode: Optional[int] = None
    forwarded_allow_ips: Tuple[str, ...] = ()
    proxy_allow_ips: Tuple[str, ...] = ("127.0.0.1,::1",)
    # The routing table; `app` (if given) is the mount at "/".
    mounts: Tuple[Mount, ...] = ()
    # Process groups ([[group]], fastgw.groups.Group) that mounts and auth hooks name.
    groups: Tuple[object, ...] = ()
    # Set in the config of a group's own processes: the group they serve.
    serving_group: Optional[str] = None
    config_file: Optional[str] = None
    # field name -> where its value was set, e.g. "fastgw.toml: [server] workers".
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        try:
            self.validate()
        except ConfigError as e:
            text = str(e)
            for name, where in self.sources.items():
                flag = "--" + name.replace("_", "-")
                if text.startswith(flag + " "):
                    raise ConfigError(f"{where} = {text[len(flag) + 1:]}") from None
            raise

    def validate(self):
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: must be at least 1")
        if self.backlog < 1:
            raise ConfigError(f"--backlog {self.backlog}: must be at least 1")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level {self.log_level!r}: choose one of {', '.join(LOG_LEVELS)}")
        if self.keepalive < 0:
            raise ConfigError(f"--keepalive {self.keepalive}: must be 0 or more seconds")
        if self.threads < 1:
            raise ConfigError(f"--threads {self.threads}: must be at least 1")
        if self.timeout < 0:
            raise ConfigError(f"--timeout {self.timeout}: must be 0 (never) or more seconds")
        if self.max_requests < 0 or self.max_requests_jitter < 0:
            raise ConfigError("--max-requests and --max-requests-jitter must be 0 or more")
        if self.reload_on_rss < 0:
            raise ConfigError(f"--reload-on-rss {self.reload_on_rss}: must be 0 (off) or more MiB")
        if self.graceful_timeout < 0:
            raise ConfigError(f"--graceful-timeout {self.graceful_timeout}: must be 0 or more seconds")
        for name in ("header_timeout", "io_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be "
                                  f"more than 0 seconds")
        for name in ("max_connections", "limit_request_line", "limit_request_field_size",
                     "limit_request_fields", "limit_request_head", "limit_chunk_line",
                     "limit_trailer_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be "
                                  f"at least 1")
        if self.limit_request_body < 0:
            raise ConfigError(f"--limit-request-body {self.limit_request_body}: must be 0 "
                              f"(no limit) or more bytes")
        if self.chdir is not None and not os.path.isdir(self.chdir):
            raise ConfigError(f"--chdir {self.chdir!r}: no such directory")
        if self.body_buffer_dir is not None:
            if not os.path.isdir(self.body_buffer_dir):
                raise ConfigError(f"--body-buffer-dir {self.body_buffer_dir!r}: no such "
                                  f"directory")
            if not os.access(self.body_buffer_dir, os.W_OK | os.X_OK):
                raise ConfigError(f"--body-buffer-dir {self.body_buffer_dir!r}: not writable "
                                  f"by this user (the workers write their temporary files "
                                  f"there)")
        if not self.binds:
            raise ConfigError("no --bind given")
        self.validate_operations()
        self.validate_mounts()

    def validate_operations(self):
        from fastgw.accesslog import check_format
        from fastgw.proxyheaders import parse_networks

        check_format(self.access_log_format)
        if self.drain_seconds < 0:
            raise ConfigError(f"--drain-seconds {self.drain_seconds}: must be 0 or more seconds")
        if self.unix_socket_mode is not None and not 0 <= self.unix_socket_mode <= 0o777:
            raise ConfigError(f"--unix-socket-mode {self.unix_socket_mode:o}: must be an octal "
                              f"mode from 000 to 777, e.g. 0660")
        if self.metrics is not None:
            bind = parse_bind(self.metrics, "--metrics")
            if bind.scheme != "http" or bind.fd is not None:
                raise ConfigError(f"--metrics {self.metrics!r}: expected HOST:PORT or "
                                  f"unix:/path (it speaks HTTP), e.g. 127.0.0.1:9100")
        parse_networks(self.forwarded_allow_ips)
        parse_networks(self.proxy_allow_ips, "--proxy-allow-ips")

    @property
    def metrics_bind(self):
        return parse_bind(self.metrics, "--metrics") if self.metrics is not None else None

    def validate_mounts(self):
        mounts = list(self.mounts)
        for m in mounts:
            if not isinstance(m, Mount):
                raise ConfigError(f"mounts must be Mount objects, not {type(m).__name__}")
        root = [m for m in mounts if m.path == "/"]
        if self.app is not None:
            if root and root[0].app == self.app:
                pass  # already normalised (e.g. dataclasses.replace of a Config)
            elif root:
                other = root[0].source or "a mount"
                raise ConfigError(f"APP {self.app!r} is the mount at '/', but {other} also "
                                  f"mounts '/'; keep one of them")
            else:
                mounts.insert(0, Mount(path="/", app=self.app, source=f"APP {self.app!r}"))
        elif root and root[0].kind in ("app", "group"):
            object.__setattr__(self, "app", root[0].app)
        seen = {}
        for m in mounts:
            if m.path in seen:
                first = seen[m.path].source or "another mount"
                hint = "each URL prefix can be mounted once"
                if "auth" in (m.kind, seen[m.path].kind):
                    hint = "to protect that mount itself, move the auth table into it"
                raise ConfigError(f"{m.source or 'a mount'} and {first} both mount {m.path!r}; "
                                  f"{hint}")
            seen[m.path] = m
            if m.timeout is not None and self.timeout and m.timeout >= self.timeout:
                raise ConfigError(f"{m.source or 'mount ' + repr(m.path)}: timeout {m.timeout:g} "
                                  f"is not below the server's --timeout {self.timeout:g}, which "
                                  f"would kill the worker first; lower it or raise --timeout")
        self.validate_auth_rules(mounts)
        self.validate_groups(mounts)
        if not mounts and self.serving_group is None:
            raise ConfigError("nothing to serve: give APP (module:callable), --mount PREFIX=APP, "
                              "--static PREFIX=PATH, or [[mount]] entries in a --config file")
        object.__setattr__(self, "mounts", tuple(mounts))

    @staticmethod
    def validate_auth_rules(mounts):
        """An auth-only mount must guard something: a mount above or below its prefix."""
        serving = [m.path for m in mounts if m.kind != "auth"]
        for rule in mounts:
            if rule.kind == "auth" and not any(covers(path, rule.path) or covers(rule.path, path)
                                               for path in serving):
                raise ConfigError(f"{rule.source or 'mount ' + repr(rule.path)}: auth-only mount "
                                  f"{rule.path!r} guards nothing: no mount serves URLs at, "
                                  f"above or below it; add the mount it should protect")

    def validate_groups(self, mounts):
        """Group names are unique; every group a mount or an auth hook names exists."""
        from fastgw.groups import Group

        names = {}
        for group in self.groups:
            if type(group) is not Group:
                raise ConfigError(f"groups must be Group objects, not {type(group).__name__}")
            if group.name in names:
                raise ConfigError(f"{group.source or 'a group'} and {names[group.name].source} "
                                  f"are both named {group.name!r}; group names must differ")
            names[group.name] = group
        for m in mounts:
            for what, name in (("group", m.group),
                               ("auth.group", m.auth.group if m.auth is not None else None)):
                if name is not None and name not in names:
                    known = ", ".join(sorted(names)) or "none is defined"
                    raise ConfigError(f"{m.source or 'mount ' + repr(m.path)}: {what} = "
                                      f"{name!r} names no [[group]] (groups: {known}); add a "
                                      f"[[group]] with name = {name!r}")

    def group_config(self, group):
        """The Config of `group`'s own processes: its mounts as plain app mounts, its
        processes and threads. What the front does once per request is not done again
        in the group: no access log, metrics, request ids or proxy headers (REMOTE_ADDR
        and the scheme already carry the front's result)."""
        import dataclasses

        # Auth was checked by the front, which passes REMOTE_USER on.
        mounts = tuple(dataclasses.replace(m, group=None, auth=None) for m in self.mounts
                       if m.group == group.name)
        # X-Accel-Redirect from the group's apps is answered in the group, from these.
        mounts += tuple(m for m in self.mounts if m.internal)
        return dataclasses.replace(
            self, app=None, mounts=mounts, groups=(), serving_group=group.name,
            workers=group.processes, threads=group.threads, access_log=None, metrics=None,
            request_id=False, forwarded_allow_ips=())

    def group_auth(self, name):
        """{mount prefix (wire form): AuthConfig} of the auth hooks that run in group `name`."""
        return {m.wire_path: m.auth for m in self.mounts
                if m.auth is not None and m.auth.group == name}


def parse_env(text):
    """`KEY=VALUE` -> (KEY, VALUE)."""
    key, sep, value = text.partition("=")
    if not sep or not key or "\0" in text:
        raise ConfigError(f"--env {text!r}: expected KEY=VALUE")
    return key, value
