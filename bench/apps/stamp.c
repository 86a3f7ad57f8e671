/* The lightest worker there is, for timing the supervisor rather than the worker.
 *
 * At the first instruction of main it writes "<pid> <CLOCK_MONOTONIC ns>\n" to stdout
 * (one write, below PIPE_BUF: whole even with a thousand writers), then says READY=1 on
 * $NOTIFY_SOCKET (a path, or "@name" for an abstract socket) and waits for a signal.
 * Built static (bench/respawn does it: `cc -O2 -static`), so exec to main is a few
 * microseconds, not a dynamic loader's fraction of a millisecond. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char line[64];
    int len = snprintf(line, sizeof line, "%d %lld\n", (int)getpid(),
                       (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    if (write(1, line, (size_t)len) != len) return 1;

    const char *path = getenv("NOTIFY_SOCKET");
    if (path && *path) {
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        size_t n = strlen(path);
        if (n < sizeof addr.sun_path) {
            memcpy(addr.sun_path, path, n);
            if (path[0] == '@') addr.sun_path[0] = 0;
            socklen_t size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                                         (path[0] == '@' ? 0 : 1));
            int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (fd >= 0) {
                sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&addr, size);
                close(fd);
            }
        }
    }
    for (;;) pause();
}
