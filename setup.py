"""Build the Cython hot path (src/fastgw/*.pyx) with the C helpers from csrc/."""
from setuptools import Extension, setup
from Cython.Build import cythonize

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unused-function"]

extensions = [
    Extension("fastgw._loop", ["src/fastgw/_loop.pyx"], include_dirs=["csrc"],
              depends=["csrc/poller.h", "csrc/compat.h"], extra_compile_args=CFLAGS),
    Extension("fastgw._bodybuf", ["src/fastgw/_bodybuf.pyx"], include_dirs=["csrc"],
              extra_compile_args=CFLAGS),
    Extension("fastgw._http", ["src/fastgw/_http.pyx", "csrc/httpdate.c"],
              include_dirs=["csrc"], extra_compile_args=CFLAGS),
    Extension("fastgw._fcgirecord", ["src/fastgw/_fcgirecord.pyx"], extra_compile_args=CFLAGS),
    Extension("fastgw._fcgi", ["src/fastgw/_fcgi.pyx"], include_dirs=["csrc"],
              extra_compile_args=CFLAGS),
    Extension("fastgw._scgi", ["src/fastgw/_scgi.pyx"], include_dirs=["csrc"],
              extra_compile_args=CFLAGS),
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
