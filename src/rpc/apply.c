/*
 * apply.c — the core's side of a write: applies one committed log entry to
 * the MVCC index and encodes the response for the client that asked.
 *
 * Entry payload format (the data of every Raft entry in the WAL):
 *   OFFSET SIZE MEANING
 *   0      1    type (enum rpc_entry_type: 0 no-op, 1 Put, 2 DeleteRange,
 *                3 Txn, 4 Compact, 5 Alarm, 8 LeaseGrant, 9 LeaseRevoke,
 *                10 LeaseCheckpoint)
 *   1      n    the request's protobuf encoding, as the client sent it
 *                (etcdserverpb.PutRequest, DeleteRangeRequest, TxnRequest,
 *                CompactionRequest, AlarmRequest, LeaseGrantRequest with
 *                its ID chosen, LeaseRevokeRequest, LeaseCheckpointRequest
 *                with remaining_TTL in milliseconds); empty for a no-op
 * Lease entries apply to env->leases (lease.c): a Put attaches its key to
 * its lease, a Put without one and every delete detach it.
 * The same function applies entries at run time and during WAL replay, so
 * a restarted member rebuilds exactly the same revisions. Checks that
 * depend on state (a missing key for ignore_value, an unknown lease) are
 * made here, at apply time, so every member decides them identically.
 *
 * Runs on the core thread only (the MVCC index's single writer).
 */
#include "rpc_int.h"

#include "mvcc.h"

#include <stdlib.h>
#include <string.h>

/* Owned copies of previous key-values, for prev_kv(s) in responses. */
struct kv_list {
    Mvccpb__KeyValue **v;
    size_t n;
    size_t cap;
    bool nomem;
};

static Mvccpb__KeyValue *kv_copy(const struct mvcc_kv *kv)
{
    Mvccpb__KeyValue *c = malloc(sizeof(*c) + kv->key_len + kv->value_len + 1);
    uint8_t *p;

    if (c == NULL)
        return NULL;
    mvccpb__key_value__init(c);
    p = (uint8_t *)(c + 1);
    memcpy(p, kv->key, kv->key_len);
    if (kv->value_len != 0)
        memcpy(p + kv->key_len, kv->value, kv->value_len);
    c->key.data = p;
    c->key.len = kv->key_len;
    c->value.data = p + kv->key_len;
    c->value.len = kv->value_len;
    c->create_revision = kv->create_revision;
    c->mod_revision = kv->mod_revision;
    c->version = kv->version;
    c->lease = kv->lease;
    return c;
}

static void kv_collect(void *arg, const struct mvcc_kv *kv)
{
    struct kv_list *l = arg;
    Mvccpb__KeyValue *c;

    if (l->n == l->cap) {
        size_t cap = l->cap != 0 ? l->cap * 2 : 4;
        Mvccpb__KeyValue **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            l->nomem = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    c = kv_copy(kv);
    if (c == NULL) {
        l->nomem = true;
        return;
    }
    l->v[l->n++] = c;
}

static void kv_list_free(struct kv_list *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* The live version of one key, copied; NULL if absent. */
static Mvccpb__KeyValue *current(const struct rpc_env *env, const ProtobufCBinaryData *key)
{
    struct mvcc_range_req q;
    struct mvcc_range_res res;
    Mvccpb__KeyValue *kv = NULL;

    memset(&q, 0, sizeof(q));
    memset(&res, 0, sizeof(res));
    q.key = key->data;
    q.key_len = key->len;
    mvcc_read_begin(env->reader);
    if (mvcc_range(env->reader, &q, &res) == MVCC_OK && res.n == 1)
        kv = kv_copy(&res.kvs[0]);
    mvcc_read_end(env->reader);
    mvcc_range_res_free(&res);
    return kv;
}

static void apply_put(const struct rpc_env *env, const Etcdserverpb__PutRequest *r, bool want_reply,
                      struct rpc_result *out)
{
    Etcdserverpb__PutResponse resp = ETCDSERVERPB__PUT_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    struct kv_list prev = {0};
    Mvccpb__KeyValue *cur = NULL;
    ProtobufCBinaryData value = r->value;
    int64_t lease = r->lease;
    int64_t rev;

    if (r->ignore_value || r->ignore_lease) {
        cur = current(env, &r->key);
        if (cur == NULL) {
            rpc_fail(out, RPC_E_KEY_NOT_FOUND);
            return;
        }
        if (r->ignore_value)
            value = cur->value;
        if (r->ignore_lease)
            lease = cur->lease;
    }
    if (rpc_alarm_active(env, ETCDSERVERPB__ALARM_TYPE__NOSPACE)) {
        free(cur);
        rpc_fail(out, RPC_E_NOSPACE);
        return;
    }
    /* etcd checks the lease before the put; ignore_lease keeps the key
     * attached where it is. */
    if (!r->ignore_lease) {
        int e = rpc_lease_attach(env, r->key.data, r->key.len, lease);
        if (e >= 0) {
            free(cur);
            rpc_fail(out, (enum rpc_err)e);
            return;
        }
    }
    mvcc_txn_begin(env->store);
    if (mvcc_txn_put(env->store, r->key.data, r->key.len, value.data, value.len, lease,
                     r->prev_kv && want_reply ? kv_collect : NULL, &prev) != MVCC_OK) {
        mvcc_txn_end(env->store);
        free(cur);
        kv_list_free(&prev);
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    rev = mvcc_txn_end(env->store);
    free(cur);
    if (want_reply) {
        rpc_header(env, &hdr, rev);
        resp.header = &hdr;
        resp.prev_kv = prev.n > 0 ? prev.v[0] : NULL;
        rpc_reply_msg(out, &resp.base);
    }
    kv_list_free(&prev);
}

/* Each deleted key leaves its lease; prev_kvs collected if asked. */
struct del_collect {
    const struct rpc_env *env;
    struct kv_list *prev; /* NULL: not asked */
};

static void del_one(void *arg, const struct mvcc_kv *kv)
{
    struct del_collect *d = arg;

    rpc_lease_detach(d->env, kv);
    if (d->prev != NULL)
        kv_collect(d->prev, kv);
}

static void apply_delete(const struct rpc_env *env, const Etcdserverpb__DeleteRangeRequest *r,
                         bool want_reply, struct rpc_result *out)
{
    Etcdserverpb__DeleteRangeResponse resp = ETCDSERVERPB__DELETE_RANGE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    struct kv_list prev = {0};
    struct del_collect dc = {env, r->prev_kv && want_reply ? &prev : NULL};
    int64_t n;
    int64_t rev;

    mvcc_txn_begin(env->store);
    n = mvcc_txn_delete_range(env->store, r->key.data, r->key.len, r->range_end.data,
                              r->range_end.len, del_one, &dc);
    rev = mvcc_txn_end(env->store);
    if (n < 0) {
        kv_list_free(&prev);
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    if (want_reply) {
        rpc_header(env, &hdr, rev);
        resp.header = &hdr;
        resp.deleted = n;
        resp.n_prev_kvs = prev.n;
        resp.prev_kvs = prev.v;
        rpc_reply_msg(out, &resp.base);
    }
    kv_list_free(&prev);
}

/* Compaction: logical at once; the physical part runs in bounded steps on
 * the core, and a `physical` request is answered when it is done. */
static void apply_compact(const struct rpc_env *env, const Etcdserverpb__CompactionRequest *r,
                          bool want_reply, struct rpc_result *out)
{
    Etcdserverpb__CompactionResponse resp = ETCDSERVERPB__COMPACTION_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    int rv = mvcc_compact(env->store, r->revision);

    if (rv == MVCC_ERR_COMPACTED) {
        rpc_fail(out, RPC_E_COMPACTED);
        return;
    }
    if (rv == MVCC_ERR_FUTURE_REV) {
        rpc_fail(out, RPC_E_FUTURE_REV);
        return;
    }
    if (!want_reply)
        return;
    rpc_header(env, &hdr, mvcc_current_revision(env->store));
    resp.header = &hdr;
    rpc_reply_msg(out, &resp.base);
    if (r->physical)
        out->wait = RPC_WAIT_COMPACTION;
}

/* etcd's applyAlarm: ACTIVATE answers the alarm (new or already there),
 * DEACTIVATE the alarm it removed (none if it was not set). Alarms are
 * per member; this member only knows its own until clusters exist. */
static void apply_alarm(const struct rpc_env *env, const Etcdserverpb__AlarmRequest *r,
                        bool want_reply, struct rpc_result *out)
{
    Etcdserverpb__AlarmResponse resp = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    Etcdserverpb__AlarmMember m = ETCDSERVERPB__ALARM_MEMBER__INIT;
    Etcdserverpb__AlarmMember *ptrs[1] = {&m};
    uint64_t mask = rpc_member_load(&env->member->alarms);
    uint64_t bit = r->alarm > 0 && r->alarm < 64 ? 1ull << r->alarm : 0;
    bool listed = false;

    if (r->memberid == env->member->member_id && bit != 0) {
        if (r->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE) {
            rpc_member_store(&env->member->alarms, mask | bit);
            listed = true;
        } else if (r->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE) {
            rpc_member_store(&env->member->alarms, mask & ~bit);
            listed = (mask & bit) != 0;
        }
    }
    if (!want_reply)
        return;
    m.memberid = r->memberid;
    m.alarm = r->alarm;
    resp.n_alarms = listed ? 1 : 0;
    resp.alarms = ptrs;
    rpc_reply_msg(out, &resp.base); /* no header, as etcd's */
}

#define APPLY_MSG(type, fn, apply_fn)                                                              \
    do {                                                                                           \
        type *r = fn##__unpack(NULL, len - 1, entry + 1);                                          \
        if (r == NULL)                                                                             \
            return -1;                                                                             \
        apply_fn(env, r, want_reply, out);                                                         \
        fn##__free_unpacked(r, NULL);                                                              \
        return 0;                                                                                  \
    } while (0)

int rpc_apply(const struct rpc_env *env, const uint8_t *entry, size_t len, bool want_reply,
              struct rpc_result *out)
{
    memset(out, 0, sizeof(*out));
    rpc_fail_code(out, RPC_OK, NULL);
    if (len == 0)
        return -1;
    switch (entry[0]) {
    case RPC_ENTRY_NOOP:
        return 0;
    case RPC_ENTRY_PUT:
        APPLY_MSG(Etcdserverpb__PutRequest, etcdserverpb__put_request, apply_put);
    case RPC_ENTRY_DELETE_RANGE:
        APPLY_MSG(Etcdserverpb__DeleteRangeRequest, etcdserverpb__delete_range_request,
                  apply_delete);
    case RPC_ENTRY_TXN:
        APPLY_MSG(Etcdserverpb__TxnRequest, etcdserverpb__txn_request, rpc_apply_txn);
    case RPC_ENTRY_COMPACT:
        APPLY_MSG(Etcdserverpb__CompactionRequest, etcdserverpb__compaction_request, apply_compact);
    case RPC_ENTRY_ALARM:
        APPLY_MSG(Etcdserverpb__AlarmRequest, etcdserverpb__alarm_request, apply_alarm);
    case RPC_ENTRY_LEASE_GRANT:
        APPLY_MSG(Etcdserverpb__LeaseGrantRequest, etcdserverpb__lease_grant_request,
                  rpc_apply_lease_grant);
    case RPC_ENTRY_LEASE_REVOKE:
        APPLY_MSG(Etcdserverpb__LeaseRevokeRequest, etcdserverpb__lease_revoke_request,
                  rpc_apply_lease_revoke);
    case RPC_ENTRY_LEASE_CHECKPOINT:
        APPLY_MSG(Etcdserverpb__LeaseCheckpointRequest, etcdserverpb__lease_checkpoint_request,
                  rpc_apply_lease_checkpoint);
    default:
        return -1;
    }
}
