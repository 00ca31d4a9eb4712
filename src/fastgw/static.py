"""Static files: safe path resolution, validators and 304s, ranges, precompressed variants.

Strategy: the path below the mount (PATH_INFO: the raw bytes in a latin-1 str,
PEP 3333) goes back to bytes and is checked before anything touches the file
system: a NUL, a backslash or a '.'/'..' segment is malformed (400), an encoded
slash or a dotfile is not found (404). Files are opened by their bytes path, so
non-ASCII names work in any locale. A file is opened once (O_NONBLOCK, so a FIFO
cannot hang the worker) and everything after that uses the descriptor: fstat for
ETag and Last-Modified, /proc/self/fd to see where symlinks really led, sendfile(2)
for the body. Conditional requests follow RFC 9110 section 13.2.2, ranges section 14
(the header side of both is fastgw.fileheaders).

Small files are also kept in memory with their response headers (FileCache): a
request for one costs a stat(2) to see that it is unchanged and one write of head
and body together, instead of open, fstat, write, sendfile and close.
"""
import errno
import json
import logging
import operator
import os
import stat
import threading
import time

from fastgw.errors import ClientDisconnected
from fastgw.fileheaders import (check_preconditions, content_type, http_date, if_range_holds,
                                 make_etag, parse_ranges, precompressed_codings, target_path,
                                 wanted_headers)
from fastgw.paths import fs_bytes

log = logging.getLogger("fastgw.error")

OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
ALLOW = [("Allow", "GET, HEAD")]
STATUS_LINES = {
    400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found",
    405: "405 Method Not Allowed", 412: "412 Precondition Failed",
    416: "416 Range Not Satisfiable", 500: "500 Internal Server Error",
}
_NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG,
                               errno.ENXIO, errno.ENODEV})
# Files up to CACHE_FILE_LIMIT bytes are cached, CACHE_LIMIT bytes in all per mount and worker.
CACHE_FILE_LIMIT = 64 * 1024
CACHE_LIMIT = 8 * 1024 * 1024
# What an entry costs beyond its body (headers, stamp, key), for the bound.
ENTRY_OVERHEAD = 1024
# A file changed less than this long ago is not cached: file times come from a coarse
# clock (a kernel tick; whole seconds on some file systems, two on FAT), and a second
# change within the same tick would leave the stamp as it was. Once a file is this
# old, any change gives it a newer ctime.
SETTLED_NS = 2_000_000_000

# --------------------------------------------------------------------------
# the cache of small files


# What must not change for a cached copy to stay valid, from a stat result. Writing,
# truncating, renaming over, chmod and touch all set the ctime, which no user can set back.
file_stamp = operator.attrgetter("st_ino", "st_dev", "st_size", "st_mtime_ns", "st_ctime_ns")


class CachedFile:
    """A small file's bytes and the headers of its 200 and 304 answers, as of `stamp`."""

    __slots__ = ("file", "stamp", "body", "headers", "not_modified", "etag", "last_modified",
                 "mtime", "cache_control", "cost")


class FileCache:
    """Small files by (path, content coding), bounded in total bytes: the oldest entries
    go first. An entry is used only while stat() of its file gives the stamp it was read
    with, so a changed, replaced or deleted file is never answered from memory."""

    def __init__(self, limit=CACHE_LIMIT):
        self.entries = {}
        self.size = 0
        self.limit = limit
        # With --threads handlers run in several threads; hits only read, changes lock.
        self.lock = threading.Lock()

    def get(self, key):
        """The entry of `key` if its file is unchanged; a stale one is dropped."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        try:
            st = os.stat(entry.file)
        except OSError:
            st = None
        if st is not None and file_stamp(st) == entry.stamp:
            return entry
        with self.lock:
            if self.entries.get(key) is entry:  # not already replaced by another thread
                del self.entries[key]
                self.size -= entry.cost
        return None

    def put(self, key, entry):
        with self.lock:
            entries = self.entries
            old = entries.pop(key, None)
            if old is not None:
                self.size -= old.cost
            while entries and self.size + entry.cost > self.limit:
                self.size -= entries.pop(next(iter(entries))).cost
            entries[key] = entry
            self.size += entry.cost


# --------------------------------------------------------------------------
# the handler


class StaticFiles:
    """Serves a directory below a mount's prefix, or one file at exactly the prefix."""

    def __init__(self, root, single_file=False, index="index.html", cache_control=None,
                 dotfiles=False, follow_symlinks=False, precompressed=True, manifest=None):
        self.root = os.path.abspath(root if type(root) is bytes else fs_bytes(root))
        real = os.path.realpath(self.root)
        self.real_root = real
        self.real_prefix = real if real.endswith(b"/") else real + b"/"
        self.single_file = single_file
        self.index = fs_bytes(index) if index else None
        self.cache_control = cache_control
        self.dotfiles = dotfiles
        self.follow_symlinks = follow_symlinks
        self.inside = set()
        self.cache = FileCache()
        self.precompressed = precompressed
        if single_file:
            self.root_type = content_type(self.root)
        self.manifest = (DjangoManifest(os.path.join(self.root, fs_bytes(manifest)))
                         if manifest and cache_control is None else None)

    @classmethod
    def from_mount(cls, mount):
        return cls(mount.static, single_file=mount.kind == "file", index=mount.index,
                   cache_control=mount.cache_control, dotfiles=mount.dotfiles,
                   follow_symlinks=mount.follow_symlinks, precompressed=mount.precompressed,
                   manifest=mount.manifest)

    def translated(self, path):
        """Where the file of `path` (below the mount, wire form) would be, as a CGI
        PATH_TRANSLATED; None for a single-file mount, which serves no path below it."""
        if self.single_file:
            return None
        return self.root.decode("latin-1") + path

    def __call__(self, req, resp):
        fd = -1
        try:
            method = req.method
            if method != "GET" and method != "HEAD":
                return self.error(resp, 405, ALLOW)
            if self.single_file:
                if req.path:
                    return self.error(resp, 404)
                path = self.root
            else:
                path = self.resolve(req)
                if type(path) is int:
                    return self.error(resp, path)
            want = wanted_headers(req.headers)
            accept = want.pop("accept-encoding", None)
            if self.send_cached(resp, path, want, accept):
                return
            fd = self.open(path, check=not self.single_file)
            if fd < 0:
                return self.error(resp, -fd)
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                os.close(fd)
                fd = -1
                if self.index is None:
                    return self.error(resp, 404)
                if not path.endswith(b"/"):
                    return self.redirect_to_directory(req, resp)
                path += self.index
                fd = self.open(path)
                if fd < 0:
                    return self.error(resp, -fd)
                st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or path.endswith(b"/"):
                return self.error(resp, 404)
            coding = None
            file = path
            if self.precompressed and accept is not None:
                for coding, suffix in precompressed_codings(accept):
                    variant = self.open(path + suffix, check=not self.single_file)
                    if variant < 0:
                        continue
                    try:
                        vst = os.fstat(variant)
                    except OSError:
                        vst = None
                    if vst is not None and stat.S_ISREG(vst.st_mode):
                        old, fd, st = fd, variant, vst
                        os.close(old)
                        file = path + suffix
                        break
                    os.close(variant)
                else:
                    coding = None
            self.send(resp, path, file, fd, st, want, coding)
        except ClientDisconnected as e:
            log.info("client %s went away during a static file: %s", req.peer, e)
            resp.abort()
        except Exception:
            log.exception("error serving a static file for %s %s", req.method, req.target)
            if resp.headers_sent:
                resp.abort()
            else:
                self.error(resp, 500)
        finally:
            if fd >= 0:
                os.close(fd)

    def resolve(self, req):
        """The file system path (bytes) for the request, or the status that refuses it.
        The checks work on the str (latin-1: one character per byte): `in` on a str is
        several times cheaper than on bytes."""
        path = req.path
        if path and path[0] != "/":
            return 400
        if "\0" in path or "\\" in path:
            return 400
        if "%" in req.target:
            encoded = target_path(req.target).lower()
            if "%2f" in encoded:
                return 404  # like Apache's AllowEncodedSlashes Off
        if "/." in path:
            for segment in path.split("/"):
                if segment[:1] == ".":
                    if segment == "." or segment == "..":
                        return 400
                    if not self.dotfiles:
                        return 404
        if "//" in path:
            trailing = path.endswith("/")
            path = "/" + "/".join(s for s in path.split("/") if s)
            if trailing and path != "/":
                path += "/"
        return self.root + path.encode("latin-1")

    def send_cached(self, resp, path, want, accept):
        """Answer from the cache when it holds the file unchanged; False: nothing was sent.
        Ranges and directories (index files) always take the long way."""
        if "range" in want or path.endswith(b"/"):
            return False
        coding = None
        if self.precompressed and accept is not None:
            for coding, suffix in precompressed_codings(accept):
                # A variant that exists but cannot be served has no entry: the long way
                # finds the next one, as it always does.
                if os.access(path + suffix, os.F_OK):
                    break
            else:
                coding = None
        entry = self.cache.get((path, coding))
        if entry is None:
            return False
        if self.manifest is not None and (
                self.manifest.cache_control(path[len(self.root) + 1:]) != entry.cache_control):
            return False  # a new manifest: the entry is made again with the new header
        status = 0
        if want:
            status = check_preconditions(want, entry.etag, entry.last_modified, entry.mtime)
        if status == 304:
            resp.send_head("304 Not Modified", entry.not_modified, -1, False)
            resp.finish()
        elif status:
            self.error(resp, status)
        else:
            resp.send_head("200 OK", entry.headers, len(entry.body), False)
            resp.finish(entry.body)
        return True

    def open(self, path, check=True):
        """A descriptor (>= 0) of `path`, or minus the status to answer (-404, -403)."""
        try:
            fd = os.open(path, OPEN_FLAGS)
        except PermissionError:
            return -403
        except OSError as e:
            if e.errno in _NOT_FOUND_ERRNOS:
                return -404
            raise
        if check and not self.follow_symlinks and not self.inside_root(fd, path):
            os.close(fd)
            log.info("not serving %r: a symlink leads outside %r (follow_symlinks is off)",
                     path, self.root)
            return -404
        return fd

    def inside_root(self, fd, path):
        """Is the file really (symlinks resolved) below the root? Asked of the open descriptor.
        A file found inside is remembered by device, inode and ctime (a new file at a
        reused inode number has another ctime), which saves a readlink per request."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino, st.st_ctime_ns)
        if key in self.inside:
            return True
        try:
            real = os.readlink(b"/proc/self/fd/%d" % fd)
        except OSError:
            real = os.path.realpath(path)
        inside = real.startswith(self.real_prefix) or real == self.real_root
        if inside and len(self.inside) < 4096:
            self.inside.add(key)
        return inside

    def send(self, resp, path, file, fd, st, want, coding):
        """Answer with the open regular file `file` (`path` or its `coding` variant):
        200, 206, 304, 412, 416."""
        headers = [("Content-Type", self.root_type if self.single_file else content_type(path))]
        if coding is not None:
            headers.append(("Content-Encoding", coding))
        if self.precompressed:
            headers.append(("Vary", "Accept-Encoding"))
        etag = make_etag(st)
        last_modified = http_date(st.st_mtime)
        mtime = int(st.st_mtime)
        headers.append(("ETag", etag))
        headers.append(("Last-Modified", last_modified))
        cache_control = self.cache_control
        if self.manifest is not None:
            cache_control = self.manifest.cache_control(path[len(self.root) + 1:])
        if cache_control:
            headers.append(("Cache-Control", cache_control))

        status = check_preconditions(want, etag, last_modified, mtime)
        if status == 304:
            resp.send_head("304 Not Modified", [h for h in headers if h[0] != "Content-Type"],
                           -1, False)
            resp.finish()
            return
        if status:
            return self.error(resp, status)

        size = st.st_size
        headers.append(("Accept-Ranges", "bytes"))
        ranges = None
        header = want.get("range")
        if header is not None:
            if_range = want.get("if-range")
            if if_range is None or if_range_holds(if_range, etag, last_modified, mtime):
                ranges = parse_ranges(header, size)
        if ranges is None:
            if size <= CACHE_FILE_LIMIT and time.time_ns() - st.st_ctime_ns >= SETTLED_NS:
                self.remember((path, coding), file, fd, st, headers, etag, last_modified,
                              cache_control)
            resp.send_head("200 OK", headers, size, False)
            resp.send_file(fd, 0, size)
            resp.finish()
        elif not ranges:
            self.error(resp, 416, [("Content-Range", f"bytes */{size}")])
        elif len(ranges) == 1:
            first, last = ranges[0]
            headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
            resp.send_head("206 Partial Content", headers, last - first + 1, False)
            resp.send_file(fd, first, last - first + 1)
            resp.finish()
        else:
            self.send_multipart(resp, fd, headers, ranges, size)

    def remember(self, key, file, fd, st, headers, etag, last_modified, cache_control):
        """Cache a small file about to be sent whole, with its headers (never changed
        after this: the responders copy before they add any). The stamp is from before
        the read, so a change during it makes the next stat() differ."""
        body = os.pread(fd, st.st_size, 0)
        if len(body) != st.st_size:
            return
        entry = CachedFile()
        entry.file = file
        entry.stamp = file_stamp(st)
        entry.body = body
        entry.headers = headers
        # The 304 of the long way: no Content-Type, and Accept-Ranges is not added yet.
        entry.not_modified = [h for h in headers
                              if h[0] != "Content-Type" and h[0] != "Accept-Ranges"]
        entry.etag = etag
        entry.last_modified = last_modified
        entry.mtime = int(st.st_mtime)
        entry.cache_control = cache_control
        entry.cost = len(body) + ENTRY_OVERHEAD
        self.cache.put(key, entry)

    def send_multipart(self, resp, fd, headers, ranges, size):
        """206 multipart/byteranges: part heads written, part bodies sent with sendfile."""
        boundary = os.urandom(12).hex()
        part_type = headers[0][1]
        heads = []
        length = 0
        for i, (first, last) in enumerate(ranges):
            head = (f"{'' if i == 0 else chr(13) + chr(10)}--{boundary}\r\n"
                    f"Content-Type: {part_type}\r\n"
                    f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n").encode("latin-1")
            heads.append(head)
            length += len(head) + last - first + 1
        closing = f"\r\n--{boundary}--\r\n".encode("latin-1")
        length += len(closing)
        headers[0] = ("Content-Type", f"multipart/byteranges; boundary={boundary}")
        resp.send_head("206 Partial Content", headers, length, False)
        for head, (first, last) in zip(heads, ranges):
            resp.write(head)
            resp.send_file(fd, first, last - first + 1)
        resp.finish(closing)

    def redirect_to_directory(self, req, resp):
        """/static/docs -> 301 /static/docs/ (query kept), so relative links resolve."""
        # One leading slash only: "//host/" would send the browser to another site.
        location = "/" + target_path(req.target).lstrip("/") + "/"
        if req.query:
            location += "?" + req.query
        body = f"301 Moved Permanently: {location}\n".encode("latin-1")
        resp.send_head("301 Moved Permanently",
                       [("Location", location), ("Content-Type", "text/plain; charset=utf-8")],
                       len(body), False)
        resp.finish(body)

    @staticmethod
    def error(resp, status, extra=()):
        line = STATUS_LINES[status]
        body = (line + "\n").encode("latin-1")
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        headers.extend(extra)
        resp.send_head(line, headers, len(body), False)
        resp.finish(body)


# --------------------------------------------------------------------------
# Django's ManifestStaticFilesStorage


class DjangoManifest:
    """Cache-Control from the staticfiles.json that `collectstatic` writes with
    ManifestStaticFilesStorage: the hashed names it lists (admin/css/base.5af66c1b1797.css)
    never change, so they are cached for a year; every other file (admin/css/base.css)
    briefly. The manifest is read again when it changes (the next collectstatic),
    looked at no more than once a second."""

    HASHED = "public, max-age=31536000, immutable"
    OTHER = "public, max-age=60"
    RECHECK = 1.0

    def __init__(self, path):
        self.path = path
        self.hashed = frozenset()
        self.stamp = None
        self.checked = -self.RECHECK
        self.refresh()

    def refresh(self):
        now = time.monotonic()
        if now - self.checked < self.RECHECK:
            return
        self.checked = now
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self.stamp:
                return
            with open(self.path, "rb") as fh:
                data = json.loads(fh.read().decode("utf-8"))
            names = data["paths"].values()
            self.hashed = frozenset(fs_bytes(name) for name in names if isinstance(name, str))
            self.stamp = stamp
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            if self.stamp is not False:
                log.warning("cannot read the static files manifest %r: %s; hashed names get "
                            "the short Cache-Control until it is fixed", self.path, e)
            self.stamp = False

    def cache_control(self, relative):
        """The Cache-Control of a file, by its path (bytes) below the mount's directory."""
        self.refresh()
        return self.HASHED if relative in self.hashed else self.OTHER
