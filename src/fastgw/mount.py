"""Mounts: the entries of the routing table, each checked when it is made.

Strategy: a Mount is a frozen dataclass whose __post_init__ checks it whole and
works out its `kind` (app, group, dir, file, cgi, fastcgi, scgi or auth), so a
mistake is a ConfigError naming where the mount was written (a flag or a
[[mount]] table) before anything starts. Paths are made absolute and kept in
fastgw's str convention (fastgw.paths); the types a mount carries (AuthConfig,
params templates) come from the config layer, never from the handlers that use
them.
"""
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from fastgw.addresses import parse_upstream
from fastgw.authconfig import AuthConfig
from fastgw.errors import ConfigError
from fastgw.gatewayparams import check_params
from fastgw.loader import parse_app_spec
from fastgw.paths import fs_bytes, fs_str, printable_path, wire_path


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
    # HTTP Basic authentication in front of any mount (an authconfig.AuthConfig, docs/django.md).
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
            if type(self.auth) is not AuthConfig:
                raise ConfigError(f"{where}: auth must be an AuthConfig (auth = {{ ... }} table)")
        if self.manifest is not None and self.static is None:
            raise ConfigError(f"{where}: manifest only applies to static mounts")
        if self.group is not None and (self.app is None or type(self.group) is not str):
            raise ConfigError(f"{where}: group = {self.group!r} only applies to app mounts and "
                              f"must name a [[group]]")
        if self.internal is not False or self.x_sendfile_roots:
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


def check_mount(mount, where):
    """`internal` is for static mounts, `x_sendfile_roots` (made absolute here) for apps."""
    if mount.internal is not False and (mount.static is None or mount.internal is not True):
        raise ConfigError(f"{where}: internal = {mount.internal!r} only applies to static "
                          f"mounts and must be true or false")
    if mount.x_sendfile_roots:
        if mount.app is None:
            raise ConfigError(f"{where}: x_sendfile_roots only applies to app mounts")
        object.__setattr__(mount, "x_sendfile_roots", check_roots(mount.x_sendfile_roots, where))


def check_roots(roots, where):
    """x_sendfile_roots -> absolute directory paths (fastgw's str convention)."""
    if isinstance(roots, str) or not all(type(r) is str and r for r in roots):
        raise ConfigError(f"{where}: x_sendfile_roots must be a list of directories")
    checked = []
    for root in roots:
        raw = fs_bytes(root)
        if b"\0" in raw:
            raise ConfigError(f"{where}: x_sendfile_roots: {root!r} contains a NUL")
        raw = os.path.abspath(raw)
        if not os.path.isdir(raw):
            raise ConfigError(f"{where}: x_sendfile_roots: {printable_path(root)!r} is not a "
                              f"directory; give the directory the application's files are in")
        checked.append(raw.decode("utf-8", "surrogateescape"))
    return tuple(checked)
