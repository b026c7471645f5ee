/*
 * shard.c — shard threads, their loops, and the connections they own.
 *
 * Each shard thread runs one loop: wait for completions, dispatch each on
 * the op packed in its user_data, advance the CQ once, then deliver the
 * core's replies, retry the backlog, and (on shard 0) let the core take its
 * turn. Everything in struct shard and struct shard_conn belongs to the
 * shard's thread; the only cross-thread state is in the mailboxes and the
 * eventfds.
 *
 * Connection life: accept -> slot taken, generation bumped -> recv armed.
 * At most one recv and one send are in flight per connection. Closing
 * cancels the recv and waits for the in-flight operations to complete
 * before the socket is closed and the slot freed, so no completion ever
 * refers to freed memory. Replies for a slot whose generation moved on
 * (the client vanished) are dropped and freed.
 *
 * Streaming calls (Watch, LeaseKeepAlive, Observe: stream_methods[]) reach
 * the shard through rpc_conn's on_stream_* callbacks. A method with a
 * service gets an entry in the shard's stream registry (bounded:
 * SHARD_STREAMS_MAX) from open to close, and its service's hooks; the
 * entry is found again through rpc_conn_stream_user(). A method without a
 * service yet is answered at open, trailers-only, with what rpc_dispatch
 * answers for it (UNIMPLEMENTED "cetcd: method ... is not implemented
 * yet"), and takes no entry.
 */
#include "shard.h"

#include "mvcc.h"
#include "rpc.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "listen.h"

enum shard_op {
    OP_ACCEPT = 1,
    OP_RECV = 2,
    OP_SEND = 3,
    OP_WAKE = 4,
    OP_CANCEL = 5,
    OP_NOTIFY = 6,      /* another shard posted to our CQ: mail is waiting */
    OP_NOTIFY_FAIL = 7, /* our MSG_RING to shard `slot` failed */
};

#define RING_ENTRIES    1024
#define BACKLOG_WAIT_NS 200000 /* retry period while a mailbox is full */
#define SPIN_NS         250000 /* longest poll while an answer is due */
#define IDLE_SPIN_NS    50000  /* longest poll after a turn that did work */

/* One open streaming call that has a service. */
struct shard_stream {
    struct shard_conn *conn; /* valid until the service's close hook */
    int32_t stream_id;
    unsigned method; /* index in stream_methods[] */
    void *state;     /* the service's */
    uint32_t index;  /* in shard.streams */
};

/* A streaming method's service: hooks called on the shard thread; `close`
 * exactly once per opened entry, after which the entry is reused. */
struct stream_service {
    void (*open)(struct shard *s, struct shard_stream *ss);
    void (*msg)(struct shard *s, struct shard_stream *ss, const uint8_t *msg, size_t len);
    void (*half_close)(struct shard *s, struct shard_stream *ss);
    void (*close)(struct shard *s, struct shard_stream *ss);
};

struct shard_conn {
    int fd;
    uint32_t slot;
    uint32_t gen;
    struct rpc_conn *rpc;
    bool recv_inflight;
    bool send_inflight;
    bool closing;
    struct shard *shard;
    uint8_t rbuf[SHARD_RECV_BYTES];
};

struct shard {
    unsigned id;
    struct shard_set *set;
    struct ring_loop loop;
    int listen_fds[SHARD_LISTEN_MAX];
    unsigned n_listen;
    struct shard_conn *conns[SHARD_CONNS_MAX]; /* by slot */
    uint32_t gens[SHARD_CONNS_MAX];            /* generation per slot */
    uint32_t free_slots[SHARD_CONNS_MAX];
    uint32_t n_free;
    struct ring_mbox to_core;   /* this shard produces, the core consumes */
    struct ring_mbox from_core; /* the core produces, this shard consumes */
    struct shard_msg *backlog;  /* proposals that found to_core full */
    struct shard_msg *backlog_tail;
    bool core_needs_wake;
    unsigned awaiting; /* proposals sent to the core, not yet answered */
    bool was_busy;     /* the last turn handled completions */
    struct rpc_env env;
    struct shard_stream *streams; /* SHARD_STREAMS_MAX entries */
    uint32_t *free_streams;       /* indexes into streams, a stack */
    uint32_t n_free_streams;
    pthread_t thread;
    /* core only (shard 0's thread): per target shard */
};

struct shard_set {
    unsigned n;
    struct shard *shards;
    const struct shard_core_ops *core_ops;
    void *core_arg;
    struct rpc_member *member;
    struct mvcc_store *store;
    bool pin;                /* pin shard k to CPU k */
    atomic_bool no_msg_ring; /* the kernel refused MSG_RING: use eventfds */
    atomic_bool stop;
    /* Core's view of each shard: replies that found from_core full, and
     * which shards to wake at the next flush. Core thread only. */
    struct shard_msg *reply_backlog[SHARD_MAX];
    struct shard_msg *reply_backlog_tail[SHARD_MAX];
    bool reply_wake[SHARD_MAX];
};

static const struct rpc_conn_ops conn_ops;

void shard_msg_free(struct shard_msg *m)
{
    if (m == NULL)
        return;
    free(m->data);
    free(m);
}

/* ---- connections ---- */

static void conn_arm_recv(struct shard_conn *c)
{
    struct io_uring_sqe *sqe = ring_sqe(&c->shard->loop);

    io_uring_prep_recv(sqe, c->fd, c->rbuf, sizeof(c->rbuf), 0);
    io_uring_sqe_set_data64(sqe, ring_ud(OP_RECV, c->slot, c->gen));
    c->recv_inflight = true;
}

static void conn_free(struct shard_conn *c)
{
    struct shard *s = c->shard;

    rpc_conn_destroy(c->rpc);
    close(c->fd);
    s->conns[c->slot] = NULL;
    s->gens[c->slot]++;
    s->free_slots[s->n_free++] = c->slot;
    free(c);
}

static void conn_close(struct shard_conn *c)
{
    struct io_uring_sqe *sqe;

    if (!c->closing) {
        c->closing = true;
        if (c->recv_inflight) {
            sqe = ring_sqe(&c->shard->loop);
            io_uring_prep_cancel64(sqe, ring_ud(OP_RECV, c->slot, c->gen), 0);
            io_uring_sqe_set_data64(sqe, ring_ud(OP_CANCEL, c->slot, c->gen));
        }
    }
    if (!c->recv_inflight && !c->send_inflight)
        conn_free(c);
}

/* Sends what the HTTP/2 session has queued, if no send is in flight. */
static void conn_flush(struct shard_conn *c)
{
    struct io_uring_sqe *sqe;
    const uint8_t *p;
    size_t len;

    if (c->send_inflight || c->closing)
        return;
    p = rpc_conn_output(c->rpc, &len);
    if (len == 0) {
        if (!rpc_conn_alive(c->rpc))
            conn_close(c);
        return;
    }
    sqe = ring_sqe(&c->shard->loop);
    io_uring_prep_send(sqe, c->fd, p, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ring_ud(OP_SEND, c->slot, c->gen));
    c->send_inflight = true;
}

static void conn_open(struct shard *s, int fd)
{
    struct shard_conn *c;
    uint32_t slot;
    int one = 1;

    if (s->n_free == 0) {
        close(fd); /* at the connection limit: refuse */
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    slot = s->free_slots[--s->n_free];
    c->fd = fd;
    c->slot = slot;
    c->gen = s->gens[slot];
    c->shard = s;
    c->rpc =
        rpc_conn_create(&conn_ops, c, s->set->member->max_request_bytes + RPC_GRPC_OVERHEAD_BYTES);
    if (c->rpc == NULL) {
        s->free_slots[s->n_free++] = slot;
        close(fd);
        free(c);
        return;
    }
    s->conns[slot] = c;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn_arm_recv(c);
    conn_flush(c); /* our SETTINGS */
}

static struct shard_conn *conn_lookup(struct shard *s, uint32_t slot, uint32_t gen)
{
    struct shard_conn *c;

    if (slot >= SHARD_CONNS_MAX)
        return NULL;
    c = s->conns[slot];
    return c != NULL && c->gen == gen ? c : NULL;
}

/* ---- requests ---- */

static void backlog_push(struct shard *s, struct shard_msg *m)
{
    m->next = NULL;
    if (s->backlog_tail != NULL)
        s->backlog_tail->next = m;
    else
        s->backlog = m;
    s->backlog_tail = m;
}

static void propose(struct shard *s, struct shard_conn *c, int32_t sid, struct rpc_result *r)
{
    struct shard_msg *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        free(r->body);
        rpc_conn_reply(c->rpc, sid, RPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory", NULL, 0);
        return;
    }
    m->tag.shard = s->id;
    m->tag.slot = c->slot;
    m->tag.gen = c->gen;
    m->tag.stream_id = sid;
    m->data = r->body;
    m->len = r->len;
    if (s->backlog != NULL || !ring_mbox_push(&s->to_core, m))
        backlog_push(s, m);
    s->core_needs_wake = true;
    s->awaiting++;
}

/* An extra entry a request asked for (the NOSPACE alarm): proposed with
 * stream 0, which the core answers to nobody. */
static void propose_side(struct shard *s, uint8_t *data, size_t len)
{
    struct shard_msg *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        free(data);
        return;
    }
    m->tag.shard = s->id;
    m->data = data;
    m->len = len;
    if (s->backlog != NULL || !ring_mbox_push(&s->to_core, m))
        backlog_push(s, m);
    s->core_needs_wake = true;
}

/* Dispatches a request; `linearized` when it is a read coming back from
 * the core with its read index applied. */
static void serve(struct shard_conn *c, int32_t sid, const char *path, const uint8_t *msg,
                  size_t len, bool linearized)
{
    struct shard *s = c->shard;
    struct rpc_result r;

    s->env.linearized = linearized;
    s->env.require_leader = !linearized && rpc_conn_require_leader(c->rpc, sid);
    rpc_dispatch(&s->env, path, msg, len, &r);
    s->env.linearized = false;
    s->env.require_leader = false;
    if (r.side != NULL)
        propose_side(s, r.side, r.side_len);
    if (r.action == RPC_ACT_PROPOSE) {
        propose(s, c, sid, &r);
    } else if (r.action == RPC_ACT_READ_BARRIER) {
        r.body = rpc_read_barrier_encode(path, msg, len, &r.len);
        if (r.body == NULL)
            rpc_conn_reply(c->rpc, sid, RPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory", NULL,
                           0);
        else
            propose(s, c, sid, &r);
    } else {
        rpc_conn_reply(c->rpc, sid, r.code, r.message, r.body, r.len);
    }
}

static void on_request(void *arg, struct rpc_conn *rc, int32_t sid, const char *path,
                       const uint8_t *msg, size_t len)
{
    (void)rc;
    serve(arg, sid, path, msg, len, false);
}

/* The core says a held read may run: its read index is applied here. */
static void serve_held_read(struct shard_conn *c, struct shard_msg *m)
{
    char path[RPC_PATH_BYTES_MAX + 1];
    const uint8_t *msg;
    size_t len;

    if (rpc_read_barrier_decode(m->data, m->len, path, sizeof(path), &msg, &len) != 0) {
        rpc_conn_reply(c->rpc, m->tag.stream_id, RPC_INTERNAL, "cetcd: bad held read", NULL, 0);
        return;
    }
    serve(c, m->tag.stream_id, path, msg, len, true);
}

/* ---- streaming calls ---- */

/* LeaseKeepAlive: each request message goes to the core (the lease table
 * is the core's) and each answer comes back as one message on the stream,
 * in order. When the client is done sending, the stream ends (status OK)
 * once the answers still owed have been sent. */
struct keepalive {
    uint32_t owed; /* requests sent to the core, not answered yet */
    bool half_closed;
};

static void keepalive_open(struct shard *s, struct shard_stream *ss)
{
    (void)s;
    ss->state = calloc(1, sizeof(struct keepalive));
    if (ss->state == NULL)
        rpc_conn_stream_end(ss->conn->rpc, ss->stream_id, RPC_RESOURCE_EXHAUSTED,
                            "etcdserver: out of memory");
}

static void keepalive_msg(struct shard *s, struct shard_stream *ss, const uint8_t *msg, size_t len)
{
    struct keepalive *k = ss->state;
    struct shard_msg *m;

    if (k == NULL)
        return;
    m = calloc(1, sizeof(*m));
    if (m == NULL || (m->data = malloc(1 + len)) == NULL) {
        free(m);
        rpc_conn_stream_end(ss->conn->rpc, ss->stream_id, RPC_RESOURCE_EXHAUSTED,
                            "etcdserver: out of memory");
        return;
    }
    m->data[0] = RPC_LOCAL_LEASE_KEEPALIVE;
    if (len != 0)
        memcpy(m->data + 1, msg, len);
    m->len = 1 + len;
    m->kind = SHARD_MSG_STREAM;
    m->tag.shard = s->id;
    m->tag.slot = ss->conn->slot;
    m->tag.gen = ss->conn->gen;
    m->tag.stream_id = ss->stream_id;
    if (s->backlog != NULL || !ring_mbox_push(&s->to_core, m))
        backlog_push(s, m);
    s->core_needs_wake = true;
    s->awaiting++;
    k->owed++;
}

static void keepalive_half_close(struct shard *s, struct shard_stream *ss)
{
    struct keepalive *k = ss->state;

    (void)s;
    if (k == NULL)
        return;
    k->half_closed = true;
    if (k->owed == 0)
        rpc_conn_stream_end(ss->conn->rpc, ss->stream_id, RPC_OK, NULL);
}

static void keepalive_close(struct shard *s, struct shard_stream *ss)
{
    (void)s;
    free(ss->state);
}

static const struct stream_service keepalive_svc = {
    .open = keepalive_open,
    .msg = keepalive_msg,
    .half_close = keepalive_half_close,
    .close = keepalive_close,
};

/* The core's answer to one message of a stream: sent on it (OK) or the
 * stream ended with the error. A stream the client has gone from takes
 * nothing (rpc_conn_stream_user finds no entry). */
static void stream_answer(struct shard_conn *c, struct shard_msg *m)
{
    struct shard_stream *ss = rpc_conn_stream_user(c->rpc, m->tag.stream_id);
    struct keepalive *k = ss != NULL ? ss->state : NULL;

    if (ss == NULL || k == NULL)
        return;
    if (k->owed > 0)
        k->owed--;
    if (m->code != RPC_OK) {
        rpc_conn_stream_end(c->rpc, m->tag.stream_id, m->code, m->message);
        return;
    }
    rpc_conn_stream_send(c->rpc, m->tag.stream_id, m->data, m->len);
    m->data = NULL;
    if (k->half_closed && k->owed == 0)
        rpc_conn_stream_end(c->rpc, m->tag.stream_id, RPC_OK, NULL);
}

/* Methods that are streams in etcd's API. No service is plugged in yet. */
static const struct {
    const char *path;
    const struct stream_service *svc; /* NULL: not implemented yet */
} stream_methods[] = {
    {"/etcdserverpb.Watch/Watch", NULL},
    {"/etcdserverpb.Lease/LeaseKeepAlive", &keepalive_svc},
    {"/v3electionpb.Election/Observe", NULL},
};

#define N_STREAM_METHODS (sizeof(stream_methods) / sizeof(stream_methods[0]))

static int stream_method(const char *path)
{
    for (unsigned i = 0; i < N_STREAM_METHODS; i++) {
        if (strcmp(stream_methods[i].path, path) == 0)
            return (int)i;
    }
    return -1;
}

static bool is_streaming(const char *path)
{
    return stream_method(path) >= 0;
}

/* A method without a service: the answer a unary call to it gets today
 * (learner and no-leader refusals included), trailers-only at open. */
static void stream_unimplemented(struct shard_conn *c, int32_t sid, const char *path)
{
    static __thread char msg[RPC_PATH_BYTES_MAX + 64];
    struct shard *s = c->shard;
    struct rpc_result r;

    s->env.require_leader = rpc_conn_require_leader(c->rpc, sid);
    rpc_dispatch(&s->env, path, NULL, 0, &r);
    s->env.require_leader = false;
    if (r.action == RPC_ACT_REPLY && r.code != RPC_OK) {
        rpc_conn_stream_end(c->rpc, sid, r.code, r.message);
        return;
    }
    free(r.body);
    free(r.side);
    snprintf(msg, sizeof(msg), "cetcd: method %s is not implemented yet", path);
    rpc_conn_stream_end(c->rpc, sid, RPC_UNIMPLEMENTED, msg);
}

static void on_stream_open(void *arg, struct rpc_conn *rc, int32_t sid, const char *path)
{
    struct shard_conn *c = arg;
    struct shard *s = c->shard;
    int m = stream_method(path);
    struct shard_stream *ss;

    if (m < 0 || stream_methods[m].svc == NULL) {
        stream_unimplemented(c, sid, path);
        return;
    }
    if (s->n_free_streams == 0) {
        rpc_conn_stream_end(rc, sid, RPC_RESOURCE_EXHAUSTED, "cetcd: too many open streams");
        return;
    }
    ss = &s->streams[s->free_streams[--s->n_free_streams]];
    ss->conn = c;
    ss->stream_id = sid;
    ss->method = (unsigned)m;
    ss->state = NULL;
    rpc_conn_stream_set_user(rc, sid, ss);
    stream_methods[m].svc->open(s, ss);
}

static void on_stream_msg(void *arg, struct rpc_conn *rc, int32_t sid, const char *path,
                          const uint8_t *msg, size_t len)
{
    struct shard_conn *c = arg;
    struct shard_stream *ss = rpc_conn_stream_user(rc, sid);

    (void)path;
    if (ss != NULL)
        stream_methods[ss->method].svc->msg(c->shard, ss, msg, len);
}

static void on_stream_half_close(void *arg, struct rpc_conn *rc, int32_t sid)
{
    struct shard_conn *c = arg;
    struct shard_stream *ss = rpc_conn_stream_user(rc, sid);

    if (ss != NULL)
        stream_methods[ss->method].svc->half_close(c->shard, ss);
}

static void on_stream_close(void *arg, struct rpc_conn *rc, int32_t sid)
{
    struct shard_conn *c = arg;
    struct shard *s = c->shard;
    struct shard_stream *ss = rpc_conn_stream_user(rc, sid);

    if (ss == NULL)
        return;
    stream_methods[ss->method].svc->close(s, ss);
    rpc_conn_stream_set_user(rc, sid, NULL);
    ss->conn = NULL;
    ss->state = NULL;
    s->free_streams[s->n_free_streams++] = ss->index;
}

static const struct rpc_conn_ops conn_ops = {
    .on_request = on_request,
    .is_streaming = is_streaming,
    .on_stream_open = on_stream_open,
    .on_stream_msg = on_stream_msg,
    .on_stream_half_close = on_stream_half_close,
    .on_stream_close = on_stream_close,
};

/* ---- completions ---- */

static void arm_accept(struct shard *s, unsigned i)
{
    struct io_uring_sqe *sqe = ring_sqe(&s->loop);

    io_uring_prep_accept(sqe, s->listen_fds[i], NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ring_ud(OP_ACCEPT, i, 0));
}

static void on_recv(struct shard_conn *c, int res)
{
    c->recv_inflight = false;
    if (c->closing) {
        conn_close(c);
        return;
    }
    if (res <= 0) {
        conn_close(c);
        return;
    }
    if (rpc_conn_feed(c->rpc, c->rbuf, (size_t)res) != 0) {
        conn_close(c);
        return;
    }
    conn_arm_recv(c);
    conn_flush(c);
}

static void on_send(struct shard_conn *c, int res)
{
    c->send_inflight = false;
    if (res < 0 || c->closing) {
        conn_close(c);
        return;
    }
    rpc_conn_consumed(c->rpc, (size_t)res);
    conn_flush(c);
}

static void on_cqe(struct shard *s, uint64_t ud, int res)
{
    unsigned op = ring_ud_op(ud);
    struct shard_conn *c;

    if (op >= SHARD_OP_CORE_BASE) {
        s->set->core_ops->cqe(s->set->core_arg, ud, res);
        return;
    }
    switch (op) {
    case OP_ACCEPT:
        if (res >= 0)
            conn_open(s, res);
        if (!atomic_load(&s->set->stop))
            arm_accept(s, ring_ud_slot(ud));
        break;
    case OP_RECV:
        c = conn_lookup(s, ring_ud_slot(ud), ring_ud_gen(ud));
        if (c != NULL)
            on_recv(c, res);
        break;
    case OP_SEND:
        c = conn_lookup(s, ring_ud_slot(ud), ring_ud_gen(ud));
        if (c != NULL)
            on_send(c, res);
        break;
    case OP_WAKE:
        ring_arm_wake(&s->loop, ring_ud(OP_WAKE, 0, 0));
        break;
    case OP_NOTIFY_FAIL:
        atomic_store(&s->set->no_msg_ring, true);
        ring_wake(&s->set->shards[ring_ud_slot(ud) % s->set->n].loop);
        break;
    default: /* OP_CANCEL: the cancelled op reports itself; OP_NOTIFY: the
              * loop drains its mailboxes every turn anyway */
        break;
    }
}

/* ---- mailboxes ---- */

/* Tells shard `to` that mail is waiting. A MSG_RING operation posts a
 * completion straight into the target's ring (one less step than waking
 * it through its eventfd, and it rides on our next submit instead of a
 * syscall of its own); kernels without it fall back to the eventfd. */
static void notify(struct shard *from, unsigned to)
{
    struct shard_set *set = from->set;
    struct io_uring_sqe *sqe;

    if (atomic_load_explicit(&set->no_msg_ring, memory_order_relaxed)) {
        ring_wake(&set->shards[to].loop);
        return;
    }
    sqe = ring_sqe(&from->loop);
    io_uring_prep_msg_ring(sqe, set->shards[to].loop.uring.ring_fd, 0, ring_ud(OP_NOTIFY, 0, 0), 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, ring_ud(OP_NOTIFY_FAIL, to, 0));
}

static void deliver_replies(struct shard *s)
{
    struct shard_msg *m;
    struct shard_conn *c;

    while ((m = ring_mbox_pop(&s->from_core)) != NULL) {
        if (s->awaiting > 0)
            s->awaiting--;
        c = conn_lookup(s, m->tag.slot, m->tag.gen);
        if (c != NULL && !c->closing && m->kind == SHARD_MSG_READ_GO) {
            serve_held_read(c, m);
            conn_flush(c);
        } else if (c != NULL && !c->closing && m->kind == SHARD_MSG_STREAM) {
            stream_answer(c, m);
            conn_flush(c);
        } else if (c != NULL && !c->closing) {
            rpc_conn_reply(c->rpc, m->tag.stream_id, m->code, m->message, m->data, m->len);
            m->data = NULL;
            conn_flush(c);
        }
        shard_msg_free(m);
    }
}

static void retry_backlog(struct shard *s)
{
    while (s->backlog != NULL && ring_mbox_push(&s->to_core, s->backlog)) {
        s->backlog = s->backlog->next;
        s->core_needs_wake = true;
    }
    if (s->backlog == NULL)
        s->backlog_tail = NULL;
}

static bool has_pending(struct shard *s)
{
    if (s->backlog != NULL)
        return true;
    if (s->id == 0 && s->set->core_ops->busy(s->set->core_arg))
        return true;
    return false;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Work for this loop that arrives without a completion: replies in our
 * mailbox, and on the core, proposals in any shard's mailbox. */
static bool mail_ready(struct shard *s)
{
    unsigned k;

    if (ck_ring_size(&s->from_core.ring) > 0)
        return true;
    if (s->id != 0)
        return false;
    for (k = 0; k < s->set->n; k++) {
        if (ck_ring_size(&s->set->shards[k].to_core.ring) > 0)
            return true;
    }
    return false;
}

/* Before sleeping, a loop polls for a short, bounded time: putting an idle
 * CPU to sleep and waking it costs tens of microseconds on a virtual
 * machine, on every hop of every request. A loop that expects an answer
 * soon (a shard waiting for the core's replies, the core waiting for its
 * WAL write) polls up to SPIN_NS; one that just did work, in case the next
 * request follows at once, up to IDLE_SPIN_NS. An idle loop sleeps at
 * once. Returns true if work turned up. */
static bool spin(struct shard *s, bool was_busy)
{
    bool waiting = s->id == 0 ? s->set->core_ops->waiting(s->set->core_arg) : s->awaiting > 0;
    uint64_t budget = waiting ? SPIN_NS : was_busy ? IDLE_SPIN_NS : 0;
    uint64_t deadline;

    if (budget == 0)
        return false;
    io_uring_submit(&s->loop.uring);
    deadline = now_ns() + budget;
    do {
        if (io_uring_cq_ready(&s->loop.uring) > 0 || mail_ready(s))
            return true;
        /* Let a runnable thread on this CPU go first: the io-wq worker that
         * completes the very write being waited for may be one. */
        sched_yield();
    } while (now_ns() < deadline);
    return false;
}

static void loop_wait(struct shard *s, bool was_busy)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = BACKLOG_WAIT_NS};

    if (has_pending(s))
        io_uring_submit_and_wait_timeout(&s->loop.uring, &cqe, 1, &ts, NULL);
    else if (spin(s, was_busy))
        io_uring_submit(&s->loop.uring);
    else
        io_uring_submit_and_wait(&s->loop.uring, 1);
}

static void loop_turn(struct shard *s)
{
    struct io_uring_cqe *cqe;
    unsigned head;
    unsigned n = 0;

    loop_wait(s, s->was_busy);
    io_uring_for_each_cqe(&s->loop.uring, head, cqe)
    {
        on_cqe(s, cqe->user_data, cqe->res);
        n++;
    }
    io_uring_cq_advance(&s->loop.uring, n);
    s->was_busy = n > 0;
    retry_backlog(s);
    if (s->id == 0)
        s->set->core_ops->turn(s->set->core_arg);
    deliver_replies(s);
    if (s->core_needs_wake && s->id != 0)
        notify(s, 0);
    s->core_needs_wake = false;
}

static void pin(unsigned id)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;

    if (ncpu <= 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(id % (unsigned)ncpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *shard_main(void *arg)
{
    struct shard *s = arg;
    unsigned i;

    if (s->set->pin) {
        pin(s->id);
        ring_loop_iowq_unpin(&s->loop);
    }
    s->env.reader = mvcc_reader_register(s->set->store);
    for (i = 0; i < s->n_listen; i++)
        arm_accept(s, i);
    ring_arm_wake(&s->loop, ring_ud(OP_WAKE, 0, 0));
    while (!atomic_load(&s->set->stop))
        loop_turn(s);
    mvcc_reader_unregister(s->env.reader);
    s->env.reader = NULL;
    return NULL;
}

/* ---- set-up ---- */

static int shard_init(struct shard_set *set, unsigned id, char *err, size_t err_len)
{
    struct shard *s = &set->shards[id];
    uint32_t i;
    int rv;

    s->id = id;
    s->set = set;
    for (i = 0; i < SHARD_CONNS_MAX; i++)
        s->free_slots[i] = SHARD_CONNS_MAX - 1 - i;
    s->n_free = SHARD_CONNS_MAX;
    s->env.member = set->member;
    s->env.store = set->store;
    s->streams = calloc(SHARD_STREAMS_MAX, sizeof(*s->streams));
    s->free_streams = calloc(SHARD_STREAMS_MAX, sizeof(*s->free_streams));
    if (s->streams == NULL || s->free_streams == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    for (i = 0; i < SHARD_STREAMS_MAX; i++) {
        s->streams[i].index = i;
        s->free_streams[i] = SHARD_STREAMS_MAX - 1 - i;
    }
    s->n_free_streams = SHARD_STREAMS_MAX;
    rv = ring_loop_init(&s->loop, RING_ENTRIES);
    if (rv < 0) {
        snprintf(err, err_len, "io_uring_queue_init: %s", strerror(-rv));
        return -1;
    }
    if (ring_mbox_init(&s->to_core, SHARD_MBOX_CAPACITY) != 0 ||
        ring_mbox_init(&s->from_core, SHARD_MBOX_CAPACITY) != 0) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    return 0;
}

struct shard_set *shard_set_create(const struct shard_config *cfg, char *err, size_t err_len)
{
    struct shard_set *set;
    unsigned i;
    unsigned u;

    if (cfg->n_shards == 0 || cfg->n_shards > SHARD_MAX) {
        snprintf(err, err_len, "--shards must be between 1 and %d", SHARD_MAX);
        return NULL;
    }
    set = calloc(1, sizeof(*set));
    if (set == NULL)
        return NULL;
    set->shards = calloc(cfg->n_shards, sizeof(*set->shards));
    if (set->shards == NULL) {
        free(set);
        return NULL;
    }
    set->n = cfg->n_shards;
    set->member = cfg->member;
    set->store = cfg->store;
    set->pin = cfg->pin;
    for (i = 0; i < set->n; i++) {
        if (shard_init(set, i, err, err_len) != 0)
            goto fail;
    }
    for (u = 0; u < cfg->n_listen_urls; u++) {
        int fds[SHARD_MAX];
        if (listen_url(cfg->listen_urls[u], fds, set->n, err, err_len) != 0)
            goto fail;
        for (i = 0; i < set->n; i++)
            set->shards[i].listen_fds[set->shards[i].n_listen++] = fds[i];
    }
    return set;
fail:
    shard_set_destroy(set);
    return NULL;
}

int shard_set_run(struct shard_set *set)
{
    unsigned i;
    struct shard *s0 = &set->shards[0];

    for (i = 1; i < set->n; i++) {
        if (pthread_create(&set->shards[i].thread, NULL, shard_main, &set->shards[i]) != 0)
            return -1;
    }
    shard_main(s0);
    for (i = 1; i < set->n; i++)
        pthread_join(set->shards[i].thread, NULL);
    return 0;
}

void shard_set_stop(struct shard_set *set)
{
    unsigned i;

    atomic_store(&set->stop, true);
    for (i = 0; i < set->n; i++)
        ring_wake(&set->shards[i].loop);
}

static void free_msgs(struct shard_msg *m)
{
    while (m != NULL) {
        struct shard_msg *next = m->next;
        shard_msg_free(m);
        m = next;
    }
}

/* After the loops stopped: frees what the shard still holds. Operations
 * still in flight are cancelled by io_uring_queue_exit() in
 * ring_loop_fini(), which runs before the memory they point to is freed. */
static void shard_fini(struct shard_set *set, struct shard *s)
{
    struct shard_msg *m;
    uint32_t slot;
    unsigned j;

    for (j = 0; j < s->n_listen; j++)
        close(s->listen_fds[j]);
    if (s->loop.wake_fd > 0)
        ring_loop_fini(&s->loop);
    for (slot = 0; slot < SHARD_CONNS_MAX; slot++) {
        struct shard_conn *c = s->conns[slot];
        if (c == NULL)
            continue;
        rpc_conn_destroy(c->rpc); /* closes its streams in the registry */
        close(c->fd);
        free(c);
    }
    free(s->streams);
    free(s->free_streams);
    free_msgs(s->backlog);
    free_msgs(set->reply_backlog[s->id]);
    if (s->to_core.buf != NULL) {
        while ((m = ring_mbox_pop(&s->to_core)) != NULL)
            shard_msg_free(m);
    }
    if (s->from_core.buf != NULL) {
        while ((m = ring_mbox_pop(&s->from_core)) != NULL)
            shard_msg_free(m);
    }
    ring_mbox_fini(&s->to_core);
    ring_mbox_fini(&s->from_core);
}

void shard_set_destroy(struct shard_set *set)
{
    unsigned i;

    if (set == NULL)
        return;
    for (i = 0; i < set->n; i++)
        shard_fini(set, &set->shards[i]);
    free(set->shards);
    free(set);
}

void shard_set_attach_core(struct shard_set *set, const struct shard_core_ops *ops, void *arg)
{
    set->core_ops = ops;
    set->core_arg = arg;
}

unsigned shard_set_count(const struct shard_set *set)
{
    return set->n;
}

/* ---- the core's side of the mailboxes ---- */

struct ring_loop *shard_core_loop(struct shard_set *set)
{
    return &set->shards[0].loop;
}

struct shard_msg *shard_core_pop(struct shard_set *set, unsigned k)
{
    return ring_mbox_pop(&set->shards[k].to_core);
}

static void reply_backlog_push(struct shard_set *set, unsigned k, struct shard_msg *m)
{
    m->next = NULL;
    if (set->reply_backlog_tail[k] != NULL)
        set->reply_backlog_tail[k]->next = m;
    else
        set->reply_backlog[k] = m;
    set->reply_backlog_tail[k] = m;
}

void shard_core_reply(struct shard_set *set, struct shard_msg *m)
{
    unsigned k = m->tag.shard;

    if (k >= set->n) {
        shard_msg_free(m);
        return;
    }
    set->reply_wake[k] = true;
    if (set->reply_backlog[k] != NULL || !ring_mbox_push(&set->shards[k].from_core, m))
        reply_backlog_push(set, k, m);
}

void shard_core_flush(struct shard_set *set)
{
    unsigned k;

    for (k = 0; k < set->n; k++) {
        while (set->reply_backlog[k] != NULL &&
               ring_mbox_push(&set->shards[k].from_core, set->reply_backlog[k])) {
            set->reply_backlog[k] = set->reply_backlog[k]->next;
        }
        if (set->reply_backlog[k] == NULL)
            set->reply_backlog_tail[k] = NULL;
        if (set->reply_wake[k] && k != 0)
            notify(&set->shards[0], k);
        set->reply_wake[k] = false;
    }
}

bool shard_core_replies_waiting(struct shard_set *set)
{
    unsigned k;

    for (k = 0; k < set->n; k++) {
        if (set->reply_backlog[k] != NULL)
            return true;
    }
    return false;
}
