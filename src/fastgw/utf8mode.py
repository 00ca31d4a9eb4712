"""Python's UTF-8 mode for the app processes, whatever locale fastgw is started in.

Strategy: workers and process groups are forked from the master, so they share
its file-system encoding, which Python fixes from the locale (LC_ALL, LC_CTYPE,
LANG) as the interpreter starts. Under a Latin-1 locale, or the C locale with
PYTHONUTF8=0, an application cannot create or open a file with a name outside
that encoding: Django's "UnicodeEncodeError for non-ASCII file uploads". So once
the configuration is known to be valid, `fastgw serve` replaces itself with the
same command in UTF-8 mode. execv keeps the pid and the inheritable descriptors,
so systemd socket activation and fd://N binds survive it. `-X utf8` rather than
PYTHONUTF8=1 leaves the environment as it was given: CGI scripts and the
applications' own child processes keep the locale they were started with. The
warning travels to the new process in a variable it removes before anything can
inherit it, and is logged there, where the error log is set up. --keep-locale
opts out.
"""
import codecs
import os
import sys

from fastgw.activation import pass_on_passed_sockets
from fastgw.errors import FastgwError

# Set for the re-executed process only: the warning it has to log.
WARNING_VARIABLE = "FASTGW_UTF8_MODE_WARNING"


def restart_in_utf8_mode(keep_locale):
    """Before `serve` starts anything: exec this command in UTF-8 mode if the file-system
    encoding is not UTF-8 (and never return); else return the warning to log, or None."""
    warning = os.environ.pop(WARNING_VARIABLE, None)
    encoding = sys.getfilesystemencoding()
    if warning is not None or keep_locale or codecs.lookup(encoding).name == "utf-8":
        return warning
    os.environ[WARNING_VARIABLE] = (
        f"the locale ({locale_setting()}) gives Python the file-system encoding {encoding}, "
        f"which cannot encode every file name (an application saving a file under such a "
        f"name gets a UnicodeEncodeError); fastgw restarted itself in Python's UTF-8 mode "
        f"(-X utf8), so its workers and process groups use UTF-8. To keep the locale's "
        f"encoding, pass --keep-locale (keep_locale = true in [server])")
    pass_on_passed_sockets()
    sys.stdout.flush()
    sys.stderr.flush()
    command = restart_command()
    try:
        os.execv(command[0], command)
    except OSError as e:
        raise FastgwError(f"cannot restart in Python's UTF-8 mode ({' '.join(command[:4])} ...): "
                          f"{e.strerror}; start fastgw as `python -X utf8 -m fastgw ...`, or "
                          f"pass --keep-locale to run with the locale's encoding {encoding}"
                          ) from None


def locale_setting():
    """The variable that chose the encoding, e.g. 'LC_ALL=en_US.ISO-8859-1'."""
    # POSIX: LC_ALL overrides LC_CTYPE, which overrides LANG.
    setting = next((f"{name}={os.environ[name]}" for name in ("LC_ALL", "LC_CTYPE", "LANG")
                    if os.environ.get(name)), "no LC_ALL, LC_CTYPE or LANG: the C locale")
    if os.environ.get("PYTHONUTF8") == "0":
        # Without it Python would be in UTF-8 mode by itself under the C locale (PEP 540).
        setting += ", PYTHONUTF8=0"
    return setting


def restart_command():
    """This command again with `-X utf8` first among the interpreter's options, where
    it wins over a later `-X utf8=0`."""
    if hasattr(sys, "orig_argv"):
        # Python 3.10+: the options (-W, -X, -I ...) and the program (the `fastgw`
        # script, `-m fastgw`) exactly as given.
        return [sys.executable, "-X", "utf8", *sys.orig_argv[1:]]
    # Python 3.9: sys.argv[0] of `python -m fastgw` is a file inside the package, which
    # cannot be run as a script; the module can, from either entry point.
    return [sys.executable, "-X", "utf8", "-m", "fastgw", *sys.argv[1:]]
