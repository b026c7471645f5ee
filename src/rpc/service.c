/*
 * service.c — routes a gRPC method path to its handler, and the pieces
 * every handler uses: etcd's error table, response headers, packing.
 *
 * The table lists every method of etcd's v3 API (plus the lock and
 * election services). A method without a handler yet answers UNIMPLEMENTED
 * with a message naming it; a path that is no method at all gets the
 * messages grpc-go gives ("unknown service ...", "unknown method ...").
 * Runs on the shard thread that received the request; no shared state.
 */
#include "rpc_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*rpc_handler)(const struct rpc_env *env, const uint8_t *msg, size_t len,
                            struct rpc_result *out);

struct rpc_method {
    const char *path;
    rpc_handler fn; /* NULL: not implemented yet */
};

static const struct rpc_method methods[] = {
    {"/etcdserverpb.KV/Range", rpc_kv_range},
    {"/etcdserverpb.KV/Put", rpc_kv_put},
    {"/etcdserverpb.KV/DeleteRange", rpc_kv_delete_range},
    {"/etcdserverpb.KV/Txn", rpc_kv_txn},
    {"/etcdserverpb.KV/Compact", rpc_kv_compact},
    {"/etcdserverpb.Watch/Watch", NULL},
    {"/etcdserverpb.Lease/LeaseGrant", rpc_lease_grant},
    {"/etcdserverpb.Lease/LeaseRevoke", rpc_lease_revoke},
    {"/etcdserverpb.Lease/LeaseKeepAlive", NULL},
    {"/etcdserverpb.Lease/LeaseTimeToLive", rpc_lease_time_to_live},
    {"/etcdserverpb.Lease/LeaseLeases", rpc_lease_leases},
    {"/etcdserverpb.Cluster/MemberAdd", rpc_cluster_member_add},
    {"/etcdserverpb.Cluster/MemberRemove", rpc_cluster_member_remove},
    {"/etcdserverpb.Cluster/MemberUpdate", rpc_cluster_member_update},
    {"/etcdserverpb.Cluster/MemberList", rpc_cluster_member_list},
    {"/etcdserverpb.Cluster/MemberPromote", rpc_cluster_member_promote},
    {"/etcdserverpb.Maintenance/Alarm", rpc_maint_alarm},
    {"/etcdserverpb.Maintenance/Status", rpc_maint_status},
    {"/etcdserverpb.Maintenance/Defragment", rpc_maint_defragment},
    {"/etcdserverpb.Maintenance/Hash", rpc_maint_hash},
    {"/etcdserverpb.Maintenance/HashKV", rpc_maint_hash_kv},
    {"/etcdserverpb.Maintenance/Snapshot", NULL},
    {"/etcdserverpb.Maintenance/MoveLeader", rpc_maint_move_leader},
    {"/etcdserverpb.Maintenance/Downgrade", NULL},
    {"/etcdserverpb.Auth/AuthEnable", NULL},
    {"/etcdserverpb.Auth/AuthDisable", NULL},
    {"/etcdserverpb.Auth/AuthStatus", NULL},
    {"/etcdserverpb.Auth/Authenticate", NULL},
    {"/etcdserverpb.Auth/UserAdd", NULL},
    {"/etcdserverpb.Auth/UserGet", NULL},
    {"/etcdserverpb.Auth/UserList", NULL},
    {"/etcdserverpb.Auth/UserDelete", NULL},
    {"/etcdserverpb.Auth/UserChangePassword", NULL},
    {"/etcdserverpb.Auth/UserGrantRole", NULL},
    {"/etcdserverpb.Auth/UserRevokeRole", NULL},
    {"/etcdserverpb.Auth/RoleAdd", NULL},
    {"/etcdserverpb.Auth/RoleGet", NULL},
    {"/etcdserverpb.Auth/RoleList", NULL},
    {"/etcdserverpb.Auth/RoleDelete", NULL},
    {"/etcdserverpb.Auth/RoleGrantPermission", NULL},
    {"/etcdserverpb.Auth/RoleRevokePermission", NULL},
    {"/v3lockpb.Lock/Lock", NULL},
    {"/v3lockpb.Lock/Unlock", NULL},
    {"/v3electionpb.Election/Campaign", NULL},
    {"/v3electionpb.Election/Proclaim", NULL},
    {"/v3electionpb.Election/Leader", NULL},
    {"/v3electionpb.Election/Observe", NULL},
    {"/v3electionpb.Election/Resign", NULL},
};

#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

static const struct {
    int code;
    const char *message;
} rpc_errors[RPC_E__COUNT] = {
#define RPC_ERR_ROW(name, c, m) [RPC_E_##name] = {c, m},
    RPC_ERRORS(RPC_ERR_ROW)
#undef RPC_ERR_ROW
};

void rpc_fail(struct rpc_result *out, enum rpc_err e)
{
    rpc_fail_code(out, rpc_errors[e].code, rpc_errors[e].message);
}

void rpc_fail_code(struct rpc_result *out, int code, const char *message)
{
    out->action = RPC_ACT_REPLY;
    out->code = code;
    out->message = message;
    out->body = NULL;
    out->len = 0;
}

/* Why protobuf-c refused a message, in the words of Go's decoder (which
 * etcd's clients see): a field cut short is "unexpected EOF"; a wire type
 * no proto3 message may use is "illegal wireType". protobuf-c only says
 * that decoding failed, so the bytes are walked once more to tell which. */
static const char *unmarshal_reason(const uint8_t *p, size_t len, char *buf, size_t cap)
{
    size_t i = 0;

    while (i < len) {
        uint64_t key = 0;
        unsigned shift = 0;
        for (;;) {
            if (i >= len || shift > 63)
                return "unexpected EOF";
            key |= (uint64_t)(p[i] & 0x7f) << shift;
            shift += 7;
            if ((p[i++] & 0x80) == 0)
                break;
        }
        unsigned wt = (unsigned)(key & 7);
        uint64_t n = 0;
        shift = 0;
        switch (wt) {
        case 0:
            while (i < len && (p[i] & 0x80) != 0)
                i++;
            if (i++ >= len)
                return "unexpected EOF";
            break;
        case 1:
            if (len - i < 8)
                return "unexpected EOF";
            i += 8;
            break;
        case 5:
            if (len - i < 4)
                return "unexpected EOF";
            i += 4;
            break;
        case 2:
            for (;;) {
                if (i >= len || shift > 63)
                    return "unexpected EOF";
                n |= (uint64_t)(p[i] & 0x7f) << shift;
                shift += 7;
                if ((p[i++] & 0x80) == 0)
                    break;
            }
            if (n > len - i)
                return "unexpected EOF";
            i += (size_t)n;
            break;
        default:
            snprintf(buf, cap, "proto: illegal wireType %u", wt);
            return buf;
        }
    }
    return "proto: cannot parse invalid wire-format data";
}

void rpc_fail_unmarshal(struct rpc_result *out, const uint8_t *msg, size_t len)
{
    static __thread char text[160];
    char why[64];

    snprintf(text, sizeof(text), "grpc: error unmarshalling request: %s",
             unmarshal_reason(msg, len, why, sizeof(why)));
    rpc_fail_code(out, RPC_INTERNAL, text);
}

uint64_t rpc_member_load(const uint64_t *field)
{
    return atomic_load_explicit((_Atomic uint64_t *)field, memory_order_acquire);
}

void rpc_member_store(uint64_t *field, uint64_t v)
{
    atomic_store_explicit((_Atomic uint64_t *)field, v, memory_order_release);
}

bool rpc_needs_read_index(const struct rpc_env *env)
{
    return !env->linearized && rpc_member_load(&env->member->cluster_size) > 1;
}

uint8_t *rpc_read_barrier_encode(const char *path, const uint8_t *msg, size_t len, size_t *out_len)
{
    size_t p = strlen(path);
    uint8_t *buf;

    if (p > RPC_PATH_BYTES_MAX)
        return NULL;
    buf = malloc(3 + p + len);
    if (buf == NULL)
        return NULL;
    buf[0] = RPC_LOCAL_READ;
    buf[1] = (uint8_t)p;
    buf[2] = (uint8_t)(p >> 8);
    memcpy(buf + 3, path, p);
    if (len != 0)
        memcpy(buf + 3 + p, msg, len);
    *out_len = 3 + p + len;
    return buf;
}

int rpc_read_barrier_decode(const uint8_t *buf, size_t len, char *path, size_t path_cap,
                            const uint8_t **msg, size_t *msg_len)
{
    size_t p;

    if (len < 3 || buf[0] != RPC_LOCAL_READ)
        return -1;
    p = (size_t)buf[1] | (size_t)buf[2] << 8;
    if (p >= path_cap || 3 + p > len)
        return -1;
    memcpy(path, buf + 3, p);
    path[p] = '\0';
    *msg = buf + 3 + p;
    *msg_len = len - 3 - p;
    return 0;
}

void rpc_header(const struct rpc_env *env, Etcdserverpb__ResponseHeader *h, int64_t revision)
{
    etcdserverpb__response_header__init(h);
    h->cluster_id = env->member->cluster_id;
    h->member_id = env->member->member_id;
    h->revision = revision;
    h->raft_term = rpc_member_load(&env->member->raft_term);
}

void rpc_reply_msg(struct rpc_result *out, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len != 0 ? len : 1);

    if (buf == NULL) {
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    protobuf_c_message_pack(msg, buf);
    out->action = RPC_ACT_REPLY;
    out->code = RPC_OK;
    out->message = NULL;
    out->body = buf;
    out->len = len;
}

/* grpc-go's answer for a path that names no method: "malformed method
 * name" without a second slash, otherwise an unknown service or method. */
static void unknown_path(const char *path, struct rpc_result *out)
{
    static __thread char msg[RPC_PATH_BYTES_MAX + 64];
    const char *slash = path[0] == '/' ? strchr(path + 1, '/') : NULL;
    size_t i;

    if (slash == NULL) {
        snprintf(msg, sizeof(msg), "malformed method name: \"%s\"", path);
        rpc_fail_code(out, RPC_UNIMPLEMENTED, msg);
        return;
    }
    for (i = 0; i < N_METHODS; i++) {
        const char *m = methods[i].path;
        if (strncmp(m, path, (size_t)(slash - path) + 1) == 0) {
            snprintf(msg, sizeof(msg), "unknown method %s for service %.*s", slash + 1,
                     (int)(slash - path - 1), path + 1);
            rpc_fail_code(out, RPC_UNIMPLEMENTED, msg);
            return;
        }
    }
    snprintf(msg, sizeof(msg), "unknown service %.*s", (int)(slash - path - 1), path + 1);
    rpc_fail_code(out, RPC_UNIMPLEMENTED, msg);
}

/* etcd's checks before any method: a client that asked for a leader
 * (hasleader metadata) when there is none, and a learner, which serves
 * only Status and serializable Range (the latter checked in kv.c). */
static bool refused_here(const struct rpc_env *env, const char *path, struct rpc_result *out)
{
    if (rpc_member_load(&env->member->is_learner) != 0 &&
        strcmp(path, "/etcdserverpb.Maintenance/Status") != 0 &&
        strcmp(path, "/etcdserverpb.KV/Range") != 0) {
        rpc_fail(out, RPC_E_NOT_FOR_LEARNER);
        return true;
    }
    if (env->require_leader && rpc_member_load(&env->member->leader) == 0) {
        rpc_fail(out, RPC_E_NO_LEADER);
        return true;
    }
    return false;
}

void rpc_dispatch(const struct rpc_env *env, const char *path, const uint8_t *msg, size_t len,
                  struct rpc_result *out)
{
    static __thread char msgbuf[RPC_PATH_BYTES_MAX + 64];
    size_t i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < N_METHODS; i++) {
        if (strcmp(methods[i].path, path) != 0)
            continue;
        if (refused_here(env, path, out))
            return;
        if (methods[i].fn == NULL) {
            snprintf(msgbuf, sizeof(msgbuf), "cetcd: method %s is not implemented yet", path);
            rpc_fail_code(out, RPC_UNIMPLEMENTED, msgbuf);
            return;
        }
        methods[i].fn(env, msg, len, out);
        return;
    }
    unknown_path(path, out);
}
