"""How `fastgw check` and `fastgw explain` describe a mount of each kind.

Strategy: one function per kind for the routing-table line (`fastgw check`, the
"mount:" line of explain) and one for what explain adds about the URL below the
mount, each asking the kind's own handler code (StaticFiles.resolve, the
gateway's locate and params templates) rather than re-deriving anything, so the
description cannot disagree with the server. fastgw.mountkinds says which
function describes which kind.
"""
import os
import stat

from fastgw.gatewayparams import apply_params
from fastgw.paths import printable_path
from fastgw.fileheaders import ENCODINGS, content_type
from fastgw.static import StaticFiles

STATUS_TEXT = {400: "400 Bad Request (a '.'/'..' segment, a backslash or a NUL)",
               403: "403 Forbidden", 404: "404 Not Found"}


def shown(wire):
    """A wire-form (latin-1 carried bytes) string as the text it encodes."""
    return repr(wire.encode("latin-1").decode("utf-8", "backslashreplace"))


def describe_auth(mount):
    """The line of an auth-only mount."""
    return (f"{mount.path:<20} auth only    {mount.auth.describe()}  (guards every URL "
            f"below it, served by the mount it would reach without the rule)")


def describe_app(mount):
    """The line of an app mount (in the front workers or a process group)."""
    options = [f"group={mount.group}"] if mount.group else []
    if mount.x_sendfile_roots:
        options.append("x_sendfile_roots=[" + ", ".join(
            repr(printable_path(root)) for root in mount.x_sendfile_roots) + "]")
    if mount.auth is not None:
        options.append(mount.auth.describe())
    options = "  (" + ", ".join(options) + ")" if options else ""
    return f"{mount.path:<20} app          {mount.app}{options}"


def describe_gateway(mount):
    """The line of a cgi, fastcgi or scgi mount."""
    target = getattr(mount, mount.kind)
    line = f"{mount.path:<20} {mount.kind:<12} {printable_path(target) if mount.kind == 'cgi' else target}"
    options = [f"{name}={value!r}" for name, value in mount.params]
    if mount.split_path_info:
        options.append(f"split_path_info={mount.split_path_info!r}")
    if mount.timeout is not None:
        options.append(f"timeout={mount.timeout:g}")
    if mount.auth is not None:
        options.append(mount.auth.describe())
    return line + ("  (" + ", ".join(options) + ")" if options else "")


def describe_static(mount):
    """The line of a static directory or file mount."""
    what = "static dir " if mount.kind == "dir" else "static file"
    line = f"{mount.path:<20} {what}  {printable_path(mount.static)}"
    options = []
    if mount.kind == "dir":
        options.append(f"index={mount.index}" if mount.index else "index=off")
        if mount.dotfiles:
            options.append("dotfiles")
        if mount.follow_symlinks:
            options.append("follow_symlinks")
    if mount.precompressed:
        options.append("precompressed")
    if mount.cache_control:
        options.append(f"cache_control={mount.cache_control!r}")
    if mount.manifest:
        options.append(f"manifest={mount.manifest!r}")
    if mount.internal:
        options.append("internal: X-Accel-Redirect only")
    if mount.auth is not None:
        options.append(mount.auth.describe())
    return line + ("  (" + ", ".join(options) + ")" if options else "")


def static_lines(mount, req, config):
    """explain's lines for a static mount: the file the URL reaches and its headers."""
    files = StaticFiles.from_mount(mount)
    if files.single_file:
        path = files.root if not req.path else 404
    else:
        path = files.resolve(req)
    if type(path) is int:
        return [f"  file:           none: the answer is {STATUS_TEXT[path]}"]
    lines = []
    try:
        st = os.stat(path)
    except OSError as e:
        return [f"  file:           {printable_path(os.fsdecode(path))} does not exist "
                f"({e.strerror}): the answer is 404 Not Found"]
    if stat.S_ISDIR(st.st_mode):
        if files.index is None:
            return [f"  file:           {printable_path(os.fsdecode(path))} is a directory "
                    f"and index is off: 404 Not Found"]
        if not path.endswith(b"/"):
            return [f"  file:           {printable_path(os.fsdecode(path))} is a directory: "
                    f"301 redirect to the URL with a trailing '/'"]
        path += files.index
        lines.append("  index:          " + files.index.decode("utf-8", "backslashreplace"))
        if not os.path.isfile(path):
            return lines + [f"  file:           {printable_path(os.fsdecode(path))} does not "
                            f"exist: 404 Not Found"]
        st = os.stat(path)
    lines += [f"  file:           {printable_path(os.fsdecode(path))} (exists, "
              f"{st.st_size} bytes)",
              f"  Content-Type:   {files.root_type if files.single_file else content_type(path)}"]
    if files.cache_control:
        lines.append(f"  Cache-Control:  {files.cache_control} (cache_control of the mount)")
    elif files.manifest is not None:
        relative = path[len(files.root) + 1:]
        lines.append(f"  Cache-Control:  {files.manifest.cache_control(relative)} (manifest "
                     f"{mount.manifest}: {'a' if relative in files.manifest.hashed else 'not a'} "
                     f"hashed name)")
    else:
        lines.append("  Cache-Control:  none")
    if files.precompressed:
        siblings = [f"{os.path.basename(os.fsdecode(path + suffix))} ({coding})"
                    for coding, suffix in ENCODINGS if os.path.isfile(path + suffix)]
        lines.append("  precompressed:  " + (", ".join(siblings) + " picked by Accept-Encoding"
                                             if siblings else "no .br or .gz sibling"))
    return lines


def gateway_lines(mount, req, gateway):
    """explain's lines for a cgi, fastcgi or scgi mount served by `gateway`: the script or
    upstream, the split of the path and the rendered params."""
    where = gateway.locate(req)
    if type(where) is int:
        return [f"  script:         none: the answer is {STATUS_TEXT.get(where, where)}"]
    script_name, path_info, specials, context = where
    lines = []
    if mount.kind == "cgi":
        lines.append(f"  script:         {printable_path(os.fsdecode(context))}")
    else:
        lines.append(f"  upstream:       {getattr(mount, mount.kind)} ({mount.kind})")
    lines += [f"  script SCRIPT_NAME: {shown(script_name)}",
              f"  script PATH_INFO:   {shown(path_info)}"]
    if mount.params:
        env = gateway.environ(req, script_name, path_info, EmptyBody, context)
        apply_params(env, gateway.templates, specials)
        lines.append("  params:")
        lines += [f"    {name} = {shown(env[name]) if name in env else '(removed)'}"
                  for name, _ in mount.params]
    return lines


class EmptyBody:
    """The body of the GET request explain imagines."""

    length = None
