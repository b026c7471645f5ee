/*
 * test_raft.c — unit tests of the Raft state machine (src/raft/raft*.c),
 * one test per rule, each named after the section of the Raft paper or
 * thesis it checks.
 *
 * A tiny network drives up to NODES_MAX struct raft by hand: each node's
 * ready is taken in full (messages deep-copied into one FIFO, msgs_durable
 * released and raft_persisted() called right after raft_advance, unless the
 * node "holds" its storage), then the queued messages are delivered, round
 * after round, until nothing moves. Links can be cut, and a filter can drop
 * chosen messages. After every ready the harness checks: at most one leader
 * per term (Election Safety), applied entries agree across nodes (State
 * Machine Safety), and no accepting APP_RESP or granted VOTE_RESP travels
 * in `msgs` (they must wait for durability).
 *
 * Threading: single-threaded. Deterministic: all randomness is the nodes'
 * seeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"

#define NODES_MAX   5
#define APPLIED_MAX 4096
#define TERMS_MAX   256
#define ROUNDS_MAX  2000

struct qmsg {
    struct raft_msg m;
    struct raft_entry *ents;
};

struct applied {
    uint64_t index;
    uint64_t term;
    uint8_t type;
    uint32_t len;
    char text[16];
};

struct node {
    struct raft *r;
    bool hold; /* storage stalls: durable messages and persisted wait */
    struct qmsg *held;
    size_t n_held;
    bool has_held;
    uint64_t held_index, held_term;
    struct applied ap[APPLIED_MAX];
    size_t n_ap;
    struct raft_read reads[64];
    size_t n_reads;
    bool got_snap;
    struct raft_snap_meta snap;
    size_t hs_changes;
    struct raft_hardstate hs;
    uint64_t next_apply; /* index the next committed entry must have; 0: any */
};

struct net;
typedef bool (*filter_fn)(struct net *n, const struct raft_msg *m);

struct net {
    struct node nd[NODES_MAX + 1]; /* by id */
    struct qmsg *q;
    size_t nq, capq;
    bool cut[NODES_MAX + 1][NODES_MAX + 1];
    filter_fn filter;
    size_t rejects_from[NODES_MAX + 1];
    size_t apps_to[NODES_MAX + 1];
    uint64_t leader_of[TERMS_MAX];
    bool pre_vote, check_quorum;
    uint32_t max_inflight, max_msg_bytes;
};

/* ---- message copies ---------------------------------------------------- */

static void copy_msg(struct qmsg *d, const struct raft_msg *m)
{
    d->m = *m;
    d->ents = NULL;
    if (!m->n_entries)
        return;
    d->ents = calloc(m->n_entries, sizeof(*d->ents));
    assert_non_null(d->ents);
    for (uint32_t i = 0; i < m->n_entries; i++) {
        d->ents[i] = m->entries[i];
        if (m->entries[i].len) {
            uint8_t *p = malloc(m->entries[i].len);
            assert_non_null(p);
            memcpy(p, m->entries[i].data, m->entries[i].len);
            d->ents[i].data = p;
        }
    }
    d->m.entries = d->ents;
}

static void free_qmsg(struct qmsg *d)
{
    for (uint32_t i = 0; d->ents && i < d->m.n_entries; i++)
        free((void *)d->ents[i].data);
    free(d->ents);
    d->ents = NULL;
}

static void q_push(struct net *n, const struct raft_msg *m)
{
    if (n->nq == n->capq) {
        n->capq = n->capq ? n->capq * 2 : 64;
        n->q = realloc(n->q, n->capq * sizeof(*n->q));
        assert_non_null(n->q);
    }
    copy_msg(&n->q[n->nq++], m);
}

static void q_clear(struct net *n)
{
    for (size_t i = 0; i < n->nq; i++)
        free_qmsg(&n->q[i]);
    n->nq = 0;
}

static size_t q_count(struct net *n, uint8_t type, uint64_t to, bool with_entries)
{
    size_t c = 0;
    for (size_t i = 0; i < n->nq; i++) {
        const struct raft_msg *m = &n->q[i].m;
        if (m->type == type && (!to || m->to == to) && (!with_entries || m->n_entries))
            c++;
    }
    return c;
}

/* ---- nodes --------------------------------------------------------------- */

static struct raft_config config_of(struct net *n, uint64_t id)
{
    struct raft_config c = {
        .id = id,
        .election_ticks = 10,
        .heartbeat_ticks = 1,
        .seed = 7,
        .max_inflight = n->max_inflight ? n->max_inflight : 8,
        .max_msg_bytes = n->max_msg_bytes ? n->max_msg_bytes : (1u << 20),
        .max_apply_bytes = 1u << 30,
        .pre_vote = n->pre_vote,
        .check_quorum = n->check_quorum,
    };
    return c;
}

static struct raft_conf voters(uint32_t count)
{
    struct raft_conf c;
    memset(&c, 0, sizeof(c));
    for (uint32_t i = 0; i < count; i++)
        c.voters[c.n_voters++] = i + 1;
    return c;
}

static struct raft *node_new(struct net *n, uint64_t id, const struct raft_boot *boot)
{
    struct raft_config cfg = config_of(n, id);
    struct raft *r = raft_new(&cfg, boot);
    assert_non_null(r);
    n->nd[id].r = r;
    return r;
}

static struct net *net_new(uint32_t count, bool pre_vote, bool check_quorum)
{
    struct net *n = calloc(1, sizeof(*n));
    assert_non_null(n);
    n->pre_vote = pre_vote;
    n->check_quorum = check_quorum;
    struct raft_boot boot;
    memset(&boot, 0, sizeof(boot));
    boot.snap.conf = voters(count);
    for (uint32_t i = 1; i <= count; i++)
        node_new(n, i, &boot);
    return n;
}

static void net_free(struct net *n)
{
    q_clear(n);
    free(n->q);
    for (int i = 0; i <= NODES_MAX; i++) {
        for (size_t k = 0; k < n->nd[i].n_held; k++)
            free_qmsg(&n->nd[i].held[k]);
        free(n->nd[i].held);
        raft_free(n->nd[i].r);
    }
    free(n);
}

static struct raft *R(struct net *n, uint64_t id)
{
    return n->nd[id].r;
}

/* ---- invariants -------------------------------------------------------- */

static uint64_t run_seed; /* the randomized run's seed, printed on failure */

static void check_msgs(const struct raft_ready *rd)
{
    for (uint32_t i = 0; i < rd->n_msgs; i++) {
        const struct raft_msg *m = &rd->msgs[i];
        /* Durability first: acks and votes only in msgs_durable. */
        if (m->type == RAFT_MSG_APP_RESP && !m->reject && m->index > 0) {
            fail_msg("accepting APP_RESP in msgs");
        }
        if (m->type == RAFT_MSG_VOTE_RESP && !m->reject)
            fail_msg("granted VOTE_RESP in msgs");
    }
}

static void check_leader(struct net *n, const struct raft_ready *rd, uint64_t id)
{
    /* Raft §5.2 Election Safety: one leader per term. */
    if (rd->role != RAFT_LEADER || rd->term >= TERMS_MAX)
        return;
    if (n->leader_of[rd->term] && n->leader_of[rd->term] != id)
        fail_msg("two leaders in term %llu (seed %llu)", (unsigned long long)rd->term,
                 (unsigned long long)run_seed);
    n->leader_of[rd->term] = id;
}

static void check_applied(struct net *n)
{
    /* Raft §5.4.3 State Machine Safety: same index, same entry. */
    for (int a = 1; a <= NODES_MAX; a++) {
        for (int b = a + 1; b <= NODES_MAX; b++) {
            struct node *x = &n->nd[a], *y = &n->nd[b];
            for (size_t i = 0; i < x->n_ap; i++) {
                for (size_t j = 0; j < y->n_ap; j++) {
                    if (x->ap[i].index == y->ap[j].index && x->ap[i].term != y->ap[j].term)
                        fail_msg("nodes %d and %d applied different entries at %llu (seed %llu)", a,
                                 b, (unsigned long long)x->ap[i].index,
                                 (unsigned long long)run_seed);
                }
            }
        }
    }
}

/* ---- ready processing -------------------------------------------------- */

static void record(struct node *nd, const struct raft_ready *rd)
{
    if (rd->has_snap) {
        nd->got_snap = true;
        nd->snap = rd->snap;
        nd->next_apply = rd->snap.index + 1;
    }
    if (rd->hs_changed) {
        nd->hs_changes++;
        nd->hs = rd->hs;
    }
    for (uint32_t i = 0; i < rd->n_committed; i++) {
        assert_true(nd->n_ap < APPLIED_MAX);
        struct applied *a = &nd->ap[nd->n_ap++];
        const struct raft_entry *e = &rd->committed[i];
        if (nd->next_apply)
            assert_int_equal(nd->next_apply, e->index);
        nd->next_apply = e->index + 1;
        a->index = e->index;
        a->term = e->term;
        a->type = e->type;
        a->len = e->len;
        memset(a->text, 0, sizeof(a->text));
        if (e->type == RAFT_ENTRY_NORMAL && e->len)
            memcpy(a->text, e->data, e->len < 15 ? e->len : 15);
    }
    for (uint32_t i = 0; i < rd->n_reads && nd->n_reads < 64; i++)
        nd->reads[nd->n_reads++] = rd->reads[i];
}

static void hold_msgs(struct node *nd, const struct raft_ready *rd)
{
    nd->held = realloc(nd->held, (nd->n_held + rd->n_msgs_durable + 1) * sizeof(*nd->held));
    assert_non_null(nd->held);
    for (uint32_t i = 0; i < rd->n_msgs_durable; i++)
        copy_msg(&nd->held[nd->n_held++], &rd->msgs_durable[i]);
    if (rd->n_entries) {
        nd->has_held = true;
        nd->held_index = rd->entries[rd->n_entries - 1].index;
        nd->held_term = rd->entries[rd->n_entries - 1].term;
    }
}

static void node_ready(struct net *n, uint64_t id)
{
    struct node *nd = &n->nd[id];
    struct raft_ready rd;
    for (int guard = 0; nd->r && guard < 100 && raft_ready(nd->r, &rd); guard++) {
        check_msgs(&rd);
        check_leader(n, &rd, id);
        record(nd, &rd);
        for (uint32_t i = 0; i < rd.n_msgs; i++)
            q_push(n, &rd.msgs[i]);
        uint64_t li = 0, lt = 0;
        if (rd.n_entries) {
            li = rd.entries[rd.n_entries - 1].index;
            lt = rd.entries[rd.n_entries - 1].term;
        }
        if (nd->hold) {
            hold_msgs(nd, &rd);
        } else {
            for (uint32_t i = 0; i < rd.n_msgs_durable; i++)
                q_push(n, &rd.msgs_durable[i]);
        }
        raft_advance(nd->r);
        if (!nd->hold && li)
            raft_persisted(nd->r, li, lt);
    }
}

/* The held storage completes: durable messages go, persisted is told. */
static void node_flush(struct net *n, uint64_t id)
{
    struct node *nd = &n->nd[id];
    for (size_t k = 0; k < nd->n_held; k++) {
        q_push(n, &nd->held[k].m);
        free_qmsg(&nd->held[k]);
    }
    nd->n_held = 0;
    if (nd->has_held)
        raft_persisted(nd->r, nd->held_index, nd->held_term);
    nd->has_held = false;
    nd->hold = false;
}

static void deliver(struct net *n, struct qmsg *d)
{
    const struct raft_msg *m = &d->m;
    bool lost = m->to > NODES_MAX || !R(n, m->to) || n->cut[m->from][m->to] ||
                (n->filter && n->filter(n, m));
    if (lost) {
        /* The driver knows when a snapshot could not be streamed. */
        if (m->type == RAFT_MSG_SNAP && R(n, m->from))
            raft_report_snapshot(R(n, m->from), m->to, false);
        return;
    }
    if (m->type == RAFT_MSG_APP_RESP && m->reject)
        n->rejects_from[m->from]++;
    if (m->type == RAFT_MSG_APP)
        n->apps_to[m->to]++;
    raft_step(R(n, m->to), m);
    if (m->type == RAFT_MSG_SNAP && R(n, m->from))
        raft_report_snapshot(R(n, m->from), m->to, true);
}

/* One round: every node's ready, then every message queued so far. */
static bool net_round(struct net *n)
{
    for (uint64_t id = 1; id <= NODES_MAX; id++)
        node_ready(n, id);
    if (!n->nq)
        return false;
    size_t count = n->nq;
    struct qmsg *batch = n->q;
    n->q = NULL;
    n->nq = n->capq = 0;
    for (size_t i = 0; i < count; i++) {
        deliver(n, &batch[i]);
        free_qmsg(&batch[i]);
    }
    free(batch);
    return true;
}

static void net_stabilize(struct net *n)
{
    for (int i = 0; i < ROUNDS_MAX && net_round(n); i++)
        ;
    check_applied(n);
}

static void net_tick(struct net *n, int times)
{
    for (int t = 0; t < times; t++) {
        for (uint64_t id = 1; id <= NODES_MAX; id++)
            if (R(n, id))
                raft_tick(R(n, id));
        net_stabilize(n);
    }
}

static void isolate(struct net *n, uint64_t id, bool cut)
{
    for (int i = 0; i <= NODES_MAX; i++) {
        n->cut[id][i] = cut;
        n->cut[i][id] = cut;
    }
}

static void elect(struct net *n, uint64_t id)
{
    raft_campaign(R(n, id));
    net_stabilize(n);
    assert_int_equal(raft_role(R(n, id)), RAFT_LEADER);
}

static void propose(struct net *n, uint64_t id, const char *s)
{
    assert_int_equal(raft_propose(R(n, id), s, strlen(s)), 0);
}

static int count_leaders(struct net *n)
{
    int c = 0;
    for (uint64_t id = 1; id <= NODES_MAX; id++)
        if (R(n, id) && raft_role(R(n, id)) == RAFT_LEADER)
            c++;
    return c;
}

static uint64_t applied_last(struct net *n, uint64_t id)
{
    struct node *nd = &n->nd[id];
    return nd->n_ap ? nd->ap[nd->n_ap - 1].index : 0;
}

static bool applied_has(struct net *n, uint64_t id, const char *text)
{
    struct node *nd = &n->nd[id];
    for (size_t i = 0; i < nd->n_ap; i++)
        if (nd->ap[i].type == RAFT_ENTRY_NORMAL && strcmp(nd->ap[i].text, text) == 0)
            return true;
    return false;
}

/* A node booted from a hand-made log: (term) of entries 1..count. */
static struct raft *node_with_log(struct net *n, uint64_t id, uint32_t voters_n, uint64_t hs_term,
                                  const uint64_t *terms, uint32_t count)
{
    struct raft_boot boot;
    memset(&boot, 0, sizeof(boot));
    boot.hs.term = hs_term;
    boot.snap.conf = voters(voters_n);
    raft_free(R(n, id));
    struct raft *r = node_new(n, id, &boot);
    for (uint32_t i = 0; i < count; i++) {
        struct raft_entry e = {.term = terms[i], .index = i + 1, .type = RAFT_ENTRY_NORMAL};
        assert_int_equal(raft_load(r, &e), 0);
    }
    return r;
}

static struct raft_msg msg(uint8_t type, uint64_t from, uint64_t to, uint64_t term)
{
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    m.from = from;
    m.to = to;
    m.term = term;
    return m;
}

static const struct raft_msg *find_msg(const struct raft_msg *v, uint32_t n, uint8_t type)
{
    for (uint32_t i = 0; i < n; i++)
        if (v[i].type == type)
            return &v[i];
    return NULL;
}

/* ---- elections ----------------------------------------------------------- */

/* Raft §5.2: a sole voter wins its own election at once. */
static void test_5_2_single_voter_campaign(void **state)
{
    (void)state;
    struct net *n = net_new(1, true, true);
    raft_campaign(R(n, 1));
    assert_int_equal(raft_role(R(n, 1)), RAFT_LEADER);
    assert_int_equal(raft_term(R(n, 1)), 1);
    propose(n, 1, "solo");
    net_stabilize(n);
    assert_true(applied_has(n, 1, "solo"));
    assert_int_equal(raft_commit_index(R(n, 1)), 2);
    net_free(n);
}

/* Raft §5.2: a follower that hears no leader for an election timeout
 * becomes a candidate, collects votes from a majority, leads. */
static void test_5_2_election_timeout(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    int t = 0;
    while (raft_role(R(n, 1)) == RAFT_FOLLOWER && t++ < 20)
        raft_tick(R(n, 1));
    assert_true(t >= 10 && t < 20); /* timeout in [10, 20) */
    assert_int_equal(raft_role(R(n, 1)), RAFT_CANDIDATE);
    assert_int_equal(raft_term(R(n, 1)), 1);
    net_stabilize(n);
    assert_int_equal(raft_role(R(n, 1)), RAFT_LEADER);
    assert_int_equal(raft_leader(R(n, 2)), 1);
    assert_int_equal(raft_leader(R(n, 3)), 1);
    net_free(n);
}

/* Raft §5.2: a split vote elects nobody; the candidates time out again
 * with new random timeouts and one of them wins a later term. */
static void test_5_2_split_vote_retries(void **state)
{
    (void)state;
    struct net *n = net_new(4, false, false);
    n->cut[1][4] = n->cut[4][1] = true;
    n->cut[2][3] = n->cut[3][2] = true;
    raft_campaign(R(n, 1));
    raft_campaign(R(n, 2));
    net_stabilize(n);
    assert_int_equal(count_leaders(n), 0);
    assert_int_equal(raft_role(R(n, 1)), RAFT_CANDIDATE);
    assert_int_equal(raft_role(R(n, 2)), RAFT_CANDIDATE);
    memset(n->cut, 0, sizeof(n->cut));
    for (int i = 0; i < 200 && count_leaders(n) == 0; i++)
        net_tick(n, 1);
    assert_int_equal(count_leaders(n), 1);
    for (uint64_t id = 1; id <= 4; id++)
        assert_true(raft_term(R(n, id)) >= 2);
    net_free(n);
}

/* Raft §5.2: at most one vote per term, first come first served, and it
 * is in the hard state before the answer may leave (msgs_durable). */
static void test_5_2_vote_once_per_term(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    struct raft *r = R(n, 1);
    struct raft_msg v = msg(RAFT_MSG_VOTE, 2, 1, 1);
    raft_step(r, &v);
    struct raft_ready rd;
    assert_true(raft_ready(r, &rd));
    assert_true(rd.hs_changed);
    assert_int_equal(rd.hs.term, 1);
    assert_int_equal(rd.hs.vote, 2);
    const struct raft_msg *g = find_msg(rd.msgs_durable, rd.n_msgs_durable, RAFT_MSG_VOTE_RESP);
    assert_non_null(g);
    assert_false(g->reject);
    assert_null(find_msg(rd.msgs, rd.n_msgs, RAFT_MSG_VOTE_RESP));
    raft_advance(r);
    v.from = 3;
    raft_step(r, &v);
    assert_true(raft_ready(r, &rd));
    const struct raft_msg *x = find_msg(rd.msgs, rd.n_msgs, RAFT_MSG_VOTE_RESP);
    assert_non_null(x);
    assert_true(x->reject);
    assert_int_equal(x->to, 3);
    raft_advance(r);
    net_free(n);
}

/* Raft §5.4.1: votes only for a candidate whose log is at least as up to
 * date: later last term, or same last term and at least as long. */
static void test_5_4_1_log_up_to_date(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    const uint64_t terms[] = {1, 2, 2};
    struct raft *r = node_with_log(n, 1, 3, 2, terms, 3);
    struct raft_ready rd;
    struct raft_msg v = msg(RAFT_MSG_VOTE, 2, 1, 3);
    v.index = 10;
    v.log_term = 1; /* longer but older */
    raft_step(r, &v);
    v.from = 3;
    v.index = 2;
    v.log_term = 2; /* same term, shorter */
    raft_step(r, &v);
    assert_true(raft_ready(r, &rd));
    assert_int_equal(rd.n_msgs_durable, 0);
    assert_int_equal(rd.n_msgs, 2);
    assert_true(rd.msgs[0].reject && rd.msgs[1].reject);
    raft_advance(r);
    v.index = 3; /* same term, same length */
    raft_step(r, &v);
    assert_true(raft_ready(r, &rd));
    assert_int_equal(rd.n_msgs_durable, 1);
    assert_false(rd.msgs_durable[0].reject);
    assert_int_equal(rd.hs.vote, 3);
    raft_advance(r);
    net_free(n);
}

/* Raft §5.1: a leader that sees a newer term steps down and adopts it. */
static void test_5_1_higher_term_steps_down(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    struct raft_msg m = msg(RAFT_MSG_HEARTBEAT_RESP, 2, 1, 5);
    raft_step(R(n, 1), &m);
    assert_int_equal(raft_role(R(n, 1)), RAFT_FOLLOWER);
    assert_int_equal(raft_term(R(n, 1)), 5);
    assert_int_equal(raft_leader(R(n, 1)), RAFT_NONE);
    net_free(n);
}

/* Raft §5.1 (etcd): stale-term messages are ignored, but a stale APP is
 * answered with the newer term and a stale PREVOTE with a reject, so a
 * partitioned member learns the term. */
static void test_5_1_stale_term_answered(void **state)
{
    (void)state;
    struct net *n = net_new(3, true, true);
    const uint64_t terms[] = {1};
    struct raft *r = node_with_log(n, 1, 3, 5, terms, 1);
    struct raft_msg a = msg(RAFT_MSG_APP, 2, 1, 3);
    raft_step(r, &a);
    struct raft_msg p = msg(RAFT_MSG_PREVOTE, 3, 1, 4);
    raft_step(r, &p);
    struct raft_msg h = msg(RAFT_MSG_HEARTBEAT_RESP, 3, 1, 2);
    raft_step(r, &h);
    struct raft_ready rd;
    assert_true(raft_ready(r, &rd));
    assert_int_equal(rd.n_msgs, 2);
    assert_int_equal(rd.msgs[0].type, RAFT_MSG_APP_RESP);
    assert_int_equal(rd.msgs[0].term, 5);
    assert_int_equal(rd.msgs[1].type, RAFT_MSG_PREVOTE_RESP);
    assert_true(rd.msgs[1].reject);
    assert_int_equal(rd.msgs[1].term, 5);
    raft_advance(r);
    assert_int_equal(raft_term(r), 5);
    net_free(n);
}

/* Thesis §9.6: a member cut off from the others pre-campaigns without
 * raising its term; once back it does not disturb the leader. */
static void test_9_6_prevote_no_disruption(void **state)
{
    (void)state;
    struct net *n = net_new(3, true, true);
    elect(n, 1);
    uint64_t term = raft_term(R(n, 1));
    isolate(n, 3, true);
    net_tick(n, 60);
    assert_int_equal(raft_term(R(n, 3)), term);
    assert_int_equal(raft_role(R(n, 1)), RAFT_LEADER);
    isolate(n, 3, false);
    net_tick(n, 5);
    assert_int_equal(raft_role(R(n, 1)), RAFT_LEADER);
    assert_int_equal(raft_term(R(n, 1)), term);
    assert_int_equal(raft_leader(R(n, 3)), 1);
    net_free(n);
}

/* Thesis §6.2 CheckQuorum: a leader that hears from no quorum within an
 * election timeout steps down. */
static void test_6_2_check_quorum_steps_down(void **state)
{
    (void)state;
    struct net *n = net_new(3, true, true);
    elect(n, 1);
    isolate(n, 1, true);
    for (int i = 0; i < 25; i++) {
        raft_tick(R(n, 1));
        node_ready(n, 1);
    }
    assert_int_equal(raft_role(R(n, 1)), RAFT_FOLLOWER);
    assert_int_equal(raft_leader(R(n, 1)), RAFT_NONE);
    net_free(n);
}

/* Thesis §6.2 leader stickiness: followers that hear from their leader
 * ignore a disruptive vote request of a higher term. */
static void test_6_2_vote_ignored_within_lease(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, true);
    elect(n, 1);
    struct raft_msg v = msg(RAFT_MSG_VOTE, 3, 2, 9);
    v.index = 100;
    v.log_term = 9;
    raft_step(R(n, 2), &v);
    assert_int_equal(raft_term(R(n, 2)), 1);
    assert_false(raft_has_ready(R(n, 2)));
    v.ctx = RAFT_CTX_TRANSFER; /* a transfer campaign passes */
    raft_step(R(n, 2), &v);
    assert_int_equal(raft_term(R(n, 2)), 9);
    net_free(n);
}

/* ---- replication --------------------------------------------------------- */

static struct raft_entry ent(uint64_t term, uint64_t index)
{
    struct raft_entry e = {.term = term, .index = index, .type = RAFT_ENTRY_NORMAL};
    return e;
}

/* Raft §5.3 log matching: a follower appends only after an entry that
 * matches (index, log_term); otherwise it rejects with a hint. */
static void test_5_3_log_matching(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    struct raft *r = R(n, 2);
    struct raft_entry es[2] = {ent(1, 1), ent(1, 2)};
    struct raft_msg a = msg(RAFT_MSG_APP, 1, 2, 1);
    a.entries = es;
    a.n_entries = 2;
    raft_step(r, &a);
    struct raft_ready rd;
    assert_true(raft_ready(r, &rd));
    assert_int_equal(rd.n_entries, 2);
    assert_int_equal(rd.n_msgs, 0);
    assert_int_equal(rd.n_msgs_durable, 1);
    assert_int_equal(rd.msgs_durable[0].type, RAFT_MSG_APP_RESP);
    assert_int_equal(rd.msgs_durable[0].index, 2);
    raft_advance(r);
    raft_persisted(r, 2, 1);
    struct raft_msg b = msg(RAFT_MSG_APP, 1, 2, 1);
    b.index = 5;
    b.log_term = 1;
    raft_step(r, &b);
    assert_true(raft_ready(r, &rd));
    assert_int_equal(rd.n_entries, 0);
    assert_int_equal(rd.n_msgs, 1);
    assert_true(rd.msgs[0].reject);
    assert_int_equal(rd.msgs[0].index, 5);
    assert_int_equal(rd.msgs[0].reject_hint, 2);
    assert_int_equal(rd.msgs[0].log_term, 1);
    raft_advance(r);
    net_free(n);
}

/* Raft §5.3: a conflicting entry and all after it are replaced by the
 * leader's; the ready hands out the new suffix from the conflict on. */
static void test_5_3_conflict_truncation(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    const uint64_t terms[] = {1, 1, 1};
    struct raft *r = node_with_log(n, 2, 3, 1, terms, 3);
    struct raft_entry es[2] = {ent(2, 2), ent(2, 3)};
    struct raft_msg a = msg(RAFT_MSG_APP, 3, 2, 2);
    a.index = 1;
    a.log_term = 1;
    a.commit = 1;
    a.entries = es;
    a.n_entries = 2;
    raft_step(r, &a);
    struct raft_ready rd;
    assert_true(raft_ready(r, &rd));
    assert_int_equal(rd.n_entries, 2);
    assert_int_equal(rd.entries[0].index, 2);
    assert_int_equal(rd.entries[0].term, 2);
    assert_int_equal(rd.hs.commit, 1);
    raft_advance(r);
    raft_persisted(r, 3, 2);
    assert_int_equal(raft_last_index(r), 3);
    /* A stale write report of the replaced entry counts for nothing. */
    raft_persisted(r, 3, 1);
    net_free(n);
}

static bool drop_app_beyond_2(struct net *n, const struct raft_msg *m)
{
    return m->type == RAFT_MSG_APP && m->to == 2 && m->index >= 2 && raft_last_index(R(n, 2)) >= 2;
}

/* Raft §5.4.2 (figure 8): a leader does not commit an entry of an older
 * term by counting replicas, even on a majority; it commits it with the
 * first entry of its own term. */
static void test_5_4_2_commit_only_current_term(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    n->max_msg_bytes = 50;
    const uint64_t t1[] = {1}, t12[] = {1, 2};
    node_with_log(n, 2, 3, 2, t1, 1);
    node_with_log(n, 3, 3, 2, t1, 1);
    struct raft *r1 = node_with_log(n, 1, 3, 2, t12, 1);
    char big[100];
    memset(big, 'x', sizeof(big));
    struct raft_entry e2 = {.term = 2, .index = 2, .len = sizeof(big), .data = (uint8_t *)big};
    assert_int_equal(raft_load(r1, &e2), 0);
    isolate(n, 3, true);
    n->filter = drop_app_beyond_2;
    elect(n, 1);
    assert_int_equal(raft_term(r1), 3);
    struct raft_progress_info pi;
    assert_int_equal(raft_progress(r1, 2, &pi), 0);
    assert_int_equal(pi.match, 2); /* index 2 (term 2) is on a majority */
    assert_int_equal(raft_commit_index(r1), 0);
    n->filter = NULL;
    net_tick(n, 2);
    assert_int_equal(raft_commit_index(r1), 3);
    assert_int_equal(applied_last(n, 1), 3);
    assert_int_equal(n->nd[1].ap[1].term, 2);
    net_free(n);
}

/* Raft §5.3 pipelined (etcd flow control): in replicate state at most
 * max_inflight APPs are unanswered, each at most max_msg_bytes (but at
 * least one entry). */
static void test_5_3_pipeline_window(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    n->max_inflight = 2;
    n->max_msg_bytes = 150;
    raft_free(R(n, 1));
    struct raft_boot boot;
    memset(&boot, 0, sizeof(boot));
    boot.snap.conf = voters(3);
    node_new(n, 1, &boot);
    elect(n, 1);
    struct raft_progress_info pi;
    assert_int_equal(raft_progress(R(n, 1), 2, &pi), 0);
    assert_int_equal(pi.state, RAFT_PROGRESS_REPLICATE);
    char big[100];
    memset(big, 'y', sizeof(big));
    for (int i = 0; i < 5; i++)
        assert_int_equal(raft_propose(R(n, 1), big, sizeof(big)), 0);
    node_ready(n, 1);
    assert_int_equal(q_count(n, RAFT_MSG_APP, 2, true), 2);
    for (size_t i = 0; i < n->nq; i++)
        if (n->q[i].m.type == RAFT_MSG_APP)
            assert_int_equal(n->q[i].m.n_entries, 1);
    propose(n, 1, "more");
    node_ready(n, 1);
    assert_int_equal(q_count(n, RAFT_MSG_APP, 2, true), 2);
    net_stabilize(n);
    assert_int_equal(applied_last(n, 2), raft_last_index(R(n, 1)));
    net_free(n);
}

/* Raft §5.3 optimisation: a rejecting follower's hint (index, term) lets
 * the leader skip a whole divergent term in one step instead of one entry
 * per round trip. */
static void test_5_3_fast_backtracking(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    uint64_t t_leader[55], t_follower[55];
    for (int i = 0; i < 55; i++) {
        t_leader[i] = i < 5 ? 1 : 3;
        t_follower[i] = i < 5 ? 1 : 2;
    }
    node_with_log(n, 1, 3, 3, t_leader, 55);
    node_with_log(n, 2, 3, 2, t_follower, 55);
    node_with_log(n, 3, 3, 3, t_leader, 5);
    elect(n, 1);
    assert_true(n->rejects_from[2] <= 2);
    assert_int_equal(applied_last(n, 2), 56);
    assert_int_equal(n->nd[2].ap[29].term, 3);
    net_free(n);
}

/* ---- asynchronous storage (thesis §10.2.1) ------------------------------ */

/* The leader's own write counts like a follower's, only once persisted;
 * and nothing is applied locally before it is durable locally. */
static void test_10_2_1_leader_own_persist(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    uint64_t c0 = raft_commit_index(R(n, 1));
    isolate(n, 3, true);
    n->nd[1].hold = true;
    propose(n, 1, "a");
    net_stabilize(n);
    assert_int_equal(raft_last_index(R(n, 2)), c0 + 1);
    assert_int_equal(raft_commit_index(R(n, 1)), c0); /* its vote is needed */
    node_flush(n, 1);
    net_stabilize(n);
    assert_int_equal(raft_commit_index(R(n, 1)), c0 + 1);
    assert_true(applied_has(n, 1, "a"));
    /* With three up, two followers commit it, but the leader applies it
     * only once it is durable there too. */
    isolate(n, 3, false);
    n->nd[1].hold = true;
    propose(n, 1, "b");
    net_stabilize(n);
    assert_int_equal(raft_commit_index(R(n, 1)), c0 + 2);
    assert_false(applied_has(n, 1, "b"));
    assert_int_equal(raft_applied_index(R(n, 1)), c0 + 1);
    node_flush(n, 1);
    net_stabilize(n);
    assert_true(applied_has(n, 1, "b"));
    net_free(n);
}

/* A follower's accepting APP_RESP waits for its write (msgs_durable), and
 * it does not apply what it has not made durable. */
static void test_10_2_1_follower_ack_durable(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    uint64_t c0 = raft_commit_index(R(n, 1));
    n->nd[2].hold = true;
    propose(n, 1, "c");
    net_stabilize(n);
    assert_true(n->nd[2].n_held > 0);
    assert_int_equal(n->nd[2].held[0].m.type, RAFT_MSG_APP_RESP);
    assert_int_equal(raft_commit_index(R(n, 1)), c0 + 1); /* by 1 and 3 */
    net_tick(n, 1);                                       /* 2 learns the commit */
    assert_int_equal(raft_commit_index(R(n, 2)), c0 + 1);
    assert_false(applied_has(n, 2, "c"));
    node_flush(n, 2);
    net_stabilize(n);
    assert_true(applied_has(n, 2, "c"));
    net_free(n);
}

/* ---- ReadIndex (thesis §6.4) -------------------------------------------- */

/* The leader answers a read once a quorum acknowledged a heartbeat round
 * sent after the read arrived, with the commit index of that moment. */
static void test_6_4_read_index_leader(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    assert_int_equal(raft_read_index(R(n, 1), 7), 0);
    assert_int_equal(n->nd[1].n_reads, 0);
    node_ready(n, 1);
    assert_int_equal(n->nd[1].n_reads, 0);
    assert_int_equal(q_count(n, RAFT_MSG_HEARTBEAT, 0, false), 2);
    net_stabilize(n);
    assert_int_equal(n->nd[1].n_reads, 1);
    assert_int_equal(n->nd[1].reads[0].ctx, 7);
    assert_int_equal(n->nd[1].reads[0].index, raft_commit_index(R(n, 1)));
    assert_int_equal(raft_read_index(R(n, 1), 0), RAFT_ERR_INVALID);
    net_free(n);
}

/* Thesis §6.4: a read on a follower goes to the leader, which runs the
 * round and answers with the index the follower must apply to. */
static void test_6_4_read_index_follower(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    assert_int_equal(raft_read_index(R(n, 2), 9), RAFT_ERR_NO_LEADER);
    elect(n, 1);
    propose(n, 1, "r");
    net_stabilize(n);
    assert_int_equal(raft_read_index(R(n, 2), 9), 0);
    net_stabilize(n);
    assert_int_equal(n->nd[2].n_reads, 1);
    assert_int_equal(n->nd[2].reads[0].ctx, 9);
    assert_int_equal(n->nd[2].reads[0].index, raft_commit_index(R(n, 1)));
    assert_int_equal(n->nd[1].n_reads, 0);
    net_free(n);
}

static bool drop_apps(struct net *n, const struct raft_msg *m)
{
    (void)n;
    return m->type == RAFT_MSG_APP;
}

/* Thesis §6.4: a new leader does not know the commit index until it has
 * committed an entry of its term; reads wait for that. */
static void test_6_4_read_waits_current_term_commit(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    n->filter = drop_apps;
    elect(n, 2);
    assert_int_equal(raft_read_index(R(n, 2), 5), 0);
    net_stabilize(n);
    net_tick(n, 1);
    assert_int_equal(n->nd[2].n_reads, 0);
    n->filter = NULL;
    net_tick(n, 1);
    assert_int_equal(n->nd[2].n_reads, 1);
    assert_int_equal(n->nd[2].reads[0].index, raft_commit_index(R(n, 2)));
    assert_int_equal(raft_commit_index(R(n, 2)), 2);
    net_free(n);
}

/* ---- proposals ----------------------------------------------------------- */

/* Proposals on a follower go to the leader, all of a loop turn in one
 * PROP; without a leader they are refused. */
static void test_proposals_forwarded(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    assert_int_equal(raft_propose(R(n, 2), "x", 1), RAFT_ERR_NO_LEADER);
    elect(n, 1);
    propose(n, 2, "p1");
    propose(n, 2, "p2");
    propose(n, 2, "p3");
    node_ready(n, 2);
    assert_int_equal(q_count(n, RAFT_MSG_PROP, 1, true), 1);
    assert_int_equal(n->q[0].m.n_entries, 3);
    assert_int_equal(n->q[0].m.term, 0);
    net_stabilize(n);
    for (uint64_t id = 1; id <= 3; id++) {
        assert_true(applied_has(n, id, "p1"));
        assert_true(applied_has(n, id, "p3"));
    }
    net_free(n);
}

/* ---- leadership transfer (thesis §3.10) ---------------------------------- */

static void test_3_10_transfer_leadership(void **state)
{
    (void)state;
    struct net *n = net_new(3, true, true);
    elect(n, 1);
    uint64_t term = raft_term(R(n, 1));
    assert_int_equal(raft_transfer_leader(R(n, 1), 1), RAFT_ERR_INVALID);
    assert_int_equal(raft_transfer_leader(R(n, 1), 7), RAFT_ERR_UNKNOWN_MEMBER);
    assert_int_equal(raft_transfer_leader(R(n, 1), 2), 0);
    assert_int_equal(raft_propose(R(n, 1), "z", 1), RAFT_ERR_TRANSFERRING);
    net_stabilize(n);
    assert_int_equal(raft_role(R(n, 2)), RAFT_LEADER);
    assert_int_equal(raft_term(R(n, 2)), term + 1);
    assert_int_equal(raft_leader(R(n, 1)), 2);
    /* Asked on a follower, for itself: forwarded to the leader. */
    assert_int_equal(raft_transfer_leader(R(n, 3), 3), 0);
    net_stabilize(n);
    assert_int_equal(raft_role(R(n, 3)), RAFT_LEADER);
    assert_int_equal(count_leaders(n), 1);
    net_free(n);
}

/* Thesis §3.10: a transfer that does not complete within an election
 * timeout is given up and proposals flow again. */
static void test_3_10_transfer_aborts(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, true);
    elect(n, 1);
    isolate(n, 2, true);
    assert_int_equal(raft_transfer_leader(R(n, 1), 2), 0);
    net_tick(n, 5);
    assert_int_equal(raft_propose(R(n, 1), "z", 1), RAFT_ERR_TRANSFERRING);
    net_tick(n, 6);
    assert_int_equal(raft_role(R(n, 1)), RAFT_LEADER);
    propose(n, 1, "after");
    net_stabilize(n);
    assert_true(applied_has(n, 3, "after"));
    net_free(n);
}

/* ---- membership (thesis §4.1, one server at a time) ---------------------- */

/* A member joining a running cluster boots with the membership it was
 * told (the others), itself not in it yet. */
static struct raft *joiner(struct net *n, uint64_t id)
{
    struct raft_boot boot;
    memset(&boot, 0, sizeof(boot));
    boot.snap.conf = voters(3);
    return node_new(n, id, &boot);
}

/* A membership change made on a follower goes to the leader, which
 * checks it and appends it; a second one while it is pending is dropped
 * by the leader. */
static void test_4_1_forwarded_change(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    joiner(n, 4);
    assert_int_equal(raft_propose_conf(R(n, 2), RAFT_CONF_ADD_LEARNER, 4, "n4", 2), 0);
    assert_int_equal(raft_propose_conf(R(n, 3), RAFT_CONF_REMOVE, 2, NULL, 0), 0);
    net_stabilize(n);
    for (uint64_t id = 1; id <= 4; id++)
        assert_true(raft_is_learner(raft_conf(R(n, id)), 4));
    /* Only one change went in: member 2 is still a voter. */
    assert_true(raft_is_voter(raft_conf(R(n, 1)), 2));
    net_free(n);
}

/* Thesis §4.2.1: a new member joins as a learner (it gets the log but does
 * not count), then is promoted; one change at a time. */
static void test_4_1_add_learner_then_promote(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    joiner(n, 4);
    struct raft *r1 = R(n, 1);
    assert_int_equal(raft_propose_conf(R(n, 2), RAFT_CONF_ADD_LEARNER, 3, NULL, 0),
                     RAFT_ERR_MEMBER_EXISTS);
    assert_int_equal(raft_propose_conf(r1, RAFT_CONF_ADD_LEARNER, 2, NULL, 0),
                     RAFT_ERR_MEMBER_EXISTS);
    assert_int_equal(raft_propose_conf(r1, RAFT_CONF_ADD_LEARNER, 4, "n4", 2), 0);
    assert_int_equal(raft_propose_conf(r1, RAFT_CONF_REMOVE, 3, NULL, 0), RAFT_ERR_CONF_PENDING);
    net_stabilize(n);
    assert_true(raft_is_learner(raft_conf(r1), 4));
    assert_true(raft_is_learner(raft_conf(R(n, 2)), 4));
    assert_true(raft_is_learner(raft_conf(R(n, 4)), 4));
    assert_int_equal(applied_last(n, 4), raft_commit_index(r1));
    /* The learner's copy does not make a quorum. */
    isolate(n, 2, true);
    isolate(n, 3, true);
    uint64_t c0 = raft_commit_index(r1);
    propose(n, 1, "nq");
    net_stabilize(n);
    assert_int_equal(raft_last_index(R(n, 4)), c0 + 1);
    assert_int_equal(raft_commit_index(r1), c0);
    isolate(n, 2, false);
    isolate(n, 3, false);
    net_tick(n, 1);
    assert_int_equal(raft_commit_index(r1), c0 + 1);
    assert_int_equal(raft_propose_conf(r1, RAFT_CONF_PROMOTE, 2, NULL, 0), RAFT_ERR_NOT_LEARNER);
    assert_int_equal(raft_propose_conf(r1, RAFT_CONF_PROMOTE, 5, NULL, 0), RAFT_ERR_UNKNOWN_MEMBER);
    assert_int_equal(raft_propose_conf(r1, RAFT_CONF_PROMOTE, 4, NULL, 0), 0);
    net_stabilize(n);
    assert_true(raft_is_voter(raft_conf(r1), 4));
    assert_true(raft_is_voter(raft_conf(R(n, 4)), 4));
    assert_int_equal(raft_conf(r1)->n_voters, 4);
    net_free(n);
}

/* Thesis §4.1: a removed voter stops counting and stops receiving as soon
 * as the change is applied. */
static void test_4_1_remove_member(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    struct raft *r1 = R(n, 1);
    assert_int_equal(raft_propose_conf(r1, RAFT_CONF_REMOVE, 9, NULL, 0), RAFT_ERR_UNKNOWN_MEMBER);
    assert_int_equal(raft_propose_conf(r1, RAFT_CONF_REMOVE, 3, NULL, 0), 0);
    net_stabilize(n);
    assert_false(raft_is_voter(raft_conf(r1), 3));
    assert_int_equal(raft_conf(r1)->n_voters, 2);
    struct raft_progress_info pi;
    assert_int_equal(raft_progress(r1, 3, &pi), RAFT_ERR_UNKNOWN_MEMBER);
    size_t apps = n->apps_to[3];
    propose(n, 1, "two");
    net_tick(n, 3);
    assert_int_equal(n->apps_to[3], apps);
    assert_true(applied_has(n, 2, "two"));
    /* Two voters: both are needed now. */
    isolate(n, 2, true);
    uint64_t c0 = raft_commit_index(r1);
    propose(n, 1, "alone");
    net_stabilize(n);
    assert_int_equal(raft_commit_index(r1), c0);
    net_free(n);
}

/* Thesis §4.1: "servers process incoming RPC requests without consulting
 * their current configurations". A member that has not applied the
 * addition of voter 4 yet still answers 4's pre-vote and vote requests;
 * were they dropped, members that count 4 (and a removed member gone for
 * good) could leave no one able to win (found by the simulator, seed
 * 11043). */
static void test_4_1_vote_from_unknown_candidate(void **state)
{
    (void)state;
    struct net *n = net_new(3, true, false);
    struct raft *r = R(n, 1);
    struct raft_ready rd;
    struct raft_msg v = msg(RAFT_MSG_PREVOTE, 4, 1, 1);
    raft_step(r, &v);
    assert_true(raft_ready(r, &rd));
    const struct raft_msg *p = find_msg(rd.msgs, rd.n_msgs, RAFT_MSG_PREVOTE_RESP);
    assert_non_null(p);
    assert_false(p->reject);
    assert_int_equal(p->to, 4);
    raft_advance(r);
    v = msg(RAFT_MSG_VOTE, 4, 1, 1);
    raft_step(r, &v);
    assert_true(raft_ready(r, &rd));
    const struct raft_msg *g = find_msg(rd.msgs_durable, rd.n_msgs_durable, RAFT_MSG_VOTE_RESP);
    assert_non_null(g);
    assert_false(g->reject);
    assert_int_equal(rd.hs.vote, 4);
    raft_advance(r);
    /* Other messages from a member it does not know are still dropped,
     * even of a newer term. */
    struct raft_msg a = msg(RAFT_MSG_APP_RESP, 4, 1, 5);
    raft_step(r, &a);
    assert_false(raft_has_ready(r));
    net_free(n);
}

/* Thesis §4.2.2: a leader that removes itself steps down once the change
 * is applied; it no longer takes proposals nor campaigns, and the others
 * go on without it. */
static void test_4_2_2_leader_removes_itself(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    assert_int_equal(raft_propose_conf(R(n, 1), RAFT_CONF_REMOVE, 1, NULL, 0), 0);
    net_stabilize(n);
    assert_int_equal(raft_role(R(n, 1)), RAFT_FOLLOWER);
    assert_int_equal(raft_leader(R(n, 1)), RAFT_NONE);
    assert_int_equal(raft_propose(R(n, 1), "x", 1), RAFT_ERR_REMOVED);
    for (int i = 0; i < 100 && count_leaders(n) == 0; i++)
        net_tick(n, 1);
    assert_int_equal(count_leaders(n), 1);
    assert_int_not_equal(raft_role(R(n, 1)), RAFT_LEADER);
    uint64_t lead = raft_leader(R(n, 2));
    assert_true(lead == 2 || lead == 3);
    assert_false(raft_is_voter(raft_conf(R(n, lead)), 1));
    propose(n, lead, "without1");
    net_stabilize(n);
    assert_true(applied_has(n, 2, "without1"));
    assert_true(applied_has(n, 3, "without1"));
    net_tick(n, 40);
    assert_int_not_equal(raft_role(R(n, 1)), RAFT_CANDIDATE);
    net_free(n);
}

/* Thesis §4.1 (etcd pendingConfIndex): a new leader treats a conf entry
 * still unapplied in its log as pending. */
static void test_4_1_new_leader_pending_conf(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    const uint64_t t1[] = {1};
    node_with_log(n, 2, 3, 1, t1, 1);
    node_with_log(n, 3, 3, 1, t1, 1);
    struct raft *r1 = node_with_log(n, 1, 3, 1, t1, 1);
    uint8_t buf[64];
    struct raft_conf_change cc = {.op = RAFT_CONF_ADD_LEARNER, .id = 5};
    size_t len = raft_conf_encode(&cc, buf, sizeof(buf));
    assert_int_equal(len, 16);
    struct raft_entry e = {
        .term = 1, .index = 2, .type = RAFT_ENTRY_CONF, .len = (uint32_t)len, .data = buf};
    assert_int_equal(raft_load(r1, &e), 0);
    raft_campaign(r1);
    for (int i = 0; i < 4 && raft_role(r1) != RAFT_LEADER; i++)
        net_round(n);
    assert_int_equal(raft_role(r1), RAFT_LEADER);
    assert_int_equal(raft_propose_conf(r1, RAFT_CONF_ADD_LEARNER, 4, NULL, 0),
                     RAFT_ERR_CONF_PENDING);
    net_stabilize(n);
    assert_true(raft_is_learner(raft_conf(r1), 5));
    assert_int_equal(raft_propose_conf(r1, RAFT_CONF_ADD_LEARNER, 4, NULL, 0), 0);
    net_free(n);
}

/* ---- snapshots (thesis §5) ------------------------------------------------ */

/* A follower whose next entry was compacted away gets the snapshot,
 * installs it and catches up from there. */
static void test_5_snapshot_to_lagging_follower(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    struct raft *r1 = R(n, 1);
    isolate(n, 3, true);
    for (int i = 0; i < 5; i++)
        propose(n, 1, "s");
    net_stabilize(n);
    uint64_t applied = raft_applied_index(r1);
    assert_int_equal(applied, 6);
    struct raft_snap_meta meta = {.index = applied, .term = 1, .conf = *raft_conf(r1)};
    raft_snapshot_taken(r1, &meta);
    raft_compact(r1, applied);
    assert_int_equal(raft_first_index(r1), applied + 1);
    isolate(n, 3, false);
    propose(n, 1, "after-snap");
    net_tick(n, 2);
    struct node *n3 = &n->nd[3];
    assert_true(n3->got_snap);
    assert_int_equal(n3->snap.index, applied);
    assert_true(raft_commit_index(R(n, 3)) >= applied);
    assert_int_equal(raft_last_index(R(n, 3)), raft_last_index(r1));
    assert_true(applied_has(n, 3, "after-snap"));
    struct raft_progress_info pi;
    assert_int_equal(raft_progress(r1, 3, &pi), 0);
    assert_int_equal(pi.state, RAFT_PROGRESS_REPLICATE);
    assert_int_equal(pi.match, raft_last_index(r1));
    net_free(n);
}

/* A SNAP that is not ahead of the follower's commit is answered with the
 * commit index and not installed. */
static void test_5_snapshot_stale_not_installed(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    elect(n, 1);
    propose(n, 1, "k");
    net_stabilize(n);
    struct raft *r2 = R(n, 2);
    struct raft_msg s = msg(RAFT_MSG_SNAP, 1, 2, raft_term(r2));
    s.snap.index = 1;
    s.snap.term = 1;
    s.snap.conf = voters(3);
    raft_step(r2, &s);
    struct raft_ready rd;
    assert_true(raft_ready(r2, &rd));
    assert_false(rd.has_snap);
    assert_int_equal(rd.n_msgs_durable, 1);
    assert_int_equal(rd.msgs_durable[0].index, raft_commit_index(r2));
    raft_advance(r2);
    net_free(n);
}

/* ---- boot and hard state ------------------------------------------------- */

/* raft_load: the WAL replays a replaced suffix as written; after boot the
 * entries (snap.index, hs.commit] come out again for apply. */
static void test_boot_load_replaces_suffix(void **state)
{
    (void)state;
    struct raft_config cfg = {.id = 1,
                              .election_ticks = 10,
                              .heartbeat_ticks = 1,
                              .seed = 1,
                              .max_inflight = 4,
                              .max_msg_bytes = 1024,
                              .max_apply_bytes = 1024};
    struct raft_boot boot;
    memset(&boot, 0, sizeof(boot));
    boot.snap.index = 10;
    boot.snap.term = 1;
    boot.snap.conf = voters(3);
    boot.hs.term = 2;
    boot.hs.commit = 12;
    struct raft *r = raft_new(&cfg, &boot);
    assert_non_null(r);
    struct raft_entry e = ent(1, 9);
    assert_int_equal(raft_load(r, &e), RAFT_ERR_INVALID);
    e = ent(1, 12);
    assert_int_equal(raft_load(r, &e), RAFT_ERR_INVALID);
    for (uint64_t i = 11; i <= 13; i++) {
        e = ent(1, i);
        assert_int_equal(raft_load(r, &e), 0);
    }
    e = ent(2, 12);
    assert_int_equal(raft_load(r, &e), 0);
    assert_int_equal(raft_last_index(r), 12);
    assert_int_equal(raft_first_index(r), 11);
    struct raft_ready rd;
    assert_true(raft_ready(r, &rd));
    assert_int_equal(rd.n_entries, 0);
    assert_false(rd.hs_changed);
    assert_int_equal(rd.n_committed, 2);
    assert_int_equal(rd.committed[0].index, 11);
    assert_int_equal(rd.committed[1].term, 2);
    raft_advance(r);
    assert_int_equal(raft_applied_index(r), 12);
    assert_false(raft_has_ready(r));
    raft_free(r);
}

/* Raft §5 figure 2: the hard state comes out whenever term, vote or
 * commit changed, and only then. */
static void test_5_hard_state_changes(void **state)
{
    (void)state;
    struct net *n = net_new(3, false, false);
    struct raft *r = R(n, 2);
    struct raft_ready rd;
    assert_false(raft_has_ready(r));
    struct raft_msg h = msg(RAFT_MSG_HEARTBEAT, 1, 2, 1);
    raft_step(r, &h); /* term 0 -> 1 */
    assert_true(raft_ready(r, &rd));
    assert_true(rd.hs_changed);
    assert_int_equal(rd.hs.term, 1);
    assert_int_equal(rd.leader, 1);
    raft_advance(r);
    raft_step(r, &h); /* same term, nothing new */
    assert_true(raft_ready(r, &rd));
    assert_false(rd.hs_changed);
    assert_int_equal(rd.n_msgs, 1);
    raft_advance(r);
    struct raft_entry es[1] = {ent(1, 1)};
    struct raft_msg a = msg(RAFT_MSG_APP, 1, 2, 1);
    a.entries = es;
    a.n_entries = 1;
    a.commit = 1;
    raft_step(r, &a);
    assert_true(raft_ready(r, &rd));
    assert_true(rd.hs_changed);
    assert_int_equal(rd.hs.commit, 1);
    assert_int_equal(rd.n_committed, 0); /* not durable here yet */
    raft_advance(r);
    raft_persisted(r, 1, 1);
    assert_true(raft_ready(r, &rd));
    assert_false(rd.hs_changed);
    assert_int_equal(rd.n_committed, 1);
    raft_advance(r);
    net_free(n);
}

static void test_conf_codec_and_errors(void **state)
{
    (void)state;
    uint8_t buf[32];
    struct raft_conf_change c = {.op = RAFT_CONF_PROMOTE,
                                 .id = 0x0102030405060708ull,
                                 .ctx = (const uint8_t *)"ab",
                                 .ctx_len = 2};
    assert_int_equal(raft_conf_encode(&c, buf, 17), 0);
    assert_int_equal(raft_conf_encode(&c, buf, sizeof(buf)), 18);
    assert_int_equal(buf[0], RAFT_CONF_PROMOTE);
    assert_int_equal(buf[8], 0x08);
    struct raft_conf_change d;
    assert_int_equal(raft_conf_decode(buf, 18, &d), 0);
    assert_int_equal(d.id, c.id);
    assert_int_equal(d.ctx_len, 2);
    assert_memory_equal(d.ctx, "ab", 2);
    assert_int_equal(raft_conf_decode(buf, 15, &d), RAFT_ERR_INVALID);
    buf[0] = 9;
    assert_int_equal(raft_conf_decode(buf, 18, &d), RAFT_ERR_INVALID);
    assert_string_equal(raft_strerror(RAFT_ERR_NO_LEADER), "no leader is known");
    assert_string_equal(raft_strerror(RAFT_ERR_INVALID), "invalid argument");
    assert_string_equal(raft_strerror(0), "success");
}

/* ---- randomized safety run ----------------------------------------------- */

/* More with -DFUZZ_SEEDS=300 -DFUZZ_STEPS=3000 (passes, ~20 s). */
#ifndef FUZZ_SEEDS
#define FUZZ_SEEDS 30
#endif
#ifndef FUZZ_STEPS
#define FUZZ_STEPS 1500
#endif

static uint64_t fuzz_state;

static uint64_t fuzz_next(void)
{
    fuzz_state ^= fuzz_state << 13;
    fuzz_state ^= fuzz_state >> 7;
    fuzz_state ^= fuzz_state << 17;
    return fuzz_state;
}

static bool drop_some(struct net *n, const struct raft_msg *m)
{
    (void)n;
    (void)m;
    return fuzz_next() % 10 == 0;
}

static uint64_t find_leader(struct net *n)
{
    for (uint64_t id = 1; id <= NODES_MAX; id++)
        if (R(n, id) && raft_role(R(n, id)) == RAFT_LEADER)
            return id;
    return 0;
}

static void fuzz_snapshot(struct net *n, uint64_t id)
{
    struct node *nd = &n->nd[id];
    if (!nd->n_ap)
        return;
    const struct applied *a = &nd->ap[nd->n_ap - 1];
    if (a->index != raft_applied_index(nd->r))
        return;
    struct raft_snap_meta meta = {.index = a->index, .term = a->term, .conf = *raft_conf(nd->r)};
    raft_snapshot_taken(nd->r, &meta);
    raft_compact(nd->r, a->index);
}

/* Node 5 goes round: learner, voter, removed, learner again... */
static void fuzz_conf(struct net *n)
{
    uint64_t l = find_leader(n);
    if (!l || l == 5)
        return;
    const struct raft_conf *c = raft_conf(R(n, l));
    if (raft_is_learner(c, 5))
        raft_propose_conf(R(n, l), RAFT_CONF_PROMOTE, 5, NULL, 0);
    else if (raft_is_voter(c, 5))
        raft_propose_conf(R(n, l), RAFT_CONF_REMOVE, 5, NULL, 0);
    else
        raft_propose_conf(R(n, l), RAFT_CONF_ADD_LEARNER, 5, NULL, 0);
}

static void fuzz_step(struct net *n, uint64_t x)
{
    uint64_t id = 1 + (x >> 8) % 5;
    switch (x % 8) {
    case 0:
    case 1:
    case 2:
        net_tick(n, 1);
        break;
    case 3: {
        uint64_t l = find_leader(n);
        if (l)
            raft_propose(R(n, l), "f", 1);
        break;
    }
    case 4: {
        uint64_t to = 1 + (x >> 16) % 5;
        n->cut[id][to] = !n->cut[id][to];
        break;
    }
    case 5:
        if (n->nd[id].hold)
            node_flush(n, id);
        else
            n->nd[id].hold = true;
        break;
    case 6:
        if ((x >> 20) % 4 == 0)
            fuzz_conf(n);
        else
            fuzz_snapshot(n, id);
        break;
    default:
        raft_propose(R(n, id), "g", 1);
        break;
    }
}

/* Raft §5.2 Election Safety and §5.4.3 State Machine Safety under random
 * partitions, message loss, stalled disks and compaction; then, healed,
 * the cluster converges (liveness). */
static void test_5_safety_random_runs(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= FUZZ_SEEDS; seed++) {
        struct net *n = net_new(5, seed % 2 == 0, seed % 3 != 0);
        fuzz_state = seed * 0x9e3779b97f4a7c15ull;
        run_seed = seed;
        n->filter = drop_some;
        for (int i = 0; i < FUZZ_STEPS; i++)
            fuzz_step(n, fuzz_next());
        n->filter = NULL;
        memset(n->cut, 0, sizeof(n->cut));
        for (uint64_t id = 1; id <= 5; id++)
            node_flush(n, id);
        for (int i = 0; i < 300 && !find_leader(n); i++)
            net_tick(n, 1);
        uint64_t l = find_leader(n);
        assert_true(l != 0);
        bool done = false;
        uint64_t proposed_term = 0;
        for (int t = 0; t < 300 && !done; t++) {
            /* An entry proposed to a leader that loses office may be lost. */
            if (l && raft_term(R(n, l)) != proposed_term && !applied_has(n, l, "end")) {
                propose(n, l, "end");
                proposed_term = raft_term(R(n, l));
            }
            net_tick(n, 1);
            l = find_leader(n);
            done = l != 0;
            done = done && applied_has(n, l, "end");
            for (uint64_t id = 1; done && id <= 5; id++)
                done = raft_applied_index(R(n, id)) == raft_commit_index(R(n, l)) ||
                       !raft_is_voter(raft_conf(R(n, l)), id);
        }
        if (!done)
            fail_msg("no convergence, seed %llu", (unsigned long long)seed);
        net_free(n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_5_2_single_voter_campaign),
        cmocka_unit_test(test_5_2_election_timeout),
        cmocka_unit_test(test_5_2_split_vote_retries),
        cmocka_unit_test(test_5_2_vote_once_per_term),
        cmocka_unit_test(test_5_4_1_log_up_to_date),
        cmocka_unit_test(test_5_1_higher_term_steps_down),
        cmocka_unit_test(test_5_1_stale_term_answered),
        cmocka_unit_test(test_9_6_prevote_no_disruption),
        cmocka_unit_test(test_6_2_check_quorum_steps_down),
        cmocka_unit_test(test_6_2_vote_ignored_within_lease),
        cmocka_unit_test(test_5_3_log_matching),
        cmocka_unit_test(test_5_3_conflict_truncation),
        cmocka_unit_test(test_5_4_2_commit_only_current_term),
        cmocka_unit_test(test_5_3_pipeline_window),
        cmocka_unit_test(test_5_3_fast_backtracking),
        cmocka_unit_test(test_10_2_1_leader_own_persist),
        cmocka_unit_test(test_10_2_1_follower_ack_durable),
        cmocka_unit_test(test_6_4_read_index_leader),
        cmocka_unit_test(test_6_4_read_index_follower),
        cmocka_unit_test(test_6_4_read_waits_current_term_commit),
        cmocka_unit_test(test_proposals_forwarded),
        cmocka_unit_test(test_3_10_transfer_leadership),
        cmocka_unit_test(test_3_10_transfer_aborts),
        cmocka_unit_test(test_4_1_forwarded_change),
        cmocka_unit_test(test_4_1_add_learner_then_promote),
        cmocka_unit_test(test_4_1_remove_member),
        cmocka_unit_test(test_4_1_vote_from_unknown_candidate),
        cmocka_unit_test(test_4_2_2_leader_removes_itself),
        cmocka_unit_test(test_4_1_new_leader_pending_conf),
        cmocka_unit_test(test_5_snapshot_to_lagging_follower),
        cmocka_unit_test(test_5_snapshot_stale_not_installed),
        cmocka_unit_test(test_boot_load_replaces_suffix),
        cmocka_unit_test(test_5_hard_state_changes),
        cmocka_unit_test(test_conf_codec_and_errors),
        cmocka_unit_test(test_5_safety_random_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
