/*
 * core.h — the core: the single-member Raft log, the WAL and the apply
 * loop, run on shard 0's thread (internal to the server module).
 */
#ifndef CETCD_CORE_H
#define CETCD_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "rpc.h"
#include "shard.h"

struct core;

struct core_config {
    uint64_t snapshot_count; /* entries between snapshots */
    uint64_t auto_period_ms; /* periodic auto-compaction (0: off) */
    uint64_t auto_revisions; /* revision auto-compaction (0: off) */
};

/* Loads the newest snapshot, opens the WAL under data_dir/member/wal and
 * replays what follows the snapshot into env->store, starts a new term as
 * leader and makes that durable. 0, or -1 with err. */
int core_open(struct core **out, const char *data_dir, const struct core_config *cfg,
              struct rpc_env *env, char *err, size_t err_len);
void core_close(struct core *c);

/* Hooks for shard 0's loop; arg is the struct core. */
extern const struct shard_core_ops core_ops;

/* Must be set before the loop runs. */
void core_attach(struct core *c, struct shard_set *set);

#endif
