/*
 * listen.c — turns a client URL into SO_REUSEPORT listening sockets, one
 * per shard, so each shard accepts on its own socket and the kernel spreads
 * new connections across them. Called once at start-up, before the shard
 * threads exist.
 */
#include "listen.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_BACKLOG 4096

int listen_parse_url(const char *url, char *host, size_t host_len, char *port, size_t port_len)
{
    const char *p;
    const char *colon;
    size_t n;

    if (strncmp(url, "http://", 7) != 0)
        return -1;
    p = url + 7;
    if (*p == '[') { /* [v6]:port */
        const char *close = strchr(p, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        n = (size_t)(close - p - 1);
        colon = close + 1;
        p++;
    } else {
        colon = strrchr(p, ':');
        if (colon == NULL)
            return -1;
        n = (size_t)(colon - p);
    }
    if (n == 0 || n >= host_len || strlen(colon + 1) == 0 || strlen(colon + 1) >= port_len)
        return -1;
    memcpy(host, p, n);
    host[n] = '\0';
    snprintf(port, port_len, "%s", colon + 1);
    n = strlen(port);
    if (port[n - 1] == '/')
        port[--n] = '\0';
    if (n == 0 || n > 5 || strspn(port, "0123456789") != n || atoi(port) > 65535)
        return -1;
    return 0;
}

/* SO_REUSEPORT lets every process of the same user join a port's group, so
 * a second server on the same URL would silently take half the
 * connections. A plain bind first proves nobody holds the port. */
static int probe_free(const struct addrinfo *ai, char *err, size_t err_len)
{
    int one = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    int rv = 0;

    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        return -EINVAL;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        rv = -errno;
        snprintf(err, err_len, "%s", strerror(errno));
    }
    close(fd);
    return rv;
}

/* A server that just died may hold its port a little longer: the kernel
 * tears an io_uring down after the process, and accepts it had armed keep
 * the listening socket open until then. Wait for that, bounded. */
static int probe_free_wait(const struct addrinfo *ai, char *err, size_t err_len)
{
    struct timespec pause = {0, 50 * 1000 * 1000};
    int tries;

    for (tries = 0; tries < 60; tries++) {
        int rv = probe_free(ai, err, err_len);
        if (rv == 0)
            return 0;
        if (rv != -EADDRINUSE)
            return -1;
        nanosleep(&pause, NULL);
    }
    return -1;
}

static int open_one(const struct addrinfo *ai, char *err, size_t err_len)
{
    int one = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);

    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        snprintf(err, err_len, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int listen_url(const char *url, int *fds, unsigned n, char *err, size_t err_len)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    char host[256];
    char port[16];
    char why[128];
    unsigned i;
    int rv;

    if (listen_parse_url(url, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, err_len, "invalid listen URL %s (want http://host:port)", url);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rv = getaddrinfo(host, port, &hints, &res);
    if (rv != 0) {
        snprintf(err, err_len, "listen %s: %s", url, gai_strerror(rv));
        return -1;
    }
    if (probe_free_wait(res, why, sizeof(why)) != 0) {
        snprintf(err, err_len, "listen tcp %s:%s: bind: %s", host, port, why);
        freeaddrinfo(res);
        return -1;
    }
    for (i = 0; i < n; i++) {
        fds[i] = open_one(res, why, sizeof(why));
        if (fds[i] < 0) {
            snprintf(err, err_len, "listen tcp %s:%s: bind: %s", host, port, why);
            while (i-- > 0)
                close(fds[i]);
            freeaddrinfo(res);
            return -1;
        }
    }
    freeaddrinfo(res);
    return 0;
}
