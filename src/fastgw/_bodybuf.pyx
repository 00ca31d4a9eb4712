# cython: language_level=3
"""A request body gathered by the loop before the application is called (issue 16).

Strategy: while a body arrives, the loop appends what each recv() brought to a
SpooledBody; the application is called once it is whole, and reads it back through
the BodyReader interface (wsgi.input). A body stays in memory, as the bytes objects
it arrived in (read() of a whole chunk returns it without a copy), while it is at
most MEMORY_PER_BODY and the worker's gathered bodies together stay under
MEMORY_BUDGET; past either it moves to an unlinked temporary file (spool.py) in
the --body-buffer-dir and is read back from there in READ_CHUNK pieces. Memory
per worker is so bounded whatever the clients do, disk per request by
--limit-request-body, and an ordinary upload (1 MiB) costs no disk I/O. The
descriptor is closed, and the disk space freed, when the last reference to the
body goes (the request is over, or the client timed out before it was whole).

`buffered()` gives the bytes held now, in memory and on disk, for the metrics.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport errno, EINTR
from posix.unistd cimport pread

from fastgw._stream cimport OwnedFd, write_all
from fastgw._request cimport BodyReader

from fastgw.spool import open_unlinked

cdef enum:
    MEMORY_PER_BODY = 1 << 20
    READ_CHUNK = 1 << 16

cdef Py_ssize_t MEMORY_BUDGET = 64 << 20

# what the gathered bodies of this worker hold now (the GIL guards them)
cdef Py_ssize_t memory_bytes = 0
cdef long long disk_bytes = 0


def buffered():
    """(bytes of request bodies held in memory, bytes held in temporary files)."""
    return memory_bytes, disk_bytes


cdef class SpooledBody(BodyReader):
    """wsgi.input over a body gathered whole: in memory chunks or in a temporary file."""

    def __cinit__(self, str directory=None):
        self.directory = directory
        self.chunks = []

    def __dealloc__(self):
        global memory_bytes, disk_bytes
        memory_bytes -= self.in_memory
        if self.file is not None:
            disk_bytes -= self.size

    cdef int append(self, const char *data, Py_ssize_t n) except -1:
        """Add `n` bytes that arrived (on the loop thread)."""
        global memory_bytes, disk_bytes
        if n <= 0:
            return 0
        if self.file is None and (self.in_memory + n > MEMORY_PER_BODY
                                  or memory_bytes + n > MEMORY_BUDGET):
            self.spill()
        if self.file is None:
            self.chunks.append(PyBytes_FromStringAndSize(data, n))
            self.in_memory += n
            memory_bytes += n
            self.size += n
            return 0
        write_all(self.file.fd, data, n, self.size, self.what())
        self.size += n
        disk_bytes += n
        return 0

    cdef int spill(self) except -1:
        """Move what is in memory to a new temporary file; later bytes go there too."""
        global memory_bytes, disk_bytes
        cdef bytes chunk
        cdef long long pos = 0
        cdef Py_ssize_t n
        fd = open_unlinked(self.directory)
        self.file = OwnedFd.__new__(OwnedFd)
        self.file.fd = fd
        for chunk in self.chunks:
            n = PyBytes_GET_SIZE(chunk)
            write_all(fd, PyBytes_AS_STRING(chunk), n, pos, self.what())
            pos += n
        self.chunks = []
        memory_bytes -= self.in_memory
        disk_bytes += self.in_memory
        self.in_memory = 0
        return 0

    cdef str what(self):
        import tempfile
        return f"buffer a request body in {self.directory or tempfile.gettempdir()}"

    cdef void complete(self):
        """The body is whole: reading starts at its first byte."""
        self.remaining = self.size
        self.done = self.size == 0

    cdef Py_ssize_t available(self) except -1:
        cdef Py_ssize_t have
        cdef ssize_t r
        cdef long long want
        self.started = True
        if self.current is not None:
            have = PyBytes_GET_SIZE(self.current) - self.offset
            if have > 0:
                return have
            self.current = None
        if self.remaining == 0:
            self.done = True
            return 0
        self.offset = 0
        if self.file is None:
            self.current = self.chunks[self.index]
            self.chunks[self.index] = None  # handed to the reader: freed once it is done
            self.index += 1
        else:
            want = self.remaining if self.remaining < READ_CHUNK else READ_CHUNK
            self.current = PyBytes_FromStringAndSize(NULL, want)
            while True:
                r = pread(self.file.fd, PyBytes_AS_STRING(self.current), want, self.read_pos)
                if r >= 0 or errno != EINTR:
                    break
            if r <= 0:
                raise OSError(errno, "cannot read back a buffered request body")
            if r < want:
                self.current = self.current[:r]
            self.read_pos += r
        return PyBytes_GET_SIZE(self.current)

    cdef bytes take(self, Py_ssize_t n):
        cdef bytes data
        if self.offset == 0 and n == PyBytes_GET_SIZE(self.current):
            data = self.current
            self.current = None
        else:
            data = self.current[self.offset:self.offset + n]
            self.offset += n
        self.remaining -= n
        return data

    cdef const char *peek(self):
        return PyBytes_AS_STRING(self.current) + self.offset
