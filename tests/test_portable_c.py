"""The loop's macOS code (the kqueue poller, accept and sendfile without the Linux
calls) cannot be built on this Linux machine, so it is compile-checked here against
shim headers declaring the macOS APIs with their real signatures (tests/cshim):
a typo, a wrong type or a missing include in those branches fails this test."""
import os
import shutil
import subprocess

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(TESTS), "csrc")
SHIM = os.path.join(TESTS, "cshim")

PROGRAM = r'''
#include <stdint.h>
#include "poller.h"
#include "compat.h"
#include <string.h>

int main(void)
{
    fgw_event ev[4];
    off_t offset = 0;
    int p = fgw_poller_create();
    int n = fgw_poller_add(p, 0, (void *)ev, 1) + fgw_poller_add(p, 1, (void *)ev, 0);
    n += fgw_poller_del(p, 1);
    n += fgw_poller_wait(p, ev, 4, 10);
    n += fgw_accept(0, NULL, NULL);
    n += (int)fgw_sendfile(1, 0, &offset, 10);
    return n + (strcmp(FGW_POLLER_NAME, "kqueue") != 0);
}
'''


def test_kqueue_and_macos_branches_compile(tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        if os.environ.get("CI") == "true":
            pytest.fail("a C compiler is needed (it builds fastgw too)")
        pytest.skip("no C compiler")
    source = tmp_path / "portable.c"
    source.write_text(PROGRAM)
    cmd = [compiler, "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-U__linux__", "-D__APPLE__",
           "-include", os.path.join(SHIM, "macos_sendfile.h"), "-I" + SHIM, "-I" + CSRC,
           str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
