/*
 * main.c — cetcd's entry point: reads the configuration, derives the
 * member and cluster IDs, opens the log (replaying it into the MVCC index),
 * binds the client listeners and runs the shards. The main thread becomes
 * shard 0, the core.
 */
#include "config.h"
#include "core.h"
#include "mvcc.h"
#include "rpc.h"
#include "shard.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CETCD_VERSION "0.1.0"

/* FNV-1a, 64 bits: IDs derived from the cluster token and peer URLs, so a
 * member keeps its ID across restarts and every member computes the same. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void derive_ids(struct rpc_member *m, const char *token)
{
    const char *urls[RPC_URLS_MAX];
    uint64_t h = 0xcbf29ce484222325ull;
    unsigned i;

    memcpy(urls, m->peer_urls, sizeof(urls));
    qsort(urls, m->n_peer_urls, sizeof(urls[0]), cmp_str);
    for (i = 0; i < m->n_peer_urls; i++)
        h = fnv1a(h, urls[i], strlen(urls[i]) + 1);
    h = fnv1a(h, token, strlen(token));
    m->member_id = h != 0 ? h : 1;
    m->cluster_id = fnv1a(0xcbf29ce484222325ull ^ 0x5c, &m->member_id, sizeof(m->member_id));
}

static int setup_member(struct rpc_member *m, struct config *cfg, const char **listen,
                        unsigned *n_listen)
{
    memset(m, 0, sizeof(*m));
    m->name = cfg->name;
    m->max_request_bytes = cfg->max_request_bytes;
    m->max_txn_ops = cfg->max_txn_ops;
    m->quota_bytes = cfg->quota_backend_bytes > 0 ? (uint64_t)cfg->quota_backend_bytes : 0;
    m->n_peer_urls =
        config_split_urls(cfg->initial_advertise_peer_urls, m->peer_urls, RPC_URLS_MAX);
    m->n_client_urls = config_split_urls(cfg->advertise_client_urls, m->client_urls, RPC_URLS_MAX);
    *n_listen = config_split_urls(cfg->listen_client_urls, listen, SHARD_LISTEN_MAX);
    if (m->n_peer_urls == 0 || m->n_client_urls == 0 || *n_listen == 0)
        return -1;
    derive_ids(m, cfg->initial_cluster_token);
    return 0;
}

static struct shard_set *the_set;

static void on_signal(int sig)
{
    (void)sig;
    if (the_set != NULL)
        shard_set_stop(the_set);
}

/* Everything main() sets up, so one function can undo it on any path. */
struct server {
    struct shard_set *set;
    struct core *core;
    struct rpc_env env;
};

static void server_free(struct server *sv)
{
    shard_set_destroy(sv->set);
    core_close(sv->core);
    if (sv->env.reader != NULL)
        mvcc_reader_unregister(sv->env.reader);
    if (sv->env.store != NULL)
        mvcc_destroy(sv->env.store);
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
    struct core_config cc = {.snapshot_count = cfg->snapshot_count};
    config_retention(cfg, &cc.auto_period_ms, &cc.auto_revisions);
    if (core_open(&sv->core, cfg->data_dir, &cc, &sv->env, err, sizeof(err)) != 0) {
        fprintf(stderr, "cetcd: %s\n", err);
        return -1;
    }
    shard_set_attach_core(sv->set, &core_ops, sv->core);
    core_attach(sv->core, sv->set);
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
