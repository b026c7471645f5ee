/*
 * kv.c — the shard side of etcdserverpb.KV: Range runs here against the
 * MVCC index; Put and DeleteRange are checked here (etcd's request checks,
 * the size limit) and become log entries for the core.
 *
 * Runs on the shard that received the request. A Range response is packed
 * inside the read section, straight from the index's memory, so keys and
 * values are copied once: into the response buffer.
 */
#include "rpc_int.h"

#include "mvcc.h"

#include <stdlib.h>
#include <string.h>

/* ---- Range ---- */

static bool sort_ok(const Etcdserverpb__RangeRequest *r)
{
    return r->sort_order >= 0 && r->sort_order <= 2 && r->sort_target >= 0 && r->sort_target <= 4;
}

static void range_req(const Etcdserverpb__RangeRequest *r, struct mvcc_range_req *q)
{
    memset(q, 0, sizeof(*q));
    q->key = r->key.data;
    q->key_len = r->key.len;
    q->range_end = r->range_end.data;
    q->range_end_len = r->range_end.len;
    q->limit = r->limit;
    q->revision = r->revision;
    q->sort_order = r->sort_order;
    q->sort_target = r->sort_target;
    q->keys_only = r->keys_only;
    q->count_only = r->count_only;
    q->min_mod_revision = r->min_mod_revision;
    q->max_mod_revision = r->max_mod_revision;
    q->min_create_revision = r->min_create_revision;
    q->max_create_revision = r->max_create_revision;
}

static void kv_fill(Mvccpb__KeyValue *dst, const struct mvcc_kv *src)
{
    mvccpb__key_value__init(dst);
    dst->key.data = (uint8_t *)src->key;
    dst->key.len = src->key_len;
    dst->value.data = (uint8_t *)src->value;
    dst->value.len = src->value_len;
    dst->create_revision = src->create_revision;
    dst->mod_revision = src->mod_revision;
    dst->version = src->version;
    dst->lease = src->lease;
}

static void range_reply(const struct rpc_env *env, const struct mvcc_range_res *res,
                        struct rpc_result *out)
{
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    Mvccpb__KeyValue *kvs = NULL;
    Mvccpb__KeyValue **ptrs = NULL;
    size_t i;

    if (res->n > 0) {
        kvs = malloc(res->n * sizeof(*kvs));
        ptrs = malloc(res->n * sizeof(*ptrs));
        if (kvs == NULL || ptrs == NULL) {
            free(kvs);
            free(ptrs);
            rpc_fail(out, RPC_E_NOMEM);
            return;
        }
    }
    for (i = 0; i < res->n; i++) {
        kv_fill(&kvs[i], &res->kvs[i]);
        ptrs[i] = &kvs[i];
    }
    rpc_header(env, &hdr, res->revision);
    resp.header = &hdr;
    resp.n_kvs = res->n;
    resp.kvs = ptrs;
    resp.more = res->more;
    resp.count = res->count;
    rpc_reply_msg(out, &resp.base);
    free(kvs);
    free(ptrs);
}

void rpc_kv_range(const struct rpc_env *env, const uint8_t *msg, size_t len, struct rpc_result *out)
{
    Etcdserverpb__RangeRequest *r = etcdserverpb__range_request__unpack(NULL, len, msg);
    struct mvcc_range_req q;
    struct mvcc_range_res res;
    int rv;

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    if (r->key.len == 0) {
        rpc_fail(out, RPC_E_EMPTY_KEY);
    } else if (!sort_ok(r)) {
        rpc_fail(out, RPC_E_INVALID_SORT);
    } else {
        range_req(r, &q);
        memset(&res, 0, sizeof(res));
        mvcc_read_begin(env->reader);
        rv = mvcc_range(env->reader, &q, &res);
        if (rv == MVCC_OK)
            range_reply(env, &res, out);
        else if (rv == MVCC_ERR_FUTURE_REV)
            rpc_fail(out, RPC_E_FUTURE_REV);
        else if (rv == MVCC_ERR_COMPACTED)
            rpc_fail(out, RPC_E_COMPACTED);
        else
            rpc_fail(out, RPC_E_NOMEM);
        mvcc_read_end(env->reader);
        mvcc_range_res_free(&res);
    }
    etcdserverpb__range_request__free_unpacked(r, NULL);
}

/* ---- writes: checked here, applied on the core ---- */

static void propose(const struct rpc_env *env, uint8_t type, const uint8_t *msg, size_t len,
                    struct rpc_result *out)
{
    uint8_t *entry;

    if (1 + len > env->member->max_request_bytes) {
        rpc_fail(out, RPC_E_TOO_LARGE);
        return;
    }
    entry = malloc(1 + len);
    if (entry == NULL) {
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    entry[0] = type;
    memcpy(entry + 1, msg, len);
    out->action = RPC_ACT_PROPOSE;
    out->code = RPC_OK;
    out->message = NULL;
    out->body = entry;
    out->len = 1 + len;
}

void rpc_kv_put(const struct rpc_env *env, const uint8_t *msg, size_t len, struct rpc_result *out)
{
    Etcdserverpb__PutRequest *r = etcdserverpb__put_request__unpack(NULL, len, msg);

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    if (r->key.len == 0)
        rpc_fail(out, RPC_E_EMPTY_KEY);
    else if (r->ignore_value && r->value.len != 0)
        rpc_fail(out, RPC_E_VALUE_PROVIDED);
    else if (r->ignore_lease && r->lease != 0)
        rpc_fail(out, RPC_E_LEASE_PROVIDED);
    else
        propose(env, RPC_ENTRY_PUT, msg, len, out);
    etcdserverpb__put_request__free_unpacked(r, NULL);
}

void rpc_kv_delete_range(const struct rpc_env *env, const uint8_t *msg, size_t len,
                         struct rpc_result *out)
{
    Etcdserverpb__DeleteRangeRequest *r =
        etcdserverpb__delete_range_request__unpack(NULL, len, msg);

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    if (r->key.len == 0)
        rpc_fail(out, RPC_E_EMPTY_KEY);
    else
        propose(env, RPC_ENTRY_DELETE_RANGE, msg, len, out);
    etcdserverpb__delete_range_request__free_unpacked(r, NULL);
}
