"""Fuzz target for fastgw's FastCGI, SCGI and uwsgi header parsers (CGI variables).

The targets are the parsers the server runs, on bytes: ``fastgw._fcgirecord.parse_params``
(a FastCGI PARAMS stream), ``fastgw._scgi.parse_head`` (an SCGI netstring or a uwsgi
packet at the start of the input), then ``fastgw.cgiparams.request_from_params``, which
turns the variables into a Request and checks the numbers among them.  One fuzz input is
a control byte and a payload:

    byte 0      bits 0-1: 0 FastCGI PARAMS, 1 SCGI, 2 uwsgi, 3 SCGI
                bit 2:    small header limit (64 bytes: the limit check is reachable)
    the rest    the payload: bytes as a web server would send them

A failure ("crash") is:

* any exception other than the parser's own error (``FcgiProtocolError``,
  ``CgiVarsError``) or, from request_from_params, ``HttpError`` 400 (or a hang, or a
  sanitizer report with the instrumented build: see README.md);
* SCGI/uwsgi: a prefix of the input that disagrees with the whole (a refused prefix of
  an accepted head, or a prefix that yields another head), since a socket may deliver
  any prefix first;
* accepted variables that break the framing rules (an SCGI head whose first variable is
  not CONTENT_LENGTH or without SCGI=1, a uwsgi packet of another size than it says,
  FastCGI pairs that do not encode back to what was parsed);
* request_from_params accepting a number that is not ASCII digits within its bound
  (CONTENT_LENGTH < 2**63, a port <= 65535) or refusing one that is.

Engines as in fuzz_http.py (``--engine auto|atheris|builtin``; the builtin one uses
fuzz_http's mutator with the tokens below).  Every failure prints a reproducer.
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

from fastgw._fcgirecord import FcgiProtocolError, parse_params
from fastgw._scgi import CgiVarsError, parse_head
from fastgw.cgiparams import request_from_params
from fastgw.errors import HttpError

import fuzz_http
from fuzz_http import FuzzFailure, Mutator, save_artifact

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_DIR = os.path.join(HERE, "corpus_cgivars")
PROTOCOLS = ("fastcgi", "scgi", "uwsgi", "scgi")
SMALL_FLAG = 0x04
DEFAULT_LIMIT = 65536
SMALL_LIMIT = 64
MAX_CORPUS = 20000
NUMBERS = {"CONTENT_LENGTH": (1 << 63) - 1, "REMOTE_PORT": 65535, "SERVER_PORT": 65535}


def decode_input(data):
    """(protocol, header limit, payload) of one fuzz input."""
    if not data:
        return "fastcgi", DEFAULT_LIMIT, b""
    return (PROTOCOLS[data[0] & 3], SMALL_LIMIT if data[0] & SMALL_FLAG else DEFAULT_LIMIT,
            bytes(data[1:]))


def parse(protocol, payload, limit):
    """('ok', params, size) / ('incomplete',) / ('error', message); anything else propagates."""
    try:
        if protocol == "fastcgi":
            return ("ok", parse_params(payload), len(payload))
        head = parse_head(payload, protocol == "uwsgi", limit)
    except (FcgiProtocolError, CgiVarsError) as exc:
        return ("error", str(exc))
    if head is None:
        return ("incomplete",)
    return ("ok", head[0], head[1])


def _encode_fcgi_length(n):
    return bytes([n]) if n < 128 else (n | 0x80000000).to_bytes(4, "big")


def check_framing(protocol, payload, params, size):
    """What an accepted head must be, by the protocol's own rules."""
    if protocol == "scgi":
        if list(params)[:1] != ["CONTENT_LENGTH"] or params.get("SCGI") != "1":
            raise FuzzFailure("accepted an SCGI head without CONTENT_LENGTH first and SCGI=1: %r"
                              % params)
        if payload[size - 1:size] != b",":
            raise FuzzFailure("accepted an SCGI netstring not ending in ','")
    elif protocol == "uwsgi":
        if payload[0] != 0 or size != 4 + int.from_bytes(payload[1:3], "little"):
            raise FuzzFailure("accepted a uwsgi packet of %d bytes; its header says otherwise" % size)
    else:
        again = b"".join(_encode_fcgi_length(len(k)) + _encode_fcgi_length(len(v))
                         + k.encode("latin-1") + v.encode("latin-1") for k, v in params.items())
        if parse_params(again) != params:
            raise FuzzFailure("FastCGI pairs do not parse back to %r" % params)


def number_ok(text, limit):
    return text == "" or (all("0" <= c <= "9" for c in text) and int(text) <= limit)


def check_request(params):
    """request_from_params: a 400 exactly when a number is bad, else a consistent Request."""
    effective = dict(params)
    for key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
        duplicate = effective.pop("HTTP_" + key, None)
        if not effective.get(key) and duplicate:
            effective[key] = duplicate
    bad = [name for name, limit in NUMBERS.items()
           if not number_ok(effective.get(name, ""), limit)]
    try:
        req = request_from_params(dict(params), None)
    except HttpError as exc:
        if exc.status != 400:
            raise FuzzFailure("HttpError with status %r (%s)" % (exc.status, exc)) from None
        if not bad:
            raise FuzzFailure("refused good numbers: %s" % exc) from None
        return ("refused", str(exc))
    if bad:
        raise FuzzFailure("accepted bad numbers in %r" % {n: effective[n] for n in bad})
    length = effective.get("CONTENT_LENGTH", "")
    if req.content_length != (int(length) if length else -1):
        raise FuzzFailure("content_length %r for CONTENT_LENGTH %r" % (req.content_length, length))
    return ("request", req.method, req.content_length)


def check_one(data):
    """Run every oracle on one fuzz input; FuzzFailure (or any other exception) is a bug."""
    protocol, limit, payload = decode_input(data)
    whole = parse(protocol, payload, limit)
    if protocol != "fastcgi":
        for cut in sorted({0, 1, 2, 3, 4, 11, 12, 13, len(payload) // 2, len(payload) - 1}):
            if not 0 <= cut < len(payload):
                continue
            part = parse(protocol, payload[:cut], limit)
            same = part == whole if whole[0] != "ok" or cut >= whole[2] else part == ("incomplete",)
            if part != ("incomplete",) and not same:
                raise FuzzFailure("the first %d bytes and the whole input disagree:\n  whole: %r\n"
                                  "  prefix: %r" % (cut, _short(whole), _short(part)))
    if whole[0] != "ok":
        return whole
    check_framing(protocol, payload, whole[1], whole[2])
    return whole[:1] + check_request(whole[1])


def _short(outcome):
    text = repr(outcome)
    return text if len(text) < 2000 else text[:2000] + "..."


def outcome_signature(outcome):
    """Coarse identity of an outcome, used by the builtin engine as a coverage stand-in."""
    kind = outcome[0] if outcome[0] != "ok" else outcome[1]
    if kind in ("error", "refused"):
        return (kind, " ".join(re.findall(r"[a-zA-Z_]{2,}", outcome[-1].split("'")[0])[:5]))
    if kind == "request":
        return (kind, outcome[2] if outcome[2] in ("GET", "POST") else "*",
                min(len(str(outcome[3])), 4))
    return (kind,)


def reproducer(data, exc_text):
    protocol, limit, payload = decode_input(data)
    call = ("parse_params(%r)" % payload if protocol == "fastcgi" else
            "parse_head(%r, %r, %d)" % (payload, protocol == "uwsgi", limit))
    return "\n".join(["=" * 72, "fastgw CGI-variables fuzz failure (%s)" % protocol,
                      exc_text.rstrip(), "", "input (%d bytes): %r" % (len(data), bytes(data)),
                      "reproduce:",
                      "  from fastgw._fcgirecord import parse_params",
                      "  from fastgw._scgi import parse_head",
                      "  from fastgw.cgiparams import request_from_params",
                      "  params = %s  # then request_from_params(params[0] or params, None)" % call,
                      "=" * 72])


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


def _fcgi_pairs(items):
    return b"".join(_encode_fcgi_length(len(k)) + _encode_fcgi_length(len(v)) + k + v
                    for k, v in items)


def _scgi(items):
    block = b"".join(k + b"\0" + v + b"\0" for k, v in items)
    return b"%d:%s," % (len(block), block)


def _uwsgi(items, modifier1=0):
    body = b"".join(len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
                    for k, v in items)
    return bytes([modifier1]) + len(body).to_bytes(2, "little") + b"\0" + body


BASE = [(b"REQUEST_METHOD", b"POST"), (b"REQUEST_URI", b"/a/b?c=d"), (b"QUERY_STRING", b"c=d"),
        (b"SERVER_PORT", b"8080"), (b"REMOTE_ADDR", b"192.0.2.1"), (b"REMOTE_PORT", b"50123"),
        (b"HTTP_HOST", b"example.com")]
LENGTHS = [b"5", b"0", b"", b"1\xb2", b"\xb2", b"9223372036854775807", b"9223372036854775808",
           b"-5", b"12x", b"000000000000000000000007", b" 5", b"\xd9\xa3"]


def builtin_seeds():
    """(control byte, payload): valid and invalid heads of each protocol."""
    seeds = []
    for length in LENGTHS:
        cl = [(b"CONTENT_LENGTH", length)]
        seeds.append((0, _fcgi_pairs(cl + BASE)))
        seeds.append((1, _scgi(cl + [(b"SCGI", b"1")] + BASE) + b"hello"))
        seeds.append((2, _uwsgi(BASE + cl) + b"hello"))
    seeds += [
        (0, _fcgi_pairs(BASE + [(b"HTTP_CONTENT_LENGTH", b"3"), (b"X" * 200, b"y" * 300)])),
        (0, b"\x80\x00\x00\x05\x01NAME1v"),
        (0, b"\x05\x7fNAME1short"),
        (0, _fcgi_pairs([(b"SERVER_PORT", b"65536"), (b"REMOTE_PORT", b"8\xb2")])),
        (1, _scgi([(b"SCGI", b"1"), (b"CONTENT_LENGTH", b"0")])),
        (1, _scgi([(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"2")])),
        (1, b"70:" + _scgi([(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"1")])[3:]),
        (1, b"123456789012:x,"),
        (SMALL_FLAG | 1, _scgi([(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"1")] + BASE)),
        (2, _uwsgi(BASE, modifier1=5)),
        (2, _uwsgi(BASE)[:-3]),
        (SMALL_FLAG | 2, _uwsgi(BASE)),
        (2, _uwsgi([(b"SERVER_PORT", b"\xb2"), (b"CONTENT_LENGTH", b"")])),
    ]
    return seeds


def load_corpus(directory=CORPUS_DIR):
    return fuzz_http.load_corpus(directory)


def write_corpus(directory):
    """Write the builtin seeds as fuzz inputs for libFuzzer's corpus dir."""
    os.makedirs(directory, exist_ok=True)
    for control, payload in builtin_seeds():
        data = bytes([control]) + payload
        with open(os.path.join(directory, hashlib.sha1(data).hexdigest()), "wb") as fh:
            fh.write(data)


# --------------------------------------------------------------------------
# the builtin engine


TOKENS = [
    b"\x00", b",", b":", b"\x80", b"\x7f", b"\xff", b"\xb2", b"\xd9\xa3", b"\x00\x00",
    b"\xff\xff", b"\x80\x00\x00\x00", b"\x7f\xff\xff\xff", b"CONTENT_LENGTH\x00", b"SCGI\x001\x00",
    b"CONTENT_LENGTH", b"HTTP_CONTENT_LENGTH", b"REMOTE_PORT", b"SERVER_PORT", b"SCGI",
    b"REQUEST_METHOD", b"PATH_INFO", b"REQUEST_URI", b"%", b"?", b"/",
    b"0", b"1", b"-1", b"+1", b" 1", b"\xb2", b"65535", b"65536", b"00000000000000000000001",
    b"9223372036854775807", b"9223372036854775808", b"18446744073709551616", b"1e3", b"0x10",
    b"99999999999999999999",
]


def _alarm(signum, frame):
    raise FuzzFailure("hang: one input took longer than the watchdog allows")


def run_builtin(seconds, max_runs, seed, artifact_dir, max_len, report_every):
    rng = random.Random(seed)
    inputs = [bytes([c]) + p for c, p in builtin_seeds()] + load_corpus()
    controls = sorted({d[0] for d in inputs if d})
    payloads = [d[1:] for d in inputs if len(d) > 1]
    mutator = Mutator(rng, payloads, TOKENS)
    seen = set()
    signal.signal(signal.SIGALRM, _alarm)
    start = time.monotonic()
    deadline = start + seconds if seconds else None
    last_report = start
    runs = 0
    print("fastgw fuzz: engine=builtin target=cgivars seed=%d seeds=%d" % (seed, len(payloads)),
          flush=True)
    try:
        while not (max_runs and runs >= max_runs):
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
            control = rng.choice(controls) if rng.random() < 0.8 else rng.randrange(8)
            data = bytes([control]) + payload
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
            sig = (PROTOCOLS[control & 3],) + outcome_signature(outcome)
            if sig not in seen:
                seen.add(sig)
                if len(payloads) < MAX_CORPUS:
                    payloads.append(payload)
                else:
                    payloads[rng.randrange(len(payloads))] = payload
    finally:
        signal.alarm(0)
    elapsed = time.monotonic() - start
    print("executions: %d in %.1f s (%.0f exec/s), %d outcome kinds, no failure" % (
        runs, elapsed, runs / elapsed if elapsed else 0, len(seen)), flush=True)
    return 0


# --------------------------------------------------------------------------
# the atheris engine


def extension_instrumented():
    import fastgw._fcgirecord
    import fastgw._scgi
    found = []
    for module in (fastgw._fcgirecord, fastgw._scgi):
        with open(module.__file__, "rb") as fh:
            found.append(b"__sanitizer_cov" in fh.read())
    return all(found)


def run_atheris(libfuzzer_args, artifact_dir):
    import atheris

    def test_one_input(data):
        try:
            check_one(data)
        except Exception:
            print(reproducer(data, traceback.format_exc()), flush=True)
            raise

    print("fastgw fuzz: engine=atheris target=cgivars instrumented-extension=%s" % (
        extension_instrumented(),), flush=True)
    args = [sys.argv[0]] + list(libfuzzer_args)
    if not any(a.startswith("-artifact_prefix=") for a in args):
        os.makedirs(artifact_dir, exist_ok=True)
        args.append("-artifact_prefix=" + os.path.join(artifact_dir, ""))
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
    parser.add_argument("--run-file", metavar="FILE", help="run one saved input and exit")
    parser.add_argument("--write-corpus", metavar="DIR", help="write the seeds for libFuzzer")
    args, rest = parser.parse_known_args(argv)
    if args.run_file:
        return run_file(args.run_file)
    if args.write_corpus:
        write_corpus(args.write_corpus)
        return 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if fuzz_http.atheris_available() and extension_instrumented() \
            else "builtin"
    if engine == "atheris":
        if not any(a.startswith(("-max_total_time=", "-runs=")) for a in rest) and args.seconds:
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
