/*
 * core_boot.c — the core's start-up and shutdown: the newest valid
 * snapshot is loaded, the WAL after it replayed into Raft (raft_load), and
 * what was committed applied before the loop runs; a sole voter makes
 * itself leader on the way, every write synchronous.
 *
 * Thread: the main thread, before it becomes shard 0 (and after it stops).
 */
#include "core_int.h"

#include "mvcc.h"
#include "peer.h"
#include "roster.h"
#include "snap.h"
#include "snapshot.h"
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- start-up ---- */

/* The log read back from the WAL, before Raft exists to take it. */
struct replay {
    struct core *c;
    struct raft_entry *v;
    size_t n;
    size_t cap;
    struct raft_hardstate hs;
};

static int replay_entry(void *arg, const struct wal_entry *e)
{
    struct replay *r = arg;
    struct raft_entry *x;
    uint8_t *data;

    if (e->index <= r->c->snap_index)
        return 0; /* the snapshot already holds it */
    if (e->len < 1 || ((const uint8_t *)e->data)[0] > RAFT_ENTRY_CONF) {
        fprintf(stderr, "cetcd: wal: entry %llu has no Raft entry type\n",
                (unsigned long long)e->index);
        return -1;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap != 0 ? r->cap * 2 : 1024;
        x = realloc(r->v, cap * sizeof(*x));
        if (x == NULL)
            return -1;
        r->v = x;
        r->cap = cap;
    }
    data = malloc(e->len);
    if (data == NULL)
        return -1;
    memcpy(data, e->data, e->len);
    x = &r->v[r->n++];
    x->term = e->term;
    x->index = e->index;
    x->type = data[0];
    x->len = (uint32_t)(e->len - 1);
    x->data = data + 1;
    return 0;
}

static int replay_hardstate(void *arg, const struct wal_hardstate *hs)
{
    struct replay *r = arg;

    r->hs.term = hs->term;
    r->hs.vote = hs->vote;
    r->hs.commit = hs->commit;
    return 0;
}

/* A leader's snapshot was installed here: the log before it is
 * superseded. The snapshot loaded at start-up must cover it. */
static int replay_snapshot(void *arg, uint64_t index, uint64_t term)
{
    struct replay *r = arg;

    (void)term;
    if (index > r->c->snap_index) {
        fprintf(stderr,
                "cetcd: wal: the log continues after snapshot %llu, which is missing or "
                "damaged\n",
                (unsigned long long)index);
        return -1;
    }
    for (size_t i = 0; i < r->n; i++)
        free((uint8_t *)r->v[i].data - 1);
    r->n = 0;
    return 0;
}

static const struct wal_replay_ops replay_ops = {
    .entry = replay_entry,
    .hardstate = replay_hardstate,
    .snapshot = replay_snapshot,
};

static void replay_free(struct replay *r)
{
    for (size_t i = 0; i < r->n; i++)
        free((uint8_t *)r->v[i].data - 1);
    free(r->v);
}

static int make_dirs(const char *data_dir, char *wal_dir, size_t len, char *err, size_t err_len)
{
    char member[2048];

    if ((size_t)snprintf(member, sizeof(member), "%s/member", data_dir) >= sizeof(member) ||
        (size_t)snprintf(wal_dir, len, "%s/wal", member) >= len) {
        snprintf(err, err_len, "data dir path too long: %s", data_dir);
        return -1;
    }
    if ((mkdir(data_dir, 0700) != 0 && errno != EEXIST) ||
        (mkdir(member, 0700) != 0 && errno != EEXIST)) {
        snprintf(err, err_len, "cannot create data dir %s: %s", data_dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int load_snapshot(struct core *c, const char *data_dir, char *err, size_t err_len)
{
    struct snapshot_point pt;
    bool found = false;

    if (snapshot_init(&c->snap, data_dir, c->env.store, err, err_len) != 0 ||
        snapshot_load(c->snap, &pt, &found, err, err_len) != 0)
        return -1;
    if (found) {
        c->snap_index = pt.index;
        c->snap_term = pt.term;
        c->applied = pt.index;
        c->applied_term = pt.term;
        rpc_member_store(&c->env.member->alarms, pt.alarms);
        if (pt.cluster != NULL && roster_decode(&c->roster, pt.cluster, pt.cluster_len) != 0) {
            free(pt.cluster);
            free(pt.leases);
            snprintf(err, err_len, "snapshot: the member list in it is malformed");
            return -1;
        }
        free(pt.cluster);
        /* A snapshot from before leases existed has no LEASES section. */
        int rv = core_lease_load(c, pt.leases, pt.leases_len);
        free(pt.leases);
        if (rv != 0) {
            snprintf(err, err_len, "snapshot: the lease table in it: %s", lease_strerror(rv));
            return -1;
        }
    }
    return 0;
}

static struct raft_config raft_cfg(const struct core *c, const struct core_config *cfg)
{
    struct raft_config rc = {
        .id = c->id,
        .heartbeat_ticks = 1,
        .seed = c->id ^ (uint64_t)core_now_ms(),
        .max_inflight = 256,
        .max_msg_bytes = 1u << 20,
        .max_apply_bytes = 64u << 20,
        .pre_vote = true,
        .check_quorum = true,
    };
    uint64_t ticks = cfg->election_ms / c->heartbeat_ms;

    rc.election_ticks = (uint32_t)(ticks < 2 ? 2 : ticks);
    return rc;
}

/* Creates Raft from the snapshot and the replayed log. */
static int start_raft(struct core *c, const struct core_config *cfg, struct replay *rp)
{
    struct raft_config rc = raft_cfg(c, cfg);
    struct raft_boot boot = {.hs = rp->hs};

    boot.snap.index = c->snap_index;
    boot.snap.term = c->snap_term;
    roster_conf(&c->roster, &boot.snap.conf);
    /* A snapshot may be newer than the last durable commit record. */
    if (boot.hs.commit < c->snap_index)
        boot.hs.commit = c->snap_index;
    if (boot.hs.term < c->snap_term)
        boot.hs.term = c->snap_term;
    c->hs_written = boot.hs;
    c->raft = raft_new(&rc, &boot);
    if (c->raft == NULL)
        return -1;
    for (size_t i = 0; i < rp->n; i++) {
        if (raft_load(c->raft, &rp->v[i]) != 0) {
            fprintf(stderr, "cetcd: wal: entry %llu does not follow the log\n",
                    (unsigned long long)rp->v[i].index);
            return -1;
        }
    }
    return 0;
}

/* Start-up: applies what was committed, and a sole voter makes itself
 * leader, with every write synchronous (no loop runs yet). */
static void drive_sync(struct core *c)
{
    const struct raft_conf *conf = raft_conf(c->raft);

    c->sync_mode = true;
    if (conf->n_voters == 1 && conf->voters[0] == c->id)
        raft_campaign(c->raft);
    for (unsigned i = 0; i < CORE_SYNC_READIES_MAX && raft_has_ready(c->raft); i++) {
        core_drive(c);
        core_submit_batch(c);
    }
    c->next.durable.n = 0; /* no peer is connected yet: Raft resends */
    c->sync_mode = false;
}

/* The initial member list; a snapshot replaces it (load_snapshot). */
static int boot_roster(struct core *c, const struct core_config *cfg, char *err, size_t err_len)
{
    struct roster_member *self;

    if (cfg->initial != NULL)
        c->roster = *cfg->initial;
    self = roster_find(&c->roster, c->id);
    if (self == NULL) {
        snprintf(err, err_len, "member %016llx is not in the initial cluster",
                 (unsigned long long)c->id);
        return -1;
    }
    c->self = *self;
    return 0;
}

int core_open(struct core **out, const char *data_dir, const struct core_config *cfg,
              struct rpc_env *env, char *err, size_t err_len)
{
    struct core *c = calloc(1, sizeof(*c));
    struct replay rp = {.c = c};
    struct wal_info info;
    char wal_dir[4096];

    if (c == NULL)
        return -1;
    c->env = *env;
    c->id = env->member->member_id;
    c->strict_reconfig = cfg->strict_reconfig;
    if (cfg->token != NULL)
        snprintf(c->token, sizeof(c->token), "%s", cfg->token);
    c->snapshot_count = cfg->snapshot_count != 0 ? cfg->snapshot_count : 1;
    c->heartbeat_ms = cfg->heartbeat_ms != 0 ? cfg->heartbeat_ms : 100;
    c->request_timeout_ms = 5000 + 2 * (cfg->election_ms != 0 ? cfg->election_ms : 1000);
    core_lease_config(c, cfg);
    if (core_lease_load(c, NULL, 0) != 0) {
        free(c);
        return -1;
    }
    if (boot_roster(c, cfg, err, err_len) != 0) {
        core_lease_free(c);
        free(c);
        return -1;
    }
    if (pending_init(&c->pending, ((uint64_t)time(NULL) << 24) | 1) != 0 ||
        make_dirs(data_dir, wal_dir, sizeof(wal_dir), err, err_len) != 0 ||
        load_snapshot(c, data_dir, err, err_len) != 0 ||
        wal_open(wal_dir, &replay_ops, &rp, &c->wal, &info, err, err_len) != 0 ||
        start_raft(c, cfg, &rp) != 0) {
        if (err[0] == '\0')
            snprintf(err, err_len, "cannot start Raft from the data dir");
        replay_free(&rp);
        core_close(c);
        return -1;
    }
    replay_free(&rp);
    autoc_init(&c->autoc, cfg->auto_period_ms, cfg->auto_revisions, core_now_ms(),
               mvcc_current_revision(c->env.store));
    if (info.torn_bytes > 0)
        fprintf(stderr, "cetcd: wal: cut a torn tail of %llu bytes\n",
                (unsigned long long)info.torn_bytes);
    /* A leader's snapshot was installed but the marker after it was torn
     * off: the log must restart after the snapshot again. */
    if (info.last_index < c->snap_index &&
        (wal_add_snapshot(c->wal, c->snap_index, c->snap_term) != 0 ||
         wal_batch_sync(c->wal, err, err_len) != 0)) {
        core_close(c);
        return -1;
    }
    drive_sync(c);
    core_publish(c);
    *out = c;
    return 0;
}

/* After the loops stopped (a batch still in flight was never made durable
 * and was never answered). */
void core_close(struct core *c)
{
    if (c == NULL)
        return;
    snapshot_fini(c->snap);
    if (c->wal != NULL)
        wal_close(c->wal);
    if (c->raft != NULL)
        raft_free(c->raft);
    pending_fini(&c->pending);
    core_members_free(c);
    core_lease_free(c);
    core_snap_in_drop(c);
    for (size_t i = 0; i < c->unled.n; i++)
        shard_msg_free(c->unled.v[i]);
    free(c->unled.v);
    free(c->unled.deadline_ms);
    core_vec_free(&c->reads);
    for (unsigned k = 0; k < c->n_rounds; k++)
        core_vec_free(&c->rounds[k].msgs);
    for (size_t i = 0; i < c->held.n; i++)
        shard_msg_free(c->held.v[i].m);
    free(c->held.v);
    for (size_t i = 0; i < c->next.durable.n; i++)
        free((void *)c->next.durable.v[i].entries);
    for (size_t i = 0; i < c->inflight.durable.n; i++)
        free((void *)c->inflight.durable.v[i].entries);
    free(c->next.durable.v);
    free(c->inflight.durable.v);
    free(c->scratch);
    free(c);
}
