/*
 * cluster.c — Maintenance.Status and Cluster.MemberList, answered on the
 * shard from the member description and the figures the core publishes
 * (term, commit and applied index, database size) with atomic stores.
 */
#include "rpc_int.h"

#include "mvcc.h"

void rpc_maint_status(const struct rpc_env *env, const uint8_t *msg, size_t len,
                      struct rpc_result *out)
{
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
    resp.islearner = 0;
    rpc_reply_msg(out, &resp.base);
}

void rpc_cluster_member_list(const struct rpc_env *env, const uint8_t *msg, size_t len,
                             struct rpc_result *out)
{
    Etcdserverpb__MemberListRequest *r = etcdserverpb__member_list_request__unpack(NULL, len, msg);
    Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    Etcdserverpb__Member self = ETCDSERVERPB__MEMBER__INIT;
    Etcdserverpb__Member *members[1] = {&self};
    struct rpc_member *m = env->member;

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    etcdserverpb__member_list_request__free_unpacked(r, NULL);
    self.id = m->member_id;
    self.name = (char *)m->name;
    self.n_peerurls = m->n_peer_urls;
    self.peerurls = (char **)m->peer_urls;
    self.n_clienturls = m->n_client_urls;
    self.clienturls = (char **)m->client_urls;
    /* etcd's Cluster service fills no revision in its headers. */
    rpc_header(env, &hdr, 0);
    resp.header = &hdr;
    resp.n_members = 1;
    resp.members = members;
    rpc_reply_msg(out, &resp.base);
}
