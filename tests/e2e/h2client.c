/*
 * h2client.c — blocking unary gRPC calls over one nghttp2 client session
 * (h2client.h). Every wait is a poll() bounded by the call's deadline.
 *
 * Threading: all state of a struct h2c is touched only by its owner.
 *
 * Invariants:
 *  - At most one stream is open at a time (cur_stream); callbacks ignore
 *    frames of any other stream.
 *  - The response body kept is at most H2C_MSG_BYTES_MAX bytes; a larger
 *    one fails the call.
 *  - broken is sticky: once set, no more bytes are exchanged.
 */
#include "h2client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

struct h2c {
    int fd;
    nghttp2_session *ses;
    char authority[128];
    int broken;

    /* The call in progress. */
    int32_t cur_stream;
    const uint8_t *body;
    size_t body_len;
    size_t body_off;
    uint8_t *resp;
    size_t resp_len;
    size_t resp_cap;
    int resp_overflow;
    int stream_done;
    int grpc_status;
    char grpc_message[H2C_GRPC_MSG_BYTES];
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline_ms)
{
    int64_t left = deadline_ms - now_ms();

    return left > 0 ? (int)left : 0;
}

static int connect_bounded(const char *hostport, int64_t deadline_ms)
{
    char host[128];
    const char *colon = strrchr(hostport, ':');
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res, *ai;
    size_t hl;
    int fd = -1;

    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host)) {
        return -1;
    }
    hl = (size_t)(colon - hostport);
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        struct pollfd pfd;
        int err = 0;
        socklen_t el = sizeof(err);

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        if (errno == EINPROGRESS) {
            pfd.fd = fd;
            pfd.events = POLLOUT;
            if (poll(&pfd, 1, left_ms(deadline_ms)) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) {
                break;
            }
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

static ssize_t on_send(nghttp2_session *ses, const uint8_t *data, size_t len, int flags, void *user)
{
    struct h2c *c = user;
    ssize_t n;

    (void)ses;
    (void)flags;
    n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n >= 0) {
        return n;
    }
    if (errno == EAGAIN || errno == EINTR) {
        return NGHTTP2_ERR_WOULDBLOCK;
    }
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static ssize_t on_body_read(nghttp2_session *ses, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *src, void *user)
{
    struct h2c *c = user;
    size_t n = c->body_len - c->body_off;

    (void)ses;
    (void)stream_id;
    (void)src;
    if (n > length) {
        n = length;
    }
    memcpy(buf, c->body + c->body_off, n);
    c->body_off += n;
    if (c->body_off == c->body_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static int on_header(nghttp2_session *ses, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct h2c *c = user;

    (void)ses;
    (void)flags;
    if (frame->hd.stream_id != c->cur_stream) {
        return 0;
    }
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        char v[16];
        size_t n = valuelen < sizeof(v) - 1 ? valuelen : sizeof(v) - 1;

        memcpy(v, value, n);
        v[n] = '\0';
        c->grpc_status = atoi(v);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        size_t n = valuelen < sizeof(c->grpc_message) - 1 ? valuelen : sizeof(c->grpc_message) - 1;

        memcpy(c->grpc_message, value, n);
        c->grpc_message[n] = '\0';
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ses, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user)
{
    struct h2c *c = user;

    (void)ses;
    (void)flags;
    if (stream_id != c->cur_stream) {
        return 0;
    }
    if (c->resp_len + len > H2C_MSG_BYTES_MAX) {
        c->resp_overflow = 1;
        return 0;
    }
    if (c->resp_len + len > c->resp_cap) {
        size_t cap = c->resp_cap ? c->resp_cap : 4096;
        uint8_t *p;

        while (cap < c->resp_len + len) {
            cap *= 2;
        }
        p = realloc(c->resp, cap);
        if (p == NULL) {
            c->resp_overflow = 1;
            return 0;
        }
        c->resp = p;
        c->resp_cap = cap;
    }
    memcpy(c->resp + c->resp_len, data, len);
    c->resp_len += len;
    return 0;
}

static int on_stream_close(nghttp2_session *ses, int32_t stream_id, uint32_t error_code, void *user)
{
    struct h2c *c = user;

    (void)ses;
    if (stream_id == c->cur_stream) {
        c->stream_done = error_code == 0 ? 1 : -1;
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *ses, const nghttp2_frame *frame, void *user)
{
    struct h2c *c = user;

    (void)ses;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        /* No new streams; the current one may still finish. */
        c->broken = c->cur_stream == 0 || frame->goaway.last_stream_id < c->cur_stream;
    }
    return 0;
}

int h2c_dial(struct h2c **out, const char *hostport, int timeout_ms)
{
    nghttp2_session_callbacks *cbs;
    struct h2c *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL) {
        return -1;
    }
    snprintf(c->authority, sizeof(c->authority), "%s", hostport);
    c->fd = connect_bounded(hostport, now_ms() + timeout_ms);
    if (c->fd < 0) {
        free(c);
        return -1;
    }
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        close(c->fd);
        free(c);
        return -1;
    }
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    if (nghttp2_session_client_new(&c->ses, cbs, c) != 0) {
        nghttp2_session_callbacks_del(cbs);
        close(c->fd);
        free(c);
        return -1;
    }
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(c->ses, NGHTTP2_FLAG_NONE, NULL, 0);
    *out = c;
    return 0;
}

/* Exchange bytes until the current stream closes, the connection fails or
 * the deadline passes. */
static int pump(struct h2c *c, int64_t deadline_ms)
{
    while (c->stream_done == 0) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        uint8_t buf[16384];
        ssize_t r;
        int n;

        if (c->broken || nghttp2_session_send(c->ses) != 0) {
            return H2C_CONN;
        }
        if (nghttp2_session_want_write(c->ses)) {
            pfd.events |= POLLOUT;
        }
        n = poll(&pfd, 1, left_ms(deadline_ms));
        if (n == 0) {
            return H2C_TIMEOUT;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return H2C_CONN;
        }
        if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
        }
        r = recv(c->fd, buf, sizeof(buf), 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (r <= 0 || nghttp2_session_mem_recv(c->ses, buf, (size_t)r) < 0) {
            return H2C_CONN;
        }
    }
    return c->stream_done > 0 ? H2C_OK : H2C_CONN;
}

int h2c_unary(struct h2c *c, const char *path, const uint8_t *msg, size_t msg_len, int timeout_ms,
              struct h2c_reply *rep)
{
    int64_t deadline_ms = now_ms() + timeout_ms;
    nghttp2_data_provider prd = {.read_callback = on_body_read};
    const char *nv[6][2] = {
        {":method", "POST"},
        {":scheme", "http"},
        {":path", path},
        {":authority", c->authority},
        {"content-type", "application/grpc"},
        {"te", "trailers"},
    };
    nghttp2_nv nva[6];
    uint8_t *body;
    size_t i;
    int rc;

    memset(rep, 0, sizeof(*rep));
    rep->grpc_status = -1;
    if (c->broken) {
        return H2C_CONN;
    }
    body = malloc(5 + msg_len);
    if (body == NULL) {
        return H2C_CONN;
    }
    body[0] = 0;
    body[1] = (uint8_t)(msg_len >> 24);
    body[2] = (uint8_t)(msg_len >> 16);
    body[3] = (uint8_t)(msg_len >> 8);
    body[4] = (uint8_t)msg_len;
    if (msg_len > 0) {
        memcpy(body + 5, msg, msg_len);
    }
    for (i = 0; i < 6; i++) {
        nva[i].name = (uint8_t *)nv[i][0];
        nva[i].namelen = strlen(nv[i][0]);
        nva[i].value = (uint8_t *)nv[i][1];
        nva[i].valuelen = strlen(nv[i][1]);
        nva[i].flags = NGHTTP2_NV_FLAG_NONE;
    }
    c->body = body;
    c->body_len = 5 + msg_len;
    c->body_off = 0;
    c->resp_len = 0;
    c->resp_overflow = 0;
    c->stream_done = 0;
    c->grpc_status = -1;
    c->grpc_message[0] = '\0';
    c->cur_stream = nghttp2_submit_request(c->ses, NULL, nva, 6, &prd, c);
    if (c->cur_stream < 0) {
        c->cur_stream = 0;
        c->broken = 1;
        free(body);
        return H2C_CONN;
    }
    rc = pump(c, deadline_ms);
    c->cur_stream = 0;
    c->body = NULL;
    free(body);
    if (rc == H2C_OK && c->resp_overflow) {
        rc = H2C_CONN;
    }
    if (rc != H2C_OK) {
        c->broken = 1;
        return rc;
    }
    rep->grpc_status = c->grpc_status;
    memcpy(rep->grpc_message, c->grpc_message, sizeof(rep->grpc_message));
    if (c->resp_len >= 5) {
        size_t len = (size_t)c->resp[1] << 24 | (size_t)c->resp[2] << 16 | (size_t)c->resp[3] << 8 |
                     c->resp[4];

        if (c->resp[0] != 0 || len > c->resp_len - 5) {
            c->broken = 1;
            return H2C_CONN;
        }
        rep->msg = malloc(len ? len : 1);
        if (rep->msg == NULL) {
            return H2C_CONN;
        }
        memcpy(rep->msg, c->resp + 5, len);
        rep->msg_len = len;
    }
    return H2C_OK;
}

void h2c_reply_free(struct h2c_reply *rep)
{
    free(rep->msg);
    rep->msg = NULL;
    rep->msg_len = 0;
}

void h2c_close(struct h2c *c)
{
    if (c == NULL) {
        return;
    }
    nghttp2_session_del(c->ses);
    close(c->fd);
    free(c->resp);
    free(c);
}
