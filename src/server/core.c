/*
 * core.c — the core: drives this member's Raft state machine (src/raft)
 * on shard 0's io_uring loop. Proposals from every shard become Raft
 * proposals; each Raft "ready" is carried out in order: new log entries
 * and hard state go into one WAL batch made durable with one
 * synchronous-data write (RWF_DSYNC) through io_uring, messages go to the
 * peers (a leader's appends leave at once, in parallel with its own
 * write; answers that promise durability leave once the batch is
 * durable), committed entries are applied to the MVCC index, and each
 * client that proposed here is answered from its own shard.
 *
 * ENTRY DATA (of a Raft entry of type RAFT_ENTRY_NORMAL)
 *
 *   OFFSET SIZE MEANING
 *   0      8    proposer: the member ID that proposed it (little-endian)
 *   8      8    seq: that member's proposal number, 0 if nobody waits
 *   16     n    the request, as apply.c documents it ([type][protobuf])
 *
 * An empty entry is a new leader's (Raft §5.4.2). The proposer recognises
 * its own entries when it applies them, whoever was leader, and answers
 * the client waiting on that number (pending.c).
 *
 * WAL RECORDS: each Raft entry is stored as a WAL entry whose data is one
 * byte of Raft entry type followed by the entry data above.
 *
 * Reads: with more than one member, a linearizable read is held by its
 * shard and sent here; all reads that arrive in one loop turn share one
 * ReadIndex round (raft_read_index), and go back to their shards once
 * the applied index has reached the round's index.
 *
 * Start-up and shutdown are in core_boot.c, snapshots in core_snap.c,
 * membership requests and leadership transfer in core_members.c, the
 * lease table's leader duties (expiry, checkpoints) in core_lease.c.
 *
 * Thread: shard 0's only. The member figures it publishes (term, commit,
 * applied, leader, db size, cluster size) are atomics read by every shard.
 */
#include "core_int.h"

#include "autocompact.h"
#include "le.h"
#include "mvcc.h"
#include "peer.h"
#include "pending.h"
#include "roster.h"
#include "rpc.pb-c.h"
#include "snap.h"
#include "snapshot.h"
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

void core_fatal(const char *what, int res)
{
    fprintf(stderr, "cetcd: fatal: %s: %s\n", what, strerror(res < 0 ? -res : EIO));
    exit(1);
}

uint64_t core_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void vec_push(struct msg_vec *v, struct shard_msg *m)
{
    if (v->n == v->cap) {
        size_t cap = v->cap != 0 ? v->cap * 2 : 64;
        struct shard_msg **p = realloc(v->v, cap * sizeof(*p));
        if (p == NULL)
            core_fatal("out of memory queueing a request", -ENOMEM);
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = m;
}

void core_vec_free(struct msg_vec *v)
{
    for (size_t i = 0; i < v->n; i++)
        shard_msg_free(v->v[i]);
    free(v->v);
    memset(v, 0, sizeof(*v));
}

static void *scratch(struct core *c, size_t n)
{
    if (n > c->scratch_cap) {
        size_t cap = n < 4096 ? 4096 : n;
        uint8_t *p = realloc(c->scratch, cap);
        if (p == NULL)
            core_fatal("out of memory", -ENOMEM);
        c->scratch = p;
        c->scratch_cap = cap;
    }
    return c->scratch;
}

void core_publish(struct core *c)
{
    struct rpc_member *m = c->env.member;
    const struct raft_conf *conf = raft_conf(c->raft);

    rpc_member_store(&m->raft_term, raft_term(c->raft));
    rpc_member_store(&m->commit_index, raft_commit_index(c->raft));
    rpc_member_store(&m->applied_index, c->applied);
    rpc_member_store(&m->leader, raft_leader(c->raft));
    rpc_member_store(&m->cluster_size, conf->n_voters + conf->n_learners);
    rpc_member_store(&m->is_learner, raft_is_learner(conf, c->id));
    rpc_member_store(&m->db_size_bytes,
                     wal_size_bytes(c->wal) + (c->snap != NULL ? snapshot_size_bytes(c->snap) : 0));
}

/* ---- answering ---- */

/* Sends a reply, unless nobody asked (stream 0: entries the shards or the
 * core proposed on their own, such as an alarm or an auto-compaction). */
void core_answer(struct core *c, struct shard_msg *m)
{
    if (m->tag.stream_id == 0 || c->set == NULL)
        shard_msg_free(m);
    else
        shard_core_reply(c->set, m);
}

void core_refuse(struct core *c, struct shard_msg *m, int code, const char *message)
{
    free(m->data);
    m->data = NULL;
    m->len = 0;
    if (m->kind != SHARD_MSG_STREAM)
        m->kind = SHARD_MSG_REPLY;
    m->code = code;
    m->message = message;
    core_answer(c, m);
}

static void hold(struct core *c, struct shard_msg *m, uint64_t snap_gen)
{
    if (c->held.n == c->held.cap) {
        size_t cap = c->held.cap != 0 ? c->held.cap * 2 : 16;
        struct held *v = realloc(c->held.v, cap * sizeof(*v));
        if (v == NULL)
            core_fatal("out of memory holding a reply", -ENOMEM);
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
void core_release_held(struct core *c)
{
    size_t j = 0;

    for (size_t i = 0; i < c->held.n; i++) {
        struct held h = c->held.v[i];
        bool ready = h.snap_gen == 0 ? !c->compacting : h.snap_gen <= c->snap_gen_done;
        if (ready)
            core_answer(c, h.m);
        else
            c->held.v[j++] = h;
    }
    c->held.n = j;
}

/* ---- Raft messages kept until a batch is durable ---- */

static void rmsg_push(struct rmsg_vec *v, const struct raft_msg *m)
{
    struct raft_msg *d;

    if (v->n == v->cap) {
        size_t cap = v->cap != 0 ? v->cap * 2 : 16;
        struct raft_msg *p = realloc(v->v, cap * sizeof(*p));
        if (p == NULL)
            core_fatal("out of memory keeping a message", -ENOMEM);
        v->v = p;
        v->cap = cap;
    }
    d = &v->v[v->n++];
    *d = *m;
    d->entries = NULL;
    d->n_entries = 0;
    if (m->n_entries == 0)
        return;
    /* Deep copy: entries point into Raft's memory until raft_advance(). */
    size_t bytes = m->n_entries * sizeof(struct raft_entry);
    for (uint32_t i = 0; i < m->n_entries; i++)
        bytes += m->entries[i].len;
    struct raft_entry *e = malloc(bytes);
    if (e == NULL)
        core_fatal("out of memory keeping a message", -ENOMEM);
    uint8_t *p = (uint8_t *)(e + m->n_entries);
    for (uint32_t i = 0; i < m->n_entries; i++) {
        e[i] = m->entries[i];
        if (e[i].len != 0)
            memcpy(p, m->entries[i].data, e[i].len);
        e[i].data = p;
        p += e[i].len;
    }
    d->entries = e;
    d->n_entries = m->n_entries;
}

static void note_unreachable(struct core *c, uint64_t id)
{
    for (unsigned i = 0; i < c->n_unreachable; i++)
        if (c->unreachable[i] == id)
            return;
    if (c->n_unreachable < RAFT_MEMBERS_MAX)
        c->unreachable[c->n_unreachable++] = id;
}

static void note_snap_done(struct core *c, uint64_t id, bool ok)
{
    if (c->n_snap_done < RAFT_MEMBERS_MAX) {
        c->snap_done[c->n_snap_done] = id;
        c->snap_done_ok[c->n_snap_done++] = ok;
    }
}

static void report_unreachable(struct core *c)
{
    for (unsigned i = 0; i < c->n_unreachable; i++)
        raft_report_unreachable(c->raft, c->unreachable[i]);
    c->n_unreachable = 0;
    for (unsigned i = 0; i < c->n_snap_done; i++)
        raft_report_snapshot(c->raft, c->snap_done[i], c->snap_done_ok[i]);
    c->n_snap_done = 0;
}

/* A SNAP message goes with its snapshot file, streamed by the peer net;
 * the file may be gone (purged for a newer one): Raft then hears the
 * send failed and asks again with the newest. */
static void send_msg(struct core *c, const struct raft_msg *m)
{
    char path[4096];

    if (c->peers == NULL || m->to == c->id)
        return;
    if (m->type != RAFT_MSG_SNAP) {
        peer_send(c->peers, m);
        return;
    }
    snapshot_path(c->snap, m->snap.term, m->snap.index, path, sizeof(path));
    if (peer_send_snapshot(c->peers, m, path) != 0)
        note_snap_done(c, m->to, false);
    else
        fprintf(stderr, "cetcd: sending snapshot at index %llu to %016llx\n",
                (unsigned long long)m->snap.index, (unsigned long long)m->to);
}

static void rmsg_send_all(struct core *c, struct rmsg_vec *v)
{
    for (size_t i = 0; i < v->n; i++) {
        send_msg(c, &v->v[i]);
        free((void *)v->v[i].entries);
    }
    v->n = 0;
}

/* ---- apply ---- */

static void apply_result(struct core *c, struct shard_msg *m, struct rpc_result *r)
{
    if (r->side != NULL) {
        /* An alarm the apply raised (quota): proposed, answered to nobody. */
        struct shard_msg *s = calloc(1, sizeof(*s));
        if (s != NULL) {
            s->data = r->side;
            s->len = r->side_len;
            core_propose_or_wait(c, s);
        } else {
            free(r->side);
        }
        r->side = NULL;
    }
    if (m == NULL) {
        free(r->body);
        if (r->wait == RPC_WAIT_COMPACTION)
            c->compacting = true;
        return;
    }
    m->kind = SHARD_MSG_REPLY;
    m->code = r->code;
    m->message = r->message;
    m->data = r->body;
    m->len = r->len;
    if (r->wait == RPC_WAIT_COMPACTION) {
        c->compacting = true;
        hold(c, m, 0);
    } else {
        core_answer(c, m);
    }
}

void core_peer_update(struct core *c, const struct roster_member *m)
{
    const char *urls[ROSTER_URLS_MAX];

    if (c->peers == NULL || m->id == c->id)
        return;
    for (unsigned i = 0; i < m->n_peer_urls; i++)
        urls[i] = m->peer_urls[i];
    if (peer_set_member(c->peers, m->id, urls, m->n_peer_urls) != 0)
        fprintf(stderr, "cetcd: peer %016llx: cannot use its peer URLs\n",
                (unsigned long long)m->id);
}

/* A member's name and client URLs, published through the log. */
static void apply_attrs(struct core *c, const struct raft_entry *e)
{
    const uint8_t *p = e->data + CORE_ENVELOPE_BYTES + 1;
    size_t n = e->len - CORE_ENVELOPE_BYTES - 1;

    if (roster_attrs_apply(&c->roster, p, n) != 0) {
        fprintf(stderr, "cetcd: fatal: entry %llu: malformed member attributes\n",
                (unsigned long long)e->index);
        exit(1);
    }
    if (get_le64(e->data) == c->id)
        c->published = true;
}

static void apply_normal(struct core *c, const struct raft_entry *e)
{
    struct shard_msg *m = NULL;
    struct rpc_result r;

    if (e->len == 0)
        return; /* a new leader's empty entry */
    if (e->len < CORE_ENVELOPE_BYTES + 1) {
        fprintf(stderr, "cetcd: fatal: entry %llu is malformed\n", (unsigned long long)e->index);
        exit(1);
    }
    if (get_le64(e->data) == c->id)
        m = pending_take(&c->pending, get_le64(e->data + 8));
    if (e->data[CORE_ENVELOPE_BYTES] == RPC_ENTRY_MEMBER_ATTR) {
        apply_attrs(c, e);
        if (m != NULL)
            shard_msg_free(m);
        return;
    }
    if (e->data[CORE_ENVELOPE_BYTES] == RPC_ENTRY_MEMBER_UPDATE) {
        core_members_update_applied(c, e->data + CORE_ENVELOPE_BYTES + 1,
                                    e->len - CORE_ENVELOPE_BYTES - 1, m);
        return;
    }
    memset(&r, 0, sizeof(r));
    if (rpc_apply(&c->env, e->data + CORE_ENVELOPE_BYTES, e->len - CORE_ENVELOPE_BYTES, m != NULL,
                  &r) != 0) {
        fprintf(stderr, "cetcd: fatal: entry %llu cannot be decoded\n",
                (unsigned long long)e->index);
        exit(1);
    }
    apply_result(c, m, &r);
}

static void drop_peer_later(struct core *c, uint64_t id)
{
    if (c->n_drop == RAFT_MEMBERS_MAX) {
        peer_remove_member(c->peers, id);
        return;
    }
    c->drop_id[c->n_drop] = id;
    c->drop_at_ms[c->n_drop] = core_now_ms() + CORE_PEER_DROP_MS;
    c->n_drop++;
}

/* Forgets the removed members whose grace is over (unless re-added). */
static void drop_peers(struct core *c, uint64_t now)
{
    unsigned j = 0;

    for (unsigned i = 0; i < c->n_drop; i++) {
        if (now < c->drop_at_ms[i]) {
            c->drop_id[j] = c->drop_id[i];
            c->drop_at_ms[j++] = c->drop_at_ms[i];
        } else if (roster_find(&c->roster, c->drop_id[i]) == NULL) {
            peer_remove_member(c->peers, c->drop_id[i]);
        }
    }
    c->n_drop = j;
}

/* A membership change: the context is an etcdserverpb.Member (ID, peer
 * URLs, learner). Raft has already changed its own membership. */
static void apply_conf(struct core *c, const struct raft_entry *e)
{
    struct raft_conf_change cc;
    Etcdserverpb__Member *pb = NULL;
    struct roster_member *m;

    if (raft_conf_decode(e->data, e->len, &cc) != 0 ||
        (cc.ctx_len != 0 &&
         (pb = etcdserverpb__member__unpack(NULL, cc.ctx_len, cc.ctx)) == NULL)) {
        fprintf(stderr, "cetcd: fatal: membership entry %llu is malformed\n",
                (unsigned long long)e->index);
        exit(1);
    }
    fprintf(stderr, "cetcd: membership change %u of member %016llx applied at %llu\n", cc.op,
            (unsigned long long)cc.id, (unsigned long long)e->index);
    switch (cc.op) {
    case RAFT_CONF_ADD_VOTER:
    case RAFT_CONF_ADD_LEARNER:
        if (pb != NULL && roster_add(&c->roster, cc.id, NULL, (const char *const *)pb->peerurls,
                                     (unsigned)pb->n_peerurls, cc.op == RAFT_CONF_ADD_LEARNER) != 0)
            fprintf(stderr, "cetcd: member %016llx: cannot record it\n", (unsigned long long)cc.id);
        if ((m = roster_find(&c->roster, cc.id)) != NULL)
            core_peer_update(c, m);
        break;
    case RAFT_CONF_PROMOTE:
        if ((m = roster_find(&c->roster, cc.id)) != NULL)
            m->learner = false;
        break;
    case RAFT_CONF_REMOVE:
        roster_remove(&c->roster, cc.id);
        if (c->peers != NULL && cc.id != c->id) {
            peer_mark_removed(c->peers, cc.id);
            drop_peer_later(c, cc.id);
        }
        break;
    default:
        break;
    }
    if (pb != NULL)
        etcdserverpb__member__free_unpacked(pb, NULL);
    core_members_conf_applied(c, cc.op, cc.id);
}

static void apply_entries(struct core *c, const struct raft_entry *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (v[i].type == RAFT_ENTRY_CONF)
            apply_conf(c, &v[i]);
        else
            apply_normal(c, &v[i]);
        c->applied = v[i].index;
        c->applied_term = v[i].term;
    }
}

/* ---- reads ---- */

static void round_fail(struct core *c, struct read_round *rr, const char *message)
{
    for (size_t i = 0; i < rr->msgs.n; i++)
        core_refuse(c, rr->msgs.v[i], RPC_UNAVAILABLE, message);
    rr->msgs.n = 0;
}

static void round_drop(struct core *c, unsigned k)
{
    free(c->rounds[k].msgs.v);
    c->rounds[k] = c->rounds[--c->n_rounds];
    memset(&c->rounds[c->n_rounds], 0, sizeof(c->rounds[0]));
}

/* Starts one ReadIndex round for every read that arrived this turn. */
static void start_reads(struct core *c)
{
    struct read_round *rr;

    if (c->reads.n == 0 || c->n_rounds == CORE_READ_ROUNDS_MAX || raft_leader(c->raft) == RAFT_NONE)
        return;
    if (raft_read_index(c->raft, c->read_ctx + 1) != 0)
        return; /* retried next turn, until the reads' deadline */
    rr = &c->rounds[c->n_rounds++];
    rr->ctx = ++c->read_ctx;
    rr->indexed = false;
    rr->deadline_ms = c->reads_deadline_ms;
    rr->msgs = c->reads;
    memset(&c->reads, 0, sizeof(c->reads));
}

static void read_indexed(struct core *c, const struct raft_read *rd)
{
    for (unsigned k = 0; k < c->n_rounds; k++) {
        if (c->rounds[k].ctx == rd->ctx) {
            c->rounds[k].index = rd->index;
            c->rounds[k].indexed = true;
        }
    }
}

/* Sends back to their shards the reads whose index is applied. */
static void serve_reads(struct core *c)
{
    unsigned k = 0;

    while (k < c->n_rounds) {
        struct read_round *rr = &c->rounds[k];
        if (!rr->indexed || rr->index > c->applied) {
            k++;
            continue;
        }
        for (size_t i = 0; i < rr->msgs.n; i++) {
            rr->msgs.v[i]->kind = SHARD_MSG_READ_GO;
            rr->msgs.v[i]->code = RPC_OK;
            core_answer(c, rr->msgs.v[i]);
        }
        rr->msgs.n = 0;
        round_drop(c, k);
    }
}

/* A new leader or term: rounds still without an index are lost. */
static void reads_leader_changed(struct core *c)
{
    unsigned k = 0;

    while (k < c->n_rounds) {
        if (c->rounds[k].indexed) {
            k++;
            continue;
        }
        round_fail(c, &c->rounds[k], ERR_LEADER_CHANGED);
        round_drop(c, k);
    }
}

/* ---- the ready loop ---- */

static void add_entries(struct core *c, const struct raft_entry *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *buf = scratch(c, 1 + (size_t)v[i].len);
        buf[0] = v[i].type;
        if (v[i].len != 0)
            memcpy(buf + 1, v[i].data, v[i].len);
        if (wal_add_entry(c->wal, v[i].term, v[i].index, buf, 1 + (size_t)v[i].len) != 0)
            core_fatal("wal: entry too large", -E2BIG);
        c->next.last_index = v[i].index;
        c->next.last_term = v[i].term;
    }
}

static void add_hardstate(struct core *c, const struct raft_hardstate *h)
{
    struct wal_hardstate hs = {h->term, h->vote, h->commit};

    if (wal_add_hardstate(c->wal, &hs) != 0)
        core_fatal("wal: hard state", -EIO);
    c->hs_written = *h;
    c->hs_dirty = false;
}

/* A new term or vote is written at once (messages depend on it); a new
 * commit index alone rides with the next entries. The hard state goes
 * before the entries of its ready: a torn batch keeps a prefix. */
static void persist_state(struct core *c, const struct raft_ready *rd)
{
    if (rd->hs_changed) {
        if (rd->hs.term != c->hs_written.term || rd->hs.vote != c->hs_written.vote) {
            add_hardstate(c, &rd->hs);
        } else {
            c->hs_deferred = rd->hs;
            c->hs_dirty = true;
        }
    }
    if (rd->n_entries != 0 && c->hs_dirty)
        add_hardstate(c, &c->hs_deferred);
    add_entries(c, rd->entries, rd->n_entries);
}

static void handle_ready(struct core *c, const struct raft_ready *rd)
{
    if (rd->has_snap)
        core_install_snapshot(c, &rd->snap);
    persist_state(c, rd);
    for (uint32_t i = 0; i < rd->n_msgs; i++)
        send_msg(c, &rd->msgs[i]);
    for (uint32_t i = 0; i < rd->n_msgs_durable; i++)
        rmsg_push(&c->next.durable, &rd->msgs_durable[i]);
    apply_entries(c, rd->committed, rd->n_committed);
    for (uint32_t i = 0; i < rd->n_reads; i++)
        read_indexed(c, &rd->reads[i]);
    if (rd->leader != c->last_leader || rd->term != c->last_term) {
        if (rd->leader != c->last_leader)
            fprintf(stderr, "cetcd: raft: term %llu, leader %016llx\n",
                    (unsigned long long)rd->term, (unsigned long long)rd->leader);
        c->last_leader = rd->leader;
        c->last_term = rd->term;
        reads_leader_changed(c);
    }
    core_lease_role(c);
}

/* The batch in flight is durable: its messages may leave, and Raft
 * learns its entries are durable here. */
static void batch_durable(struct core *c)
{
    wal_batch_done(c->wal);
    c->wal_bytes += c->inflight.bytes;
    rmsg_send_all(c, &c->inflight.durable);
    if (c->inflight.last_index != 0)
        raft_persisted(c->raft, c->inflight.last_index, c->inflight.last_term);
    c->inflight.last_index = 0;
    c->write_inflight = false;
}

/* Hands the pending batch to io_uring (or, at start-up, writes it now).
 * With nothing to write and nothing in flight, durable messages leave at
 * once: everything they vouch for is already durable. */
void core_submit_batch(struct core *c)
{
    struct batch tmp;
    char err[256];
    int rv;

    if (c->write_inflight)
        return;
    rv = wal_batch_prepare(c->wal, &c->write, err, sizeof(err));
    if (rv < 0) {
        fprintf(stderr, "cetcd: fatal: %s\n", err);
        exit(1);
    }
    if (rv == 0) {
        rmsg_send_all(c, &c->next.durable);
        return;
    }
    tmp = c->inflight;
    c->inflight = c->next;
    c->next = tmp;
    c->next.durable.n = 0;
    c->next.last_index = 0;
    c->inflight.bytes = c->write.len;
    c->write_inflight = true;
    if (c->sync_mode) {
        if (pwrite(c->write.fd, c->write.buf, c->write.len, (off_t)c->write.offset) !=
                (ssize_t)c->write.len ||
            fdatasync(c->write.fd) != 0)
            core_fatal("wal write", -errno);
        batch_durable(c);
        return;
    }
    struct io_uring_sqe *sqe = ring_sqe(shard_core_loop(c->set));
    io_uring_prep_write(sqe, c->write.fd, c->write.buf, (unsigned)c->write.len, c->write.offset);
    sqe->rw_flags = RWF_DSYNC;
    io_uring_sqe_set_data64(sqe, ring_ud(CORE_OP_WAL_WRITE, 0, 0));
}

/* Carries out every ready Raft has. */
void core_drive(struct core *c)
{
    struct raft_ready rd;

    while (raft_ready(c->raft, &rd)) {
        c->in_ready = true;
        handle_ready(c, &rd);
        c->in_ready = false;
        raft_advance(c->raft);
        report_unreachable(c);
    }
}

/* ---- proposals ---- */

/* Proposes m (a request from a shard, or the core's own with stream 0).
 * Returns false if there is no leader to take it (m untouched). */
static bool propose(struct core *c, struct shard_msg *m)
{
    uint64_t seq = 0;
    uint8_t *buf;
    int rv;

    if (m->tag.stream_id != 0) {
        seq = pending_add(&c->pending, m, core_now_ms() + c->request_timeout_ms);
        if (seq == 0) {
            core_refuse(c, m, RPC_RESOURCE_EXHAUSTED, ERR_TOO_MANY);
            return true;
        }
    }
    buf = scratch(c, CORE_ENVELOPE_BYTES + m->len);
    put_le64(buf, c->id);
    put_le64(buf + 8, seq);
    memcpy(buf + CORE_ENVELOPE_BYTES, m->data, m->len);
    rv = raft_propose(c->raft, buf, CORE_ENVELOPE_BYTES + m->len);
    if (rv == RAFT_ERR_NO_LEADER || rv == RAFT_ERR_TRANSFERRING) {
        if (seq != 0)
            pending_take(&c->pending, seq);
        return false;
    }
    free(m->data);
    m->data = NULL;
    m->len = 0;
    if (rv == 0) {
        if (seq == 0)
            shard_msg_free(m);
        return true;
    }
    if (seq != 0)
        pending_take(&c->pending, seq);
    if (rv == RAFT_ERR_TOO_LARGE)
        core_refuse(c, m, RPC_INVALID_ARGUMENT, ERR_TOO_LARGE);
    else if (rv == RAFT_ERR_REMOVED)
        core_refuse(c, m, RPC_UNAVAILABLE, ERR_REMOVED);
    else
        core_refuse(c, m, RPC_RESOURCE_EXHAUSTED, ERR_TOO_MANY);
    return true;
}

static void wait_push(struct core *c, struct shard_msg *m, uint64_t deadline_ms)
{
    struct wait_vec *w = &c->unled;

    if (w->n == CORE_WAITING_MAX) {
        core_refuse(c, m, RPC_RESOURCE_EXHAUSTED, ERR_TOO_MANY);
        return;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap != 0 ? w->cap * 2 : 64;
        struct shard_msg **v = realloc(w->v, cap * sizeof(*v));
        uint64_t *d = v != NULL ? realloc(w->deadline_ms, cap * sizeof(*d)) : NULL;
        if (v == NULL || d == NULL)
            core_fatal("out of memory queueing a request", -ENOMEM);
        w->v = v;
        w->deadline_ms = d;
        w->cap = cap;
    }
    w->v[w->n] = m;
    w->deadline_ms[w->n] = deadline_ms;
    w->n++;
}

void core_propose_or_wait(struct core *c, struct shard_msg *m)
{
    if (c->unled.n != 0 || !propose(c, m))
        wait_push(c, m, core_now_ms() + c->request_timeout_ms);
}

/* Proposals that waited for a leader: proposed in order once there is
 * one; answered "request timed out" past their deadline. */
static void retry_unled(struct core *c, uint64_t now)
{
    struct wait_vec *w = &c->unled;
    size_t i = 0;
    size_t j;

    if (w->n == 0)
        return;
    if (raft_leader(c->raft) != RAFT_NONE) {
        while (i < w->n && propose(c, w->v[i]))
            i++;
    }
    for (j = 0; i < w->n; i++) {
        if (w->deadline_ms[i] <= now) {
            core_refuse(c, w->v[i], RPC_UNAVAILABLE, ERR_TIMEOUT);
            continue;
        }
        w->v[j] = w->v[i];
        w->deadline_ms[j] = w->deadline_ms[i];
        j++;
    }
    w->n = j;
}

/* Defragment: answer once a snapshot started after this request is
 * durable (a new one is started now, or right after the running one). */
static void local_defrag(struct core *c, struct shard_msg *m)
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

static void take(struct core *c, struct shard_msg *m)
{
    uint8_t type = m->len > 0 ? m->data[0] : RPC_ENTRY_NOOP;

    if (type == RPC_LOCAL_DEFRAG) {
        local_defrag(c, m);
    } else if (type == RPC_LOCAL_MEMBER_LIST) {
        free(m->data);
        m->data = roster_member_list(&c->roster, c->env.member->cluster_id, c->id,
                                     raft_term(c->raft), &m->len);
        m->code = m->data != NULL ? RPC_OK : RPC_RESOURCE_EXHAUSTED;
        m->message = m->data != NULL ? NULL : "etcdserver: out of memory";
        core_answer(c, m);
    } else if (type >= RPC_LOCAL_LEASE_TTL && type <= RPC_LOCAL_LEASE_KEEPALIVE) {
        core_lease_local(c, m);
    } else if (type >= RPC_LOCAL_MEMBER_ADD && type <= RPC_LOCAL_MOVE_LEADER) {
        core_members_request(c, m);
    } else if (type == RPC_LOCAL_READ) {
        if (c->reads.n == 0)
            c->reads_deadline_ms = core_now_ms() + c->request_timeout_ms;
        vec_push(&c->reads, m);
    } else {
        core_propose_or_wait(c, m);
    }
}

static void drain(struct core *c)
{
    unsigned n = shard_set_count(c->set);
    unsigned taken = 0;
    size_t bytes = 0;
    struct shard_msg *m;

    for (unsigned k = 0; k < n; k++) {
        while (taken < CORE_TURN_PROPOSALS_MAX && bytes < CORE_TURN_BYTES_MAX &&
               (m = shard_core_pop(c->set, k)) != NULL) {
            taken++;
            bytes += m->len;
            take(c, m);
        }
    }
}

/* Once per tick: requests past their deadline are answered. */
static void expire(struct core *c, uint64_t now)
{
    struct shard_msg *m;
    unsigned k = 0;

    while ((m = pending_expired(&c->pending, now)) != NULL)
        core_refuse(c, m, RPC_UNAVAILABLE, ERR_TIMEOUT);
    retry_unled(c, now);
    while (k < c->n_rounds) {
        if (c->rounds[k].deadline_ms > now) {
            k++;
            continue;
        }
        round_fail(c, &c->rounds[k], ERR_TIMEOUT);
        round_drop(c, k);
    }
    if (c->reads.n != 0 && c->reads_deadline_ms <= now) {
        for (size_t i = 0; i < c->reads.n; i++)
            core_refuse(c, c->reads.v[i], RPC_UNAVAILABLE, ERR_TIMEOUT);
        c->reads.n = 0;
    }
}

static void arm_timers(struct core *c);

void core_attach(struct core *c, struct shard_set *set, struct peer_net *peers)
{
    c->set = set;
    c->peers = peers;
    for (unsigned i = 0; i < c->roster.n; i++)
        core_peer_update(c, &c->roster.m[i]);
    for (unsigned i = 0; c->peers != NULL && i < c->roster.n_removed; i++)
        peer_mark_removed(c->peers, c->roster.removed[i]);
    /* A member that applied its own removal before a restart stops again. */
    if (roster_find(&c->roster, c->id) == NULL)
        c->removed = true;
    /* The loop only turns on completions: queue the first ones (the tick,
     * the dials) so that it gets going without any client. */
    arm_timers(c);
    if (c->peers != NULL)
        peer_turn(c->peers, core_now_ms());
}

/* Once there is a leader, this member publishes its name and client URLs
 * through the log (as etcd does at every start), again after a request
 * timeout until it sees them applied. */
static void publish_self(struct core *c, uint64_t now)
{
    struct shard_msg *m;

    if (c->published || raft_leader(c->raft) == RAFT_NONE || now < c->publish_at_ms)
        return;
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return;
    m->data = roster_attrs_encode(&c->self, RPC_ENTRY_MEMBER_ATTR, &m->len);
    if (m->data == NULL) {
        free(m);
        return;
    }
    c->publish_at_ms = now + c->request_timeout_ms;
    core_propose_or_wait(c, m);
}

/* ---- timers and background work ---- */

static void auto_compact(struct core *c)
{
    Etcdserverpb__CompactionRequest req = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    int64_t rev = autoc_tick(&c->autoc, core_now_ms(), mvcc_current_revision(c->env.store));
    struct shard_msg *m;
    size_t n;

    if (rev <= 0 || rev <= mvcc_compact_revision(c->env.store) || raft_role(c->raft) != RAFT_LEADER)
        return;
    fprintf(stderr, "cetcd: auto-compaction at revision %lld\n", (long long)rev);
    req.revision = rev;
    n = etcdserverpb__compaction_request__get_packed_size(&req);
    m = calloc(1, sizeof(*m));
    if (m == NULL || (m->data = malloc(1 + n)) == NULL) {
        free(m);
        return;
    }
    m->data[0] = RPC_ENTRY_COMPACT;
    etcdserverpb__compaction_request__pack(&req, m->data + 1);
    m->len = 1 + n;
    core_propose_or_wait(c, m);
}

static void arm_timeout(struct core *c, struct __kernel_timespec *ts, uint64_t ms, unsigned op)
{
    struct io_uring_sqe *sqe = ring_sqe(shard_core_loop(c->set));

    ts->tv_sec = (long long)(ms / 1000u);
    ts->tv_nsec = (long long)(ms % 1000u) * 1000000;
    io_uring_prep_timeout(sqe, ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ring_ud(op, 0, 0));
}

static void arm_timers(struct core *c)
{
    if (!c->timer_armed && autoc_enabled(&c->autoc)) {
        arm_timeout(c, &c->timer_ts, autoc_wait_ms(&c->autoc, core_now_ms()), CORE_OP_TIMER);
        c->timer_armed = true;
    }
    if (!c->tick_armed) {
        arm_timeout(c, &c->tick_ts, c->heartbeat_ms, CORE_OP_TICK);
        c->tick_armed = true;
    }
}

/* ---- the loop hooks ---- */

static void core_turn(void *arg)
{
    struct core *c = arg;

    drain(c);
    if (c->unled.n != 0 && raft_leader(c->raft) != RAFT_NONE)
        retry_unled(c, core_now_ms());
    publish_self(c, core_now_ms());
    start_reads(c);
    core_drive(c);
    core_members_turn(c, core_now_ms());
    serve_reads(c);
    core_background(c);
    core_submit_batch(c);
    if (c->peers != NULL) {
        peer_turn(c->peers, core_now_ms());
        if (c->n_drop != 0)
            drop_peers(c, core_now_ms());
    }
    arm_timers(c);
    core_publish(c);
    shard_core_flush(c->set);
}

static void core_cqe(void *arg, uint64_t ud, int res)
{
    struct core *c = arg;
    unsigned op = ring_ud_op(ud);

    switch (op) {
    case CORE_OP_WAL_WRITE:
        if (res < 0 || (size_t)res != c->write.len)
            core_fatal("wal write", res < 0 ? res : -EIO);
        batch_durable(c);
        break;
    case CORE_OP_TIMER:
        c->timer_armed = false;
        auto_compact(c);
        break;
    case CORE_OP_TICK:
        c->tick_armed = false;
        raft_tick(c->raft);
        expire(c, core_now_ms());
        core_lease_tick(c, core_now_ms());
        break;
    default:
        if (c->peers != NULL && op >= CORE_PEER_OP_BASE && op < CORE_PEER_OP_BASE + 8)
            peer_cqe(c->peers, ud, res);
        break;
    }
}

static bool core_busy(void *arg)
{
    struct core *c = arg;

    return shard_core_replies_waiting(c->set) || c->compacting || snapshot_busy(c->snap) ||
           raft_has_ready(c->raft) || (c->peers != NULL && peer_busy(c->peers)) ||
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

/* ---- the peer net's callbacks ---- */

static void on_peer_msg(void *arg, const struct raft_msg *m)
{
    struct core *c = *(struct core **)arg;

    raft_step(c->raft, m);
}

static void on_snapshot_sent(void *arg, uint64_t to, bool ok)
{
    struct core *c = *(struct core **)arg;

    if (c->in_ready)
        note_snap_done(c, to, ok); /* reported right after the ready */
    else
        raft_report_snapshot(c->raft, to, ok);
}

static void on_unreachable(void *arg, uint64_t to)
{
    struct core *c = *(struct core **)arg;

    if (c->in_ready)
        note_unreachable(c, to);
    else
        raft_report_unreachable(c->raft, to);
}

/* A member joining the cluster asks who is in it (main.c join_cluster). */
static int on_members(void *arg, uint8_t **blob, size_t *len)
{
    struct core *c = *(struct core **)arg;

    if (c == NULL)
        return -1;
    *blob = roster_encode(&c->roster, len);
    return *blob != NULL ? 0 : -1;
}

/* A member told us we were removed from the cluster (etcd: 410 Gone). */
static void on_removed(void *arg, uint64_t by)
{
    struct core *c = *(struct core **)arg;

    fprintf(stderr, "cetcd: member %016llx says this member was removed from the cluster\n",
            (unsigned long long)by);
    if (c != NULL)
        c->removed = true;
}

const struct peer_ops core_peer_ops = {
    .on_members = on_members,
    .on_removed = on_removed,
    .on_msg = on_peer_msg,
    .on_snapshot = core_on_peer_snapshot,
    .on_snapshot_sent = on_snapshot_sent,
    .on_unreachable = on_unreachable,
};
