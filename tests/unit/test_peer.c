/*
 * test_peer.c — the Raft peer transport (src/raft/peer.c) over loopback
 * TCP: two or three peer_nets, each on its own ring_loop, driven in this
 * one thread by pump(), which runs peer_turn on a real millisecond clock
 * and hands each ring's completions to its net. Every wait is bounded
 * (PUMP_MS and less); ports come from a random base in 20000-60000 and
 * move on when taken. peer_fetch_members() blocks, so the tests of it
 * run it on a second thread while this one pumps the nets (or plays a
 * raw server); the two share only struct fetch, read after the join.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "le.h"
#include "peer.h"
#include "peer_int.h"
#include "ring.h"

#define OP_BASE   40
#define PUMP_MS   8000 /* longest wait for any one condition */
#define CLUSTER   0xc1u
#define NODES_MAX 3
#define ENTRY_BIG (1u << 20)

/* A received message, deep-copied. */
struct rmsg {
    struct raft_msg m;
    struct raft_entry *ents;
};

struct node {
    struct ring_loop loop;
    struct peer_net *net;
    uint64_t id;
    uint64_t cluster_id;
    unsigned port;
    char url[64];
    char dir[64];
    size_t queue_bytes_max;

    struct rmsg *msgs;
    size_t n_msgs;
    size_t cap_msgs;
    unsigned n_unreachable;
    unsigned snap_ok;
    unsigned snap_fail;
    bool got_snap;
    size_t msgs_at_snap; /* n_msgs when the snapshot arrived */
    struct raft_msg snap_msg;
    char snap_path[256];

    bool serve_members;     /* set before node_start: on_members in its ops */
    bool members_refuse;    /* on_members returns -1 */
    const uint8_t *members; /* what on_members answers */
    size_t members_len;
    unsigned members_calls;

    unsigned n_removed; /* on_removed calls */
    uint64_t removed_by;
    uint64_t mark_on_msg; /* on_msg from this member marks it removed */
};

static struct node nodes[NODES_MAX];
static unsigned n_nodes;
static unsigned next_port;

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- callbacks ---- */

static void copy_msg(struct rmsg *r, const struct raft_msg *m)
{
    uint32_t i;

    r->m = *m;
    r->ents = NULL;
    if (m->n_entries > 0) {
        r->ents = calloc(m->n_entries, sizeof(*r->ents));
        assert_non_null(r->ents);
    }
    for (i = 0; i < m->n_entries; i++) {
        uint8_t *d = NULL;
        r->ents[i] = m->entries[i];
        if (m->entries[i].len > 0) {
            d = malloc(m->entries[i].len);
            assert_non_null(d);
            memcpy(d, m->entries[i].data, m->entries[i].len);
        }
        r->ents[i].data = d;
    }
    r->m.entries = r->ents;
}

static void free_msgs(struct node *nd)
{
    size_t i;
    uint32_t j;

    for (i = 0; i < nd->n_msgs; i++) {
        for (j = 0; j < nd->msgs[i].m.n_entries; j++)
            free((void *)nd->msgs[i].ents[j].data);
        free(nd->msgs[i].ents);
    }
    free(nd->msgs);
    nd->msgs = NULL;
    nd->n_msgs = nd->cap_msgs = 0;
}

static void cb_msg(void *arg, const struct raft_msg *m)
{
    struct node *nd = arg;

    if (nd->n_msgs == nd->cap_msgs) {
        nd->cap_msgs = nd->cap_msgs ? nd->cap_msgs * 2 : 256;
        nd->msgs = realloc(nd->msgs, nd->cap_msgs * sizeof(*nd->msgs));
        assert_non_null(nd->msgs);
    }
    copy_msg(&nd->msgs[nd->n_msgs++], m);
    if (nd->mark_on_msg != 0 && m->from == nd->mark_on_msg)
        peer_mark_removed(nd->net, m->from);
}

static void cb_snapshot(void *arg, const struct raft_msg *m, const char *path)
{
    struct node *nd = arg;

    nd->got_snap = true;
    nd->msgs_at_snap = nd->n_msgs;
    nd->snap_msg = *m;
    snprintf(nd->snap_path, sizeof(nd->snap_path), "%s", path);
}

static void cb_snapshot_sent(void *arg, uint64_t to, bool ok)
{
    struct node *nd = arg;

    (void)to;
    if (ok)
        nd->snap_ok++;
    else
        nd->snap_fail++;
}

static void cb_unreachable(void *arg, uint64_t to)
{
    struct node *nd = arg;

    (void)to;
    nd->n_unreachable++;
}

static int cb_members(void *arg, uint8_t **blob, size_t *len)
{
    struct node *nd = arg;

    nd->members_calls++;
    if (nd->members_refuse)
        return -1;
    *blob = malloc(nd->members_len > 0 ? nd->members_len : 1);
    assert_non_null(*blob);
    if (nd->members_len > 0)
        memcpy(*blob, nd->members, nd->members_len);
    *len = nd->members_len;
    return 0;
}

static void cb_removed(void *arg, uint64_t by)
{
    struct node *nd = arg;

    nd->n_removed++;
    nd->removed_by = by;
}

static const struct peer_ops test_ops = {
    .on_msg = cb_msg,
    .on_snapshot = cb_snapshot,
    .on_snapshot_sent = cb_snapshot_sent,
    .on_unreachable = cb_unreachable,
    .on_removed = cb_removed,
};

static const struct peer_ops members_ops = {
    .on_msg = cb_msg,
    .on_snapshot = cb_snapshot,
    .on_snapshot_sent = cb_snapshot_sent,
    .on_unreachable = cb_unreachable,
    .on_members = cb_members,
    .on_removed = cb_removed,
};

/* ---- nodes ---- */

static int net_start(struct node *nd, char *err, size_t err_len)
{
    struct peer_config cfg;
    const char *url = nd->url;

    memset(&cfg, 0, sizeof(cfg));
    cfg.self_id = nd->id;
    cfg.cluster_id = nd->cluster_id;
    cfg.listen_urls[0] = url;
    cfg.n_listen_urls = 1;
    cfg.loop = &nd->loop;
    cfg.op_base = OP_BASE;
    cfg.snap_recv_dir = nd->dir;
    cfg.queue_bytes_max = nd->queue_bytes_max;
    return peer_net_create(&nd->net, &cfg, nd->serve_members ? &members_ops : &test_ops, nd, err,
                           err_len);
}

/* Starts node i on a free port (port 0 keeps the one it had). */
static void node_start(unsigned i, uint64_t cluster_id, size_t queue_bytes_max, unsigned port)
{
    struct node *nd = &nodes[i];
    char err[256];
    int tries;

    if (nd->id == 0) {
        assert_int_equal(ring_loop_init(&nd->loop, 256), 0);
        snprintf(nd->dir, sizeof(nd->dir), "/tmp/test_peer.XXXXXX");
        assert_non_null(mkdtemp(nd->dir));
        nd->id = i + 1;
    }
    nd->cluster_id = cluster_id;
    nd->queue_bytes_max = queue_bytes_max;
    for (tries = 0; tries < 100; tries++) {
        nd->port = port != 0 ? port : next_port++;
        snprintf(nd->url, sizeof(nd->url), "http://127.0.0.1:%u", nd->port);
        if (net_start(nd, err, sizeof(err)) == 0)
            return;
        assert_non_null(strstr(err, "address already in use"));
        if (port != 0) {
            struct timespec pause = {0, 20 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    fail_msg("no free port: %s", err);
}

static void node_members(unsigned i)
{
    unsigned j;

    for (j = 0; j < n_nodes; j++) {
        const char *u = nodes[j].url;
        if (j != i)
            assert_int_equal(peer_set_member(nodes[i].net, nodes[j].id, &u, 1), 0);
    }
}

/* Drops what a destroyed net left in its ring. */
static void drain(struct node *nd)
{
    struct io_uring_cqe *cqe;
    unsigned head;
    unsigned k = 0;

    io_uring_submit(&nd->loop.uring);
    io_uring_for_each_cqe(&nd->loop.uring, head, cqe)
    {
        k++;
    }
    io_uring_cq_advance(&nd->loop.uring, k);
}

static void node_stop(unsigned i)
{
    struct node *nd = &nodes[i];

    peer_net_destroy(nd->net);
    nd->net = NULL;
    drain(nd);
}

static void cluster_start(unsigned k)
{
    unsigned i;

    n_nodes = k;
    for (i = 0; i < k; i++)
        node_start(i, CLUSTER, 0, 0);
    for (i = 0; i < k; i++)
        node_members(i);
}

static int teardown(void **state)
{
    unsigned i;

    (void)state;
    for (i = 0; i < NODES_MAX; i++) {
        struct node *nd = &nodes[i];
        char cmd[128];
        if (nd->id == 0)
            continue;
        if (nd->net != NULL)
            node_stop(i);
        ring_loop_fini(&nd->loop);
        free_msgs(nd);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", nd->dir);
        assert_int_equal(system(cmd), 0);
        memset(nd, 0, sizeof(*nd));
    }
    n_nodes = 0;
    return 0;
}

/* ---- the loop ---- */

static unsigned reap(struct node *nd)
{
    struct io_uring_cqe *cqe;
    unsigned head;
    unsigned k = 0;

    io_uring_for_each_cqe(&nd->loop.uring, head, cqe)
    {
        unsigned op = ring_ud_op(cqe->user_data);
        if (nd->net != NULL && op >= OP_BASE && op < OP_BASE + PEER_OPS)
            peer_cqe(nd->net, cqe->user_data, cqe->res);
        k++;
    }
    io_uring_cq_advance(&nd->loop.uring, k);
    return k;
}

/* One turn of every node's loop; sleeps briefly if nothing happened. */
static void turn(void)
{
    unsigned i;
    unsigned done = 0;

    for (i = 0; i < NODES_MAX; i++) {
        if (nodes[i].net != NULL)
            peer_turn(nodes[i].net, now_ms());
    }
    for (i = 0; i < NODES_MAX; i++) {
        if (nodes[i].id == 0)
            continue;
        io_uring_submit(&nodes[i].loop.uring);
        done += reap(&nodes[i]);
    }
    if (done == 0) {
        struct timespec pause = {0, 200 * 1000};
        nanosleep(&pause, NULL);
    }
}

typedef bool (*pred_fn)(void);

/* Turns until pred holds or ms pass; returns pred's value. */
static bool pump(pred_fn pred, unsigned ms)
{
    uint64_t deadline = now_ms() + ms;

    while (now_ms() < deadline) {
        if (pred != NULL && pred())
            return true;
        turn();
    }
    return pred != NULL && pred();
}

/* ---- messages ---- */

static uint8_t *big_payload(void)
{
    static uint8_t *p;
    uint32_t i;

    if (p == NULL) {
        p = malloc(ENTRY_BIG);
        assert_non_null(p);
        for (i = 0; i < ENTRY_BIG; i++)
            p[i] = (uint8_t)(i * 7 + (i >> 11));
    }
    return p;
}

static struct raft_entry test_ents[3];

static struct raft_msg make_msg(uint8_t type, uint64_t from, uint64_t to, uint64_t k)
{
    struct raft_msg m;

    memset(&m, 0, sizeof(m));
    m.type = type;
    m.reject = (k & 1) != 0;
    m.from = from;
    m.to = to;
    m.term = 1000 + k;
    m.log_term = 2000 + k;
    m.index = 3000 + k;
    m.commit = 4000 + k;
    m.reject_hint = 5000 + k;
    m.ctx = 0xfeedface00000000ull + k;
    if (type == RAFT_MSG_APP || type == RAFT_MSG_PROP) {
        test_ents[0] = (struct raft_entry){.term = 7, .index = 10, .type = 0, .len = 0};
        test_ents[1] = (struct raft_entry){.term = 7,
                                           .index = 11,
                                           .type = RAFT_ENTRY_CONF,
                                           .len = 5,
                                           .data = (const uint8_t *)"hello"};
        test_ents[2] =
            (struct raft_entry){.term = 8, .index = 12, .len = ENTRY_BIG, .data = big_payload()};
        m.entries = test_ents;
        m.n_entries = 3;
    }
    if (type == RAFT_MSG_SNAP) {
        m.snap.index = 77;
        m.snap.term = 6;
        m.snap.conf.n_voters = 3;
        m.snap.conf.voters[0] = 1;
        m.snap.conf.voters[1] = 2;
        m.snap.conf.voters[2] = 0xffffffffffffffffull;
        m.snap.conf.n_learners = 1;
        m.snap.conf.learners[0] = 0x8000000000000001ull;
    }
    return m;
}

static void assert_msg_equal(const struct raft_msg *a, const struct raft_msg *b)
{
    uint32_t i;

    assert_int_equal(a->type, b->type);
    assert_int_equal(a->reject, b->reject);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_int_equal(a->term, b->term);
    assert_int_equal(a->log_term, b->log_term);
    assert_int_equal(a->index, b->index);
    assert_int_equal(a->commit, b->commit);
    assert_int_equal(a->reject_hint, b->reject_hint);
    assert_int_equal(a->ctx, b->ctx);
    assert_int_equal(a->n_entries, b->n_entries);
    for (i = 0; i < a->n_entries; i++) {
        assert_int_equal(a->entries[i].term, b->entries[i].term);
        assert_int_equal(a->entries[i].index, b->entries[i].index);
        assert_int_equal(a->entries[i].type, b->entries[i].type);
        assert_int_equal(a->entries[i].len, b->entries[i].len);
        if (a->entries[i].len > 0)
            assert_memory_equal(a->entries[i].data, b->entries[i].data, a->entries[i].len);
    }
    assert_int_equal(a->snap.index, b->snap.index);
    assert_int_equal(a->snap.term, b->snap.term);
    assert_int_equal(a->snap.conf.n_voters, b->snap.conf.n_voters);
    assert_int_equal(a->snap.conf.n_learners, b->snap.conf.n_learners);
    assert_memory_equal(a->snap.conf.voters, b->snap.conf.voters,
                        a->snap.conf.n_voters * sizeof(uint64_t));
    assert_memory_equal(a->snap.conf.learners, b->snap.conf.learners,
                        a->snap.conf.n_learners * sizeof(uint64_t));
}

static struct raft_msg hb(uint64_t from, uint64_t to, uint64_t ctx)
{
    struct raft_msg m;

    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_HEARTBEAT;
    m.from = from;
    m.to = to;
    m.term = 3;
    m.ctx = ctx;
    return m;
}

/* ---- conditions ---- */

static size_t want_msgs[NODES_MAX];

static bool have_msgs(void)
{
    unsigned i;

    for (i = 0; i < n_nodes; i++) {
        if (nodes[i].n_msgs < want_msgs[i])
            return false;
    }
    return true;
}

static bool await_msgs(size_t a, size_t b, size_t c)
{
    want_msgs[0] = a;
    want_msgs[1] = b;
    want_msgs[2] = c;
    return pump(have_msgs, PUMP_MS);
}

/* ---- tests ---- */

/* Every message type, every field, entries of 0, 5 and 1 MiB bytes, in
 * both directions. (SNAP goes through peer_send_snapshot: test_snapshot.) */
static void test_all_types(void **state)
{
    uint8_t t;
    size_t k = 0;

    (void)state;
    cluster_start(2);
    for (t = RAFT_MSG_APP; t <= RAFT_MSG_TRANSFER; t++) {
        struct raft_msg m;
        if (t == RAFT_MSG_SNAP)
            continue;
        m = make_msg(t, 1, 2, t);
        assert_int_equal(peer_send(nodes[0].net, &m), 0);
        m = make_msg(t, 2, 1, t + 100);
        assert_int_equal(peer_send(nodes[1].net, &m), 0);
        k++;
    }
    assert_true(await_msgs(k, k, 0));
    assert_int_equal(nodes[1].n_msgs, k);
    for (t = RAFT_MSG_APP, k = 0; t <= RAFT_MSG_TRANSFER; t++) {
        struct raft_msg m;
        if (t == RAFT_MSG_SNAP)
            continue;
        m = make_msg(t, 1, 2, t);
        assert_msg_equal(&nodes[1].msgs[k].m, &m);
        m = make_msg(t, 2, 1, t + 100);
        assert_msg_equal(&nodes[0].msgs[k].m, &m);
        k++;
    }
    assert_int_equal(nodes[0].n_unreachable, 0);
    /* A SNAP through peer_send and an unknown member are refused. */
    {
        struct raft_msg m = make_msg(RAFT_MSG_SNAP, 1, 2, 0);
        assert_int_equal(peer_send(nodes[0].net, &m), -1);
        m = hb(1, 99, 0);
        assert_int_equal(peer_send(nodes[0].net, &m), -1);
        assert_int_equal(nodes[0].n_unreachable, 2);
    }
}

/* The largest entry raft accepts (64 MiB) fits in a frame and in a queue
 * that already holds something, with the default limits. */
static void test_big_entry(void **state)
{
    struct raft_entry e = {.term = 2, .index = 9, .len = RAFT_PROPOSAL_BYTES};
    struct raft_msg m = hb(1, 2, 1);
    uint8_t *p = calloc(1, RAFT_PROPOSAL_BYTES);
    uint32_t i;

    (void)state;
    assert_non_null(p);
    for (i = 0; i < RAFT_PROPOSAL_BYTES; i += 4096)
        p[i] = (uint8_t)(i >> 12);
    e.data = p;
    cluster_start(2);
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
    m.type = RAFT_MSG_APP;
    m.entries = &e;
    m.n_entries = 1;
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
    assert_true(await_msgs(0, 2, 0));
    assert_msg_equal(&nodes[1].msgs[1].m, &m);
    free(p);
}

/* Three members, many small messages each way sent in one go (gathered
 * into few sends): all arrive, in order per pair. */
static void test_order_many(void **state)
{
    const uint64_t n = 20000;
    uint64_t k;
    unsigned i;
    unsigned j;
    uint64_t next[NODES_MAX][NODES_MAX];

    (void)state;
    cluster_start(3);
    for (k = 0; k < n; k++) {
        for (i = 0; i < 3; i++) {
            for (j = 0; j < 3; j++) {
                struct raft_msg m = hb(i + 1, j + 1, k);
                if (i != j)
                    assert_int_equal(peer_send(nodes[i].net, &m), 0);
            }
        }
        if (k % 5000 == 0)
            turn();
    }
    assert_true(await_msgs(2 * n, 2 * n, 2 * n));
    memset(next, 0, sizeof(next));
    for (i = 0; i < 3; i++) {
        for (k = 0; k < nodes[i].n_msgs; k++) {
            const struct raft_msg *m = &nodes[i].msgs[k].m;
            assert_int_equal(m->to, i + 1);
            assert_int_equal(m->ctx, next[i][m->from - 1]);
            next[i][m->from - 1]++;
        }
    }
}

static bool b_has_any(void)
{
    return nodes[1].n_msgs > 0;
}

static uint64_t last_ctx[2];

/* A and B each received the message with ctx last_ctx[i] last. */
static bool have_last(void)
{
    unsigned i;

    for (i = 0; i < 2; i++) {
        if (nodes[i].n_msgs == 0 || nodes[i].msgs[nodes[i].n_msgs - 1].m.ctx != last_ctx[i])
            return false;
    }
    return true;
}

static bool a_unreachable(void)
{
    return nodes[0].n_unreachable > 0;
}

/* B restarts (its net destroyed and created again on the same port): A
 * notices, reconnects, and delivery resumes both ways, in order. */
static void test_restart(void **state)
{
    struct raft_msg m = hb(1, 2, 1);
    uint64_t deadline;
    uint64_t ctx = 100;
    size_t k;

    (void)state;
    cluster_start(2);
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
    assert_true(await_msgs(0, 1, 0));

    node_stop(1);
    free_msgs(&nodes[1]);
    assert_true(pump(a_unreachable, PUMP_MS));
    node_start(1, CLUSTER, 0, nodes[1].port);
    node_members(1);

    deadline = now_ms() + PUMP_MS;
    while (!b_has_any() && now_ms() < deadline) {
        m = hb(1, 2, ctx++);
        peer_send(nodes[0].net, &m);
        pump(b_has_any, 20);
    }
    assert_true(b_has_any());
    for (k = 0; k < 100; k++) {
        m = hb(1, 2, ctx + k);
        assert_int_equal(peer_send(nodes[0].net, &m), 0);
        m = hb(2, 1, 500 + k);
        assert_int_equal(peer_send(nodes[1].net, &m), 0);
    }
    last_ctx[0] = 500 + 99;
    last_ctx[1] = ctx + 99;
    assert_true(pump(have_last, PUMP_MS));
    assert_true(nodes[1].n_msgs >= 100);
    assert_int_equal(nodes[0].n_msgs, 100);
    /* everything queued after the reconnect arrived, in order */
    for (k = 0; k < 100; k++)
        assert_int_equal(nodes[1].msgs[nodes[1].n_msgs - 100 + k].m.ctx, ctx + k);
    for (k = 0; k < 100; k++)
        assert_int_equal(nodes[0].msgs[nodes[0].n_msgs - 100 + k].m.ctx, 500 + k);
}

/* B belongs to another cluster: it refuses A's connection; A hears that
 * B is unreachable, B never sees a message. */
static void test_cluster_mismatch(void **state)
{
    struct raft_msg m = hb(1, 2, 1);

    (void)state;
    n_nodes = 2;
    node_start(0, CLUSTER, 0, 0);
    node_start(1, CLUSTER + 1, 0, 0);
    node_members(0);
    node_members(1);
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
    assert_true(pump(a_unreachable, PUMP_MS));
    pump(NULL, 300);
    assert_int_equal(nodes[1].n_msgs, 0);
    assert_int_equal(nodes[0].n_msgs, 0); /* and A refuses B's */
}

static int raw_fd;

static int raw_connect(unsigned port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    return fd;
}

static bool raw_closed(void)
{
    char c;
    ssize_t r = recv(raw_fd, &c, 1, 0);

    return r == 0 || (r < 0 && errno != EAGAIN);
}

static void raw_write(const void *p, size_t len)
{
    assert_int_equal(send(raw_fd, p, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void raw_hello(void)
{
    struct peer_frame *f = peer_encode_hello(CLUSTER, 3, 2);

    raw_write(f->data, f->len);
    free(f);
}

/* Bad bytes from a raw socket close that connection only. */
static void test_garbage(void **state)
{
    static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0x7f};
    static const uint8_t junk[8] = {4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t early_big[4] = {0x00, 0x10, 0x00, 0x00}; /* 4 KiB before Hello */
    struct raft_msg m = hb(1, 2, 0);
    struct peer_frame *f;
    int step;

    (void)state;
    cluster_start(2);
    for (step = 0; step < 5; step++) {
        raw_fd = raw_connect(nodes[1].port);
        switch (step) {
        case 0:
            raw_write(huge, sizeof(huge));
            break;
        case 1:
            raw_hello();
            raw_write(junk, sizeof(junk));
            break;
        case 2:
            raw_write(early_big, sizeof(early_big));
            break;
        case 3: /* a message without a Hello */
            f = peer_encode_msg(&m, SIZE_MAX);
            raw_write(f->data, f->len);
            free(f);
            break;
        default: /* a second Hello */
            raw_hello();
            raw_hello();
            break;
        }
        assert_true(pump(raw_closed, PUMP_MS));
        close(raw_fd);
    }
    /* a raw member with a valid Hello: its message from someone else is
     * dropped, its own is delivered */
    raw_fd = raw_connect(nodes[1].port);
    raw_hello();
    f = peer_encode_msg(&m, SIZE_MAX); /* from 1: not the Hello's 3 */
    raw_write(f->data, f->len);
    free(f);
    m = hb(3, 2, 33);
    f = peer_encode_msg(&m, SIZE_MAX);
    raw_write(f->data, f->len);
    free(f);
    assert_true(await_msgs(0, 1, 0));
    assert_int_equal(nodes[1].msgs[0].m.from, 3);
    close(raw_fd);

    m = hb(1, 2, 7);
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
    assert_true(await_msgs(0, 2, 0));
    assert_int_equal(nodes[1].msgs[1].m.ctx, 7);
}

/* A port nobody listens on: the kernel picks it, we let it go. */
static unsigned free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* B is down: A's queue fills to its bound, the rest is dropped with
 * on_unreachable; the failed connect drops the queue and reports too. */
static void test_queue_bound(void **state)
{
    static uint8_t payload[16 << 10];
    struct raft_entry e = {.term = 1, .index = 1, .len = sizeof(payload), .data = payload};
    struct raft_msg m = hb(1, 2, 0);
    const char *url;
    char down_url[64];
    unsigned ok = 0;
    unsigned dropped = 0;
    unsigned k;
    unsigned before;

    (void)state;
    n_nodes = 1;
    node_start(0, CLUSTER, 256 << 10, 0);
    snprintf(down_url, sizeof(down_url), "http://127.0.0.1:%u", free_port());
    url = down_url;
    assert_int_equal(peer_set_member(nodes[0].net, 2, &url, 1), 0);
    m.type = RAFT_MSG_APP;
    m.entries = &e;
    m.n_entries = 1;
    for (k = 0; k < 100; k++) {
        if (peer_send(nodes[0].net, &m) == 0)
            ok++;
        else
            dropped++;
    }
    assert_true(ok >= 10 && ok <= 16);
    assert_int_equal(dropped, 100 - ok);
    assert_int_equal(nodes[0].n_unreachable, dropped);
    before = nodes[0].n_unreachable;
    pump(NULL, 500); /* connect refused, redialled with backoff */
    assert_true(nodes[0].n_unreachable > before);
    assert_false(peer_busy(nodes[0].net));
    /* the queue was emptied: room again */
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
}

static void write_file(const char *path, size_t len, unsigned seed)
{
    FILE *fp = fopen(path, "wb");
    size_t i;

    assert_non_null(fp);
    srand(seed);
    for (i = 0; i < len; i++)
        fputc(rand() & 0xff, fp);
    assert_int_equal(fclose(fp), 0);
}

static void assert_files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb");
    FILE *fb = fopen(b, "rb");
    int ca;
    int cb;

    assert_non_null(fa);
    assert_non_null(fb);
    do {
        ca = fgetc(fa);
        cb = fgetc(fb);
        assert_int_equal(ca, cb);
    } while (ca != EOF);
    fclose(fa);
    fclose(fb);
}

static unsigned dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    unsigned k = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        k += e->d_name[0] != '.';
    closedir(d);
    return k;
}

static bool snap_done(void)
{
    return nodes[1].got_snap && nodes[0].snap_ok + nodes[0].snap_fail > 0;
}

/* A few MiB streamed to B byte for byte, with heartbeats flowing in
 * between; then the SNAP message with its metadata. */
static void test_snapshot(void **state)
{
    char path[128];
    struct raft_msg snap = make_msg(RAFT_MSG_SNAP, 1, 2, 9);
    struct raft_msg m;
    uint64_t ctx = 0;
    uint64_t deadline;
    size_t k;

    (void)state;
    cluster_start(2);
    snprintf(path, sizeof(path), "%s/out.snap", nodes[0].dir);
    write_file(path, (7u << 20) / 2 + 123, 42);
    m = hb(1, 2, ctx++);
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
    assert_int_equal(peer_send_snapshot(nodes[0].net, &snap, path), 0);
    assert_int_equal(peer_send_snapshot(nodes[0].net, &snap, path), -1); /* one at a time */
    deadline = now_ms() + PUMP_MS;
    while (!snap_done() && now_ms() < deadline) {
        m = hb(1, 2, ctx++);
        assert_int_equal(peer_send(nodes[0].net, &m), 0);
        turn();
    }
    assert_true(snap_done());
    assert_int_equal(nodes[0].snap_ok, 1);
    assert_int_equal(nodes[0].snap_fail, 0);
    assert_true(await_msgs(0, ctx, 0));
    /* heartbeats went through while the file was streaming */
    assert_true(nodes[1].msgs_at_snap > 2);
    for (k = 0; k < nodes[1].n_msgs; k++)
        assert_int_equal(nodes[1].msgs[k].m.ctx, k);
    assert_msg_equal(&nodes[1].snap_msg, &snap);
    assert_non_null(strstr(nodes[1].snap_path, nodes[1].dir));
    assert_files_equal(path, nodes[1].snap_path);
    assert_int_equal(unlink(nodes[1].snap_path), 0);
    assert_int_equal(dir_entries(nodes[1].dir), 0); /* no temp file left */

    /* an empty file works too, and a second snapshot may follow */
    write_file(path, 0, 1);
    nodes[1].got_snap = false;
    nodes[0].snap_ok = 0;
    assert_int_equal(peer_send_snapshot(nodes[0].net, &snap, path), 0);
    assert_true(pump(snap_done, PUMP_MS));
    assert_int_equal(nodes[0].snap_ok, 1);
    assert_files_equal(path, nodes[1].snap_path);
    unlink(nodes[1].snap_path);
}

/* B holds a partial snapshot file from A (peer-<from>-<gen>.snap.part). */
static bool partial_exists(void)
{
    const char *prefix = "peer-0000000000000001-";
    DIR *d = opendir(nodes[1].dir);
    struct dirent *e;
    bool found = false;

    assert_non_null(d);
    while (!found && (e = readdir(d)) != NULL) {
        char p[512];
        struct stat st;
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", nodes[1].dir, e->d_name);
        found = stat(p, &st) == 0 && st.st_size > 0;
    }
    closedir(d);
    return found;
}

static bool a_snap_failed(void)
{
    return nodes[0].snap_fail > 0;
}

/* B goes away mid-snapshot: A reports the snapshot failed, and B's
 * partial file is gone. */
static void test_snapshot_fail(void **state)
{
    char path[128];
    struct raft_msg snap = make_msg(RAFT_MSG_SNAP, 1, 2, 9);
    int fd;

    (void)state;
    cluster_start(2);
    snprintf(path, sizeof(path), "%s/big.snap", nodes[0].dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 64u << 20), 0);
    close(fd);
    assert_int_equal(peer_send_snapshot(nodes[0].net, &snap, path), 0);
    assert_true(pump(partial_exists, PUMP_MS));
    assert_false(nodes[1].got_snap);
    node_stop(1);
    assert_false(partial_exists());
    assert_true(pump(a_snap_failed, PUMP_MS));
    assert_int_equal(nodes[0].snap_fail, 1);
    assert_int_equal(nodes[0].snap_ok, 0);
    assert_true(nodes[0].n_unreachable > 0);
}

static bool b_has_two(void)
{
    return nodes[1].n_msgs >= 2;
}

/* Removing a member mid-snapshot fails the snapshot at once and closes
 * its connection with operations in flight; added again, it works. */
static void test_remove_member(void **state)
{
    char path[128];
    struct raft_msg snap = make_msg(RAFT_MSG_SNAP, 1, 2, 9);
    struct raft_msg m = hb(1, 2, 1);
    const char *url;
    int fd;

    (void)state;
    cluster_start(2);
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
    assert_true(await_msgs(0, 1, 0));
    snprintf(path, sizeof(path), "%s/big.snap", nodes[0].dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 32u << 20), 0);
    close(fd);
    assert_int_equal(peer_send_snapshot(nodes[0].net, &snap, path), 0);
    turn();
    turn();
    peer_remove_member(nodes[0].net, 2);
    assert_int_equal(nodes[0].snap_fail, 1);
    assert_int_equal(peer_send(nodes[0].net, &m), -1);
    pump(NULL, 200);
    assert_int_equal(nodes[0].snap_fail, 1);
    assert_int_equal(nodes[0].snap_ok, 0);
    url = nodes[1].url;
    assert_int_equal(peer_set_member(nodes[0].net, 2, &url, 1), 0);
    m.ctx = 2;
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
    assert_true(pump(b_has_two, PUMP_MS));
    assert_int_equal(nodes[1].msgs[1].m.ctx, 2);
    assert_false(nodes[1].got_snap);
}

/* A busy port and an https URL fail start-up with etcd-like messages. */
static void test_listen_errors(void **state)
{
    struct peer_config cfg;
    struct peer_net *n = NULL;
    char err[256];
    char url[64];
    const char *u = url;

    (void)state;
    n_nodes = 1;
    node_start(0, CLUSTER, 0, 0);
    memset(&cfg, 0, sizeof(cfg));
    cfg.self_id = 9;
    cfg.loop = &nodes[0].loop;
    cfg.op_base = OP_BASE;
    cfg.snap_recv_dir = nodes[0].dir;
    cfg.listen_urls[0] = nodes[0].url;
    cfg.n_listen_urls = 1;
    assert_int_equal(peer_net_create(&n, &cfg, &test_ops, NULL, err, sizeof(err)), -1);
    snprintf(url, sizeof(url), "listen tcp 127.0.0.1:%u: bind: address already in use",
             nodes[0].port);
    assert_string_equal(err, url);
    cfg.listen_urls[0] = "https://127.0.0.1:2380";
    assert_int_equal(peer_net_create(&n, &cfg, &test_ops, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "TLS peer URLs are not supported yet");
    assert_null(n);
    snprintf(url, sizeof(url), "https://127.0.0.1:2380");
    assert_int_equal(peer_set_member(nodes[0].net, 2, &u, 1), -1);
    snprintf(url, sizeof(url), "http://127.0.0.1");
    assert_int_equal(peer_set_member(nodes[0].net, 2, &u, 1), -1);
    snprintf(url, sizeof(url), "http://127.0.0.1:2380");
    assert_int_equal(peer_set_member(nodes[0].net, 1, &u, 1), -1); /* self */
    assert_int_equal(peer_set_member(nodes[0].net, 2, &u, 1), 0);
    peer_remove_member(nodes[0].net, 2);
}

/* ---- peer_fetch_members ---- */

#define FETCH_URLS_MAX 4
#define FETCH_FAILED   "could not retrieve cluster information from the given URLs"

/* One peer_fetch_members() call on its own thread. */
struct fetch {
    pthread_t thread;
    atomic_bool done;
    char urls[FETCH_URLS_MAX][64];
    unsigned n_urls;
    uint64_t timeout_ms;
    int rv;
    uint64_t cluster_id;
    uint8_t *blob;
    size_t len;
    uint64_t took_ms;
    char err[2048];
};

static struct fetch fx;

static void *fetch_main(void *arg)
{
    struct fetch *f = arg;
    const char *urls[FETCH_URLS_MAX];
    uint64_t start = now_ms();
    unsigned i;

    for (i = 0; i < f->n_urls; i++)
        urls[i] = f->urls[i];
    f->rv = peer_fetch_members(urls, f->n_urls, f->timeout_ms, &f->cluster_id, &f->blob, &f->len,
                               f->err, sizeof(f->err));
    f->took_ms = now_ms() - start;
    atomic_store(&f->done, true);
    return NULL;
}

/* Starts a fetch of the NULL-terminated URLs. */
static void fetch_start(uint64_t timeout_ms, const char *url, ...)
{
    va_list ap;

    free(fx.blob);
    memset(&fx, 0, sizeof(fx));
    atomic_init(&fx.done, false);
    fx.timeout_ms = timeout_ms;
    va_start(ap, url);
    for (; url != NULL; url = va_arg(ap, const char *)) {
        assert_true(fx.n_urls < FETCH_URLS_MAX);
        snprintf(fx.urls[fx.n_urls++], sizeof(fx.urls[0]), "%s", url);
    }
    va_end(ap);
    assert_int_equal(pthread_create(&fx.thread, NULL, fetch_main, &fx), 0);
}

static bool fetch_done(void)
{
    return atomic_load(&fx.done);
}

static void fetch_join(void)
{
    assert_int_equal(pthread_join(fx.thread, NULL), 0);
}

/* Pumps the nets until the fetch returns, A and B sending each other a
 * heartbeat every turn meanwhile if traffic. Returns the number sent each
 * way. */
static uint64_t fetch_pump(bool traffic)
{
    uint64_t deadline = now_ms() + PUMP_MS;
    uint64_t k = 0;

    while (!fetch_done() && now_ms() < deadline) {
        if (traffic) {
            struct raft_msg m = hb(1, 2, k);
            assert_int_equal(peer_send(nodes[0].net, &m), 0);
            m = hb(2, 1, k);
            assert_int_equal(peer_send(nodes[1].net, &m), 0);
            k++;
        }
        turn();
    }
    fetch_join();
    return k;
}

/* All k heartbeats arrived at both, in order (the members connection did
 * not disturb the Raft ones). */
static void assert_heartbeats(uint64_t k)
{
    size_t i;
    unsigned j;

    assert_true(await_msgs(k, k, 0));
    for (j = 0; j < 2; j++) {
        assert_int_equal(nodes[j].n_msgs, k);
        for (i = 0; i < k; i++)
            assert_int_equal(nodes[j].msgs[i].m.ctx, i);
    }
}

static void assert_fetch_failed(const char *why)
{
    assert_int_equal(fx.rv, -1);
    assert_null(fx.blob);
    assert_int_equal(fx.len, 0);
    assert_true(strncmp(fx.err, FETCH_FAILED, strlen(FETCH_FAILED)) == 0);
    if (strstr(fx.err, why) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", fx.err, why);
}

/* A listening socket that never accepts nor answers (the kernel still
 * completes connections to it); its port in *port. */
static int silent_listener(unsigned *port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void url_of(char *url, size_t len, unsigned port)
{
    snprintf(url, len, "http://127.0.0.1:%u", port);
}

/* A member with on_members answers with its blob and cluster ID, while
 * Raft traffic flows on the same listener: a blob of the largest size, an
 * empty one, one too large (refused: EOF), a refusal by on_members. */
static void test_fetch_members(void **state)
{
    uint8_t *blob = malloc(PEER_MEMBERS_BYTES_MAX + 1);
    uint64_t k;
    size_t i;

    (void)state;
    assert_non_null(blob);
    for (i = 0; i <= PEER_MEMBERS_BYTES_MAX; i++)
        blob[i] = (uint8_t)(i * 13 + (i >> 9));
    nodes[0].serve_members = true;
    nodes[0].members = blob;
    nodes[0].members_len = PEER_MEMBERS_BYTES_MAX;
    cluster_start(2);

    fetch_start(5000, nodes[0].url, NULL);
    k = fetch_pump(true);
    assert_true(k > 0);
    assert_int_equal(fx.rv, 0);
    assert_int_equal(fx.cluster_id, CLUSTER);
    assert_int_equal(fx.len, PEER_MEMBERS_BYTES_MAX);
    assert_memory_equal(fx.blob, blob, PEER_MEMBERS_BYTES_MAX);
    assert_int_equal(nodes[0].members_calls, 1);
    assert_heartbeats(k);

    nodes[0].members_len = 0;
    fetch_start(5000, nodes[0].url, NULL);
    fetch_pump(false);
    assert_int_equal(fx.rv, 0);
    assert_int_equal(fx.cluster_id, CLUSTER);
    assert_int_equal(fx.len, 0);
    assert_non_null(fx.blob);

    nodes[0].members_len = PEER_MEMBERS_BYTES_MAX + 1;
    fetch_start(5000, nodes[0].url, NULL);
    fetch_pump(false);
    assert_fetch_failed("read: EOF");
    assert_non_null(strstr(fx.err, nodes[0].url));

    nodes[0].members_len = 5;
    nodes[0].members_refuse = true;
    fetch_start(5000, nodes[0].url, NULL);
    fetch_pump(false);
    assert_fetch_failed("read: EOF");
    assert_int_equal(nodes[0].members_calls, 4);

    /* and B (no on_members) refuses too, while both keep serving Raft */
    free_msgs(&nodes[0]);
    free_msgs(&nodes[1]);
    fetch_start(5000, nodes[1].url, NULL);
    k = fetch_pump(true);
    assert_fetch_failed("read: EOF");
    assert_heartbeats(k);
    free(fx.blob);
    fx.blob = NULL;
    free(blob);
}

/* URLs are tried in order: one with nothing listening fails at once, a
 * silent one uses up only its share of the time, the third answers. */
static void test_fetch_failover(void **state)
{
    static const uint8_t list[] = "member list";
    char dead[64];
    char dead2[64];
    char silent[64];
    unsigned port;
    int lfd;

    (void)state;
    nodes[0].serve_members = true;
    nodes[0].members = list;
    nodes[0].members_len = sizeof(list);
    n_nodes = 1;
    node_start(0, CLUSTER, 0, 0);
    url_of(dead, sizeof(dead), free_port());
    url_of(dead2, sizeof(dead2), free_port());
    lfd = silent_listener(&port);
    url_of(silent, sizeof(silent), port);

    fetch_start(3000, dead, silent, nodes[0].url, NULL);
    fetch_pump(false);
    assert_int_equal(fx.rv, 0);
    assert_int_equal(fx.cluster_id, CLUSTER);
    assert_int_equal(fx.len, sizeof(list));
    assert_memory_equal(fx.blob, list, sizeof(list));
    assert_true(fx.took_ms >= 1000 && fx.took_ms < 3000); /* the silent one had 1.5 s */

    fetch_start(3000, dead, dead2, NULL);
    fetch_pump(false);
    assert_fetch_failed(": connect: connection refused");
    assert_non_null(strstr(fx.err, dead));
    assert_non_null(strstr(fx.err, dead2));
    assert_true(fx.took_ms < 1000);
    close(lfd);
}

/* A member that never answers: the fetch gives up when its time is up,
 * with one silent URL or two. */
static void test_fetch_silent(void **state)
{
    char silent[64];
    char silent2[64];
    unsigned port;
    int lfd;
    int lfd2;

    (void)state;
    lfd = silent_listener(&port);
    url_of(silent, sizeof(silent), port);
    lfd2 = silent_listener(&port);
    url_of(silent2, sizeof(silent2), port);

    fetch_start(300, silent, NULL);
    fetch_join();
    assert_fetch_failed("read: i/o timeout");
    assert_true(fx.took_ms >= 250 && fx.took_ms < 1500);

    fetch_start(400, silent, silent2, NULL);
    fetch_join();
    assert_fetch_failed("read: i/o timeout");
    assert_non_null(strstr(fx.err, silent));
    assert_non_null(strstr(fx.err, silent2));
    assert_true(fx.took_ms >= 350 && fx.took_ms < 1500);
    close(lfd);
    close(lfd2);
}

/* Plays the member at lfd: accepts the fetch's connection, checks that it
 * sent one MembersRequest, answers with bytes p, len, and closes. */
static void raw_serve(int lfd, const void *p, size_t len)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    uint8_t buf[64];
    size_t got = 0;
    Cetcdpeer__Frame *f;
    int fd;

    assert_int_equal(poll(&pfd, 1, PUMP_MS), 1);
    fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    while (got < PEER_LEN_BYTES || got < PEER_LEN_BYTES + get_le32(buf)) {
        ssize_t r;
        pfd.fd = fd;
        assert_int_equal(poll(&pfd, 1, PUMP_MS), 1);
        r = recv(fd, buf + got, sizeof(buf) - got, 0);
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_int_equal(got, PEER_LEN_BYTES + get_le32(buf));
    f = peer_decode(buf + PEER_LEN_BYTES, got - PEER_LEN_BYTES);
    assert_non_null(f);
    assert_int_equal(f->body_case, CETCDPEER__FRAME__BODY_MEMBERS_REQUEST);
    cetcdpeer__frame__free_unpacked(f, NULL);
    if (len > 0)
        assert_int_equal(send(fd, p, len, MSG_NOSIGNAL), (ssize_t)len);
    close(fd);
}

/* Answers that are not a MembersResponse fail the fetch (and the next URL
 * is still tried); bad URLs fail without a connection. */
static void test_fetch_garbage(void **state)
{
    static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0x7f};
    static const uint8_t junk[8] = {4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t cut[7] = {100, 0, 0, 0, 0x2a, 0x00, 0x00};
    struct peer_frame *hello = peer_encode_hello(CLUSTER, 1, 2);
    struct peer_frame *good = peer_encode_members_response(CLUSTER, (const uint8_t *)"ok", 2);
    const struct {
        const void *p;
        size_t len;
        const char *why;
    } cases[] = {
        {huge, sizeof(huge), "malformed answer (a frame of 2147483647 bytes)"},
        {junk, sizeof(junk), "malformed answer (undecodable frame)"},
        {cut, sizeof(cut), "read: unexpected EOF"},
        {hello->data, hello->len, "malformed answer (not a MembersResponse)"},
        {NULL, 0, "read: EOF"},
    };
    char url[64];
    char url2[64];
    unsigned port;
    unsigned i;
    int lfd;
    int lfd2;

    (void)state;
    assert_non_null(hello);
    assert_non_null(good);
    lfd = silent_listener(&port);
    url_of(url, sizeof(url), port);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fetch_start(PUMP_MS, url, NULL);
        raw_serve(lfd, cases[i].p, cases[i].len);
        fetch_join();
        assert_fetch_failed(cases[i].why);
    }
    /* garbage from the first, an answer from the second */
    lfd2 = silent_listener(&port);
    url_of(url2, sizeof(url2), port);
    fetch_start(PUMP_MS, url, url2, NULL);
    raw_serve(lfd, junk, sizeof(junk));
    raw_serve(lfd2, good->data, good->len);
    fetch_join();
    assert_int_equal(fx.rv, 0);
    assert_int_equal(fx.cluster_id, CLUSTER);
    assert_int_equal(fx.len, 2);
    assert_memory_equal(fx.blob, "ok", 2);
    free(fx.blob);
    fx.blob = NULL;

    fetch_start(1000, "https://127.0.0.1:2380", "http://127.0.0.1",
                "http://no.such.host.invalid:2380", NULL);
    fetch_join();
    assert_fetch_failed(
        "https://127.0.0.1:2380: TLS peer URLs are not supported yet; "
        "http://127.0.0.1: invalid peer URL (want http://host:port); "
        "http://no.such.host.invalid:2380: dial tcp: lookup no.such.host.invalid: ");
    fetch_start(1000, NULL);
    fetch_join();
    assert_string_equal(fx.err, FETCH_FAILED ": no URLs");
    assert_int_equal(fx.rv, -1);
    free(hello);
    free(good);
    close(lfd);
    close(lfd2);
}

static bool never;

static bool never_true(void)
{
    return never;
}

/* A dialer that asks and never reads: the net lets go of the connection
 * anyway (the reply is read late, then EOF) and serves Raft throughout.
 * Where the kernel takes the whole reply into the socket buffer (loopback
 * with tcp_wmem up to 4 MiB) the send completes at once; where it does
 * not, the net gives up after PEER_REPLY_MS and the late reader gets part
 * of the reply, then EOF. */
static void test_fetch_unread(void **state)
{
    uint8_t *blob = calloc(1, PEER_MEMBERS_BYTES_MAX);
    struct peer_frame *req = peer_encode_members_request();
    struct sockaddr_in sa;
    struct raft_msg m = hb(1, 2, 0);
    int small = 4096;
    size_t got = 0;
    uint8_t buf[16384];
    ssize_t r;

    (void)state;
    assert_non_null(blob);
    assert_non_null(req);
    nodes[1].serve_members = true;
    nodes[1].members = blob;
    nodes[1].members_len = PEER_MEMBERS_BYTES_MAX;
    cluster_start(2);
    raw_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(raw_fd >= 0);
    assert_int_equal(setsockopt(raw_fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)nodes[1].port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(raw_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    raw_write(req->data, req->len);
    pump(never_true, 6000); /* PEER_REPLY_MS and some */
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
    assert_true(await_msgs(0, 1, 0));
    for (;;) {
        struct pollfd pfd = {.fd = raw_fd, .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, PUMP_MS), 1);
        r = recv(raw_fd, buf, sizeof(buf), 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    assert_int_equal(r, 0);
    assert_true(got > 0 && got <= PEER_LEN_BYTES + PEER_MEMBERS_FRAME_MAX);
    close(raw_fd);
    free(req);
    free(blob);
}

/* ---- removed members ---- */

/* Messages node i received from member id. */
static size_t msgs_from(unsigned i, uint64_t id)
{
    size_t k;
    size_t c = 0;

    for (k = 0; k < nodes[i].n_msgs; k++)
        c += nodes[i].msgs[k].m.from == id;
    return c;
}

/* The messages node i received from member id carry ctx 0, 1, 2, ... */
static void assert_in_order(unsigned i, uint64_t id)
{
    size_t k;
    uint64_t next = 0;

    for (k = 0; k < nodes[i].n_msgs; k++) {
        if (nodes[i].msgs[k].m.from == id)
            assert_int_equal(nodes[i].msgs[k].m.ctx, next++);
    }
}

static bool b_removed(void)
{
    return nodes[1].n_removed > 0;
}

/* B, C and A's own traffic each turn: B -> A, B -> C, C -> A (ctx k). */
static void removed_traffic(uint64_t k)
{
    struct raft_msg m = hb(2, 1, k);

    peer_send(nodes[1].net, &m); /* may be dropped once B's link to A fails */
    m = hb(2, 3, k);
    assert_int_equal(peer_send(nodes[1].net, &m), 0);
    m = hb(3, 1, k);
    assert_int_equal(peer_send(nodes[2].net, &m), 0);
}

/* A marks B removed while B's connection to A is up: B hears it at once
 * (on_removed(A), once, however often it redials), nothing more from B
 * reaches A, and the traffic of C to A and of B to C flows on; C, not
 * marked, hears nothing. */
static void test_removed(void **state)
{
    size_t from_b;
    uint64_t k = 0;
    uint64_t deadline;
    unsigned unreachable;

    (void)state;
    cluster_start(3);
    removed_traffic(k++);
    assert_true(await_msgs(2, 0, 1));
    peer_mark_removed(nodes[0].net, 2);
    peer_remove_member(nodes[0].net, 2);
    from_b = msgs_from(0, 2);
    assert_int_equal(from_b, 1);
    unreachable = nodes[1].n_unreachable;
    deadline = now_ms() + PUMP_MS;
    while (!b_removed() && now_ms() < deadline) {
        removed_traffic(k++);
        turn();
    }
    assert_true(b_removed());
    assert_int_equal(nodes[1].removed_by, 1);
    /* B redials with backoff and is told again: reported once */
    deadline = now_ms() + 1500;
    while (now_ms() < deadline) {
        removed_traffic(k++);
        turn();
    }
    assert_true(await_msgs(from_b + k, 0, k)); /* A: B's one and C's k */
    assert_int_equal(nodes[1].n_removed, 1);
    assert_int_equal(nodes[1].removed_by, 1);
    assert_true(nodes[1].n_unreachable > unreachable);
    assert_int_equal(msgs_from(0, 2), from_b);
    assert_int_equal(msgs_from(0, 3), k);
    assert_int_equal(msgs_from(2, 2), k);
    assert_in_order(0, 3);
    assert_in_order(2, 2);
    assert_int_equal(nodes[0].n_removed, 0);
    assert_int_equal(nodes[2].n_removed, 0);
}

static bool a_has_b(void)
{
    return msgs_from(0, 2) > 0;
}

/* B marked before it ever connected: its Hello is answered with Removed
 * (its message with it is not delivered). Marks are bounded: 64 more IDs
 * push B's out (its messages flow again), and marking B again answers
 * its open connection. A -> B keeps flowing throughout. */
static void test_removed_hello(void **state)
{
    struct raft_msg m = hb(2, 1, 0);
    uint64_t id;
    uint64_t deadline;
    uint64_t k = 0;

    (void)state;
    cluster_start(2);
    peer_mark_removed(nodes[0].net, 2);
    peer_mark_removed(nodes[0].net, 2); /* once is enough */
    peer_mark_removed(nodes[0].net, 1); /* self: ignored */
    peer_mark_removed(nodes[0].net, RAFT_NONE);
    assert_int_equal(peer_send(nodes[1].net, &m), 0);
    assert_true(pump(b_removed, PUMP_MS));
    assert_int_equal(nodes[1].removed_by, 1);
    pump(NULL, 200);
    assert_int_equal(nodes[0].n_msgs, 0);

    for (id = 100; id < 100 + PEER_REMOVED_MAX - 1; id++)
        peer_mark_removed(nodes[0].net, id);
    m.ctx = 1;
    peer_send(nodes[1].net, &m);
    pump(NULL, 300);
    assert_int_equal(nodes[0].n_msgs, 0); /* 2 is still the oldest of 64 */
    peer_mark_removed(nodes[0].net, id);  /* the 65th: 2 is forgotten */
    deadline = now_ms() + PUMP_MS;
    while (!a_has_b() && now_ms() < deadline) {
        m.ctx = 2;
        peer_send(nodes[1].net, &m);
        pump(a_has_b, 50);
    }
    assert_true(a_has_b());
    assert_int_equal(nodes[0].msgs[0].m.ctx, 2);
    for (k = 0; k < 10; k++) {
        m = hb(1, 2, k);
        assert_int_equal(peer_send(nodes[0].net, &m), 0);
    }
    assert_true(await_msgs(0, 10, 0));

    /* marked again, from on_msg for the connection being read: it is
     * answered, and nothing after that message is delivered */
    k = nodes[0].n_msgs;
    nodes[0].mark_on_msg = 2;
    for (id = 3; id < 10; id++) {
        m = hb(2, 1, id);
        assert_int_equal(peer_send(nodes[1].net, &m), 0);
    }
    pump(NULL, 300);
    assert_int_equal(nodes[0].n_msgs, k + 1);
    assert_int_equal(nodes[0].msgs[k].m.ctx, 3);
    assert_int_equal(nodes[1].n_removed, 1); /* reported once per net */
    m = hb(1, 2, 10);
    assert_int_equal(peer_send(nodes[0].net, &m), 0);
    assert_true(await_msgs(0, 11, 0));
    assert_int_equal(nodes[0].n_removed, 0);
}

static int watch_lfd;
static unsigned unreachable_before;

static bool a_unreachable_more(void)
{
    return nodes[0].n_unreachable > unreachable_before;
}

static bool lfd_ready(void)
{
    struct pollfd pfd = {.fd = watch_lfd, .events = POLLIN};

    return poll(&pfd, 1, 0) == 1;
}

static bool raw_readable(void)
{
    struct pollfd pfd = {.fd = raw_fd, .events = POLLIN};

    return poll(&pfd, 1, 0) == 1;
}

/* Plays member 2 at watch_lfd while A runs: accepts A's next connection
 * and reads its Hello; raw_fd is the connection. */
static void raw_accept_hello(void)
{
    uint8_t buf[64];
    size_t got = 0;
    Cetcdpeer__Frame *f;

    assert_true(pump(lfd_ready, PUMP_MS));
    raw_fd = accept(watch_lfd, NULL, NULL);
    assert_true(raw_fd >= 0);
    while (got < PEER_LEN_BYTES || got < PEER_LEN_BYTES + get_le32(buf)) {
        ssize_t r;
        assert_true(pump(raw_readable, PUMP_MS)); /* A sends it from its loop */
        r = recv(raw_fd, buf + got, PEER_LEN_BYTES + 32 - got, 0);
        assert_true(r > 0);
        got += (size_t)r;
    }
    f = peer_decode(buf + PEER_LEN_BYTES, got - PEER_LEN_BYTES);
    assert_non_null(f);
    assert_int_equal(f->body_case, CETCDPEER__FRAME__BODY_HELLO);
    assert_int_equal(f->hello->from, 1);
    assert_int_equal(f->hello->to, 2);
    cetcdpeer__frame__free_unpacked(f, NULL);
    assert_int_equal(fcntl(raw_fd, F_SETFL, O_NONBLOCK), 0);
}

/* Bytes from an acceptor other than one whole Removed frame are a close
 * (A redials; no on_removed): a length past the watch's bound, a frame
 * just too large, junk, another frame kind, EOF. A Removed frame arriving
 * in two pieces is reported, once. Removed sent the other way (to an
 * acceptor) closes that connection. */
static void test_removed_garbage(void **state)
{
    static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0x7f};
    static const uint8_t junk[8] = {4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    uint8_t big[PEER_LEN_BYTES + PEER_WATCH_FRAME_MAX + 1];
    struct peer_frame *removed = peer_encode_removed();
    struct peer_frame *req = peer_encode_members_request();
    struct peer_frame *hello;
    const struct {
        const void *p;
        size_t len;
    } cases[] = {
        {huge, sizeof(huge)},  {big, sizeof(big)}, {junk, sizeof(junk)},
        {req->data, req->len}, {NULL, 0},
    };
    const char *url;
    char lurl[64];
    unsigned port;
    unsigned i;

    (void)state;
    assert_non_null(removed);
    assert_non_null(req);
    assert_true(removed->len <= PEER_LEN_BYTES + PEER_WATCH_FRAME_MAX);
    memset(big, 0, sizeof(big));
    put_le32(big, PEER_WATCH_FRAME_MAX + 1);
    n_nodes = 2;
    node_start(0, CLUSTER, 0, 0);
    node_start(1, CLUSTER, 0, 0);
    watch_lfd = silent_listener(&port);
    url_of(lurl, sizeof(lurl), port);
    url = lurl;
    assert_int_equal(peer_set_member(nodes[0].net, 2, &url, 1), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        raw_accept_hello();
        unreachable_before = nodes[0].n_unreachable;
        if (cases[i].len > 0)
            raw_write(cases[i].p, cases[i].len);
        else
            shutdown(raw_fd, SHUT_WR);
        assert_true(pump(raw_closed, PUMP_MS));
        assert_true(pump(a_unreachable_more, PUMP_MS));
        close(raw_fd);
        assert_int_equal(nodes[0].n_removed, 0);
    }

    /* a Removed frame in two pieces */
    raw_accept_hello();
    raw_write(removed->data, 3);
    pump(NULL, 50);
    assert_int_equal(nodes[0].n_removed, 0);
    raw_write(removed->data + 3, removed->len - 3);
    assert_true(pump(raw_closed, PUMP_MS));
    close(raw_fd);
    assert_int_equal(nodes[0].n_removed, 1);
    assert_int_equal(nodes[0].removed_by, 2);
    /* and again on the redial: not reported again */
    raw_accept_hello();
    raw_write(removed->data, removed->len);
    assert_true(pump(raw_closed, PUMP_MS));
    close(raw_fd);
    assert_int_equal(nodes[0].n_removed, 1);

    /* Removed to an acceptor, first or after a Hello: a close */
    hello = peer_encode_hello(CLUSTER, 3, 2);
    assert_non_null(hello);
    for (i = 0; i < 2; i++) {
        raw_fd = raw_connect(nodes[1].port);
        if (i == 1)
            raw_write(hello->data, hello->len);
        raw_write(removed->data, removed->len);
        assert_true(pump(raw_closed, PUMP_MS));
        close(raw_fd);
    }
    assert_int_equal(nodes[1].n_msgs, 0);
    assert_int_equal(nodes[1].n_removed, 0);
    close(watch_lfd);
    free(hello);
    free(req);
    free(removed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_all_types, teardown),
        cmocka_unit_test_teardown(test_big_entry, teardown),
        cmocka_unit_test_teardown(test_order_many, teardown),
        cmocka_unit_test_teardown(test_restart, teardown),
        cmocka_unit_test_teardown(test_cluster_mismatch, teardown),
        cmocka_unit_test_teardown(test_garbage, teardown),
        cmocka_unit_test_teardown(test_queue_bound, teardown),
        cmocka_unit_test_teardown(test_snapshot, teardown),
        cmocka_unit_test_teardown(test_snapshot_fail, teardown),
        cmocka_unit_test_teardown(test_remove_member, teardown),
        cmocka_unit_test_teardown(test_listen_errors, teardown),
        cmocka_unit_test_teardown(test_fetch_members, teardown),
        cmocka_unit_test_teardown(test_fetch_failover, teardown),
        cmocka_unit_test_teardown(test_fetch_silent, teardown),
        cmocka_unit_test_teardown(test_fetch_garbage, teardown),
        cmocka_unit_test_teardown(test_fetch_unread, teardown),
        cmocka_unit_test_teardown(test_removed, teardown),
        cmocka_unit_test_teardown(test_removed_hello, teardown),
        cmocka_unit_test_teardown(test_removed_garbage, teardown),
    };

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    next_port = 20000 + (unsigned)(rand() % 39000);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
