# The PROXY protocol header parser (see _proxyproto.pyx).

cdef tuple proxy_header(const unsigned char *p, Py_ssize_t n)
