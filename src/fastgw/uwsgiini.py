"""Reading a uWSGI ini file the way uWSGI reads it, for `fastgw import-uwsgi`.

Strategy: one pass over the lines of the chosen section (`[uwsgi]`, or FILE:SECTION),
in file order, producing `Option`s (name, value, file:line). `ini = OTHER[:SECTION]`
and `inherit = ...` are read in place, as uWSGI does, so their options keep their own
file:line. Values are expanded as they are read: `$(ENV)` from the environment,
`%(name)` from an option or placeholder set above (left as written when there
is none, as uWSGI's log formats need), and the magic variables of the
file being read (%d its directory, %n its name without extension, ...). What the
reader cannot reproduce (other config formats, logic blocks) is an error naming the
line, never a silently different configuration.
"""
import getpass
import grp
import os
import re
import socket
from dataclasses import dataclass

from fastgw.errors import ConfigImportError

# %(name), $(NAME), and one-letter magic variables (%d, %n, ...).
EXPANSION = re.compile(r"%\(([^)]*)\)|\$\(([^)]*)\)|%(.)")
# Options that load another file: read in place.
INCLUDES = ("ini", "inherit")
# Other config loaders uWSGI has; their contents cannot be read here.
OTHER_LOADERS = ("xml", "yaml", "yml", "json", "js", "sqlite3", "ldap", "include")
# Logic blocks: evaluated by uWSGI while reading, so not translatable line by line.
LOGIC = re.compile(r"^(if-|if$|for($|-)|endif|endfor|else$)")


@dataclass
class Option:
    name: str
    value: str
    where: str


def option_name(key):
    """uWSGI accepts `max_requests` for `max-requests`."""
    return key.strip().lower().replace("_", "-")


class IniReader:
    """The options of one uWSGI configuration, includes and expansions done."""

    def __init__(self, environ=None):
        self.environ = os.environ if environ is None else environ
        self.options = []
        self.values = {}        # name -> last value, for %(name)
        self.env_used = []      # (where, NAME, value) of $(NAME) expansions
        self.placeholders = set()  # names used as %(name)
        self.reading = []       # files being read, to refuse include loops

    def read(self, spec, where=None):
        path, section = split_spec(spec)
        if where is not None and not os.path.isabs(path) and self.reading:
            # An include is relative to the directory uWSGI runs in; the including
            # file's directory is what a user means when they run the importer elsewhere.
            path = os.path.join(os.path.dirname(self.reading[-1]), path)
        real = os.path.realpath(path)
        if real in self.reading:
            raise ConfigImportError(f"{where}: {path} includes itself; remove the loop")
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as e:
            origin = f"{where}: " if where else ""
            raise ConfigImportError(f"{origin}{path}: cannot read it: {e.strerror}; give the "
                                    f"uWSGI ini file (e.g. /etc/uwsgi/apps-enabled/mysite.ini)"
                                    ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[:e.start].count(b"\n") + 1
            raise ConfigImportError(f"{path}:{line}: not UTF-8; save the file as UTF-8 and "
                                    f"run again") from None
        self.reading.append(real)
        found = self.read_lines(path, section, text)
        self.reading.pop()
        if not found:
            raise ConfigImportError(f"{path}: no [{section}] section; uWSGI reads [{section}] "
                                    f"(name another one as {path}:SECTION)")

    def read_lines(self, path, section, text):
        current, found = None, False
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            where = f"{path}:{number}"
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1].strip()
                found = found or current == section
                continue
            if current != section:
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ConfigImportError(f"{where}: {line!r} is not KEY = VALUE")
            name, value = option_name(key), value.strip()
            if LOGIC.match(name):
                raise ConfigImportError(f"{where}: {name}: uWSGI's logic blocks are evaluated "
                                        f"while it reads the file and are not translated; "
                                        f"write the lines that apply on this host without "
                                        f"the block and import again")
            if name in OTHER_LOADERS:
                raise ConfigImportError(f"{where}: {name} = {value}: only ini files are read; "
                                        f"copy its options into the ini and import again")
            value = self.expand(value, path, where)
            if name in INCLUDES:
                self.read(value, where)
                continue
            self.values[name] = value
            self.options.append(Option(name, value, where))
        return found

    def expand(self, value, path, where):
        def replace(match):
            placeholder, env, magic = match.groups()
            if placeholder is not None:
                # Unknown names stay as written: log-format's %(addr) is no placeholder.
                if placeholder not in self.values:
                    return match.group(0)
                self.placeholders.add(placeholder)
                return self.values[placeholder]
            if env is not None:
                found = self.environ.get(env, "")
                self.env_used.append((where, env, found))
                return found
            return magic_value(magic, path, match.group(0))

        return EXPANSION.sub(replace, value)


def split_spec(spec):
    """FILE or FILE:SECTION (uWSGI's `--ini app.ini:production`)."""
    path, sep, section = spec.rpartition(":")
    if sep and section and "/" not in section and not os.path.exists(spec):
        return path, section
    return spec, "uwsgi"


def magic_value(letter, path, text):
    """uWSGI's magic variables for the file at `path`; unknown ones stay as written."""
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    name = os.path.basename(full)
    stem, ext = os.path.splitext(name)
    values = {
        "d": directory + "/", "p": full, "s": name, "n": stem, "e": ext.lstrip("."),
        "c": os.path.basename(directory), "o": path, "v": os.getcwd(), "%": "%",
        "k": str(os.cpu_count() or 1), "h": socket.gethostname(), "u": str(os.getuid()),
        "g": str(os.getgid()),
    }
    if letter == "U":
        return getpass.getuser()
    if letter == "G":
        return grp.getgrgid(os.getgid()).gr_name
    return values.get(letter, text)
