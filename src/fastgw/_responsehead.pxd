# Response head encoding, shared by the HTTP, FastCGI, SCGI and uwsgi protocols.

cdef extern from "httpdate.h":
    const char *fastgw_http_date()
    int FASTGW_HTTP_DATE_LEN


cdef bytes build_head(bytes prefix, str status, list headers, Py_ssize_t length,
                      bint server_and_date, bint chunked, bytes connection)
