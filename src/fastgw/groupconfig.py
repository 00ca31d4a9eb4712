"""Process groups in the config layer: the [[group]] type and a group process's setup.

Strategy: a Group is a frozen dataclass checked when it is made (name, counts,
directories, a virtualenv built for this Python), so a bad [[group]] table is a
ConfigError before anything is forked. `enter_group` is what a freshly forked
group process does with it before the application is imported: its environment,
directory and import path, so two groups can hold two Django sites with
different settings. How groups serve requests is fastgw.groups.
"""
import glob
import os
import re
import site
import sys
from dataclasses import dataclass, field
from typing import Optional, Tuple

from fastgw.errors import ConfigError

GROUP_KEYS = ("name", "processes", "threads", "python_path", "venv", "env", "chdir", "user",
              "group")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Group:
    """One [[group]] table: a named pool of processes with its own Python setup."""

    name: str
    processes: int = 1
    threads: int = 1
    python_path: Tuple[str, ...] = ()
    venv: Optional[str] = None
    env: Tuple[Tuple[str, str], ...] = ()
    chdir: Optional[str] = None
    user: Optional[str] = None
    group: Optional[str] = None
    source: str = field(default="", compare=False)

    def __post_init__(self):
        where = self.source or f"group {self.name!r}"
        if type(self.name) is not str or not _NAME.fullmatch(self.name):
            raise ConfigError(f"{where}: name {self.name!r} must be 1-64 letters, digits, '_', "
                              f"'.' or '-', e.g. name = \"mysite\"")
        for key in ("processes", "threads"):
            value = getattr(self, key)
            if type(value) is not int or value < 1:
                raise ConfigError(f"{where}: {key} = {value!r} must be a whole number of at "
                                  f"least 1")
        for path in self.python_path:
            if not os.path.isdir(path):
                raise ConfigError(f"{where}: python_path entry {path!r} is not a directory")
        if self.chdir is not None and not os.path.isdir(self.chdir):
            raise ConfigError(f"{where}: chdir {self.chdir!r} is not a directory")
        if self.venv is not None:
            venv_site_packages(self.venv, where)
        for key, value in self.env:
            if not key or "=" in key or "\0" in key + value:
                raise ConfigError(f"{where}: env {key!r} = {value!r}: names may not be empty or "
                                  f"contain '=' or NUL")

    def describe(self):
        line = f"{self.name:<20} {self.processes} process(es) x {self.threads} thread(s)"
        options = []
        if self.python_path:
            options.append("python_path=" + ":".join(self.python_path))
        if self.venv:
            options.append(f"venv={self.venv}")
        if self.chdir:
            options.append(f"chdir={self.chdir}")
        options += [f"{k}={v!r}" for k, v in self.env]
        if self.user or self.group:
            options.append(f"user={self.user or '-'} group={self.group or '-'}")
        return line + ("  (" + ", ".join(options) + ")" if options else "")


def venv_site_packages(venv, where):
    """The site-packages directory of a virtualenv made for this Python version."""
    version = "%d.%d" % sys.version_info[:2]
    if not os.path.isdir(venv):
        raise ConfigError(f"{where}: venv {venv!r} is not a directory; give the virtualenv's "
                          f"root (the directory holding bin/ and lib/)")
    wanted = os.path.join(venv, "lib", f"python{version}", "site-packages")
    if os.path.isdir(wanted):
        return wanted
    others = sorted(os.path.basename(os.path.dirname(p))
                    for p in glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")))
    if others:
        raise ConfigError(f"{where}: venv {venv!r} was made for {', '.join(others)}, but fastgw "
                          f"runs on Python {version}; recreate it with python{version} -m venv "
                          f"(as mod_wsgi's python-home, it must match the server's Python)")
    raise ConfigError(f"{where}: venv {venv!r} has no lib/python{version}/site-packages; is it "
                      f"a virtualenv? create one with python{version} -m venv {venv}")


def enter_group(group):
    """In a group's freshly forked process, before the application is imported: its
    environment, directory and import path (python_path, then the venv, then the rest)."""
    os.environ.update(group.env)
    if group.chdir:
        os.chdir(group.chdir)
    front = [os.path.abspath(p) for p in group.python_path]
    if group.chdir:
        front.insert(0, os.getcwd())
    if group.venv:
        packages = venv_site_packages(group.venv, f"group {group.name!r}")
        before = list(sys.path)
        site.addsitedir(packages)  # also runs the venv's .pth files
        front += [p for p in sys.path if p not in before]
        os.environ["VIRTUAL_ENV"] = group.venv
    rest = [p for p in sys.path if p not in front]
    sys.path[:] = front + rest
