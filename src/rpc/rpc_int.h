/*
 * rpc_int.h — what the files of the rpc module share and nothing else sees:
 * etcd's error table, response-header filling and message packing.
 */
#ifndef CETCD_RPC_INT_H
#define CETCD_RPC_INT_H

#include "rpc.h"

#include "mvcc.h"

#include "kv.pb-c.h"
#include "rpc.pb-c.h"

/* etcd's client-visible errors: name, gRPC code, exact grpc-message.
 * One list; rpc_errors[] in service.c is generated from it. */
#define RPC_ERRORS(X)                                                                              \
    X(EMPTY_KEY, RPC_INVALID_ARGUMENT, "etcdserver: key is not provided")                          \
    X(KEY_NOT_FOUND, RPC_INVALID_ARGUMENT, "etcdserver: key not found")                            \
    X(VALUE_PROVIDED, RPC_INVALID_ARGUMENT, "etcdserver: value is provided")                       \
    X(LEASE_PROVIDED, RPC_INVALID_ARGUMENT, "etcdserver: lease is provided")                       \
    X(TOO_LARGE, RPC_INVALID_ARGUMENT, "etcdserver: request is too large")                         \
    X(INVALID_SORT, RPC_INVALID_ARGUMENT, "etcdserver: invalid sort option")                       \
    X(LEASE_NOT_FOUND, RPC_NOT_FOUND, "etcdserver: requested lease not found")                     \
    X(LEASE_EXISTS, RPC_FAILED_PRECONDITION, "etcdserver: lease already exists")                   \
    X(LEASE_TTL_TOO_LARGE, RPC_OUT_OF_RANGE, "etcdserver: too large lease TTL")                    \
    X(FUTURE_REV, RPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")    \
    X(COMPACTED, RPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")       \
    X(TOO_MANY_OPS, RPC_INVALID_ARGUMENT, "etcdserver: too many operations in txn request")        \
    X(DUPLICATE_KEY, RPC_INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")       \
    X(NOSPACE, RPC_RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")                \
    X(NOMEM, RPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory")                                  \
    X(NO_LEADER, RPC_UNAVAILABLE, "etcdserver: no leader")                                         \
    X(NOT_FOR_LEARNER, RPC_UNAVAILABLE, "etcdserver: rpc not supported for learner")

enum rpc_err {
#define RPC_ERR_ENUM(name, code, msg) RPC_E_##name,
    RPC_ERRORS(RPC_ERR_ENUM)
#undef RPC_ERR_ENUM
        RPC_E__COUNT
};

/* Fills out as a REPLY carrying error e. */
void rpc_fail(struct rpc_result *out, enum rpc_err e);
/* A request that protobuf-c could not decode: INTERNAL, "grpc: error
 * unmarshalling request: ..." as grpc-go (and so etcd) answers. */
void rpc_fail_unmarshal(struct rpc_result *out, const uint8_t *msg, size_t len);
/* Fills out as a REPLY with code and a static message. */
void rpc_fail_code(struct rpc_result *out, int code, const char *message);

/* Fills a response header for this member at `revision`. */
void rpc_header(const struct rpc_env *env, Etcdserverpb__ResponseHeader *h, int64_t revision);

/* Packs msg into a malloc'd buffer and fills out as an OK REPLY (or as a
 * NOMEM error). */
void rpc_reply_msg(struct rpc_result *out, const ProtobufCMessage *msg);

/* Shared by the KV handlers. */
void rpc_range_req(const Etcdserverpb__RangeRequest *r, struct mvcc_range_req *q);
/* Fills out as a proposal of an entry of `type` carrying msg (checked
 * against --max-request-bytes). */
void rpc_propose(const struct rpc_env *env, uint8_t type, const uint8_t *msg, size_t len,
                 struct rpc_result *out);
/* Would a write of `cost` bytes take the state past --quota-backend-bytes?
 * If so, also asks (out->side) for the NOSPACE alarm to be raised. */
bool rpc_quota_exceeded(const struct rpc_env *env, size_t cost);
void rpc_quota_fail(const struct rpc_env *env, struct rpc_result *out);
bool rpc_alarm_active(const struct rpc_env *env, int type);
bool rpc_txn_has_put(const Etcdserverpb__TxnRequest *r);
/* A linearizable read here must first get a read index from the core. */
bool rpc_needs_read_index(const struct rpc_env *env);
/* Core: a committed Txn. */
void rpc_apply_txn(const struct rpc_env *env, const Etcdserverpb__TxnRequest *r, bool want_reply,
                   struct rpc_result *out);

/* Handlers. */
void rpc_kv_txn(const struct rpc_env *env, const uint8_t *msg, size_t len, struct rpc_result *out);
void rpc_kv_compact(const struct rpc_env *env, const uint8_t *msg, size_t len,
                    struct rpc_result *out);
void rpc_maint_alarm(const struct rpc_env *env, const uint8_t *msg, size_t len,
                     struct rpc_result *out);
void rpc_maint_hash(const struct rpc_env *env, const uint8_t *msg, size_t len,
                    struct rpc_result *out);
void rpc_maint_hash_kv(const struct rpc_env *env, const uint8_t *msg, size_t len,
                       struct rpc_result *out);
void rpc_maint_defragment(const struct rpc_env *env, const uint8_t *msg, size_t len,
                          struct rpc_result *out);
void rpc_kv_range(const struct rpc_env *env, const uint8_t *msg, size_t len,
                  struct rpc_result *out);
void rpc_kv_put(const struct rpc_env *env, const uint8_t *msg, size_t len, struct rpc_result *out);
void rpc_kv_delete_range(const struct rpc_env *env, const uint8_t *msg, size_t len,
                         struct rpc_result *out);
void rpc_maint_status(const struct rpc_env *env, const uint8_t *msg, size_t len,
                      struct rpc_result *out);
/* Checks that msg decodes as `desc`, then hands [type][msg] to the core,
 * which answers it (membership, MoveLeader, lease queries). */
void rpc_to_core(const ProtobufCMessageDescriptor *desc, uint8_t type, const uint8_t *msg,
                 size_t len, struct rpc_result *out);
void rpc_cluster_member_add(const struct rpc_env *env, const uint8_t *msg, size_t len,
                            struct rpc_result *out);
void rpc_cluster_member_remove(const struct rpc_env *env, const uint8_t *msg, size_t len,
                               struct rpc_result *out);
void rpc_cluster_member_update(const struct rpc_env *env, const uint8_t *msg, size_t len,
                               struct rpc_result *out);
void rpc_cluster_member_promote(const struct rpc_env *env, const uint8_t *msg, size_t len,
                                struct rpc_result *out);
void rpc_maint_move_leader(const struct rpc_env *env, const uint8_t *msg, size_t len,
                           struct rpc_result *out);
void rpc_lease_grant(const struct rpc_env *env, const uint8_t *msg, size_t len,
                     struct rpc_result *out);
void rpc_lease_revoke(const struct rpc_env *env, const uint8_t *msg, size_t len,
                      struct rpc_result *out);
void rpc_lease_time_to_live(const struct rpc_env *env, const uint8_t *msg, size_t len,
                            struct rpc_result *out);
void rpc_lease_leases(const struct rpc_env *env, const uint8_t *msg, size_t len,
                      struct rpc_result *out);
/* Core: applies a committed lease entry (apply.c dispatches on its type). */
void rpc_apply_lease_grant(const struct rpc_env *env, const Etcdserverpb__LeaseGrantRequest *r,
                           bool want_reply, struct rpc_result *out);
void rpc_apply_lease_revoke(const struct rpc_env *env, const Etcdserverpb__LeaseRevokeRequest *r,
                            bool want_reply, struct rpc_result *out);
void rpc_apply_lease_checkpoint(const struct rpc_env *env,
                                const Etcdserverpb__LeaseCheckpointRequest *r, bool want_reply,
                                struct rpc_result *out);
/* Core: a Put of key with lease id (0: none) is about to be applied:
 * checks the lease exists and attaches the key (detaches for 0). -1 if
 * fine, else an enum rpc_err (nothing changed). */
int rpc_lease_attach(const struct rpc_env *env, const uint8_t *key, size_t len, int64_t id);
/* Core: a deleted key (its previous version kv) leaves its lease. */
void rpc_lease_detach(const struct rpc_env *env, const struct mvcc_kv *kv);
/* Does lease id exist (core: in env->leases; shards know none)? */
bool rpc_lease_exists(const struct rpc_env *env, int64_t id);
void rpc_cluster_member_list(const struct rpc_env *env, const uint8_t *msg, size_t len,
                             struct rpc_result *out);

#endif
