/* The readiness poller behind fastgw's loop, one small API over epoll (Linux) and
 * kqueue (macOS, BSD). Connections are registered once, edge-triggered for reading
 * and writing; listeners level-triggered (and EPOLLEXCLUSIVE where it exists, so one
 * worker wakes per new connection). The loop's poll(2) fallback lives in _loop.pyx. */
#ifndef FASTGW_POLLER_H
#define FASTGW_POLLER_H

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#define FGW_IN    0x001
#define FGW_OUT   0x004
#define FGW_ERR   0x008
#define FGW_HUP   0x010
#define FGW_RDHUP 0x2000

typedef struct {
    uint32_t events;
    void *ptr;
} fgw_event;

#if defined(__linux__)
#include <sys/epoll.h>
#define FGW_POLLER_NAME "epoll"
#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE 0
#endif

static inline int fgw_poller_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

static inline int fgw_poller_add(int pfd, int fd, void *ptr, int listener)
{
    struct epoll_event ev;
    ev.events = listener ? (EPOLLIN | EPOLLEXCLUSIVE)
                         : (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    ev.data.ptr = ptr;
    return epoll_ctl(pfd, EPOLL_CTL_ADD, fd, &ev);
}

static inline int fgw_poller_del(int pfd, int fd)
{
    struct epoll_event ev;
    return epoll_ctl(pfd, EPOLL_CTL_DEL, fd, &ev);
}

static inline int fgw_poller_wait(int pfd, fgw_event *out, int max, int timeout_ms)
{
    struct epoll_event evs[256];
    int i, n;
    if (max > 256)
        max = 256;
    n = epoll_wait(pfd, evs, max, timeout_ms);
    for (i = 0; i < n; i++) {
        /* The FGW_* bits are epoll's own values. */
        out[i].events = evs[i].events;
        out[i].ptr = evs[i].data.ptr;
    }
    return n;
}

#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <fcntl.h>
#define FGW_POLLER_NAME "kqueue"

static inline int fgw_poller_create(void)
{
    int fd = kqueue();
    if (fd >= 0)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

static inline int fgw_poller_add(int pfd, int fd, void *ptr, int listener)
{
    struct kevent ch[2];
    if (listener) {
        EV_SET(&ch[0], fd, EVFILT_READ, EV_ADD, 0, 0, ptr);
        return kevent(pfd, ch, 1, NULL, 0, NULL);
    }
    EV_SET(&ch[0], fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, ptr);
    EV_SET(&ch[1], fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, ptr);
    return kevent(pfd, ch, 2, NULL, 0, NULL);
}

static inline int fgw_poller_del(int pfd, int fd)
{
    struct kevent ch[2];
    EV_SET(&ch[0], fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    EV_SET(&ch[1], fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    kevent(pfd, ch, 2, NULL, 0, NULL);
    return 0;
}

static inline int fgw_poller_wait(int pfd, fgw_event *out, int max, int timeout_ms)
{
    struct kevent evs[256];
    struct timespec ts;
    int i, n;
    if (max > 256)
        max = 256;
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
    n = kevent(pfd, NULL, 0, evs, max, timeout_ms < 0 ? NULL : &ts);
    for (i = 0; i < n; i++) {
        uint32_t e = 0;
        if (evs[i].flags & EV_ERROR)
            e |= FGW_ERR;
        else if (evs[i].filter == EVFILT_READ)
            e |= FGW_IN | ((evs[i].flags & EV_EOF) ? FGW_RDHUP : 0);
        else if (evs[i].filter == EVFILT_WRITE)
            e |= FGW_OUT | ((evs[i].flags & EV_EOF) ? FGW_HUP : 0);
        out[i].events = e;
        out[i].ptr = evs[i].udata;
    }
    return n;
}

#else
#error "fastgw needs epoll (Linux) or kqueue (macOS, BSD)"
#endif

#endif
