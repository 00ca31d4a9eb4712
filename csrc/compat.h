/* The few socket calls that differ between Linux and macOS/BSD. */
#ifndef FASTGW_COMPAT_H
#define FASTGW_COMPAT_H

#include <errno.h>
#include <fcntl.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: Python ignores SIGPIPE, EPIPE is reported instead */
#endif
#ifndef MSG_MORE
#define MSG_MORE 0 /* Linux only: coalesce a response head with the file that follows */
#endif

#if defined(__linux__)
#include <sys/sendfile.h>

static inline int fgw_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static inline ssize_t fgw_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    return sendfile(out_fd, in_fd, offset, count);
}

#else

static inline int fgw_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    int c = accept(fd, addr, len);
    if (c >= 0) {
        fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
        fcntl(c, F_SETFD, FD_CLOEXEC);
#ifdef SO_NOSIGPIPE
        {
            int one = 1;
            setsockopt(c, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
        }
#endif
    }
    return c;
}

static inline ssize_t fgw_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    /* macOS: sendfile(file, socket, offset, &len, hdtr, flags); len in and out. */
    off_t len = (off_t)count;
    int rc = sendfile(in_fd, out_fd, *offset, &len, NULL, 0);
    if (len > 0) {
        *offset += len;
        return (ssize_t)len;
    }
    return rc < 0 ? -1 : 0;
}
#endif

#endif
