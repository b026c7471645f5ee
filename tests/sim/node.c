/*
 * node.c — one simulated member: its storage, how it processes raft's
 * ready records, crashes and restarts, and its side of the network.
 *
 * Storage model: `d*` fields are durable (they survive a crash); `m*`
 * fields are the storage as written, durable plus the unsynced writes in
 * the ring `w` (one per ready, completed in order by EV_SYNC after a
 * random delay). mlog therefore always equals raft's own log once the
 * member's readies are drained; node_check_quiet() asserts it. A crash
 * drops the unsynced writes, or keeps a prefix of their records (snapshot,
 * entries one by one, hard state), as a torn but valid WAL would.
 *
 * Invariants: dlog.base_index == dsnap.meta.index (the durable log starts
 * right after the durable snapshot, as raft_load requires); the state
 * machine (applied, chain, conf) only moves by applying committed entries
 * in order or by installing a snapshot; a member never takes a snapshot
 * while a received one is still unsynced, so a durable snapshot never goes
 * back. Ready processing follows raft.h's numbered steps and makes no
 * other raft_* call between raft_ready() and raft_advance().
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static const char *const msg_names[] = {
    "?",    "APP",  "APP_RESP",   "VOTE",      "VOTE_RESP", "PREVOTE",     "PREVOTE_RESP", "HB",
    "HB_R", "PROP", "READ_INDEX", "READ_RESP", "SNAP",      "TIMEOUT_NOW", "XFER",
};

static const char *msg_name(uint8_t t)
{
    return t < sizeof(msg_names) / sizeof(msg_names[0]) ? msg_names[t] : "?";
}

static struct raft_config node_config(const struct sim *s, const struct node *n)
{
    struct raft_config cfg = s->cfg;
    cfg.id = n->id;
    cfg.seed = hash64(s->seed * 1000003 + n->id * 131 + n->inc);
    return cfg;
}

/* ---- messages ---- */

static struct netmsg *netmsg_copy(struct sim *s, const struct raft_msg *m)
{
    struct netmsg *nm = calloc(1, sizeof(*nm));
    if (!nm)
        abort();
    nm->m = *m;
    nm->m.entries = NULL;
    if (m->n_entries) {
        nm->ents = calloc(m->n_entries, sizeof(*nm->ents));
        if (!nm->ents)
            abort();
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *e = &m->entries[i];
            const struct blob *b = blob_intern(s, e->type, e->data, e->len);
            nm->ents[i] = *e;
            nm->ents[i].data = b->data;
        }
        nm->m.entries = nm->ents;
    }
    return nm;
}

static struct netmsg *netmsg_dup(const struct netmsg *src)
{
    struct netmsg *nm = malloc(sizeof(*nm));
    if (!nm)
        abort();
    *nm = *src;
    if (src->m.n_entries) {
        nm->ents = malloc(src->m.n_entries * sizeof(*nm->ents));
        if (!nm->ents)
            abort();
        memcpy(nm->ents, src->ents, src->m.n_entries * sizeof(*nm->ents));
        nm->m.entries = nm->ents;
    }
    return nm;
}

void netmsg_free(struct netmsg *nm)
{
    if (!nm)
        return;
    free(nm->ents);
    free(nm);
}

static uint64_t net_delay(struct sim *s)
{
    uint64_t d = 1 + rng_below(&s->rng, s->delay_max);
    /* Now and then a message is held back long: reordering past many
     * later ones, as a retransmitting TCP connection would. */
    if (!s->final && rng_permille(&s->rng, 10))
        d += rng_below(&s->rng, 5 * SIM_TICK_UNITS);
    return d;
}

/* The promises raft.h makes about what may be sent before it is durable:
 * an append is acknowledged only once the entries are durable (commit
 * counts durable copies), a vote only once it is recorded durably. */
static void check_send_durable(struct sim *s, struct node *n, const struct raft_msg *m,
                               bool immediate)
{
    if (m->type == RAFT_MSG_APP_RESP && !m->reject && m->index > n->dsnap.meta.index) {
        uint64_t dt, mt;
        if (!slog_term(&n->dlog, m->index, &dt))
            sim_fail(s, "Durability",
                     "member %llu acknowledges index %llu to %llu but its durable log ends at "
                     "%llu",
                     (unsigned long long)n->id, (unsigned long long)m->index,
                     (unsigned long long)m->to, (unsigned long long)slog_last(&n->dlog));
        if (immediate && (!slog_term(&n->mlog, m->index, &mt) || mt != dt))
            sim_fail(s, "Durability",
                     "member %llu acknowledges index %llu (written term %llu) at once but "
                     "durable there is term %llu",
                     (unsigned long long)n->id, (unsigned long long)m->index,
                     (unsigned long long)mt, (unsigned long long)dt);
    }
    if (m->type == RAFT_MSG_VOTE_RESP && !m->reject &&
        !(n->dhs.term > m->term || (n->dhs.term == m->term && n->dhs.vote == m->to)))
        sim_fail(s, "Durability",
                 "member %llu grants its vote in term %llu to %llu; durable hard state is "
                 "term %llu vote %llu",
                 (unsigned long long)n->id, (unsigned long long)m->term, (unsigned long long)m->to,
                 (unsigned long long)n->dhs.term, (unsigned long long)n->dhs.vote);
}

static void check_msg(struct sim *s, struct node *n, const struct raft_msg *m)
{
    if (m->from != n->id || m->to == n->id || m->to == RAFT_NONE || m->to >= SIM_ID_MAX)
        sim_fail(s, "message", "member %llu emits %s from %llu to %llu", (unsigned long long)n->id,
                 msg_name(m->type), (unsigned long long)m->from, (unsigned long long)m->to);
    if (m->n_entries && !m->entries)
        sim_fail(s, "message", "%s with %u entries and no array", msg_name(m->type), m->n_entries);
    if (m->type == RAFT_MSG_APP) {
        for (uint32_t i = 0; i < m->n_entries; i++)
            if (m->entries[i].index != m->index + 1 + i || m->entries[i].term > m->term)
                sim_fail(s, "message",
                         "APP from %llu after index %llu carries entry %u with index %llu "
                         "term %llu (message term %llu)",
                         (unsigned long long)m->from, (unsigned long long)m->index, i,
                         (unsigned long long)m->entries[i].index,
                         (unsigned long long)m->entries[i].term, (unsigned long long)m->term);
    }
}

static void net_post_snap(struct sim *s, struct node *n, struct netmsg *nm)
{
    const struct raft_msg *m = &nm->m;
    if (m->snap.index == 0 || m->snap.index != n->dsnap.meta.index ||
        m->snap.term != n->dsnap.meta.term || !conf_equal(&m->snap.conf, &n->dsnap.meta.conf))
        sim_fail(s, "snapshot",
                 "member %llu sends SNAP (index %llu, term %llu) to %llu but its snapshot is "
                 "(index %llu, term %llu)",
                 (unsigned long long)n->id, (unsigned long long)m->snap.index,
                 (unsigned long long)m->snap.term, (unsigned long long)m->to,
                 (unsigned long long)n->dsnap.meta.index, (unsigned long long)n->dsnap.meta.term);
    s->st.snaps_sent++;
    /* A snapshot stream fails as a whole: its sender hears of it later. */
    if (!s->final && (rng_permille(&s->rng, 150) || sim_link_cut(s, n->id, m->to))) {
        s->st.snaps_failed++;
        sim_trace(s, "snapshot %llu -> %llu (index %llu) will fail", (unsigned long long)n->id,
                  (unsigned long long)m->to, (unsigned long long)m->snap.index);
        sim_schedule(s, s->now + 1 + rng_below(&s->rng, 2 * SIM_TICK_UNITS), EV_SNAP_REPORT, n->id,
                     n->inc, m->to * 2, NULL);
        netmsg_free(nm);
        return;
    }
    nm->has_snapdata = true;
    nm->snap = n->dsnap;
    if (!sim_schedule(s, s->now + 10 + rng_below(&s->rng, 2 * SIM_TICK_UNITS), EV_MSG, m->to, 0, 0,
                      nm)) {
        sim_schedule(s, s->now + 1, EV_SNAP_REPORT, n->id, n->inc, m->to * 2, NULL);
        netmsg_free(nm);
    }
}

/* Hands a message to the network; takes ownership of nm. */
static void net_post(struct sim *s, struct node *n, struct netmsg *nm, bool immediate)
{
    check_send_durable(s, n, &nm->m, immediate);
    nm->from_inc = n->inc;
    s->st.msgs_sent++;
    if (s->verbose)
        sim_trace(
            s, "send %s %llu->%llu term=%llu idx=%llu lt=%llu commit=%llu n=%u rej=%d ctx=%llu",
            msg_name(nm->m.type), (unsigned long long)nm->m.from, (unsigned long long)nm->m.to,
            (unsigned long long)nm->m.term, (unsigned long long)nm->m.index,
            (unsigned long long)nm->m.log_term, (unsigned long long)nm->m.commit, nm->m.n_entries,
            nm->m.reject, (unsigned long long)nm->m.ctx);
    if (nm->m.type == RAFT_MSG_SNAP) {
        net_post_snap(s, n, nm);
        return;
    }
    if (sim_queue_full(s, n->id, nm->m.to)) {
        /* The driver's send queue to that peer is full: it drops the
         * message and reports the peer unreachable at once, which raft
         * takes only after raft_advance() (node_drain does it then). */
        uint64_t to = nm->m.to;
        s->st.qfull_drops++;
        if (s->verbose)
            sim_trace(s, "queue full: drop %s %llu->%llu idx=%llu n=%u", msg_name(nm->m.type),
                      (unsigned long long)n->id, (unsigned long long)to,
                      (unsigned long long)nm->m.index, nm->m.n_entries);
        netmsg_free(nm);
        if (n->in_ready)
            n->unreach[to] = true;
        else
            raft_report_unreachable(n->r, to);
        return;
    }
    if (!s->final && rng_permille(&s->rng, s->loss_pm)) {
        s->st.msgs_lost++;
        netmsg_free(nm);
        return;
    }
    if (!s->final && rng_permille(&s->rng, s->dup_pm)) {
        struct netmsg *dup = netmsg_dup(nm);
        if (!sim_schedule(s, s->now + net_delay(s), EV_MSG, dup->m.to, 0, 0, dup))
            netmsg_free(dup);
    }
    if (!sim_schedule(s, s->now + net_delay(s), EV_MSG, nm->m.to, 0, 0, nm)) {
        s->st.msgs_lost++;
        netmsg_free(nm);
    }
}

void net_deliver(struct sim *s, struct netmsg *nm)
{
    struct node *to = &s->nodes[nm->m.to];
    uint64_t from = nm->m.from;
    bool cut = sim_link_cut(s, from, nm->m.to);
    if (nm->reset) {
        s->st.msgs_lost++;
        netmsg_free(nm);
        return;
    }
    if (to->state != NODE_UP || cut) {
        s->st.msgs_lost++;
        if (nm->has_snapdata)
            sim_schedule(s, s->now + 1, EV_SNAP_REPORT, from, nm->from_inc, nm->m.to * 2, NULL);
        else if (cut && rng_permille(&s->rng, 250))
            sim_schedule(s, s->now + 1, EV_UNREACH, from, nm->from_inc, nm->m.to, NULL);
        netmsg_free(nm);
        return;
    }
    sim_trace(s, "deliver %s %llu->%llu term=%llu idx=%llu lt=%llu commit=%llu n=%u rej=%d",
              msg_name(nm->m.type), (unsigned long long)from, (unsigned long long)nm->m.to,
              (unsigned long long)nm->m.term, (unsigned long long)nm->m.index,
              (unsigned long long)nm->m.log_term, (unsigned long long)nm->m.commit, nm->m.n_entries,
              nm->m.reject);
    if (nm->has_snapdata) {
        /* The snapshot's data arrives with the message; the member's ready
         * (has_snap) installs it later, found again by (index, term). */
        to->recv[to->recv_next++ % SIM_RECV_SNAPS] = nm->snap;
    }
    raft_step(to->r, &nm->m);
    if (nm->has_snapdata)
        sim_schedule(s, s->now + 1 + rng_below(&s->rng, 20), EV_SNAP_REPORT, from, nm->from_inc,
                     nm->m.to * 2 + 1, NULL);
    netmsg_free(nm);
}

/* ---- storage ---- */

static void write_free(struct write *w)
{
    free(w->ents);
    for (uint32_t i = 0; i < w->n_msgs; i++)
        netmsg_free(w->msgs[i]);
    free(w->msgs);
    memset(w, 0, sizeof(*w));
}

static void durable_snap(struct node *n, const struct snapdata *sd)
{
    n->dsnap = *sd;
    slog_reset(&n->dlog, sd->meta.index, sd->meta.term);
}

static void durable_entries(struct sim *s, struct node *n, const struct write *w, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        uint64_t index = w->first + i;
        uint64_t prev_term;
        if (index <= n->dlog.base_index)
            continue; /* already inside a durable snapshot */
        if (!slog_term(&n->dlog, index - 1, &prev_term))
            sim_fail(s, "simulator", "member %llu: durable log (%llu, %llu] cannot take %llu",
                     (unsigned long long)n->id, (unsigned long long)n->dlog.base_index,
                     (unsigned long long)slog_last(&n->dlog), (unsigned long long)index);
        slog_truncate(&n->dlog, index);
        slog_append(&n->dlog, w->ents[i]);
        model_record(s, n, index, w->ents[i].term, prev_term, w->ents[i].b);
    }
}

/* The oldest unsynced write is durable: record it, send what waited for
 * it, tell raft. */
void node_sync(struct sim *s, struct node *n)
{
    struct write *w = &n->w[n->w_head];
    if (w->has_snap) {
        durable_snap(n, &w->snap);
        n->w_snaps--;
    }
    durable_entries(s, n, w, w->n_ents);
    if (w->has_hs)
        n->dhs = w->hs;
    sim_trace(s, "sync %llu: snap=%d entries=%u hs=%d msgs=%u", (unsigned long long)n->id,
              w->has_snap, w->n_ents, w->has_hs, w->n_msgs);
    for (uint32_t i = 0; i < w->n_msgs; i++) {
        net_post(s, n, w->msgs[i], false);
        w->msgs[i] = NULL;
    }
    uint64_t last = 0, term = 0;
    if (w->n_ents) {
        last = w->first + w->n_ents - 1;
        term = w->ents[w->n_ents - 1].term;
    }
    write_free(w);
    n->w_head = (n->w_head + 1) % SIM_WRITES_MAX;
    n->w_n--;
    if (last)
        raft_persisted(n->r, last, term);
}

static void drop_unsynced(struct node *n)
{
    for (uint32_t i = 0; i < n->w_n; i++)
        write_free(&n->w[(n->w_head + i) % SIM_WRITES_MAX]);
    n->w_head = 0;
    n->w_n = 0;
    n->w_snaps = 0;
}

/* A crash keeps `keep` records of the unsynced writes, in write order. */
static void keep_torn_prefix(struct sim *s, struct node *n, uint64_t keep)
{
    for (uint32_t i = 0; i < n->w_n && keep; i++) {
        struct write *w = &n->w[(n->w_head + i) % SIM_WRITES_MAX];
        if (w->has_snap) {
            durable_snap(n, &w->snap);
            keep--;
        }
        uint32_t ents = keep < w->n_ents ? (uint32_t)keep : w->n_ents;
        durable_entries(s, n, w, ents);
        keep -= ents;
        if (keep && w->has_hs) {
            n->dhs = w->hs;
            keep--;
        }
    }
}

static uint64_t unsynced_records(const struct node *n)
{
    uint64_t r = 0;
    for (uint32_t i = 0; i < n->w_n; i++) {
        const struct write *w = &n->w[(n->w_head + i) % SIM_WRITES_MAX];
        r += (w->has_snap ? 1 : 0) + w->n_ents + (w->has_hs ? 1 : 0);
    }
    return r;
}

void node_free_storage(struct sim *s, struct node *n)
{
    (void)s;
    if (n->w)
        drop_unsynced(n);
    free(n->w);
    n->w = NULL;
    slog_free(&n->dlog);
    slog_free(&n->mlog);
}

/* ---- life cycle ---- */

void node_restart(struct sim *s, struct node *n)
{
    struct raft_config cfg = node_config(s, n);
    struct raft_boot boot = {.hs = n->dhs, .snap = n->dsnap.meta};
    n->r = raft_new(&cfg, &boot);
    if (!n->r)
        sim_fail(s, "restart", "raft_new failed for member %llu", (unsigned long long)n->id);
    for (uint64_t i = n->dlog.base_index + 1; i <= slog_last(&n->dlog); i++) {
        const struct sent *e = slog_at(&n->dlog, i);
        struct raft_entry re = {
            .term = e->term, .index = i, .type = e->b->type, .len = e->b->len, .data = e->b->data};
        int rv = raft_load(n->r, &re);
        if (rv != 0)
            sim_fail(s, "restart", "member %llu: raft_load(index %llu term %llu) = %d",
                     (unsigned long long)n->id, (unsigned long long)i, (unsigned long long)e->term,
                     rv);
    }
    slog_copy(&n->mlog, &n->dlog);
    n->mhs = n->dhs;
    n->applied = n->dsnap.meta.index;
    n->applied_term = n->dsnap.meta.term;
    n->chain = n->dsnap.chain;
    n->conf = n->dsnap.meta.conf;
    memset(n->recv, 0, sizeof(n->recv));
    n->recv_next = 0;
    n->seen_role = RAFT_FOLLOWER;
    n->seen_term = 0;
    n->sync_last = s->now;
    n->disk_slow = 1;
    n->state = NODE_UP;
    model_check_snapshot(s, n, &n->dsnap, "boot");
    sim_trace(s, "start member %llu inc=%u: hs={t%llu v%llu c%llu} snap=%llu log=(%llu,%llu]",
              (unsigned long long)n->id, n->inc, (unsigned long long)n->dhs.term,
              (unsigned long long)n->dhs.vote, (unsigned long long)n->dhs.commit,
              (unsigned long long)n->dsnap.meta.index, (unsigned long long)n->dlog.base_index,
              (unsigned long long)slog_last(&n->dlog));
    sim_schedule(s, s->now + 1 + rng_below(&s->rng, SIM_TICK_UNITS), EV_TICK, n->id, n->inc, 0,
                 NULL);
}

void node_create(struct sim *s, uint64_t id, const struct raft_conf *boot_conf)
{
    struct node *n = &s->nodes[id];
    memset(n, 0, sizeof(*n));
    n->id = id;
    n->boot_conf = *boot_conf;
    n->dsnap.meta.conf = *boot_conf;
    n->w = calloc(SIM_WRITES_MAX, sizeof(*n->w));
    if (!n->w)
        abort();
    node_restart(s, n);
}

void node_crash(struct sim *s, struct node *n)
{
    raft_free(n->r);
    n->r = NULL;
    n->inc++;
    uint64_t records = unsynced_records(n);
    uint64_t keep = 0;
    if (records && rng_permille(&s->rng, 400)) {
        keep = rng_below(&s->rng, records + 1);
        s->st.torn++;
    }
    keep_torn_prefix(s, n, keep);
    sim_trace(s, "crash member %llu: %llu of %llu unsynced records kept", (unsigned long long)n->id,
              (unsigned long long)keep, (unsigned long long)records);
    drop_unsynced(n);
    n->state = NODE_DOWN;
    s->st.crashes++;
}

void node_retire(struct sim *s, struct node *n)
{
    if (n->r)
        raft_free(n->r);
    n->r = NULL;
    n->inc++;
    sim_trace(s, "member %llu shut down (removed)", (unsigned long long)n->id);
    node_free_storage(s, n);
    n->state = NODE_GONE;
}

/* ---- ready processing ---- */

static void ready_snap(struct sim *s, struct node *n, const struct raft_ready *rd, struct write *w)
{
    const struct snapdata *sd = NULL;
    for (uint32_t i = 0; i < SIM_RECV_SNAPS; i++)
        if (n->recv[i].meta.index == rd->snap.index && n->recv[i].meta.term == rd->snap.term &&
            rd->snap.index != 0)
            sd = &n->recv[i];
    if (!sd)
        sim_fail(s, "snapshot",
                 "member %llu: ready installs snapshot (index %llu, term %llu) never received",
                 (unsigned long long)n->id, (unsigned long long)rd->snap.index,
                 (unsigned long long)rd->snap.term);
    if (rd->snap.index < n->applied)
        sim_fail(s, "snapshot", "member %llu installs snapshot at %llu below applied %llu",
                 (unsigned long long)n->id, (unsigned long long)rd->snap.index,
                 (unsigned long long)n->applied);
    if (!conf_equal(&rd->snap.conf, &sd->meta.conf))
        sim_fail(s, "snapshot", "member %llu installs snapshot %llu with another membership",
                 (unsigned long long)n->id, (unsigned long long)rd->snap.index);
    model_check_snapshot(s, n, sd, "installed");
    w->has_snap = true;
    w->snap = *sd;
    slog_reset(&n->mlog, sd->meta.index, sd->meta.term);
    n->applied = sd->meta.index;
    n->applied_term = sd->meta.term;
    n->chain = sd->chain;
    n->conf = sd->meta.conf;
    s->st.snaps_installed++;
    sim_trace(s, "member %llu installs snapshot (index %llu, term %llu)", (unsigned long long)n->id,
              (unsigned long long)sd->meta.index, (unsigned long long)sd->meta.term);
}

static void ready_entries(struct sim *s, struct node *n, const struct raft_ready *rd,
                          struct write *w)
{
    const struct raft_entry *e = rd->entries;
    uint64_t first = e[0].index;
    uint64_t last_before = slog_last(&n->mlog);
    uint64_t prev_term;
    if (first <= n->mlog.base_index || first > last_before + 1 ||
        !slog_term(&n->mlog, first - 1, &prev_term))
        sim_fail(s, "ready", "member %llu: entries start at %llu, its log is (%llu, %llu]",
                 (unsigned long long)n->id, (unsigned long long)first,
                 (unsigned long long)n->mlog.base_index, (unsigned long long)last_before);
    w->first = first;
    w->n_ents = rd->n_entries;
    w->ents = malloc(rd->n_entries * sizeof(*w->ents));
    if (!w->ents)
        abort();
    for (uint32_t i = 0; i < rd->n_entries; i++) {
        uint64_t index = first + i;
        if (e[i].index != index || e[i].term < prev_term || e[i].term > rd->term ||
            e[i].type > RAFT_ENTRY_CONF)
            sim_fail(s, "ready",
                     "member %llu (term %llu): entry %u is (index %llu, term %llu, type %u) "
                     "after term %llu",
                     (unsigned long long)n->id, (unsigned long long)rd->term, i,
                     (unsigned long long)e[i].index, (unsigned long long)e[i].term, e[i].type,
                     (unsigned long long)prev_term);
        const struct blob *b = blob_intern(s, e[i].type, e[i].data, e[i].len);
        const struct sent *old = slog_at(&n->mlog, index);
        if (old && old->term != e[i].term) {
            if (index <= n->applied || index <= n->mhs.commit)
                sim_fail(s, "Leader Completeness",
                         "member %llu overwrites committed index %llu (term %llu -> %llu; "
                         "applied %llu, commit %llu)",
                         (unsigned long long)n->id, (unsigned long long)index,
                         (unsigned long long)old->term, (unsigned long long)e[i].term,
                         (unsigned long long)n->applied, (unsigned long long)n->mhs.commit);
            if (rd->role == RAFT_LEADER)
                sim_fail(s, "Leader Append-Only",
                         "leader %llu of term %llu overwrites index %llu (term %llu -> %llu)",
                         (unsigned long long)n->id, (unsigned long long)rd->term,
                         (unsigned long long)index, (unsigned long long)old->term,
                         (unsigned long long)e[i].term);
        }
        if (i == 0)
            slog_truncate(&n->mlog, first);
        slog_append(&n->mlog, (struct sent){.term = e[i].term, .b = b});
        w->ents[i] = (struct sent){.term = e[i].term, .b = b};
        /* A leader's own entries count for Log Matching once durable or
         * received by a follower; before that a crash may lose them. */
        if (rd->role != RAFT_LEADER)
            model_record(s, n, index, e[i].term, prev_term, b);
        prev_term = e[i].term;
    }
}

static void ready_hs(struct sim *s, struct node *n, const struct raft_ready *rd, struct write *w)
{
    const struct raft_hardstate *h = &rd->hs;
    const struct raft_hardstate *o = &n->mhs;
    if (h->term < o->term)
        sim_fail(s, "hard state", "member %llu: term goes back %llu -> %llu",
                 (unsigned long long)n->id, (unsigned long long)o->term,
                 (unsigned long long)h->term);
    if (h->term == o->term && o->vote != RAFT_NONE && h->vote != o->vote)
        sim_fail(s, "Election Safety", "member %llu votes for %llu and then %llu in term %llu",
                 (unsigned long long)n->id, (unsigned long long)o->vote,
                 (unsigned long long)h->vote, (unsigned long long)h->term);
    if (h->commit < o->commit)
        sim_fail(s, "hard state", "member %llu: commit goes back %llu -> %llu",
                 (unsigned long long)n->id, (unsigned long long)o->commit,
                 (unsigned long long)h->commit);
    if (h->commit > slog_last(&n->mlog))
        sim_fail(s, "hard state", "member %llu: commit %llu beyond its last index %llu",
                 (unsigned long long)n->id, (unsigned long long)h->commit,
                 (unsigned long long)slog_last(&n->mlog));
    n->mhs = *h;
    w->has_hs = true;
    w->hs = *h;
}

static void apply_entry(struct sim *s, struct node *n, const struct raft_entry *e,
                        uint64_t applier_term)
{
    uint64_t dt;
    if (e->index != n->applied + 1)
        sim_fail(s, "apply", "member %llu applies index %llu after %llu", (unsigned long long)n->id,
                 (unsigned long long)e->index, (unsigned long long)n->applied);
    if (e->index > n->mhs.commit)
        sim_fail(s, "apply", "member %llu applies index %llu beyond its commit %llu",
                 (unsigned long long)n->id, (unsigned long long)e->index,
                 (unsigned long long)n->mhs.commit);
    if (!slog_term(&n->dlog, e->index, &dt) || dt != e->term)
        sim_fail(s, "Durability",
                 "member %llu applies index %llu (term %llu) not durable locally (durable log "
                 "(%llu, %llu])",
                 (unsigned long long)n->id, (unsigned long long)e->index,
                 (unsigned long long)e->term, (unsigned long long)n->dlog.base_index,
                 (unsigned long long)slog_last(&n->dlog));
    const struct blob *b = blob_intern(s, e->type, e->data, e->len);
    const struct sent *have = slog_at(&n->mlog, e->index);
    if (!have || have->term != e->term || have->b != b)
        sim_fail(s, "apply", "member %llu applies index %llu, which is not what its log holds",
                 (unsigned long long)n->id, (unsigned long long)e->index);
    model_apply(s, n, e->index, e->term, b, applier_term);
    n->chain = chain_next(n->chain, b->h);
    if (n->chain != s->g.a[e->index].chain)
        sim_fail(s, "State Machine Safety",
                 "member %llu's state after index %llu differs from the committed history",
                 (unsigned long long)n->id, (unsigned long long)e->index);
    n->applied = e->index;
    n->applied_term = e->term;
    if (b->type == RAFT_ENTRY_CONF) {
        struct raft_conf_change cc;
        if (raft_conf_decode(b->data, b->len, &cc) != 0)
            sim_fail(s, "apply", "conf entry %llu does not decode", (unsigned long long)e->index);
        conf_apply(&n->conf, &cc);
    }
}

static void serve_read(struct sim *s, struct node *n, const struct raft_read *rr)
{
    if (rr->ctx == 0 || rr->ctx > s->reads_n)
        sim_fail(s, "ReadIndex", "member %llu: read ctx %llu was never issued",
                 (unsigned long long)n->id, (unsigned long long)rr->ctx);
    struct readreq *q = &s->reads[rr->ctx - 1];
    if (q->id != n->id)
        sim_fail(s, "ReadIndex", "read ctx %llu issued on member %llu comes out on %llu",
                 (unsigned long long)rr->ctx, (unsigned long long)q->id, (unsigned long long)n->id);
    if (rr->index < q->floor)
        sim_fail(s, "ReadIndex (linearizability)",
                 "member %llu: read ctx %llu gets index %llu, but index %llu was committed "
                 "before the read was issued",
                 (unsigned long long)n->id, (unsigned long long)rr->ctx,
                 (unsigned long long)rr->index, (unsigned long long)q->floor);
    if (!q->done)
        s->st.reads_ok++;
    q->done = true;
    sim_trace(s, "member %llu: read ctx %llu at index %llu (floor %llu)", (unsigned long long)n->id,
              (unsigned long long)rr->ctx, (unsigned long long)rr->index,
              (unsigned long long)q->floor);
}

static void process_ready(struct sim *s, struct node *n, const struct raft_ready *rd)
{
    struct write w;
    memset(&w, 0, sizeof(w));
    sim_trace(s,
              "ready %llu: role=%u term=%llu leader=%llu snap=%d entries=%u hs=%d{t%llu v%llu "
              "c%llu} msgs=%u durable=%u committed=%u reads=%u",
              (unsigned long long)n->id, rd->role, (unsigned long long)rd->term,
              (unsigned long long)rd->leader, rd->has_snap, rd->n_entries, rd->hs_changed,
              (unsigned long long)rd->hs.term, (unsigned long long)rd->hs.vote,
              (unsigned long long)rd->hs.commit, rd->n_msgs, rd->n_msgs_durable, rd->n_committed,
              rd->n_reads);
    if (rd->role == RAFT_LEADER && rd->leader != n->id)
        sim_fail(s, "ready", "member %llu is leader but names %llu as leader",
                 (unsigned long long)n->id, (unsigned long long)rd->leader);
    model_observe_role(s, n, rd->role, rd->term);
    if (rd->has_snap)
        ready_snap(s, n, rd, &w);
    if (rd->n_entries)
        ready_entries(s, n, rd, &w);
    if (rd->hs_changed)
        ready_hs(s, n, rd, &w);
    for (uint32_t i = 0; i < rd->n_msgs; i++) {
        check_msg(s, n, &rd->msgs[i]);
        net_post(s, n, netmsg_copy(s, &rd->msgs[i]), true);
    }
    if (rd->n_msgs_durable) {
        w.msgs = calloc(rd->n_msgs_durable, sizeof(*w.msgs));
        if (!w.msgs)
            abort();
        for (uint32_t i = 0; i < rd->n_msgs_durable; i++) {
            check_msg(s, n, &rd->msgs_durable[i]);
            w.msgs[i] = netmsg_copy(s, &rd->msgs_durable[i]);
        }
        w.n_msgs = rd->n_msgs_durable;
    }
    if (w.has_snap || w.n_ents || w.has_hs || w.n_msgs) {
        if (n->w_n == SIM_WRITES_MAX)
            sim_fail(s, "simulator", "member %llu: more than %d unsynced writes",
                     (unsigned long long)n->id, SIM_WRITES_MAX);
        n->w[(n->w_head + n->w_n) % SIM_WRITES_MAX] = w;
        n->w_n++;
        n->w_snaps += w.has_snap;
        /* Writes complete in order; a later one may share an earlier one's
         * fsync (same completion time). */
        uint64_t done = s->now + (5 + rng_below(&s->rng, 60)) * n->disk_slow;
        if (done < n->sync_last)
            done = n->sync_last;
        n->sync_last = done;
        if (!sim_schedule(s, done, EV_SYNC, n->id, n->inc, 0, NULL))
            sim_fail(s, "simulator", "event queue full");
    }
    for (uint32_t i = 0; i < rd->n_committed; i++)
        apply_entry(s, n, &rd->committed[i], rd->term);
    for (uint32_t i = 0; i < rd->n_reads; i++)
        serve_read(s, n, &rd->reads[i]);
}

/* Every snap_every applied entries: a durable snapshot of the state, then
 * raft may drop its log up to a margin before it. */
static void maybe_snapshot(struct sim *s, struct node *n)
{
    if (n->w_snaps || n->applied < n->dsnap.meta.index + s->snap_every)
        return;
    struct snapdata sd = {
        .meta = {.index = n->applied, .term = n->applied_term, .conf = n->conf},
        .chain = n->chain,
    };
    model_check_snapshot(s, n, &sd, "taken");
    n->dsnap = sd;
    slog_compact(&n->dlog, sd.meta.index, sd.meta.term);
    raft_snapshot_taken(n->r, &sd.meta);
    uint64_t margin = rng_below(&s->rng, s->snap_every);
    uint64_t upto = sd.meta.index > margin ? sd.meta.index - margin : 0;
    uint64_t term;
    if (upto > n->mlog.base_index && slog_term(&n->mlog, upto, &term)) {
        raft_compact(n->r, upto);
        slog_compact(&n->mlog, upto, term);
    }
    s->st.snaps_taken++;
    sim_trace(s, "member %llu: snapshot at %llu, compact to %llu", (unsigned long long)n->id,
              (unsigned long long)sd.meta.index, (unsigned long long)upto);
}

void node_drain(struct sim *s, struct node *n)
{
    for (uint32_t k = 0; n->state == NODE_UP && raft_has_ready(n->r); k++) {
        if (k == SIM_DRAIN_MAX)
            sim_fail(s, "ready", "member %llu still has a ready after %d rounds",
                     (unsigned long long)n->id, SIM_DRAIN_MAX);
        struct raft_ready rd;
        if (!raft_ready(n->r, &rd))
            sim_fail(s, "ready", "member %llu: raft_has_ready but raft_ready is empty",
                     (unsigned long long)n->id);
        n->in_ready = true;
        process_ready(s, n, &rd);
        raft_advance(n->r);
        n->in_ready = false;
        for (uint64_t to = 1; to < SIM_ID_MAX; to++) {
            if (n->unreach[to]) {
                n->unreach[to] = false;
                raft_report_unreachable(n->r, to);
            }
        }
        if (!conf_equal(&n->conf, raft_conf(n->r)))
            sim_fail(s, "membership",
                     "member %llu: raft_conf() has %u voters %u learners, the entries applied "
                     "say %u voters %u learners",
                     (unsigned long long)n->id, raft_conf(n->r)->n_voters,
                     raft_conf(n->r)->n_learners, n->conf.n_voters, n->conf.n_learners);
        maybe_snapshot(s, n);
    }
}

/* After an event, with every ready drained: raft's view must match what
 * it handed out, and role changes feed the election checks. */
bool node_check_quiet(struct sim *s, struct node *n)
{
    if (n->state != NODE_UP)
        return false;
    uint8_t role = (uint8_t)raft_role(n->r);
    uint64_t term = raft_term(n->r);
    bool elected = role == RAFT_LEADER && (n->seen_role != RAFT_LEADER || n->seen_term != term);
    model_observe_role(s, n, role, term);
    if (elected) {
        model_check_leader_log(s, n, term);
        /* A leader counted its own vote: that vote must be durable, or a
         * crash now lets this member vote again in the same term (Raft §5.2
         * "persistent state"). A sole voter is exempt (raft.h). */
        if (raft_conf(n->r)->n_voters > 1 &&
            !(n->dhs.term > term || (n->dhs.term == term && n->dhs.vote == n->id)))
            sim_fail(s, "Durability",
                     "member %llu leads term %llu before its own vote is durable (durable "
                     "term %llu vote %llu)",
                     (unsigned long long)n->id, (unsigned long long)term,
                     (unsigned long long)n->dhs.term, (unsigned long long)n->dhs.vote);
    }
    n->seen_role = role;
    n->seen_term = term;
    if (raft_applied_index(n->r) != n->applied)
        sim_fail(s, "ready", "member %llu: raft_applied_index %llu, handed out up to %llu",
                 (unsigned long long)n->id, (unsigned long long)raft_applied_index(n->r),
                 (unsigned long long)n->applied);
    if (raft_last_index(n->r) != slog_last(&n->mlog))
        sim_fail(s, "ready", "member %llu: raft_last_index %llu, entries handed out end at %llu",
                 (unsigned long long)n->id, (unsigned long long)raft_last_index(n->r),
                 (unsigned long long)slog_last(&n->mlog));
    if (term != n->mhs.term)
        sim_fail(s, "hard state", "member %llu: raft_term %llu, hard state handed out has %llu",
                 (unsigned long long)n->id, (unsigned long long)term,
                 (unsigned long long)n->mhs.term);
    return elected;
}
