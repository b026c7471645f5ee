/*
 * core_lease.c — the core's lease table (src/lease) wired into the Raft
 * driver: the table is created at start-up, replaced by a snapshot's, and
 * reached by the apply loop through c->env.leases; the leader's clock-side
 * duties run here:
 *
 *  - leadership: after every ready the table's leader state follows Raft's
 *    role: lease_promote(now, election timeout) on becoming leader (etcd
 *    extends every lease by the election timeout, so clients whose
 *    KeepAlives went to the old leader have time to find this one),
 *    lease_demote() on losing it.
 *  - each tick, the leader proposes a LeaseRevoke entry for each expired
 *    lease (at most CORE_LEASE_REVOKES_PER_TICK, as etcd rate-limits
 *    revokes) and one LeaseCheckpoint entry for the checkpoints due (at
 *    most CORE_LEASE_CHECKPOINTS_MAX, etcd's batch size). Nothing is
 *    decided at apply time by a clock: every member applies the same
 *    entries to the same table.
 *  - LeaseTimeToLive, LeaseLeases and KeepAlive requests from the shards
 *    are answered from the table (rpc_lease_local).
 *
 * Thread: shard 0's (the core) only; at start-up, the main thread before
 * it becomes shard 0.
 */
#include "core_int.h"

#include "lease.h"
#include "rpc.pb-c.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void core_lease_config(struct core *c, const struct core_config *cfg)
{
    uint64_t election_ms = cfg->election_ms != 0 ? cfg->election_ms : 1000;
    uint64_t ticks = election_ms / c->heartbeat_ms;
    uint64_t min_ms;

    if (ticks < 2)
        ticks = 2;
    /* etcd: minTTL = (3 * electionTicks / 2) * heartbeat, rounded up to
     * whole seconds. */
    min_ms = (3 * ticks / 2) * c->heartbeat_ms;
    c->election_ms = election_ms;
    c->lease_cfg.min_ttl_s = (int64_t)((min_ms + 999) / 1000);
    if (c->lease_cfg.min_ttl_s < 1)
        c->lease_cfg.min_ttl_s = 1;
    c->lease_cfg.checkpoint_interval_ms = (int64_t)cfg->lease_checkpoint_ms;
    c->lease_cfg.expired_retry_ms = (int64_t)c->request_timeout_ms; /* etcd: ReqTimeout() */
}

int core_lease_load(struct core *c, const uint8_t *blob, size_t len)
{
    struct lease_table *t = NULL;

    if (blob == NULL || len == 0) {
        t = lease_create(&c->lease_cfg);
        if (t == NULL)
            return LEASE_ERR_NOMEM;
    } else {
        int rv = lease_decode(&c->lease_cfg, blob, len, &t);
        if (rv != 0)
            return rv;
    }
    lease_destroy(c->env.leases);
    c->env.leases = t;
    return 0;
}

void core_lease_free(struct core *c)
{
    lease_destroy(c->env.leases);
    c->env.leases = NULL;
}

void core_lease_role(struct core *c)
{
    bool lead = raft_role(c->raft) == RAFT_LEADER;

    if (c->env.leases == NULL || lead == lease_is_leader(c->env.leases))
        return;
    if (lead)
        lease_promote(c->env.leases, (int64_t)core_now_ms(), (int64_t)c->election_ms);
    else
        lease_demote(c->env.leases);
}

/* Proposes [type][packed msg], answered to nobody. */
static void propose_own(struct core *c, uint8_t type, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    struct shard_msg *m = calloc(1, sizeof(*m));

    if (m == NULL || (m->data = malloc(1 + n)) == NULL) {
        free(m);
        return; /* asked again: lease_expired() retries, checkpoints come back */
    }
    m->data[0] = type;
    protobuf_c_message_pack(msg, m->data + 1);
    m->len = 1 + n;
    core_propose_or_wait(c, m);
}

void core_lease_tick(struct core *c, uint64_t now)
{
    int64_t ids[CORE_LEASE_REVOKES_PER_TICK];
    struct lease_checkpoint due[CORE_LEASE_CHECKPOINTS_MAX];
    struct lease_table *t = c->env.leases;
    size_t n;

    if (t == NULL || !lease_is_leader(t) || raft_role(c->raft) != RAFT_LEADER)
        return;
    n = lease_expired(t, (int64_t)now, ids, CORE_LEASE_REVOKES_PER_TICK);
    assert(n <= CORE_LEASE_REVOKES_PER_TICK);
    for (size_t i = 0; i < n; i++) {
        Etcdserverpb__LeaseRevokeRequest r = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
        r.id = ids[i];
        propose_own(c, RPC_ENTRY_LEASE_REVOKE, &r.base);
    }
    n = lease_checkpoints_due(t, (int64_t)now, due, CORE_LEASE_CHECKPOINTS_MAX);
    assert(n <= CORE_LEASE_CHECKPOINTS_MAX);
    if (n == 0)
        return;
    Etcdserverpb__LeaseCheckpointRequest req = ETCDSERVERPB__LEASE_CHECKPOINT_REQUEST__INIT;
    Etcdserverpb__LeaseCheckpoint *cps = calloc(n, sizeof(*cps));
    Etcdserverpb__LeaseCheckpoint **ptrs = calloc(n, sizeof(*ptrs));
    if (cps != NULL && ptrs != NULL) {
        for (size_t i = 0; i < n; i++) {
            etcdserverpb__lease_checkpoint__init(&cps[i]);
            cps[i].id = due[i].id;
            cps[i].remaining_ttl = due[i].remaining_ms; /* ms: apply.c */
            ptrs[i] = &cps[i];
        }
        req.n_checkpoints = n;
        req.checkpoints = ptrs;
        propose_own(c, RPC_ENTRY_LEASE_CHECKPOINT, &req.base);
    }
    free(cps);
    free(ptrs);
}

void core_lease_local(struct core *c, struct shard_msg *m)
{
    struct rpc_result r;

    rpc_lease_local(&c->env, m->data, m->len, (int64_t)core_now_ms(), &r);
    free(m->data);
    if (m->kind != SHARD_MSG_STREAM)
        m->kind = SHARD_MSG_REPLY;
    m->code = r.code;
    m->message = r.message;
    m->data = r.body;
    m->len = r.len;
    if (r.side != NULL) {
        /* A renew clears the lease's checkpoint through the log. */
        struct shard_msg *s = calloc(1, sizeof(*s));
        if (s != NULL) {
            s->data = r.side;
            s->len = r.side_len;
            core_propose_or_wait(c, s);
        } else {
            free(r.side);
        }
    }
    core_answer(c, m);
}

int core_lease_renew(struct core *c, int64_t id, int64_t *ttl_s)
{
    bool clear = false;
    int rv;

    *ttl_s = 0;
    if (c->env.leases == NULL)
        return LEASE_ERR_NOT_FOUND;
    rv = lease_renew(c->env.leases, id, (int64_t)core_now_ms(), ttl_s, &clear);
    if (rv == 0 && clear) {
        Etcdserverpb__LeaseCheckpointRequest req = ETCDSERVERPB__LEASE_CHECKPOINT_REQUEST__INIT;
        Etcdserverpb__LeaseCheckpoint cp = ETCDSERVERPB__LEASE_CHECKPOINT__INIT;
        Etcdserverpb__LeaseCheckpoint *ptr = &cp;
        cp.id = id;
        req.n_checkpoints = 1;
        req.checkpoints = &ptr;
        propose_own(c, RPC_ENTRY_LEASE_CHECKPOINT, &req.base);
    }
    return rv;
}
