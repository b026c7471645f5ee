/*
 * h2client — a small blocking gRPC client for the end-to-end test programs:
 * one cleartext HTTP/2 connection ("h2c with prior knowledge", nghttp2),
 * unary calls made one after the other on it, each bounded by a deadline.
 *
 * Threading: a struct h2c belongs to the thread that dialed it; different
 * threads may each own their own connection (nghttp2 sessions share
 * nothing).
 *
 * After any call that did not return H2C_OK the connection is broken on
 * purpose (a late answer must never be taken for the next call's), and
 * every later call on it returns H2C_CONN: close it and dial again.
 */
#ifndef CETCD_TESTS_H2CLIENT_H
#define CETCD_TESTS_H2CLIENT_H

#include <stddef.h>
#include <stdint.h>

enum h2c_rc {
    H2C_OK = 0,       /* the stream ended; see grpc_status */
    H2C_CONN = -1,    /* refused, closed, GOAWAY or reset before the end */
    H2C_TIMEOUT = -2, /* the deadline passed first */
};

#define H2C_MSG_BYTES_MAX  (16u << 20) /* response bytes kept, at most */
#define H2C_GRPC_MSG_BYTES 256         /* grpc-message kept, truncated */

struct h2c;

struct h2c_reply {
    int grpc_status; /* -1: the server sent none */
    char grpc_message[H2C_GRPC_MSG_BYTES];
    uint8_t *msg;   /* first gRPC message of the body, no prefix; malloc'd */
    size_t msg_len; /* 0 with msg NULL: no message */
};

/* Connect to HOST:PORT (numeric or resolvable) within timeout_ms. 0 or -1. */
int h2c_dial(struct h2c **out, const char *hostport, int timeout_ms);

/* POST path with the serialized request msg; wait at most timeout_ms. */
int h2c_unary(struct h2c *c, const char *path, const uint8_t *msg, size_t msg_len, int timeout_ms,
              struct h2c_reply *rep);

void h2c_reply_free(struct h2c_reply *rep);

void h2c_close(struct h2c *c);

#endif
