"""Fixtures that run the real fastgw server in a subprocess.

``start_server(app, *extra_args, **options)`` (function scope) and
``start_module_server`` (module scope) start
``python -m fastgw serve APP --bind 127.0.0.1:0 --workers 1 --chdir tests/apps
--env FASTGW_TEST_DIR=... EXTRA...``, wait for the ``Listening at:`` line(s)
and return a ``Server``.  Teardown always stops the server (SIGTERM, then
SIGKILL of the master and every worker it booted if needed).
"""
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from fgwtest import APPS_DIR, fastgw_command, pid_alive, subprocess_env

LISTEN_RE = re.compile(r"Listening at: (\S+)")
HTTP_LISTEN_RE = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)(?!\d)")
BOOT_RE = re.compile(r"Booting (?:process group '[^']*' )?worker with pid: (\d+)")

START_TIMEOUT = 15.0
STOP_TIMEOUT = 40.0

_ACTIVE_SERVERS = []


class _LineCollector:
    """Reads a pipe in a background thread, keeps every line."""

    def __init__(self, pipe, name):
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self._pipe = pipe
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for raw in iter(self._pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def wait_for(self, regex, timeout, start=0, count=1):
        """Return the ``count``-th match of ``regex`` in lines[start:]."""
        pattern = re.compile(regex) if isinstance(regex, str) else regex
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                matches = []
                for line in self.lines[start:]:
                    m = pattern.search(line)
                    if m:
                        matches.append(m)
                        if len(matches) == count:
                            return m
                if self.eof:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.cond.wait(remaining)


class Server:
    def __init__(self, app, extra_args=(), default_bind=True, default_workers=True,
                 chdir=APPS_DIR, test_dir=None, env=None, wait=True, cwd=None):
        self.app = app
        # An empty app: what to serve comes from --config.
        cmd = fastgw_command() + ["serve"] + ([app] if app else [])
        if default_bind:
            cmd += ["--bind", "127.0.0.1:0"]
        if default_workers:
            cmd += ["--workers", "1"]
        if chdir:
            cmd += ["--chdir", chdir]
        if test_dir:
            cmd += ["--env", "FASTGW_TEST_DIR=%s" % test_dir]
        cmd += list(extra_args)
        self.cmd = cmd
        self.test_dir = test_dir
        self.expected_listeners = cmd.count("--bind") or 1
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=subprocess_env(**(env or {})),
                                     cwd=cwd)
        self.stderr = _LineCollector(self.proc.stderr, "fastgw-stderr")
        self.stdout = _LineCollector(self.proc.stdout, "fastgw-stdout")
        self.listeners = []
        self.port = None
        self._stopped = False
        self.returncode = None
        _ACTIVE_SERVERS.append(self)
        if wait:
            self.wait_ready()

    # -- startup --
    def wait_ready(self, timeout=START_TIMEOUT):
        m = self.stderr.wait_for(LISTEN_RE, timeout, count=self.expected_listeners)
        if m is None:
            alive = self.proc.poll() is None
            raise RuntimeError(
                "fastgw did not log %d 'Listening at:' line(s) within %.0fs "
                "(process %s)\ncommand: %s\nstderr:\n%s" % (
                    self.expected_listeners, timeout,
                    "still running" if alive else "exited with %s" % self.proc.returncode,
                    " ".join(self.cmd), self.log_text()))
        self.listeners = [LISTEN_RE.search(l).group(1) for l in self.stderr.snapshot()
                          if LISTEN_RE.search(l)]
        for line in self.stderr.snapshot():
            m = HTTP_LISTEN_RE.search(line)
            if m:
                self.port = int(m.group(1))
                break
        return self

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid

    # -- logs --
    def log_lines(self):
        return self.stderr.snapshot()

    def log_text(self):
        return "\n".join(self.stderr.snapshot())

    def stdout_lines(self):
        return self.stdout.snapshot()

    def wait_for_log(self, regex, timeout=15.0, start=0, count=1):
        m = self.stderr.wait_for(regex, timeout, start=start, count=count)
        if m is None:
            raise AssertionError("no stderr line matching %r within %.0fs; stderr tail:\n%s" % (
                regex if isinstance(regex, str) else regex.pattern, timeout,
                "\n".join(self.log_lines()[-60:])))
        return m

    def wait_for_stdout(self, regex, timeout=15.0, start=0):
        m = self.stdout.wait_for(regex, timeout, start=start)
        if m is None:
            raise AssertionError("no stdout line matching %r within %.0fs; stdout:\n%s" % (
                regex, timeout, "\n".join(self.stdout_lines()[-40:])))
        return m

    def log_mark(self):
        """Index to pass as ``start=`` to only look at later log lines."""
        return len(self.stderr.snapshot())

    # -- workers --
    def worker_pids(self):
        """Pids of every worker ever booted, in boot order (latest last)."""
        return [int(m.group(1)) for m in map(BOOT_RE.search, self.log_lines()) if m]

    def live_worker_pids(self):
        return [pid for pid in self.worker_pids() if pid_alive(pid)]

    def wait_for_workers(self, count, timeout=15.0):
        """Wait until ``count`` workers have been booted; return their pids."""
        self.wait_for_log(BOOT_RE, timeout, count=count)
        return self.worker_pids()

    # -- shutdown --
    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._stopped = True
        return self.returncode

    def assert_no_workers_left(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            left = self.live_worker_pids()
            if not left:
                return
            if time.monotonic() >= deadline:
                raise AssertionError("worker processes still alive after master exit: %r" % left)
            time.sleep(0.02)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT, check_workers=True):
        """Signal the master, wait for it, check its workers are gone.
        Returns the master's exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.wait_exit(timeout)
        if code is None:
            self.kill()
            raise AssertionError("fastgw master did not exit within %.0fs after %s" % (
                timeout, signal.Signals(sig).name))
        if check_workers:
            self.assert_no_workers_left()
        self._join_readers()
        return code

    def kill(self):
        """Hard cleanup: SIGKILL the master and every worker it booted."""
        for pid in self.live_worker_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.returncode = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for pid in self.live_worker_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._stopped = True
        self._join_readers()

    def _join_readers(self):
        self.stderr.thread.join(5)
        self.stdout.thread.join(5)

    def cleanup(self):
        """Teardown: stop gracefully if still running. Returns an error
        message (or None) so the fixture can report a shutdown failure."""
        try:
            if self._stopped or self.proc.poll() is not None:
                self.wait_exit(5)
                leftover = self.live_worker_pids()
                self.kill()
                if leftover:
                    return "workers left alive after the master exited: %r" % leftover
                return None
            try:
                self.stop()
            except AssertionError as exc:
                self.kill()
                return str(exc)
            return None
        finally:
            if self in _ACTIVE_SERVERS:
                _ACTIVE_SERVERS.remove(self)
            for pipe in (self.proc.stdout, self.proc.stderr):
                try:
                    pipe.close()
                except OSError:
                    pass


class _ServerFactory:
    def __init__(self, test_dir):
        self.test_dir = test_dir
        self.servers = []

    def __call__(self, app, *extra_args, **options):
        options.setdefault("test_dir", self.test_dir)
        server = Server(app, extra_args, **options)
        self.servers.append(server)
        return server

    def cleanup(self):
        errors = []
        for server in self.servers:
            err = server.cleanup()
            if err:
                errors.append("%s: %s" % (" ".join(server.cmd[3:5]), err))
        self.servers = []
        return errors


@pytest.fixture(scope="session")
def test_dir(tmp_path_factory):
    """Directory handed to the apps as FASTGW_TEST_DIR (files, records)."""
    return str(tmp_path_factory.mktemp("fastgw-test-dir"))


@pytest.fixture
def start_server(test_dir):
    factory = _ServerFactory(test_dir)
    yield factory
    errors = factory.cleanup()
    if errors:
        pytest.fail("server shutdown problem: " + "; ".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def start_module_server(test_dir):
    factory = _ServerFactory(test_dir)
    yield factory
    errors = factory.cleanup()
    if errors:
        pytest.fail("server shutdown problem: " + "; ".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def server(start_module_server):
    """One ``wsgiapp:application`` server shared by a test module."""
    return start_module_server("wsgiapp:application")


@pytest.fixture(scope="session")
def curl_path():
    path = shutil.which("curl")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("curl is required on CI but was not found on PATH")
        pytest.skip("curl not installed")
    return path


@pytest.fixture
def curl(curl_path):
    """``curl(*args)`` runs curl and returns the CompletedProcess (bytes)."""

    def run(*args, timeout=60):
        return subprocess.run([curl_path, "--silent", "--show-error", "--max-time", "30", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _ACTIVE_SERVERS:
        for i, srv in enumerate(list(_ACTIVE_SERVERS)):
            tail = "\n".join(srv.log_lines()[-80:])
            report.sections.append(("fastgw stderr [%d] %s" % (i, srv.app), tail))
