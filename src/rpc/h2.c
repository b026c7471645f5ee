/*
 * h2.c — one HTTP/2 server session per client connection, and gRPC's
 * unary framing on top of it.
 *
 * The shard thread that owns the socket owns the rpc_conn; nothing here is
 * shared. nghttp2 does the HTTP/2 state machine in memory: rpc_conn_feed()
 * pushes received bytes in, rpc_conn_output() pulls bytes to send out.
 *
 * gRPC over HTTP/2, as used here:
 *   request:  HEADERS (:method POST, :path /pkg.Service/Method,
 *             content-type application/grpc...) then DATA carrying
 *             length-prefixed messages, END_STREAM on the last frame.
 *   message:  OFFSET SIZE MEANING
 *             0      1    compressed flag (0: we accept no compression)
 *             1      4    message length, big-endian
 *             5      n    protobuf bytes
 *   response: HEADERS (:status 200, content-type application/grpc), DATA
 *             with one message, then trailers (grpc-status, grpc-message);
 *             an error is "trailers-only": one HEADERS frame with all of
 *             :status, content-type, grpc-status, grpc-message and
 *             END_STREAM.
 * Invariants: a request body is buffered up to max_msg_bytes + 5 bytes;
 * beyond that the stream is answered RESOURCE_EXHAUSTED at once and the
 * rest of its data is dropped. A stream has at most one reply; a reply for
 * a stream that is gone (reset, connection closing) is freed and dropped.
 *
 * Streaming calls (ops->is_streaming(path)): decided when the request
 * HEADERS are complete. Each message is handed over as soon as its last
 * byte arrives (at most one partial message, <= max_msg_bytes + 5, is
 * buffered). The server's messages wait in a per-stream queue (bounded:
 * RPC_STREAM_OUT_*, and RPC_CONN_STREAM_OUT_BYTES_MAX per connection)
 * that the data provider drains as the HTTP/2 windows allow; an empty
 * queue defers the provider and the next send resumes it. The response
 * HEADERS go with the first message; rpc_conn_stream_end sets the
 * trailers, sent once the queue is empty. on_stream_close fires exactly
 * once per opened stream (st->opened && !st->close_fired).
 */
#include "rpc.h"

#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H2_WINDOW_BYTES      (1u << 20)
#define H2_CONN_WINDOW_BYTES (16u << 20)
#define H2_OUT_HIGH_BYTES    (256u << 10)
#define GRPC_PREFIX_BYTES    5
#define H2_IN_KEEP_BYTES     (64u << 10) /* a stream's input buffer kept between messages */

/* One queued server message of a streaming call. */
struct h2_msg {
    struct h2_msg *next;
    uint8_t *body; /* owned */
    size_t len;
    size_t sent; /* bytes of prefix+body handed to nghttp2 */
    uint8_t prefix[GRPC_PREFIX_BYTES];
};

struct h2_stream {
    char path[RPC_PATH_BYTES_MAX];
    bool path_bad;       /* missing or too long */
    bool method_ok;      /* :method POST */
    bool grpc_ct;        /* content-type application/grpc[+proto|;...] */
    bool require_leader; /* metadata hasleader: true (clientv3.WithRequireLeader) */
    bool answered;       /* a reply was submitted (or the request refused) */
    bool dispatched;     /* handed to on_request */
    bool ended;          /* the client's END_STREAM arrived */
    bool stop_after;     /* answered before the request ended: RST_STREAM(NO_ERROR)
                          * once the answer is sent, so the client stops sending */
    uint8_t *in;         /* request body as received, prefix included */
    size_t in_len;
    size_t in_cap;
    uint8_t prefix[GRPC_PREFIX_BYTES]; /* response message prefix */
    uint8_t *body;                     /* response message, owned */
    size_t body_len;
    size_t sent;                   /* bytes of prefix+body handed to nghttp2 */
    struct h2_stream *prev, *next; /* rpc_conn.streams */
    /* Streaming calls only. `answered` means the server ended the call. */
    bool streaming;                 /* is_streaming(path): messages handed over one by one */
    bool opened;                    /* on_stream_open was called */
    bool close_fired;               /* on_stream_close was called */
    bool resp_started;              /* response HEADERS submitted with the data provider */
    bool deferred;                  /* the data provider returned NGHTTP2_ERR_DEFERRED */
    int end_code;                   /* answered: the trailers' grpc-status */
    char *end_msg;                  /* ... and grpc-message, percent-encoded (NULL: none) */
    struct h2_msg *q_head, *q_tail; /* messages to send */
    size_t q_bytes;                 /* unsent bytes in the queue */
    unsigned q_msgs;
    void *user;  /* rpc_conn_stream_set_user */
    int32_t sid; /* this stream's id */
};

struct rpc_conn {
    nghttp2_session *session;
    const struct rpc_conn_ops *ops;
    void *arg;
    size_t max_msg_bytes;
    unsigned pending;          /* dispatched streams not yet answered */
    unsigned streams_open;     /* streaming calls opened, not yet closed */
    struct h2_stream *closing; /* the stream whose on_stream_close runs */
    size_t q_bytes;            /* sum of the streams' q_bytes */
    bool dying;                /* rpc_conn_destroy runs: sends fail */
    struct h2_stream *streams; /* every live stream state: nghttp2_session_del
                                * does not call on_stream_close */
    uint8_t *out;              /* bytes pulled from nghttp2, not yet sent */
    size_t out_len;
    size_t out_off;
    size_t out_cap;
};

static void queue_drop(struct rpc_conn *c, struct h2_stream *st)
{
    while (st->q_head != NULL) {
        struct h2_msg *m = st->q_head;
        st->q_head = m->next;
        free(m->body);
        free(m);
    }
    st->q_tail = NULL;
    c->q_bytes -= st->q_bytes;
    st->q_bytes = 0;
    st->q_msgs = 0;
}

static void stream_free(struct rpc_conn *c, struct h2_stream *st)
{
    queue_drop(c, st);
    free(st->end_msg);
    free(st->in);
    free(st->body);
    free(st);
}

/* ---- grpc-message encoding (percent-encoding per the gRPC spec) ---- */

static void pct_encode(const char *s, char *dst, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;

    for (; *s != '\0' && j + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 0x20 && ch <= 0x7e && ch != '%') {
            dst[j++] = (char)ch;
        } else {
            dst[j++] = '%';
            dst[j++] = hex[ch >> 4];
            dst[j++] = hex[ch & 15];
        }
    }
    dst[j] = '\0';
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NO_COPY_NAME     \
    }

static void submit_error(struct rpc_conn *c, int32_t sid, int code, const char *message)
{
    char code_s[16];
    char msg_enc[512];

    snprintf(code_s, sizeof(code_s), "%d", code);
    pct_encode(message != NULL ? message : "", msg_enc, sizeof(msg_enc));
    nghttp2_nv nva[] = {
        NV(":status", "200"),
        NV("content-type", "application/grpc"),
        NV("grpc-status", code_s),
        NV("grpc-message", msg_enc),
    };
    nghttp2_submit_response(c->session, sid, nva, sizeof(nva) / sizeof(nva[0]), NULL);
}

/* ---- response body: read callback ---- */

static ssize_t body_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct h2_stream *st = src->ptr;
    size_t total = GRPC_PREFIX_BYTES + st->body_len;
    size_t n = 0;

    (void)user;
    while (n < length && st->sent < total) {
        if (st->sent < GRPC_PREFIX_BYTES) {
            buf[n++] = st->prefix[st->sent++];
            continue;
        }
        size_t off = st->sent - GRPC_PREFIX_BYTES;
        size_t k = st->body_len - off;
        if (k > length - n)
            k = length - n;
        memcpy(buf + n, st->body + off, k);
        n += k;
        st->sent += k;
    }
    if (st->sent == total) {
        nghttp2_nv trailers[] = {NV("grpc-status", "0")};
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (nghttp2_submit_trailer(s, sid, trailers, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

static void submit_ok(struct rpc_conn *c, int32_t sid, struct h2_stream *st, uint8_t *body,
                      size_t len)
{
    nghttp2_nv nva[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_data_provider prd;

    st->body = body;
    st->body_len = len;
    st->prefix[0] = 0;
    st->prefix[1] = (uint8_t)(len >> 24);
    st->prefix[2] = (uint8_t)(len >> 16);
    st->prefix[3] = (uint8_t)(len >> 8);
    st->prefix[4] = (uint8_t)len;
    st->sent = 0;
    prd.source.ptr = st;
    prd.read_callback = body_read;
    nghttp2_submit_response(c->session, sid, nva, 2, &prd);
}

void rpc_conn_reply(struct rpc_conn *c, int32_t sid, int code, const char *message, uint8_t *body,
                    size_t len)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(c->session, sid);

    if (st != NULL && st->dispatched && c->pending > 0) {
        st->dispatched = false;
        c->pending--;
    }
    if (st == NULL || st->answered || st->streaming) {
        free(body);
        return;
    }
    st->answered = true;
    if (code != RPC_OK) {
        free(body);
        submit_error(c, sid, code, message);
        return;
    }
    submit_ok(c, sid, st, body, len);
}

/* ---- request handling ---- */

static void refuse(struct rpc_conn *c, int32_t sid, struct h2_stream *st, int code,
                   const char *message)
{
    st->answered = true;
    st->stop_after = !st->ended;
    submit_error(c, sid, code, message);
}

static uint32_t declared_len(const struct h2_stream *st)
{
    return ((uint32_t)st->in[1] << 24) | ((uint32_t)st->in[2] << 16) | ((uint32_t)st->in[3] << 8) |
           st->in[4];
}

/* The request ended: check the framing as grpc-go does, then hand the
 * first message to the shard (bytes after it are ignored, as grpc-go
 * ignores them for a unary call). */
static void request_complete(struct rpc_conn *c, int32_t sid, struct h2_stream *st)
{
    static __thread char msg[96];
    uint32_t len;

    if (st->answered)
        return;
    if (st->path_bad || !st->method_ok || !st->grpc_ct) {
        /* Not a gRPC call: answer it as gRPC would, then let it go. */
        refuse(c, sid, st, RPC_UNIMPLEMENTED, "malformed method name");
        return;
    }
    if (st->in_len == 0) {
        refuse(c, sid, st, RPC_UNKNOWN, "EOF");
        return;
    }
    if (st->in_len < GRPC_PREFIX_BYTES) {
        refuse(c, sid, st, RPC_UNKNOWN, "unexpected EOF");
        return;
    }
    if (st->in[0] == 1) {
        refuse(c, sid, st, RPC_INTERNAL,
               "grpc: compressed flag set with identity or empty encoding");
        return;
    }
    if (st->in[0] != 0) {
        snprintf(msg, sizeof(msg), "grpc: received unexpected payload format %u", st->in[0]);
        refuse(c, sid, st, RPC_INTERNAL, msg);
        return;
    }
    len = declared_len(st);
    if ((size_t)len > st->in_len - GRPC_PREFIX_BYTES) {
        refuse(c, sid, st, RPC_UNKNOWN, "unexpected EOF");
        return;
    }
    st->dispatched = true;
    c->pending++;
    c->ops->on_request(c->arg, c, sid, st->path, st->in + GRPC_PREFIX_BYTES, len);
}

/* ---- streaming calls ---- */

static int grow_in(struct h2_stream *st, size_t need);

static void put_prefix(uint8_t *p, size_t len)
{
    p[0] = 0;
    p[1] = (uint8_t)(len >> 24);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)len;
}

static void fire_close(struct rpc_conn *c, int32_t sid, struct h2_stream *st)
{
    if (!st->opened || st->close_fired)
        return;
    st->close_fired = true;
    st->answered = true; /* sends fail from here on */
    c->streams_open--;
    /* The callback may still read and clear the stream's user pointer
     * (rpc_conn_stream_user/set_user find it through c->closing). */
    c->closing = st;
    if (c->ops->on_stream_close != NULL)
        c->ops->on_stream_close(c->arg, c, sid);
    c->closing = NULL;
}

static int submit_trailers(nghttp2_session *s, int32_t sid, const struct h2_stream *st)
{
    char code_s[16];

    snprintf(code_s, sizeof(code_s), "%d", st->end_code);
    nghttp2_nv nva[] = {
        NV("grpc-status", code_s),
        NV("grpc-message", st->end_msg != NULL ? st->end_msg : ""),
    };
    return nghttp2_submit_trailer(s, sid, nva, st->end_msg != NULL ? 2 : 1);
}

/* Copies queued messages into nghttp2's frame buffer; with the queue empty
 * it defers (rpc_conn_stream_send resumes it) or, once the call was ended,
 * submits the trailers. */
static ssize_t stream_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t length,
                           uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct h2_stream *st = src->ptr;
    struct rpc_conn *c = user;
    size_t n = 0;

    while (n < length && st->q_head != NULL) {
        struct h2_msg *m = st->q_head;
        size_t k;
        if (m->sent < GRPC_PREFIX_BYTES) {
            k = GRPC_PREFIX_BYTES - m->sent;
            k = k < length - n ? k : length - n;
            memcpy(buf + n, m->prefix + m->sent, k);
        } else {
            k = m->len - (m->sent - GRPC_PREFIX_BYTES);
            k = k < length - n ? k : length - n;
            memcpy(buf + n, m->body + (m->sent - GRPC_PREFIX_BYTES), k);
        }
        n += k;
        m->sent += k;
        st->q_bytes -= k;
        c->q_bytes -= k;
        if (m->sent == GRPC_PREFIX_BYTES + m->len) {
            st->q_head = m->next;
            if (st->q_head == NULL)
                st->q_tail = NULL;
            st->q_msgs--;
            free(m->body);
            free(m);
        }
    }
    if (st->q_head == NULL && st->answered) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (submit_trailers(s, sid, st) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static void stream_resume(struct rpc_conn *c, int32_t sid, struct h2_stream *st)
{
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(c->session, sid);
    }
}

/* The server ends the call: trailers-only if nothing was sent, otherwise
 * trailers after the queued messages. */
static void stream_finish(struct rpc_conn *c, int32_t sid, struct h2_stream *st, int code,
                          const char *message)
{
    char enc[512];

    st->answered = true;
    st->stop_after = true; /* on_frame_send checks st->ended */
    st->in_len = 0;        /* st->in may hold the message being delivered */
    if (!st->resp_started) {
        submit_error(c, sid, code, message);
        return;
    }
    st->end_code = code;
    if (message != NULL) {
        pct_encode(message, enc, sizeof(enc));
        st->end_msg = strdup(enc); /* out of memory: trailers without it */
    }
    stream_resume(c, sid, st);
}

static uint32_t prefix_len(const uint8_t *p)
{
    return ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | p[4];
}

/* Checks a complete prefix the way grpc-go's receiver does; false if the
 * call was ended for it. */
static bool stream_prefix_ok(struct rpc_conn *c, int32_t sid, struct h2_stream *st,
                             const uint8_t *p)
{
    static __thread char msg[128];

    if (p[0] == 1) {
        stream_finish(c, sid, st, RPC_INTERNAL,
                      "grpc: compressed flag set with identity or empty encoding");
        return false;
    }
    if (p[0] != 0) {
        snprintf(msg, sizeof(msg), "grpc: received unexpected payload format %u", p[0]);
        stream_finish(c, sid, st, RPC_INTERNAL, msg);
        return false;
    }
    if (prefix_len(p) > c->max_msg_bytes) {
        snprintf(msg, sizeof(msg), "grpc: received message larger than max (%u vs. %zu)",
                 prefix_len(p), c->max_msg_bytes);
        stream_finish(c, sid, st, RPC_RESOURCE_EXHAUSTED, msg);
        return false;
    }
    return true;
}

static void stream_deliver(struct rpc_conn *c, int32_t sid, struct h2_stream *st,
                           const uint8_t *msg, size_t len)
{
    if (c->ops->on_stream_msg != NULL)
        c->ops->on_stream_msg(c->arg, c, sid, st->path, msg, len);
}

/* Splits DATA into messages. A message that arrives whole in one chunk is
 * handed over from the chunk itself; otherwise it is gathered in st->in
 * (at most 5 + max_msg_bytes: the prefix is checked before any body byte
 * is kept). The callback may end the call: the loop stops then. */
static int stream_data(struct rpc_conn *c, int32_t sid, struct h2_stream *st, const uint8_t *data,
                       size_t len)
{
    while (len > 0 && !st->answered) {
        size_t want, k;
        if (st->in_len == 0 && len >= GRPC_PREFIX_BYTES) {
            if (!stream_prefix_ok(c, sid, st, data))
                return 0;
            want = GRPC_PREFIX_BYTES + prefix_len(data);
            if (len >= want) {
                stream_deliver(c, sid, st, data + GRPC_PREFIX_BYTES, want - GRPC_PREFIX_BYTES);
                data += want;
                len -= want;
                continue;
            }
        }
        if (st->in_len < GRPC_PREFIX_BYTES) {
            k = GRPC_PREFIX_BYTES - st->in_len < len ? GRPC_PREFIX_BYTES - st->in_len : len;
            if (GRPC_PREFIX_BYTES > st->in_cap && grow_in(st, GRPC_PREFIX_BYTES) != 0)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            memcpy(st->in + st->in_len, data, k);
            st->in_len += k;
            data += k;
            len -= k;
            if (st->in_len < GRPC_PREFIX_BYTES)
                return 0;
            if (!stream_prefix_ok(c, sid, st, st->in))
                return 0;
        }
        want = GRPC_PREFIX_BYTES + (size_t)prefix_len(st->in);
        k = want - st->in_len < len ? want - st->in_len : len;
        if (st->in_len + k > st->in_cap && grow_in(st, st->in_len + k) != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (k != 0)
            memcpy(st->in + st->in_len, data, k);
        st->in_len += k;
        data += k;
        len -= k;
        if (st->in_len < want)
            return 0;
        st->in_len = 0;
        stream_deliver(c, sid, st, st->in + GRPC_PREFIX_BYTES, want - GRPC_PREFIX_BYTES);
        if (st->in_cap > H2_IN_KEEP_BYTES) { /* do not pin a big buffer between messages */
            free(st->in);
            st->in = NULL;
            st->in_cap = 0;
        }
    }
    return 0;
}

/* The request HEADERS are complete: a streaming call opens now. */
static void stream_begin(struct rpc_conn *c, int32_t sid, struct h2_stream *st)
{
    if (c->ops->is_streaming == NULL || st->path_bad || !c->ops->is_streaming(st->path))
        return;
    st->streaming = true;
    if (!st->method_ok || !st->grpc_ct) {
        stream_finish(c, sid, st, RPC_UNIMPLEMENTED, "malformed method name");
        return;
    }
    st->opened = true;
    c->streams_open++;
    if (c->ops->on_stream_open != NULL)
        c->ops->on_stream_open(c->arg, c, sid, st->path);
}

/* The client ended its side (grpc-go's server: a partial message left is
 * INTERNAL "unexpected EOF"). */
static void stream_client_end(struct rpc_conn *c, int32_t sid, struct h2_stream *st)
{
    if (st->answered)
        return;
    if (st->in_len > 0) {
        stream_finish(c, sid, st, RPC_INTERNAL, "unexpected EOF");
        return;
    }
    if (c->ops->on_stream_half_close != NULL)
        c->ops->on_stream_half_close(c->arg, c, sid);
}

static struct h2_stream *stream_get(struct rpc_conn *c, int32_t sid)
{
    struct h2_stream *st;

    if (c->dying)
        return NULL;
    st = nghttp2_session_get_stream_user_data(c->session, sid);
    return st != NULL && st->opened && !st->close_fired ? st : NULL;
}

int rpc_conn_stream_send(struct rpc_conn *c, int32_t sid, uint8_t *body, size_t len)
{
    nghttp2_nv nva[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    struct h2_stream *st = stream_get(c, sid);
    struct h2_msg *m;

    if (st == NULL || st->answered || len > UINT32_MAX || st->q_bytes >= RPC_STREAM_OUT_BYTES_MAX ||
        st->q_msgs >= RPC_STREAM_OUT_MSGS_MAX || c->q_bytes >= RPC_CONN_STREAM_OUT_BYTES_MAX)
        goto drop;
    m = malloc(sizeof(*m));
    if (m == NULL)
        goto drop;
    m->next = NULL;
    m->body = body;
    m->len = len;
    m->sent = 0;
    put_prefix(m->prefix, len);
    if (!st->resp_started) {
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = stream_read};
        if (nghttp2_submit_response(c->session, sid, nva, 2, &prd) != 0) {
            free(m);
            goto drop;
        }
        st->resp_started = true;
    }
    if (st->q_tail != NULL)
        st->q_tail->next = m;
    else
        st->q_head = m;
    st->q_tail = m;
    st->q_msgs++;
    st->q_bytes += GRPC_PREFIX_BYTES + len;
    c->q_bytes += GRPC_PREFIX_BYTES + len;
    stream_resume(c, sid, st);
    return 0;
drop:
    free(body);
    return -1;
}

void rpc_conn_stream_end(struct rpc_conn *c, int32_t sid, int code, const char *message)
{
    struct h2_stream *st = stream_get(c, sid);

    if (st != NULL && !st->answered)
        stream_finish(c, sid, st, code, message);
}

size_t rpc_conn_stream_queued(struct rpc_conn *c, int32_t sid)
{
    struct h2_stream *st = stream_get(c, sid);

    return st != NULL ? st->q_bytes : 0;
}

/* The stream for its user pointer: an open one, or the one whose close
 * callback is running. */
static struct h2_stream *stream_for_user(struct rpc_conn *c, int32_t sid)
{
    if (c->closing != NULL && c->closing->sid == sid)
        return c->closing;
    return stream_get(c, sid);
}

void rpc_conn_stream_set_user(struct rpc_conn *c, int32_t sid, void *user)
{
    struct h2_stream *st = stream_for_user(c, sid);

    if (st != NULL)
        st->user = user;
}

void *rpc_conn_stream_user(struct rpc_conn *c, int32_t sid)
{
    struct h2_stream *st = stream_for_user(c, sid);

    return st != NULL ? st->user : NULL;
}

unsigned rpc_conn_streams_open(const struct rpc_conn *c)
{
    return c->streams_open;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct rpc_conn *c = user;
    struct h2_stream *st;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->path_bad = true;
    st->sid = f->hd.stream_id;
    st->next = c->streams;
    if (c->streams != NULL)
        c->streams->prev = st;
    c->streams = st;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    return 0;
}

static bool header_is(const uint8_t *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *user)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);

    (void)flags;
    (void)user;
    if (st == NULL || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (header_is(name, name_len, ":path")) {
        st->path_bad = value_len == 0 || value_len >= sizeof(st->path);
        if (!st->path_bad) {
            memcpy(st->path, value, value_len);
            st->path[value_len] = '\0';
        }
    } else if (header_is(name, name_len, ":method")) {
        st->method_ok = value_len == 4 && memcmp(value, "POST", 4) == 0;
    } else if (header_is(name, name_len, "hasleader")) {
        st->require_leader = value_len == 4 && memcmp(value, "true", 4) == 0;
    } else if (header_is(name, name_len, "content-type")) {
        st->grpc_ct = value_len >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                      (value_len == 16 || value[16] == '+' || value[16] == ';');
    }
    return 0;
}

static int grow_in(struct h2_stream *st, size_t need)
{
    size_t cap = st->in_cap != 0 ? st->in_cap : 1024;
    uint8_t *p;

    while (cap < need)
        cap *= 2;
    p = realloc(st->in, cap);
    if (p == NULL)
        return -1;
    st->in = p;
    st->in_cap = cap;
    return 0;
}

/* A message over the limit is refused as soon as its prefix declares it
 * (grpc-go's wording), or as soon as the buffered body outgrows the limit;
 * the rest of the stream's data is then dropped. */
static void refuse_large(struct rpc_conn *c, int32_t sid, struct h2_stream *st, size_t got)
{
    static __thread char msg[128];

    snprintf(msg, sizeof(msg), "grpc: received message larger than max (%zu vs. %zu)", got,
             c->max_msg_bytes);
    refuse(c, sid, st, RPC_RESOURCE_EXHAUSTED, msg);
    free(st->in);
    st->in = NULL;
    st->in_len = st->in_cap = 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *user)
{
    struct rpc_conn *c = user;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    size_t limit = c->max_msg_bytes + 2 * GRPC_PREFIX_BYTES;

    (void)flags;
    if (st == NULL || st->answered)
        return 0;
    if (st->streaming)
        return stream_data(c, sid, st, data, len);
    /* Buffer at most up to the limit, so a prefix that arrives in the
     * same chunk as the overflow is still read for the error message. */
    size_t take = len < limit - st->in_len ? len : limit - st->in_len;
    if (st->in_len + take > st->in_cap && grow_in(st, st->in_len + take) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(st->in + st->in_len, data, take);
    st->in_len += take;
    if (st->in_len >= GRPC_PREFIX_BYTES && declared_len(st) > c->max_msg_bytes)
        refuse_large(c, sid, st, declared_len(st));
    else if (take < len)
        refuse_large(c, sid, st, st->in_len + len - take - GRPC_PREFIX_BYTES);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct h2_stream *st;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    if (f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS)
        return 0;
    st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        st->ended = end;
        stream_begin(user, f->hd.stream_id, st);
    }
    if (!end)
        return 0;
    st->ended = true;
    if (st->streaming)
        stream_client_end(user, f->hd.stream_id, st);
    else
        request_complete(user, f->hd.stream_id, st);
    return 0;
}

/* RFC 9113 8.1: a server that answered before the request was complete may
 * ask the client to stop sending with RST_STREAM(NO_ERROR), once the
 * complete answer is out. */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct h2_stream *st;

    (void)user;
    if (f->hd.type != NGHTTP2_HEADERS || (f->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0)
        return 0;
    st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st != NULL && st->stop_after && !st->ended) {
        st->stop_after = false;
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *user)
{
    struct rpc_conn *c = user;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);

    (void)error_code;
    if (st == NULL)
        return 0;
    fire_close(c, sid, st);
    if (st->dispatched && c->pending > 0)
        c->pending--;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    stream_free(c, st);
    return 0;
}

/* ---- connection ---- */

/* nghttp2's callback table and options: made once for the process (any
 * shard may be first) and kept for its life. */
static nghttp2_session_callbacks *h2_callbacks;
static nghttp2_option *h2_options;
static pthread_once_t h2_once = PTHREAD_ONCE_INIT;

/* grpc-go sends the endpoint as written by the user as :authority (for
 * "http://host:port" that is not a valid authority), and etcd accepts it;
 * nghttp2's HTTP messaging checks would reset such streams. They are off:
 * this file checks what gRPC needs itself (method, path, content-type,
 * framing). */
static void h2_init(void)
{
    nghttp2_session_callbacks *cbs;

    if (nghttp2_option_new(&h2_options) == 0)
        nghttp2_option_set_no_http_messaging(h2_options, 1);
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    h2_callbacks = cbs;
}

struct rpc_conn *rpc_conn_create(const struct rpc_conn_ops *ops, void *arg, size_t max_msg_bytes)
{
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, RPC_STREAMS_MAX},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW_BYTES},
    };
    struct rpc_conn *c;

    pthread_once(&h2_once, h2_init);
    if (h2_callbacks == NULL || h2_options == NULL)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->ops = ops;
    c->arg = arg;
    c->max_msg_bytes = max_msg_bytes;
    if (nghttp2_session_server_new2(&c->session, h2_callbacks, c, h2_options) != 0) {
        free(c);
        return NULL;
    }
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW_BYTES);
    return c;
}

void rpc_conn_destroy(struct rpc_conn *c)
{
    if (c == NULL)
        return;
    /* Streams still open hear of it first, while c is whole; sends from
     * their callbacks fail (c->dying). */
    c->dying = true;
    for (struct h2_stream *st = c->streams; st != NULL; st = st->next) {
        fire_close(c, st->sid, st);
    }
    nghttp2_session_del(c->session); /* calls no callbacks */
    while (c->streams != NULL) {
        struct h2_stream *st = c->streams;
        c->streams = st->next;
        stream_free(c, st);
    }
    free(c->out);
    free(c);
}

int rpc_conn_feed(struct rpc_conn *c, const uint8_t *buf, size_t len)
{
    ssize_t n = nghttp2_session_mem_recv(c->session, buf, len);

    return n < 0 || (size_t)n != len ? -1 : 0;
}

static int out_append(struct rpc_conn *c, const uint8_t *p, size_t n)
{
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap != 0 ? c->out_cap : 16384;
        uint8_t *q;
        while (cap < c->out_len + n)
            cap *= 2;
        q = realloc(c->out, cap);
        if (q == NULL)
            return -1;
        c->out = q;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

const uint8_t *rpc_conn_output(struct rpc_conn *c, size_t *len)
{
    while (c->out_len - c->out_off < H2_OUT_HIGH_BYTES) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->session, &p);
        if (n <= 0)
            break;
        if (out_append(c, p, (size_t)n) != 0)
            break;
    }
    *len = c->out_len - c->out_off;
    return c->out + c->out_off;
}

void rpc_conn_consumed(struct rpc_conn *c, size_t n)
{
    c->out_off += n;
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
}

bool rpc_conn_alive(struct rpc_conn *c)
{
    return nghttp2_session_want_read(c->session) || nghttp2_session_want_write(c->session) ||
           c->out_len > c->out_off;
}

unsigned rpc_conn_pending(const struct rpc_conn *c)
{
    return c->pending;
}

bool rpc_conn_require_leader(struct rpc_conn *c, int32_t stream_id)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(c->session, stream_id);

    return st != NULL && st->require_leader;
}
