"""The HTTP parser fuzzer (fuzz/fuzz_http.py) runs for a bounded time in CI.

FASTGW_FUZZ_SECONDS sets how long (default 60).  The engine is "auto": atheris when the
imported extension is built with coverage instrumentation (fuzz/build_instrumented.sh),
else the builtin mutation fuzzer.  Any failure prints its reproducer, which pytest shows.
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZER = os.path.join(ROOT, "fuzz", "fuzz_http.py")
sys.path.insert(0, os.path.join(ROOT, "fuzz"))

import fuzz_http  # noqa: E402


def run_fuzzer(*args, timeout):
    return subprocess.run([sys.executable, FUZZER, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)


def test_fuzz_for_a_bounded_time(tmp_path):
    seconds = float(os.environ.get("FASTGW_FUZZ_SECONDS", "60"))
    proc = run_fuzzer("--seconds", str(seconds), "--artifacts", str(tmp_path),
                      "--report-every", "0", timeout=seconds + 120)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, "the fuzzer found a failure:\n" + out[-20000:]
    runs = re.search(r"(?:executions: |Done )(\d+)", out)
    assert runs and int(runs.group(1)) > 0, out[-5000:]


def test_seed_corpus_passes():
    """Every checked-in seed runs clean (a seed that fails is a regression)."""
    corpus = fuzz_http.load_corpus()
    assert corpus, "fuzz/corpus is empty"
    failures = []
    for data in corpus:
        try:
            fuzz_http.check_one(data)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(fuzz_http.reproducer(data, "%s: %s" % (type(exc).__name__, exc)))
    assert not failures, "\n".join(failures[:5])


def test_harness_reports_a_crash(tmp_path, monkeypatch):
    """An exception other than HttpError from the parser is a failure with a reproducer."""
    real = fuzz_http.parse_pieces

    def broken(pieces, settings=None):
        if b"boom" in b"".join(pieces):
            raise IndexError("simulated parser crash")
        return real(pieces, settings)

    monkeypatch.setattr(fuzz_http, "parse_pieces", broken)
    with pytest.raises(IndexError):
        fuzz_http.check_one(b"\x00GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    fuzz_http.check_one(b"\x00GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
    text = fuzz_http.reproducer(b"\x02\x10\x80GET /boom HTTP/1.1\r\n", "IndexError")
    assert "parse_pieces([b'GET /boom HTTP/1.1\\r\\n']" in text


def test_harness_reports_split_disagreement(monkeypatch):
    real = fuzz_http.parse_pieces

    def split_sensitive(pieces, settings=None):
        result = real(pieces, settings)
        if len(pieces) > 1:
            return result[0][:-1], result[1]
        return result

    monkeypatch.setattr(fuzz_http, "parse_pieces", split_sensitive)
    with pytest.raises(fuzz_http.FuzzFailure, match="disagree"):
        fuzz_http.check_one(b"\x01\x80GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_harness_reports_an_accepted_invalid_request(monkeypatch):
    """The grammar oracle: a request the parser should have refused is a failure."""
    def lenient(pieces, settings=None):
        return [("GET", "/", "/", "", "HTTP/1.1", [("Host", "x"), ("X", "a\x00b")], b"")], False

    monkeypatch.setattr(fuzz_http, "parse_pieces", lenient)
    with pytest.raises(fuzz_http.FuzzFailure, match="CTL"):
        fuzz_http.check_one(b"\x00whatever")


def test_harness_reports_an_unexpected_status(monkeypatch):
    def wrong_status(pieces, settings=None):
        raise fuzz_http.HttpError(500, "internal")

    monkeypatch.setattr(fuzz_http, "parse_pieces", wrong_status)
    with pytest.raises(fuzz_http.FuzzFailure, match="status"):
        fuzz_http.check_one(b"\x00GET / HTTP/1.1\r\n\r\n")


def test_saved_input_can_be_replayed(tmp_path):
    path = tmp_path / "input"
    path.write_bytes(b"\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    proc = run_fuzzer("--run-file", str(path), timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert b"ok: ('ok'" in proc.stdout


# --------------------------------------------------------------------------
# the FastCGI / SCGI / uwsgi header parsers (fuzz/fuzz_cgivars.py)

import fuzz_cgivars  # noqa: E402

CGIVARS_FUZZER = os.path.join(ROOT, "fuzz", "fuzz_cgivars.py")


def run_cgivars_fuzzer(*args, timeout):
    return subprocess.run([sys.executable, CGIVARS_FUZZER, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)


def test_cgivars_fuzz_for_a_bounded_time(tmp_path):
    seconds = float(os.environ.get("FASTGW_FUZZ_SECONDS", "60"))
    proc = run_cgivars_fuzzer("--seconds", str(seconds), "--artifacts", str(tmp_path),
                              "--report-every", "0", timeout=seconds + 120)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, "the fuzzer found a failure:\n" + out[-20000:]
    runs = re.search(r"(?:executions: |Done )(\d+)", out)
    assert runs and int(runs.group(1)) > 0, out[-5000:]


def test_cgivars_seed_corpus_passes():
    corpus = fuzz_cgivars.load_corpus()
    assert {data[0] & 3 for data in corpus} >= {0, 1, 2}, "fuzz/corpus_cgivars lacks a protocol"
    failures = []
    for data in corpus:
        try:
            fuzz_cgivars.check_one(data)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(fuzz_cgivars.reproducer(data, "%s: %s" % (type(exc).__name__, exc)))
    assert not failures, "\n".join(failures[:5])


def test_cgivars_harness_reports_a_crash(monkeypatch):
    real = fuzz_cgivars.parse_head

    def broken(data, uwsgi=False, limit=65536):
        if b"boom" in data:
            raise IndexError("simulated parser crash")
        return real(data, uwsgi, limit)

    monkeypatch.setattr(fuzz_cgivars, "parse_head", broken)
    good = fuzz_cgivars._scgi([(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"1")])
    fuzz_cgivars.check_one(b"\x01" + good)
    with pytest.raises(IndexError):
        fuzz_cgivars.check_one(b"\x01" + good + b"boom")
    assert "parse_head(" in fuzz_cgivars.reproducer(b"\x01boom", "IndexError")


def test_cgivars_harness_reports_a_prefix_disagreement(monkeypatch):
    """A parser that refuses a prefix of a head it accepts whole would drop good requests
    that arrive in pieces."""
    real = fuzz_cgivars.parse_head
    good = fuzz_cgivars._uwsgi([(b"REQUEST_METHOD", b"GET")])

    def impatient(data, uwsgi=False, limit=65536):
        if 0 < len(data) < len(good):
            raise fuzz_cgivars.CgiVarsError("short")
        return real(data, uwsgi, limit)

    monkeypatch.setattr(fuzz_cgivars, "parse_head", impatient)
    with pytest.raises(fuzz_cgivars.FuzzFailure, match="disagree"):
        fuzz_cgivars.check_one(b"\x02" + good)


@pytest.mark.parametrize("value", ["1\xb2", str(2 ** 63), "-1"])
def test_cgivars_harness_reports_an_accepted_bad_number(monkeypatch, value):
    """The number oracle: request_from_params accepting a bad CONTENT_LENGTH is a failure."""
    real = fuzz_cgivars.request_from_params

    def lenient(params, body, errors=None):
        return real({k: v for k, v in params.items() if k != "CONTENT_LENGTH"}, body)

    monkeypatch.setattr(fuzz_cgivars, "request_from_params", lenient)
    data = b"\x00" + fuzz_cgivars._fcgi_pairs([(b"CONTENT_LENGTH", value.encode("latin-1"))])
    with pytest.raises(fuzz_cgivars.FuzzFailure, match="accepted bad numbers"):
        fuzz_cgivars.check_one(data)


def test_cgivars_saved_input_can_be_replayed(tmp_path):
    path = tmp_path / "input"
    path.write_bytes(b"\x00" + fuzz_cgivars._fcgi_pairs([(b"CONTENT_LENGTH", b"1\xb2")]))
    proc = run_cgivars_fuzzer("--run-file", str(path), timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert b"refused" in proc.stdout and b"invalid CONTENT_LENGTH" in proc.stdout
