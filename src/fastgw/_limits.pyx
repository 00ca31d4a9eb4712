# The limits and timeouts of the protocols: what a client may send (the --limit-*
# flags) and how long it may take (--header-timeout, --keepalive), read in C by the
# HTTP, FastCGI, SCGI and uwsgi protocols of every connection of a worker.
#
# Strategy: one immutable object per worker, made from the Config, whose dataclass
# holds every default; nothing here has a default of its own, so the flags, the
# config file and the protocols cannot disagree.


cdef class ProtocolLimits:
    """The protocol side of a Config, with what the worker adds: the trusted PROXY
    protocol senders and the body policy of its routing table."""

    def __init__(self, config, proxy_trusted=None, body_policy=None):
        self.request_line = config.limit_request_line
        self.field_size = config.limit_request_field_size
        self.fields = config.limit_request_fields
        self.head = config.limit_request_head
        self.body = config.limit_request_body
        self.chunk_line = config.limit_chunk_line
        self.trailer = config.limit_trailer_size
        self.header_timeout = config.header_timeout
        self.keepalive_timeout = config.keepalive
        self.proxy_protocol = config.proxy_protocol
        self.proxy_trusted = proxy_trusted
        self.buffer_dir = config.body_buffer_dir
        self.body_policy = body_policy
