/*
 * raft_progress.c — membership sets and the leader's view of each member
 * (etcd's progress tracker): match/next, the probe / replicate / snapshot
 * states, the ring of APPs in flight, and quorum arithmetic over voters.
 *
 * Invariants: a progress slot is used iff its id is in the configuration
 * (after pr_sync_conf); match < next; in replicate state infl_count <=
 * max_inflight and the ring holds increasing last indexes; learners never
 * count towards a quorum (thesis §4.2.1).
 */
#include <assert.h>
#include <string.h>

#include "raft_int.h"

static int find(const uint64_t *ids, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return (int)i;
    return -1;
}

bool raft_is_voter(const struct raft_conf *c, uint64_t id)
{
    return find(c->voters, c->n_voters, id) >= 0;
}

bool raft_is_learner(const struct raft_conf *c, uint64_t id)
{
    return find(c->learners, c->n_learners, id) >= 0;
}

bool conf_member(const struct raft_conf *c, uint64_t id)
{
    return raft_is_voter(c, id) || raft_is_learner(c, id);
}

static void drop(uint64_t *ids, uint32_t *n, int at)
{
    ids[at] = ids[*n - 1];
    (*n)--;
}

bool conf_remove(struct raft_conf *c, uint64_t id)
{
    int v = find(c->voters, c->n_voters, id);
    if (v >= 0) {
        drop(c->voters, &c->n_voters, v);
        return true;
    }
    int l = find(c->learners, c->n_learners, id);
    if (l >= 0) {
        drop(c->learners, &c->n_learners, l);
        return true;
    }
    return false;
}

/* Adds id as a voter or learner; a learner made a voter moves over. */
bool conf_add(struct raft_conf *c, uint64_t id, bool learner)
{
    if (id == RAFT_NONE)
        return false;
    bool was_learner = raft_is_learner(c, id);
    if (raft_is_voter(c, id) || (learner && was_learner))
        return false;
    if (!was_learner && c->n_voters + c->n_learners >= RAFT_MEMBERS_MAX)
        return false;
    if (was_learner)
        conf_remove(c, id);
    if (learner)
        c->learners[c->n_learners++] = id;
    else
        c->voters[c->n_voters++] = id;
    return true;
}

/* Raft §5.2: a majority of the voters. */
uint32_t conf_quorum(const struct raft_conf *c)
{
    return c->n_voters / 2 + 1;
}

struct raft_progress *pr_get(struct raft *r, uint64_t id)
{
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++)
        if (r->prs[i].used && r->prs[i].id == id)
            return &r->prs[i];
    return NULL;
}

static void pr_init(struct raft *r, struct raft_progress *pr, uint64_t id)
{
    uint64_t *infl = pr->infl;
    memset(pr, 0, sizeof(*pr));
    pr->infl = infl;
    pr->used = true;
    pr->id = id;
    pr->learner = raft_is_learner(&r->conf, id);
    pr->next = log_last_index(&r->log) + 1;
    pr->recent_active = true;
    pr->state = RAFT_PROGRESS_PROBE;
    if (id == r->cfg.id)
        pr->match = r->persisted;
}

static void pr_add(struct raft *r, uint64_t id)
{
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++) {
        if (!r->prs[i].used) {
            pr_init(r, &r->prs[i], id);
            return;
        }
    }
    assert(!"more members than RAFT_MEMBERS_MAX");
}

/* A new leader knows nothing of the others: next just past its log. */
void pr_reset_all(struct raft *r)
{
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++)
        r->prs[i].used = false;
    pr_sync_conf(r);
}

/* Adds progress for new members, drops it for removed ones, refreshes the
 * learner flag. */
void pr_sync_conf(struct raft *r)
{
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++) {
        struct raft_progress *pr = &r->prs[i];
        if (!pr->used)
            continue;
        if (!conf_member(&r->conf, pr->id))
            pr->used = false;
        else
            pr->learner = raft_is_learner(&r->conf, pr->id);
    }
    for (uint32_t i = 0; i < r->conf.n_voters; i++)
        if (!pr_get(r, r->conf.voters[i]))
            pr_add(r, r->conf.voters[i]);
    for (uint32_t i = 0; i < r->conf.n_learners; i++)
        if (!pr_get(r, r->conf.learners[i]))
            pr_add(r, r->conf.learners[i]);
}

static void reset_state(struct raft_progress *pr, uint8_t state)
{
    pr->paused = false;
    pr->pending_snap = 0;
    pr->state = state;
    pr->infl_start = 0;
    pr->infl_count = 0;
}

/* Probe: one APP at a time until the follower's answer shows where the
 * logs match. After a snapshot, probing starts past it. */
void pr_become_probe(struct raft_progress *pr)
{
    uint64_t snap = pr->state == RAFT_PROGRESS_SNAPSHOT ? pr->pending_snap : 0;
    reset_state(pr, RAFT_PROGRESS_PROBE);
    pr->next = pr->match + 1;
    if (snap + 1 > pr->next)
        pr->next = snap + 1;
}

/* Replicate: the logs match up to match; send optimistically. */
void pr_become_replicate(struct raft_progress *pr)
{
    reset_state(pr, RAFT_PROGRESS_REPLICATE);
    pr->next = pr->match + 1;
}

void pr_become_snapshot(struct raft_progress *pr, uint64_t snap_index)
{
    reset_state(pr, RAFT_PROGRESS_SNAPSHOT);
    pr->pending_snap = snap_index;
}

/* An accepting APP_RESP for index: false if it tells nothing new. */
bool pr_maybe_update(struct raft_progress *pr, uint64_t index)
{
    bool updated = false;
    if (pr->match < index) {
        pr->match = index;
        updated = true;
        pr->paused = false;
    }
    if (pr->next < index + 1)
        pr->next = index + 1;
    return updated;
}

/* A rejecting APP_RESP for `rejected`: move next back to just after
 * `hint`, the follower's guess of the last matching index. false if the
 * answer is stale (it rejects an APP sent before a later decision). */
bool pr_maybe_decr(struct raft_progress *pr, uint64_t rejected, uint64_t hint)
{
    if (pr->state == RAFT_PROGRESS_REPLICATE) {
        if (rejected <= pr->match)
            return false;
        pr->next = pr->match + 1;
        return true;
    }
    if (pr->next - 1 != rejected)
        return false;
    uint64_t next = rejected < hint + 1 ? rejected : hint + 1;
    pr->next = next > pr->match + 1 ? next : pr->match + 1;
    pr->paused = false;
    return true;
}

bool pr_infl_full(const struct raft *r, const struct raft_progress *pr)
{
    return pr->infl_count >= r->cfg.max_inflight;
}

void pr_infl_add(const struct raft *r, struct raft_progress *pr, uint64_t last)
{
    uint32_t size = r->cfg.max_inflight;
    assert(pr->infl_count < size);
    pr->infl[(pr->infl_start + pr->infl_count) % size] = last;
    pr->infl_count++;
}

/* Frees the in-flight APPs whose last index is <= index. */
void pr_infl_free_le(const struct raft *r, struct raft_progress *pr, uint64_t index)
{
    uint32_t size = r->cfg.max_inflight;
    while (pr->infl_count && pr->infl[pr->infl_start] <= index) {
        pr->infl_start = (pr->infl_start + 1) % size;
        pr->infl_count--;
    }
}

void pr_infl_free_first(const struct raft *r, struct raft_progress *pr)
{
    if (!pr->infl_count)
        return;
    pr->infl_start = (pr->infl_start + 1) % r->cfg.max_inflight;
    pr->infl_count--;
}

/* Sorts descending (at most RAFT_MEMBERS_MAX values). */
static void sort_desc(uint64_t *v, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint64_t x = v[i];
        uint32_t j = i;
        while (j > 0 && v[j - 1] < x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

uint64_t pr_quorum_value(struct raft *r, uint64_t (*val)(struct raft *, struct raft_progress *))
{
    uint64_t v[RAFT_MEMBERS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        struct raft_progress *pr = pr_get(r, r->conf.voters[i]);
        v[n++] = pr ? val(r, pr) : 0;
    }
    if (n == 0)
        return 0;
    sort_desc(v, n);
    return v[conf_quorum(&r->conf) - 1];
}
