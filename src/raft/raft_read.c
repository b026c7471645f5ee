/*
 * raft_read.c — ReadIndex (thesis §6.4): linearizable reads without log
 * writes.
 *
 * The leader records each read with its commit index and a round number
 * (seq). At the next ready, one round of heartbeats carrying seq goes out;
 * a read is ready once a quorum of voters (the leader included) has
 * answered a heartbeat of its round or a later one, which proves no other
 * leader had been elected when the read arrived. Rounds are the leader's own
 * numbers, not the drivers' ctx values, so reads forwarded by different
 * followers cannot be confused.
 *
 * Invariants: rq is FIFO with non-decreasing seq; reads registered before
 * the leader committed an entry of its term have seq 0 (held) and all come
 * before any other; everything is dropped when the member stops being
 * leader; at most RAFT_READS_MAX reads wait.
 */
#include <stdint.h>

#include "raft_int.h"

void rd_clear(struct raft *r)
{
    r->n_rq = 0;
    r->read_seq = 0;
    r->read_round = false;
}

static bool committed_in_term(const struct raft *r)
{
    return log_term(&r->log, r->commit) == r->term;
}

/* Hands a ready read to whoever asked: the local driver or a follower. */
void rd_deliver(struct raft *r, uint64_t from, uint64_t ctx, uint64_t index)
{
    if (from == r->cfg.id) {
        if (r->n_reads_out >= RAFT_READS_MAX)
            return;
        r->reads_out[r->n_reads_out].ctx = ctx;
        r->reads_out[r->n_reads_out++].index = index;
        return;
    }
    struct raft_msg *m = raft_out(r, false, RAFT_MSG_READ_INDEX_RESP, from);
    if (!m)
        return;
    m->ctx = ctx;
    m->index = index;
}

static uint64_t ack_of(struct raft *r, struct raft_progress *pr)
{
    return pr->id == r->cfg.id ? UINT64_MAX : pr->read_ack;
}

static void assign_round(struct raft *r, struct raft_read_req *q)
{
    q->seq = r->read_seq + 1;
    q->index = r->commit;
    r->read_round = r->read_round || r->conf.n_voters > 1;
}

/* Releases the reads whose round a quorum has acknowledged. */
void rd_advance(struct raft *r)
{
    if (!r->n_rq)
        return;
    uint64_t q = pr_quorum_value(r, ack_of);
    uint32_t k = 0;
    while (k < r->n_rq && r->rq[k].seq != 0 && r->rq[k].seq <= q) {
        rd_deliver(r, r->rq[k].from, r->rq[k].ctx, r->rq[k].index);
        k++;
    }
    for (uint32_t j = k; j < r->n_rq; j++)
        r->rq[j - k] = r->rq[j];
    r->n_rq -= k;
}

int rd_request(struct raft *r, uint64_t from, uint64_t ctx)
{
    if (r->n_rq >= RAFT_READS_MAX)
        return RAFT_ERR_BUSY;
    struct raft_read_req *q = &r->rq[r->n_rq++];
    q->ctx = ctx;
    q->from = from;
    q->index = 0;
    q->seq = 0;
    /* Thesis §6.4: until an entry of its term is committed, the leader
     * does not know the latest commit index; hold the read. */
    if (committed_in_term(r))
        assign_round(r, q);
    rd_advance(r);
    return 0;
}

void rd_release_held(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_rq; i++)
        if (r->rq[i].seq == 0)
            assign_round(r, &r->rq[i]);
    rd_advance(r);
}

/* At ready: one heartbeat round for every read registered since the
 * last. */
void rd_broadcast(struct raft *r)
{
    if (!r->read_round)
        return;
    r->read_round = false;
    r->read_seq++;
    rep_send_heartbeats(r, r->read_seq);
}
