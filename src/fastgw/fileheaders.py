"""The HTTP side of answering with a file: its Content-Type, dates, ETag, ranges and codings.

Strategy: pure functions of the file's stat result and the request's headers, so
the static handler (and explain) share one reading of RFC 9110: validators and
conditional requests (section 13.2.2: If-Match, If-None-Match, If-Modified-Since,
If-Unmodified-Since, If-Range), byte ranges (section 14, at most MAX_RANGES, all
or nothing), content types from a fixed table for the web's common types before
Python's (which differs between versions), and which precompressed sibling
(.br, .gz) Accept-Encoding allows. No file system access happens here.
"""
import email.utils
import mimetypes
import re
import time

# More ranges than this, or ranges adding up to more than the file, are ignored
# (the whole file is sent): RFC 9110 section 14.2 allows it, and it stops a
# small request from asking for the same large file many times over.
MAX_RANGES = 64
# Request headers the static handler reads.
WANTED = frozenset({"if-match", "if-none-match", "if-modified-since", "if-unmodified-since",
                    "range", "if-range", "accept-encoding"})
# Precompressed siblings, best first: (content coding, file suffix).
ENCODINGS = (("br", b".br"), ("gzip", b".gz"))
_DIGITS = re.compile(r"[0-9]+")


# --------------------------------------------------------------------------
# Content-Type

# Python's table differs between versions for common web types; these are fixed.
_WEB_TYPES = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css", ".txt": "text/plain",
    ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
    ".map": "application/json", ".webmanifest": "application/manifest+json",
    ".xml": "application/xml", ".svg": "image/svg+xml", ".md": "text/markdown",
    ".csv": "text/csv", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".gif": "image/gif", ".webp": "image/webp", ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon", ".woff": "font/woff", ".woff2": "font/woff2",
    ".ttf": "font/ttf", ".otf": "font/otf", ".wasm": "application/wasm",
    ".pdf": "application/pdf", ".zip": "application/zip", ".gz": "application/gzip",
    ".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
    ".wav": "audio/wav", ".bin": "application/octet-stream",
}
# Types that are text although not text/*; they get `charset=utf-8` too.
_TEXTUAL = frozenset({"application/json", "application/manifest+json", "application/xml",
                      "application/javascript", "image/svg+xml", "application/xhtml+xml",
                      "application/rss+xml", "application/atom+xml"})
DEFAULT_TYPE = "application/octet-stream"


def _build_types():
    # MimeTypes() uses Python's built-in table only (not /etc/mime.types), so the
    # answer does not depend on the machine.
    table = dict(mimetypes.MimeTypes().types_map[True])
    table.update(_WEB_TYPES)
    types = {}
    for ext, ctype in table.items():
        if ctype.startswith("text/") or ctype in _TEXTUAL:
            ctype += "; charset=utf-8"
        types[ext.lower().encode("ascii")] = ctype
    return types


CONTENT_TYPES = _build_types()


def content_type(name):
    """Content-Type for a file name (bytes), from its extension."""
    dot = name.rfind(b".")
    if dot <= name.rfind(b"/"):
        return DEFAULT_TYPE
    return CONTENT_TYPES.get(name[dot:].lower(), DEFAULT_TYPE)


# --------------------------------------------------------------------------
# dates, validators, ranges

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


_dates = {}


def http_date(seconds):
    """An IMF-fixdate: 'Sun, 06 Nov 1994 08:49:37 GMT' (cached: files keep their mtimes)."""
    seconds = int(seconds)
    text = _dates.get(seconds)
    if text is None:
        t = time.gmtime(seconds)
        text = (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
        if len(_dates) < 4096:
            _dates[seconds] = text
    return text


def parse_http_date(text):
    """Seconds since the epoch of an HTTP date (any of the three RFC 9110 forms), or None."""
    try:
        parsed = email.utils.parsedate_tz(text)
        return None if parsed is None else email.utils.mktime_tz(parsed)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def make_etag(st):
    """A strong validator from modification time (ns) and size, as nginx makes one."""
    return f'"{st.st_mtime_ns // 1000:x}-{st.st_size:x}"'


def etag_matches(header, etag, weak):
    """Does an If-Match / If-None-Match list match `etag` (weak or strong comparison)?"""
    header = header.strip()
    if header == "*":
        return True
    for tag in header.split(","):
        tag = tag.strip()
        if weak:
            if tag[:2] == "W/":
                tag = tag[2:]
        if tag == etag:
            return True
    return False


def parse_ranges(header, size):
    """Byte ranges of a Range header for a file of `size` bytes.

    Returns None when the header is to be ignored (other unit, bad syntax, too
    many or too much), else a list of (first, last) inclusive offsets, empty when
    none of them can be satisfied (-> 416).
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    ranges = []
    count = 0
    total = 0
    for part in spec.split(","):
        part = part.strip(" \t")
        if not part:
            continue
        count += 1
        if count > MAX_RANGES:
            return None
        first, dash, last = part.partition("-")
        first = first.rstrip(" \t")
        last = last.lstrip(" \t")
        if not dash:
            return None
        if first:
            if not _DIGITS.fullmatch(first) or (last and not _DIGITS.fullmatch(last)):
                return None
            start = _number(first)
            end = _number(last) if last else size - 1
            if last and end < start:
                return None
            if start >= size:
                continue
            end = min(end, size - 1)
        else:
            if not _DIGITS.fullmatch(last):
                return None
            suffix = _number(last)
            if suffix == 0 or size == 0:
                continue
            start, end = max(0, size - suffix), size - 1
        total += end - start + 1
        ranges.append((start, end))
    if not count or total > size:
        return None
    return ranges


def _number(digits):
    # 19 digits and more are beyond any file; int() of thousands of digits is refused.
    return int(digits) if len(digits) < 19 else 1 << 63


def accepted_encodings(header):
    """The precompressed codings (in ENCODINGS order) an Accept-Encoding header allows."""
    q = {}
    for item in header.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        if coding == "x-gzip":
            coding = "gzip"
        q[coding] = weight
    star = q.get("*", 0.0)
    return [enc for enc in ENCODINGS if q.get(enc[0], star) > 0]


_codings = {}


def precompressed_codings(accept):
    """accepted_encodings() of an Accept-Encoding value that can name one, remembered:
    browsers send a handful of distinct values, each many times."""
    found = _codings.get(accept)
    if found is None:
        found = (accepted_encodings(accept)
                 if "br" in accept or "gzip" in accept or "*" in accept else ())
        if len(_codings) < 256:
            _codings[accept] = found
    return found


def wanted_headers(headers):
    """The request headers this handler reads, by lower-case name (repeated ones joined)."""
    want = {}
    for name, value in headers:
        lower = name.lower()
        if lower in WANTED:
            want[lower] = want[lower] + ", " + value if lower in want else value
    return want


def check_preconditions(want, etag, last_modified, mtime):
    """0 to go on, 304 (not modified) or 412 (precondition failed); RFC 9110 13.2.2.
    `mtime`: the file's modification time in whole seconds."""
    if_match = want.get("if-match")
    if if_match is not None:
        if not etag_matches(if_match, etag, weak=False):
            return 412
    else:
        since = want.get("if-unmodified-since")
        if since is not None:
            date = parse_http_date(since)
            if date is not None and mtime > date:
                return 412
    if_none_match = want.get("if-none-match")
    if if_none_match is not None:
        return 304 if etag_matches(if_none_match, etag, weak=True) else 0
    since = want.get("if-modified-since")
    if since is not None:
        if since == last_modified:
            return 304
        date = parse_http_date(since)
        if date is not None and mtime <= date:
            return 304
    return 0


def if_range_holds(value, etag, last_modified, mtime):
    value = value.strip()
    if value.startswith('"'):
        return value == etag
    if value.startswith("W/"):
        return False  # a weak validator never allows a range
    if value == last_modified:
        return True
    return parse_http_date(value) == mtime


def target_path(target):
    """The still-encoded path part of a request-target (origin or absolute form)."""
    if not target.startswith("/"):
        scheme_end = target.find("://")
        if scheme_end < 0:
            return ""
        slash = target.find("/", scheme_end + 3)
        if slash < 0:
            return "/"
        target = target[slash:]
    query = target.find("?")
    return target if query < 0 else target[:query]
