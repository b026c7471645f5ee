/*
 * raft.c — the public face of the Raft state machine: construction and
 * boot, proposals, the message dispatcher with the term rules of Raft §5.1,
 * membership changes applied as their entries are handed out, and the
 * ready/advance cycle that tells the driver what to persist, send and apply.
 *
 * Invariants: nothing but raft_advance may follow raft_ready (asserted);
 * pointers handed out in a ready point into this struct's memory and stay
 * valid until raft_advance because nothing mutates the log in between;
 * committed entries are handed out only up to min(commit, persisted), so
 * the driver applies only what is durable locally; the hard state handed
 * out always includes every vote cast before the messages depending on it
 * (msgs_durable) are released.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "le.h"
#include "raft_int.h"

const char *raft_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "success";
#define RAFT_ERR_CASE(name, value, text)                                                           \
    case value:                                                                                    \
        return text;
        RAFT_ERROR_LIST(RAFT_ERR_CASE)
#undef RAFT_ERR_CASE
    }
    return "unknown raft error";
}

/* ---- conf change encoding ---- */

size_t raft_conf_encode(const struct raft_conf_change *c, uint8_t *out, size_t cap)
{
    size_t n = 16 + (size_t)c->ctx_len;
    if (cap < n)
        return 0;
    memset(out, 0, 16);
    out[0] = c->op;
    put_le64(out + 8, c->id);
    if (c->ctx_len)
        memcpy(out + 16, c->ctx, c->ctx_len);
    return n;
}

int raft_conf_decode(const uint8_t *data, size_t len, struct raft_conf_change *c)
{
    if (!data || len < 16 || len - 16 > RAFT_CONF_CTX_BYTES)
        return RAFT_ERR_INVALID;
    if (data[0] < RAFT_CONF_ADD_VOTER || data[0] > RAFT_CONF_PROMOTE)
        return RAFT_ERR_INVALID;
    for (int i = 1; i < 8; i++)
        if (data[i] != 0)
            return RAFT_ERR_INVALID;
    c->op = data[0];
    c->id = get_le64(data + 8);
    c->ctx = len > 16 ? data + 16 : NULL;
    c->ctx_len = (uint32_t)(len - 16);
    return c->id == RAFT_NONE ? RAFT_ERR_INVALID : 0;
}

/* ---- output queues ---- */

static struct raft_msg *vec_push(struct raft_msgvec *v)
{
    if (v->n >= RAFT_MSGS_MAX)
        return NULL;
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 64;
        struct raft_msg *p = realloc(v->v, cap * sizeof(*p));
        if (!p)
            return NULL;
        v->v = p;
        v->cap = cap;
    }
    struct raft_msg *m = &v->v[v->n++];
    memset(m, 0, sizeof(*m));
    return m;
}

/* A new message to `to` in msgs or msgs_durable, in the current term;
 * NULL (dropped) if the queue is at its bound. */
struct raft_msg *raft_out(struct raft *r, bool durable, uint8_t type, uint64_t to)
{
    struct raft_msg *m = vec_push(durable ? &r->durable : &r->msgs);
    if (!m)
        return NULL;
    m->type = type;
    m->from = r->cfg.id;
    m->to = to;
    m->term = r->term;
    return m;
}

bool raft_self_voter(const struct raft *r)
{
    return raft_is_voter(&r->conf, r->cfg.id);
}

/* ---- construction ---- */

static bool conf_valid(const struct raft_conf *c)
{
    if (c->n_voters > RAFT_MEMBERS_MAX || c->n_learners > RAFT_MEMBERS_MAX ||
        c->n_voters + c->n_learners > RAFT_MEMBERS_MAX)
        return false;
    for (uint32_t i = 0; i < c->n_voters; i++)
        if (c->voters[i] == RAFT_NONE || raft_is_learner(c, c->voters[i]))
            return false;
    return true;
}

static bool config_valid(const struct raft_config *c)
{
    return c->id != RAFT_NONE && c->election_ticks >= 2 && c->heartbeat_ticks >= 1 &&
           c->heartbeat_ticks < c->election_ticks && c->max_inflight >= 1 &&
           c->max_inflight <= RAFT_INFLIGHT_MAX;
}

struct raft *raft_new(const struct raft_config *cfg, const struct raft_boot *boot)
{
    if (!config_valid(cfg) || !conf_valid(&boot->snap.conf))
        return NULL;
    struct raft *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cfg = *cfg;
    r->infl_buf = calloc((size_t)RAFT_MEMBERS_MAX * cfg->max_inflight, sizeof(uint64_t));
    r->rq = calloc(RAFT_READS_MAX, sizeof(*r->rq));
    r->reads_out = calloc(RAFT_READS_MAX, sizeof(*r->reads_out));
    if (!r->infl_buf || !r->rq || !r->reads_out) {
        raft_free(r);
        return NULL;
    }
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++)
        r->prs[i].infl = r->infl_buf + (size_t)i * cfg->max_inflight;
    log_init(&r->log, boot->snap.index, boot->snap.term);
    r->rng = cfg->seed ^ (cfg->id * 0x9e3779b97f4a7c15ull);
    r->term = boot->hs.term;
    r->vote = boot->hs.vote;
    r->commit = boot->hs.commit > boot->snap.index ? boot->hs.commit : boot->snap.index;
    r->hs_out = boot->hs;
    r->persisted = boot->snap.index;
    r->unstable = boot->snap.index + 1;
    r->applied = boot->snap.index;
    r->conf = boot->snap.conf;
    r->has_snap_avail = boot->snap.index > 0;
    r->snap_avail = boot->snap;
    r->role = r->role_out = RAFT_FOLLOWER;
    r->term_out = r->term;
    el_reset_timeout(r);
    return r;
}

static void free_props(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_props; i++)
        free((void *)r->props[i].data);
    r->n_props = 0;
    r->props_bytes = 0;
}

void raft_free(struct raft *r)
{
    if (!r)
        return;
    log_free(&r->log);
    free_props(r);
    free(r->props);
    free(r->msgs.v);
    free(r->durable.v);
    free(r->infl_buf);
    free(r->rq);
    free(r->reads_out);
    free(r);
}

int raft_load(struct raft *r, const struct raft_entry *e)
{
    uint64_t last = log_last_index(&r->log);
    if (e->index <= r->log.snap_index || e->index > last + 1 || e->type > RAFT_ENTRY_CONF ||
        (e->len && !e->data) || e->term < log_term(&r->log, e->index - 1))
        return RAFT_ERR_INVALID;
    /* The WAL replays a replaced suffix the way it was written. */
    if (e->index <= last)
        log_truncate(&r->log, e->index);
    if (log_append(&r->log, e) != 0)
        return RAFT_ERR_BUSY;
    r->persisted = e->index;
    r->unstable = e->index + 1;
    return 0;
}

/* ---- clock and campaigns ---- */

void raft_tick(struct raft *r)
{
    assert(!r->in_ready);
    el_tick(r);
}

void raft_campaign(struct raft *r)
{
    assert(!r->in_ready);
    el_hup(r, false);
}

/* ---- messages ---- */

static bool is_local(uint8_t type)
{
    return type == RAFT_MSG_PROP || type == RAFT_MSG_READ_INDEX || type == RAFT_MSG_TRANSFER;
}

static bool entries_valid(const struct raft_msg *m)
{
    if (m->n_entries > RAFT_MSG_ENTS_MAX || (m->n_entries && !m->entries))
        return false;
    uint64_t term = m->type == RAFT_MSG_APP ? m->log_term : 0;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->len > RAFT_PROPOSAL_BYTES || (e->len && !e->data) || e->type > RAFT_ENTRY_CONF)
            return false;
        if (m->type != RAFT_MSG_APP)
            continue;
        /* Raft §5.3: entries follow `index` and their terms never go down
         * nor pass the leader's. */
        if (e->index != m->index + 1 + i || e->term < term || e->term > m->term)
            return false;
        term = e->term;
    }
    return true;
}

static bool msg_valid(const struct raft *r, const struct raft_msg *m)
{
    if (m->to != r->cfg.id || m->from == RAFT_NONE || m->from == r->cfg.id)
        return false;
    if (m->type < RAFT_MSG_APP || m->type > RAFT_MSG_TRANSFER)
        return false;
    if (!is_local(m->type) && m->term == 0)
        return false;
    if (m->type == RAFT_MSG_SNAP && !conf_valid(&m->snap.conf))
        return false;
    return entries_valid(m);
}

/* Unknown senders are dropped, unless this member is outside its own
 * configuration (it joined and has not learned it yet, or was removed):
 * then it listens to whoever the leader is. */
static bool is_vote(uint8_t type)
{
    return type == RAFT_MSG_VOTE || type == RAFT_MSG_PREVOTE;
}

static bool from_leader(uint8_t type)
{
    return type == RAFT_MSG_APP || type == RAFT_MSG_HEARTBEAT || type == RAFT_MSG_SNAP;
}

/* Messages from members this one does not know are dropped, except what
 * only a leader sends: a member whose membership is behind (it was down
 * while the leader was added) must still hear the leader to catch up.
 * The term rules still apply to those (found by the simulator, seed 212).
 * Nor are (pre)vote requests dropped. Thesis §4.1: "servers process
 * incoming RPC requests without consulting their current configurations";
 * a member that has not applied the addition of a new voter must still
 * answer it, or the members that have applied it (and count on that
 * vote) may never elect anyone (found by the simulator, seed 11043). */
static bool sender_known(const struct raft *r, const struct raft_msg *m)
{
    return conf_member(&r->conf, m->from) || !conf_member(&r->conf, r->cfg.id) ||
           from_leader(m->type) || is_vote(m->type);
}

/* Raft §5.1, with etcd's refinements: false if m is to be ignored. */
static bool step_higher_term(struct raft *r, const struct raft_msg *m)
{
    if (is_vote(m->type)) {
        /* Thesis §6.2 (leader stickiness): while a leader is heard from,
         * disregard vote requests, unless a transfer asks for them. */
        bool lease = r->cfg.check_quorum && r->leader != RAFT_NONE &&
                     r->election_elapsed < r->cfg.election_ticks;
        if (lease && m->ctx != RAFT_CTX_TRANSFER)
            return false;
    }
    /* Thesis §9.6: a pre-vote, or a granted pre-vote answer, is about a
     * term nobody has entered yet. */
    if (m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject))
        return true;
    /* Raft §5.2 (figure 2): the election timer restarts on hearing from a
     * leader or granting a vote, not on a vote request that may be
     * refused: candidates with stale logs must not keep the up-to-date
     * members from ever campaigning. */
    uint32_t elapsed = r->election_elapsed;
    el_become_follower(r, m->term, from_leader(m->type) ? m->from : RAFT_NONE);
    if (m->type == RAFT_MSG_VOTE)
        r->election_elapsed = elapsed;
    return true;
}

static void step_lower_term(struct raft *r, const struct raft_msg *m)
{
    /* A stale leader learns the term from this answer and steps down;
     * with CheckQuorum or PreVote a partitioned member's term would not
     * otherwise reach it (etcd). */
    if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
        (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT)) {
        raft_out(r, false, RAFT_MSG_APP_RESP, m->from);
    } else if (m->type == RAFT_MSG_PREVOTE) {
        struct raft_msg *o = raft_out(r, false, RAFT_MSG_PREVOTE_RESP, m->from);
        if (o)
            o->reject = true;
    }
}

static bool step_term(struct raft *r, const struct raft_msg *m)
{
    if (is_local(m->type))
        return true;
    if (m->term > r->term)
        return step_higher_term(r, m);
    if (m->term < r->term) {
        step_lower_term(r, m);
        return false;
    }
    return true;
}

static int transfer(struct raft *r, uint64_t to)
{
    if (to == r->cfg.id)
        return RAFT_ERR_INVALID;
    struct raft_progress *pr = pr_get(r, to);
    if (!pr || pr->learner)
        return RAFT_ERR_UNKNOWN_MEMBER;
    if (r->transferee == to)
        return 0;
    /* Thesis §3.10: stop taking proposals, bring the target up to date,
     * then tell it to campaign; give up after an election timeout. */
    r->transferee = to;
    r->election_elapsed = 0;
    if (pr->match == log_last_index(&r->log))
        rep_send_timeout_now(r, to);
    else
        pr->want_send = true;
    return 0;
}

static bool self_member_leader(struct raft *r)
{
    return pr_get(r, r->cfg.id) != NULL;
}

static int leader_conf(struct raft *r, const uint8_t *data, size_t len);

static void leader_prop(struct raft *r, const struct raft_msg *m)
{
    if (r->transferee != RAFT_NONE || !self_member_leader(r))
        return;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        /* A forwarded membership change passes the leader's own checks
         * (one at a time, valid for the current membership) or is
         * dropped, as an invalid local one would be refused. */
        if (e->type == RAFT_ENTRY_CONF) {
            (void)leader_conf(r, e->data, e->len);
            continue;
        }
        if (e->type != RAFT_ENTRY_NORMAL || rep_backlog_full(r, e->len))
            continue;
        if (rep_append_local(r, RAFT_ENTRY_NORMAL, e->data, e->len) != 0)
            return;
    }
}

static void step_leader(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_PROP:
        leader_prop(r, m);
        break;
    case RAFT_MSG_READ_INDEX:
        if (rd_request(r, m->from, m->ctx) != 0) {
            struct raft_msg *o = raft_out(r, false, RAFT_MSG_READ_INDEX_RESP, m->from);
            if (o) {
                o->reject = true;
                o->ctx = m->ctx;
            }
        }
        break;
    case RAFT_MSG_TRANSFER:
        transfer(r, m->index);
        break;
    case RAFT_MSG_APP_RESP:
        rep_handle_app_resp(r, m);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        rep_handle_hb_resp(r, m);
        break;
    default:
        break;
    }
}

static void step_from_leader(struct raft *r, const struct raft_msg *m)
{
    r->election_elapsed = 0;
    r->leader = m->from;
    if (m->type == RAFT_MSG_APP)
        rep_handle_app(r, m);
    else if (m->type == RAFT_MSG_HEARTBEAT)
        rep_handle_heartbeat(r, m);
    else
        rep_handle_snap(r, m);
}

static void step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APP:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAP:
        step_from_leader(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        /* Thesis §3.10: campaign at once, skipping pre-vote. */
        el_hup(r, true);
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        if (!m->reject)
            rd_deliver(r, r->cfg.id, m->ctx, m->index);
        break;
    default:
        break;
    }
}

static void step_candidate(struct raft *r, const struct raft_msg *m)
{
    if (from_leader(m->type)) {
        /* Raft §5.2: a leader of this term exists. */
        el_become_follower(r, m->term, m->from);
        step_from_leader(r, m);
        return;
    }
    if (m->type == RAFT_MSG_VOTE_RESP || m->type == RAFT_MSG_PREVOTE_RESP)
        el_handle_vote_resp(r, m);
}

void raft_step(struct raft *r, const struct raft_msg *m)
{
    assert(!r->in_ready);
    if (!msg_valid(r, m) || !sender_known(r, m) || !step_term(r, m))
        return;
    if (is_vote(m->type)) {
        el_handle_vote(r, m);
        return;
    }
    if (r->role == RAFT_LEADER)
        step_leader(r, m);
    else if (r->role == RAFT_FOLLOWER)
        step_follower(r, m);
    else
        step_candidate(r, m);
}

/* ---- proposals ---- */

static int buffer_prop(struct raft *r, uint8_t type, const void *data, size_t len)
{
    if (r->n_props >= RAFT_MSG_ENTS_MAX || r->props_bytes + len > RAFT_BACKLOG_BYTES)
        return RAFT_ERR_BUSY;
    if (r->n_props == r->cap_props) {
        uint32_t cap = r->cap_props ? r->cap_props * 2 : 64;
        struct raft_entry *p = realloc(r->props, cap * sizeof(*p));
        if (!p)
            return RAFT_ERR_BUSY;
        r->props = p;
        r->cap_props = cap;
    }
    uint8_t *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy)
            return RAFT_ERR_BUSY;
        memcpy(copy, data, len);
    }
    struct raft_entry *e = &r->props[r->n_props++];
    memset(e, 0, sizeof(*e));
    e->type = type;
    e->len = (uint32_t)len;
    e->data = copy;
    r->props_bytes += len;
    return 0;
}

int raft_propose(struct raft *r, const void *data, size_t len)
{
    assert(!r->in_ready);
    if (len > RAFT_PROPOSAL_BYTES || (len && !data))
        return len > RAFT_PROPOSAL_BYTES ? RAFT_ERR_TOO_LARGE : RAFT_ERR_INVALID;
    if (r->removed)
        return RAFT_ERR_REMOVED;
    if (r->role != RAFT_LEADER) {
        if (r->leader == RAFT_NONE)
            return RAFT_ERR_NO_LEADER;
        return buffer_prop(r, RAFT_ENTRY_NORMAL, data, len);
    }
    if (r->transferee != RAFT_NONE)
        return RAFT_ERR_TRANSFERRING;
    if (!self_member_leader(r))
        return RAFT_ERR_REMOVED;
    if (rep_backlog_full(r, len))
        return RAFT_ERR_BUSY;
    return rep_append_local(r, RAFT_ENTRY_NORMAL, data, len);
}

static int conf_check(const struct raft *r, uint8_t op, uint64_t id)
{
    const struct raft_conf *c = &r->conf;
    bool member = conf_member(c, id);
    switch (op) {
    case RAFT_CONF_ADD_VOTER:
    case RAFT_CONF_ADD_LEARNER:
        if (member)
            return RAFT_ERR_MEMBER_EXISTS;
        if (c->n_voters + c->n_learners >= RAFT_MEMBERS_MAX)
            return RAFT_ERR_TOO_MANY_MEMBERS;
        return 0;
    case RAFT_CONF_REMOVE:
        if (!member)
            return RAFT_ERR_UNKNOWN_MEMBER;
        if (raft_is_voter(c, id) && c->n_voters == 1)
            return RAFT_ERR_INVALID;
        return 0;
    case RAFT_CONF_PROMOTE:
        if (!member)
            return RAFT_ERR_UNKNOWN_MEMBER;
        return raft_is_learner(c, id) ? 0 : RAFT_ERR_NOT_LEARNER;
    default:
        return RAFT_ERR_INVALID;
    }
}

/* The leader's side of a membership change, local or forwarded: the
 * encoded entry is appended if it may be. */
static int leader_conf(struct raft *r, const uint8_t *data, size_t len)
{
    struct raft_conf_change cc;

    if (r->transferee != RAFT_NONE)
        return RAFT_ERR_TRANSFERRING;
    if (raft_conf_decode(data, len, &cc) != 0 || cc.id == RAFT_NONE)
        return RAFT_ERR_INVALID;
    /* Thesis §4.1: one change at a time; the last may not be applied. */
    if (r->pending_conf > r->applied)
        return RAFT_ERR_CONF_PENDING;
    int rv = conf_check(r, cc.op, cc.id);
    if (rv != 0)
        return rv;
    if (rep_backlog_full(r, len))
        return RAFT_ERR_BUSY;
    rv = rep_append_local(r, RAFT_ENTRY_CONF, data, len);
    if (rv == 0)
        r->pending_conf = log_last_index(&r->log);
    return rv;
}

int raft_propose_conf(struct raft *r, enum raft_conf_op op, uint64_t id, const void *ctx,
                      size_t ctx_len)
{
    uint8_t buf[16 + RAFT_CONF_CTX_BYTES];

    assert(!r->in_ready);
    if (ctx_len > RAFT_CONF_CTX_BYTES)
        return RAFT_ERR_TOO_LARGE;
    if (id == RAFT_NONE || (ctx_len && !ctx))
        return RAFT_ERR_INVALID;
    struct raft_conf_change cc = {
        .op = (uint8_t)op, .id = id, .ctx = ctx, .ctx_len = (uint32_t)ctx_len};
    size_t n = raft_conf_encode(&cc, buf, sizeof(buf));
    if (r->removed)
        return RAFT_ERR_REMOVED;
    if (r->role != RAFT_LEADER) {
        if (r->leader == RAFT_NONE)
            return RAFT_ERR_NO_LEADER;
        /* Checked again by the leader, which drops it if it may not. */
        int rv = conf_check(r, (uint8_t)op, id);
        return rv != 0 ? rv : buffer_prop(r, RAFT_ENTRY_CONF, buf, n);
    }
    return leader_conf(r, buf, n);
}

int raft_read_index(struct raft *r, uint64_t ctx)
{
    assert(!r->in_ready);
    if (ctx == 0)
        return RAFT_ERR_INVALID;
    if (r->role == RAFT_LEADER)
        return rd_request(r, r->cfg.id, ctx);
    if (r->leader == RAFT_NONE)
        return RAFT_ERR_NO_LEADER;
    struct raft_msg *m = raft_out(r, false, RAFT_MSG_READ_INDEX, r->leader);
    if (!m)
        return RAFT_ERR_BUSY;
    m->term = 0;
    m->ctx = ctx;
    return 0;
}

int raft_transfer_leader(struct raft *r, uint64_t to)
{
    assert(!r->in_ready);
    if (r->role == RAFT_LEADER)
        return transfer(r, to);
    if (r->leader == RAFT_NONE)
        return RAFT_ERR_NO_LEADER;
    if (!raft_is_voter(&r->conf, to))
        return RAFT_ERR_UNKNOWN_MEMBER;
    struct raft_msg *m = raft_out(r, false, RAFT_MSG_TRANSFER, r->leader);
    if (!m)
        return RAFT_ERR_BUSY;
    m->term = 0;
    m->index = to;
    return 0;
}

/* ---- storage and snapshot completions ---- */

void raft_persisted(struct raft *r, uint64_t index, uint64_t term)
{
    assert(!r->in_ready);
    /* A write whose entry was since replaced tells nothing reliable; the
     * write of the replacement will report. */
    if (!log_match(&r->log, index, term))
        return;
    uint64_t hi = index < r->unstable - 1 ? index : r->unstable - 1;
    if (hi <= r->persisted)
        return;
    r->persisted = hi;
    if (r->role == RAFT_LEADER)
        rep_leader_persisted(r);
}

void raft_snapshot_taken(struct raft *r, const struct raft_snap_meta *meta)
{
    assert(!r->in_ready);
    assert(meta->index <= r->applied);
    if (r->has_snap_avail && meta->index <= r->snap_avail.index)
        return;
    r->snap_avail = *meta;
    r->has_snap_avail = true;
}

void raft_compact(struct raft *r, uint64_t index)
{
    assert(!r->in_ready);
    if (!r->has_snap_avail)
        return;
    if (index > r->applied)
        index = r->applied;
    if (index > r->snap_avail.index)
        index = r->snap_avail.index;
    log_compact(&r->log, index);
}

void raft_report_snapshot(struct raft *r, uint64_t to, bool ok)
{
    assert(!r->in_ready);
    struct raft_progress *pr = r->role == RAFT_LEADER ? pr_get(r, to) : NULL;
    if (!pr || pr->state != RAFT_PROGRESS_SNAPSHOT)
        return;
    if (!ok)
        pr->pending_snap = 0;
    /* Delivered: wait for its answer; failed: retry after a heartbeat. */
    pr_become_probe(pr);
    pr->paused = true;
}

void raft_report_unreachable(struct raft *r, uint64_t to)
{
    assert(!r->in_ready);
    struct raft_progress *pr = r->role == RAFT_LEADER ? pr_get(r, to) : NULL;
    if (pr && pr->state == RAFT_PROGRESS_REPLICATE)
        pr_become_probe(pr);
}

/* ---- applying membership changes ---- */

static void apply_conf_change(struct raft *r, const struct raft_conf_change *cc)
{
    bool self = cc->id == r->cfg.id;
    switch (cc->op) {
    case RAFT_CONF_ADD_VOTER:
        if (conf_add(&r->conf, cc->id, false) && self)
            r->removed = false;
        break;
    case RAFT_CONF_ADD_LEARNER:
        if (!conf_member(&r->conf, cc->id) && conf_add(&r->conf, cc->id, true) && self)
            r->removed = false;
        break;
    case RAFT_CONF_REMOVE:
        if (conf_remove(&r->conf, cc->id) && self)
            r->removed = true;
        break;
    case RAFT_CONF_PROMOTE:
        if (raft_is_learner(&r->conf, cc->id))
            conf_add(&r->conf, cc->id, false);
        break;
    }
}

/* A member the leader just removed stops hearing from it; if it holds the
 * entry that removed it, one last heartbeat tells it that entry is
 * committed, so it applies its removal and stops by itself. */
static void farewell(struct raft *r, uint64_t id, uint64_t index)
{
    struct raft_progress *pr = pr_get(r, id);
    struct raft_msg *m;

    if (pr == NULL || pr->match < index)
        return;
    m = raft_out(r, false, RAFT_MSG_HEARTBEAT, id);
    if (m != NULL)
        m->commit = pr->match < r->commit ? pr->match : r->commit;
}

/* Thesis §4.1: a change takes effect as soon as it is applied; the leader
 * recounts its quorums under the new membership at once. */
static void apply_conf(struct raft *r, const struct raft_entry *e)
{
    struct raft_conf_change cc;
    if (raft_conf_decode(e->data, e->len, &cc) != 0)
        return;
    apply_conf_change(r, &cc);
    if (r->role != RAFT_LEADER)
        return;
    if (cc.op == RAFT_CONF_REMOVE && cc.id != r->cfg.id)
        farewell(r, cc.id, e->index);
    pr_sync_conf(r);
    if (r->transferee != RAFT_NONE && !raft_is_voter(&r->conf, r->transferee))
        r->transferee = RAFT_NONE;
    if (r->removed) {
        /* Tell the others the commit index before leaving, so they apply
         * the change and elect a leader among themselves soon. */
        rep_build_appends(r);
        el_become_follower(r, r->term, RAFT_NONE);
        return;
    }
    rep_maybe_commit(r);
    rd_advance(r);
}

/* ---- ready / advance ---- */

static uint64_t apply_limit(const struct raft *r)
{
    return r->commit < r->persisted ? r->commit : r->persisted;
}

static void fill_committed(struct raft *r, struct raft_ready *rd)
{
    uint64_t hi = apply_limit(r);
    if (hi <= r->applied)
        return;
    uint64_t lo = r->applied + 1;
    uint64_t bytes = 0;
    uint64_t i = lo;
    for (; i <= hi; i++) {
        bytes += log_get(&r->log, i)->len;
        if (i > lo && bytes > r->cfg.max_apply_bytes)
            break;
    }
    rd->committed = log_get(&r->log, lo);
    rd->n_committed = (uint32_t)(i - lo);
    r->applied = i - 1;
    for (uint32_t k = 0; k < rd->n_committed; k++)
        if (rd->committed[k].type == RAFT_ENTRY_CONF)
            apply_conf(r, &rd->committed[k]);
}

static void fill_props(struct raft *r)
{
    if (!r->n_props)
        return;
    if (r->role != RAFT_FOLLOWER || r->leader == RAFT_NONE) {
        free_props(r);
        return;
    }
    /* All proposals of the loop turn in one message. */
    struct raft_msg *m = raft_out(r, false, RAFT_MSG_PROP, r->leader);
    if (!m) {
        free_props(r);
        return;
    }
    m->term = 0;
    m->entries = r->props;
    m->n_entries = r->n_props;
}

static bool hs_changed(const struct raft *r)
{
    return r->term != r->hs_out.term || r->vote != r->hs_out.vote || r->commit != r->hs_out.commit;
}

static bool soft_changed(const struct raft *r)
{
    return r->role != r->role_out || r->leader != r->leader_out || r->term != r->term_out;
}

bool raft_has_ready(const struct raft *r)
{
    if (r->snap_in_pending || r->unstable <= log_last_index(&r->log) || hs_changed(r) ||
        r->msgs.n || r->durable.n || apply_limit(r) > r->applied || r->n_reads_out || r->n_props ||
        soft_changed(r))
        return true;
    return r->role == RAFT_LEADER && (r->read_round || rep_wants_send(r));
}

static void fill_out(struct raft *r, struct raft_ready *rd)
{
    uint64_t last = log_last_index(&r->log);
    if (r->unstable <= last) {
        rd->entries = log_get(&r->log, r->unstable);
        rd->n_entries = (uint32_t)(last - r->unstable + 1);
    }
    r->rd_last = last;
    rd->hs_changed = hs_changed(r);
    rd->hs.term = r->term;
    rd->hs.vote = r->vote;
    rd->hs.commit = r->commit;
    rd->msgs = r->msgs.v;
    rd->n_msgs = r->msgs.n;
    rd->msgs_durable = r->durable.v;
    rd->n_msgs_durable = r->durable.n;
    rd->reads = r->reads_out;
    rd->n_reads = r->n_reads_out;
    rd->leader = r->leader;
    rd->term = r->term;
    rd->role = r->role;
}

bool raft_ready(struct raft *r, struct raft_ready *rd)
{
    assert(!r->in_ready);
    memset(rd, 0, sizeof(*rd));
    bool soft = soft_changed(r);
    if (r->snap_in_pending) {
        rd->has_snap = true;
        rd->snap = r->snap_in;
    }
    fill_committed(r, rd);
    if (r->role == RAFT_LEADER) {
        rd_broadcast(r);
        rep_build_appends(r);
    }
    fill_props(r);
    fill_out(r, rd);
    bool any = rd->has_snap || rd->n_committed || rd->n_entries || rd->hs_changed || rd->n_msgs ||
               rd->n_msgs_durable || rd->n_reads || soft || soft_changed(r);
    if (!any)
        return false;
    r->hs_out = rd->hs;
    r->role_out = r->role;
    r->leader_out = r->leader;
    r->term_out = r->term;
    r->in_ready = true;
    return true;
}

void raft_advance(struct raft *r)
{
    if (!r->in_ready)
        return;
    r->in_ready = false;
    r->unstable = r->rd_last + 1;
    r->msgs.n = 0;
    r->durable.n = 0;
    r->n_reads_out = 0;
    r->snap_in_pending = false;
    free_props(r);
}

/* ---- queries ---- */

uint64_t raft_id(const struct raft *r)
{
    return r->cfg.id;
}

uint64_t raft_term(const struct raft *r)
{
    return r->term;
}

uint64_t raft_leader(const struct raft *r)
{
    return r->leader;
}

enum raft_role raft_role(const struct raft *r)
{
    return (enum raft_role)r->role;
}

uint64_t raft_commit_index(const struct raft *r)
{
    return r->commit;
}

uint64_t raft_applied_index(const struct raft *r)
{
    return r->applied;
}

uint64_t raft_first_index(const struct raft *r)
{
    return log_first_index(&r->log);
}

uint64_t raft_last_index(const struct raft *r)
{
    return log_last_index(&r->log);
}

const struct raft_conf *raft_conf(const struct raft *r)
{
    return &r->conf;
}

int raft_progress(const struct raft *r, uint64_t id, struct raft_progress_info *out)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ERR_NOT_LEADER;
    const struct raft_progress *pr = pr_get((struct raft *)r, id);
    if (!pr)
        return RAFT_ERR_UNKNOWN_MEMBER;
    out->match = id == r->cfg.id ? r->persisted : pr->match;
    out->next = pr->next;
    out->state = pr->state;
    out->recent_active = pr->recent_active;
    return 0;
}
