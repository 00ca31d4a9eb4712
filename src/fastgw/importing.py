"""What `fastgw import-uwsgi` and `fastgw import-gunicorn` share: the table of what
each setting becomes, and the fastgw.toml they write.

Strategy: an importer declares its settings once, as `Rule`s (names, what happens,
the text docs/migrating.md shows), and looks each setting up there, so the doc's
table and the importer cannot say different things (tests/test_migrating_doc.py
compares them). While reading, it fills a `Translation`: [server] keys, [[mount]]
tables and notes, each note carrying the file:line it is about. A setting whose
loss would change what the site does raises ConfigImportError (exit 2) instead.
"""
from dataclasses import dataclass
from typing import Tuple

from fastgw.configfile import toml_value
from fastgw.errors import ConfigImportError

# What a rule does with a setting.
MAPS = "maps"      # becomes fastgw configuration (maybe with a note on what differs)
NOTE = "note"      # nothing to write; a note says why, or what to do instead
REFUSE = "refuse"  # the translation would serve something else: an error


@dataclass(frozen=True)
class Rule:
    """One row of an importer's table: `names` (aliases after the first) and the text
    telling what fastgw does instead."""

    names: Tuple[str, ...]
    kind: str
    text: str


class RuleBook:
    """An importer's rules by name; prefix rules (`cheaper*`) match families of names."""

    def __init__(self, rules):
        self.rules = list(rules)
        self.by_name = {}
        self.prefixes = []
        for rule in self.rules:
            for name in rule.names:
                if name.endswith("*"):
                    self.prefixes.append((name[:-1], rule))
                elif name in self.by_name:
                    raise ValueError(f"{name!r} has two rules")
                else:
                    self.by_name[name] = rule

    def find(self, name):
        rule = self.by_name.get(name)
        if rule is None:
            for prefix, candidate in self.prefixes:
                if name.startswith(prefix):
                    return candidate
        return rule

    def markdown(self, heading):
        """The table of docs/migrating.md: one row per rule, in the book's order."""
        lines = [f"| {heading} | fastgw |", "|---|---|"]
        for rule in self.rules:
            names = ", ".join(f"`{name}`" for name in rule.names)
            text = rule.text.replace("|", "\\|")
            if rule.kind == REFUSE:
                text = "**refused** (exit 2): " + text
            lines.append(f"| {names} | {text} |")
        return "\n".join(lines) + "\n"


class Translation:
    """The fastgw.toml being written: [server] keys, [[mount]] tables, notes."""

    def __init__(self, source, command):
        self.source = source
        self.command = command
        self.server = {}
        self.mounts = []
        self.notes = []

    def note(self, where, text):
        self.notes.append((where, text))

    def fail(self, where, text):
        raise ConfigImportError(f"{where}: {text}")

    def set(self, key, value):
        self.server[key] = value

    def add(self, key, values):
        """Append to a list-valued [server] key (bind, pythonpath); a directory already on
        the python path is not added twice."""
        current = self.server.setdefault(key, [])
        current.extend(v for v in values if key == "bind" or v not in current)

    def mount(self, where, path, **table):
        path = path.rstrip("/") or "/"
        for mount in self.mounts:
            if mount["path"] == path:
                if {k: v for k, v in mount.items() if k != "path"} == table:
                    return
                self.fail(where, f"{path} is already mounted ({mount}); keep one of them")
        self.mounts.append({"path": path, **table})

    def toml(self):
        out = [f"# fastgw.toml translated from {self.source} by `fastgw {self.command}`.",
               "# Check it with `fastgw check --config FILE`, then serve it with "
               "`fastgw serve --config FILE`."]
        if self.notes:
            out += ["#", "# Notes on settings that are not mapped one to one:"]
            out += [f"# {where}: {text}" for where, text in sorted(self.notes, key=note_order)]
        if self.server:
            out += ["", "[server]"] + [f"{k} = {toml_value(v)}" for k, v in self.server.items()]
        for mount in self.mounts:
            out += ["", "[[mount]]"] + [f"{k} = {toml_value(v)}" for k, v in mount.items()]
        return "\n".join(out) + "\n"


def note_order(note):
    """Notes in file order: FILE:LINE sorts by file, then by line as a number."""
    where = note[0]
    path, _, line = where.rpartition(":")
    return (path, int(line)) if line.isdigit() else (where, 0)
