"""Packaging: the sdist, the wheel, the cibuildwheel matrix and the CI workflows.

Fast checks, part of the ordinary suite: `python -m build` makes an sdist that
carries every source a build needs (and no generated C) and, from that sdist, a
wheel holding the compiled modules; `cibuildwheel --print-build-identifiers`
prints exactly the intended matrix for Linux and macOS, and the runners of
wheels.yml together build all of it; the workflow files validate against
GitHub's workflow schema.

Full checks, run when FASTGW_PACKAGING_FULL=1 (scripts/check_packaging.sh sets
it): the sdist installs in a fresh venv that has neither setuptools nor Cython,
and `fastgw --version` works from it; auditwheel gives the local wheel a
manylinux tag; the repaired wheel passes cibuildwheel's own test-command, run
as cibuildwheel runs it (a venv with the wheel, a directory with test-sources).

Tools are looked up in $FASTGW_PACKAGING_TOOLS (a bin directory), next to the
running interpreter, then on PATH.  A missing tool skips the checks that need
it, except on CI (CI=true) and in the full run, where it is a failure wherever
the tool can run: cibuildwheel and check-jsonschema need Python 3.11 or later.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ON_CI = os.environ.get("CI") == "true"
FULL = os.environ.get("FASTGW_PACKAGING_FULL") == "1"

PYTHONS = ["cp39", "cp310", "cp311", "cp312", "cp313", "cp314"]
PLATFORM_TAGS = {
    "linux": ["manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64"],
    "macos": ["macosx_x86_64", "macosx_arm64"],
}
BUILD_TIMEOUT = 900

full_only = pytest.mark.skipif(
    not FULL, reason="full packaging check: run scripts/check_packaging.sh "
                     "(or set FASTGW_PACKAGING_FULL=1)")


def package_version():
    with open(os.path.join(ROOT, "src", "fastgw", "__init__.py")) as fh:
        return re.search(r'^__version__ = "([^"]+)"', fh.read(), re.M).group(1)


def compiled_module_names():
    """fastgw._loop, ... : one compiled module per .pyx file."""
    return sorted(os.path.basename(p)[:-4]
                  for p in glob.glob(os.path.join(ROOT, "src", "fastgw", "*.pyx")))


def expected_identifiers(platform, tags=None):
    return sorted("%s-%s" % (py, tag) for py in PYTHONS
                  for tag in (tags or PLATFORM_TAGS[platform]))


def find_tool(name, package=None, needs_python=None):
    """Path of the command ``name`` (from the pip package ``package``); skip, or
    fail on CI and in the full run, when it is missing."""
    dirs = [os.environ.get("FASTGW_PACKAGING_TOOLS"), os.path.dirname(sys.executable)]
    for directory in dirs:
        if directory:
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
    path = shutil.which(name)
    if path:
        return path
    message = "%s is not installed (pip package %s; scripts/check_packaging.sh installs " \
              "every packaging tool)" % (name, package or name)
    runs_here = needs_python is None or sys.version_info >= needs_python
    if (ON_CI or FULL) and runs_here:
        pytest.fail(message + "; it is required on CI and in the full run", pytrace=False)
    if not runs_here:
        message += "; it needs Python %d.%d+" % needs_python
    pytest.skip(message)


def run(cmd, timeout=BUILD_TIMEOUT, **kwargs):
    """Run ``cmd``, fail with its output unless it exits 0, return stdout."""
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, **kwargs)
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        pytest.fail("%s exited %d:\n%s" % (" ".join(cmd), proc.returncode, out[-6000:]),
                    pytrace=False)
    return out


def env_without_cibw(**extra):
    """The environment minus CIBW_* settings, which would override pyproject.toml."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    env.update(extra)
    return env


# --------------------------------------------------------------------------
# sdist and wheel


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """(sdist, wheel) from one `python -m build`: the wheel is built from the sdist."""
    build = find_tool("pyproject-build", package="build")
    out_dir = str(tmp_path_factory.mktemp("dist"))
    run([build, "--outdir", out_dir, ROOT], cwd=ROOT)
    sdists = glob.glob(os.path.join(out_dir, "*.tar.gz"))
    wheels = glob.glob(os.path.join(out_dir, "*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, os.listdir(out_dir)
    return sdists[0], wheels[0]


def sdist_names(sdist):
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    top = names[0].split("/", 1)[0]
    return {n.split("/", 1)[1] for n in names if "/" in n}, top


def test_sdist_carries_every_build_source(dists):
    names, top = sdist_names(dists[0])
    assert top == "fastgw-%s" % package_version()
    needed = {"README.md", "pyproject.toml", "setup.py", "MANIFEST.in", "PKG-INFO",
              "tests/test_smoke.py", "tests/conftest.py", "tests/fgwtest.py"}
    for pattern in ("csrc/*.c", "csrc/*.h", "src/fastgw/*.pyx", "src/fastgw/*.pxd",
                    "src/fastgw/*.py"):
        found = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern))}
        assert found, "no files match " + pattern
        needed |= found
    missing = sorted(needed - names)
    assert not missing, "missing from the sdist: %s" % missing


def test_sdist_has_no_build_output(dists):
    names, _ = sdist_names(dists[0])
    generated = sorted(n for n in names
                       if re.match(r"src/fastgw/[^/]+\.(c|so|pyd)$", n) or n.startswith("build/"))
    assert not generated, "build output in the sdist: %s" % generated


def test_sdist_metadata(dists):
    with tarfile.open(dists[0]) as tar:
        top = tar.getnames()[0].split("/", 1)[0]
        pkg_info = tar.extractfile(top + "/PKG-INFO").read().decode("utf-8")
    assert re.search(r"^Version: %s$" % re.escape(package_version()), pkg_info, re.M)
    assert re.search(r"^Description-Content-Type: text/markdown", pkg_info, re.M)
    assert "fastgw serve" in pkg_info, "the README is not the long description"


def test_wheel_holds_the_compiled_modules(dists):
    wheel = dists[1]
    name = os.path.basename(wheel)
    assert name.startswith("fastgw-%s-" % package_version()), name
    assert not name.endswith("-none-any.whl"), "a pure-Python wheel: " + name
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        wheel_meta = zf.read("fastgw-%s.dist-info/WHEEL" % package_version()).decode()
        entry_points = zf.read("fastgw-%s.dist-info/entry_points.txt"
                               % package_version()).decode()
    assert "Root-Is-Purelib: false" in wheel_meta
    assert re.search(r"^fastgw = fastgw\.cli:main$", entry_points, re.M), entry_points
    for module in compiled_module_names():
        pattern = re.compile(r"fastgw/%s\.[^/]*(\.so|\.pyd)$" % re.escape(module))
        assert any(pattern.match(n) for n in names), "no compiled fastgw.%s in %s" % (
            module, names)
    c_files = [n for n in names if n.endswith(".c")]
    assert not c_files, "generated C shipped in the wheel: %s" % c_files


# --------------------------------------------------------------------------
# cibuildwheel matrix and workflows


def print_identifiers(platform, **env):
    cibuildwheel = find_tool("cibuildwheel", needs_python=(3, 11))
    out = run([cibuildwheel, "--print-build-identifiers", "--platform", platform],
              timeout=120, cwd=ROOT, env=env_without_cibw(**env))
    return sorted(line.strip() for line in out.splitlines() if line.strip())


@pytest.mark.parametrize("platform", sorted(PLATFORM_TAGS))
def test_cibuildwheel_matrix(platform):
    assert print_identifiers(platform) == expected_identifiers(platform)


def test_cibuildwheel_skips_windows():
    assert print_identifiers("windows") == []


def wheels_yml_rows():
    """(os, archs) of each row of the wheels job's matrix."""
    with open(os.path.join(ROOT, ".github", "workflows", "wheels.yml")) as fh:
        text = fh.read()
    rows = re.findall(r"^\s+os: (\S+)\n\s+archs: (\S+)$", text, re.M)
    assert rows, "no `os:`/`archs:` rows found in wheels.yml"
    return rows


def test_wheels_workflow_builds_the_whole_matrix():
    """Each runner narrows archs with CIBW_ARCHS_<PLATFORM>; together they cover all."""
    built = []
    for runner, archs in wheels_yml_rows():
        platform = "macos" if runner.startswith("macos") else "linux"
        key = "CIBW_ARCHS_" + platform.upper()
        ids = print_identifiers(platform, **{key: archs})
        assert ids, "runner %s with %s=%s builds nothing" % (runner, key, archs)
        if platform == "macos":
            assert all(i.endswith("_" + archs) for i in ids), (runner, ids)
        built += ids
    assert sorted(built) == sorted(expected_identifiers("linux") + expected_identifiers("macos"))


def test_classifiers_and_ci_name_every_python_of_the_wheels():
    """The wheel matrix, the Python classifiers and the CI test matrices list the same
    Pythons (3.9 is cp39 is "3.9")."""
    versions = ["%s.%s" % (py[2], py[3:]) for py in PYTHONS]
    with open(os.path.join(ROOT, "pyproject.toml")) as fh:
        classifiers = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', fh.read())
    assert classifiers == versions
    with open(os.path.join(ROOT, ".github", "workflows", "ci.yml")) as fh:
        matrices = re.findall(r"python-version: \[(.*?)\]", fh.read())
    assert len(matrices) == 2, matrices  # the Linux suite and the macOS smoke subset
    for matrix in matrices:
        assert re.findall(r'"(3\.\d+)"', matrix) == versions, matrix


def test_workflows_validate_against_the_github_schema():
    check = find_tool("check-jsonschema", needs_python=(3, 11))
    workflows = sorted(glob.glob(os.path.join(ROOT, ".github", "workflows", "*.yml")))
    assert {os.path.basename(w) for w in workflows} >= {"ci.yml", "wheels.yml"}
    run([check, "--builtin-schema", "vendor.github-workflows"] + workflows, timeout=120)


# --------------------------------------------------------------------------
# full checks


def make_venv(path):
    run([sys.executable, "-m", "venv", str(path)], timeout=300)
    return os.path.join(str(path), "bin")


@full_only
def test_sdist_installs_in_a_bare_venv(dists, tmp_path):
    bin_dir = make_venv(tmp_path / "venv")
    python = os.path.join(bin_dir, "python")
    # Older venvs come with setuptools: remove it, so only the build requirements count.
    run([python, "-m", "pip", "uninstall", "-y", "-q", "setuptools"], timeout=300)
    probe = subprocess.run([python, "-c", "import setuptools"], stderr=subprocess.DEVNULL)
    assert probe.returncode != 0, "setuptools is still importable in the bare venv"
    probe = subprocess.run([python, "-c", "import Cython"], stderr=subprocess.DEVNULL)
    assert probe.returncode != 0, "Cython is importable in the bare venv"
    run([python, "-m", "pip", "install", "--no-cache-dir", dists[0]])
    out = run([os.path.join(bin_dir, "fastgw"), "--version"], timeout=60, cwd=str(tmp_path))
    assert out.strip() == "fastgw " + package_version()


@pytest.fixture(scope="module")
def repaired_wheel(dists, tmp_path_factory):
    if not sys.platform.startswith("linux"):
        pytest.skip("auditwheel is for Linux wheels")
    auditwheel = find_tool("auditwheel")
    shown = run([auditwheel, "show", dists[1]], timeout=300)
    assert re.search(r'platform tag:\s*"(manylinux_\d+_\d+_\w+)"', shown), shown
    out_dir = str(tmp_path_factory.mktemp("wheelhouse"))
    env = dict(os.environ, PATH=os.path.dirname(auditwheel) + os.pathsep + os.environ["PATH"])
    run([auditwheel, "repair", "-w", out_dir, dists[1]], timeout=300, env=env)
    wheels = glob.glob(os.path.join(out_dir, "*.whl"))
    assert len(wheels) == 1, os.listdir(out_dir)
    return wheels[0]


@full_only
def test_auditwheel_gives_a_manylinux_tag(repaired_wheel):
    name = os.path.basename(repaired_wheel)
    assert re.search(r"-manylinux[_\w.]*\.whl$", name), name
    print("repaired wheel:", name)


@full_only
def test_repaired_wheel_passes_the_cibuildwheel_test_command(repaired_wheel, tmp_path):
    """What cibuildwheel does after building each wheel, here for the local one."""
    try:
        import tomllib
    except ImportError:
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        config = tomllib.load(fh)["tool"]["cibuildwheel"]
    bin_dir = make_venv(tmp_path / "venv")
    python = os.path.join(bin_dir, "python")
    run([python, "-m", "pip", "install", "-q", repaired_wheel] + list(config["test-requires"]))
    work = tmp_path / "test-cwd"
    work.mkdir()
    for source in config["test-sources"]:
        shutil.copytree(os.path.join(ROOT, source), str(work / source),
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"],
               VIRTUAL_ENV=str(tmp_path / "venv"))
    env.pop("PYTHONPATH", None)
    out = run(["sh", "-c", config["test-command"]], timeout=600, cwd=str(work), env=env)
    assert re.search(r"\d+ passed", out), out
    print(out.strip().splitlines()[-1])
