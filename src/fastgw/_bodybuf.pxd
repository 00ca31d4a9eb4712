from fastgw._stream cimport OwnedFd
from fastgw._request cimport BodyReader


cdef class SpooledBody(BodyReader):
    cdef str directory
    cdef list chunks
    cdef Py_ssize_t index
    cdef Py_ssize_t offset
    cdef OwnedFd file
    cdef long long size
    cdef long long read_pos
    cdef bytes current
    cdef Py_ssize_t in_memory
    cdef int append(self, const char *data, Py_ssize_t n) except -1
    cdef void complete(self)
    cdef int spill(self) except -1
    cdef str what(self)
