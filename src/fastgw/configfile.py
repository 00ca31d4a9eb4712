"""The --config file: TOML with a [server] table, [[mount]] and [[group]] entries.

Strategy: the [server] keys are not listed here; the command line hands over a
table of its flags (key = flag name without '--', '-' -> '_'), so every flag has
a key and a new flag gets one for free. A value is checked with the flag's own
converter, so the file accepts what the command line accepts. Every error names
the file, the key, the bad value and what is allowed; an unknown key is an error.
Relative paths in the file are relative to the directory the file is in.
"""
import json
import os
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

from fastgw.authconfig import AuthConfig
from fastgw.errors import ConfigError
from fastgw.groupconfig import GROUP_KEYS, Group
from fastgw.mount import Mount
from fastgw.paths import fs_str

# [server] keys holding file system paths, resolved against the file's directory.
PATH_KEYS = frozenset({"chdir", "pythonpath", "access_log", "error_log", "body_buffer_dir",
                       "x_sendfile_root", "certfile", "keyfile", "ca_certs"})
MOUNT_KEYS = ("path", "app", "static", "index", "cache_control", "dotfiles",
              "follow_symlinks", "precompressed", "cgi", "fastcgi", "scgi", "params",
              "split_path_info", "timeout", "auth", "manifest", "group", "internal",
              "x_sendfile_roots", "request_buffering")
GATEWAY_KEYS = ("cgi", "fastcgi", "scgi")
STATIC_ONLY_KEYS = ("index", "cache_control", "dotfiles", "follow_symlinks", "precompressed",
                    "manifest", "internal")
# Hints for keys people will try in [server].
SERVER_HINTS = {
    "app": 'the application is a mount: [[mount]] path = "/" app = "module:callable"',
    "mount": "mounts are [[mount]] tables with path = ... and app = ... or static = ...",
    "static": 'static files are a mount: [[mount]] path = "/static" static = "DIR"',
    "config": "a config file cannot name another one",
}


class Option:
    """One command-line flag as the [server] table sees it."""

    def __init__(self, key, flag, dest, convert=None, choices=None, multiple=False,
                 boolean=False, const=None):
        self.key = key
        self.flag = flag
        self.dest = dest
        self.convert = convert
        self.choices = choices
        self.multiple = multiple
        self.boolean = boolean
        self.const = const


class ConfigFile:
    """What a file says: converted [server] values by key, and its mounts."""

    def __init__(self, path, server, mounts, groups=()):
        self.path = path
        self.server = server
        self.mounts = mounts
        self.groups = list(groups)

    def where(self, key):
        return f"{self.path}: [server] {key}"


def toml_value(value):
    """A Python value written the way it would be in TOML (for messages and `fastgw check`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}"
                               for k, v in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def load(path, options):
    """Read and check a config file; `options` maps [server] keys to Options."""
    label = path
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"--config {label!r}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {label!r} is a directory; name a TOML file") from None
    except OSError as e:
        raise ConfigError(f"--config {label!r}: cannot read it: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{label}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{label}: not valid TOML: it must be UTF-8 ({e.reason} at byte "
                          f"{e.start})") from None
    base = fs_str(os.path.dirname(os.path.abspath(os.fsencode(path))))
    for key in data:
        if key not in ("server", "mount", "group"):
            raise ConfigError(f"{label}: unknown table or key {key!r} at the top level; a fastgw "
                              f"config has a [server] table, [[mount]] and [[group]] entries")
    server = data.get("server", {})
    if not isinstance(server, dict):
        raise ConfigError(f"{label}: server = {toml_value(server)}: [server] must be a table")
    mounts = data.get("mount", [])
    if isinstance(mounts, dict):
        raise ConfigError(f"{label}: [mount] must be written [[mount]] (an array of tables, "
                          f"one per mount)")
    if not isinstance(mounts, list) or not all(isinstance(m, dict) for m in mounts):
        raise ConfigError(f"{label}: mount must be [[mount]] tables, one per mount")
    config = ConfigFile(label, {}, [])
    for key, value in server.items():
        option = options.get(key)
        if option is None:
            hint = SERVER_HINTS.get(key) or ("allowed keys: " + ", ".join(sorted(options)))
            raise ConfigError(f"{label}: unknown key {key!r} in [server]; {hint}")
        config.server[key] = server_value(config, option, value, base)
    for number, entry in enumerate(mounts, 1):
        config.mounts.append(mount_entry(label, number, entry, base))
    groups = data.get("group", [])
    if not isinstance(groups, list):
        raise ConfigError(f"{label}: [group] must be written [[group]] (an array of tables, "
                          f"one per process group)")
    for number, entry in enumerate(groups, 1):
        config.groups.append(parse_group_table(entry, number, label,
                                               lambda path: resolve(base, path)))
    return config


def server_value(config, option, value, base):
    """Check and convert one [server] value to what the flag's parser would produce."""
    key = option.key
    where = config.where(key)

    def fail(allowed):
        raise ConfigError(f"{where} = {toml_value(value)}: {allowed}")

    if option.boolean:
        if not isinstance(value, bool):
            fail("must be true or false")
        return option.const if value else not option.const
    if key == "pythonpath":
        items = value.split(":") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            fail("must be a list of directories (or one string, colon-separated)")
        return ":".join(resolve(base, v) for v in items if v)
    if key == "env" and isinstance(value, dict):
        value = [f"{k}={v}" if isinstance(v, str) else v for k, v in value.items()]
        if not all(isinstance(v, str) for v in value):
            fail("values of env must be strings, e.g. "
                 'env = { DJANGO_SETTINGS_MODULE = "mysite.settings" }')
    if option.multiple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            fail("must be a string or a list of strings")
        converted = [convert(option, v, fail) for v in items]
        if key == "env":
            for item in converted:
                name, sep, _ = item.partition("=")
                if not sep or not name or "\0" in item:
                    fail(f"{item!r} is not KEY=VALUE; write env = {{ KEY = \"VALUE\" }}")
        if key == "bind":
            converted = [f"unix:{resolve(base, v[5:])}" if v.startswith("unix:") and v[5:] else v
                         for v in converted]
        elif key in PATH_KEYS:
            converted = [resolve(base, v) for v in converted]
        return converted
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        fail(describe_allowed(option))
    if option.convert is None and not isinstance(value, str):
        fail("must be a string")
    converted = convert(option, value if isinstance(value, str) else str(value), fail)
    if option.choices is not None and converted not in option.choices:
        fail("choose one of " + ", ".join(map(str, option.choices)))
    if key in PATH_KEYS and converted is not None and converted != "-":
        converted = resolve(base, converted)
    return converted


def convert(option, text, fail):
    if option.convert is None:
        return text
    try:
        return option.convert(text)
    except Exception as e:  # argparse.ArgumentTypeError, ValueError, ConfigError
        fail(str(e) or describe_allowed(option))


def describe_allowed(option):
    if option.choices is not None:
        return "choose one of " + ", ".join(map(str, option.choices))
    name = getattr(option.convert, "__name__", "")
    if name.endswith("int"):
        return "must be a whole number"
    if name in ("seconds", "float"):
        return "must be a number of seconds"
    return "must be a string"


def resolve(base, path):
    """A path from the file: absolute as is, else relative to the file's directory."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def string_table(value, where, example):
    """A TOML table of strings -> ((key, value), ...); `where` names the key."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where} = {toml_value(value)}: must be a table of strings, e.g. "
                          f"{example}")
    return tuple(value.items())


def parse_group_table(entry, number, label, resolve):
    """One [[group]] table of a config file -> Group; `resolve` makes paths absolute."""
    where = f"{label}: [[group]] #{number}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    name = entry.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: needs name = \"NAME\" (a string)")
    where = f"{where} (name = {json.dumps(name)})"
    for key in entry:
        if key not in GROUP_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed keys: "
                              f"{', '.join(GROUP_KEYS)}")
    values = {"name": name, "source": where}
    for key in ("processes", "threads"):
        if key in entry:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}: {key} = {value!r} must be a whole number")
            values[key] = value
    for key in ("venv", "chdir", "user", "group"):
        if key in entry:
            if not isinstance(entry[key], str) or not entry[key]:
                raise ConfigError(f"{where}: {key} must be a non-empty string")
            values[key] = resolve(entry[key]) if key in ("venv", "chdir") else entry[key]
    if "python_path" in entry:
        paths = entry["python_path"]
        if isinstance(paths, str):
            paths = paths.split(":")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ConfigError(f"{where}: python_path must be a list of directories (or one "
                              f"string, colon-separated)")
        values["python_path"] = tuple(resolve(p) for p in paths if p)
    if "env" in entry:
        values["env"] = string_table(entry["env"], f"{where}: env",
                                     'env = { DJANGO_SETTINGS_MODULE = "mysite.settings" }')
    return Group(**values)


def mount_entry(label, number, entry, base):
    """One [[mount]] table -> Mount."""
    where = f"{label}: [[mount]] #{number}"
    path = entry.get("path")
    if not isinstance(path, str):
        raise ConfigError(f"{where}: needs path = \"/prefix\" (a string), got "
                          f"{'nothing' if path is None else toml_value(path)}")
    where = f"{where} (path = {toml_value(path)})"
    for key in entry:
        if key not in MOUNT_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed keys: "
                              f"{', '.join(MOUNT_KEYS)}")
    app = entry.get("app")
    static = entry.get("static")
    if "auth" in entry and not any(key in entry for key in ("app", "static") + GATEWAY_KEYS):
        others = [key for key in entry if key not in ("path", "auth")]
        if others:
            raise ConfigError(f"{where}: {others[0]} does not apply to an auth-only mount (path "
                              f"and auth, no app/static/cgi/fastcgi/scgi); put it on the mount "
                              f"that serves these URLs")
    if "group" in entry:
        if app is None:
            raise ConfigError(f"{where}: group = {toml_value(entry['group'])} only applies to "
                              f"app mounts (it names the process group running the app)")
        if not isinstance(entry["group"], str):
            raise ConfigError(f"{where}: group = {toml_value(entry['group'])}: must be the "
                              f"name of a [[group]]")
    for key, value in (("app", app), ("static", static), ("cache_control", entry.get("cache_control"))):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: {key} = {toml_value(value)}: must be a string")
    for key in GATEWAY_KEYS + ("split_path_info",):
        if key in entry and not isinstance(entry[key], str):
            raise ConfigError(f"{where}: {key} = {toml_value(entry[key])}: must be a string")
    gateway = {key: entry[key] for key in GATEWAY_KEYS if key in entry}
    if app is not None or gateway:
        given = [k for k in STATIC_ONLY_KEYS if k in entry]
        if given:
            what = f"app = {toml_value(app)}" if app is not None else "a {} mount".format(
                next(iter(gateway)))
            raise ConfigError(f"{where}: {given[0]} only applies to static mounts, not to "
                              f"{what}")
    if "cgi" in gateway and gateway["cgi"]:
        gateway["cgi"] = resolve(base, gateway["cgi"])
    for key in ("fastcgi", "scgi"):
        address = gateway.get(key, "")
        if address.startswith("unix:") and address[5:]:
            gateway[key] = "unix:" + resolve(base, address[5:])
    if "params" in entry:
        gateway["params"] = string_table(entry["params"], f"{where}: params",
                                        'params = { SCRIPT_FILENAME = "/srv/php{path_info}" }')
    if "split_path_info" in entry:
        gateway["split_path_info"] = entry["split_path_info"]
    if "timeout" in entry:
        timeout = entry["timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(f"{where}: timeout = {toml_value(timeout)}: must be a number of "
                              f"seconds above 0")
        gateway["timeout"] = float(timeout)
    options = {}
    for key in ("dotfiles", "follow_symlinks", "precompressed", "internal"):
        if key in entry:
            if not isinstance(entry[key], bool):
                raise ConfigError(f"{where}: {key} = {toml_value(entry[key])}: must be true or false")
            options[key] = entry[key]
    if "index" in entry and entry["index"] is not True:  # true: Mount's default index file
        index = entry["index"]
        if index is False:
            index = None
        elif not isinstance(index, str):
            raise ConfigError(f"{where}: index = {toml_value(index)}: must be a file name "
                              f"such as \"index.html\", or false")
        options["index"] = index
    if "cache_control" in entry:
        options["cache_control"] = entry["cache_control"]
    if "manifest" in entry:
        if not isinstance(entry["manifest"], str):
            raise ConfigError(f"{where}: manifest = {toml_value(entry['manifest'])}: must be a "
                              f"file name such as \"staticfiles.json\"")
        options["manifest"] = entry["manifest"]
    if "auth" in entry:
        options["auth"] = AuthConfig.from_table(entry["auth"], where)
    if static is not None and static:
        static = resolve(base, static)
    if "group" in entry:
        options["group"] = entry["group"]
    if "request_buffering" in entry:
        if not isinstance(entry["request_buffering"], bool):
            raise ConfigError(f"{where}: request_buffering = "
                              f"{toml_value(entry['request_buffering'])}: must be true or false")
        if app is None and not gateway:
            raise ConfigError(f"{where}: request_buffering only applies to mounts that take "
                              f"request bodies (app, cgi, fastcgi, scgi)")
        options["request_buffering"] = entry["request_buffering"]
    if "x_sendfile_roots" in entry:
        roots = entry["x_sendfile_roots"]
        if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
            raise ConfigError(f"{where}: x_sendfile_roots = {toml_value(roots)}: must be a list "
                              f"of directories, e.g. [\"/srv/private\"]")
        if app is None:
            raise ConfigError(f"{where}: x_sendfile_roots only applies to app mounts (the "
                              f"application's X-Sendfile may name files below them)")
        options["x_sendfile_roots"] = tuple(resolve(base, root) for root in roots)
    return Mount(path=path, app=app, static=static, source=where, **options, **gateway)
