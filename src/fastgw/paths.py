"""File system paths and URL paths in fastgw's one str convention.

Strategy: a path is kept as str whose characters are its bytes decoded as UTF-8
with surrogateescape, so any file name survives any locale (even LANG=C) and
goes back to the same bytes; a URL path travels as the HTTP layer delivers it,
percent-decoded bytes carried in a latin-1 str. These four functions convert
between the forms; every module that touches a path uses them, so this module
imports nothing of the project's.
"""


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
