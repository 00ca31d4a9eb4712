# C declarations of the system calls and the csrc/ helpers the event loop uses
# (sockets, the poller, sendfile, poll(2), pwrite), kept apart from the loop's code so
# the loop reads as the strategy it implements. Declarations (and one inline clock):
# no module is built.
from libc.stdint cimport uint32_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.types cimport off_t

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        unsigned short sa_family
    struct sockaddr_storage:
        unsigned short ss_family
    struct iovec:
        void *iov_base
        size_t iov_len
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct linger:
        int l_onoff
        int l_linger
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t sendmsg(int fd, const msghdr *msg, int flags)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    int shutdown(int fd, int how)
    int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
    enum:
        SHUT_WR
        MSG_PEEK
        MSG_DONTWAIT
        AF_INET
        AF_INET6
        AF_UNIX
        IPPROTO_TCP
        SOL_SOCKET
        SO_LINGER

cdef extern from "poller.h" nogil:
    ctypedef struct fgw_event:
        uint32_t events
        void *ptr
    const char *FGW_POLLER_NAME
    int fgw_poller_create()
    int fgw_poller_add(int pfd, int fd, void *ptr, int listener)
    int fgw_poller_del(int pfd, int fd)
    int fgw_poller_wait(int pfd, fgw_event *out, int max, int timeout_ms)
    enum:
        FGW_IN
        FGW_OUT
        FGW_ERR
        FGW_HUP
        FGW_RDHUP

cdef extern from "compat.h" nogil:
    int fgw_accept(int fd, sockaddr *addr, socklen_t *len)
    ssize_t fgw_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
    enum:
        MSG_NOSIGNAL
        MSG_MORE

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        unsigned short sin6_family
        unsigned short sin6_port
        in6_addr sin6_addr
    unsigned short ntohs(unsigned short)

cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum:
        POLLIN
        POLLOUT
        POLLERR
        POLLHUP

cdef extern from "<pthread.h>" nogil:
    unsigned long pthread_self()

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void *buf, size_t n)
    ssize_t write(int fd, const void *buf, size_t n)
    ssize_t pwrite(int fd, const void *buf, size_t n, off_t offset)

cdef extern from "<fcntl.h>" nogil:
    int fcntl(int fd, int cmd, int arg)
    enum:
        F_DUPFD_CLOEXEC


cdef inline double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9
