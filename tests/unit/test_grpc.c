/*
 * test_grpc — unit tests for src/rpc/h2.c: the per-connection HTTP/2 server
 * session and gRPC unary framing (rpc_conn_* in rpc.h).
 *
 * Everything runs in memory on one thread. Each test opens an rpc_conn and
 * an nghttp2 *client* session and shuttles bytes between them until both
 * are quiet (pump(): client -> rpc_conn_feed, rpc_conn_output ->
 * client -> rpc_conn_consumed, bounded). on_request records the path and a
 * copy of the message; the test replies later with rpc_conn_reply, as the
 * asynchronous core would. The client side records what gRPC sees:
 * :status, content-type, the response message bytes, grpc-status and
 * grpc-message, which frame carried them, and how the stream ended.
 *
 * Covered: unary OK replies (prefix, body, trailers), trailers-only errors
 * with percent-encoded grpc-message, messages split across DATA frames,
 * empty and 1 MiB messages, many concurrent streams answered out of order,
 * the max_msg_bytes limit (RESOURCE_EXHAUSTED with grpc-go's wording, no
 * dispatch), malformed requests (compressed flag, truncated message, no
 * message, not gRPC) with the status codes grpc-go gives them, replies for
 * streams the client reset, GOAWAY, and a broken preface.
 * Memory ownership (reply bodies, stream state) is checked by running this
 * under ASan/LSan: see test_reset_after_reply and test_destroy_with_pending.
 *
 * Streaming calls (paths under /test.Stream/ are streaming here): client
 * messages split oddly across DATA frames and packed several per frame,
 * each delivered once and in order; server messages before and after
 * client messages; trailers; client half-close then server end; server end
 * first (trailers, then RST_STREAM(NO_ERROR)); a trailers-only answer at
 * open; client RST_STREAM and connection destroy (on_stream_close exactly
 * once per opened stream); bad framing and oversized messages on a stream;
 * the output bounds against a client whose windows are exhausted, then
 * everything delivered once they open; many concurrent streams; unary
 * calls on the same connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "rpc.h"

#define STREAMS_MAX            256u
#define PUMP_STEPS_MAX         100000
#define GRPC_MESSAGE_BYTES_MAX 512u
#define MAX_MSG_DEFAULT_BYTES  (4u << 20)

/* What the client saw on one stream. */
struct resp {
    int32_t sid;
    int status;           /* :status, -1 until seen */
    char ctype[64];       /* content-type */
    int grpc_status;      /* -1 until seen */
    int grpc_status_cat;  /* nghttp2_headers_category of the frame carrying it */
    bool grpc_status_end; /* ... and whether that frame had END_STREAM */
    char grpc_message[GRPC_MESSAGE_BYTES_MAX];
    bool has_grpc_message;
    unsigned headers_frames;
    unsigned data_frames; /* non-empty DATA frames */
    uint8_t *data;        /* all DATA payload bytes, in order */
    size_t data_len;
    size_t data_cap;
    bool end_stream; /* the server ended its side */
    bool closed;
    uint32_t close_code;
};

/* A request body the client sends, at most `chunk` bytes per DATA frame. */
struct req_body {
    uint8_t *buf; /* owned */
    size_t len;
    size_t off;
    size_t chunk;  /* 0: as much as nghttp2 allows */
    bool more;     /* a stream still open: defer, do not end, when empty */
    bool deferred; /* the provider deferred: resume after adding bytes */
    size_t cap;
};

/* One streaming callback, in the order they came. */
enum sev_kind { SEV_OPEN = 'o', SEV_MSG = 'm', SEV_HALF = 'h', SEV_CLOSE = 'c' };

struct sev {
    int32_t sid;
    char kind;
    uint8_t *msg; /* SEV_MSG: owned copy */
    size_t len;
};

#define SEVS_MAX 8192u

/* One on_request call. */
struct call {
    int32_t sid;
    char path[RPC_PATH_BYTES_MAX];
    uint8_t *msg; /* owned copy */
    size_t len;
};

struct fx {
    struct rpc_conn *c;
    nghttp2_session *cl;
    size_t out_slice_bytes; /* server bytes moved per pump step, 0: all */
    bool reply_inline;      /* on_request echoes the message at once */
    /* Streaming behaviour of the server callbacks. */
    bool end_at_open;   /* on_stream_open ends the call UNIMPLEMENTED */
    bool echo;          /* on_stream_msg sends the message back */
    bool end_on_half;   /* on_stream_half_close ends the call OK */
    bool send_in_close; /* on_stream_close tries to send (must fail) */
    bool manual_window; /* the client never opens its windows by itself */
    struct sev sevs[SEVS_MAX];
    unsigned n_sevs;
    struct resp resp[STREAMS_MAX];
    struct req_body body[STREAMS_MAX];
    unsigned n_streams;
    struct call calls[STREAMS_MAX];
    unsigned n_calls;
    uint8_t *scratch[2]; /* a test's big buffers, freed even if it fails */
};

/* ---- small helpers ---- */

static uint8_t *dup_bytes(const void *p, size_t len)
{
    uint8_t *q = malloc(len != 0 ? len : 1);

    assert_non_null(q);
    if (len != 0)
        memcpy(q, p, len);
    return q;
}

/* A gRPC length-prefixed message: flag, declared length, then `len` body
 * bytes (declared may differ from len on purpose). */
static uint8_t *grpc_frame(uint8_t flag, uint32_t declared, const uint8_t *body, size_t len,
                           size_t *out_len)
{
    uint8_t *p = malloc(5 + len);

    assert_non_null(p);
    p[0] = flag;
    p[1] = (uint8_t)(declared >> 24);
    p[2] = (uint8_t)(declared >> 16);
    p[3] = (uint8_t)(declared >> 8);
    p[4] = (uint8_t)declared;
    if (len != 0)
        memcpy(p + 5, body, len);
    *out_len = 5 + len;
    return p;
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
    uint32_t x = 2463534242u ^ seed;

    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static bool name_is(const uint8_t *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

static void copy_value(char *dst, size_t cap, const uint8_t *v, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

/* ---- the server's callback ---- */

static void on_request(void *arg, struct rpc_conn *c, int32_t sid, const char *path,
                       const uint8_t *msg, size_t len)
{
    struct fx *f = arg;
    struct call *k;

    assert_ptr_equal(c, f->c);
    assert_true(f->n_calls < STREAMS_MAX);
    assert_true(strlen(path) < RPC_PATH_BYTES_MAX);
    k = &f->calls[f->n_calls++];
    k->sid = sid;
    strcpy(k->path, path);
    k->msg = dup_bytes(msg, len);
    k->len = len;
    if (f->reply_inline)
        rpc_conn_reply(c, sid, RPC_OK, NULL, dup_bytes(msg, len), len);
}

static bool t_is_streaming(const char *path)
{
    return strncmp(path, "/test.Stream/", 13) == 0;
}

static struct sev *sev_add(struct fx *f, int32_t sid, char kind)
{
    struct sev *e;

    assert_true(f->n_sevs < SEVS_MAX);
    e = &f->sevs[f->n_sevs++];
    e->sid = sid;
    e->kind = kind;
    e->msg = NULL;
    e->len = 0;
    return e;
}

static void t_stream_open(void *arg, struct rpc_conn *c, int32_t sid, const char *path)
{
    struct fx *f = arg;

    assert_ptr_equal(c, f->c);
    assert_true(t_is_streaming(path));
    assert_null(rpc_conn_stream_user(c, sid));
    rpc_conn_stream_set_user(c, sid, f);
    sev_add(f, sid, SEV_OPEN);
    if (f->end_at_open)
        rpc_conn_stream_end(c, sid, RPC_UNIMPLEMENTED, "cetcd: method x is not implemented yet");
}

static void t_stream_msg(void *arg, struct rpc_conn *c, int32_t sid, const char *path,
                         const uint8_t *msg, size_t len)
{
    struct fx *f = arg;
    struct sev *e = sev_add(f, sid, SEV_MSG);

    assert_true(t_is_streaming(path));
    assert_ptr_equal(rpc_conn_stream_user(c, sid), f);
    e->msg = dup_bytes(msg, len);
    e->len = len;
    if (f->echo)
        assert_int_equal(rpc_conn_stream_send(c, sid, dup_bytes(msg, len), len), 0);
}

static void t_stream_half(void *arg, struct rpc_conn *c, int32_t sid)
{
    struct fx *f = arg;

    sev_add(f, sid, SEV_HALF);
    if (f->end_on_half)
        rpc_conn_stream_end(c, sid, RPC_OK, NULL);
}

static void t_stream_close(void *arg, struct rpc_conn *c, int32_t sid)
{
    struct fx *f = arg;

    sev_add(f, sid, SEV_CLOSE);
    if (f->send_in_close)
        assert_int_equal(rpc_conn_stream_send(c, sid, dup_bytes("late", 4), 4), -1);
    /* The close callback still finds the stream's user pointer (to free
     * what it points to), and may clear it. */
    assert_ptr_equal(rpc_conn_stream_user(c, sid), f);
    rpc_conn_stream_set_user(c, sid, NULL);
    assert_null(rpc_conn_stream_user(c, sid));
}

static const struct rpc_conn_ops test_ops = {
    .on_request = on_request,
    .is_streaming = t_is_streaming,
    .on_stream_open = t_stream_open,
    .on_stream_msg = t_stream_msg,
    .on_stream_half_close = t_stream_half,
    .on_stream_close = t_stream_close,
};

/* ---- the client side ---- */

static struct resp *resp_of(nghttp2_session *s, int32_t sid)
{
    return nghttp2_session_get_stream_user_data(s, sid);
}

static int cl_on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name,
                        size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                        void *user)
{
    struct resp *r = resp_of(s, fr->hd.stream_id);
    char v[GRPC_MESSAGE_BYTES_MAX];

    (void)flags;
    (void)user;
    if (r == NULL || fr->hd.type != NGHTTP2_HEADERS)
        return 0;
    copy_value(v, sizeof(v), value, value_len);
    if (name_is(name, name_len, ":status")) {
        r->status = atoi(v);
    } else if (name_is(name, name_len, "content-type")) {
        copy_value(r->ctype, sizeof(r->ctype), value, value_len);
    } else if (name_is(name, name_len, "grpc-status")) {
        r->grpc_status = atoi(v);
        r->grpc_status_cat = fr->headers.cat;
        r->grpc_status_end = (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    } else if (name_is(name, name_len, "grpc-message")) {
        copy_value(r->grpc_message, sizeof(r->grpc_message), value, value_len);
        r->has_grpc_message = true;
    }
    return 0;
}

static int cl_on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                      size_t len, void *user)
{
    struct resp *r = resp_of(s, sid);

    (void)flags;
    (void)user;
    if (r == NULL)
        return 0;
    if (r->data_len + len > r->data_cap) {
        size_t cap = r->data_cap != 0 ? r->data_cap : 4096;
        while (cap < r->data_len + len)
            cap *= 2;
        r->data = realloc(r->data, cap);
        assert_non_null(r->data);
        r->data_cap = cap;
    }
    memcpy(r->data + r->data_len, data, len);
    r->data_len += len;
    return 0;
}

static int cl_on_frame(nghttp2_session *s, const nghttp2_frame *fr, void *user)
{
    struct resp *r = resp_of(s, fr->hd.stream_id);

    (void)user;
    if (r == NULL)
        return 0;
    if (fr->hd.type == NGHTTP2_HEADERS)
        r->headers_frames++;
    if (fr->hd.type == NGHTTP2_DATA && fr->hd.length > 0)
        r->data_frames++;
    if ((fr->hd.type == NGHTTP2_HEADERS || fr->hd.type == NGHTTP2_DATA) &&
        (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0)
        r->end_stream = true;
    return 0;
}

static int cl_on_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *user)
{
    struct resp *r = resp_of(s, sid);

    (void)user;
    if (r != NULL) {
        r->closed = true;
        r->close_code = error_code;
    }
    return 0;
}

static ssize_t cl_read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct req_body *b = src->ptr;
    size_t n = b->len - b->off;

    (void)s;
    (void)sid;
    (void)user;
    if (n > length)
        n = length;
    if (b->chunk != 0 && n > b->chunk)
        n = b->chunk;
    if (n == 0 && b->more) {
        b->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n != 0)
        memcpy(buf, b->buf + b->off, n);
    b->off += n;
    if (b->off == b->len && !b->more)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* Moves bytes both ways until neither side has anything to send. */
static void pump(struct fx *f)
{
    for (int step = 0; step < PUMP_STEPS_MAX; step++) {
        bool moved = false;
        const uint8_t *p;
        ssize_t n;
        size_t len;

        while ((n = nghttp2_session_mem_send(f->cl, &p)) > 0) {
            assert_int_equal(rpc_conn_feed(f->c, p, (size_t)n), 0);
            moved = true;
        }
        assert_true(n == 0);
        p = rpc_conn_output(f->c, &len);
        if (len > 0) {
            if (f->out_slice_bytes != 0 && len > f->out_slice_bytes)
                len = f->out_slice_bytes;
            n = nghttp2_session_mem_recv(f->cl, p, len);
            assert_int_equal(n, (ssize_t)len);
            rpc_conn_consumed(f->c, len);
            moved = true;
        }
        if (!moved)
            return;
    }
    fail_msg("pump: still busy after %d steps", PUMP_STEPS_MAX);
}

/* Opens the server connection and the client session and exchanges the
 * connection prefaces and SETTINGS. */
static void fx_open(struct fx *f, size_t max_msg_bytes)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;

    f->c = rpc_conn_create(&test_ops, f, max_msg_bytes);
    assert_non_null(f->c);
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, cl_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cl_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cl_on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cl_on_close);
    assert_int_equal(nghttp2_option_new(&opt), 0);
    nghttp2_option_set_no_auto_window_update(opt, f->manual_window);
    assert_int_equal(nghttp2_session_client_new2(&f->cl, cbs, f, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    assert_int_equal(nghttp2_submit_settings(f->cl, NGHTTP2_FLAG_NONE, NULL, 0), 0);
    pump(f);
    assert_true(rpc_conn_alive(f->c));
    assert_int_equal(rpc_conn_pending(f->c), 0);
}

static void fx_close(struct fx *f)
{
    if (f->cl != NULL)
        nghttp2_session_del(f->cl);
    f->cl = NULL;
    rpc_conn_destroy(f->c);
    f->c = NULL;
    for (unsigned i = 0; i < f->n_streams; i++) {
        free(f->resp[i].data);
        free(f->body[i].buf);
    }
    for (unsigned i = 0; i < f->n_calls; i++)
        free(f->calls[i].msg);
    for (unsigned i = 0; i < f->n_sevs; i++)
        free(f->sevs[i].msg);
    f->n_streams = f->n_calls = f->n_sevs = 0;
    free(f->scratch[0]);
    free(f->scratch[1]);
    f->scratch[0] = f->scratch[1] = NULL;
}

#define MKNV(n, v)                                                                                 \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE                 \
    }

/* Submits a request. body: the whole request body (owned by the fixture
 * from now on), or NULL for HEADERS with END_STREAM and no DATA at all.
 * ctype NULL: no content-type header. Returns the stream's index. */
static unsigned submit_raw(struct fx *f, const char *method, const char *path, const char *ctype,
                           uint8_t *body, size_t len, size_t chunk)
{
    nghttp2_nv nva[6] = {
        MKNV(":method", method), MKNV(":scheme", "http"), MKNV(":authority", "localhost"),
        MKNV(":path", path),     MKNV("te", "trailers"),  MKNV("content-type", ""),
    };
    size_t n_nv = 5;
    unsigned i = f->n_streams;
    nghttp2_data_provider prd;
    int32_t sid;

    assert_true(i < STREAMS_MAX);
    f->n_streams++;
    memset(&f->resp[i], 0, sizeof(f->resp[i]));
    f->resp[i].status = -1;
    f->resp[i].grpc_status = -1;
    f->body[i] = (struct req_body){.buf = body, .len = len, .off = 0, .chunk = chunk};
    if (ctype != NULL) {
        nva[5] = (nghttp2_nv)MKNV("content-type", ctype);
        n_nv = 6;
    }
    prd.source.ptr = &f->body[i];
    prd.read_callback = cl_read_body;
    sid = nghttp2_submit_request(f->cl, NULL, nva, n_nv, body != NULL ? &prd : NULL, &f->resp[i]);
    assert_true(sid > 0);
    f->resp[i].sid = sid;
    return i;
}

/* A well-formed unary call carrying `msg`. */
static unsigned submit_call(struct fx *f, const char *path, const uint8_t *msg, size_t len,
                            size_t chunk)
{
    size_t blen;
    uint8_t *b = grpc_frame(0, (uint32_t)len, msg, len, &blen);

    return submit_raw(f, "POST", path, "application/grpc", b, blen, chunk);
}

static const struct call *call_for(const struct fx *f, int32_t sid)
{
    for (unsigned i = 0; i < f->n_calls; i++)
        if (f->calls[i].sid == sid)
            return &f->calls[i];
    return NULL;
}

/* The client got a complete OK reply carrying exactly `body`. */
static void expect_ok(const struct resp *r, const uint8_t *body, size_t len)
{
    assert_int_equal(r->status, 200);
    assert_string_equal(r->ctype, "application/grpc");
    /* HEADERS, DATA..., trailers: grpc-status only in the trailers. */
    assert_int_equal(r->headers_frames, 2);
    assert_int_equal(r->grpc_status, RPC_OK);
    assert_int_equal(r->grpc_status_cat, NGHTTP2_HCAT_HEADERS);
    assert_true(r->grpc_status_end);
    assert_true(r->end_stream);
    assert_true(r->closed);
    assert_int_equal(r->close_code, NGHTTP2_NO_ERROR);
    /* One length-prefixed message, nothing after it. */
    assert_int_equal(r->data_len, 5 + len);
    assert_int_equal(r->data[0], 0);
    assert_int_equal(((uint32_t)r->data[1] << 24) | ((uint32_t)r->data[2] << 16) |
                         ((uint32_t)r->data[3] << 8) | r->data[4],
                     len);
    if (len != 0)
        assert_memory_equal(r->data + 5, body, len);
}

/* The client got a trailers-only error with `code` (and `message` when
 * not NULL). */
static void expect_error(const struct resp *r, int code, const char *message)
{
    assert_int_equal(r->status, 200);
    assert_string_equal(r->ctype, "application/grpc");
    assert_int_equal(r->headers_frames, 1);
    assert_int_equal(r->data_len, 0);
    assert_int_equal(r->grpc_status, code);
    assert_int_equal(r->grpc_status_cat, NGHTTP2_HCAT_RESPONSE);
    assert_true(r->grpc_status_end);
    assert_true(r->end_stream);
    assert_true(r->has_grpc_message);
    if (message != NULL)
        assert_string_equal(r->grpc_message, message);
}

/* ---- fixture ---- */

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    fx_close(f);
    free(f);
    return 0;
}

/* ---- tests ---- */

static void test_unary_ok(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[] = {0x0a, 0x03, 'f', 'o', 'o', 0x00, 0xff, 0x12, 0x00};
    uint8_t reply[300];
    unsigned i;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    i = submit_call(f, "/etcdserverpb.KV/Range", msg, sizeof(msg), 0);
    pump(f);
    assert_int_equal(f->n_calls, 1);
    assert_int_equal(f->calls[0].sid, f->resp[i].sid);
    assert_string_equal(f->calls[0].path, "/etcdserverpb.KV/Range");
    assert_int_equal(f->calls[0].len, sizeof(msg));
    assert_memory_equal(f->calls[0].msg, msg, sizeof(msg));
    assert_int_equal(rpc_conn_pending(f->c), 1);
    /* Nothing is sent before the reply. */
    assert_int_equal(f->resp[i].headers_frames, 0);
    assert_false(f->resp[i].closed);

    fill_pattern(reply, sizeof(reply), 1);
    rpc_conn_reply(f->c, f->resp[i].sid, RPC_OK, NULL, dup_bytes(reply, sizeof(reply)),
                   sizeof(reply));
    assert_int_equal(rpc_conn_pending(f->c), 0);
    pump(f);
    expect_ok(&f->resp[i], reply, sizeof(reply));
    assert_int_equal(f->resp[i].data_frames, 1);
    assert_false(f->resp[i].has_grpc_message);
    assert_int_equal(f->n_calls, 1);
    assert_true(rpc_conn_alive(f->c));
}

/* on_request may answer at once (reads, errors), from inside feed. */
static void test_reply_inline(void **state)
{
    struct fx *f = *state;
    uint8_t msg[1000];
    unsigned i;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    f->reply_inline = true;
    fill_pattern(msg, sizeof(msg), 2);
    i = submit_call(f, "/etcdserverpb.Maintenance/Status", msg, sizeof(msg), 0);
    pump(f);
    assert_int_equal(f->n_calls, 1);
    assert_int_equal(rpc_conn_pending(f->c), 0);
    expect_ok(&f->resp[i], msg, sizeof(msg));
}

/* A second reply for an answered stream is dropped (and its body freed). */
static void test_second_reply_dropped(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[] = "x";
    unsigned i;
    int32_t sid;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    i = submit_call(f, "/etcdserverpb.KV/Put", msg, 1, 0);
    pump(f);
    assert_int_equal(f->n_calls, 1);
    sid = f->resp[i].sid;
    rpc_conn_reply(f->c, sid, RPC_OK, NULL, dup_bytes("ok", 2), 2);
    rpc_conn_reply(f->c, sid, RPC_INTERNAL, "late", dup_bytes("no", 2), 2);
    assert_int_equal(rpc_conn_pending(f->c), 0);
    pump(f);
    expect_ok(&f->resp[i], (const uint8_t *)"ok", 2);
    /* And once the stream is closed and gone. */
    rpc_conn_reply(f->c, sid, RPC_OK, NULL, dup_bytes("again", 5), 5);
    pump(f);
    expect_ok(&f->resp[i], (const uint8_t *)"ok", 2);
    assert_int_equal(rpc_conn_pending(f->c), 0);
}

static void test_error_reply(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[] = {1, 2, 3};
    unsigned i;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    i = submit_call(f, "/etcdserverpb.KV/Range", msg, sizeof(msg), 0);
    pump(f);
    assert_int_equal(f->n_calls, 1);
    /* A body handed with an error is not sent (but is freed). */
    rpc_conn_reply(f->c, f->resp[i].sid, RPC_INVALID_ARGUMENT, "bad\tkey 100% \x7f\xc3\xa9\n~ok",
                   dup_bytes("zz", 2), 2);
    assert_int_equal(rpc_conn_pending(f->c), 0);
    pump(f);
    expect_error(&f->resp[i], RPC_INVALID_ARGUMENT, "bad%09key 100%25 %7F%C3%A9%0A~ok");
    assert_int_equal(f->resp[i].data_frames, 0);
    assert_true(f->resp[i].closed);
    assert_int_equal(f->resp[i].close_code, NGHTTP2_NO_ERROR);

    /* A NULL message is an empty grpc-message. */
    i = submit_call(f, "/etcdserverpb.KV/Range", msg, sizeof(msg), 0);
    pump(f);
    rpc_conn_reply(f->c, f->resp[i].sid, RPC_UNAVAILABLE, NULL, NULL, 0);
    pump(f);
    expect_error(&f->resp[i], RPC_UNAVAILABLE, "");
}

/* One message cut into many DATA frames, the prefix itself split too. */
static void test_split_message(void **state)
{
    struct fx *f = *state;
    static const size_t chunks[] = {1, 2, 3, 7, 4096};
    uint8_t msg[10000];
    unsigned idx[5];

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    fill_pattern(msg, sizeof(msg), 3);
    for (unsigned k = 0; k < 5; k++)
        idx[k] = submit_call(f, "/etcdserverpb.KV/Put", msg, sizeof(msg), chunks[k]);
    pump(f);
    assert_int_equal(f->n_calls, 5);
    for (unsigned k = 0; k < 5; k++) {
        const struct call *cl = call_for(f, f->resp[idx[k]].sid);
        assert_non_null(cl);
        assert_string_equal(cl->path, "/etcdserverpb.KV/Put");
        assert_int_equal(cl->len, sizeof(msg));
        assert_memory_equal(cl->msg, msg, sizeof(msg));
    }
    assert_int_equal(rpc_conn_pending(f->c), 5);
    for (unsigned k = 0; k < 5; k++)
        rpc_conn_reply(f->c, f->resp[idx[k]].sid, RPC_OK, NULL, NULL, 0);
    pump(f);
    for (unsigned k = 0; k < 5; k++)
        expect_ok(&f->resp[idx[k]], NULL, 0);
    assert_int_equal(rpc_conn_pending(f->c), 0);
}

/* Length 0 both ways: a valid message, not "no message". */
static void test_empty_message(void **state)
{
    struct fx *f = *state;
    unsigned i;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    i = submit_call(f, "/etcdserverpb.Maintenance/Status", NULL, 0, 0);
    pump(f);
    assert_int_equal(f->n_calls, 1);
    assert_int_equal(f->calls[0].len, 0);
    assert_string_equal(f->calls[0].path, "/etcdserverpb.Maintenance/Status");
    rpc_conn_reply(f->c, f->resp[i].sid, RPC_OK, NULL, NULL, 0);
    pump(f);
    expect_ok(&f->resp[i], NULL, 0);
    assert_int_equal(f->resp[i].data_frames, 1);
    assert_int_equal(rpc_conn_pending(f->c), 0);
}

/* 1 MiB each way with a 1 MiB limit (the boundary is inclusive); the
 * server's output is taken in odd-sized slices, as a short send would. */
static void test_large_message(void **state)
{
    struct fx *f = *state;
    const size_t len = 1u << 20;
    uint8_t *msg = f->scratch[0] = malloc(len);
    uint8_t *reply = f->scratch[1] = malloc(len);
    unsigned i;

    assert_non_null(msg);
    assert_non_null(reply);
    fill_pattern(msg, len, 4);
    fill_pattern(reply, len, 5);
    fx_open(f, len);
    f->out_slice_bytes = 4093;
    i = submit_call(f, "/etcdserverpb.KV/Put", msg, len, 0);
    pump(f);
    assert_int_equal(f->n_calls, 1);
    assert_int_equal(f->calls[0].len, len);
    assert_memory_equal(f->calls[0].msg, msg, len);
    rpc_conn_reply(f->c, f->resp[i].sid, RPC_OK, NULL, dup_bytes(reply, len), len);
    pump(f);
    expect_ok(&f->resp[i], reply, len);
    assert_true(f->resp[i].data_frames > 1);
    assert_int_equal(rpc_conn_pending(f->c), 0);
}

/* Many streams open at once, answered in a scrambled order. */
static void test_concurrent_out_of_order(void **state)
{
    struct fx *f = *state;
    enum { N = 200 };
    unsigned order[N];
    uint8_t msg[N + 16];

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    for (unsigned k = 0; k < N; k++) {
        int n = snprintf((char *)msg, sizeof(msg), "req-%u-", k);
        memset(msg + n, (int)k, k); /* distinct length and content */
        submit_call(f, k % 2 ? "/etcdserverpb.KV/Range" : "/etcdserverpb.KV/Put", msg,
                    (size_t)n + k, k % 3 == 0 ? 5 : 0);
    }
    pump(f);
    assert_int_equal(f->n_calls, N);
    assert_int_equal(rpc_conn_pending(f->c), N);
    for (unsigned k = 0; k < N; k++) {
        const struct call *cl = call_for(f, f->resp[k].sid);
        int n = snprintf((char *)msg, sizeof(msg), "req-%u-", k);
        memset(msg + n, (int)k, k);
        assert_non_null(cl);
        assert_string_equal(cl->path, k % 2 ? "/etcdserverpb.KV/Range" : "/etcdserverpb.KV/Put");
        assert_int_equal(cl->len, (size_t)n + k);
        assert_memory_equal(cl->msg, msg, cl->len);
    }

    /* A fixed scramble: Fisher-Yates with a small LCG. */
    for (unsigned k = 0; k < N; k++)
        order[k] = k;
    for (unsigned k = N - 1, x = 12345; k > 0; k--) {
        x = x * 1103515245u + 12345u;
        unsigned j = (x >> 8) % (k + 1), t = order[k];
        order[k] = order[j];
        order[j] = t;
    }
    for (unsigned r = 0; r < N; r++) {
        unsigned k = order[r];
        const struct call *cl = call_for(f, f->resp[k].sid);
        /* The reply echoes the request; every 7th is an error. */
        if (k % 7 == 0)
            rpc_conn_reply(f->c, f->resp[k].sid, RPC_NOT_FOUND, "nope", NULL, 0);
        else
            rpc_conn_reply(f->c, f->resp[k].sid, RPC_OK, NULL, dup_bytes(cl->msg, cl->len),
                           cl->len);
        assert_int_equal(rpc_conn_pending(f->c), N - 1 - r);
        if (r == N / 2) {
            pump(f);
            for (unsigned q = 0; q < N; q++)
                assert_int_equal(f->resp[q].closed, f->resp[q].headers_frames > 0);
        }
    }
    pump(f);
    for (unsigned k = 0; k < N; k++) {
        const struct call *cl = call_for(f, f->resp[k].sid);
        if (k % 7 == 0)
            expect_error(&f->resp[k], RPC_NOT_FOUND, "nope");
        else
            expect_ok(&f->resp[k], cl->msg, cl->len);
    }
    assert_int_equal(rpc_conn_pending(f->c), 0);
}

/* Over max_msg_bytes: RESOURCE_EXHAUSTED with gRPC's own wording, naming
 * the message's declared length, and nothing reaches on_request. The
 * connection stays usable. */
static void test_too_large(void **state)
{
    struct fx *f = *state;
    static const struct {
        size_t len;
        size_t chunk;
    } cases[] = {
        {1001, 0},   /* whole message in one DATA frame */
        {1001, 3},   /* prefix split, limit crossed by the last byte */
        {5000, 100}, /* limit crossed mid-message */
        {100000, 0}, /* first DATA frame (16 KiB) already over the limit */
    };
    uint8_t *msg = f->scratch[0] = malloc(100000);
    char want[128];
    unsigned i;

    assert_non_null(msg);
    fill_pattern(msg, 100000, 6);
    fx_open(f, 1000);
    for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        i = submit_call(f, "/etcdserverpb.KV/Put", msg, cases[k].len, cases[k].chunk);
        pump(f);
        snprintf(want, sizeof(want), "grpc: received message larger than max (%zu vs. 1000)",
                 cases[k].len);
        expect_error(&f->resp[i], RPC_RESOURCE_EXHAUSTED, want);
        assert_true(f->resp[i].closed);
        assert_int_equal(f->n_calls, 0);
        assert_int_equal(rpc_conn_pending(f->c), 0);
    }
    /* Exactly at the limit still passes. */
    i = submit_call(f, "/etcdserverpb.KV/Put", msg, 1000, 0);
    pump(f);
    assert_int_equal(f->n_calls, 1);
    assert_memory_equal(f->calls[0].msg, msg, 1000);
    rpc_conn_reply(f->c, f->resp[i].sid, RPC_OK, NULL, NULL, 0);
    pump(f);
    expect_ok(&f->resp[i], NULL, 0);
    assert_true(rpc_conn_alive(f->c));
}

/* Compression is not accepted: the flag set (or any other payload format
 * byte) is INTERNAL, as in grpc-go without a grpc-encoding. */
static void test_compressed_flag(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[] = {0x0a, 0x01, 'k'};
    static const uint8_t flags[] = {1, 2, 0x80};
    size_t blen;
    uint8_t *b;
    unsigned i;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    for (unsigned k = 0; k < sizeof(flags); k++) {
        b = grpc_frame(flags[k], sizeof(msg), msg, sizeof(msg), &blen);
        i = submit_raw(f, "POST", "/etcdserverpb.KV/Range", "application/grpc", b, blen, 0);
        pump(f);
        expect_error(&f->resp[i], RPC_INTERNAL, NULL);
    }
    assert_int_equal(f->n_calls, 0);
    assert_int_equal(rpc_conn_pending(f->c), 0);
}

/* A length prefix that promises more than the body holds is a truncated
 * message (grpc-go: UNKNOWN "unexpected EOF"); one that promises more than
 * max_msg_bytes is refused from the prefix alone. Bytes after the first
 * message are ignored, as grpc-go's unary server ignores them (h2.c's
 * documented choice): the first message alone is dispatched. */
static void test_bad_length_prefix(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    static const uint32_t shorter[] = {9, 0};
    size_t blen;
    uint8_t *b;
    unsigned i;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    b = grpc_frame(0, 11, msg, sizeof(msg), &blen);
    i = submit_raw(f, "POST", "/etcdserverpb.KV/Range", "application/grpc", b, blen, 0);
    pump(f);
    expect_error(&f->resp[i], RPC_UNKNOWN, NULL);

    b = grpc_frame(0, 0xffffffffu, msg, sizeof(msg), &blen);
    i = submit_raw(f, "POST", "/etcdserverpb.KV/Range", "application/grpc", b, blen, 0);
    pump(f);
    expect_error(&f->resp[i], RPC_RESOURCE_EXHAUSTED,
                 "grpc: received message larger than max (4294967295 vs. 4194304)");
    assert_int_equal(f->n_calls, 0);

    for (unsigned k = 0; k < 2; k++) {
        b = grpc_frame(0, shorter[k], msg, sizeof(msg), &blen);
        i = submit_raw(f, "POST", "/etcdserverpb.KV/Range", "application/grpc", b, blen, 0);
        pump(f);
        assert_int_equal(f->n_calls, k + 1);
        assert_int_equal(f->calls[k].sid, f->resp[i].sid);
        assert_int_equal(f->calls[k].len, shorter[k]);
        if (shorter[k] != 0)
            assert_memory_equal(f->calls[k].msg, msg, shorter[k]);
        rpc_conn_reply(f->c, f->resp[i].sid, RPC_OK, NULL, NULL, 0);
    }
    pump(f);
    assert_int_equal(rpc_conn_pending(f->c), 0);
}

/* No message: HEADERS only, an empty DATA frame, a partial prefix. */
static void test_no_message(void **state)
{
    struct fx *f = *state;
    unsigned i;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    i = submit_raw(f, "POST", "/etcdserverpb.KV/Range", "application/grpc", NULL, 0, 0);
    pump(f);
    expect_error(&f->resp[i], RPC_UNKNOWN, NULL);

    i = submit_raw(f, "POST", "/etcdserverpb.KV/Range", "application/grpc", dup_bytes("", 0), 0, 0);
    pump(f);
    expect_error(&f->resp[i], RPC_UNKNOWN, NULL);

    i = submit_raw(f, "POST", "/etcdserverpb.KV/Range", "application/grpc",
                   dup_bytes("\0\0\0\0", 4), 4, 1);
    pump(f);
    expect_error(&f->resp[i], RPC_UNKNOWN, NULL);
    assert_int_equal(f->n_calls, 0);
    assert_int_equal(rpc_conn_pending(f->c), 0);
}

/* Not a gRPC call: refused UNIMPLEMENTED, never dispatched. The accepted
 * content-type variants are dispatched. */
static void test_not_grpc(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[] = {0x0a, 0x01, 'k'};
    static const char *bad_ct[] = {"application/json", "application/grpcx", "application/grp",
                                   "text/plain", NULL};
    static const char *good_ct[] = {"application/grpc+proto", "application/grpc; charset=utf-8"};
    char long_path[RPC_PATH_BYTES_MAX + 8];
    size_t blen;
    unsigned i;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    for (unsigned k = 0; k < 5; k++) {
        uint8_t *b = grpc_frame(0, sizeof(msg), msg, sizeof(msg), &blen);
        i = submit_raw(f, "POST", "/etcdserverpb.KV/Range", bad_ct[k], b, blen, 0);
        pump(f);
        expect_error(&f->resp[i], RPC_UNIMPLEMENTED, NULL);
    }
    /* GET, without and with a body. */
    i = submit_raw(f, "GET", "/etcdserverpb.KV/Range", "application/grpc", NULL, 0, 0);
    pump(f);
    expect_error(&f->resp[i], RPC_UNIMPLEMENTED, NULL);
    i = submit_raw(f, "PUT", "/etcdserverpb.KV/Range", "application/grpc",
                   grpc_frame(0, sizeof(msg), msg, sizeof(msg), &blen), blen, 0);
    pump(f);
    expect_error(&f->resp[i], RPC_UNIMPLEMENTED, NULL);
    /* A path that does not fit. */
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[RPC_PATH_BYTES_MAX] = '\0';
    i = submit_raw(f, "POST", long_path, "application/grpc",
                   grpc_frame(0, sizeof(msg), msg, sizeof(msg), &blen), blen, 0);
    pump(f);
    expect_error(&f->resp[i], RPC_UNIMPLEMENTED, NULL);
    assert_int_equal(f->n_calls, 0);
    assert_int_equal(rpc_conn_pending(f->c), 0);

    /* The longest path that fits is delivered whole. */
    long_path[RPC_PATH_BYTES_MAX - 1] = '\0';
    submit_call(f, long_path, msg, sizeof(msg), 0);
    for (unsigned k = 0; k < 2; k++)
        submit_raw(f, "POST", "/etcdserverpb.KV/Range", good_ct[k],
                   grpc_frame(0, sizeof(msg), msg, sizeof(msg), &blen), blen, 0);
    pump(f);
    assert_int_equal(f->n_calls, 3);
    assert_string_equal(call_for(f, f->resp[f->n_streams - 3].sid)->path, long_path);
    for (unsigned k = 0; k < 3; k++)
        rpc_conn_reply(f->c, f->calls[k].sid, RPC_OK, NULL, NULL, 0);
    pump(f);
    for (unsigned k = 1; k <= 3; k++)
        expect_ok(&f->resp[f->n_streams - k], NULL, 0);
}

/* The client resets a stream while the core works on it: the late reply is
 * dropped (body freed: ASan), pending goes back to 0, the connection lives. */
static void test_reset_then_reply(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[] = {7, 7, 7};
    unsigned i, j;
    int32_t sid;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    i = submit_call(f, "/etcdserverpb.KV/Put", msg, sizeof(msg), 0);
    j = submit_call(f, "/etcdserverpb.KV/Put", msg, sizeof(msg), 0);
    pump(f);
    assert_int_equal(f->n_calls, 2);
    assert_int_equal(rpc_conn_pending(f->c), 2);
    sid = f->resp[i].sid;
    assert_int_equal(nghttp2_submit_rst_stream(f->cl, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL), 0);
    pump(f);
    assert_true(f->resp[i].closed);
    assert_int_equal(rpc_conn_pending(f->c), 1);

    rpc_conn_reply(f->c, sid, RPC_OK, NULL, dup_bytes("late reply", 10), 10);
    assert_int_equal(rpc_conn_pending(f->c), 1);
    pump(f);
    assert_int_equal(f->resp[i].headers_frames, 0);
    assert_int_equal(f->resp[i].data_len, 0);
    assert_int_equal(f->resp[i].close_code, NGHTTP2_CANCEL);

    rpc_conn_reply(f->c, f->resp[j].sid, RPC_OK, NULL, dup_bytes("fine", 4), 4);
    assert_int_equal(rpc_conn_pending(f->c), 0);
    pump(f);
    expect_ok(&f->resp[j], (const uint8_t *)"fine", 4);
    assert_true(rpc_conn_alive(f->c));
}

/* The reset arrives after the reply was submitted but before it is sent:
 * the queued body must be freed with the stream (ASan). */
static void test_reset_after_reply(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[] = {1};
    const size_t len = 512u << 10;
    uint8_t *reply = malloc(len); /* handed to rpc_conn_reply */
    unsigned i;

    assert_non_null(reply);
    fill_pattern(reply, len, 7);
    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    i = submit_call(f, "/etcdserverpb.KV/Range", msg, 1, 0);
    pump(f);
    rpc_conn_reply(f->c, f->resp[i].sid, RPC_OK, NULL, reply, len);
    assert_int_equal(
        nghttp2_submit_rst_stream(f->cl, NGHTTP2_FLAG_NONE, f->resp[i].sid, NGHTTP2_CANCEL), 0);
    pump(f);
    assert_true(f->resp[i].closed);
    assert_false(f->resp[i].end_stream);
    assert_int_equal(rpc_conn_pending(f->c), 0);
}

/* Destroying a connection with requests in flight (the client went away)
 * frees every stream's state, answered or not. Only ASan/LSan can see a
 * failure here: every other test leaves no stream open at destroy, so a
 * leak report naming on_begin_headers points at this test. */
static void test_destroy_with_pending(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[] = {1, 2};
    unsigned i;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    i = submit_call(f, "/etcdserverpb.KV/Put", msg, sizeof(msg), 0);
    submit_call(f, "/etcdserverpb.KV/Put", msg, sizeof(msg), 0);
    pump(f);
    assert_int_equal(rpc_conn_pending(f->c), 2);
    /* One answered but not yet sent, one still with the core. */
    rpc_conn_reply(f->c, f->resp[i].sid, RPC_OK, NULL, dup_bytes("abc", 3), 3);
    assert_int_equal(rpc_conn_pending(f->c), 1);
    rpc_conn_destroy(f->c);
    f->c = NULL;
}

/* A client GOAWAY: the session ends once the in-flight call is answered. */
static void test_goaway(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[] = {9};
    unsigned i;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    i = submit_call(f, "/etcdserverpb.KV/Put", msg, 1, 0);
    pump(f);
    assert_int_equal(nghttp2_submit_goaway(f->cl, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0),
                     0);
    pump(f);
    assert_true(rpc_conn_alive(f->c));
    rpc_conn_reply(f->c, f->resp[i].sid, RPC_OK, NULL, dup_bytes("bye", 3), 3);
    pump(f);
    expect_ok(&f->resp[i], (const uint8_t *)"bye", 3);
    assert_false(rpc_conn_alive(f->c));
}

static void test_garbage_preface(void **state)
{
    struct fx *f = *state;
    static const char http1[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    static const char almost[] = "PRI * HTTP/2.0\r\n\r\nSN\r\n\r\n";
    size_t len;

    f->c = rpc_conn_create(&test_ops, f, MAX_MSG_DEFAULT_BYTES);
    assert_non_null(f->c);
    assert_int_equal(rpc_conn_feed(f->c, (const uint8_t *)http1, sizeof(http1) - 1), -1);
    assert_int_equal(f->n_calls, 0);
    rpc_conn_destroy(f->c);

    f->c = rpc_conn_create(&test_ops, f, MAX_MSG_DEFAULT_BYTES);
    assert_non_null(f->c);
    assert_int_equal(rpc_conn_feed(f->c, (const uint8_t *)almost, sizeof(almost) - 1), -1);
    rpc_conn_destroy(f->c);

    /* The server's own preface is ready before the client says anything. */
    f->c = rpc_conn_create(&test_ops, f, MAX_MSG_DEFAULT_BYTES);
    assert_non_null(f->c);
    rpc_conn_output(f->c, &len);
    assert_true(len >= 9);
    assert_int_equal(rpc_conn_feed(f->c, (const uint8_t *)"\x16\x03\x01\x02\x00", 5), -1);
}

/* ---- streaming calls ---- */

#define STREAM_PATH "/test.Stream/Bidi"

/* Opens a streaming call: HEADERS now, DATA whenever client_send adds
 * bytes, END_STREAM at client_half_close. */
static unsigned submit_stream(struct fx *f, const char *path, size_t chunk)
{
    unsigned i = submit_raw(f, "POST", path, "application/grpc", dup_bytes("", 0), 0, chunk);

    f->body[i].more = true;
    return i;
}

static void body_append(struct req_body *b, const uint8_t *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap > 64 ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        b->buf = realloc(b->buf, cap);
        assert_non_null(b->buf);
        b->cap = cap;
    }
    if (n != 0)
        memcpy(b->buf + b->len, p, n);
    b->len += n;
}

static void client_resume(struct fx *f, unsigned i)
{
    if (f->body[i].deferred) {
        f->body[i].deferred = false;
        assert_int_equal(nghttp2_session_resume_data(f->cl, f->resp[i].sid), 0);
    }
}

/* Adds raw bytes to a stream's request body. */
static void client_raw(struct fx *f, unsigned i, const uint8_t *p, size_t n)
{
    body_append(&f->body[i], p, n);
    client_resume(f, i);
}

/* Adds one length-prefixed message. */
static void client_send(struct fx *f, unsigned i, const uint8_t *msg, size_t len)
{
    size_t blen;
    uint8_t *b = grpc_frame(0, (uint32_t)len, msg, len, &blen);

    client_raw(f, i, b, blen);
    free(b);
}

static void client_half_close(struct fx *f, unsigned i)
{
    f->body[i].more = false;
    if (f->body[i].deferred) {
        client_resume(f, i);
    }
}

/* Events of one stream of a kind, and the n-th message event. */
static unsigned sev_count(const struct fx *f, int32_t sid, char kind)
{
    unsigned n = 0;

    for (unsigned k = 0; k < f->n_sevs; k++)
        n += f->sevs[k].sid == sid && f->sevs[k].kind == kind;
    return n;
}

static const struct sev *sev_msg(const struct fx *f, int32_t sid, unsigned nth)
{
    for (unsigned k = 0; k < f->n_sevs; k++) {
        if (f->sevs[k].sid == sid && f->sevs[k].kind == SEV_MSG && nth-- == 0)
            return &f->sevs[k];
    }
    return NULL;
}

/* The response data of a stream is exactly these messages, in order. */
static void expect_msgs(const struct resp *r, const uint8_t *const *msgs, const size_t *lens,
                        unsigned n)
{
    size_t off = 0;

    for (unsigned k = 0; k < n; k++) {
        assert_true(off + 5 <= r->data_len);
        assert_int_equal(r->data[off], 0);
        assert_int_equal(((uint32_t)r->data[off + 1] << 24) | ((uint32_t)r->data[off + 2] << 16) |
                             ((uint32_t)r->data[off + 3] << 8) | r->data[off + 4],
                         lens[k]);
        off += 5;
        assert_true(off + lens[k] <= r->data_len);
        if (lens[k] != 0)
            assert_memory_equal(r->data + off, msgs[k], lens[k]);
        off += lens[k];
    }
    assert_int_equal(off, r->data_len);
}

/* Ended with trailers (after HEADERS and messages): grpc-status `code`. */
static void expect_trailers(const struct resp *r, int code, const char *message)
{
    assert_int_equal(r->status, 200);
    assert_string_equal(r->ctype, "application/grpc");
    assert_int_equal(r->headers_frames, 2);
    assert_int_equal(r->grpc_status, code);
    assert_int_equal(r->grpc_status_cat, NGHTTP2_HCAT_HEADERS);
    assert_true(r->grpc_status_end);
    assert_true(r->end_stream);
    assert_int_equal(r->has_grpc_message, message != NULL);
    if (message != NULL)
        assert_string_equal(r->grpc_message, message);
}

/* Several client messages split oddly (prefixes cut, several per frame, one
 * bigger than a frame), each delivered once and in order; server messages
 * before and after; client half-close, then server messages and the end. */
static void test_stream_bidi(void **state)
{
    struct fx *f = *state;
    static const size_t lens[] = {0, 1, 4, 5, 100, 20000, 3, 0};
    static const size_t chunks[] = {1, 2, 3, 7, 0};
    enum { NM = sizeof(lens) / sizeof(lens[0]) };
    uint8_t *big = f->scratch[0] = malloc(20000);
    const uint8_t *out[3] = {(const uint8_t *)"first", (const uint8_t *)"", big};
    const size_t out_len[3] = {5, 0, 20000};
    unsigned idx[5];

    assert_non_null(big);
    fill_pattern(big, 20000, 10);
    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    for (unsigned s = 0; s < 5; s++)
        idx[s] = submit_stream(f, STREAM_PATH, chunks[s]);
    pump(f);
    for (unsigned s = 0; s < 5; s++) {
        int32_t sid = f->resp[idx[s]].sid;
        assert_int_equal(sev_count(f, sid, SEV_OPEN), 1);
        /* Nothing is sent before the first message. */
        assert_int_equal(f->resp[idx[s]].headers_frames, 0);
        assert_int_equal(rpc_conn_stream_send(f->c, sid, dup_bytes("first", 5), 5), 0);
        assert_int_equal(rpc_conn_stream_queued(f->c, sid), 10);
    }
    assert_int_equal(rpc_conn_streams_open(f->c), 5);
    pump(f);
    for (unsigned s = 0; s < 5; s++) {
        assert_int_equal(f->resp[idx[s]].headers_frames, 1);
        assert_int_equal(rpc_conn_stream_queued(f->c, f->resp[idx[s]].sid), 0);
        expect_msgs(&f->resp[idx[s]], out, out_len, 1);
        /* All messages queued at once: several per DATA frame when the
         * chunk allows it. */
        for (unsigned k = 0; k < NM; k++) {
            uint8_t m[20000];
            fill_pattern(m, lens[k], k);
            client_send(f, idx[s], m, lens[k]);
        }
    }
    pump(f);
    for (unsigned s = 0; s < 5; s++) {
        int32_t sid = f->resp[idx[s]].sid;
        assert_int_equal(sev_count(f, sid, SEV_MSG), NM);
        for (unsigned k = 0; k < NM; k++) {
            uint8_t m[20000];
            const struct sev *e = sev_msg(f, sid, k);
            fill_pattern(m, lens[k], k);
            assert_int_equal(e->len, lens[k]);
            if (lens[k] != 0)
                assert_memory_equal(e->msg, m, lens[k]);
        }
        assert_int_equal(sev_count(f, sid, SEV_HALF), 0);
        assert_int_equal(rpc_conn_stream_send(f->c, sid, NULL, 0), 0);
        client_half_close(f, idx[s]);
    }
    pump(f);
    for (unsigned s = 0; s < 5; s++) {
        int32_t sid = f->resp[idx[s]].sid;
        assert_int_equal(sev_count(f, sid, SEV_HALF), 1);
        assert_int_equal(sev_count(f, sid, SEV_CLOSE), 0);
        assert_false(f->resp[idx[s]].end_stream);
        /* After the client's end the server still sends, then ends. */
        assert_int_equal(rpc_conn_stream_send(f->c, sid, dup_bytes(big, 20000), 20000), 0);
        rpc_conn_stream_end(f->c, sid, RPC_OK, NULL);
        assert_int_equal(rpc_conn_stream_send(f->c, sid, dup_bytes("x", 1), 1), -1);
    }
    pump(f);
    for (unsigned s = 0; s < 5; s++) {
        int32_t sid = f->resp[idx[s]].sid;
        expect_msgs(&f->resp[idx[s]], out, out_len, 3);
        expect_trailers(&f->resp[idx[s]], RPC_OK, NULL);
        assert_true(f->resp[idx[s]].closed);
        assert_int_equal(f->resp[idx[s]].close_code, NGHTTP2_NO_ERROR);
        assert_int_equal(sev_count(f, sid, SEV_CLOSE), 1);
        /* open, messages, half-close, close: in that order */
        assert_int_equal(sev_count(f, sid, SEV_OPEN) + sev_count(f, sid, SEV_HALF), 2);
    }
    assert_int_equal(rpc_conn_streams_open(f->c), 0);
    assert_int_equal(rpc_conn_pending(f->c), 0);
    assert_true(rpc_conn_alive(f->c));
}

/* The server ends first, with an error, while the client still sends:
 * messages, trailers with the status, then RST_STREAM(NO_ERROR); what the
 * client sends after the end is not delivered. */
static void test_stream_server_ends_first(void **state)
{
    struct fx *f = *state;
    const uint8_t *out[1] = {(const uint8_t *)"ev"};
    const size_t out_len[1] = {2};
    unsigned i;
    int32_t sid;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    i = submit_stream(f, STREAM_PATH, 0);
    client_send(f, i, (const uint8_t *)"a", 1);
    pump(f);
    sid = f->resp[i].sid;
    assert_int_equal(sev_count(f, sid, SEV_MSG), 1);
    assert_int_equal(rpc_conn_stream_send(f->c, sid, dup_bytes("ev", 2), 2), 0);
    rpc_conn_stream_end(f->c, sid, RPC_FAILED_PRECONDITION, "gone 100%");
    rpc_conn_stream_end(f->c, sid, RPC_OK, NULL); /* no effect */
    client_send(f, i, (const uint8_t *)"b", 1);
    pump(f);
    expect_msgs(&f->resp[i], out, out_len, 1);
    expect_trailers(&f->resp[i], RPC_FAILED_PRECONDITION, "gone 100%25");
    assert_true(f->resp[i].closed);
    assert_int_equal(f->resp[i].close_code, NGHTTP2_NO_ERROR);
    assert_int_equal(sev_count(f, sid, SEV_MSG), 1);
    assert_int_equal(sev_count(f, sid, SEV_HALF), 0);
    assert_int_equal(sev_count(f, sid, SEV_CLOSE), 1);
    assert_int_equal(rpc_conn_streams_open(f->c), 0);
}

/* Ended inside on_stream_open (the shard's answer for a method with no
 * service yet): a trailers-only answer, the message that came with the
 * HEADERS never delivered, close once. Also with END_STREAM on HEADERS. */
static void test_stream_end_at_open(void **state)
{
    struct fx *f = *state;
    static const uint8_t msg[] = {0x08, 0x01};
    size_t blen;
    uint8_t *b;
    unsigned i, j, h;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    f->end_at_open = true;
    i = submit_stream(f, STREAM_PATH, 0);
    client_send(f, i, msg, sizeof(msg));
    b = grpc_frame(0, sizeof(msg), msg, sizeof(msg), &blen);
    j = submit_raw(f, "POST", STREAM_PATH, "application/grpc", b, blen, 0);
    h = submit_raw(f, "POST", STREAM_PATH, "application/grpc", NULL, 0, 0);
    pump(f);
    for (unsigned k = 0; k < 3; k++) {
        const struct resp *r = &f->resp[k == 0 ? i : k == 1 ? j : h];
        expect_error(r, RPC_UNIMPLEMENTED, "cetcd: method x is not implemented yet");
        assert_true(r->closed);
        assert_int_equal(r->close_code, NGHTTP2_NO_ERROR);
        assert_int_equal(sev_count(f, r->sid, SEV_OPEN), 1);
        assert_int_equal(sev_count(f, r->sid, SEV_MSG), 0);
        assert_int_equal(sev_count(f, r->sid, SEV_HALF), 0);
        assert_int_equal(sev_count(f, r->sid, SEV_CLOSE), 1);
    }
    assert_int_equal(rpc_conn_streams_open(f->c), 0);
    assert_int_equal(f->n_calls, 0);
    /* A streaming path that is not a gRPC call never opens. */
    i = submit_raw(f, "GET", STREAM_PATH, "application/grpc", NULL, 0, 0);
    b = grpc_frame(0, sizeof(msg), msg, sizeof(msg), &blen);
    j = submit_raw(f, "POST", STREAM_PATH, "application/json", b, blen, 0);
    pump(f);
    expect_error(&f->resp[i], RPC_UNIMPLEMENTED, "malformed method name");
    expect_error(&f->resp[j], RPC_UNIMPLEMENTED, "malformed method name");
    assert_int_equal(sev_count(f, f->resp[i].sid, SEV_OPEN), 0);
    assert_int_equal(sev_count(f, f->resp[j].sid, SEV_OPEN), 0);
    assert_int_equal(sev_count(f, f->resp[j].sid, SEV_CLOSE), 0);
}

/* The client resets: on_stream_close once, sends fail, queued output is
 * freed (ASan), the connection lives on. */
static void test_stream_client_reset(void **state)
{
    struct fx *f = *state;
    unsigned i, j;
    int32_t sid;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    f->send_in_close = true;
    i = submit_stream(f, STREAM_PATH, 0);
    j = submit_stream(f, STREAM_PATH, 0);
    pump(f);
    sid = f->resp[i].sid;
    assert_int_equal(rpc_conn_stream_send(f->c, sid, dup_bytes("queued", 6), 6), 0);
    assert_int_equal(nghttp2_submit_rst_stream(f->cl, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL), 0);
    pump(f);
    assert_true(f->resp[i].closed);
    assert_int_equal(sev_count(f, sid, SEV_CLOSE), 1);
    assert_int_equal(rpc_conn_stream_send(f->c, sid, dup_bytes("late", 4), 4), -1);
    assert_int_equal(rpc_conn_stream_queued(f->c, sid), 0);
    rpc_conn_stream_end(f->c, sid, RPC_OK, NULL);
    pump(f);
    assert_int_equal(sev_count(f, sid, SEV_CLOSE), 1);
    /* After a half-close too. */
    sid = f->resp[j].sid;
    client_half_close(f, j);
    pump(f);
    assert_int_equal(sev_count(f, sid, SEV_HALF), 1);
    assert_int_equal(nghttp2_submit_rst_stream(f->cl, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL), 0);
    pump(f);
    assert_int_equal(sev_count(f, sid, SEV_CLOSE), 1);
    assert_int_equal(rpc_conn_streams_open(f->c), 0);
    assert_true(rpc_conn_alive(f->c));
}

/* Destroying the connection closes every opened stream exactly once (and
 * frees their queues and partial input: ASan). */
static void test_stream_destroy(void **state)
{
    struct fx *f = *state;
    enum { N = 6 };
    int32_t sids[N];
    unsigned idx[N];

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    f->send_in_close = true;
    for (unsigned k = 0; k < N; k++)
        idx[k] = submit_stream(f, STREAM_PATH, 0);
    client_raw(f, idx[1], (const uint8_t *)"\0\0\0\0\x10partial", 12); /* partial input */
    client_half_close(f, idx[2]);
    pump(f);
    for (unsigned k = 0; k < N; k++)
        sids[k] = f->resp[idx[k]].sid;
    assert_int_equal(rpc_conn_stream_send(f->c, sids[0], dup_bytes("queued", 6), 6), 0);
    assert_int_equal(rpc_conn_stream_send(f->c, sids[3], dup_bytes("a", 1), 1), 0);
    pump(f);
    assert_int_equal(rpc_conn_stream_send(f->c, sids[3], dup_bytes("b", 1), 1), 0);
    rpc_conn_stream_end(f->c, sids[4], RPC_OK, NULL); /* ended, not yet sent */
    assert_int_equal(rpc_conn_streams_open(f->c), N);
    for (unsigned k = 0; k < N; k++)
        assert_int_equal(sev_count(f, sids[k], SEV_CLOSE), 0);
    rpc_conn_destroy(f->c);
    f->c = NULL;
    for (unsigned k = 0; k < N; k++)
        assert_int_equal(sev_count(f, sids[k], SEV_CLOSE), 1);
}

/* A client that does not read (its windows exhausted, never opened): the
 * server's output stays queued, bounded per stream and per connection;
 * sends past the bound are refused (and their bodies freed). Once the
 * client opens its windows, everything accepted arrives intact and in
 * order, and sends work again. */
static void test_stream_flow_control(void **state)
{
    struct fx *f = *state;
    enum { NS = 5, MSG = 60000 };
    uint8_t *msg = f->scratch[0] = malloc(MSG);
    unsigned idx[NS];
    unsigned accepted[NS] = {0};
    size_t total = 0, len;

    assert_non_null(msg);
    fill_pattern(msg, MSG, 11);
    f->manual_window = true;
    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    for (unsigned s = 0; s < NS; s++)
        idx[s] = submit_stream(f, STREAM_PATH, 0);
    pump(f);
    for (unsigned s = 0; s < NS; s++) {
        int32_t sid = f->resp[idx[s]].sid;
        size_t queued = 0;
        for (;;) {
            uint8_t *b = dup_bytes(msg, MSG);
            if (rpc_conn_stream_send(f->c, sid, b, MSG) != 0)
                break;
            accepted[s]++;
            pump(f); /* the client takes what its windows allow */
            assert_true(rpc_conn_stream_queued(f->c, sid) >= queued);
            queued = rpc_conn_stream_queued(f->c, sid);
            assert_true(accepted[s] < 1000);
        }
        total += rpc_conn_stream_queued(f->c, sid);
        /* Bounded: at most one message past the stream's bound. */
        assert_true(rpc_conn_stream_queued(f->c, sid) < RPC_STREAM_OUT_BYTES_MAX + MSG + 5);
        assert_true(rpc_conn_stream_queued(f->c, sid) >= RPC_STREAM_OUT_BYTES_MAX ||
                    total >= RPC_CONN_STREAM_OUT_BYTES_MAX);
        /* Sent: at most the windows (64 KiB default per stream and per
         * connection); the rest is queued. */
        assert_true(f->resp[idx[s]].data_len <= 65535);
    }
    /* The connection's bound cut the later streams short. */
    assert_true(total < RPC_CONN_STREAM_OUT_BYTES_MAX + MSG + 5);
    assert_true(accepted[NS - 1] < accepted[0]);
    /* Nothing piles up in the connection's output buffer either. */
    rpc_conn_output(f->c, &len);
    assert_int_equal(len, 0);

    /* The client reads: open its windows wide; everything arrives. */
    assert_int_equal(nghttp2_submit_window_update(f->cl, NGHTTP2_FLAG_NONE, 0, 1 << 30), 0);
    for (unsigned s = 0; s < NS; s++) {
        assert_int_equal(
            nghttp2_submit_window_update(f->cl, NGHTTP2_FLAG_NONE, f->resp[idx[s]].sid, 1 << 30),
            0);
    }
    pump(f);
    for (unsigned s = 0; s < NS; s++) {
        int32_t sid = f->resp[idx[s]].sid;
        const uint8_t *msgs[1000];
        size_t lens[1000];
        assert_int_equal(rpc_conn_stream_queued(f->c, sid), 0);
        for (unsigned k = 0; k < accepted[s]; k++) {
            msgs[k] = msg;
            lens[k] = MSG;
        }
        expect_msgs(&f->resp[idx[s]], msgs, lens, accepted[s]);
        assert_int_equal(rpc_conn_stream_send(f->c, sid, NULL, 0), 0);
        rpc_conn_stream_end(f->c, sid, RPC_OK, NULL);
        client_half_close(f, idx[s]);
    }
    pump(f);
    for (unsigned s = 0; s < NS; s++) {
        expect_trailers(&f->resp[idx[s]], RPC_OK, NULL);
        assert_int_equal(f->resp[idx[s]].data_len, (size_t)(accepted[s] * (MSG + 5) + 5));
        assert_int_equal(sev_count(f, f->resp[idx[s]].sid, SEV_CLOSE), 1);
    }
    assert_int_equal(rpc_conn_streams_open(f->c), 0);
}

/* Framing errors on a stream end it as grpc-go does: trailers-only when
 * nothing was sent, trailers after the messages otherwise; messages before
 * the bad one were delivered. */
static void test_stream_bad_input(void **state)
{
    struct fx *f = *state;
    uint8_t *big = f->scratch[0] = malloc(1001);
    const uint8_t *out[1] = {(const uint8_t *)"ok"};
    const size_t out_len[1] = {2};
    unsigned i, j, k, m;
    uint8_t pre[5];

    assert_non_null(big);
    fill_pattern(big, 1001, 12);
    fx_open(f, 1000);
    /* Too large, nothing sent yet: trailers-only, from the prefix alone. */
    i = submit_stream(f, STREAM_PATH, 3);
    client_send(f, i, big, 1000); /* exactly at the limit: fine */
    client_send(f, i, big, 1001);
    pump(f);
    expect_error(&f->resp[i], RPC_RESOURCE_EXHAUSTED,
                 "grpc: received message larger than max (1001 vs. 1000)");
    assert_int_equal(sev_count(f, f->resp[i].sid, SEV_MSG), 1);
    assert_int_equal(sev_msg(f, f->resp[i].sid, 0)->len, 1000);
    assert_int_equal(sev_count(f, f->resp[i].sid, SEV_CLOSE), 1);
    /* Too large after a server message: in the trailers. */
    j = submit_stream(f, STREAM_PATH, 0);
    pump(f);
    assert_int_equal(rpc_conn_stream_send(f->c, f->resp[j].sid, dup_bytes("ok", 2), 2), 0);
    pump(f);
    pre[0] = 0;
    pre[1] = pre[2] = pre[3] = 0xff;
    pre[4] = 0xff;
    client_raw(f, j, pre, 5);
    pump(f);
    expect_msgs(&f->resp[j], out, out_len, 1);
    expect_trailers(&f->resp[j], RPC_RESOURCE_EXHAUSTED,
                    "grpc: received message larger than max (4294967295 vs. 1000)");
    assert_int_equal(sev_count(f, f->resp[j].sid, SEV_CLOSE), 1);
    /* Compressed flag. */
    k = submit_stream(f, STREAM_PATH, 1);
    client_raw(f, k, (const uint8_t *)"\x01\0\0\0\x01z", 6);
    pump(f);
    expect_error(&f->resp[k], RPC_INTERNAL,
                 "grpc: compressed flag set with identity or empty encoding");
    assert_int_equal(sev_count(f, f->resp[k].sid, SEV_MSG), 0);
    /* The client ends in the middle of a message. */
    m = submit_stream(f, STREAM_PATH, 0);
    client_send(f, m, (const uint8_t *)"whole", 5);
    client_raw(f, m, (const uint8_t *)"\0\0\0\0\x09half", 9);
    client_half_close(f, m);
    pump(f);
    expect_error(&f->resp[m], RPC_INTERNAL, "unexpected EOF");
    assert_int_equal(sev_count(f, f->resp[m].sid, SEV_MSG), 1);
    assert_int_equal(sev_count(f, f->resp[m].sid, SEV_HALF), 0);
    assert_int_equal(sev_count(f, f->resp[m].sid, SEV_CLOSE), 1);
    assert_int_equal(rpc_conn_streams_open(f->c), 0);
    assert_true(rpc_conn_alive(f->c));
}

/* Many streams at once (up to the connection's stream cap), echoing. */
static void test_stream_many(void **state)
{
    struct fx *f = *state;
    enum { N = 200, NM = 3 };

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    f->echo = true;
    f->end_on_half = true;
    for (unsigned s = 0; s < N; s++)
        submit_stream(f, STREAM_PATH, s % 4 == 0 ? 3 : 0);
    pump(f);
    assert_int_equal(rpc_conn_streams_open(f->c), N);
    for (unsigned m = 0; m < NM; m++) {
        for (unsigned s = 0; s < N; s++) {
            char b[32];
            int n = snprintf(b, sizeof(b), "s%u-m%u", s, m);
            client_send(f, s, (const uint8_t *)b, (size_t)n);
        }
        pump(f);
    }
    for (unsigned s = 0; s < N; s++)
        client_half_close(f, s);
    pump(f);
    for (unsigned s = 0; s < N; s++) {
        char b[NM][32];
        const uint8_t *msgs[NM];
        size_t lens[NM];
        for (unsigned m = 0; m < NM; m++) {
            lens[m] = (size_t)snprintf(b[m], sizeof(b[m]), "s%u-m%u", s, m);
            msgs[m] = (const uint8_t *)b[m];
        }
        expect_msgs(&f->resp[s], msgs, lens, NM);
        expect_trailers(&f->resp[s], RPC_OK, NULL);
        assert_int_equal(sev_count(f, f->resp[s].sid, SEV_CLOSE), 1);
    }
    assert_int_equal(rpc_conn_streams_open(f->c), 0);
}

/* Unary calls on a connection with open streams are unaffected; a unary
 * reply aimed at a stream is dropped. */
static void test_stream_with_unary(void **state)
{
    struct fx *f = *state;
    const uint8_t *out[1] = {(const uint8_t *)"ev"};
    const size_t out_len[1] = {2};
    unsigned st, u1, u2;

    fx_open(f, MAX_MSG_DEFAULT_BYTES);
    st = submit_stream(f, STREAM_PATH, 0);
    u1 = submit_call(f, "/etcdserverpb.KV/Put", (const uint8_t *)"p", 1, 0);
    client_send(f, st, (const uint8_t *)"w", 1);
    pump(f);
    assert_int_equal(f->n_calls, 1);
    assert_int_equal(rpc_conn_pending(f->c), 1);
    assert_int_equal(sev_count(f, f->resp[st].sid, SEV_MSG), 1);
    rpc_conn_reply(f->c, f->resp[st].sid, RPC_OK, NULL, dup_bytes("no", 2), 2);
    assert_int_equal(rpc_conn_stream_send(f->c, f->resp[u1].sid, dup_bytes("no", 2), 2), -1);
    assert_int_equal(rpc_conn_stream_send(f->c, f->resp[st].sid, dup_bytes("ev", 2), 2), 0);
    u2 = submit_call(f, "/etcdserverpb.KV/Range", (const uint8_t *)"r", 1, 0);
    pump(f);
    rpc_conn_reply(f->c, f->resp[u1].sid, RPC_OK, NULL, dup_bytes("put", 3), 3);
    rpc_conn_reply(f->c, f->resp[u2].sid, RPC_OK, NULL, dup_bytes("range", 5), 5);
    pump(f);
    expect_ok(&f->resp[u1], (const uint8_t *)"put", 3);
    expect_ok(&f->resp[u2], (const uint8_t *)"range", 5);
    expect_msgs(&f->resp[st], out, out_len, 1);
    assert_false(f->resp[st].end_stream);
    assert_int_equal(rpc_conn_pending(f->c), 0);
    assert_int_equal(rpc_conn_streams_open(f->c), 1);
    rpc_conn_stream_end(f->c, f->resp[st].sid, RPC_OK, NULL);
    client_half_close(f, st);
    pump(f);
    expect_trailers(&f->resp[st], RPC_OK, NULL);
    assert_int_equal(rpc_conn_streams_open(f->c), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unary_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_inline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_reply_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compressed_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_length_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_grpc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_then_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_after_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_goaway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_preface, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_bidi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_server_ends_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_end_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_client_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_destroy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_flow_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_with_unary, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
