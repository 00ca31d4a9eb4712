"""CGI/1.1 scripts (RFC 3875), run per request below a cgi mount.

Strategy: the path below a cgi mount is walked on the file system one segment at
a time until it reaches a regular file. That file is the script; the segments
walked join SCRIPT_NAME and the rest is PATH_INFO. The script runs with no shell
(its own path is argv[0]), in a session of its own (a timeout kills it and
everything it started), with the request's meta-variables and PATH as its whole
environment. One thread pumps three pipes with poll(2): the request body into
stdin as the script takes it, stdout into the response as the client takes it,
stderr lines into the error log. What the FastCGI and SCGI upstreams share with
CGI (meta-variables, params, the response format, local redirects) is
fastgw.gateway.
"""
import errno
import logging
import os
import select
import signal
import stat
import subprocess
import time
from urllib.parse import unquote_to_bytes

from fastgw.cgiresponse import StderrLog
from fastgw.errors import GatewayError, GatewayTimeout
from fastgw.gateway import CHUNK, Gateway, bad_path, meta_variables, ms_left
from fastgw.paths import fs_bytes, printable_path

log = logging.getLogger("fastgw.error")

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG})


def search_args(query):
    """RFC 3875 section 4.4: a query with no '=' is a search string, its words become argv."""
    if not query or "=" in query:
        return []
    args = []
    for word in query.split("+"):
        arg = unquote_to_bytes(word.encode("latin-1"))
        if not arg or b"\0" in arg:
            return []
        args.append(arg)
    return args


class CgiScripts(Gateway):
    """Runs the executable files of a directory as CGI scripts."""

    bad_output_status = 500

    def __init__(self, root, params=(), timeout=60.0, where="cgi mount"):
        super().__init__(params, timeout, where)
        root = os.path.abspath(root if type(root) is bytes else fs_bytes(root))
        self.root = root.rstrip(b"/") or b"/"
        real = os.path.realpath(self.root)
        self.real_prefix = real if real.endswith(b"/") else real + b"/"
        self.path = os.environ.get("PATH") or DEFAULT_PATH

    @classmethod
    def from_mount(cls, mount, timeout):
        return cls(mount.cgi, params=mount.params, timeout=timeout,
                   where=mount.source or f"mount {mount.path!r}")

    def locate(self, req):
        """Walk the path below the mount to the script: 400/403/404 when there is none."""
        status = bad_path(req)
        if status:
            return status
        raw = req.path.encode("latin-1")
        if not raw or raw == b"/":
            return 403
        if raw[:1] != b"/" or b"\\" in raw:
            return 400
        if "%" in req.target and "%2f" in req.target.partition("?")[0].lower():
            return 404  # like Apache's AllowEncodedSlashes Off
        segments = raw.split(b"/")
        path = self.root if self.root != b"/" else b""
        last = len(segments) - 1
        st = None
        for i in range(1, last + 1):
            segment = segments[i]
            if not segment:
                if i == last:
                    return 403  # the URL of a directory: no listings, no index scripts
                continue
            if segment[:1] == b".":
                return 404
            path = path + b"/" + segment
            try:
                st = os.stat(path)
            except PermissionError:
                return 403
            except OSError as e:
                if e.errno in _NOT_FOUND_ERRNOS:
                    return 404
                raise
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                return 404
            break
        else:
            return 403
        real = os.path.realpath(path)
        if not real.startswith(self.real_prefix):
            log.info("not running %s: a symlink leads outside %s",
                     printable_path(path.decode("utf-8", "surrogateescape")),
                     printable_path(self.root.decode("utf-8", "surrogateescape")))
            return 404
        if not st.st_mode & 0o111 or not os.access(path, os.X_OK):
            log.info("not running %s: it is not executable (chmod +x it to make it a CGI script)",
                     printable_path(path.decode("utf-8", "surrogateescape")))
            return 403
        script = b"/".join(segments[:i + 1]).decode("latin-1")
        path_info = raw[len(script):].decode("latin-1")
        return (req.script_name + script, path_info,
                {"prefix": req.script_name, "script": script}, path)

    def describe(self, path):
        return "CGI script " + printable_path(path.decode("utf-8", "surrogateescape"))

    def is_nph(self, path):
        return os.path.basename(path).startswith(b"nph-")

    def environ(self, req, script_name, path_info, body, path):
        env = meta_variables(req, script_name, path_info, body.length)
        env["SCRIPT_FILENAME"] = path.decode("latin-1")
        env["PATH"] = self.path
        if path_info:
            translated = self.translate(path_info)
            if translated is not None:
                env["PATH_TRANSLATED"] = translated
        return env

    def translate(self, path_info):
        """PATH_TRANSLATED: where the server would find PATH_INFO as a URL (a static mount)."""
        router = self.router
        if router is None:
            return None
        prefix, handler = router.match(path_info)
        # Only a handler serving files from a directory (StaticFiles) knows the answer.
        translated = getattr(handler, "translated", None)
        return translated(path_info[len(prefix):]) if translated is not None else None

    def exchange(self, env, body, out, deadline, path):
        argv = [path] + search_args(env.get("QUERY_STRING", ""))
        environ = {k.encode("latin-1"): v.encode("latin-1") for k, v in env.items()}
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE if body.length else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ,
                cwd=os.path.dirname(path) or b"/", close_fds=True, start_new_session=True)
        except OSError as e:
            raise GatewayError(f"cannot run it: {e.strerror}") from None
        ended = False
        try:
            ended = self.pump(proc, body, out, deadline)
        finally:
            self.reap(proc, ended, deadline, out.what)

    def pump(self, proc, body, out, deadline):
        """stdin, stdout and stderr until stdout ends; True then, False after a local redirect."""
        stdout = proc.stdout.fileno()
        stderr = proc.stderr.fileno()
        stdin = proc.stdin.fileno() if proc.stdin is not None else -1
        errors = StderrLog(out.what)
        poller = select.poll()
        for fd in (stdin, stdout, stderr):
            if fd >= 0:
                os.set_blocking(fd, False)
        poller.register(stdout, select.POLLIN)
        poller.register(stderr, select.POLLIN)
        pending = b""
        reading = 2
        try:
            while reading:
                if stdin >= 0 and not pending and stdout >= 0:
                    pending = body.read(CHUNK)
                    if pending:
                        poller.register(stdin, select.POLLOUT)
                    else:
                        proc.stdin.close()
                        stdin = -1
                events = poller.poll(ms_left(deadline))
                if not events:
                    raise GatewayTimeout("timed out")
                for fd, event in events:
                    if fd == stdin:
                        try:
                            n = os.write(stdin, pending)
                            pending = pending[n:]
                            if not pending:
                                poller.unregister(stdin)
                        except BlockingIOError:
                            pass
                        except OSError:
                            # The script stopped reading its input: it has what it wants.
                            poller.unregister(stdin)
                            proc.stdin.close()
                            stdin = -1
                            pending = b""
                    elif fd == stdout:
                        try:
                            data = os.read(stdout, 4 * CHUNK)
                        except BlockingIOError:
                            continue
                        if not data:
                            poller.unregister(stdout)
                            stdout = -1
                            reading -= 1
                            if stdin >= 0:
                                # No more output can come: the script does not want the rest.
                                if pending:
                                    poller.unregister(stdin)
                                    pending = b""
                                proc.stdin.close()
                                stdin = -1
                        elif not out.feed(data):
                            return False
                    elif fd == stderr:
                        try:
                            data = os.read(stderr, CHUNK)
                        except BlockingIOError:
                            continue
                        if not data:
                            poller.unregister(stderr)
                            reading -= 1
                        else:
                            errors.feed(data)
            return True
        finally:
            errors.close()

    @staticmethod
    def reap(proc, ended, deadline, what):
        """Close the pipes and collect the script; its session is killed unless it ended well."""
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        if ended:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
                return
            except subprocess.TimeoutExpired:
                log.error("%s: still running at the timeout after closing its output; killed", what)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
