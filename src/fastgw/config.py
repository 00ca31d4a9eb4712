"""Validated, frozen configuration; every bad value raises ConfigError naming the flag.

Where a value came from (a command-line flag or a key of the --config file) is
kept in `Config.sources`, so an error names the place the user has to edit.
File system paths are str in one convention (fastgw.paths), so they survive any
locale, even LANG=C.
"""
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from fastgw.accesslog import check_format
from fastgw.addresses import Bind, parse_bind
from fastgw.errors import ConfigError, TlsConfigError
from fastgw.groupconfig import Group
from fastgw.mount import Mount, covers
from fastgw.proxyheaders import parse_networks

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


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
    # HTTPS listeners (fastgw.tlscontext builds the SSLContext from these).
    certfile: Optional[str] = None
    keyfile: Optional[str] = None
    ssl_ciphers: Optional[str] = None
    ssl_min_version: str = "1.2"
    ca_certs: Optional[str] = None
    cert_reqs: str = "none"
    # SNI: "NAME=CERTFILE[,KEYFILE]" each (fastgw.tlscontext.parse_sni_cert)
    sni_cert: Tuple[str, ...] = ()
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
    # Process groups ([[group]], fastgw.groupconfig.Group) that mounts and auth hooks name.
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
                    raise type(e)(f"{where} = {text[len(flag) + 1:]}") from None
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
        self.validate_tls()

    def validate_tls(self):
        if self.ssl_min_version not in ("1.2", "1.3"):
            raise TlsConfigError(f"--ssl-min-version {self.ssl_min_version!r}: choose 1.2 or 1.3")
        if self.cert_reqs not in ("none", "optional", "required"):
            raise TlsConfigError(f"--cert-reqs {self.cert_reqs!r}: choose none, optional or "
                                 f"required")
        https = [b.describe() for b in self.binds if b.scheme == "https"]
        if https and not self.certfile:
            raise TlsConfigError(f"--bind {https[0]}: an HTTPS listener needs --certfile (and "
                                 f"--keyfile unless the key is in the same PEM file)")
        if self.cert_reqs != "none" and not self.ca_certs:
            raise TlsConfigError(f"--cert-reqs {self.cert_reqs}: give --ca-certs, the CAs that "
                                 f"sign the client certificates")

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


def default(name):
    """The default of Config's field `name`. Config's fields are fastgw's one table of
    defaults: the command line's flags (and so the config file's [server] keys, which
    take the flags' values) and Config() made in code all take theirs from there."""
    spec = Config.__dataclass_fields__[name]
    return spec.default_factory() if spec.default is dataclasses.MISSING else spec.default


def parse_env(text):
    """`KEY=VALUE` -> (KEY, VALUE)."""
    key, sep, value = text.partition("=")
    if not sep or not key or "\0" in text:
        raise ConfigError(f"--env {text!r}: expected KEY=VALUE")
    return key, value
