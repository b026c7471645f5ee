/*
 * lease.c — etcdserverpb.Lease: the shard-side checks, the core's apply of
 * lease entries, and the core's answers from its lease table (etcd 3.4's
 * v3rpc/lease.go, etcdserver/v3_server.go and apply.go).
 *
 *  - LeaseGrant and LeaseRevoke are log entries (RPC_ENTRY_LEASE_GRANT,
 *    _REVOKE). A grant with ID 0 gets its ID here, on the receiving
 *    member, before it is proposed (etcd's reqIDGen: the member ID's low
 *    16 bits, then a counter started from the clock in ms << 8); the table
 *    refuses a duplicate at apply, so every member decides alike.
 *  - A revoke deletes every key attached to the lease in ONE revision, in
 *    key order, as etcd's lessor does through one write txn.
 *  - LeaseCheckpoint entries carry the leader's measured remaining TTL in
 *    milliseconds (etcd's field holds seconds; this is cetcd's own log).
 *  - LeaseTimeToLive, LeaseLeases and each KeepAlive request go to the
 *    core as local requests (RPC_LOCAL_LEASE_*): the table is the core's.
 *    TimeToLive on the leader answers the leader's deadline (etcd's
 *    answer). On a follower, etcd forwards to the leader; cetcd has no
 *    peer request for it yet, so a follower answers from replicated state:
 *    the last checkpointed remaining TTL if the lease has one, else its
 *    granted TTL (an upper bound of what the leader would say), and its
 *    keys from the MVCC index (a scan: the table gives keys to the leader
 *    only).
 *
 * Threads: the handlers run on the receiving shard (env->leases NULL
 * there); rpc_apply_lease_* and rpc_lease_local on the core only.
 */
#include "rpc_int.h"

#include "lease.h"
#include "mvcc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- shard side ---- */

/* etcd's idutil.Generator, shared by the shards of this process: the top
 * 16 bits are the member ID's low 16 bits, the low 48 a counter that
 * starts at the wall clock in ms << 8 (so a restarted member does not
 * reuse IDs it gave before). Positive IDs only, as etcd. */
static _Atomic uint64_t id_suffix;

static int64_t next_lease_id(uint64_t member_id)
{
    const uint64_t low48 = (1ull << 48) - 1;
    uint64_t cur = atomic_load(&id_suffix);
    uint64_t id;

    if (cur == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
        uint64_t start = (ms << 8) & low48;
        atomic_compare_exchange_strong(&id_suffix, &cur, start != 0 ? start : 1);
    }
    do {
        uint64_t s = atomic_fetch_add(&id_suffix, 1) + 1;
        id = ((member_id & 0xffffu) << 48 | (s & low48)) & (uint64_t)INT64_MAX;
    } while (id == 0);
    return (int64_t)id;
}

void rpc_lease_grant(const struct rpc_env *env, const uint8_t *msg, size_t len,
                     struct rpc_result *out)
{
    Etcdserverpb__LeaseGrantRequest *r = etcdserverpb__lease_grant_request__unpack(NULL, len, msg);
    uint8_t buf[64];
    size_t n;

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    if (r->id == 0)
        r->id = next_lease_id(env->member->member_id);
    n = etcdserverpb__lease_grant_request__get_packed_size(r);
    if (n > sizeof(buf))
        rpc_fail_unmarshal(out, msg, len); /* two int64s never take more */
    else {
        etcdserverpb__lease_grant_request__pack(r, buf);
        rpc_propose(env, RPC_ENTRY_LEASE_GRANT, buf, n, out);
    }
    etcdserverpb__lease_grant_request__free_unpacked(r, NULL);
}

void rpc_lease_revoke(const struct rpc_env *env, const uint8_t *msg, size_t len,
                      struct rpc_result *out)
{
    Etcdserverpb__LeaseRevokeRequest *r =
        etcdserverpb__lease_revoke_request__unpack(NULL, len, msg);

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    etcdserverpb__lease_revoke_request__free_unpacked(r, NULL);
    rpc_propose(env, RPC_ENTRY_LEASE_REVOKE, msg, len, out);
}

void rpc_lease_time_to_live(const struct rpc_env *env, const uint8_t *msg, size_t len,
                            struct rpc_result *out)
{
    (void)env;
    rpc_to_core(&etcdserverpb__lease_time_to_live_request__descriptor, RPC_LOCAL_LEASE_TTL, msg,
                len, out);
}

void rpc_lease_leases(const struct rpc_env *env, const uint8_t *msg, size_t len,
                      struct rpc_result *out)
{
    (void)env;
    rpc_to_core(&etcdserverpb__lease_leases_request__descriptor, RPC_LOCAL_LEASE_LEASES, msg, len,
                out);
}

/* ---- core: apply ---- */

bool rpc_lease_exists(const struct rpc_env *env, int64_t id)
{
    return env->leases != NULL && lease_get(env->leases, id, NULL) == 0;
}

int rpc_lease_attach(const struct rpc_env *env, const uint8_t *key, size_t len, int64_t id)
{
    int rv;

    if (env->leases == NULL)
        return id != 0 ? RPC_E_LEASE_NOT_FOUND : -1;
    rv = lease_attach(env->leases, key, len, id);
    if (rv == LEASE_ERR_NOT_FOUND)
        return RPC_E_LEASE_NOT_FOUND;
    if (rv != 0)
        return RPC_E_NOMEM; /* FULL, NOMEM: the same on every member but NOMEM */
    return -1;
}

void rpc_lease_detach(const struct rpc_env *env, const struct mvcc_kv *kv)
{
    if (env->leases != NULL && kv->lease != 0)
        lease_detach(env->leases, kv->key, kv->key_len);
}

static void fail_lease(struct rpc_result *out, int rv)
{
    switch (rv) {
    case LEASE_ERR_NOT_FOUND:
        rpc_fail(out, RPC_E_LEASE_NOT_FOUND);
        break;
    case LEASE_ERR_EXISTS:
        rpc_fail(out, RPC_E_LEASE_EXISTS);
        break;
    case LEASE_ERR_TTL_TOO_LARGE:
        rpc_fail(out, RPC_E_LEASE_TTL_TOO_LARGE);
        break;
    default:
        rpc_fail(out, RPC_E_NOMEM);
        break;
    }
}

void rpc_apply_lease_grant(const struct rpc_env *env, const Etcdserverpb__LeaseGrantRequest *r,
                           bool want_reply, struct rpc_result *out)
{
    Etcdserverpb__LeaseGrantResponse resp = ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    int64_t granted = 0;
    int rv =
        env->leases != NULL ? lease_grant(env->leases, r->id, r->ttl, &granted) : LEASE_ERR_NOMEM;

    if (rv != 0) {
        fail_lease(out, rv);
        return;
    }
    if (!want_reply)
        return;
    rpc_header(env, &hdr, mvcc_current_revision(env->store));
    resp.header = &hdr;
    resp.id = r->id;
    resp.ttl = granted;
    rpc_reply_msg(out, &resp.base);
}

/* etcd's lessor.Revoke: the attached keys go in one write txn, in key
 * order; a lease without keys changes no revision. */
void rpc_apply_lease_revoke(const struct rpc_env *env, const Etcdserverpb__LeaseRevokeRequest *r,
                            bool want_reply, struct rpc_result *out)
{
    Etcdserverpb__LeaseRevokeResponse resp = ETCDSERVERPB__LEASE_REVOKE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    struct lease_keys keys = {0};
    int rv = env->leases != NULL ? lease_revoke(env->leases, r->id, &keys) : LEASE_ERR_NOT_FOUND;

    if (rv != 0) {
        lease_keys_free(&keys);
        fail_lease(out, rv);
        return;
    }
    if (keys.n != 0) {
        mvcc_txn_begin(env->store);
        for (size_t i = 0; i < keys.n; i++) {
            if (mvcc_txn_delete_range(env->store, keys.v[i].key, keys.v[i].len, NULL, 0, NULL,
                                      NULL) < 0)
                rv = -1;
        }
        mvcc_txn_end(env->store);
    }
    lease_keys_free(&keys);
    if (rv != 0) {
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    if (!want_reply)
        return;
    rpc_header(env, &hdr, mvcc_current_revision(env->store));
    resp.header = &hdr;
    rpc_reply_msg(out, &resp.base);
}

/* Checkpoints of leases revoked since are ignored, as etcd's apply. */
void rpc_apply_lease_checkpoint(const struct rpc_env *env,
                                const Etcdserverpb__LeaseCheckpointRequest *r, bool want_reply,
                                struct rpc_result *out)
{
    Etcdserverpb__LeaseCheckpointResponse resp = ETCDSERVERPB__LEASE_CHECKPOINT_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;

    for (size_t i = 0; env->leases != NULL && i < r->n_checkpoints; i++)
        lease_checkpoint(env->leases, r->checkpoints[i]->id, r->checkpoints[i]->remaining_ttl);
    if (!want_reply)
        return;
    rpc_header(env, &hdr, mvcc_current_revision(env->store));
    resp.header = &hdr;
    rpc_reply_msg(out, &resp.base);
}

/* ---- core: answers from the table ---- */

/* Keys of lease id from the MVCC index (a follower's TimeToLive). */
struct key_scan {
    int64_t id;
    ProtobufCBinaryData *v;
    size_t n, cap;
    bool nomem;
};

static void scan_key(void *arg, const struct mvcc_kv *kv)
{
    struct key_scan *s = arg;

    if (kv->lease != s->id || s->nomem)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap != 0 ? s->cap * 2 : 16;
        ProtobufCBinaryData *v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL) {
            s->nomem = true;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n].data = malloc(kv->key_len);
    if (s->v[s->n].data == NULL) {
        s->nomem = true;
        return;
    }
    memcpy(s->v[s->n].data, kv->key, kv->key_len);
    s->v[s->n++].len = kv->key_len;
}

static void scan_keys(const struct rpc_env *env, struct key_scan *s)
{
    static const uint8_t zero = 0;
    struct mvcc_range_req q;
    struct mvcc_range_res res;

    memset(&q, 0, sizeof(q));
    memset(&res, 0, sizeof(res));
    q.key = &zero;
    q.key_len = 1;
    q.range_end = &zero;
    q.range_end_len = 1;
    q.keys_only = true;
    mvcc_read_begin(env->reader);
    if (mvcc_range_each(env->reader, &q, scan_key, s, &res) != MVCC_OK)
        s->nomem = true;
    mvcc_read_end(env->reader);
}

static void local_ttl(const struct rpc_env *env, const Etcdserverpb__LeaseTimeToLiveRequest *r,
                      int64_t now_ms, struct rpc_result *out)
{
    Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    struct lease_ttl t;
    struct lease_info info;
    struct key_scan scan = {.id = r->id};
    ProtobufCBinaryData *keys = NULL;
    int rv = lease_time_to_live(env->leases, r->id, now_ms, r->keys, &t);

    resp.id = r->id;
    if (rv == 0) {
        resp.ttl = t.ttl_s;
        resp.grantedttl = t.granted_ttl_s;
        if (t.keys.n != 0 && (keys = calloc(t.keys.n, sizeof(*keys))) == NULL)
            rv = LEASE_ERR_NOMEM;
        for (size_t i = 0; keys != NULL && i < t.keys.n; i++) {
            keys[i].data = (uint8_t *)t.keys.v[i].key;
            keys[i].len = t.keys.v[i].len;
        }
        resp.n_keys = keys != NULL ? t.keys.n : 0;
        resp.keys = keys;
    } else if (rv == LEASE_ERR_NOT_PRIMARY && lease_get(env->leases, r->id, &info) == 0) {
        /* A follower: from replicated state (see the top of this file). */
        rv = 0;
        resp.grantedttl = info.ttl_s;
        resp.ttl = info.checkpoint_ms > 0 ? info.checkpoint_ms / 1000 : info.ttl_s;
        if (r->keys && info.n_keys != 0) {
            scan_keys(env, &scan);
            rv = scan.nomem ? LEASE_ERR_NOMEM : 0;
            resp.n_keys = scan.n;
            resp.keys = scan.v;
        }
    } else if (rv == LEASE_ERR_NOT_FOUND || rv == LEASE_ERR_NOT_PRIMARY) {
        rv = 0; /* etcd's answer for an unknown lease: TTL -1, no error */
        resp.ttl = -1;
    }
    if (rv != 0) {
        rpc_fail(out, RPC_E_NOMEM);
    } else {
        rpc_header(env, &hdr, mvcc_current_revision(env->store));
        resp.header = &hdr;
        rpc_reply_msg(out, &resp.base);
    }
    free(keys);
    lease_keys_free(&t.keys);
    for (size_t i = 0; i < scan.n; i++)
        free(scan.v[i].data);
    free(scan.v);
}

static void local_leases(const struct rpc_env *env, struct rpc_result *out)
{
    Etcdserverpb__LeaseLeasesResponse resp = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    Etcdserverpb__LeaseStatus *st = NULL;
    Etcdserverpb__LeaseStatus **ptrs = NULL;
    int64_t *ids = NULL;
    size_t n = 0;

    if (lease_list(env->leases, &ids, &n) != 0 ||
        (n != 0 &&
         ((st = calloc(n, sizeof(*st))) == NULL || (ptrs = calloc(n, sizeof(*ptrs))) == NULL))) {
        rpc_fail(out, RPC_E_NOMEM);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        etcdserverpb__lease_status__init(&st[i]);
        st[i].id = ids[i];
        ptrs[i] = &st[i];
    }
    rpc_header(env, &hdr, mvcc_current_revision(env->store));
    resp.header = &hdr;
    resp.n_leases = n;
    resp.leases = ptrs;
    rpc_reply_msg(out, &resp.base);
done:
    free(ids);
    free(st);
    free(ptrs);
}

/* An entry clearing lease id's checkpoint (etcd's Renew does so). */
static void clear_checkpoint(int64_t id, struct rpc_result *out)
{
    Etcdserverpb__LeaseCheckpointRequest req = ETCDSERVERPB__LEASE_CHECKPOINT_REQUEST__INIT;
    Etcdserverpb__LeaseCheckpoint cp = ETCDSERVERPB__LEASE_CHECKPOINT__INIT;
    Etcdserverpb__LeaseCheckpoint *ptr = &cp;
    size_t n;

    cp.id = id;
    req.n_checkpoints = 1;
    req.checkpoints = &ptr;
    n = etcdserverpb__lease_checkpoint_request__get_packed_size(&req);
    out->side = malloc(1 + n);
    if (out->side == NULL)
        return;
    out->side[0] = RPC_ENTRY_LEASE_CHECKPOINT;
    etcdserverpb__lease_checkpoint_request__pack(&req, out->side + 1);
    out->side_len = 1 + n;
}

/* etcd's LeaseRenew on the leader. An unknown lease answers TTL 0 (the
 * KeepAlive stream's answer); so does one whose deadline passed (etcd
 * would wait for its revoke to apply and then answer the same). */
static void local_keepalive(const struct rpc_env *env, const Etcdserverpb__LeaseKeepAliveRequest *r,
                            int64_t now_ms, struct rpc_result *out)
{
    Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    bool clear = false;
    int64_t ttl = 0;
    int rv = lease_renew(env->leases, r->id, now_ms, &ttl, &clear);

    if (rv == LEASE_ERR_NOT_PRIMARY) {
        rpc_fail_code(out, RPC_UNAVAILABLE, RPC_MSG_NOT_LEADER);
        return;
    }
    rpc_header(env, &hdr, mvcc_current_revision(env->store));
    resp.header = &hdr;
    resp.id = r->id;
    resp.ttl = rv == 0 ? ttl : 0;
    rpc_reply_msg(out, &resp.base);
    if (rv == 0 && clear && out->code == RPC_OK)
        clear_checkpoint(r->id, out);
}

#define LOCAL_MSG(type, fn, call)                                                                  \
    do {                                                                                           \
        type *r = fn##__unpack(NULL, len - 1, req + 1);                                            \
        if (r == NULL) {                                                                           \
            rpc_fail_unmarshal(out, req + 1, len - 1);                                             \
            return;                                                                                \
        }                                                                                          \
        call;                                                                                      \
        fn##__free_unpacked(r, NULL);                                                              \
    } while (0)

void rpc_lease_local(const struct rpc_env *env, const uint8_t *req, size_t len, int64_t now_ms,
                     struct rpc_result *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0 || env->leases == NULL) {
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    switch (req[0]) {
    case RPC_LOCAL_LEASE_TTL:
        LOCAL_MSG(Etcdserverpb__LeaseTimeToLiveRequest, etcdserverpb__lease_time_to_live_request,
                  local_ttl(env, r, now_ms, out));
        break;
    case RPC_LOCAL_LEASE_LEASES:
        local_leases(env, out);
        break;
    case RPC_LOCAL_LEASE_KEEPALIVE:
        LOCAL_MSG(Etcdserverpb__LeaseKeepAliveRequest, etcdserverpb__lease_keep_alive_request,
                  local_keepalive(env, r, now_ms, out));
        break;
    default:
        rpc_fail_code(out, RPC_INTERNAL, "cetcd: not a lease request");
        break;
    }
}
