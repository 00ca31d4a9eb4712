"""Fuzz target for fastgw's HTTP/1.1 request parser and chunked decoder.

The target is ``fastgw._httpbody.parse_pieces``: the real incremental parser fed a list of
byte strings one after another.  One fuzz input is a control prefix and a payload:

    byte 0      bits 0-2: how many cut points follow (0-7)
                bit 3:    also feed the payload one byte at a time (payloads <= 512 bytes)
                bit 4:    use small limits (so every limit check is reachable)
    bytes 1..k  one byte per cut point: payload offset = byte * len(payload) // 256
    the rest    the payload: bytes as a client would send them

Each input is parsed whole and split at the cut points.  A failure ("crash") is:

* any exception other than ``fastgw.errors.HttpError`` (or a hang, or a sanitizer report
  when the extension is built with AddressSanitizer: see README.md);
* an ``HttpError`` whose status is not one a request can earn (400 413 414 417 431 501 505);
* the whole and the split stream disagreeing (one is refused and the other is not, or
  they give different requests): the parser must not depend on how TCP cuts the bytes;
* an accepted request breaking the grammar (a CTL in a header value, a method that is
  not a token, both Content-Length and Transfer-Encoding, a body not matching its
  Content-Length, two Host headers, ...): the parser let something through it must refuse.

Engines: ``--engine atheris`` (libFuzzer through atheris; coverage-guided when fastgw's
extension is built with -fsanitize=fuzzer-no-link, see README.md), ``--engine builtin``
(a mutation fuzzer written here: seeds below plus fuzz/corpus/, byte and token
mutations, new outcome signatures kept as new seeds), ``--engine auto`` (atheris when the
imported extension is instrumented, else builtin).  Every failure prints a reproducer.
"""
import argparse
import hashlib
import os
import random
import re
import signal
import sys
import time
import traceback

from fastgw._httpbody import parse_pieces
from fastgw._limits import ProtocolLimits
from fastgw.config import Config
from fastgw.errors import HttpError

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_DIR = os.path.join(HERE, "corpus")
DICT_FILE = os.path.join(HERE, "http.dict")

ALLOWED_STATUSES = frozenset({400, 413, 414, 417, 431, 501, 505})
# The limits come from a Config, which needs something to serve; the app is never loaded.
ANY_APP = "app:application"
SMALL_LIMITS = dict(limit_request_line=64, limit_request_field_size=48, limit_request_fields=6,
                    limit_request_head=200, limit_request_body=300, limit_chunk_line=24,
                    limit_trailer_size=40)
DEFAULT_SETTINGS = ProtocolLimits(Config(app=ANY_APP))
SMALL_SETTINGS = ProtocolLimits(Config(app=ANY_APP, **SMALL_LIMITS))
SMALL_FLAG = 0x10
BYTEWISE_FLAG = 0x08
BYTEWISE_MAX = 512
MAX_CORPUS = 20000

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class FuzzFailure(Exception):
    """The parser did something it must never do for this input."""


# --------------------------------------------------------------------------
# one input


def decode_input(data, transform=None):
    """Split a fuzz input into (settings, payload, list of piece lists to compare)."""
    if not data:
        return DEFAULT_SETTINGS, b"", []
    control = data[0]
    ncuts = control & 7
    cut_bytes = data[1:1 + ncuts]
    payload = bytes(data[1 + ncuts:])
    if transform is not None:
        payload = transform(payload)
    settings = SMALL_SETTINGS if control & SMALL_FLAG else DEFAULT_SETTINGS
    splits = []
    if cut_bytes:
        cuts = sorted({b * len(payload) // 256 for b in cut_bytes})
        pieces, last = [], 0
        for cut in cuts:
            pieces.append(payload[last:cut])
            last = cut
        pieces.append(payload[last:])
        splits.append(pieces)
    if control & BYTEWISE_FLAG and len(payload) <= BYTEWISE_MAX:
        splits.append([payload[i:i + 1] for i in range(len(payload))])
    return settings, payload, splits


def parse(pieces, settings):
    """('ok', requests, incomplete) or ('error', status, message); anything else propagates."""
    try:
        requests, incomplete = parse_pieces(pieces, settings)
    except HttpError as exc:
        if exc.status not in ALLOWED_STATUSES:
            raise FuzzFailure("HttpError with status %r (%s)" % (exc.status, exc)) from None
        return ("error", exc.status, str(exc))
    return ("ok", requests, incomplete)


def _token(text):
    return bool(text) and all(ord(c) < 128 and ord(c) in TCHAR for c in text)


def check_request(req, settings):
    """Grammar an accepted request must satisfy (RFC 9112 / 9110)."""
    method, target, path, query, version, headers, body = req
    if not _token(method):
        raise FuzzFailure("accepted a method that is not a token: %r" % method)
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise FuzzFailure("accepted version %r" % version)
    if not target or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in target):
        raise FuzzFailure("accepted request-target %r" % target)
    if len(headers) > settings.fields:
        raise FuzzFailure("accepted %d header fields, limit %d" % (len(headers), settings.fields))
    hosts = 0
    lengths = []
    te = []
    for name, value in headers:
        if not _token(name):
            raise FuzzFailure("accepted a field name that is not a token: %r" % name)
        for c in value:
            o = ord(c)
            if (o < 0x20 and o != 0x09) or o == 0x7F:
                raise FuzzFailure("accepted a CTL in the value of %r: %r" % (name, value))
        if value != value.strip(" \t"):
            raise FuzzFailure("field value keeps surrounding whitespace: %r" % value)
        lower = name.lower()
        if lower == "host":
            hosts += 1
        elif lower == "content-length":
            lengths.append(value)
        elif lower == "transfer-encoding":
            te.append(value)
    if hosts > 1 or (version == "HTTP/1.1" and hosts != 1):
        raise FuzzFailure("accepted %s with %d Host headers" % (version, hosts))
    if lengths and te:
        raise FuzzFailure("accepted both Content-Length and Transfer-Encoding")
    if te:
        if version != "HTTP/1.1":
            raise FuzzFailure("accepted Transfer-Encoding on %s" % version)
        if len(te) != 1 or te[0].lower() != "chunked":
            raise FuzzFailure("accepted Transfer-Encoding %r" % te)
    elif lengths:
        if not all(v.isdigit() and v.isascii() for v in lengths) or len(set(map(int, lengths))) != 1:
            raise FuzzFailure("accepted Content-Length values %r" % lengths)
        if len(body) != int(lengths[0]):
            raise FuzzFailure("body of %d bytes for Content-Length %s" % (len(body), lengths[0]))
    elif body:
        raise FuzzFailure("a body of %d bytes without any framing header" % len(body))
    if settings.body and len(body) > settings.body:
        raise FuzzFailure("accepted a body of %d bytes, limit %d" % (len(body), settings.body))


# Bugs already reported to the parser's owner, each with its reproducer.  They are
# fatal by default; --allow-known (or FASTGW_FUZZ_ALLOW_KNOWN=1) rewrites every input so
# it cannot hit them, and a long run can look for other bugs.  Delete an entry (and its
# helpers) once its bug is fixed.
KNOWN_ISSUES = [
    # (label, how it was reported with its reproducer, function rewriting the payload so
    #  it cannot hit the bug or None, function rewriting the list of pieces or None)
]


def _known_payload_transform(payload):
    for issue in KNOWN_ISSUES:
        if issue[2] is not None:
            payload = issue[2](payload)
    return payload


allow_known = os.environ.get("FASTGW_FUZZ_ALLOW_KNOWN") == "1"


def check_one(data):
    """Run every oracle on one fuzz input; FuzzFailure (or any other exception) is a bug."""
    settings, payload, splits = decode_input(data, _known_payload_transform if allow_known else None)
    whole_pieces = [payload]
    if allow_known:
        for issue in KNOWN_ISSUES:
            if issue[3] is not None:
                whole_pieces = issue[3](whole_pieces)
                splits = [issue[3](pieces) for pieces in splits]
    whole = parse(whole_pieces, settings)
    if whole[0] == "ok":
        for req in whole[1]:
            check_request(req, settings)
    for pieces in splits:
        split = parse(pieces, settings)
        if split[0] == "ok":
            for req in split[1]:
                check_request(req, settings)
        if split[0] != whole[0] or (whole[0] == "ok" and split[1:] != whole[1:]):
            raise FuzzFailure("whole stream and split stream disagree:\n  whole: %r\n  split: %r"
                              % (_short(whole), _short(split)))
    return whole


def _short(outcome):
    text = repr(outcome)
    return text if len(text) < 2000 else text[:2000] + "..."


def outcome_signature(outcome):
    """Coarse identity of an outcome, used by the builtin engine as a coverage stand-in."""
    if outcome[0] == "error":
        message = outcome[2]
        words = re.findall(r"[a-z][a-z-]+", re.sub(r"b'.*|b\".*|'.*", "", message))
        return ("error", outcome[1], " ".join(words[:5]))
    requests, incomplete = outcome[1], outcome[2]
    shape = tuple((r[0] if r[0] in ("GET", "POST", "HEAD") else "*", r[4], len(r[5]) > 3,
                   bool(r[6])) for r in requests[:3])
    return ("ok", min(len(requests), 4), incomplete, shape)


def reproducer(data, exc_text):
    settings, payload, splits = decode_input(data)
    lines = ["=" * 72, "fastgw HTTP fuzz failure", exc_text.rstrip(), "",
             "input (%d bytes): %r" % (len(data), bytes(data)),
             "reproduce:",
             "  from fastgw._httpbody import parse_pieces",
             "  from fastgw._limits import ProtocolLimits",
             "  from fastgw.config import Config",
             "  settings = ProtocolLimits(Config(app=%r%s))" % (ANY_APP, "".join(
                 ", %s=%d" % item for item in SMALL_LIMITS.items())
                 if settings is SMALL_SETTINGS else ""),
             "  parse_pieces([%r], settings)" % payload]
    for pieces in splits[:1]:
        lines.append("  parse_pieces(%r, settings)" % (pieces,))
    if len(splits) > 1 or (splits and len(splits[0]) == len(payload) and len(payload) > 1):
        lines.append("  parse_pieces([bytes([b]) for b in %r], settings)" % payload)
    lines.append("=" * 72)
    return "\n".join(lines)


def save_artifact(data, directory):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "crash-" + hashlib.sha1(data).hexdigest())
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def run_file(path):
    """Run one saved input (a crash file or a corpus entry); exit status 1 on failure."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        outcome = check_one(data)
    except Exception:
        print(reproducer(data, traceback.format_exc()))
        return 1
    print("ok: %s" % _short(outcome))
    return 0


# --------------------------------------------------------------------------
# seeds


def _req(method, target, headers=(), body=b"", version=b"HTTP/1.1", eol=b"\r\n"):
    head = b"%s %s %s%s" % (method, target, version, eol)
    for name, value in headers:
        head += name + b": " + value + eol
    return head + eol + body


def _chunks(*parts, ext=b"", trailers=b"", eol=b"\r\n"):
    out = b""
    for part in parts:
        out += b"%x%s%s%s%s" % (len(part), ext, eol, part, eol)
    return out + b"0" + ext + eol + trailers + eol


H = [(b"Host", b"example.com")]
TE = [(b"Transfer-Encoding", b"chunked")]


def builtin_seeds():
    """Valid and invalid requests covering every rule; the fuzzer's starting points."""
    get = _req(b"GET", b"/a/b?c=d", H + [(b"Accept", b"*/*")])
    seeds = [
        get,
        get + get,
        _req(b"GET", b"/", version=b"HTTP/1.0"),
        _req(b"GET", b"/", H, eol=b"\n"),
        _req(b"HEAD", b"http://example.com/x?y", H),
        _req(b"OPTIONS", b"*", H),
        _req(b"POST", b"/p", H + [(b"Content-Length", b"5")], b"hello") + get,
        _req(b"POST", b"/p", H + [(b"Content-Length", b"5"), (b"Content-Length", b"5")], b"hello"),
        _req(b"POST", b"/c", H + TE, _chunks(b"hello", b"world")) + get,
        _req(b"POST", b"/c", H + TE, _chunks(b"abc", ext=b";name=value;q=\"a\\\"b\"")),
        _req(b"POST", b"/c", H + TE, _chunks(b"abc", trailers=b"Checksum: 1\r\nX-T: y\r\n")),
        _req(b"POST", b"/c", H + TE, _chunks(b"abc", eol=b"\n"), eol=b"\n"),
        _req(b"PUT", b"/c", H + [(b"Transfer-Encoding", b"Chunked")], _chunks(b"x" * 40)),
        _req(b"POST", b"/e", H + [(b"Expect", b"100-continue"), (b"Content-Length", b"2")], b"ok"),
        _req(b"GET", b"/", H + [(b"Connection", b"close, keep-alive")]),
        # refused ones: mutations of these land near the edges
        _req(b"POST", b"/", H + [(b"Content-Length", b"3")] + TE, b"3\r\nabc\r\n0\r\n\r\n"),
        _req(b"POST", b"/", H + [(b"Content-Length", b"3"), (b"Content-Length", b"4")], b"abcd"),
        _req(b"POST", b"/", H + [(b"Content-Length", b"+3")], b"abc"),
        _req(b"POST", b"/", H + [(b"Content-Length", b"99999999999999999999")]),
        _req(b"POST", b"/", H + [(b"Transfer-Encoding", b"chunked, gzip")], b"abc"),
        _req(b"POST", b"/", [(b"Transfer-Encoding", b"chunked")], b"0\r\n\r\n", version=b"HTTP/1.0"),
        _req(b"POST", b"/", H + TE, b"fffffffffffffffff\r\nx\r\n0\r\n\r\n"),
        _req(b"POST", b"/", H + TE, b"5 junk\r\nhello\r\n0\r\n\r\n"),
        _req(b"POST", b"/", H + TE, b"5\r\nhelloXX0\r\n\r\n"),
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Cr: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/3\r\nHost: x\r\n\r\n",
        b"GET  HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n",
        b"GET /" + b"a" * 80 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    return seeds


def load_corpus(directory=CORPUS_DIR):
    found = []
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                with open(path, "rb") as fh:
                    found.append(fh.read())
    return found


def write_corpus(directory):
    """Write the builtin seeds as fuzz inputs (control byte 0) for libFuzzer's corpus dir."""
    os.makedirs(directory, exist_ok=True)
    for seed in builtin_seeds():
        for control in (0x00, SMALL_FLAG):
            data = bytes([control]) + seed
            name = hashlib.sha1(data).hexdigest()
            with open(os.path.join(directory, name), "wb") as fh:
                fh.write(data)


# --------------------------------------------------------------------------
# the builtin engine


INTERESTING = [
    b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b";", b"=", b"\"", b"\\", b",", b"\x7f",
    b"\xff", b"\x0b", b"\x0c", b"0", b"f", b"-", b"+", b"/", b"?", b"%", b"*", b"#", b"\r\n\r\n",
    b"\n\n", b"\r\r\n", b" \r\n", b"\r\n ", b"\r\n\t", b"Host: x\r\n", b"Host:",
    b"Content-Length: ", b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: ", b"chunked", b"chunked, chunked", b"gzip", b"identity",
    b"Expect: 100-continue\r\n", b"Connection: close\r\n", b"HTTP/1.1", b"HTTP/1.0",
    b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.", b"http://", b"https://", b"0\r\n\r\n",
    b"ffffffffffffffff", b"9223372036854775807", b"9223372036854775808",
    b"18446744073709551616", b"00000000000000000001", b"-1", b"0x10", b"1e3",
    b";ext", b";a=b", b";a=\"q\\\"\"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
]


class Mutator:
    """Byte and token mutations; `tokens` are the protocol's interesting byte strings (the
    last 16 also replace runs of digits); fuzz_cgivars.py passes its own."""

    def __init__(self, rng, corpus, tokens=INTERESTING):
        self.rng = rng
        self.corpus = corpus
        self.tokens = tokens

    def mutate(self, data):
        rng = self.rng
        data = bytearray(data)
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 6))):
            op = rng.randrange(11)
            n = len(data)
            pos = rng.randrange(n + 1)
            if op == 0 and n:
                data[min(pos, n - 1)] ^= 1 << rng.randrange(8)
            elif op == 1 and n:
                data[min(pos, n - 1)] = rng.randrange(256)
            elif op in (2, 3):
                data[pos:pos] = rng.choice(self.tokens)
            elif op == 4 and n:
                end = min(n, pos + rng.choice((1, 1, 2, 4, 16, 64)))
                del data[pos:end]
            elif op == 5 and n:
                end = min(n, pos + rng.randrange(1, 32))
                data[pos:pos] = data[pos:end]
            elif op == 6:
                other = rng.choice(self.corpus)
                a = rng.randrange(len(other) + 1)
                b = rng.randrange(a, len(other) + 1)
                data[pos:pos] = other[a:b]
            elif op == 7:
                other = rng.choice(self.corpus)
                cut = rng.randrange(len(other) + 1)
                data = data[:pos] + bytearray(other[cut:])
            elif op == 8 and n:
                # replace a run of digits or a token near a line ending
                i = data.find(b"\r\n", pos)
                if i < 0:
                    i = data.find(b"\n", pos)
                if i >= 0:
                    data[i:i] = rng.choice(self.tokens)
            elif op == 9 and n:
                j = pos
                while j < n and 0x30 <= data[j] <= 0x39:
                    j += 1
                data[pos:j] = rng.choice(self.tokens[-16:])
            elif op == 10:
                crlf = data.find(b"\r\n", pos)
                if crlf >= 0:
                    data[crlf:crlf + 2] = rng.choice((b"\n", b"\r", b"\n\r", b"\r\r\n"))
        return bytes(data)

    def control(self, payload):
        rng = self.rng
        ncuts = rng.randrange(8)
        control = ncuts | (SMALL_FLAG if rng.random() < 0.3 else 0)
        if rng.random() < 0.05:
            control |= BYTEWISE_FLAG
        return bytes([control]) + bytes(rng.randrange(256) for _ in range(ncuts))


def _alarm(signum, frame):
    raise FuzzFailure("hang: one input took longer than the watchdog allows")


def run_builtin(seconds, max_runs, seed, artifact_dir, max_len, report_every):
    rng = random.Random(seed)
    payloads = builtin_seeds() + [decode_input(d)[1] for d in load_corpus()]
    payloads = [p for p in payloads if p]
    mutator = Mutator(rng, payloads)
    seen = set()
    signal.signal(signal.SIGALRM, _alarm)
    start = time.monotonic()
    deadline = start + seconds if seconds else None
    last_report = start
    runs = 0
    print("fastgw fuzz: engine=builtin seed=%d seeds=%d parser=%s" % (
        seed, len(payloads), sys.modules[parse_pieces.__module__].__file__), flush=True)
    try:
        while True:
            if max_runs and runs >= max_runs:
                break
            if runs & 1023 == 0:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if report_every and now - last_report >= report_every:
                    last_report = now
                    print("#%d  %.0f exec/s  corpus=%d  outcomes=%d" % (
                        runs, runs / (now - start), len(payloads), len(seen)), flush=True)
                signal.alarm(10)
            payload = mutator.mutate(rng.choice(payloads))[:max_len]
            data = mutator.control(payload) + payload
            runs += 1
            try:
                outcome = check_one(data)
            except Exception:
                signal.alarm(0)
                path = save_artifact(data, artifact_dir)
                print(reproducer(data, traceback.format_exc()), flush=True)
                print("saved %s" % path)
                print("executions: %d" % runs)
                return 1
            sig = outcome_signature(outcome)
            if sig not in seen:
                seen.add(sig)
                if len(payloads) < MAX_CORPUS:
                    payloads.append(payload)
                else:
                    payloads[rng.randrange(len(payloads))] = payload
    finally:
        signal.alarm(0)
    elapsed = time.monotonic() - start
    if allow_known:
        print("inputs were rewritten to avoid the known issues: %s" % ", ".join(
            k[0] for k in KNOWN_ISSUES))
    print("executions: %d in %.1f s (%.0f exec/s), %d outcome kinds, no failure" % (
        runs, elapsed, runs / elapsed if elapsed else 0, len(seen)), flush=True)
    return 0


# --------------------------------------------------------------------------
# the atheris engine


def extension_instrumented():
    import fastgw._httphead
    with open(fastgw._httphead.__file__, "rb") as fh:
        return b"__sanitizer_cov" in fh.read()


def atheris_available():
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_atheris(libfuzzer_args, artifact_dir):
    import atheris

    def test_one_input(data):
        try:
            check_one(data)
        except Exception:
            print(reproducer(data, traceback.format_exc()), flush=True)
            raise

    print("fastgw fuzz: engine=atheris instrumented-extension=%s parser=%s" % (
        extension_instrumented(), sys.modules[parse_pieces.__module__].__file__), flush=True)
    args = [sys.argv[0]] + list(libfuzzer_args)
    if not any(a.startswith("-artifact_prefix=") for a in args):
        os.makedirs(artifact_dir, exist_ok=True)
        args.append("-artifact_prefix=" + os.path.join(artifact_dir, ""))
    if os.path.exists(DICT_FILE) and not any(a.startswith("-dict=") for a in args):
        args.append("-dict=" + DICT_FILE)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


# --------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("auto", "atheris", "builtin"), default="auto")
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("FASTGW_FUZZ_SECONDS", "60")),
                        help="builtin engine: run this long, 0 = until --runs (default "
                             "$FASTGW_FUZZ_SECONDS or 60); atheris: pass -max_total_time")
    parser.add_argument("--runs", type=int, default=0, help="builtin: stop after this many inputs")
    parser.add_argument("--seed", type=int, default=None, help="builtin: random seed")
    parser.add_argument("--max-len", type=int, default=4096)
    parser.add_argument("--artifacts", default=os.environ.get("FASTGW_FUZZ_ARTIFACTS", "."),
                        help="where crash-<sha1> files go (default: current directory)")
    parser.add_argument("--report-every", type=float, default=30.0)
    parser.add_argument("--allow-known", action="store_true",
                        help="rewrite inputs so they avoid the KNOWN_ISSUES (already reported "
                             "bugs) and look for other ones")
    parser.add_argument("--run-file", metavar="FILE", help="run one saved input and exit")
    parser.add_argument("--write-corpus", metavar="DIR", help="write the seeds for libFuzzer")
    args, rest = parser.parse_known_args(argv)
    global allow_known
    allow_known = allow_known or args.allow_known
    if args.run_file:
        return run_file(args.run_file)
    if args.write_corpus:
        write_corpus(args.write_corpus)
        return 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if atheris_available() and extension_instrumented() else "builtin"
    if engine == "atheris":
        if not any(a.startswith("-max_total_time=") or a.startswith("-runs=") for a in rest) \
                and args.seconds:
            rest.append("-max_total_time=%d" % max(1, int(args.seconds)))
        if not any(a.startswith("-max_len=") for a in rest):
            rest.append("-max_len=%d" % args.max_len)
        return run_atheris(rest, args.artifacts)
    if rest:
        parser.error("unknown arguments for the builtin engine: %s" % " ".join(rest))
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    return run_builtin(args.seconds, args.runs, seed, args.artifacts, args.max_len,
                       args.report_every)


if __name__ == "__main__":
    sys.exit(main())
