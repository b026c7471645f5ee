/*
 * cluster.c — the Cluster and Maintenance services, shard side: Status and
 * MemberList from the member description and the figures the core
 * publishes (term, commit and applied index, database size, alarms) with
 * atomic stores; Hash and HashKV from the MVCC index; Alarm changes and
 * Defragment handed to the core.
 */
#include "rpc_int.h"

#include "mvcc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Active alarms as Status lists them: the AlarmMember in protobuf text
 * form, as etcd prints it ("memberID:<id> alarm:NOSPACE "). */
static size_t status_errors(const struct rpc_env *env, char **errors, char texts[][64])
{
    static const char *const names[] = {"NONE", "NOSPACE", "CORRUPT"};
    uint64_t mask = rpc_member_load(&env->member->alarms);
    size_t n = 0;

    if (rpc_member_load(&env->member->leader) == 0) {
        snprintf(texts[n], 64, "etcdserver: no leader");
        errors[n] = texts[n];
        n++;
    }
    for (int t = 1; t <= 2; t++) {
        if ((mask & (1ull << t)) == 0)
            continue;
        snprintf(texts[n], 64, "memberID:%llu alarm:%s ",
                 (unsigned long long)env->member->member_id, names[t]);
        errors[n] = texts[n];
        n++;
    }
    return n;
}

void rpc_maint_status(const struct rpc_env *env, const uint8_t *msg, size_t len,
                      struct rpc_result *out)
{
    char *errors[3];
    char texts[3][64];
    Etcdserverpb__StatusRequest *r = etcdserverpb__status_request__unpack(NULL, len, msg);
    Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    struct rpc_member *m = env->member;

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    etcdserverpb__status_request__free_unpacked(r, NULL);
    rpc_header(env, &hdr, mvcc_current_revision(env->store));
    resp.header = &hdr;
    resp.version = (char *)RPC_ETCD_VERSION;
    resp.dbsize = (int64_t)rpc_member_load(&m->db_size_bytes);
    resp.leader = rpc_member_load(&m->leader);
    resp.raftindex = rpc_member_load(&m->commit_index);
    resp.raftterm = rpc_member_load(&m->raft_term);
    resp.raftappliedindex = rpc_member_load(&m->applied_index);
    resp.dbsizeinuse = (int64_t)mvcc_size_bytes(env->store);
    resp.islearner = rpc_member_load(&m->is_learner) != 0;
    resp.n_errors = status_errors(env, errors, texts);
    resp.errors = errors;
    rpc_reply_msg(out, &resp.base);
}

/* Membership requests and MoveLeader are carried out by the core (the
 * member list is replicated state it keeps, src/server/roster.c): once
 * the request decodes, it goes there as [type][request] and the core
 * answers it. */
static void to_core(uint8_t type, const uint8_t *msg, size_t len, struct rpc_result *out)
{
    uint8_t *body = malloc(1 + len);

    if (body == NULL) {
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    body[0] = type;
    if (len != 0)
        memcpy(body + 1, msg, len);
    out->action = RPC_ACT_PROPOSE;
    out->body = body;
    out->len = 1 + len;
}

void rpc_to_core(const ProtobufCMessageDescriptor *desc, uint8_t type, const uint8_t *msg,
                 size_t len, struct rpc_result *out)
{
    ProtobufCMessage *r = protobuf_c_message_unpack(desc, NULL, len, msg);

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    protobuf_c_message_free_unpacked(r, NULL);
    to_core(type, msg, len, out);
}

void rpc_cluster_member_list(const struct rpc_env *env, const uint8_t *msg, size_t len,
                             struct rpc_result *out)
{
    (void)env;
    rpc_to_core(&etcdserverpb__member_list_request__descriptor, RPC_LOCAL_MEMBER_LIST, msg, len,
                out);
}

void rpc_cluster_member_add(const struct rpc_env *env, const uint8_t *msg, size_t len,
                            struct rpc_result *out)
{
    (void)env;
    rpc_to_core(&etcdserverpb__member_add_request__descriptor, RPC_LOCAL_MEMBER_ADD, msg, len, out);
}

void rpc_cluster_member_remove(const struct rpc_env *env, const uint8_t *msg, size_t len,
                               struct rpc_result *out)
{
    (void)env;
    rpc_to_core(&etcdserverpb__member_remove_request__descriptor, RPC_LOCAL_MEMBER_REMOVE, msg, len,
                out);
}

void rpc_cluster_member_update(const struct rpc_env *env, const uint8_t *msg, size_t len,
                               struct rpc_result *out)
{
    (void)env;
    rpc_to_core(&etcdserverpb__member_update_request__descriptor, RPC_LOCAL_MEMBER_UPDATE, msg, len,
                out);
}

void rpc_cluster_member_promote(const struct rpc_env *env, const uint8_t *msg, size_t len,
                                struct rpc_result *out)
{
    (void)env;
    rpc_to_core(&etcdserverpb__member_promote_request__descriptor, RPC_LOCAL_MEMBER_PROMOTE, msg,
                len, out);
}

void rpc_maint_move_leader(const struct rpc_env *env, const uint8_t *msg, size_t len,
                           struct rpc_result *out)
{
    (void)env;
    rpc_to_core(&etcdserverpb__move_leader_request__descriptor, RPC_LOCAL_MOVE_LEADER, msg, len,
                out);
}

/* ---- Alarm ---- */

static void alarm_list(const struct rpc_env *env, struct rpc_result *out)
{
    Etcdserverpb__AlarmResponse resp = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    Etcdserverpb__AlarmMember members[3];
    Etcdserverpb__AlarmMember *ptrs[3];
    uint64_t mask = rpc_member_load(&env->member->alarms);
    int t;

    for (t = ETCDSERVERPB__ALARM_TYPE__NOSPACE; t <= ETCDSERVERPB__ALARM_TYPE__CORRUPT; t++) {
        if ((mask & (1ull << t)) == 0)
            continue;
        etcdserverpb__alarm_member__init(&members[resp.n_alarms]);
        members[resp.n_alarms].memberid = env->member->member_id;
        members[resp.n_alarms].alarm = (Etcdserverpb__AlarmType)t;
        ptrs[resp.n_alarms] = &members[resp.n_alarms];
        resp.n_alarms++;
    }
    resp.alarms = ptrs;
    rpc_reply_msg(out, &resp.base); /* etcd's Alarm answers carry no header */
}

/* GET lists the alarms; ACTIVATE and DEACTIVATE change replicated state,
 * so they go through the log (applied in apply.c). */
void rpc_maint_alarm(const struct rpc_env *env, const uint8_t *msg, size_t len,
                     struct rpc_result *out)
{
    Etcdserverpb__AlarmRequest *r = etcdserverpb__alarm_request__unpack(NULL, len, msg);

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    if (r->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET)
        alarm_list(env, out);
    else
        rpc_propose(env, RPC_ENTRY_ALARM, msg, len, out);
    etcdserverpb__alarm_request__free_unpacked(r, NULL);
}

/* ---- Hash, HashKV ---- */

static int hash_at(const struct rpc_env *env, int64_t rev, uint32_t *hash, int64_t *hash_rev,
                   int64_t *compact)
{
    int rv;

    mvcc_read_begin(env->reader);
    rv = mvcc_hash_kv(env->reader, rev, hash, hash_rev, compact);
    mvcc_read_end(env->reader);
    return rv;
}

void rpc_maint_hash(const struct rpc_env *env, const uint8_t *msg, size_t len,
                    struct rpc_result *out)
{
    Etcdserverpb__HashRequest *r = etcdserverpb__hash_request__unpack(NULL, len, msg);
    Etcdserverpb__HashResponse resp = ETCDSERVERPB__HASH_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    int64_t hash_rev;
    int64_t compact;

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    etcdserverpb__hash_request__free_unpacked(r, NULL);
    if (hash_at(env, 0, &resp.hash, &hash_rev, &compact) != MVCC_OK) {
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    rpc_header(env, &hdr, hash_rev);
    resp.header = &hdr;
    rpc_reply_msg(out, &resp.base);
}

void rpc_maint_hash_kv(const struct rpc_env *env, const uint8_t *msg, size_t len,
                       struct rpc_result *out)
{
    Etcdserverpb__HashKVRequest *r = etcdserverpb__hash_kvrequest__unpack(NULL, len, msg);
    Etcdserverpb__HashKVResponse resp = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    int64_t hash_rev;
    int rv;

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    rv = hash_at(env, r->revision, &resp.hash, &hash_rev, &resp.compact_revision);
    /* etcd refuses to hash at the compacted revision itself too, and
     * reports -1 as the compact revision of a store never compacted. */
    if (rv == MVCC_OK && r->revision > 0 && r->revision <= resp.compact_revision)
        rv = MVCC_ERR_COMPACTED;
    if (resp.compact_revision == 0)
        resp.compact_revision = -1;
    etcdserverpb__hash_kvrequest__free_unpacked(r, NULL);
    if (rv == MVCC_ERR_FUTURE_REV) {
        rpc_fail(out, RPC_E_FUTURE_REV);
        return;
    }
    if (rv == MVCC_ERR_COMPACTED) {
        rpc_fail(out, RPC_E_COMPACTED);
        return;
    }
    if (rv != MVCC_OK) {
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    rpc_header(env, &hdr, mvcc_current_revision(env->store));
    resp.header = &hdr;
    rpc_reply_msg(out, &resp.base);
}

/* ---- Defragment ---- */

/* cetcd's state has no free pages to give back; what defragmenting means
 * here is rewriting the snapshot from the live state (and releasing the
 * WAL behind it). The core does that and answers once it is durable. */
void rpc_maint_defragment(const struct rpc_env *env, const uint8_t *msg, size_t len,
                          struct rpc_result *out)
{
    Etcdserverpb__DefragmentRequest *r = etcdserverpb__defragment_request__unpack(NULL, len, msg);
    uint8_t *entry;

    (void)env;
    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    etcdserverpb__defragment_request__free_unpacked(r, NULL);
    entry = malloc(1);
    if (entry == NULL) {
        rpc_fail(out, RPC_E_NOMEM);
        return;
    }
    entry[0] = RPC_LOCAL_DEFRAG;
    out->action = RPC_ACT_PROPOSE;
    out->code = RPC_OK;
    out->body = entry;
    out->len = 1;
}

void rpc_defragment_reply(const struct rpc_env *env, struct rpc_result *out)
{
    Etcdserverpb__DefragmentResponse resp = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;

    memset(out, 0, sizeof(*out));
    rpc_header(env, &hdr, mvcc_current_revision(env->store));
    resp.header = &hdr;
    rpc_reply_msg(out, &resp.base);
}
