/*
 * core_int.h — the core's state and the functions its files share
 * (internal to the server module): core.c (the Raft driver, WAL batches,
 * apply, reads, start-up) and core_members.c (membership requests and
 * leadership transfer).
 *
 * Thread: everything here belongs to shard 0's thread.
 */
#ifndef CETCD_CORE_INT_H
#define CETCD_CORE_INT_H

#include "core.h"

#include "autocompact.h"
#include "lease.h"
#include "pending.h"
#include "roster.h"
#include "rpc.pb-c.h"
#include "wal.h"

#include <linux/time_types.h>
#include <stdbool.h>
#include <stdint.h>

struct snapshot;

enum core_op {
    CORE_OP_WAL_WRITE = SHARD_OP_CORE_BASE,
    CORE_OP_TIMER = SHARD_OP_CORE_BASE + 1,
    CORE_OP_TICK = SHARD_OP_CORE_BASE + 2,
};

#define COMPACT_STEP_KEYS 2048u /* keys examined per compaction step (per turn) */
/* Replaced MVCC objects freed per turn (turns come at least once a tick;
 * not a reason to spin: readers may hold the memory a while). */
#define RECLAIM_STEP_OBJECTS 65536u

#define CORE_TURN_PROPOSALS_MAX     8192u       /* proposals taken from the shards per turn */
#define CORE_TURN_BYTES_MAX         (32u << 20) /* proposal bytes taken per turn */
#define CORE_WAITING_MAX            65536u      /* proposals/reads waiting for a leader */
#define CORE_READ_ROUNDS_MAX        256u        /* ReadIndex rounds in flight */
#define CORE_ENVELOPE_BYTES         16u
#define CORE_CATCHUP_ENTRIES        5000u      /* log kept behind a snapshot for slow followers */
#define CORE_PEER_DROP_MS           2000u      /* a removed member's connection lingers this long */
#define CORE_SYNC_READIES_MAX       (1u << 24) /* bound of the start-up drive loop */
#define CORE_LEASE_REVOKES_PER_TICK 100u       /* expired leases revoked per tick (leader) */
#define CORE_LEASE_CHECKPOINTS_MAX  1000u      /* checkpoints in one entry (etcd's batch) */

/* etcd's messages for requests the cluster could not serve. */
#define ERR_TIMEOUT        "etcdserver: request timed out"
#define ERR_LEADER_CHANGED "etcdserver: leader changed"
#define ERR_TOO_MANY       "etcdserver: too many requests"
#define ERR_TOO_LARGE      "etcdserver: request is too large"
#define ERR_REMOVED        "etcdserver: the member has been permanently removed from the cluster"

struct msg_vec {
    struct shard_msg **v;
    size_t n;
    size_t cap;
};

/* A reply held back until background work is done. */
struct held {
    struct shard_msg *m;
    uint64_t snap_gen; /* RPC_WAIT_SNAPSHOT: the snapshot generation needed */
};

struct held_vec {
    struct held *v;
    size_t n;
    size_t cap;
};

/* Raft messages that may leave only once a WAL batch is durable. */
struct rmsg_vec {
    struct raft_msg *v;
    size_t n;
    size_t cap;
};

/* What one WAL batch carries besides its bytes. */
struct batch {
    struct rmsg_vec durable; /* messages to send once it is durable */
    uint64_t last_index;     /* last entry in it (0: none) */
    uint64_t last_term;
    size_t bytes;
};

/* One ReadIndex round: the reads of one loop turn. */
struct read_round {
    uint64_t ctx;
    uint64_t index; /* the read index, once known */
    bool indexed;
    uint64_t deadline_ms;
    struct msg_vec msgs;
};

/* Messages waiting (for a leader, with a deadline). */
struct wait_vec {
    struct shard_msg **v;
    uint64_t *deadline_ms;
    size_t n;
    size_t cap;
};

struct core {
    struct shard_set *set;
    struct peer_net *peers;
    struct wal *wal;
    struct snapshot *snap;
    struct raft *raft;
    struct rpc_env env; /* with the core's own MVCC reader and the lease table */
    struct lease_config lease_cfg;
    uint64_t election_ms;      /* --election-timeout: a new leader extends leases by it */
    struct roster roster;      /* the replicated member list */
    struct roster_member self; /* this member's name and client URLs */
    bool published;            /* our attributes were applied this run */
    uint64_t publish_at_ms;    /* when to propose them (again) */
    uint64_t id;
    uint64_t applied;
    uint64_t applied_term;
    uint64_t snap_index; /* last entry covered by the newest snapshot */
    uint64_t snap_term;
    uint64_t snapshot_count; /* entries between snapshots */
    uint64_t snap_gen;       /* snapshots started so far */
    uint64_t snap_gen_done;  /* snapshots made durable so far */
    bool snap_wanted;        /* a defragment asks for a fresh snapshot */
    uint64_t wal_bytes;      /* bytes made durable in the WAL since start */
    uint64_t snap_wal_mark;  /* wal_bytes when the newest snapshot started */
    bool compacting;         /* physical compaction has work left */
    bool reclaiming;         /* a replaced MVCC state is still being freed */
    uint64_t heartbeat_ms;
    uint64_t request_timeout_ms;
    uint64_t last_leader;
    uint64_t last_term;
    struct pending pending; /* proposals made here, waiting to apply */
    struct wait_vec unled;  /* proposals waiting for a leader */
    struct msg_vec reads;   /* reads of this turn, not yet in a round */
    uint64_t reads_deadline_ms;
    struct read_round rounds[CORE_READ_ROUNDS_MAX];
    unsigned n_rounds;
    uint64_t read_ctx;
    struct held_vec held; /* replies waiting for compaction or a snapshot */
    struct batch next;    /* goes with the WAL's pending batch */
    struct batch inflight;
    struct wal_write write; /* the batch being synced */
    bool write_inflight;
    bool sync_mode; /* start-up: batches are written synchronously */
    uint8_t *scratch;
    size_t scratch_cap;
    struct core_auto autoc; /* auto-compaction */
    bool timer_armed;
    struct __kernel_timespec timer_ts;
    bool tick_armed;
    struct __kernel_timespec tick_ts;
    /* Members the peer net could not reach, reported to Raft after the
     * ready being carried out (no Raft call may come in between). */
    uint64_t unreachable[RAFT_MEMBERS_MAX];
    unsigned n_unreachable;
    uint64_t snap_done[RAFT_MEMBERS_MAX]; /* snapshot sends that ended (to report) */
    bool snap_done_ok[RAFT_MEMBERS_MAX];
    unsigned n_snap_done;
    bool in_ready;
    struct raft_conf snap_conf; /* the membership when the running snapshot started */
    /* A leader's snapshot received whole and checked, waiting for Raft to
     * take it (its SNAP message was stepped): its file, and its point. */
    char snap_in_path[4096];
    uint64_t snap_in_index;
    uint64_t snap_in_term;
    /* The hard state last added to the WAL, and a newer one that differs
     * only in its commit index: that one waits for the next batch that
     * carries entries (a commit index is a hint for restarts, and writing
     * it alone would cost one more disk write per commit). */
    struct raft_hardstate hs_written;
    struct raft_hardstate hs_deferred;
    bool hs_dirty;
    /* Membership requests (core_members.c), carried out one at a time as
     * Raft changes membership one member at a time. */
    struct wait_vec conf_queue; /* waiting their turn, oldest first */
    struct shard_msg *conf_m;   /* the one being carried out, or NULL */
    uint64_t conf_deadline_ms;
    uint8_t conf_op; /* enum raft_conf_op */
    uint64_t conf_id;
    uint8_t *conf_ctx; /* the etcdserverpb.Member it carries */
    size_t conf_ctx_len;
    bool conf_proposed;
    bool removed;             /* this member was removed: stop */
    struct shard_msg *xfer_m; /* a MoveLeader waiting, or NULL */
    uint64_t xfer_to;
    uint64_t xfer_deadline_ms;
    char token[256];      /* --initial-cluster-token: new members' IDs */
    bool strict_reconfig; /* --strict-reconfig-check: refuse changes that risk quorum */
    /* Removed members the peer net forgets a little later, so that the
     * last message Raft sends them (their removal is committed) leaves. */
    uint64_t drop_id[RAFT_MEMBERS_MAX];
    uint64_t drop_at_ms[RAFT_MEMBERS_MAX];
    unsigned n_drop;
};

struct conf_wait;

_Noreturn void core_fatal(const char *what, int res);
uint64_t core_now_ms(void);
/* Sends m to its shard (frees it if nobody waits: stream 0). */
void core_answer(struct core *c, struct shard_msg *m);
/* Answers m with an error. */
void core_refuse(struct core *c, struct shard_msg *m, int code, const char *message);
/* Proposes m, or keeps it until there is a leader (or its deadline). */
void core_propose_or_wait(struct core *c, struct shard_msg *m);
/* Points the peer net at a member's peer URLs. */
void core_peer_update(struct core *c, const struct roster_member *m);

void core_vec_free(struct msg_vec *v);
/* Stores the figures shards read (term, commit, applied, leader, ...). */
void core_publish(struct core *c);
/* Sends the held replies whose wait (compaction, snapshot) is over. */
void core_release_held(struct core *c);
/* Carries out every ready Raft has; hands the WAL batch to io_uring (or,
 * at start-up, writes it at once). */
void core_drive(struct core *c);
void core_submit_batch(struct core *c);

/* core_snap.c */
/* Once per turn: compaction and reclaim steps, snapshot completion, a new
 * snapshot when due. */
void core_background(struct core *c);
/* Raft installs the leader's snapshot that core_on_peer_snapshot kept. */
void core_install_snapshot(struct core *c, const struct raft_snap_meta *meta);
void core_on_peer_snapshot(void *arg, const struct raft_msg *m, const char *path);
void core_snap_in_drop(struct core *c);

/* core_lease.c */
/* The table's settings from the configuration (after heartbeat_ms and
 * request_timeout_ms are set). */
void core_lease_config(struct core *c, const struct core_config *cfg);
/* Replaces the lease table by the one blob encodes (a snapshot's LEASES
 * section), or an empty one for NULL. 0, or an enum lease_err (the table
 * unchanged). */
int core_lease_load(struct core *c, const uint8_t *blob, size_t len);
void core_lease_free(struct core *c);
/* After each ready: the table's leader state follows Raft's role. */
void core_lease_role(struct core *c);
/* Each tick on the leader: revokes of expired leases, checkpoints due. */
void core_lease_tick(struct core *c, uint64_t now);
/* A RPC_LOCAL_LEASE_* request: answered from the table. */
void core_lease_local(struct core *c, struct shard_msg *m);
/* etcd's LeaseRenew (one KeepAlive request) for the streaming RPC: on the
 * leader renews lease id and gives its granted TTL in *ttl_s (and clears
 * its checkpoint through the log); LEASE_ERR_NOT_PRIMARY on a follower
 * (the request must go to the leader), LEASE_ERR_NOT_FOUND (answer TTL
 * 0), LEASE_ERR_EXPIRED (its revoke is pending: answer TTL 0). The same
 * as a RPC_LOCAL_LEASE_KEEPALIVE message, without the message. */
int core_lease_renew(struct core *c, int64_t id, int64_t *ttl_s);

/* core_members.c */
/* A membership request or MoveLeader from a client (m->data[0] is its
 * RPC_LOCAL_* type). */
void core_members_request(struct core *c, struct shard_msg *m);
/* A membership change was applied (roster and Raft updated). */
void core_members_conf_applied(struct core *c, uint8_t op, uint64_t id);
/* Applies a MemberUpdate entry; m is the waiting client, if it was ours. */
void core_members_update_applied(struct core *c, const uint8_t *p, size_t n, struct shard_msg *m);
/* Once per turn, after the readies: proposes the next queued change,
 * notices a finished leadership transfer. */
void core_members_turn(struct core *c, uint64_t now);
/* Frees what is queued (core_close). */
void core_members_free(struct core *c);

#endif
