/*
 * core_members.c — membership requests (MemberAdd, MemberRemove,
 * MemberPromote, MemberUpdate) and leadership transfer (MoveLeader),
 * carried out by the core with etcd's checks and answers.
 *
 * Add, remove and promote are Raft membership changes: Raft takes one at
 * a time, so requests queue here and the head one is proposed (again,
 * while Raft says a change is still pending or there is no leader) until
 * its change is applied (core_members_conf_applied: the answer then lists
 * the members after it) or its deadline passes ("etcdserver: request
 * timed out"). MemberUpdate only changes the peer URLs the roster keeps:
 * an ordinary entry, answered when applied. MoveLeader asks Raft to
 * transfer leadership and answers once the target leads.
 *
 * etcd's strict reconfiguration checks (--strict-reconfig-check, on by
 * default) are made with the roster's view of started members (a member
 * is started once it published its name);
 * etcd's extra check that the leader has recently heard from every peer
 * is not made.
 *
 * Thread: shard 0's (the core) only.
 */
#include "core_int.h"

#include "members.h"
#include "mvcc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONF_QUEUE_MAX 64u

/* etcd's answers (rpctypes), with their gRPC codes. */
#define E_MEMBER_EXIST   "etcdserver: member ID already exist"
#define E_PEER_URL_EXIST "etcdserver: Peer URLs already exists"
#define E_NOT_ENOUGH     "etcdserver: re-configuration failed due to not enough started members"
#define E_BAD_URLS       "etcdserver: given member URLs are invalid"
#define E_NOT_FOUND      "etcdserver: member not found"
#define E_NOT_LEARNER    "etcdserver: can only promote a learner member"
#define E_NOT_READY      "etcdserver: can only promote a learner member which is in sync with leader"
#define E_TOO_MANY_LRN   "etcdserver: too many learner members in cluster"
#define E_NOT_LEADER     "etcdserver: not leader"
#define E_BAD_TRANSFEREE "etcdserver: bad leader transferee"
#define E_XFER_TIMEOUT   "etcdserver: request timed out, leader transfer took too long"
#define E_TOO_MANY_MEMB  "cetcd: a cluster has at most 16 members"

/* Learners a cluster may have, as etcd (maxLearners). */
#define LEARNERS_MAX 1u
/* A learner may be promoted once its log reaches this share of the
 * leader's, as etcd (readyPercent). */
#define READY_PERCENT 90u

static unsigned quorum(unsigned voters)
{
    return voters / 2 + 1;
}

/* Parses and normalizes peer URLs; 0 or -1. */
static int parse_urls(char **in, size_t n, char out[][ROSTER_URL_BYTES], const char **ptrs)
{
    char err[256];

    if (n == 0 || n > ROSTER_URLS_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (members_url_parse(in[i], out[i], ROSTER_URL_BYTES, err, sizeof(err)) != 0)
            return -1;
        ptrs[i] = out[i];
    }
    return 0;
}

static void reply_body(struct core *c, struct shard_msg *m, uint8_t *body, size_t len)
{
    free(m->data);
    m->kind = SHARD_MSG_REPLY;
    m->data = body;
    m->len = len;
    m->code = body != NULL ? RPC_OK : RPC_RESOURCE_EXHAUSTED;
    m->message = body != NULL ? NULL : "etcdserver: out of memory";
    core_answer(c, m);
}

/* Remove, update and promote answer with the members after the change,
 * encoded as a MemberList answer (same fields, same numbers). */
static void reply_members(struct core *c, struct shard_msg *m)
{
    size_t len = 0;
    uint8_t *body =
        roster_member_list(&c->roster, c->env.member->cluster_id, c->id, raft_term(c->raft), &len);
    reply_body(c, m, body, len);
}

/* ---- the change being carried out ---- */

static void conf_done(struct core *c)
{
    free(c->conf_ctx);
    c->conf_ctx = NULL;
    c->conf_ctx_len = 0;
    c->conf_m = NULL;
    c->conf_proposed = false;
}

static void conf_fail(struct core *c, int code, const char *message)
{
    core_refuse(c, c->conf_m, code, message);
    conf_done(c);
}

/* MemberAdd: etcd's checks, then the new member's ID from its peer URLs,
 * the cluster token and the time (as etcd). 0, or -1 (answered). */
static int prepare_add(struct core *c, const uint8_t *p, size_t n)
{
    Etcdserverpb__MemberAddRequest *r = etcdserverpb__member_add_request__unpack(NULL, n, p);
    char urls[ROSTER_URLS_MAX][ROSTER_URL_BYTES];
    const char *ptrs[ROSTER_URLS_MAX];
    Etcdserverpb__Member pb = ETCDSERVERPB__MEMBER__INIT;
    int64_t now = (int64_t)time(NULL);

    if (r == NULL || parse_urls(r->peerurls, r->n_peerurls, urls, ptrs) != 0) {
        conf_fail(c, RPC_INVALID_ARGUMENT, E_BAD_URLS);
    } else if (roster_peer_url_used(&c->roster, ptrs, (unsigned)r->n_peerurls, 0)) {
        conf_fail(c, RPC_FAILED_PRECONDITION, E_PEER_URL_EXIST);
    } else if (r->islearner && roster_learners(&c->roster) >= LEARNERS_MAX) {
        conf_fail(c, RPC_FAILED_PRECONDITION, E_TOO_MANY_LRN);
    } else if (c->strict_reconfig && !r->islearner &&
               roster_started_voters(&c->roster, 0) < quorum(roster_voters(&c->roster) + 1)) {
        conf_fail(c, RPC_FAILED_PRECONDITION, E_NOT_ENOUGH);
    } else {
        c->conf_id = members_member_id(ptrs, (unsigned)r->n_peerurls, c->token, &now);
        c->conf_op = r->islearner ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_VOTER;
        if (roster_find(&c->roster, c->conf_id) != NULL) {
            conf_fail(c, RPC_FAILED_PRECONDITION, E_MEMBER_EXIST);
        } else {
            pb.id = c->conf_id;
            pb.peerurls = (char **)ptrs;
            pb.n_peerurls = r->n_peerurls;
            pb.islearner = r->islearner;
            c->conf_ctx_len = etcdserverpb__member__get_packed_size(&pb);
            c->conf_ctx = malloc(c->conf_ctx_len + 1);
            if (c->conf_ctx == NULL)
                conf_fail(c, RPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
            else
                etcdserverpb__member__pack(&pb, c->conf_ctx);
        }
    }
    if (r != NULL)
        etcdserverpb__member_add_request__free_unpacked(r, NULL);
    return c->conf_m != NULL ? 0 : -1;
}

static int prepare_remove(struct core *c, const uint8_t *p, size_t n)
{
    Etcdserverpb__MemberRemoveRequest *r = etcdserverpb__member_remove_request__unpack(NULL, n, p);
    struct roster_member *m = r != NULL ? roster_find(&c->roster, r->id) : NULL;

    if (m == NULL) {
        conf_fail(c, RPC_NOT_FOUND, E_NOT_FOUND);
    } else if (c->strict_reconfig && !m->learner &&
               roster_started_voters(&c->roster, m->id) < quorum(roster_voters(&c->roster) - 1)) {
        conf_fail(c, RPC_FAILED_PRECONDITION, E_NOT_ENOUGH);
    } else {
        c->conf_id = m->id;
        c->conf_op = RAFT_CONF_REMOVE;
    }
    if (r != NULL)
        etcdserverpb__member_remove_request__free_unpacked(r, NULL);
    return c->conf_m != NULL ? 0 : -1;
}

/* Only the leader knows how far a learner got; a follower passes the
 * request on through Raft without that check. */
static bool learner_ready(const struct core *c, uint64_t id)
{
    struct raft_progress_info pi;

    if (raft_role(c->raft) != RAFT_LEADER || raft_progress(c->raft, id, &pi) != 0)
        return true;
    return pi.match * 100 >= raft_last_index(c->raft) * READY_PERCENT;
}

static int prepare_promote(struct core *c, const uint8_t *p, size_t n)
{
    Etcdserverpb__MemberPromoteRequest *r =
        etcdserverpb__member_promote_request__unpack(NULL, n, p);
    struct roster_member *m = r != NULL ? roster_find(&c->roster, r->id) : NULL;

    if (m == NULL) {
        conf_fail(c, RPC_NOT_FOUND, E_NOT_FOUND);
    } else if (!m->learner) {
        conf_fail(c, RPC_FAILED_PRECONDITION, E_NOT_LEARNER);
    } else if (!learner_ready(c, m->id)) {
        conf_fail(c, RPC_FAILED_PRECONDITION, E_NOT_READY);
    } else {
        c->conf_id = m->id;
        c->conf_op = RAFT_CONF_PROMOTE;
    }
    if (r != NULL)
        etcdserverpb__member_promote_request__free_unpacked(r, NULL);
    return c->conf_m != NULL ? 0 : -1;
}

/* Takes the next queued request and checks it against the members now. */
static void conf_next(struct core *c)
{
    struct wait_vec *q = &c->conf_queue;
    struct shard_msg *m;
    int rv;

    while (c->conf_m == NULL && q->n > 0) {
        m = q->v[0];
        c->conf_deadline_ms = q->deadline_ms[0];
        memmove(q->v, q->v + 1, (q->n - 1) * sizeof(q->v[0]));
        memmove(q->deadline_ms, q->deadline_ms + 1, (q->n - 1) * sizeof(q->deadline_ms[0]));
        q->n--;
        c->conf_m = m;
        c->conf_proposed = false;
        if (m->data[0] == RPC_LOCAL_MEMBER_ADD)
            rv = prepare_add(c, m->data + 1, m->len - 1);
        else if (m->data[0] == RPC_LOCAL_MEMBER_REMOVE)
            rv = prepare_remove(c, m->data + 1, m->len - 1);
        else
            rv = prepare_promote(c, m->data + 1, m->len - 1);
        (void)rv;
    }
}

/* Proposes the current change; Raft's transient refusals are retried on
 * the next turn, until the deadline. */
static void conf_propose(struct core *c)
{
    int rv;

    if (c->conf_m == NULL || c->conf_proposed)
        return;
    rv = raft_propose_conf(c->raft, (enum raft_conf_op)c->conf_op, c->conf_id, c->conf_ctx,
                           c->conf_ctx_len);
    switch (rv) {
    case 0:
        c->conf_proposed = true;
        break;
    case RAFT_ERR_NO_LEADER:
    case RAFT_ERR_CONF_PENDING:
    case RAFT_ERR_TRANSFERRING:
    case RAFT_ERR_BUSY:
        break;
    case RAFT_ERR_MEMBER_EXISTS:
        conf_fail(c, RPC_FAILED_PRECONDITION, E_MEMBER_EXIST);
        break;
    case RAFT_ERR_UNKNOWN_MEMBER:
        conf_fail(c, RPC_NOT_FOUND, E_NOT_FOUND);
        break;
    case RAFT_ERR_NOT_LEARNER:
        conf_fail(c, RPC_FAILED_PRECONDITION, E_NOT_LEARNER);
        break;
    case RAFT_ERR_TOO_MANY_MEMBERS:
        conf_fail(c, RPC_FAILED_PRECONDITION, E_TOO_MANY_MEMB);
        break;
    case RAFT_ERR_REMOVED:
        conf_fail(c, RPC_UNAVAILABLE, ERR_REMOVED);
        break;
    default:
        conf_fail(c, RPC_FAILED_PRECONDITION, E_NOT_ENOUGH);
        break;
    }
}

void core_members_conf_applied(struct core *c, uint8_t op, uint64_t id)
{
    size_t len = 0;
    uint8_t *body;

    if (op == RAFT_CONF_REMOVE && id == c->id)
        c->removed = true;
    if (c->conf_m == NULL || !c->conf_proposed || op != c->conf_op || id != c->conf_id)
        return;
    if (op == RAFT_CONF_ADD_VOTER || op == RAFT_CONF_ADD_LEARNER) {
        body = roster_member_add_reply(&c->roster, id, c->env.member->cluster_id, c->id,
                                       raft_term(c->raft), &len);
        reply_body(c, c->conf_m, body, len);
    } else {
        reply_members(c, c->conf_m);
    }
    conf_done(c);
}

/* ---- MemberUpdate ---- */

/* Checks the request and turns m into the entry that carries it. */
static void update_request(struct core *c, struct shard_msg *m)
{
    Etcdserverpb__MemberUpdateRequest *r =
        etcdserverpb__member_update_request__unpack(NULL, m->len - 1, m->data + 1);
    char urls[ROSTER_URLS_MAX][ROSTER_URL_BYTES];
    const char *ptrs[ROSTER_URLS_MAX];
    Etcdserverpb__Member pb = ETCDSERVERPB__MEMBER__INIT;
    uint8_t *entry;
    size_t n;

    if (r == NULL || roster_find(&c->roster, r->id) == NULL) {
        core_refuse(c, m, RPC_NOT_FOUND, E_NOT_FOUND);
    } else if (parse_urls(r->peerurls, r->n_peerurls, urls, ptrs) != 0) {
        core_refuse(c, m, RPC_INVALID_ARGUMENT, E_BAD_URLS);
    } else if (roster_peer_url_used(&c->roster, ptrs, (unsigned)r->n_peerurls, r->id)) {
        core_refuse(c, m, RPC_FAILED_PRECONDITION, E_PEER_URL_EXIST);
    } else {
        pb.id = r->id;
        pb.peerurls = (char **)ptrs;
        pb.n_peerurls = r->n_peerurls;
        n = etcdserverpb__member__get_packed_size(&pb);
        entry = malloc(1 + n);
        if (entry == NULL) {
            core_refuse(c, m, RPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        } else {
            entry[0] = RPC_ENTRY_MEMBER_UPDATE;
            etcdserverpb__member__pack(&pb, entry + 1);
            free(m->data);
            m->data = entry;
            m->len = 1 + n;
            core_propose_or_wait(c, m);
        }
    }
    if (r != NULL)
        etcdserverpb__member_update_request__free_unpacked(r, NULL);
}

void core_members_update_applied(struct core *c, const uint8_t *p, size_t n, struct shard_msg *m)
{
    Etcdserverpb__Member *pb = etcdserverpb__member__unpack(NULL, n, p);
    struct roster_member *rm = pb != NULL ? roster_find(&c->roster, pb->id) : NULL;

    if (pb == NULL) {
        fprintf(stderr, "cetcd: fatal: a member update entry is malformed\n");
        exit(1);
    }
    if (rm != NULL && roster_add(&c->roster, rm->id, NULL, (const char *const *)pb->peerurls,
                                 (unsigned)pb->n_peerurls, rm->learner) == 0)
        core_peer_update(c, rm);
    etcdserverpb__member__free_unpacked(pb, NULL);
    if (m != NULL)
        reply_members(c, m);
}

/* ---- MoveLeader ---- */

static void reply_moved(struct core *c)
{
    Etcdserverpb__MoveLeaderResponse resp = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    size_t len;
    uint8_t *body;

    hdr.cluster_id = c->env.member->cluster_id;
    hdr.member_id = c->id;
    hdr.revision = mvcc_current_revision(c->env.store);
    hdr.raft_term = raft_term(c->raft);
    resp.header = &hdr;
    len = etcdserverpb__move_leader_response__get_packed_size(&resp);
    body = malloc(len);
    if (body != NULL)
        etcdserverpb__move_leader_response__pack(&resp, body);
    reply_body(c, c->xfer_m, body, len);
    c->xfer_m = NULL;
}

static void move_leader(struct core *c, struct shard_msg *m)
{
    Etcdserverpb__MoveLeaderRequest *r =
        etcdserverpb__move_leader_request__unpack(NULL, m->len - 1, m->data + 1);
    struct roster_member *t = r != NULL ? roster_find(&c->roster, r->targetid) : NULL;

    if (raft_role(c->raft) != RAFT_LEADER) {
        core_refuse(c, m, RPC_FAILED_PRECONDITION, E_NOT_LEADER);
    } else if (t == NULL || t->learner) {
        core_refuse(c, m, RPC_FAILED_PRECONDITION, E_BAD_TRANSFEREE);
    } else if (c->xfer_m != NULL) {
        core_refuse(c, m, RPC_UNAVAILABLE, ERR_TIMEOUT);
    } else {
        c->xfer_m = m;
        c->xfer_to = t->id;
        c->xfer_deadline_ms = core_now_ms() + c->request_timeout_ms;
        if (t->id != c->id && raft_transfer_leader(c->raft, t->id) != 0) {
            c->xfer_m = NULL;
            core_refuse(c, m, RPC_FAILED_PRECONDITION, E_BAD_TRANSFEREE);
        }
    }
    if (r != NULL)
        etcdserverpb__move_leader_request__free_unpacked(r, NULL);
}

/* ---- entry points ---- */

void core_members_request(struct core *c, struct shard_msg *m)
{
    struct wait_vec *q = &c->conf_queue;

    switch (m->data[0]) {
    case RPC_LOCAL_MEMBER_UPDATE:
        update_request(c, m);
        return;
    case RPC_LOCAL_MOVE_LEADER:
        move_leader(c, m);
        return;
    default:
        break;
    }
    if (q->n == CONF_QUEUE_MAX) {
        core_refuse(c, m, RPC_RESOURCE_EXHAUSTED, ERR_TOO_MANY);
        return;
    }
    if (q->n == q->cap) {
        size_t cap = q->cap != 0 ? q->cap * 2 : 8;
        struct shard_msg **v = realloc(q->v, cap * sizeof(*v));
        uint64_t *d = v != NULL ? realloc(q->deadline_ms, cap * sizeof(*d)) : NULL;
        if (v == NULL || d == NULL)
            core_fatal("out of memory queueing a membership request", -12);
        q->v = v;
        q->deadline_ms = d;
        q->cap = cap;
    }
    q->v[q->n] = m;
    q->deadline_ms[q->n] = core_now_ms() + c->request_timeout_ms;
    q->n++;
}

void core_members_turn(struct core *c, uint64_t now)
{
    if (c->conf_m != NULL && now >= c->conf_deadline_ms)
        conf_fail(c, RPC_UNAVAILABLE, ERR_TIMEOUT);
    conf_next(c);
    conf_propose(c);
    if (c->xfer_m != NULL && raft_leader(c->raft) == c->xfer_to)
        reply_moved(c);
    else if (c->xfer_m != NULL && now >= c->xfer_deadline_ms)
        core_refuse(c, c->xfer_m, RPC_UNAVAILABLE, E_XFER_TIMEOUT), c->xfer_m = NULL;
    if (c->removed && c->set != NULL) {
        fprintf(stderr, "cetcd: this member was removed from the cluster; stopping\n");
        shard_set_stop(c->set);
        c->removed = false;
    }
}

void core_members_free(struct core *c)
{
    for (size_t i = 0; i < c->conf_queue.n; i++)
        shard_msg_free(c->conf_queue.v[i]);
    free(c->conf_queue.v);
    free(c->conf_queue.deadline_ms);
    if (c->conf_m != NULL)
        shard_msg_free(c->conf_m);
    free(c->conf_ctx);
    if (c->xfer_m != NULL)
        shard_msg_free(c->xfer_m);
}
