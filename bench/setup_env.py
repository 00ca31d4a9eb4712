"""Install everything the benchmark runs: apt tools, the bench virtualenv, fastgw, the peers.

Standard library only: this runs under whatever python3 started run.py, before
the virtualenv exists. A peer that cannot be installed is recorded with the
reason (the last lines pip printed) and the benchmark goes on without it.
fastgw is installed from a snapshot of the repository, by default the committed
HEAD (`git archive`): the working tree may be halfway through someone's edit.
`--fastgw-from worktree` snapshots the working tree instead (tracked files plus
untracked, unignored ones). Either way the build never writes into the
repository, and it is redone only when the snapshot changes.
mod_wsgi-express runs Apache, whose children and mod_wsgi daemons must not be
root; when the harness is root they run as www-data, so while the measurement
runs, the directories above the Python installation get search permission for
others where they lack it (an installation under /root would be unreachable
otherwise); their modes are put back when it ends.
"""
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

APT_TOOLS = {"nginx": lambda: shutil.which("nginx"),
             "wrk": lambda: shutil.which("wrk"),
             "libev-dev": lambda: os.path.exists("/usr/include/ev.h"),
             # mod_wsgi's build needs apxs; mod_wsgi-express runs the apache2 binary
             "apache2": lambda: shutil.which("apache2") or os.path.exists("/usr/sbin/apache2"),
             "apache2-dev": lambda: shutil.which("apxs") or os.path.exists("/usr/bin/apxs")}

# distribution -> list of attempts; an attempt is a list of pip install argument lists
# run in order. The first attempt that fully succeeds wins; its note is recorded.
PEERS = {
    "gunicorn": [([["gunicorn"]], None)],
    "bjoern": [([["bjoern"]], None)],
    "meinheld": [
        ([["meinheld"]], None),
        ([["greenlet"], ["--no-deps", "meinheld"]],
         "installed with --no-deps: meinheld 1.0.2 requires greenlet<0.5, which does not "
         "compile on this Python; it runs with a current greenlet"),
    ],
    "granian": [([["granian"]], None)],
    "uwsgi": [([["uwsgi"]], None)],
    "waitress": [([["waitress"]], None)],
    "fastwsgi": [([["fastwsgi", "setuptools<81"]],
                  "with setuptools<81: fastwsgi imports pkg_resources")],
    "flup": [([["flup"]], None)],
    "mod_wsgi": [([["mod_wsgi"]], None)],
    # the django scenarios' project, and WhiteNoise for its static files where the
    # server serves none (gunicorn, waitress)
    "django": [([["django"]], None)],
    "whitenoise": [([["whitenoise"]], None)],
    "matplotlib": [([["matplotlib"]], None)],
}


def log(message):
    print(f"[setup] {message}", flush=True)


def ensure_apt_tools():
    """{tool: None if present, else why not}; installs missing ones with apt when root."""
    missing = [name for name, present in APT_TOOLS.items() if not present()]
    if missing and os.geteuid() == 0:
        log(f"apt-get install -y {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if _run(["apt-get", "install", "-y", *missing], env=env)[0] != 0:
            _run(["apt-get", "update"], env=env)
            _run(["apt-get", "install", "-y", *missing], env=env)
    elif missing:
        log(f"missing {', '.join(missing)}; not root, so not installing them")
    return {name: None if present() else "not installed (apt-get install -y " + name + ")"
            for name, present in APT_TOOLS.items()}


def ensure_venv(venv):
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        _run([python, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    return python


def installed_versions(python, names):
    code = ("import json, sys, importlib.metadata as m\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))")
    proc = subprocess.run([python, "-c", code, *names], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {n: None for n in names}


@contextlib.contextmanager
def python_reachable_by_others():
    """Inside: others may search (x, not read) every directory above the running
    interpreter's installation; yields those that needed it, restored on leaving."""
    changed = []
    path = os.path.realpath(sys.base_prefix)
    try:
        while True:
            mode = os.stat(path).st_mode
            if not mode & 0o001:
                os.chmod(path, mode | 0o001)
                changed.append((path, mode))
            if path == os.path.dirname(path):
                break
            path = os.path.dirname(path)
        yield [p for p, _ in changed]
    finally:
        for path, mode in reversed(changed):
            os.chmod(path, mode)


def install_peers(python, libev_ok, previous, apxs_ok=True):
    """{distribution: {"version": ..., "note": ...} or {"unavailable": reason}}.

    previous: the same dict from the last run, whose notes (how a peer had to be
    installed) still hold while the installed version is the same."""
    versions = installed_versions(python, list(PEERS))
    status = {}
    for dist, attempts in PEERS.items():
        if versions.get(dist):
            status[dist] = {"version": versions[dist]}
            before = previous.get(dist, {})
            if before.get("version") == versions[dist] and before.get("note"):
                status[dist]["note"] = before["note"]
            continue
        if dist == "bjoern" and not libev_ok:
            status[dist] = {"unavailable": "libev-dev (ev.h) is not installed"}
            continue
        if dist == "mod_wsgi" and not apxs_ok:
            status[dist] = {"unavailable": "apache2 and apache2-dev (apxs) are not installed"}
            continue
        reason = None
        for number, (steps, note) in enumerate(attempts):
            log(f"pip install {dist}" + (" (fallback)" if number else ""))
            for step in steps:
                code, output = _run([python, "-m", "pip", "install", "-q", *step])
                if code != 0:
                    reason = _pip_reason(output)
                    break
            else:
                version = installed_versions(python, [dist])[dist]
                status[dist] = {"version": version, **({"note": note} if note else {})}
                break
        else:
            status[dist] = {"unavailable": f"pip install {dist} failed: {reason}"}
        log(f"  {dist}: {status[dist]}")
    return status


def _pip_reason(output):
    lines = [l.strip() for l in output.splitlines()
             if l.strip() and not l.lstrip().startswith("WARNING")]
    errors = [l for l in lines if "error:" in l.lower() or "Error" in l]
    picked = (errors[:3] if errors else lines[-3:])
    return " / ".join(picked)[:400] or "no output"


def snapshot_head(repo, dest):
    """Extract the committed HEAD into dest; the tree's hash names the snapshot."""
    archive = subprocess.run(["git", "-C", repo, "archive", "--format=tar", "HEAD"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD^{tree}"], capture_output=True,
                          text=True, check=True).stdout.strip()


def snapshot_worktree(repo, dest):
    """Copy the files git would see (tracked + untracked, not ignored), minus bench/."""
    proc = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--cached", "--others",
                           "--exclude-standard"], capture_output=True, check=True)
    digest = hashlib.sha256()
    for rel in sorted(set(proc.stdout.decode().split("\0")) - {""}):
        if rel.startswith("bench/"):
            continue
        src = os.path.join(repo, rel)
        if not os.path.isfile(src):
            continue                            # deleted in the working tree
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(src, target)
        digest.update(rel.encode() + b"\0")
        with open(src, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def git_describe(repo):
    def git(*args):
        return subprocess.run(["git", "-C", repo, *args], capture_output=True,
                              text=True).stdout.strip()
    changed = [l[3:] for l in git("status", "--porcelain").splitlines()
               if not l[3:].startswith("bench/")]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": changed}


def install_fastgw(python, repo, venv, source="head"):
    stamp = os.path.join(venv, "fastgw-source.sha256")
    with tempfile.TemporaryDirectory(prefix="fastgw-src-") as tmp:
        snapshot = snapshot_head if source == "head" else snapshot_worktree
        digest = source + ":" + snapshot(repo, tmp)
        what = "the committed HEAD" if source == "head" else "the working tree"
        version = installed_versions(python, ["fastgw"])["fastgw"]
        if version and os.path.exists(stamp) and open(stamp).read() == digest:
            log(f"fastgw {version} already built from this snapshot of {what}")
            return {"version": version, "source": source, "source_id": digest}
        log(f"pip install fastgw from a snapshot of {what} (Cython build)")
        code, output = _run([python, "-m", "pip", "install", "-q", "--no-deps",
                             "--force-reinstall", tmp])
    if code != 0:
        return {"unavailable": f"pip install of the repository failed: {_pip_reason(output)}"}
    with open(stamp, "w") as f:
        f.write(digest)
    return {"version": installed_versions(python, ["fastgw"])["fastgw"], "source": source,
            "source_id": digest}


def prepare(venv, repo, skip_install=False, fastgw_from="head"):
    """Install what is missing; return the status dict run.py hands to the measuring stage."""
    status_path = os.path.join(venv, "bench-status.json")
    previous = {}
    if os.path.exists(status_path):
        with open(status_path) as f:
            previous = json.load(f)
        if skip_install:
            return previous
    apt = ensure_apt_tools()
    python = ensure_venv(venv)
    status = {"apt": apt, "fastgw": install_fastgw(python, repo, venv, fastgw_from),
              "git": git_describe(repo),
              "peers": install_peers(python, apt["libev-dev"] is None,
                                     previous.get("peers", {}),
                                     apt["apache2"] is None and apt["apache2-dev"] is None)}
    with open(status_path, "w") as f:
        json.dump(status, f, indent=1)
    return status


def _run(argv, env=None):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env)
    return proc.returncode, proc.stdout
