/* LD_PRELOAD shim: a connect() to port 5222 (any address) goes to $PORTMAP_HOST:$PORTMAP_PORT instead.
   xmppc (libstrophe) has no port option and always uses SRV or <domain>:5222. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
int connect(int fd, const struct sockaddr *sa, socklen_t len) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real) real = dlsym(RTLD_NEXT, "connect");
    const char *p = getenv("PORTMAP_PORT"), *h = getenv("PORTMAP_HOST");
    if (p && sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)) {
        int port = sa->sa_family == AF_INET ? ntohs(((struct sockaddr_in *)sa)->sin_port)
                                            : ntohs(((struct sockaddr_in6 *)sa)->sin6_port);
        if (port == 5222) {
            if (sa->sa_family == AF_INET6) {
                struct sockaddr_in6 a6; memset(&a6, 0, sizeof a6);
                a6.sin6_family = AF_INET6; a6.sin6_port = htons(atoi(p));
                char m[64]; snprintf(m, sizeof m, "::ffff:%s", h ? h : "127.0.0.1");
                inet_pton(AF_INET6, m, &a6.sin6_addr);
                return real(fd, (struct sockaddr *)&a6, sizeof a6);
            }
            struct sockaddr_in a; memset(&a, 0, sizeof a);
            a.sin_family = AF_INET; a.sin_port = htons(atoi(p));
            inet_pton(AF_INET, h ? h : "127.0.0.1", &a.sin_addr);
            return real(fd, (struct sockaddr *)&a, sizeof a);
        }
    }
    return real(fd, sa, len);
}
