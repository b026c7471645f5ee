/*
 * grpcraw: a tiny raw gRPC client for the bad-input end-to-end tests.
 *
 * It speaks just enough HTTP/2 (nghttp2, client side, cleartext "h2c with
 * prior knowledge") over one TCP socket to make a single unary call, and it
 * can also misbehave on purpose: bytes that are not HTTP/2 at all, a broken
 * connection preface, a client that vanishes in the middle of a request.
 * Everything is single-threaded; every network wait is a poll() bounded by
 * the --timeout deadline, so the program can never hang a test.
 *
 * Usage: grpcraw MODE HOST:PORT [ARGS] [OPTIONS]
 *
 * Unary-call modes (print the response, then one status line):
 *   call  HOST:PORT PATH [HEX]      POST PATH with the request body given as
 *                                   hex bytes (whitespace ignored; empty or
 *                                   omitted = an empty message)
 *   put   HOST:PORT KEY [VALUE]     /etcdserverpb.KV/Put {key, value}
 *   range HOST:PORT KEY             /etcdserverpb.KV/Range {key}
 *
 * Misbehaving modes (no gRPC call; one result line):
 *   garbage    HOST:PORT            send bytes that are neither HTTP/2 nor
 *                                   HTTP/1.x, then wait for the server to
 *                                   close the connection
 *   badpreface HOST:PORT [KIND]     KIND "magic" (default): a connection
 *                                   preface with a corrupted magic string;
 *                                   KIND "settings": the right magic, then a
 *                                   SETTINGS frame of an illegal length
 *                                   (5 bytes); then wait for the close
 *   vanish     HOST:PORT [KEY]      preface, SETTINGS, the HEADERS of a Put,
 *                                   one DATA frame carrying only half of the
 *                                   gRPC message, and the first bytes of a
 *                                   second DATA frame; then close the socket
 *
 * Options:
 *   --timeout S        bound on the whole exchange, seconds (default 5)
 *   --value-size N     put: the value is N bytes of 'x' (replaces VALUE)
 *   --rev N            range: RangeRequest.revision
 *   --end KEY          range: RangeRequest.range_end
 *   --path P           put/range: send to P instead of the KV method
 *   --flag B           gRPC prefix byte 0, the compressed flag (default 0)
 *   --len N            gRPC prefix bytes 1-4, the declared message length
 *                      (default: the real length)
 *   --no-prefix        send the message bytes without the 5-byte prefix
 *   --trail-hex HEX    extra bytes sent after the message, in the same body
 *   --split N          send the body in DATA frames of at most N bytes
 *   --header K:V       an extra request header (repeatable)
 *   --rst              vanish: close with SO_LINGER 0 (TCP RST), not FIN
 *   -v                 trace frames to stderr
 *
 * Output of the call modes: zero or more "resp ..." lines with a compact
 * decoding of the response messages (KV Put and Range are decoded, others
 * are shown as their length), then exactly one line
 *
 *   grpc-status=<code> grpc-message=<msg>
 *
 * with <msg> percent-decoded as gRPC specifies. Abnormal ends append fields:
 * " http-status=N" (when not 200), " rst=N" (RST_STREAM error code),
 * " goaway=N", " conn=closed", " timeout"; <code> is "none" when the server
 * sent no grpc-status. Misbehaving modes print "closed=yes ..." or
 * "closed=no ..." (garbage, badpreface) or "sent=N" (vanish).
 *
 * Exit status:
 *   0  call: the stream ended at the HTTP/2 level with END_STREAM;
 *      garbage/badpreface: the server closed the connection in time;
 *      vanish: all the bytes were written and the socket closed
 *   1  usage or local error
 *   2  call: the server reset the stream without sending a grpc-status
 *   3  connection refused, closed or GOAWAY before the call ended
 *   4  timeout (call not finished, or garbage/badpreface: still open)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "rpc.pb-c.h"

enum {
    EXIT_OK = 0,
    EXIT_USAGE = 1,
    EXIT_RESET = 2,
    EXIT_CONN = 3,
    EXIT_TIMEOUT = 4,
};

#define HEADERS_MAX     16
#define RESP_BYTES_MAX  (64u << 20) /* response body kept in memory, at most */
#define VALUE_BYTES_MAX (256u << 20)

struct opts {
    double timeout_s;
    long long value_size; /* -1: use the VALUE argument */
    long long rev;
    const char *end;
    const char *path;
    int flag;      /* gRPC compressed-flag byte */
    long long len; /* declared length; -1: real */
    int no_prefix;
    const char *trail_hex;
    size_t split; /* 0: as large as the peer allows */
    const char *headers[HEADERS_MAX];
    int n_headers;
    int rst;
    int verbose;
};

static struct opts g_opt = {
    .timeout_s = 5.0,
    .value_size = -1,
    .flag = 0,
    .len = -1,
};

static int64_t g_deadline_ms;

/* ------------------------------------------------------------ helpers --- */

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("grpcraw: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(EXIT_USAGE);
}

static void trace(const char *fmt, ...)
{
    va_list ap;

    if (!g_opt.verbose) {
        return;
    }
    va_start(ap, fmt);
    fputs("grpcraw: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before the deadline, at least 0. */
static int remaining_ms(void)
{
    int64_t left = g_deadline_ms - now_ms();

    return left > 0 ? (int)left : 0;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL) {
        die("out of memory (%zu bytes)", n);
    }
    return p;
}

static long long parse_ll(const char *s, const char *what)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0') {
        die("bad %s: '%s'", what, s);
    }
    return v;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Hex string (whitespace ignored) to bytes; *out is malloc'd. */
static size_t parse_hex(const char *s, uint8_t **out)
{
    size_t n = 0, cap = strlen(s) / 2 + 1;
    uint8_t *buf = xmalloc(cap);
    int hi = -1;

    for (; *s != '\0'; s++) {
        int v;

        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == ':') {
            continue;
        }
        v = hexval((unsigned char)*s);
        if (v < 0) {
            die("bad hex digit '%c'", *s);
        }
        if (hi < 0) {
            hi = v;
        } else {
            buf[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    if (hi >= 0) {
        die("odd number of hex digits");
    }
    *out = buf;
    return n;
}

/* Split "host:port" (the host may be [v6]) and connect, bounded. */
static int dial(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res, *ai;
    size_t hl;
    int fd = -1, rv;

    if (colon == NULL || colon == hostport) {
        die("want HOST:PORT, got '%s'", hostport);
    }
    hl = (size_t)(colon - hostport);
    if (hostport[0] == '[' && hl >= 2 && hostport[hl - 1] == ']') {
        hostport++;
        hl -= 2;
    }
    if (hl >= sizeof(host)) {
        die("host name too long");
    }
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    rv = getaddrinfo(host, colon + 1, &hints, &res);
    if (rv != 0) {
        die("resolve %s: %s", host, gai_strerror(rv));
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
            if (poll(&pfd, 1, remaining_ms()) == 1 &&
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

/* Write all of buf before the deadline. 0, or -1 with errno (ETIMEDOUT). */
static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};

            if (poll(&pfd, 1, remaining_ms()) == 0) {
                errno = ETIMEDOUT;
                return -1;
            }
            continue;
        }
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------- gRPC call state --- */

struct call {
    int fd;
    nghttp2_session *ses;
    int32_t stream_id;
    const char *path;

    /* Request body: everything after HEADERS, sent as DATA. */
    uint8_t *body;
    size_t body_len;
    size_t body_off;

    /* What came back. */
    int http_status;
    char *grpc_status;
    char *grpc_message;
    uint8_t *resp;
    size_t resp_len;
    size_t resp_cap;

    int stream_done; /* on_stream_close fired */
    uint32_t rst_code;
    int got_end; /* the server's END_STREAM arrived */
    int goaway;
    uint32_t goaway_code;
    int eof; /* the server closed the TCP connection */
};

static ssize_t on_send(nghttp2_session *ses, const uint8_t *data, size_t len, int flags, void *user)
{
    struct call *c = user;
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
    trace("send: %s", strerror(errno));
    c->eof = 1;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static ssize_t on_body_read(nghttp2_session *ses, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *src, void *user)
{
    struct call *c = user;
    size_t n = c->body_len - c->body_off;

    (void)ses;
    (void)stream_id;
    (void)src;
    if (n > length) {
        n = length;
    }
    if (g_opt.split > 0 && n > g_opt.split) {
        n = g_opt.split;
    }
    memcpy(buf, c->body + c->body_off, n);
    c->body_off += n;
    if (c->body_off == c->body_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static char *dup_n(const uint8_t *s, size_t n)
{
    char *p = xmalloc(n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int on_header(nghttp2_session *ses, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct call *c = user;

    (void)ses;
    (void)flags;
    if (frame->hd.stream_id != c->stream_id) {
        return 0;
    }
    trace("header %.*s: %.*s", (int)namelen, name, (int)valuelen, value);
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        char *v = dup_n(value, valuelen);

        c->http_status = atoi(v);
        free(v);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        free(c->grpc_status);
        c->grpc_status = dup_n(value, valuelen);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        free(c->grpc_message);
        c->grpc_message = dup_n(value, valuelen);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ses, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user)
{
    struct call *c = user;

    (void)ses;
    (void)flags;
    if (stream_id != c->stream_id) {
        return 0;
    }
    if (c->resp_len + len > RESP_BYTES_MAX) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (c->resp_len + len > c->resp_cap) {
        size_t cap = c->resp_cap ? c->resp_cap : 4096;
        uint8_t *p;

        while (cap < c->resp_len + len) {
            cap *= 2;
        }
        p = realloc(c->resp, cap);
        if (p == NULL) {
            die("out of memory");
        }
        c->resp = p;
        c->resp_cap = cap;
    }
    memcpy(c->resp + c->resp_len, data, len);
    c->resp_len += len;
    return 0;
}

static int on_frame_recv(nghttp2_session *ses, const nghttp2_frame *frame, void *user)
{
    struct call *c = user;

    (void)ses;
    trace("recv frame type=%u flags=0x%x stream=%d len=%zu", frame->hd.type, frame->hd.flags,
          frame->hd.stream_id, frame->hd.length);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1;
        c->goaway_code = frame->goaway.error_code;
    }
    if (frame->hd.stream_id == c->stream_id && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)) {
        c->got_end = 1;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ses, int32_t stream_id, uint32_t error_code, void *user)
{
    struct call *c = user;

    (void)ses;
    if (stream_id == c->stream_id) {
        c->stream_done = 1;
        c->rst_code = error_code;
        trace("stream %d closed, error_code=%u", stream_id, error_code);
    }
    return 0;
}

/* Percent-decode a grpc-message value in place. */
static void pct_decode(char *s)
{
    char *w = s;

    for (; *s != '\0'; s++) {
        if (s[0] == '%' && hexval((unsigned char)s[1]) >= 0 && hexval((unsigned char)s[2]) >= 0) {
            *w++ = (char)(hexval((unsigned char)s[1]) << 4 | hexval((unsigned char)s[2]));
            s += 2;
        } else {
            *w++ = *s;
        }
    }
    *w = '\0';
}

/* Print bytes as text, escaping what is not printable. */
static void put_bytes(const uint8_t *p, size_t n)
{
    size_t i, shown = n > 64 ? 64 : n;

    for (i = 0; i < shown; i++) {
        if (p[i] >= 0x21 && p[i] < 0x7f && p[i] != '\\') {
            putchar(p[i]);
        } else {
            printf("\\x%02x", p[i]);
        }
    }
    if (shown < n) {
        printf("...(%zu bytes)", n);
    }
}

static void print_header(const Etcdserverpb__ResponseHeader *h)
{
    if (h != NULL) {
        printf(" rev=%lld", (long long)h->revision);
    }
}

/* Decode the gRPC messages of the response body; one "resp" line each. */
static void print_messages(const struct call *c)
{
    size_t off = 0;

    while (off + 5 <= c->resp_len) {
        const uint8_t *p = c->resp + off;
        size_t len = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];

        if (off + 5 + len > c->resp_len) {
            printf("resp truncated-message declared=%zu have=%zu\n", len, c->resp_len - off - 5);
            return;
        }
        p += 5;
        if (strcmp(c->path, "/etcdserverpb.KV/Put") == 0) {
            Etcdserverpb__PutResponse *r = etcdserverpb__put_response__unpack(NULL, len, p);

            if (r != NULL) {
                printf("resp put");
                print_header(r->header);
                putchar('\n');
                etcdserverpb__put_response__free_unpacked(r, NULL);
                goto next;
            }
        } else if (strcmp(c->path, "/etcdserverpb.KV/Range") == 0) {
            Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(NULL, len, p);

            if (r != NULL) {
                size_t i;

                printf("resp range");
                print_header(r->header);
                printf(" count=%lld more=%d", (long long)r->count, (int)r->more);
                for (i = 0; i < r->n_kvs; i++) {
                    printf(" ");
                    put_bytes(r->kvs[i]->key.data, r->kvs[i]->key.len);
                    printf("=");
                    put_bytes(r->kvs[i]->value.data, r->kvs[i]->value.len);
                }
                putchar('\n');
                etcdserverpb__range_response__free_unpacked(r, NULL);
                goto next;
            }
        }
        printf("resp message len=%zu\n", len);
    next:
        off += 5 + len;
    }
    if (off < c->resp_len) {
        printf("resp trailing-bytes=%zu\n", c->resp_len - off);
    }
}

/*
 * Make the call; body is the whole DATA payload (prefix included). Returns
 * the exit status.
 */
static int do_call(const char *hostport, const char *path, uint8_t *body, size_t body_len)
{
    struct call c = {.fd = -1, .path = path, .body = body, .body_len = body_len};
    nghttp2_session_callbacks *cbs;
    nghttp2_nv nva[5 + HEADERS_MAX];
    nghttp2_data_provider prd = {.read_callback = on_body_read};
    size_t nnv = 0;
    int timed_out = 0, rc, i;
    char *hk[HEADERS_MAX] = {0};

#define NV(n, v)                                                                                   \
    do {                                                                                           \
        nva[nnv].name = (uint8_t *)(n);                                                            \
        nva[nnv].namelen = strlen(n);                                                              \
        nva[nnv].value = (uint8_t *)(v);                                                           \
        nva[nnv].valuelen = strlen(v);                                                             \
        nva[nnv].flags = NGHTTP2_NV_FLAG_NONE;                                                     \
        nnv++;                                                                                     \
    } while (0)

    c.fd = dial(hostport);
    if (c.fd < 0) {
        printf("grpc-status=none grpc-message= conn=refused\n");
        return EXIT_CONN;
    }
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    if (nghttp2_session_client_new(&c.ses, cbs, &c) != 0) {
        die("nghttp2_session_client_new failed");
    }
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(c.ses, NGHTTP2_FLAG_NONE, NULL, 0);

    NV(":method", "POST");
    NV(":scheme", "http");
    NV(":path", path);
    NV(":authority", hostport);
    NV("content-type", "application/grpc");
    NV("te", "trailers");
    for (i = 0; i < g_opt.n_headers; i++) {
        const char *colon = strchr(g_opt.headers[i], ':');

        if (colon == NULL || colon == g_opt.headers[i]) {
            die("--header wants K:V, got '%s'", g_opt.headers[i]);
        }
        hk[i] = dup_n((const uint8_t *)g_opt.headers[i], (size_t)(colon - g_opt.headers[i]));
        NV(hk[i], colon + 1);
    }
    c.stream_id = nghttp2_submit_request(c.ses, NULL, nva, nnv, &prd, &c);
    if (c.stream_id < 0) {
        die("submit_request: %s", nghttp2_strerror(c.stream_id));
    }

    while (!c.stream_done && !c.eof) {
        struct pollfd pfd = {.fd = c.fd, .events = POLLIN};
        int n;

        rc = nghttp2_session_send(c.ses);
        if (rc != 0) {
            trace("session_send: %s", nghttp2_strerror(rc));
            c.eof = 1;
            break;
        }
        if (!nghttp2_session_want_read(c.ses) && !nghttp2_session_want_write(c.ses)) {
            break;
        }
        if (nghttp2_session_want_write(c.ses)) {
            pfd.events |= POLLOUT;
        }
        n = poll(&pfd, 1, remaining_ms());
        if (n == 0) {
            timed_out = 1;
            break;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("poll: %s", strerror(errno));
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            uint8_t buf[16384];
            ssize_t r = recv(c.fd, buf, sizeof(buf), 0);

            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                trace("connection closed by server (%s)", r == 0 ? "EOF" : strerror(errno));
                c.eof = 1;
                break;
            }
            if (r > 0) {
                ssize_t used = nghttp2_session_mem_recv(c.ses, buf, (size_t)r);

                if (used < 0) {
                    trace("mem_recv: %s", nghttp2_strerror((int)used));
                    c.eof = 1;
                    break;
                }
            }
        }
    }

    print_messages(&c);
    if (c.grpc_message != NULL) {
        pct_decode(c.grpc_message);
    }
    printf("grpc-status=%s grpc-message=%s", c.grpc_status ? c.grpc_status : "none",
           c.grpc_message ? c.grpc_message : "");
    if (c.http_status != 200) {
        printf(" http-status=%d", c.http_status);
    }
    if (c.stream_done && c.rst_code != 0) {
        printf(" rst=%u", c.rst_code);
    }
    if (c.goaway) {
        printf(" goaway=%u", c.goaway_code);
    }
    if (c.eof && !c.stream_done) {
        printf(" conn=closed");
    }
    if (timed_out) {
        printf(" timeout");
    }
    printf("\n");

    if (c.got_end) {
        rc = EXIT_OK;
    } else if (c.stream_done) {
        rc = EXIT_RESET;
    } else if (timed_out) {
        rc = EXIT_TIMEOUT;
    } else {
        rc = EXIT_CONN;
    }
    nghttp2_session_del(c.ses);
    close(c.fd);
    free(c.grpc_status);
    free(c.grpc_message);
    free(c.resp);
    for (i = 0; i < g_opt.n_headers; i++) {
        free(hk[i]);
    }
    return rc;
#undef NV
}

/*
 * Frame a serialized message as a gRPC request body, applying the framing
 * overrides. Takes ownership of msg; returns the body in *out.
 */
static size_t frame_grpc(uint8_t *msg, size_t msg_len, uint8_t **out)
{
    uint8_t *trail = NULL;
    size_t trail_len = 0, n = 0;
    uint8_t *body;
    uint32_t declared = g_opt.len >= 0 ? (uint32_t)g_opt.len : (uint32_t)msg_len;

    if (g_opt.trail_hex != NULL) {
        trail_len = parse_hex(g_opt.trail_hex, &trail);
    }
    body = xmalloc(5 + msg_len + trail_len);
    if (!g_opt.no_prefix) {
        body[0] = (uint8_t)g_opt.flag;
        body[1] = (uint8_t)(declared >> 24);
        body[2] = (uint8_t)(declared >> 16);
        body[3] = (uint8_t)(declared >> 8);
        body[4] = (uint8_t)declared;
        n = 5;
    }
    memcpy(body + n, msg, msg_len);
    n += msg_len;
    if (trail_len > 0) {
        memcpy(body + n, trail, trail_len);
        n += trail_len;
    }
    free(msg);
    free(trail);
    *out = body;
    return n;
}

static size_t pack_put(const char *key, const char *value, uint8_t **out)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    uint8_t *val = NULL, *msg;
    size_t n;

    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    if (g_opt.value_size >= 0) {
        if ((unsigned long long)g_opt.value_size > VALUE_BYTES_MAX) {
            die("--value-size too large");
        }
        val = xmalloc((size_t)g_opt.value_size);
        memset(val, 'x', (size_t)g_opt.value_size);
        req.value.data = val;
        req.value.len = (size_t)g_opt.value_size;
    } else {
        req.value.data = (uint8_t *)value;
        req.value.len = strlen(value);
    }
    n = etcdserverpb__put_request__get_packed_size(&req);
    msg = xmalloc(n);
    etcdserverpb__put_request__pack(&req, msg);
    free(val);
    *out = msg;
    return n;
}

static size_t pack_range(const char *key, uint8_t **out)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    uint8_t *msg;
    size_t n;

    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    if (g_opt.end != NULL) {
        req.range_end.data = (uint8_t *)g_opt.end;
        req.range_end.len = strlen(g_opt.end);
    }
    req.revision = g_opt.rev;
    n = etcdserverpb__range_request__get_packed_size(&req);
    msg = xmalloc(n);
    etcdserverpb__range_request__pack(&req, msg);
    *out = msg;
    return n;
}

/* ------------------------------------------------------ raw misconduct --- */

/* Append one HTTP/2 frame header to buf at *n. */
static void frame_hdr(uint8_t *buf, size_t *n, uint32_t len, uint8_t type, uint8_t flags,
                      uint32_t stream_id)
{
    uint8_t *p = buf + *n;

    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    p[5] = (uint8_t)(stream_id >> 24 & 0x7f);
    p[6] = (uint8_t)(stream_id >> 16);
    p[7] = (uint8_t)(stream_id >> 8);
    p[8] = (uint8_t)stream_id;
    *n += 9;
}

/*
 * Send bytes, then wait (bounded) until the server closes the connection.
 * Prints "closed=yes|no after_ms=N bytes_from_server=N [first=...]".
 */
static int send_and_expect_close(const char *hostport, const uint8_t *bytes, size_t len)
{
    int64_t t0 = now_ms();
    size_t got = 0;
    uint8_t first[32];
    size_t first_len = 0;
    int closed = 0, fd = dial(hostport);

    if (fd < 0) {
        printf("closed=refused\n");
        return EXIT_CONN;
    }
    if (write_all(fd, bytes, len) != 0) {
        /* A reset while writing is the server closing on us. */
        trace("write: %s", strerror(errno));
        closed = errno != ETIMEDOUT;
    }
    while (!closed) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        uint8_t buf[4096];
        ssize_t r;
        int n = poll(&pfd, 1, remaining_ms());

        if (n == 0) {
            break;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("poll: %s", strerror(errno));
        }
        r = recv(fd, buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            closed = 1;
            break;
        }
        if (r > 0) {
            size_t take = (size_t)r;

            if (take > sizeof(first) - first_len) {
                take = sizeof(first) - first_len;
            }
            memcpy(first + first_len, buf, take);
            first_len += take;
            got += (size_t)r;
        }
    }
    close(fd);
    printf("closed=%s after_ms=%lld bytes_from_server=%zu", closed ? "yes" : "no",
           (long long)(now_ms() - t0), got);
    if (first_len > 0) {
        printf(" first=");
        put_bytes(first, first_len);
    }
    printf("\n");
    return closed ? EXIT_OK : EXIT_TIMEOUT;
}

static int do_garbage(const char *hostport)
{
    /*
     * Binary junk with line breaks: not the HTTP/2 magic, not a parsable
     * HTTP/1.x request line, and long enough that a server which sniffs the
     * first bytes of a connection has enough to decide.
     */
    uint8_t junk[256];
    size_t i;

    for (i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)(0x80 + (i * 37) % 0x7f);
    }
    junk[0] = 0x16; /* looks like nothing in particular (a TLS record type) */
    junk[100] = '\r';
    junk[101] = '\n';
    junk[254] = '\r';
    junk[255] = '\n';
    return send_and_expect_close(hostport, junk, sizeof(junk));
}

static int do_badpreface(const char *hostport, const char *kind)
{
    static const char magic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    uint8_t buf[128];
    size_t n = 0;

    memcpy(buf, magic, sizeof(magic) - 1);
    n = sizeof(magic) - 1;
    if (strcmp(kind, "magic") == 0) {
        buf[18] = 'X'; /* "SM" becomes "XM" */
        buf[19] = 'Y';
        frame_hdr(buf, &n, 0, NGHTTP2_SETTINGS, 0, 0);
    } else if (strcmp(kind, "settings") == 0) {
        /* SETTINGS payloads are multiples of 6 bytes: 5 is a FRAME_SIZE_ERROR. */
        frame_hdr(buf, &n, 5, NGHTTP2_SETTINGS, 0, 0);
        memset(buf + n, 0, 5);
        n += 5;
    } else {
        die("badpreface KIND is 'magic' or 'settings', got '%s'", kind);
    }
    return send_and_expect_close(hostport, buf, n);
}

static int do_vanish(const char *hostport, const char *key)
{
    static const char magic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    nghttp2_hd_deflater *dfl;
    nghttp2_nv nva[6];
    const char *nv[6][2] = {
        {":method", "POST"},
        {":scheme", "http"},
        {":path", "/etcdserverpb.KV/Put"},
        {":authority", hostport},
        {"content-type", "application/grpc"},
        {"te", "trailers"},
    };
    uint8_t *msg, *body, *buf;
    size_t msg_len, body_len, cap, n = 0, hb, half, i;
    ssize_t hl;
    int fd;

    g_opt.value_size = g_opt.value_size < 0 ? 1000 : g_opt.value_size;
    msg_len = pack_put(key, "", &msg);
    body_len = frame_grpc(msg, msg_len, &body);
    half = body_len / 2;

    for (i = 0; i < 6; i++) {
        nva[i].name = (uint8_t *)nv[i][0];
        nva[i].namelen = strlen(nv[i][0]);
        nva[i].value = (uint8_t *)nv[i][1];
        nva[i].valuelen = strlen(nv[i][1]);
        nva[i].flags = NGHTTP2_NV_FLAG_NONE;
    }
    if (nghttp2_hd_deflate_new(&dfl, 4096) != 0) {
        die("hd_deflate_new failed");
    }
    hb = nghttp2_hd_deflate_bound(dfl, nva, 6);
    cap = sizeof(magic) + 9 + 9 + hb + 9 + body_len + 9 + body_len;
    buf = xmalloc(cap);

    memcpy(buf, magic, sizeof(magic) - 1);
    n = sizeof(magic) - 1;
    frame_hdr(buf, &n, 0, NGHTTP2_SETTINGS, 0, 0);
    /* HEADERS on stream 1, END_HEADERS, no END_STREAM. */
    hl = nghttp2_hd_deflate_hd(dfl, buf + n + 9, hb, nva, 6);
    if (hl < 0) {
        die("hd_deflate_hd: %s", nghttp2_strerror((int)hl));
    }
    frame_hdr(buf, &n, (uint32_t)hl, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1);
    n += (size_t)hl;
    /* A whole DATA frame holding the first half of the gRPC message. */
    frame_hdr(buf, &n, (uint32_t)half, NGHTTP2_DATA, 0, 1);
    memcpy(buf + n, body, half);
    n += half;
    /* A DATA frame that announces the rest but carries only part of it. */
    frame_hdr(buf, &n, (uint32_t)(body_len - half), NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1);
    memcpy(buf + n, body + half, (body_len - half) / 2);
    n += (body_len - half) / 2;
    nghttp2_hd_deflate_del(dfl);

    fd = dial(hostport);
    if (fd < 0) {
        printf("sent=0 conn=refused\n");
        free(buf);
        free(body);
        return EXIT_CONN;
    }
    if (write_all(fd, buf, n) != 0) {
        printf("sent=partial error=%s\n", strerror(errno));
        close(fd);
        free(buf);
        free(body);
        return EXIT_CONN;
    }
    if (g_opt.rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(fd);
    printf("sent=%zu close=%s\n", n, g_opt.rst ? "rst" : "fin");
    free(buf);
    free(body);
    return EXIT_OK;
}

/* ---------------------------------------------------------------- main --- */

static void usage(void)
{
    fputs("usage: grpcraw MODE HOST:PORT [ARGS] [OPTIONS]\n"
          "  call HOST:PORT PATH [HEX] | put HOST:PORT KEY [VALUE] | range HOST:PORT KEY\n"
          "  garbage HOST:PORT | badpreface HOST:PORT [magic|settings] | vanish HOST:PORT [KEY]\n"
          "options: --timeout S --value-size N --rev N --end KEY --path P --flag B --len N\n"
          "         --no-prefix --trail-hex HEX --split N --header K:V --rst -v\n"
          "(see the comment at the top of tests/e2e/grpcraw.c)\n",
          stderr);
    exit(EXIT_USAGE);
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"timeout", required_argument, NULL, 't'},
        {"value-size", required_argument, NULL, 's'},
        {"rev", required_argument, NULL, 'r'},
        {"end", required_argument, NULL, 'e'},
        {"path", required_argument, NULL, 'p'},
        {"flag", required_argument, NULL, 'f'},
        {"len", required_argument, NULL, 'l'},
        {"no-prefix", no_argument, NULL, 'n'},
        {"trail-hex", required_argument, NULL, 'T'},
        {"split", required_argument, NULL, 'S'},
        {"header", required_argument, NULL, 'H'},
        {"rst", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *mode, *hostport;
    char **args;
    int nargs, opt;
    uint8_t *msg = NULL, *body;
    size_t msg_len = 0, body_len;

    while ((opt = getopt_long(argc, argv, "vh", lopts, NULL)) != -1) {
        switch (opt) {
        case 't':
            g_opt.timeout_s = atof(optarg);
            if (g_opt.timeout_s <= 0) {
                die("bad --timeout '%s'", optarg);
            }
            break;
        case 's':
            g_opt.value_size = parse_ll(optarg, "--value-size");
            break;
        case 'r':
            g_opt.rev = parse_ll(optarg, "--rev");
            break;
        case 'e':
            g_opt.end = optarg;
            break;
        case 'p':
            g_opt.path = optarg;
            break;
        case 'f':
            g_opt.flag = (int)parse_ll(optarg, "--flag");
            break;
        case 'l':
            g_opt.len = parse_ll(optarg, "--len");
            if (g_opt.len < 0 || g_opt.len > 0xffffffffLL) {
                die("--len out of range");
            }
            break;
        case 'n':
            g_opt.no_prefix = 1;
            break;
        case 'T':
            g_opt.trail_hex = optarg;
            break;
        case 'S':
            g_opt.split = (size_t)parse_ll(optarg, "--split");
            break;
        case 'H':
            if (g_opt.n_headers == HEADERS_MAX) {
                die("too many --header");
            }
            g_opt.headers[g_opt.n_headers++] = optarg;
            break;
        case 'R':
            g_opt.rst = 1;
            break;
        case 'v':
            g_opt.verbose = 1;
            break;
        default:
            usage();
        }
    }
    if (argc - optind < 2) {
        usage();
    }
    mode = argv[optind];
    hostport = argv[optind + 1];
    args = argv + optind + 2;
    nargs = argc - optind - 2;
    g_deadline_ms = now_ms() + (int64_t)(g_opt.timeout_s * 1000.0);

    if (strcmp(mode, "garbage") == 0 && nargs == 0) {
        return do_garbage(hostport);
    }
    if (strcmp(mode, "badpreface") == 0 && nargs <= 1) {
        return do_badpreface(hostport, nargs == 1 ? args[0] : "magic");
    }
    if (strcmp(mode, "vanish") == 0 && nargs <= 1) {
        return do_vanish(hostport, nargs == 1 ? args[0] : "vanish");
    }
    if (strcmp(mode, "call") == 0 && (nargs == 1 || nargs == 2)) {
        msg_len = parse_hex(nargs == 2 ? args[1] : "", &msg);
        body_len = frame_grpc(msg, msg_len, &body);
        opt = do_call(hostport, args[0], body, body_len);
        free(body);
        return opt;
    }
    if (strcmp(mode, "put") == 0 && (nargs == 2 || (nargs == 1 && g_opt.value_size >= 0))) {
        msg_len = pack_put(args[0], nargs == 2 ? args[1] : "", &msg);
        body_len = frame_grpc(msg, msg_len, &body);
        opt = do_call(hostport, g_opt.path ? g_opt.path : "/etcdserverpb.KV/Put", body, body_len);
        free(body);
        return opt;
    }
    if (strcmp(mode, "range") == 0 && nargs == 1) {
        msg_len = pack_range(args[0], &msg);
        body_len = frame_grpc(msg, msg_len, &body);
        opt = do_call(hostport, g_opt.path ? g_opt.path : "/etcdserverpb.KV/Range", body, body_len);
        free(body);
        return opt;
    }
    usage();
    return EXIT_USAGE;
}
