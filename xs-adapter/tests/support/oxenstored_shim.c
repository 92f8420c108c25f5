/* LD_PRELOAD companion of shim.c for oxenstored (Debian's xen-utils-4.17) in user space.
 *
 * oxenstored has its socket and database under the compiled-in /var/run/xenstored and raises
 * its file limit with setrlimit, which an unprivileged container refuses. This shim moves
 * every path under /var/run/xenstored to $XLSYNC_OX_RUNDIR (so each test has its own
 * daemon) and lets setrlimit succeed without changing anything. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static const char PREFIX[] = "/var/run/xenstored";

/* The redirected path in buf, or the original when it is not under PREFIX. */
static const char *redirect(const char *path, char *buf, size_t len)
{
    const char *dir = getenv("XLSYNC_OX_RUNDIR");
    size_t n = sizeof(PREFIX) - 1;
    if (!dir || !path || strncmp(path, PREFIX, n) != 0 || (path[n] != '\0' && path[n] != '/'))
        return path;
    snprintf(buf, len, "%s%s", dir, path + n);
    return buf;
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = dlsym(RTLD_NEXT, #name)

int setrlimit(__rlimit_resource_t resource, const struct rlimit *rlim)
{
    (void)resource; (void)rlim;
    return 0;
}

int unlink(const char *path)
{
    char buf[4096];
    REAL(unlink);
    return real(redirect(path, buf, sizeof buf));
}

int mkdir(const char *path, mode_t mode)
{
    char buf[4096];
    REAL(mkdir);
    return real(redirect(path, buf, sizeof buf), mode);
}

int rename(const char *from, const char *to)
{
    char a[4096], b[4096];
    REAL(rename);
    return real(redirect(from, a, sizeof a), redirect(to, b, sizeof b));
}

int openat(int dirfd, const char *path, int flags, ...)
{
    char buf[4096];
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    REAL(openat);
    return real(dirfd, redirect(path, buf, sizeof buf), flags, mode);
}

int open(const char *path, int flags, ...)
{
    char buf[4096];
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    REAL(open);
    return real(redirect(path, buf, sizeof buf), flags, mode);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    REAL(bind);
    if (addr && addr->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
        char buf[4096];
        const char *to = redirect(un->sun_path, buf, sizeof buf);
        if (to != un->sun_path) {
            struct sockaddr_un moved = { .sun_family = AF_UNIX };
            if (strlen(to) >= sizeof moved.sun_path)
                return -1;
            strcpy(moved.sun_path, to);
            return real(fd, (const struct sockaddr *)&moved, sizeof moved);
        }
    }
    return real(fd, addr, len);
}
