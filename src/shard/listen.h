/*
 * listen.h — client listeners (internal to the shard module).
 */
#ifndef CETCD_SHARD_LISTEN_H
#define CETCD_SHARD_LISTEN_H

#include <stddef.h>

/* Parses "http://host:port" and opens n listening sockets bound to it with
 * SO_REUSEPORT (one per shard; the kernel spreads connections). Returns 0,
 * or -1 with a one-line message in err. */
int listen_url(const char *url, int *fds, unsigned n, char *err, size_t err_len);

/* Splits "scheme://host:port" into host and port. 0 or -1. */
int listen_parse_url(const char *url, char *host, size_t host_len, char *port, size_t port_len);

#endif
