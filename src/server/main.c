/*
 * main.c — cetcd's entry point: reads the configuration, derives etcd's
 * member and cluster IDs (members.h), opens the log (replaying it into the
 * MVCC index), binds the client listeners and runs the shards. The main thread becomes
 * shard 0, the core.
 */
#include "config.h"
#include "core.h"
#include "ident.h"
#include "members.h"
#include "mvcc.h"
#include "peer.h"
#include "roster.h"
#include "rpc.h"
#include "shard.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CETCD_VERSION "0.1.0"

/* etcd's member and cluster IDs (members.h), from the initial cluster
 * config_load() already checked, so cetcd and etcd given the same flags
 * report the same IDs. Before the URL lists are split in place. */
static struct members ms; /* the initial cluster */

static int derive_ids(struct rpc_member *m, const struct config *cfg)
{
    const struct members_member *self;
    char err[512];

    if (members_bootstrap(&ms, cfg->name, cfg->initial_cluster, cfg->initial_advertise_peer_urls,
                          cfg->initial_cluster_token,
                          strcmp(cfg->initial_cluster_state, "existing") == 0, err,
                          sizeof(err)) != 0 ||
        (self = members_find_self(&ms, cfg->name)) == NULL) {
        fprintf(stderr, "cetcd: %s\n", err);
        return -1;
    }
    m->member_id = self->id;
    m->cluster_id = ms.cluster_id;
    return 0;
}

static int setup_member(struct rpc_member *m, struct config *cfg, const char **listen,
                        unsigned *n_listen)
{
    memset(m, 0, sizeof(*m));
    m->name = cfg->name;
    m->max_request_bytes = cfg->max_request_bytes;
    m->max_txn_ops = cfg->max_txn_ops;
    m->quota_bytes = cfg->quota_backend_bytes > 0 ? (uint64_t)cfg->quota_backend_bytes : 0;
    if (derive_ids(m, cfg) != 0)
        return -1;
    m->n_peer_urls =
        config_split_urls(cfg->initial_advertise_peer_urls, m->peer_urls, RPC_URLS_MAX);
    m->n_client_urls = config_split_urls(cfg->advertise_client_urls, m->client_urls, RPC_URLS_MAX);
    *n_listen = config_split_urls(cfg->listen_client_urls, listen, SHARD_LISTEN_MAX);
    if (m->n_peer_urls == 0 || m->n_client_urls == 0 || *n_listen == 0)
        return -1;
    return 0;
}

static struct shard_set *the_set;

static void on_signal(int sig)
{
    (void)sig;
    if (the_set != NULL)
        shard_set_stop(the_set);
}

/* The initial member list of a new cluster: every member's name and peer
 * URLs from --initial-cluster. */
static int initial_roster(struct roster *r)
{
    memset(r, 0, sizeof(*r));
    for (unsigned i = 0; i < ms.n; i++) {
        const struct members_member *m = &ms.m[i];
        const char *urls[MEMBERS_URLS_MAX];
        for (unsigned j = 0; j < m->n_peer_urls; j++)
            urls[j] = m->peer_urls[j];
        if (roster_add(r, m->id, "", urls, m->n_peer_urls, false) != 0)
            return -1;
    }
    return 0;
}

/* This member's own name and client URLs, as given now. */
static int overlay_self(struct roster *r, const struct rpc_member *self)
{
    struct roster_member *me = roster_find(r, self->member_id);

    if (me == NULL || self->n_client_urls > ROSTER_URLS_MAX)
        return -1;
    snprintf(me->name, sizeof(me->name), "%s", self->name);
    for (unsigned i = 0; i < self->n_client_urls; i++)
        if (snprintf(me->client_urls[i], ROSTER_URL_BYTES, "%s", self->client_urls[i]) >=
            ROSTER_URL_BYTES)
            return -1;
    me->n_client_urls = self->n_client_urls;
    return 0;
}

/* Does member m have one of our (normalized) peer URLs? */
static bool has_our_url(const struct roster_member *m, char ours[][MEMBERS_URL_MAX], unsigned n)
{
    for (unsigned i = 0; i < m->n_peer_urls; i++)
        for (unsigned j = 0; j < n; j++)
            if (strcmp(m->peer_urls[i], ours[j]) == 0)
                return true;
    return false;
}

/* --initial-cluster-state existing on a fresh data dir: ask the running
 * members (the other --initial-cluster URLs) for the cluster ID and the
 * member list, and find ourselves in it by our peer URLs (`member add`
 * put us there, with our ID). */
static int join_cluster(const struct config *cfg, struct rpc_member *m, struct roster *r)
{
    const char *urls[MEMBERS_MAX * MEMBERS_URLS_MAX];
    char ours[RPC_URLS_MAX][MEMBERS_URL_MAX];
    unsigned n = 0;
    uint64_t cid = 0;
    uint8_t *blob = NULL;
    size_t len = 0;
    char err[1024];

    for (unsigned i = 0; i < ms.n; i++)
        if (strcmp(ms.m[i].name, cfg->name) != 0)
            for (unsigned j = 0; j < ms.m[i].n_peer_urls; j++)
                urls[n++] = ms.m[i].peer_urls[j];
    for (unsigned i = 0; i < m->n_peer_urls; i++)
        if (members_url_parse(m->peer_urls[i], ours[i], sizeof(ours[i]), err, sizeof(err)) != 0)
            snprintf(ours[i], sizeof(ours[i]), "%s", m->peer_urls[i]);
    if (peer_fetch_members(urls, n, 10000, &cid, &blob, &len, err, sizeof(err)) != 0) {
        fprintf(stderr, "cetcd: cannot fetch cluster info from peer urls: %s\n", err);
        return -1;
    }
    if (roster_decode(r, blob, len) != 0 || r->n == 0) {
        free(blob);
        fprintf(stderr, "cetcd: failed to get raft cluster member(s) from the given URLs\n");
        return -1;
    }
    free(blob);
    for (unsigned i = 0; i < r->n; i++) {
        if (has_our_url(&r->m[i], ours, m->n_peer_urls)) {
            m->member_id = r->m[i].id;
            m->cluster_id = cid;
            return 0;
        }
    }
    fprintf(stderr,
            "cetcd: the running cluster %016llx has no member with peer URLs %s (add it first: "
            "etcdctl member add)\n",
            (unsigned long long)cid, m->peer_urls[0]);
    return -1;
}

/* Who this member is: saved in the data dir from its first start (etcd
 * ignores the bootstrap flags once a member has data), else bootstrapped
 * from --initial-cluster or, joining, from the running cluster. *fresh:
 * the identity must be saved before anything else is written. */
static int resolve_identity(const struct config *cfg, struct rpc_member *m, struct roster *r,
                            struct ident *id, bool *fresh)
{
    bool found = false;
    char err[512];

    if (ident_load(cfg->data_dir, id, &found, err, sizeof(err)) != 0) {
        fprintf(stderr, "cetcd: %s\n", err);
        return -1;
    }
    *fresh = !found;
    if (found) {
        m->member_id = id->member_id;
        m->cluster_id = id->cluster_id;
        if (roster_decode(r, id->roster, id->roster_len) != 0) {
            fprintf(stderr, "cetcd: the member list saved in the data dir is damaged\n");
            return -1;
        }
    } else if (strcmp(cfg->initial_cluster_state, "existing") == 0) {
        if (join_cluster(cfg, m, r) != 0)
            return -1;
    } else if (initial_roster(r) != 0) {
        fprintf(stderr, "cetcd: the initial cluster does not fit\n");
        return -1;
    }
    if (overlay_self(r, m) != 0) {
        fprintf(stderr, "cetcd: member %016llx is not in its own member list\n",
                (unsigned long long)m->member_id);
        return -1;
    }
    free(id->roster);
    id->member_id = m->member_id;
    id->cluster_id = m->cluster_id;
    id->roster = roster_encode(r, &id->roster_len);
    return id->roster != NULL ? 0 : -1;
}

/* Everything main() sets up, so one function can undo it on any path. */
struct server {
    struct roster initial; /* the member list to start from */
    struct ident ident;    /* who we are (saved in the data dir) */
    bool ident_fresh;      /* not saved yet */
    struct shard_set *set;
    struct peer_net *peers;
    struct core *core;
    struct rpc_env env;
};

static void server_free(struct server *sv)
{
    free(sv->ident.roster);
    peer_net_destroy(sv->peers);
    shard_set_destroy(sv->set);
    core_close(sv->core);
    if (sv->env.reader != NULL)
        mvcc_reader_unregister(sv->env.reader);
    if (sv->env.store != NULL)
        mvcc_destroy(sv->env.store);
}

/* Binds the peer listeners (so a busy port fails the start before the
 * data dir is touched); the net runs on the core's loop. */
static int start_peers(struct server *sv, struct config *cfg, const struct rpc_member *member)
{
    static char recv_dir[CONFIG_STR_MAX + 32];
    struct peer_config pc = {
        .self_id = member->member_id,
        .cluster_id = member->cluster_id,
        .loop = shard_core_loop(sv->set),
        .op_base = CORE_PEER_OP_BASE,
        .snap_recv_dir = recv_dir,
        .bind_wait_ms = 3000, /* a member that just died may still hold its port */
    };
    char err[512];

    snprintf(recv_dir, sizeof(recv_dir), "%s/member/snap", cfg->data_dir);
    pc.n_listen_urls = config_split_urls(cfg->listen_peer_urls, pc.listen_urls, PEER_LISTEN_MAX);
    if (peer_net_create(&sv->peers, &pc, &core_peer_ops, &sv->core, err, sizeof(err)) != 0) {
        fprintf(stderr, "cetcd: %s\n", err);
        return -1;
    }
    return 0;
}

/* Binds the listeners, then opens the log and replays it. 0 or -1. */
static int server_start(struct server *sv, struct config *cfg, struct shard_config *sc,
                        struct rpc_member *member)
{
    char err[512];

    sc->n_shards = cfg->shards;
    sc->pin = cfg->pin_shards;
    sc->member = member;
    sv->env.member = member;
    sv->env.store = mvcc_create();
    if (sv->env.store == NULL)
        return -1;
    sc->store = sv->env.store;
    sv->env.reader = mvcc_reader_register(sv->env.store);
    sv->set = shard_set_create(sc, err, sizeof(err));
    if (sv->set == NULL || sv->env.reader == NULL) {
        fprintf(stderr, "cetcd: %s\n", sv->set == NULL ? err : "out of memory");
        return -1;
    }
    if (start_peers(sv, cfg, member) != 0)
        return -1;
    if (sv->ident_fresh && ident_save(cfg->data_dir, &sv->ident, err, sizeof(err)) != 0) {
        fprintf(stderr, "cetcd: %s\n", err);
        return -1;
    }
    struct core_config cc = {
        .snapshot_count = cfg->snapshot_count,
        .heartbeat_ms = cfg->heartbeat_interval_ms,
        .election_ms = cfg->election_timeout_ms,
        .initial = &sv->initial,
        .token = cfg->initial_cluster_token,
        .strict_reconfig = cfg->strict_reconfig_check,
        .lease_checkpoint_ms = cfg->lease_checkpoint ? (cfg->lease_checkpoint_interval_ms != 0
                                                            ? cfg->lease_checkpoint_interval_ms
                                                            : 300000)
                                                     : 0,
    };
    config_retention(cfg, &cc.auto_period_ms, &cc.auto_revisions);
    if (core_open(&sv->core, cfg->data_dir, &cc, &sv->env, err, sizeof(err)) != 0) {
        fprintf(stderr, "cetcd: %s\n", err);
        return -1;
    }
    shard_set_attach_core(sv->set, &core_ops, sv->core);
    core_attach(sv->core, sv->set, sv->peers);
    return 0;
}

int main(int argc, char **argv)
{
    static struct config cfg;
    static struct rpc_member member;
    static struct server sv;
    struct shard_config sc;
    char err[512];
    unsigned i;
    int rv;

    rv = config_load(&cfg, argc, argv, err, sizeof(err));
    if (rv != 0) {
        fprintf(stderr, "cetcd: %s\n", err);
        return rv;
    }
    if (cfg.help) {
        config_usage();
        return 0;
    }
    if (cfg.version) {
        printf("cetcd Version: %s\netcd API Version: %s\n", CETCD_VERSION, RPC_ETCD_VERSION);
        return 0;
    }
    memset(&sc, 0, sizeof(sc));
    if (setup_member(&member, &cfg, sc.listen_urls, &sc.n_listen_urls) != 0) {
        fprintf(stderr, "cetcd: every URL list needs at least one URL\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (resolve_identity(&cfg, &member, &sv.initial, &sv.ident, &sv.ident_fresh) != 0) {
        server_free(&sv);
        return 1;
    }
    if (server_start(&sv, &cfg, &sc, &member) != 0) {
        server_free(&sv);
        return 1;
    }
    the_set = sv.set;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "cetcd: member %016llx (%s) of cluster %016llx, revision %lld, %u shards\n",
            (unsigned long long)member.member_id, member.name,
            (unsigned long long)member.cluster_id, (long long)mvcc_current_revision(sv.env.store),
            cfg.shards);
    for (i = 0; i < sc.n_listen_urls; i++)
        fprintf(stderr, "cetcd: ready to serve client requests on %s\n", sc.listen_urls[i]);
    shard_set_run(sv.set);
    the_set = NULL;
    server_free(&sv);
    fprintf(stderr, "cetcd: stopped\n");
    return 0;
}
