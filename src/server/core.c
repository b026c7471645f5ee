/*
 * core.c — the core: turns proposals from every shard into Raft log
 * entries, makes each batch durable with one synchronous-data write
 * (RWF_DSYNC: the write completes only once its data, and the metadata
 * needed to read it back, are on stable storage, as after fdatasync)
 * through io_uring, applies committed entries to the MVCC index in order,
 * and sends each client's response back to its shard.
 *
 * The Raft group has one member at this stage: it is leader from start-up,
 * in a new term each time it starts (the term is saved in a hard-state
 * record, followed by an empty entry of the new term, as Raft's leader
 * does), and an entry is committed once it is durable locally. Every entry
 * in the WAL is therefore committed, and replay applies all of them.
 *
 * Pipelining: while one batch is being written and synced, new proposals
 * collect into the next batch (the WAL double-buffers), so one sync covers
 * everything that arrived during the previous one. One RWF_DSYNC write
 * instead of a write linked to an fdatasync: one operation for io_uring to
 * run instead of two, measured at twice the Put throughput. Nobody hears
 * OK before the write that covers their entry has completed; a failed or
 * short write ends the process (it never retries and goes on).
 *
 * Thread: shard 0's only. The member figures it publishes (term, commit,
 * applied, db size) are atomics read by every shard.
 */
#include "core.h"

#include "autocompact.h"
#include "rpc.pb-c.h"
#include "mvcc.h"
#include "snapshot.h"
#include "wal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum core_op {
    CORE_OP_WAL_WRITE = SHARD_OP_CORE_BASE,
    CORE_OP_TIMER = SHARD_OP_CORE_BASE + 1,
};

#define COMPACT_STEP_KEYS 2048u /* keys examined per compaction step (per turn) */

#define CORE_BATCH_ENTRIES_MAX 8192u
#define CORE_BATCH_BYTES_MAX   (32u << 20)

struct msg_vec {
    struct shard_msg **v;
    size_t n;
    size_t cap;
};

/* A reply held back until background work is done. */
struct held {
    struct shard_msg *m;
    uint64_t snap_gen; /* RPC_WAIT_SNAPSHOT: the snapshot generation needed */
};

struct held_vec {
    struct held *v;
    size_t n;
    size_t cap;
};

struct core {
    struct shard_set *set;
    struct wal *wal;
    struct snapshot *snap;
    struct rpc_env env; /* with the core's own MVCC reader */
    uint64_t term;
    uint64_t last_index; /* last entry appended to the log */
    uint64_t applied;
    uint64_t snap_index;     /* last entry covered by the newest snapshot */
    uint64_t snapshot_count; /* entries between snapshots */
    uint64_t snap_gen;       /* snapshots started so far */
    uint64_t snap_gen_done;  /* snapshots made durable so far */
    bool snap_wanted;        /* a defragment asks for a fresh snapshot */
    uint64_t wal_bytes;      /* bytes made durable in the WAL since start */
    uint64_t snap_wal_mark;  /* wal_bytes when the newest snapshot started */
    bool compacting;         /* physical compaction has work left */
    struct msg_vec next;     /* proposals in the WAL's pending batch */
    struct msg_vec inflight; /* proposals in the batch being synced */
    struct held_vec held;    /* replies waiting for compaction or a snapshot */
    struct wal_write write;  /* the batch being synced */
    bool write_inflight;
    struct core_auto autoc; /* auto-compaction */
    bool timer_armed;
    struct __kernel_timespec timer_ts;
};

static void fatal(const char *what, int res)
{
    fprintf(stderr, "cetcd: fatal: %s: %s\n", what, strerror(res < 0 ? -res : EIO));
    exit(1);
}

static int vec_push(struct msg_vec *v, struct shard_msg *m)
{
    if (v->n == v->cap) {
        size_t cap = v->cap != 0 ? v->cap * 2 : 256;
        struct shard_msg **p = realloc(v->v, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = m;
    return 0;
}

static void publish(struct core *c)
{
    struct rpc_member *m = c->env.member;

    rpc_member_store(&m->raft_term, c->term);
    rpc_member_store(&m->commit_index, c->applied);
    rpc_member_store(&m->applied_index, c->applied);
    rpc_member_store(&m->leader, m->member_id);
    rpc_member_store(&m->db_size_bytes,
                     wal_size_bytes(c->wal) + (c->snap != NULL ? snapshot_size_bytes(c->snap) : 0));
}

/* ---- replay ---- */

static int replay_entry(void *arg, const struct wal_entry *e)
{
    struct core *c = arg;
    struct rpc_result r;

    if (e->index <= c->snap_index) { /* the snapshot already holds it */
        if (e->term > c->term)
            c->term = e->term;
        return 0;
    }
    if (e->index != c->last_index + 1) {
        fprintf(stderr, "cetcd: wal: entry index %llu follows %llu\n", (unsigned long long)e->index,
                (unsigned long long)c->last_index);
        return -1;
    }
    if (rpc_apply(&c->env, e->data, e->len, false, &r) != 0) {
        fprintf(stderr, "cetcd: wal: entry %llu cannot be decoded\n", (unsigned long long)e->index);
        return -1;
    }
    c->last_index = e->index;
    c->applied = e->index;
    if (e->term > c->term)
        c->term = e->term;
    return 0;
}

static int replay_hardstate(void *arg, const struct wal_hardstate *hs)
{
    struct core *c = arg;

    if (hs->term > c->term)
        c->term = hs->term;
    return 0;
}

static const struct wal_replay_ops replay_ops = {
    .entry = replay_entry,
    .hardstate = replay_hardstate,
};

/* A new term as leader: the hard state, then an empty entry of the term. */
static int start_term(struct core *c, char *err, size_t err_len)
{
    static const uint8_t noop[1] = {RPC_ENTRY_NOOP};
    struct wal_hardstate hs;

    c->term++;
    hs.term = c->term;
    hs.vote = c->env.member->member_id;
    hs.commit = c->last_index;
    if (wal_add_hardstate(c->wal, &hs) != 0 ||
        wal_add_entry(c->wal, c->term, c->last_index + 1, noop, sizeof(noop)) != 0) {
        snprintf(err, err_len, "wal: cannot record the new term");
        return -1;
    }
    if (wal_batch_sync(c->wal, err, err_len) != 0)
        return -1;
    c->last_index++;
    c->applied = c->last_index;
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int make_dirs(const char *data_dir, char *wal_dir, size_t len, char *err, size_t err_len)
{
    char member[2048];

    if ((size_t)snprintf(member, sizeof(member), "%s/member", data_dir) >= sizeof(member) ||
        (size_t)snprintf(wal_dir, len, "%s/wal", member) >= len) {
        snprintf(err, err_len, "data dir path too long: %s", data_dir);
        return -1;
    }
    if ((mkdir(data_dir, 0700) != 0 && errno != EEXIST) ||
        (mkdir(member, 0700) != 0 && errno != EEXIST)) {
        snprintf(err, err_len, "cannot create data dir %s: %s", data_dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int load_snapshot(struct core *c, const char *data_dir, char *err, size_t err_len)
{
    struct snapshot_point pt;
    bool found = false;

    if (snapshot_init(&c->snap, data_dir, c->env.store, err, err_len) != 0 ||
        snapshot_load(c->snap, &pt, &found, err, err_len) != 0)
        return -1;
    if (found) {
        c->snap_index = pt.index;
        c->last_index = pt.index;
        c->applied = pt.index;
        c->term = pt.term;
        rpc_member_store(&c->env.member->alarms, pt.alarms);
    }
    return 0;
}

int core_open(struct core **out, const char *data_dir, const struct core_config *cfg,
              struct rpc_env *env, char *err, size_t err_len)
{
    struct core *c = calloc(1, sizeof(*c));
    struct wal_info info;
    char wal_dir[4096];

    if (c == NULL)
        return -1;
    c->env = *env;
    c->snapshot_count = cfg->snapshot_count != 0 ? cfg->snapshot_count : 1;
    if (make_dirs(data_dir, wal_dir, sizeof(wal_dir), err, err_len) != 0 ||
        load_snapshot(c, data_dir, err, err_len) != 0 ||
        wal_open(wal_dir, &replay_ops, c, &c->wal, &info, err, err_len) != 0) {
        snapshot_fini(c->snap);
        free(c);
        return -1;
    }
    autoc_init(&c->autoc, cfg->auto_period_ms, cfg->auto_revisions, now_ms(),
               mvcc_current_revision(c->env.store));
    if (info.torn_bytes > 0)
        fprintf(stderr, "cetcd: wal: cut a torn tail of %llu bytes\n",
                (unsigned long long)info.torn_bytes);
    if (start_term(c, err, err_len) != 0) {
        wal_close(c->wal);
        snapshot_fini(c->snap);
        free(c);
        return -1;
    }
    publish(c);
    *out = c;
    return 0;
}

static void vec_free(struct msg_vec *v)
{
    size_t i;

    for (i = 0; i < v->n; i++)
        shard_msg_free(v->v[i]);
    free(v->v);
}

/* After the loops stopped (a batch still in flight was never made durable
 * and was never answered). */
void core_close(struct core *c)
{
    if (c == NULL)
        return;
    snapshot_fini(c->snap);
    wal_close(c->wal);
    vec_free(&c->next);
    vec_free(&c->inflight);
    for (size_t i = 0; i < c->held.n; i++)
        shard_msg_free(c->held.v[i].m);
    free(c->held.v);
    free(c);
}

void core_attach(struct core *c, struct shard_set *set)
{
    c->set = set;
}

/* ---- the write path ---- */

static void refuse(struct core *c, struct shard_msg *m, int code, const char *message)
{
    free(m->data);
    m->data = NULL;
    m->len = 0;
    m->code = code;
    m->message = message;
    shard_core_reply(c->set, m);
}

static void submit_batch(struct core *c)
{
    struct ring_loop *loop = shard_core_loop(c->set);
    struct io_uring_sqe *sqe;
    struct msg_vec tmp;
    char err[256];
    int rv;

    if (c->write_inflight)
        return;
    rv = wal_batch_prepare(c->wal, &c->write, err, sizeof(err));
    if (rv < 0) {
        fprintf(stderr, "cetcd: fatal: %s\n", err);
        exit(1);
    }
    if (rv == 0)
        return;
    tmp = c->inflight;
    c->inflight = c->next;
    c->next = tmp;
    c->next.n = 0;
    sqe = ring_sqe(loop);
    io_uring_prep_write(sqe, c->write.fd, c->write.buf, (unsigned)c->write.len, c->write.offset);
    sqe->rw_flags = RWF_DSYNC;
    io_uring_sqe_set_data64(sqe, ring_ud(CORE_OP_WAL_WRITE, 0, 0));
    c->write_inflight = true;
}

/* Sends a reply, unless nobody asked (stream 0: entries the shards or the
 * core proposed on their own, such as an alarm or an auto-compaction). */
static void answer(struct core *c, struct shard_msg *m)
{
    if (m->tag.stream_id == 0)
        shard_msg_free(m);
    else
        shard_core_reply(c->set, m);
}

static void hold(struct core *c, struct shard_msg *m, uint64_t snap_gen)
{
    if (c->held.n == c->held.cap) {
        size_t cap = c->held.cap != 0 ? c->held.cap * 2 : 16;
        struct held *v = realloc(c->held.v, cap * sizeof(*v));
        if (v == NULL)
            fatal("out of memory holding a reply", -ENOMEM);
        c->held.v = v;
        c->held.cap = cap;
    }
    c->held.v[c->held.n].m = m;
    c->held.v[c->held.n].snap_gen = snap_gen;
    c->held.n++;
}

/* Sends the held replies whose wait is over: compaction waiters once no
 * compaction work is left, snapshot waiters once their snapshot is
 * durable. */
static void release_held(struct core *c)
{
    size_t i = 0;
    size_t j = 0;

    for (; i < c->held.n; i++) {
        struct held h = c->held.v[i];
        bool ready = h.snap_gen == 0 ? !c->compacting : h.snap_gen <= c->snap_gen_done;
        if (ready)
            answer(c, h.m);
        else
            c->held.v[j++] = h;
    }
    c->held.n = j;
}

static void apply_one(struct core *c, struct shard_msg *m)
{
    struct rpc_result r;

    if (rpc_apply(&c->env, m->data, m->len, true, &r) != 0) {
        /* Checked by the shard before proposing; cannot happen. */
        fprintf(stderr, "cetcd: fatal: undecodable entry %llu\n",
                (unsigned long long)c->applied + 1);
        exit(1);
    }
    c->applied++;
    free(m->data);
    free(r.side);
    m->code = r.code;
    m->message = r.message;
    m->data = r.body;
    m->len = r.len;
    if (r.wait == RPC_WAIT_COMPACTION) {
        c->compacting = true;
        hold(c, m, 0);
    } else {
        answer(c, m);
    }
}

/* The in-flight batch is durable: commit and apply it, in order. */
static void batch_durable(struct core *c)
{
    size_t i;

    wal_batch_done(c->wal);
    c->wal_bytes += c->write.len;
    for (i = 0; i < c->inflight.n; i++)
        apply_one(c, c->inflight.v[i]);
    c->inflight.n = 0;
    c->write_inflight = false;
    publish(c);
}

/* Defragment: answer once a snapshot started after this request is
 * durable (a new one is started now, or right after the running one). */
static void local_request(struct core *c, struct shard_msg *m)
{
    struct rpc_result r;

    free(m->data);
    m->data = NULL;
    m->len = 0;
    rpc_defragment_reply(&c->env, &r);
    m->code = r.code;
    m->message = r.message;
    m->data = r.body;
    m->len = r.len;
    c->snap_wanted = true;
    hold(c, m, c->snap_gen + 1);
}

static void drain(struct core *c)
{
    unsigned k;
    unsigned n = shard_set_count(c->set);
    struct shard_msg *m;

    for (k = 0; k < n; k++) {
        while (c->next.n < CORE_BATCH_ENTRIES_MAX &&
               wal_pending_bytes(c->wal) < CORE_BATCH_BYTES_MAX &&
               (m = shard_core_pop(c->set, k)) != NULL) {
            if (m->len > 0 && m->data[0] >= RPC_LOCAL_FIRST) {
                local_request(c, m);
                continue;
            }
            if (wal_add_entry(c->wal, c->term, c->last_index + 1, m->data, m->len) != 0) {
                refuse(c, m, RPC_INVALID_ARGUMENT, "etcdserver: request is too large");
                continue;
            }
            c->last_index++;
            if (vec_push(&c->next, m) != 0)
                fatal("out of memory queueing a proposal", -ENOMEM);
        }
    }
}

/* An entry the core proposes itself (auto-compaction): answered to
 * nobody. */
static void propose_own(struct core *c, uint8_t *data, size_t len)
{
    struct shard_msg *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        free(data);
        return;
    }
    m->data = data;
    m->len = len;
    if (wal_add_entry(c->wal, c->term, c->last_index + 1, data, len) != 0) {
        shard_msg_free(m);
        return;
    }
    c->last_index++;
    if (vec_push(&c->next, m) != 0)
        fatal("out of memory queueing a proposal", -ENOMEM);
}

static void auto_compact(struct core *c)
{
    Etcdserverpb__CompactionRequest req = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    int64_t rev = autoc_tick(&c->autoc, now_ms(), mvcc_current_revision(c->env.store));
    size_t n;
    uint8_t *data;

    if (rev <= 0 || rev <= mvcc_compact_revision(c->env.store))
        return;
    fprintf(stderr, "cetcd: auto-compaction at revision %lld\n", (long long)rev);
    req.revision = rev;
    n = etcdserverpb__compaction_request__get_packed_size(&req);
    data = malloc(1 + n);
    if (data == NULL)
        return;
    data[0] = RPC_ENTRY_COMPACT;
    etcdserverpb__compaction_request__pack(&req, data + 1);
    propose_own(c, data, 1 + n);
}

static void arm_timer(struct core *c)
{
    struct io_uring_sqe *sqe;
    uint64_t ms;

    if (c->timer_armed || !autoc_enabled(&c->autoc))
        return;
    ms = autoc_wait_ms(&c->autoc, now_ms());
    c->timer_ts.tv_sec = (long long)(ms / 1000u);
    c->timer_ts.tv_nsec = (long long)(ms % 1000u) * 1000000;
    sqe = ring_sqe(shard_core_loop(c->set));
    io_uring_prep_timeout(sqe, &c->timer_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ring_ud(CORE_OP_TIMER, 0, 0));
    c->timer_armed = true;
}

/* --snapshot-count entries since the last snapshot, as etcd; and, unlike
 * etcd (whose snapshot is its database file, already on disk), at least as
 * many WAL bytes as the last snapshot took: a snapshot here rewrites the
 * whole state, and this bounds what snapshots write to what the log
 * wrote. Restart then replays at most about one state's worth of log. */
static bool snapshot_due(const struct core *c)
{
    return c->applied - c->snap_index >= c->snapshot_count &&
           c->wal_bytes - c->snap_wal_mark >= snapshot_size_bytes(c->snap);
}

/* Bounded background work, once per turn: a compaction step, snapshot
 * completion (then the WAL behind it is released), a new snapshot every
 * --snapshot-count entries or when a defragment asks. */
static void background(struct core *c)
{
    struct snapshot_point pt;
    char err[256];
    int rv;
    bool was_compacting = c->compacting;

    /* Every compaction (asked for or automatic) has physical work to do;
     * a step is a no-op when there is none. */
    c->compacting = mvcc_compact_step(c->env.store, COMPACT_STEP_KEYS);
    if (was_compacting && !c->compacting)
        release_held(c);
    rv = snapshot_poll(c->snap, &pt);
    if (rv != 0) {
        c->snap_gen_done++;
        if (rv > 0) {
            /* The WAL is released one snapshot behind: should the newest
             * snapshot be damaged, the one before it still has its WAL. */
            if (c->snap_index != 0 && wal_release(c->wal, c->snap_index, err, sizeof(err)) < 0)
                fprintf(stderr, "cetcd: wal release: %s\n", err);
            c->snap_index = pt.index;
            publish(c);
        } else {
            c->snap_wanted = true; /* failed: try again */
        }
        release_held(c);
    }
    if (!snapshot_busy(c->snap) && (c->snap_wanted || snapshot_due(c))) {
        pt.index = c->applied;
        pt.term = c->term;
        pt.alarms = rpc_member_load(&c->env.member->alarms);
        if (snapshot_start(c->snap, &pt) == 0) {
            c->snap_wal_mark = c->wal_bytes;
            c->snap_gen++;
            c->snap_wanted = false;
        }
    }
}

static void core_turn(void *arg)
{
    struct core *c = arg;

    drain(c);
    background(c);
    submit_batch(c);
    arm_timer(c);
    shard_core_flush(c->set);
}

static void core_cqe(void *arg, uint64_t ud, int res)
{
    struct core *c = arg;

    switch (ring_ud_op(ud)) {
    case CORE_OP_WAL_WRITE:
        if (res < 0 || (size_t)res != c->write.len)
            fatal("wal write", res < 0 ? res : -EIO);
        batch_durable(c);
        break;
    case CORE_OP_TIMER:
        c->timer_armed = false;
        auto_compact(c);
        break;
    default:
        break;
    }
}

static bool core_busy(void *arg)
{
    struct core *c = arg;

    return shard_core_replies_waiting(c->set) || c->compacting || snapshot_busy(c->snap) ||
           (!c->write_inflight && wal_pending_bytes(c->wal) > 0);
}

static bool core_waiting(void *arg)
{
    struct core *c = arg;

    return c->write_inflight;
}

const struct shard_core_ops core_ops = {
    .waiting = core_waiting,
    .turn = core_turn,
    .cqe = core_cqe,
    .busy = core_busy,
};
