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

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---- Range ---- */

static bool sort_ok(const Etcdserverpb__RangeRequest *r)
{
    return r->sort_order >= 0 && r->sort_order <= 2 && r->sort_target >= 0 && r->sort_target <= 4;
}

void rpc_range_req(const Etcdserverpb__RangeRequest *r, struct mvcc_range_req *q)
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

/* ---- RangeResponse, encoded by hand ----
 *
 * A Range can return millions of keys. Building protobuf-c structures for
 * each would cost more memory than the answer itself, so the response is
 * written straight from the index into one buffer sized exactly in a first
 * pass. Field numbers (proto3, zero values omitted):
 *   RangeResponse: 1 header (message), 2 kvs (repeated KeyValue),
 *                  3 more (bool), 4 count (int64)
 *   KeyValue:      1 key, 2 create_revision, 3 mod_revision, 4 version,
 *                  5 value, 6 lease
 */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *varint_put(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Tag (one byte for fields 1-15) + value, for a non-zero int64. */
static size_t int_field_len(int64_t v)
{
    return v != 0 ? 1 + varint_len((uint64_t)v) : 0;
}

static size_t bytes_field_len(size_t n)
{
    return n != 0 ? 1 + varint_len(n) + n : 0;
}

static size_t kv_len(const struct mvcc_kv *kv)
{
    return bytes_field_len(kv->key_len) + int_field_len(kv->create_revision) +
           int_field_len(kv->mod_revision) + int_field_len(kv->version) +
           bytes_field_len(kv->value_len) + int_field_len(kv->lease);
}

static uint8_t *int_field_put(uint8_t *p, unsigned field, int64_t v)
{
    if (v == 0)
        return p;
    *p++ = (uint8_t)(field << 3); /* wire type 0: varint */
    return varint_put(p, (uint64_t)v);
}

static uint8_t *bytes_field_put(uint8_t *p, unsigned field, const uint8_t *b, size_t n)
{
    if (n == 0)
        return p;
    *p++ = (uint8_t)(field << 3 | 2); /* wire type 2: length-delimited */
    p = varint_put(p, n);
    memcpy(p, b, n);
    return p + n;
}

static uint8_t *kv_put(uint8_t *p, const struct mvcc_kv *kv)
{
    p = bytes_field_put(p, 1, kv->key, kv->key_len);
    p = int_field_put(p, 2, kv->create_revision);
    p = int_field_put(p, 3, kv->mod_revision);
    p = int_field_put(p, 4, kv->version);
    p = bytes_field_put(p, 5, kv->value, kv->value_len);
    return int_field_put(p, 6, kv->lease);
}

static void range_reply(const struct rpc_env *env, const struct mvcc_range_res *res,
                        struct rpc_result *out)
{
    Etcdserverpb__ResponseHeader hdr;
    uint8_t hbuf[64];
    size_t hlen;
    size_t total;
    size_t i;
    uint8_t *buf;
    uint8_t *p;

    rpc_header(env, &hdr, res->revision);
    hlen = etcdserverpb__response_header__pack(&hdr, hbuf);
    total = 1 + varint_len(hlen) + hlen + (res->more ? 2 : 0) + int_field_len(res->count);
    for (i = 0; i < res->n; i++) {
        size_t k = kv_len(&res->kvs[i]);
        total += 1 + varint_len(k) + k;
    }
    buf = malloc(total != 0 ? total : 1);
    if (buf == NULL) {
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    p = bytes_field_put(buf, 1, hbuf, hlen);
    for (i = 0; i < res->n; i++) {
        *p++ = 2 << 3 | 2;
        p = varint_put(p, kv_len(&res->kvs[i]));
        p = kv_put(p, &res->kvs[i]);
    }
    if (res->more) {
        *p++ = 3 << 3;
        *p++ = 1;
    }
    p = int_field_put(p, 4, res->count);
    assert((size_t)(p - buf) == total);
    out->action = RPC_ACT_REPLY;
    out->code = RPC_OK;
    out->body = buf;
    out->len = total;
}

/* Streaming: a first walk sizes the answer, a second writes it, so a range
 * of millions of keys needs no memory beyond the answer itself. Both walks
 * see the same pinned state. */
struct stream_pass {
    size_t bytes; /* pass 1: total of the kvs fields */
    uint8_t *p;   /* pass 2: where the next kv goes */
};

static void size_kv(void *arg, const struct mvcc_kv *kv)
{
    struct stream_pass *sp = arg;
    size_t k = kv_len(kv);

    sp->bytes += 1 + varint_len(k) + k;
}

static void write_kv(void *arg, const struct mvcc_kv *kv)
{
    struct stream_pass *sp = arg;

    *sp->p++ = 2 << 3 | 2;
    sp->p = varint_put(sp->p, kv_len(kv));
    sp->p = kv_put(sp->p, kv);
}

static int range_stream(const struct rpc_env *env, const struct mvcc_range_req *q,
                        struct rpc_result *out)
{
    Etcdserverpb__ResponseHeader hdr;
    struct mvcc_range_res res;
    struct stream_pass sp = {0, NULL};
    uint8_t hbuf[64];
    size_t hlen;
    size_t total;
    uint8_t *buf;
    int rv = mvcc_range_each(env->reader, q, size_kv, &sp, &res);

    if (rv != MVCC_OK)
        return rv;
    rpc_header(env, &hdr, res.revision);
    hlen = etcdserverpb__response_header__pack(&hdr, hbuf);
    total = 1 + varint_len(hlen) + hlen + sp.bytes + (res.more ? 2 : 0) + int_field_len(res.count);
    buf = malloc(total);
    if (buf == NULL)
        return MVCC_ERR_NOMEM;
    sp.p = bytes_field_put(buf, 1, hbuf, hlen);
    mvcc_range_each(env->reader, q, write_kv, &sp, &res);
    if (res.more) {
        *sp.p++ = 3 << 3;
        *sp.p++ = 1;
    }
    sp.p = int_field_put(sp.p, 4, res.count);
    assert((size_t)(sp.p - buf) == total);
    out->action = RPC_ACT_REPLY;
    out->code = RPC_OK;
    out->body = buf;
    out->len = total;
    return MVCC_OK;
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
    } else if (!r->serializable && rpc_member_load(&env->member->is_learner) != 0) {
        rpc_fail(out, RPC_E_NOT_FOR_LEARNER);
    } else if (!r->serializable && rpc_needs_read_index(env)) {
        out->action = RPC_ACT_READ_BARRIER;
    } else {
        rpc_range_req(r, &q);
        memset(&res, 0, sizeof(res));
        mvcc_read_begin(env->reader);
        if (mvcc_range_streams(&q)) {
            rv = range_stream(env, &q, out);
        } else {
            rv = mvcc_range(env->reader, &q, &res);
            if (rv == MVCC_OK)
                range_reply(env, &res, out);
        }
        if (rv == MVCC_ERR_FUTURE_REV)
            rpc_fail(out, RPC_E_FUTURE_REV);
        else if (rv == MVCC_ERR_COMPACTED)
            rpc_fail(out, RPC_E_COMPACTED);
        else if (rv != MVCC_OK)
            rpc_fail(out, RPC_E_NOMEM);
        mvcc_read_end(env->reader);
        mvcc_range_res_free(&res);
    }
    etcdserverpb__range_request__free_unpacked(r, NULL);
}

/* ---- writes: checked here, applied on the core ---- */

void rpc_propose(const struct rpc_env *env, uint8_t type, const uint8_t *msg, size_t len,
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
    else if (rpc_quota_exceeded(env, len))
        rpc_quota_fail(env, out);
    else
        rpc_propose(env, RPC_ENTRY_PUT, msg, len, out);
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
        rpc_propose(env, RPC_ENTRY_DELETE_RANGE, msg, len, out);
    etcdserverpb__delete_range_request__free_unpacked(r, NULL);
}

/* ---- Compact ---- */

void rpc_kv_compact(const struct rpc_env *env, const uint8_t *msg, size_t len,
                    struct rpc_result *out)
{
    Etcdserverpb__CompactionRequest *r = etcdserverpb__compaction_request__unpack(NULL, len, msg);

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    etcdserverpb__compaction_request__free_unpacked(r, NULL);
    rpc_propose(env, RPC_ENTRY_COMPACT, msg, len, out);
}

/* ---- quota ---- */

/* etcd charges a put its request size plus a fixed overhead for the
 * index; the state's size is the MVCC index's running byte count. */
#define QUOTA_OVERHEAD_BYTES 64

bool rpc_quota_exceeded(const struct rpc_env *env, size_t cost)
{
    uint64_t quota =
        env->member->quota_bytes != 0 ? env->member->quota_bytes : RPC_QUOTA_DEFAULT_BYTES;

    return mvcc_size_bytes(env->store) + cost + QUOTA_OVERHEAD_BYTES >= quota;
}

/* Answers NOSPACE and asks for the NOSPACE alarm through the log, as
 * etcd's quota gate does (the alarm then holds on every member). */
void rpc_quota_fail(const struct rpc_env *env, struct rpc_result *out)
{
    Etcdserverpb__AlarmRequest a = ETCDSERVERPB__ALARM_REQUEST__INIT;
    size_t n;

    rpc_fail(out, RPC_E_NOSPACE);
    if (rpc_alarm_active(env, ETCDSERVERPB__ALARM_TYPE__NOSPACE))
        return;
    a.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
    a.memberid = env->member->member_id;
    a.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
    n = etcdserverpb__alarm_request__get_packed_size(&a);
    out->side = malloc(1 + n);
    if (out->side == NULL)
        return;
    out->side[0] = RPC_ENTRY_ALARM;
    etcdserverpb__alarm_request__pack(&a, out->side + 1);
    out->side_len = 1 + n;
}

bool rpc_alarm_active(const struct rpc_env *env, int type)
{
    return (rpc_member_load(&env->member->alarms) & (1ull << type)) != 0;
}
