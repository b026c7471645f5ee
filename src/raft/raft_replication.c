/*
 * raft_replication.c — log replication (Raft §5.3) and commitment (§5.4.2).
 *
 * Leader side: APP messages are built only in raft_ready (rep_build_appends),
 * so every proposal of a loop turn goes out in one APP per follower; each
 * follower is probed one APP at a time, pipelined up to max_inflight APPs
 * in replicate state, or sent the latest snapshot when its next entry was
 * compacted away. The leader's own log counts towards commit only up to what
 * raft_persisted() reported (thesis §10.2.1).
 *
 * Follower side: APP, SNAP and heartbeats from the leader. Accepting answers
 * go in msgs_durable: they claim entries are durable.
 *
 * Invariants: commit only moves forward and only to an entry of the current
 * term counted on a quorum (§5.4.2); committed entries are never truncated;
 * each APP carries at least one entry if any is due, and at most
 * max_msg_bytes of payload otherwise.
 */
#include <assert.h>

#include "raft_int.h"

int rep_append_local(struct raft *r, uint8_t type, const void *data, size_t len)
{
    struct raft_entry e = {
        .term = r->term,
        .index = log_last_index(&r->log) + 1,
        .type = type,
        .len = (uint32_t)len,
        .data = data,
    };
    return log_append(&r->log, &e);
}

/* The bound on what the leader holds that is not durable yet: at most
 * RAFT_BACKLOG_ENTRIES entries and RAFT_BACKLOG_BYTES of payload. */
bool rep_backlog_full(const struct raft *r, size_t more_bytes)
{
    uint64_t last = log_last_index(&r->log);
    uint64_t n = last - r->persisted;
    uint64_t bytes = log_bytes(&r->log, r->persisted + 1, last);
    return n + 1 > RAFT_BACKLOG_ENTRIES || bytes + more_bytes > RAFT_BACKLOG_BYTES;
}

static uint64_t match_of(struct raft *r, struct raft_progress *pr)
{
    return pr->id == r->cfg.id ? r->persisted : pr->match;
}

/* Raft §5.4.2: the leader commits the highest index a quorum of voters
 * holds durably, but only if that entry is of its own term; older entries
 * commit with it. */
bool rep_maybe_commit(struct raft *r)
{
    uint64_t q = pr_quorum_value(r, match_of);
    if (q <= r->commit || log_term(&r->log, q) != r->term)
        return false;
    bool first = log_term(&r->log, r->commit) != r->term;
    r->commit = q;
    if (first)
        rd_release_held(r);
    return true;
}

void rep_leader_persisted(struct raft *r)
{
    struct raft_progress *self = pr_get(r, r->cfg.id);
    if (self)
        self->match = r->persisted;
    rep_maybe_commit(r);
}

void rep_send_heartbeats(struct raft *r, uint64_t ctx)
{
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (!pr->used || pr->id == r->cfg.id)
            continue;
        struct raft_msg *m = raft_out(r, false, RAFT_MSG_HEARTBEAT, pr->id);
        if (!m)
            return;
        /* The follower may not hold entries past match yet. */
        m->commit = pr->match < r->commit ? pr->match : r->commit;
        m->ctx = ctx;
    }
}

void rep_send_timeout_now(struct raft *r, uint64_t to)
{
    raft_out(r, false, RAFT_MSG_TIMEOUT_NOW, to);
}

enum send_action { SEND_NONE, SEND_APP, SEND_SNAP };

/* What the leader would send pr now; no side effect. */
static enum send_action next_action(const struct raft *r, const struct raft_progress *pr)
{
    if (pr->state == RAFT_PROGRESS_SNAPSHOT)
        return SEND_NONE;
    if (pr->state == RAFT_PROGRESS_PROBE && pr->paused)
        return SEND_NONE;
    if (pr->state == RAFT_PROGRESS_REPLICATE && pr_infl_full(r, pr))
        return SEND_NONE;
    bool news = pr->next <= log_last_index(&r->log) || pr->want_send || r->commit > pr->sent_commit;
    if (!news)
        return SEND_NONE;
    /* Thesis §5: the entries it needs are gone; it gets the snapshot,
     * once one is there, if it is alive at all. */
    if (pr->next < log_first_index(&r->log))
        return r->has_snap_avail && pr->recent_active ? SEND_SNAP : SEND_NONE;
    return SEND_APP;
}

static void send_snap(struct raft *r, struct raft_progress *pr)
{
    struct raft_msg *m = raft_out(r, false, RAFT_MSG_SNAP, pr->id);
    if (!m)
        return;
    m->snap = r->snap_avail;
    m->index = r->snap_avail.index;
    m->log_term = r->snap_avail.term;
    pr_become_snapshot(pr, r->snap_avail.index);
}

/* Entries from `next` within max_msg_bytes, at least one if any. */
static uint32_t count_entries(const struct raft *r, uint64_t next)
{
    uint64_t last = log_last_index(&r->log);
    uint32_t n = 0;
    uint64_t bytes = 0;
    for (uint64_t i = next; i <= last && n < RAFT_MSG_ENTS_MAX; i++) {
        bytes += log_get(&r->log, i)->len;
        if (n > 0 && bytes > r->cfg.max_msg_bytes)
            break;
        n++;
    }
    return n;
}

/* Sends pr one APP; true if the window may take another. */
static bool send_app(struct raft *r, struct raft_progress *pr)
{
    uint32_t n = count_entries(r, pr->next);
    struct raft_msg *m = raft_out(r, false, RAFT_MSG_APP, pr->id);
    if (!m)
        return false;
    m->index = pr->next - 1;
    m->log_term = log_term(&r->log, m->index);
    m->commit = r->commit;
    m->entries = n ? log_get(&r->log, pr->next) : NULL;
    m->n_entries = n;
    pr->want_send = false;
    pr->sent_commit = r->commit;
    if (pr->state == RAFT_PROGRESS_PROBE) {
        pr->paused = true;
        return false;
    }
    if (n == 0)
        return false;
    /* Raft §5.3, pipelined: assume it will accept, go on from there. */
    pr->next += n;
    pr_infl_add(r, pr, pr->next - 1);
    return true;
}

static void send_append(struct raft *r, struct raft_progress *pr)
{
    for (;;) {
        enum send_action a = next_action(r, pr);
        if (a == SEND_SNAP)
            send_snap(r, pr);
        if (a != SEND_APP || !send_app(r, pr))
            return;
    }
}

void rep_build_appends(struct raft *r)
{
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (pr->used && pr->id != r->cfg.id)
            send_append(r, pr);
    }
}

bool rep_wants_send(const struct raft *r)
{
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++) {
        const struct raft_progress *pr = &r->prs[i];
        if (pr->used && pr->id != r->cfg.id && next_action(r, pr) != SEND_NONE)
            return true;
    }
    return false;
}

static void on_reject(struct raft *r, struct raft_progress *pr, const struct raft_msg *m)
{
    /* Fast backtracking (thesis §5.3 optimisation): skip every entry of a
     * term the follower's hint shows it cannot hold. */
    uint64_t hint = m->reject_hint;
    if (m->log_term > 0)
        hint = log_find_by_term(&r->log, hint, m->log_term);
    if (!pr_maybe_decr(pr, m->index, hint))
        return;
    if (pr->state == RAFT_PROGRESS_REPLICATE)
        pr_become_probe(pr);
    pr->want_send = true;
}

static void on_accept(struct raft *r, struct raft_progress *pr, const struct raft_msg *m)
{
    bool was_paused = pr->paused || pr_infl_full(r, pr);
    if (m->index > log_last_index(&r->log) || !pr_maybe_update(pr, m->index))
        return;
    if (pr->state == RAFT_PROGRESS_PROBE) {
        pr_become_replicate(pr);
    } else if (pr->state == RAFT_PROGRESS_SNAPSHOT && pr->match >= pr->pending_snap) {
        pr_become_probe(pr);
        pr_become_replicate(pr);
    } else if (pr->state == RAFT_PROGRESS_REPLICATE) {
        pr_infl_free_le(r, pr, m->index);
    }
    if (!rep_maybe_commit(r) && was_paused)
        pr->want_send = true;
    /* Thesis §3.10: the target is up to date: it may campaign now. */
    if (pr->id == r->transferee && pr->match == log_last_index(&r->log))
        rep_send_timeout_now(r, pr->id);
}

void rep_handle_app_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *pr = pr_get(r, m->from);
    if (!pr)
        return;
    pr->recent_active = true;
    if (m->reject)
        on_reject(r, pr, m);
    else
        on_accept(r, pr, m);
}

void rep_handle_hb_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *pr = pr_get(r, m->from);
    if (!pr)
        return;
    pr->recent_active = true;
    pr->paused = false;
    /* A full window whose answers were lost must not block for ever. */
    if (pr->state == RAFT_PROGRESS_REPLICATE && pr_infl_full(r, pr))
        pr_infl_free_first(r, pr);
    if (pr->match < log_last_index(&r->log))
        pr->want_send = true;
    if (m->ctx > pr->read_ack) {
        pr->read_ack = m->ctx;
        rd_advance(r);
    }
}

/* ---- follower side ---- */

static void commit_to(struct raft *r, uint64_t c)
{
    uint64_t last = log_last_index(&r->log);
    if (c > last)
        c = last;
    if (c > r->commit)
        r->commit = c;
}

static void app_resp(struct raft *r, const struct raft_msg *m, uint64_t index)
{
    struct raft_msg *o = raft_out(r, true, RAFT_MSG_APP_RESP, m->from);
    if (o)
        o->index = index;
}

/* Answers that claim entries at or after i are void: those were replaced
 * before the answers could be sent. */
static void drop_acks_from(struct raft *r, uint64_t i)
{
    uint32_t k = 0;
    for (uint32_t j = 0; j < r->durable.n; j++) {
        struct raft_msg *o = &r->durable.v[j];
        if (o->type == RAFT_MSG_APP_RESP && !o->reject && o->index >= i)
            continue;
        r->durable.v[k++] = *o;
    }
    r->durable.n = k;
}

static void truncate_from(struct raft *r, uint64_t i)
{
    /* Raft §5.4 (Leader Completeness): a committed entry is never replaced. */
    assert(i > r->commit);
    log_truncate(&r->log, i);
    if (r->unstable > i)
        r->unstable = i;
    if (r->persisted >= i)
        r->persisted = i - 1;
    drop_acks_from(r, i);
}

/* Raft §5.3: delete a conflicting entry and all that follow it, append the
 * new entries not already in the log. Returns the last index appended. */
static uint64_t append_entries(struct raft *r, const struct raft_msg *m)
{
    uint32_t k = 0;
    while (k < m->n_entries && log_match(&r->log, m->entries[k].index, m->entries[k].term))
        k++;
    if (k < m->n_entries && m->entries[k].index <= log_last_index(&r->log))
        truncate_from(r, m->entries[k].index);
    for (; k < m->n_entries; k++)
        if (log_append(&r->log, &m->entries[k]) != 0)
            return log_last_index(&r->log);
    return m->index + m->n_entries;
}

void rep_handle_app(struct raft *r, const struct raft_msg *m)
{
    if (m->index < r->commit) {
        app_resp(r, m, r->commit);
        return;
    }
    /* Raft §5.3 (log matching): accept only after the entry at
     * (index, log_term). */
    if (log_match(&r->log, m->index, m->log_term)) {
        uint64_t last_new = append_entries(r, m);
        commit_to(r, m->commit < last_new ? m->commit : last_new);
        app_resp(r, m, last_new);
        return;
    }
    /* Hint: the last index that may match, as far back as the leader's
     * term at m->index allows; the leader skips whole terms. */
    uint64_t hint = m->index < log_last_index(&r->log) ? m->index : log_last_index(&r->log);
    hint = log_find_by_term(&r->log, hint, m->log_term);
    struct raft_msg *o = raft_out(r, false, RAFT_MSG_APP_RESP, m->from);
    if (!o)
        return;
    o->reject = true;
    o->index = m->index;
    o->reject_hint = hint;
    o->log_term = log_term(&r->log, hint);
}

void rep_handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    commit_to(r, m->commit);
    struct raft_msg *o = raft_out(r, false, RAFT_MSG_HEARTBEAT_RESP, m->from);
    if (o)
        o->ctx = m->ctx;
}

static void restore(struct raft *r, const struct raft_snap_meta *s)
{
    log_restore(&r->log, s->index, s->term);
    drop_acks_from(r, s->index + 1);
    r->commit = s->index;
    r->applied = s->index;
    r->persisted = s->index;
    r->unstable = s->index + 1;
    r->conf = s->conf;
    r->snap_in = *s;
    r->snap_in_pending = true;
    r->snap_avail = *s;
    r->has_snap_avail = true;
}

/* Thesis §5: install a snapshot that is ahead of what is committed here;
 * one that is not tells nothing new. */
void rep_handle_snap(struct raft *r, const struct raft_msg *m)
{
    const struct raft_snap_meta *s = &m->snap;
    if (s->index <= r->commit) {
        app_resp(r, m, r->commit);
        return;
    }
    if (log_match(&r->log, s->index, s->term)) {
        commit_to(r, s->index);
        app_resp(r, m, r->commit);
        return;
    }
    restore(r, s);
    app_resp(r, m, s->index);
}
