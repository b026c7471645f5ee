/*
 * raft_election.c — roles and their transitions, the logical clock, leader
 * election with PreVote (thesis §9.6), voting, and CheckQuorum.
 *
 * Invariants: vote is cast at most once per term and goes out (in
 * msgs_durable) only after the hard state recording it is durable; the
 * election timeout in force is redrawn in [election_ticks,
 * 2 * election_ticks) at every reset from the seeded PRNG; only voters that
 * were not removed campaign; a pre-candidate never changes its term.
 */
#include <assert.h>

#include "raft_int.h"

/* splitmix64: the only source of randomness, seeded from cfg.seed. */
static uint64_t rng_next(struct raft *r)
{
    uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Raft §5.2: randomized election timeouts make split votes rare. */
void el_reset_timeout(struct raft *r)
{
    uint32_t e = r->cfg.election_ticks;
    r->timeout = e + (uint32_t)(rng_next(r) % e);
}

bool el_promotable(const struct raft *r)
{
    return !r->removed && raft_is_voter(&r->conf, r->cfg.id);
}

static void reset(struct raft *r, uint64_t term)
{
    if (term != r->term) {
        r->term = term;
        r->vote = RAFT_NONE;
    }
    r->leader = RAFT_NONE;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    el_reset_timeout(r);
    r->transferee = RAFT_NONE;
    r->n_votes = 0;
    rd_clear(r);
}

/* Raft §5.1: a member that learns of a newer term, or of the leader of its
 * term, becomes (or stays) a follower. */
void el_become_follower(struct raft *r, uint64_t term, uint64_t leader)
{
    reset(r, term);
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
}

static void become_precandidate(struct raft *r)
{
    assert(r->role != RAFT_LEADER);
    /* Thesis §9.6: no new term, no vote; only ask. */
    r->role = RAFT_PRECANDIDATE;
    r->leader = RAFT_NONE;
    r->n_votes = 0;
    r->election_elapsed = 0;
    el_reset_timeout(r);
}

static void become_candidate(struct raft *r)
{
    assert(r->role != RAFT_LEADER);
    /* Raft §5.2: increment the term, vote for itself. */
    reset(r, r->term + 1);
    r->vote = r->cfg.id;
    r->role = RAFT_CANDIDATE;
}

/* Raft §5.4.2 / thesis §6.4: a new leader appends an empty entry of its
 * term; committing it commits everything before it and lets it serve
 * reads. */
void el_become_leader(struct raft *r)
{
    assert(r->role != RAFT_FOLLOWER);
    reset(r, r->term);
    r->role = RAFT_LEADER;
    r->leader = r->cfg.id;
    pr_reset_all(r);
    /* Any conf entry in the log may still be unapplied (etcd's
     * pendingConfIndex): no new change until all of it is applied. */
    r->pending_conf = log_last_index(&r->log);
    int rv = rep_append_local(r, RAFT_ENTRY_NORMAL, NULL, 0);
    assert(rv == 0);
    (void)rv;
}

/* Records one answer; returns +1 won, -1 lost, 0 undecided. */
static int poll(struct raft *r, uint64_t id, bool ok)
{
    bool seen = false;
    for (uint32_t i = 0; i < r->n_votes; i++)
        seen = seen || r->vote_id[i] == id;
    if (!seen && r->n_votes < RAFT_MEMBERS_MAX) {
        r->vote_id[r->n_votes] = id;
        r->vote_ok[r->n_votes++] = ok;
    }
    uint32_t yes = 0, no = 0;
    for (uint32_t i = 0; i < r->n_votes; i++) {
        if (!raft_is_voter(&r->conf, r->vote_id[i]))
            continue;
        if (r->vote_ok[i])
            yes++;
        else
            no++;
    }
    uint32_t q = conf_quorum(&r->conf);
    if (yes >= q)
        return 1;
    if (no >= q || r->conf.n_voters - no < q)
        return -1;
    return 0;
}

void el_campaign(struct raft *r, bool pre, bool transfer)
{
    if (pre)
        become_precandidate(r);
    else
        become_candidate(r);
    uint64_t term = pre ? r->term + 1 : r->term;
    if (poll(r, r->cfg.id, true) > 0) {
        if (pre)
            el_campaign(r, false, transfer);
        else
            el_become_leader(r);
        return;
    }
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        uint64_t to = r->conf.voters[i];
        if (to == r->cfg.id)
            continue;
        /* A real vote request rests on the new term and self vote: sent
         * once they are durable. */
        struct raft_msg *m = raft_out(r, !pre, pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE, to);
        if (!m)
            continue;
        m->term = term;
        m->index = log_last_index(&r->log);
        m->log_term = log_last_term(&r->log);
        m->ctx = transfer ? RAFT_CTX_TRANSFER : 0;
    }
}

/* A committed but unapplied conf change would change who may vote: wait
 * until it is applied (etcd). */
static bool conf_unapplied(const struct raft *r)
{
    for (uint64_t i = r->applied + 1; i <= r->commit; i++) {
        const struct raft_entry *e = log_get(&r->log, i);
        if (e && e->type == RAFT_ENTRY_CONF)
            return true;
    }
    return false;
}

void el_hup(struct raft *r, bool transfer)
{
    if (r->role == RAFT_LEADER || !el_promotable(r) || conf_unapplied(r))
        return;
    el_campaign(r, r->cfg.pre_vote && !transfer, transfer);
}

/* CheckQuorum (thesis §6.2): a leader that has not heard from a quorum of
 * voters within an election timeout steps down. */
static void check_quorum(struct raft *r)
{
    uint32_t active = 0;
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        struct raft_progress *pr = pr_get(r, r->conf.voters[i]);
        if (pr && (pr->recent_active || pr->id == r->cfg.id))
            active++;
    }
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++)
        if (r->prs[i].used && r->prs[i].id != r->cfg.id)
            r->prs[i].recent_active = false;
    if (active < conf_quorum(&r->conf))
        el_become_follower(r, r->term, RAFT_NONE);
}

static void tick_leader(struct raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->cfg.election_ticks) {
        r->election_elapsed = 0;
        if (r->cfg.check_quorum)
            check_quorum(r);
        if (r->role != RAFT_LEADER)
            return;
        /* Thesis §3.10: a transfer that did not happen within an election
         * timeout is aborted; proposals flow again. */
        r->transferee = RAFT_NONE;
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        rep_send_heartbeats(r, r->n_rq ? r->read_seq : 0);
    }
}

/* Raft §5.2: a follower that hears nothing from a leader for an election
 * timeout starts an election. */
static void tick_election(struct raft *r)
{
    if (r->election_elapsed < UINT32_MAX)
        r->election_elapsed++;
    if (el_promotable(r) && r->election_elapsed >= r->timeout) {
        r->election_elapsed = 0;
        el_hup(r, false);
    }
}

void el_tick(struct raft *r)
{
    if (r->role == RAFT_LEADER)
        tick_leader(r);
    else
        tick_election(r);
}

/* Raft §5.2, §5.4.1: grant a vote to a candidate whose log is at least as
 * up to date, at most one per term. A pre-vote for a later term binds
 * nothing (thesis §9.6). */
void el_handle_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can = r->vote == m->from || (r->vote == RAFT_NONE && r->leader == RAFT_NONE) ||
               (pre && m->term > r->term);
    uint8_t type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    if (can && log_is_up_to_date(&r->log, m->index, m->log_term)) {
        /* Answer in the request's term: a pre-candidate ignores answers
         * of other terms. A real vote waits for the hard state. */
        struct raft_msg *o = raft_out(r, !pre, type, m->from);
        if (o)
            o->term = m->term;
        if (!pre) {
            r->election_elapsed = 0;
            r->vote = m->from;
        }
        return;
    }
    struct raft_msg *o = raft_out(r, false, type, m->from);
    if (o)
        o->reject = true;
}

void el_handle_vote_resp(struct raft *r, const struct raft_msg *m)
{
    bool pre = r->role == RAFT_PRECANDIDATE;
    if ((pre && m->type != RAFT_MSG_PREVOTE_RESP) ||
        (r->role == RAFT_CANDIDATE && m->type != RAFT_MSG_VOTE_RESP) ||
        (r->role != RAFT_PRECANDIDATE && r->role != RAFT_CANDIDATE))
        return;
    int res = poll(r, m->from, !m->reject);
    if (res > 0) {
        if (pre)
            el_campaign(r, false, false);
        else
            el_become_leader(r);
    } else if (res < 0) {
        el_become_follower(r, r->term, RAFT_NONE);
    }
}
