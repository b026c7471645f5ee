/*
 * apply.c — the core's side of a write: applies one committed log entry to
 * the MVCC index and encodes the response for the client that asked.
 *
 * Entry payload format (the data of every Raft entry in the WAL):
 *   OFFSET SIZE MEANING
 *   0      1    type (enum rpc_entry_type: 0 no-op, 1 Put, 2 DeleteRange)
 *   1      n    the request's protobuf encoding, as the client sent it
 *                (etcdserverpb.PutRequest / DeleteRangeRequest); empty for
 *                a no-op
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
    if (lease != 0 && !r->ignore_lease) {
        /* No lease can exist before the Lease service does. */
        free(cur);
        rpc_fail(out, RPC_E_LEASE_NOT_FOUND);
        return;
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

static void apply_delete(const struct rpc_env *env, const Etcdserverpb__DeleteRangeRequest *r,
                         bool want_reply, struct rpc_result *out)
{
    Etcdserverpb__DeleteRangeResponse resp = ETCDSERVERPB__DELETE_RANGE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    struct kv_list prev = {0};
    int64_t n;
    int64_t rev;

    mvcc_txn_begin(env->store);
    n = mvcc_txn_delete_range(env->store, r->key.data, r->key.len, r->range_end.data,
                              r->range_end.len, r->prev_kv && want_reply ? kv_collect : NULL,
                              &prev);
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

int rpc_apply(const struct rpc_env *env, const uint8_t *entry, size_t len, bool want_reply,
              struct rpc_result *out)
{
    rpc_fail_code(out, RPC_OK, NULL);
    if (len == 0)
        return -1;
    switch (entry[0]) {
    case RPC_ENTRY_NOOP:
        return 0;
    case RPC_ENTRY_PUT: {
        Etcdserverpb__PutRequest *r = etcdserverpb__put_request__unpack(NULL, len - 1, entry + 1);
        if (r == NULL)
            return -1;
        apply_put(env, r, want_reply, out);
        etcdserverpb__put_request__free_unpacked(r, NULL);
        return 0;
    }
    case RPC_ENTRY_DELETE_RANGE: {
        Etcdserverpb__DeleteRangeRequest *r =
            etcdserverpb__delete_range_request__unpack(NULL, len - 1, entry + 1);
        if (r == NULL)
            return -1;
        apply_delete(env, r, want_reply, out);
        etcdserverpb__delete_range_request__free_unpacked(r, NULL);
        return 0;
    }
    default:
        return -1;
    }
}
