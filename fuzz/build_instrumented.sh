#!/usr/bin/env bash
# Build fastgw's Cython extensions with clang, libFuzzer coverage instrumentation
# (-fsanitize=fuzzer-no-link) and AddressSanitizer into a directory of their own, so the
# atheris engine of fuzz_http.py gets coverage feedback from the C the parser compiles to
# and a report for any out-of-bounds read or write.  The source tree is not touched.
#
#   fuzz/build_instrumented.sh [OUT_DIR]      (default: ${TMPDIR:-/tmp}/fastgw-fuzz-build)
#
# Needs clang (apt-get install clang), Cython and setuptools in the python used
# (PYTHON=..., default python3), and atheris for running. Prints the environment to run with.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${1:-${TMPDIR:-/tmp}/fastgw-fuzz-build}
python=${PYTHON:-python3}
command -v clang >/dev/null || { echo "build_instrumented.sh: clang not found (apt-get install clang)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
cp -r "$root/setup.py" "$root/pyproject.toml" "$root/README.md" "$root/src" "$root/csrc" "$out/"
find "$out/src" \( -name '*.so' -o -name '*.c' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cd "$out"
flags="-fsanitize=address,fuzzer-no-link -g -O1 -fno-omit-frame-pointer"
CC=clang LDSHARED="clang -shared" CFLAGS="$flags" LDFLAGS="$flags" \
    "$python" setup.py -q build_ext --inplace --force
preload=$("$python" -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))' 2>/dev/null || echo "<atheris not installed>")
cat <<MSG
built: $(ls "$out"/src/fastgw/*.so | tr '\n' ' ')
run the fuzzer on it with:
  PYTHONPATH=$out/src LD_PRELOAD=$preload \\
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 PYTHONMALLOC=malloc \\
  $python $here/fuzz_http.py --engine atheris CORPUS_DIR [libFuzzer flags]
  (or fuzz_cgivars.py, the FastCGI/SCGI/uwsgi header parsers, the same way)
MSG
