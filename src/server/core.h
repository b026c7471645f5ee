/*
 * core.h — the core: this member's Raft state machine driven on shard 0's
 * io_uring loop, the WAL, the apply loop and the peer connections
 * (internal to the server module).
 */
#ifndef CETCD_CORE_H
#define CETCD_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"
#include "rpc.h"
#include "shard.h"

struct core;
struct peer_net;

#include "roster.h"

struct core_config {
    uint64_t snapshot_count; /* entries between snapshots */
    uint64_t auto_period_ms; /* periodic auto-compaction (0: off) */
    uint64_t auto_revisions; /* revision auto-compaction (0: off) */
    uint64_t heartbeat_ms;   /* --heartbeat-interval: one Raft tick */
    uint64_t election_ms;    /* --election-timeout */
    /* How often the leader checkpoints long leases' remaining TTL
     * (--experimental-enable-lease-checkpoint with
     * --lease-checkpoint-interval-ms); 0: never, as etcd by default. */
    uint64_t lease_checkpoint_ms;
    /* The initial cluster (this member included, with its name and
     * client URLs): the membership when the data dir holds no snapshot. */
    const struct roster *initial;
    const char *token;    /* --initial-cluster-token */
    bool strict_reconfig; /* --strict-reconfig-check */
};

/* Loads the newest snapshot, opens the WAL under data_dir/member/wal,
 * hands the log after the snapshot to Raft and applies what was committed;
 * a sole voter becomes leader before this returns. 0, or -1 with err. */
int core_open(struct core **out, const char *data_dir, const struct core_config *cfg,
              struct rpc_env *env, char *err, size_t err_len);
void core_close(struct core *c);

/* Hooks for shard 0's loop; arg is the struct core. */
extern const struct shard_core_ops core_ops;

/* Both must be set before the loop runs. `peers` may be NULL for a
 * single-member cluster with no peer listener. The core's completion ops
 * for the peer net are CORE_PEER_OP_BASE .. + 7. */
#define CORE_PEER_OP_BASE (SHARD_OP_CORE_BASE + 8)
void core_attach(struct core *c, struct shard_set *set, struct peer_net *peers);

/* The callbacks the peer net calls (on the core's thread). Their arg is
 * a struct core ** (the net is created, to bind its listeners early,
 * before the core exists); no message arrives before core_attach(). */
extern const struct peer_ops core_peer_ops;

#endif
