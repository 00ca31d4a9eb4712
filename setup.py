"""Build the Cython hot path (src/fastgw/*.pyx) with the C helpers from csrc/."""
from setuptools import Extension, setup
from Cython.Build import cythonize

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unused-function"]


def module(name, *c_files):
    """fastgw.NAME from src/fastgw/NAME.pyx (and the C helpers it links)."""
    return Extension(f"fastgw.{name}", [f"src/fastgw/{name}.pyx", *c_files],
                     include_dirs=["csrc"], extra_compile_args=CFLAGS,
                     depends=["csrc/poller.h", "csrc/compat.h", "csrc/httpchars.h"])


extensions = [
    module("_stream"),
    module("_loop"),
    module("_accept"),
    module("_tls"),
    module("_request"),
    module("_lifecycle"),
    module("_bodybuf"),
    module("_limits"),
    module("_responsehead", "csrc/httpdate.c"),
    module("_httphead"),
    module("_httpbody"),
    module("_proxyproto"),
    module("_http"),
    module("_fcgirecord"),
    module("_fcgi"),
    module("_scgi"),
    # The per-request WSGI code is plain Python, compiled too: about a third less time.
    Extension("fastgw.wsgi", ["src/fastgw/wsgi.py"], extra_compile_args=CFLAGS),
]


setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "initializedcheck": False,
            "cdivision": True,
        },
    ),
)
