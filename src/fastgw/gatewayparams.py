"""`params` templates of cgi, fastcgi and scgi mounts: extra CGI variables built per request.

Strategy: a template such as '{document_root}{script}' is parsed once, when the
configuration is checked, into literal strings (in the wire form) and named
placeholders; an unknown placeholder or a stray brace is a ConfigError naming the
mount. Per request, rendering is a join over the parts, reading meta-variables
from the request's environment and the two special placeholders (the mount's
prefix, the script part of the path) from the gateway. DOCUMENT_ROOT renders
first, so the others may use it; a template that renders empty removes its
variable.
"""
import re

from fastgw.errors import ConfigError
from fastgw.paths import wire_path


class Placeholder:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


# Placeholders that are not meta-variables: the mount's prefix, and the script part of
# the path below it (what split_path_info, or the CGI file walk, took as the script).
SPECIAL_PLACEHOLDERS = frozenset({"prefix", "script"})
# Meta-variables a template may name (lower case); any http_* name is allowed too.
KNOWN_PLACEHOLDERS = frozenset({
    "auth_type", "content_length", "content_type", "document_root", "gateway_interface",
    "https", "path_info", "path_translated", "query_string", "remote_addr", "remote_host",
    "remote_port", "remote_user", "request_method", "request_scheme", "request_uri",
    "script_filename", "script_name", "server_addr", "server_name", "server_port",
    "server_protocol", "server_software",
}) | SPECIAL_PLACEHOLDERS
_PLACEHOLDER_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_template(text, where):
    """'{document_root}{script}' -> a tuple of literal strs (wire form) and Placeholders."""
    parts = []
    literal = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif c == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif c == "{":
            end = text.find("}", i)
            if end < 0:
                raise ConfigError(f"{where}: {text!r} has a '{{' with no '}}'; write {{{{ for a "
                                  f"literal brace")
            name = text[i + 1:end]
            if not _PLACEHOLDER_NAME.fullmatch(name) or not (
                    name in KNOWN_PLACEHOLDERS or name.startswith("http_")):
                raise ConfigError(f"{where}: unknown placeholder {{{name}}} in {text!r}; use a "
                                  f"meta-variable in lower case ({{document_root}}, "
                                  f"{{script_name}}, {{path_info}}, {{query_string}}, "
                                  f"{{http_host}}, ...) or {{prefix}}, {{script}}")
            if literal:
                parts.append(wire_path("".join(literal)))
                literal = []
            parts.append(Placeholder(name))
            i = end + 1
        elif c == "}":
            raise ConfigError(f"{where}: {text!r} has a '}}' with no '{{'; write }}}} for a "
                              f"literal brace")
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append(wire_path("".join(literal)))
    return tuple(parts)


def check_params(params, where):
    """Validate a mount's params (name -> template) and compile them: (name, parts) pairs,
    DOCUMENT_ROOT first (the others may use {document_root})."""
    compiled = []
    for name, text in params:
        if type(name) is not str or not _PARAM_NAME.fullmatch(name):
            raise ConfigError(f"{where}: params name {name!r} must be letters, digits and '_', "
                              f"e.g. SCRIPT_FILENAME")
        if type(text) is not str or "\0" in text:
            raise ConfigError(f"{where}: params {name} = {text!r}: must be a string without NUL")
        compiled.append((name, parse_template(text, f"{where}: params {name}")))
    compiled.sort(key=lambda item: item[0] != "DOCUMENT_ROOT")
    return tuple(compiled)


def render(parts, env, specials):
    out = []
    for part in parts:
        if type(part) is str:
            out.append(part)
        else:
            name = part.name
            out.append(specials[name] if name in specials else env.get(name.upper(), ""))
    return "".join(out)


def apply_params(env, templates, specials):
    """Set the mount's params in `env`; a param that renders empty removes the variable."""
    if not templates:
        return env
    seen = env
    for name, parts in templates:
        value = render(parts, seen, specials)
        if name == "DOCUMENT_ROOT":
            seen = dict(env, DOCUMENT_ROOT=value)
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env
