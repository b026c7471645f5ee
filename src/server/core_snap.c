/*
 * core_snap.c — the core's snapshots: when to take one (every
 * --snapshot-count entries, bounded by what the log wrote), what follows
 * once one is durable (the WAL released behind it, Raft told it may send
 * it, the in-memory log compacted), and installing one a leader sent
 * (checked on arrival, made this member's newest snapshot, the MVCC state
 * replaced while readers read, a WAL marker written).
 *
 * Thread: shard 0's (the core) only.
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

void core_snap_in_drop(struct core *c)
{
    if (c->snap_in_path[0] != '\0')
        unlink(c->snap_in_path);
    c->snap_in_path[0] = '\0';
}

/* fsyncs the directory holding path. */
static int fsync_parent(const char *path)
{
    char dir[4096];
    char *slash;
    int fd, rv;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    rv = fsync(fd);
    close(fd);
    return rv;
}

/* The new membership of an installed snapshot: the peer net follows it. */
static void adopt_roster(struct core *c, const uint8_t *blob, size_t len)
{
    struct roster old = c->roster;

    if (blob == NULL || roster_decode(&c->roster, blob, len) != 0)
        return;
    for (unsigned i = 0; i < old.n; i++)
        if (roster_find(&c->roster, old.m[i].id) == NULL && c->peers != NULL &&
            old.m[i].id != c->id)
            peer_remove_member(c->peers, old.m[i].id);
    for (unsigned i = 0; c->peers != NULL && i < c->roster.n_removed; i++)
        peer_mark_removed(c->peers, c->roster.removed[i]);
    for (unsigned i = 0; i < c->roster.n; i++)
        core_peer_update(c, &c->roster.m[i]);
}

/* Raft §7: the leader's snapshot replaces this member's state. Its file
 * becomes this member's newest snapshot (durable before anything refers
 * to it), the MVCC state is replaced while readers go on reading, and the
 * WAL gets a marker: the log restarts after the snapshot. */
void core_install_snapshot(struct core *c, const struct raft_snap_meta *meta)
{
    struct snapshot_point pt;
    char path[4096];
    char err[512];

    if (c->snap_in_path[0] == '\0' || c->snap_in_index != meta->index ||
        c->snap_in_term != meta->term) {
        fprintf(stderr, "cetcd: fatal: Raft installs snapshot %llu, which was not received\n",
                (unsigned long long)meta->index);
        exit(1);
    }
    snapshot_path(c->snap, meta->term, meta->index, path, sizeof(path));
    if (rename(c->snap_in_path, path) != 0 || fsync_parent(path) != 0)
        core_fatal("installing the leader's snapshot", -errno);
    c->snap_in_path[0] = '\0';
    if (snapshot_install(c->snap, path, &pt, err, sizeof(err)) != 0) {
        fprintf(stderr, "cetcd: fatal: %s\n", err);
        exit(1);
    }
    if (wal_add_snapshot(c->wal, meta->index, meta->term) != 0)
        core_fatal("wal: snapshot marker", -EIO);
    adopt_roster(c, pt.cluster, pt.cluster_len);
    free(pt.cluster);
    /* The leader's lease table (none in a snapshot older than leases);
     * this member's leader state follows Raft after this ready. */
    int rv = core_lease_load(c, pt.leases, pt.leases_len);
    free(pt.leases);
    if (rv != 0) {
        fprintf(stderr, "cetcd: fatal: the leader's snapshot %llu: lease table: %s\n",
                (unsigned long long)meta->index, lease_strerror(rv));
        exit(1);
    }
    rpc_member_store(&c->env.member->alarms, pt.alarms);
    c->applied = meta->index;
    c->applied_term = meta->term;
    c->snap_index = meta->index;
    c->snap_term = meta->term;
    c->compacting = false;
    c->reclaiming = true;
    c->snap_wal_mark = c->wal_bytes;
    fprintf(stderr, "cetcd: installed the leader's snapshot at index %llu (revision %lld)\n",
            (unsigned long long)meta->index, (long long)mvcc_current_revision(c->env.store));
}

/* --snapshot-count entries since the last snapshot, as etcd; and, unlike
 * etcd (whose snapshot is its database file, already on disk), at least as
 * many WAL bytes as the last snapshot took: a snapshot here rewrites the
 * whole state, and this bounds what snapshots write to what the log
 * wrote. Restart then replays at most about one state's worth of log. */
static bool snapshot_due(const struct core *c)
{
    return c->applied - c->snap_index >= c->snapshot_count &&
           c->wal_bytes - c->snap_wal_mark >= snapshot_size_bytes(c->snap);
}

/* A snapshot is durable: the WAL is released one snapshot behind (should
 * the newest snapshot be damaged, the one before it still has its WAL).
 * Raft may send it to followers from now on, and drops from memory the
 * log up to CORE_CATCHUP_ENTRIES before it (all of it for a sole member):
 * a follower further behind than that gets the snapshot. */
static void snapshot_durable(struct core *c, const struct snapshot_point *pt)
{
    struct raft_snap_meta meta = {.index = pt->index, .term = pt->term, .conf = c->snap_conf};
    const struct raft_conf *conf = raft_conf(c->raft);
    char err[256];

    if (c->snap_index != 0 && wal_release(c->wal, c->snap_index, err, sizeof(err)) < 0)
        fprintf(stderr, "cetcd: wal release: %s\n", err);
    c->snap_index = pt->index;
    c->snap_term = pt->term;
    raft_snapshot_taken(c->raft, &meta);
    if (conf->n_voters + conf->n_learners == 1)
        raft_compact(c->raft, pt->index);
    else if (pt->index > CORE_CATCHUP_ENTRIES)
        raft_compact(c->raft, pt->index - CORE_CATCHUP_ENTRIES);
    core_publish(c);
}

/* Bounded background work, once per turn: a compaction step, snapshot
 * completion, a new snapshot every --snapshot-count entries or when a
 * defragment asks. */
void core_background(struct core *c)
{
    struct snapshot_point pt;
    int rv;
    bool was_compacting = c->compacting;

    /* Every compaction (asked for or automatic) has physical work to do;
     * a step is a no-op when there is none. */
    c->compacting = mvcc_compact_step(c->env.store, COMPACT_STEP_KEYS);
    /* The state a snapshot install replaced is freed in bounded steps. */
    if (c->reclaiming)
        c->reclaiming = mvcc_reclaim(c->env.store, RECLAIM_STEP_OBJECTS);
    if (was_compacting && !c->compacting)
        core_release_held(c);
    rv = snapshot_poll(c->snap, &pt);
    if (rv != 0) {
        c->snap_gen_done++;
        if (rv > 0)
            snapshot_durable(c, &pt);
        else
            c->snap_wanted = true; /* failed: try again */
        core_release_held(c);
    }
    if (!snapshot_busy(c->snap) && c->applied > c->snap_index &&
        (c->snap_wanted || snapshot_due(c))) {
        pt.index = c->applied;
        pt.term = c->applied_term;
        pt.alarms = rpc_member_load(&c->env.member->alarms);
        pt.cluster = roster_encode(&c->roster, &pt.cluster_len);
        /* Encoded here, between applies: the table as of pt. */
        pt.leases = lease_encode(c->env.leases, &pt.leases_len);
        c->snap_conf = *raft_conf(c->raft);
        rv = pt.cluster != NULL && pt.leases != NULL ? snapshot_start(c->snap, &pt) : -1;
        free(pt.cluster);
        free(pt.leases);
        if (rv == 0) {
            c->snap_wal_mark = c->wal_bytes;
            c->snap_gen++;
            c->snap_wanted = false;
        }
    } else if (c->snap_wanted && !snapshot_busy(c->snap) && c->applied == c->snap_index) {
        /* Nothing new since the last snapshot: it is the fresh one. */
        c->snap_gen++;
        c->snap_gen_done++;
        c->snap_wanted = false;
        core_release_held(c);
    }
}

/* A leader's snapshot arrived whole: checked here (every CRC, and the
 * point it claims), kept, and its SNAP message handed to Raft, which
 * decides whether to install it (install_snapshot). */
void core_on_peer_snapshot(void *arg, const struct raft_msg *m, const char *path)
{
    struct core *c = *(struct core **)arg;
    uint64_t term = 0, index = 0;
    char err[512];

    if (snap_validate(path, &term, &index, err, sizeof(err)) != 0 || term != m->snap.term ||
        index != m->snap.index) {
        fprintf(stderr, "cetcd: snapshot from %016llx refused: %s\n", (unsigned long long)m->from,
                err[0] != '\0' ? err : "wrong point");
        unlink(path);
        return;
    }
    core_snap_in_drop(c);
    snprintf(c->snap_in_path, sizeof(c->snap_in_path), "%s", path);
    c->snap_in_index = index;
    c->snap_in_term = term;
    raft_step(c->raft, m);
}
