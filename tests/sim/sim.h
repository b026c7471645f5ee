/*
 * sim.h — shared state of the deterministic Raft cluster simulator.
 *
 * The simulator drives N struct raft (src/raft/raft.h) exactly as a real
 * driver must: virtual ticks, a lossy reordering network with partitions,
 * per-member storage whose writes become durable only after a random sync
 * delay (and are dropped or torn by a crash), a state machine that applies
 * committed entries and takes snapshots, and clients that propose, read,
 * transfer leadership and change the membership. Everything is derived
 * from one seed: no clock, no rand(), no threads, so a seed replays the
 * same run event for event.
 *
 * Files: sim.c (command line, event loop, faults, clients, liveness),
 * node.c (one member: storage, ready processing, network), model.c
 * (PRNG, hashes, payload store, the global model and the safety checks).
 *
 * Invariants kept by the simulator itself: every queue is bounded (the
 * SIM_*_MAX limits below); a payload is stored once in the blob store and
 * never moves until the run ends, so copies of entries (logs, unsynced
 * writes, messages in flight) only hold pointers to it.
 */
#ifndef CETCD_SIM_H
#define CETCD_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"

#define SIM_ID_MAX            32    /* member IDs are 1..SIM_ID_MAX-1, never reused */
#define SIM_EVENTS_MAX        16384 /* events queued at once, messages included */
#define SIM_MSGS_MAX          4096  /* messages in flight */
#define SIM_WRITES_MAX        2048  /* unsynced ready writes per member */
#define SIM_RECV_SNAPS        4     /* snapshots received, not yet installed */
#define SIM_TICK_UNITS        100   /* virtual time units per raft tick */
#define SIM_TRACE_LINES       64    /* events kept for a failure report */
#define SIM_TRACE_BYTES       240
#define SIM_READS_MAX         8192 /* read requests per run */
#define SIM_DRAIN_MAX         2048 /* readies per member per event */
#define SIM_FINAL_TICKS       500  /* liveness: ticks allowed after the faults stop */
#define SIM_IDLE_HB           20   /* idle liveness: heartbeat intervals without progress */
#define SIM_HEAVY_OUTSTANDING 200  /* heavy load: proposals on the leader not yet committed */

/* ---- model.c: PRNG and hashes ---- */

struct rng {
    uint64_t s;
};

uint64_t rng_next(struct rng *g);
uint64_t rng_below(struct rng *g, uint64_t n); /* uniform enough in [0, n), n > 0 */
bool rng_permille(struct rng *g, uint32_t p);
uint64_t hash64(uint64_t x);

/* A payload, stored once per run (blob store in model.c). */
struct blob {
    uint64_t h; /* hash of type and data: equal h means equal entry payload */
    uint32_t len;
    uint8_t type;
    uint8_t data[];
};

/* A log entry as the simulator keeps it. */
struct sent {
    uint64_t term;
    const struct blob *b;
};

/* A log: entries base_index+1 .. base_index+n; (base_index, base_term) is
 * the snapshot (or compaction point) it continues from. */
struct slog {
    uint64_t base_index;
    uint64_t base_term;
    struct sent *e;
    size_t n;
    size_t cap;
};

uint64_t slog_last(const struct slog *l);
bool slog_term(const struct slog *l, uint64_t index, uint64_t *term);
const struct sent *slog_at(const struct slog *l, uint64_t index);
void slog_truncate(struct slog *l, uint64_t index); /* drops index and after */
void slog_append(struct slog *l, struct sent e);
void slog_reset(struct slog *l, uint64_t base_index, uint64_t base_term);
void slog_compact(struct slog *l, uint64_t index, uint64_t term); /* drops <= index */
void slog_copy(struct slog *dst, const struct slog *src);
void slog_free(struct slog *l);

/* The state a snapshot holds: the model state machine is a chained hash of
 * every entry applied, so "copy of the state" is one word. */
struct snapdata {
    struct raft_snap_meta meta;
    uint64_t chain;
};

/* A message in flight: a deep copy (entries point into the blob store). */
struct netmsg {
    struct raft_msg m;
    struct raft_entry *ents;
    bool has_snapdata;
    struct snapdata snap;
    uint32_t from_inc; /* sender's incarnation, for snapshot reports */
    bool reset;        /* lost with its connection (sim.c link_reset) */
};

/* One ready's storage work, not yet durable. */
struct write {
    bool has_snap;
    struct snapdata snap;
    uint64_t first; /* index of ents[0] */
    struct sent *ents;
    uint32_t n_ents;
    bool has_hs;
    struct raft_hardstate hs;
    struct netmsg **msgs; /* msgs_durable: sent once this write syncs */
    uint32_t n_msgs;
};

enum node_state {
    NODE_NONE = 0, /* never started */
    NODE_UP = 1,
    NODE_DOWN = 2, /* crashed; its durable storage waits for the restart */
    NODE_GONE = 3, /* removed from the cluster and shut down */
};

struct node {
    enum node_state state;
    uint64_t id;
    uint32_t inc; /* incarnation: bumped by each crash, stale events drop */
    struct raft *r;
    struct raft_conf boot_conf;

    /* Durable storage: survives crashes. */
    struct raft_hardstate dhs;
    struct snapdata dsnap;
    struct slog dlog;

    /* Storage as written: durable plus the unsynced writes below. This is
     * the member's log as raft sees it. */
    struct raft_hardstate mhs;
    struct slog mlog;
    struct write *w; /* ring of SIM_WRITES_MAX */
    uint32_t w_head;
    uint32_t w_n;
    uint32_t w_snaps;         /* unsynced writes that install a snapshot */
    uint64_t sync_last;       /* completion time of the newest write */
    uint32_t disk_slow;       /* sync delay multiplier */
    bool in_ready;            /* between raft_ready() and raft_advance() */
    bool unreach[SIM_ID_MAX]; /* queue-full drops to report after raft_advance() */

    /* The state machine. */
    uint64_t applied;
    uint64_t applied_term;
    uint64_t chain;
    struct raft_conf conf;

    struct snapdata recv[SIM_RECV_SNAPS];
    uint32_t recv_next;

    uint8_t seen_role;
    uint64_t seen_term;
    bool retiring; /* removed from the committed membership; shutting down */
};

/* Committed history: index -> entry, as first applied anywhere. */
struct gent {
    uint64_t term;
    const struct blob *b;
    uint64_t chain; /* chained hash of entries 1..index */
    uint64_t ct;    /* upper bound of the term the entry was committed in */
};

/* (index, term) -> payload and previous term, for every entry ever written
 * durably or by a non-leader (Log Matching). */
struct lment {
    uint64_t index;
    uint64_t term;
    uint64_t prev_term;
    const struct blob *b;
};

struct model {
    struct gent *a; /* a[0]: the empty state */
    size_t a_cap;
    uint64_t max; /* highest index applied anywhere */
    struct raft_conf conf;

    struct lment *lm;
    size_t lm_cap;
    size_t lm_n;

    uint64_t *leader_of; /* term -> leader id */
    size_t leader_cap;

    struct blob **blobs;
    size_t blob_cap;
    size_t blob_n;
};

struct readreq {
    uint64_t id;    /* member it was issued on */
    uint64_t floor; /* no read may return an index below this */
    bool done;
};

enum ev_kind {
    EV_TICK = 1,
    EV_MSG,
    EV_SYNC,
    EV_SNAP_REPORT,
    EV_UNREACH,
    EV_RESTART,
    EV_RETIRE,
    EV_PROPOSE,
    EV_READ,
    EV_CHAOS,
    EV_CRASH, /* targeted: crash this incarnation (a new leader, soon after) */
};

struct event {
    uint64_t time;
    uint64_t tie; /* random: processing order of events due at once */
    uint8_t kind;
    uint64_t id;
    uint32_t inc;
    uint64_t arg;
    struct netmsg *nm;
};

struct stats {
    uint64_t events;
    uint64_t leaders;
    uint64_t crashes;
    uint64_t torn;
    uint64_t partitions;
    uint64_t msgs_sent;
    uint64_t msgs_lost;
    uint64_t snaps_sent;
    uint64_t snaps_failed;
    uint64_t snaps_installed;
    uint64_t snaps_taken;
    uint64_t proposals;
    uint64_t applied;
    uint64_t conf_applied;
    uint64_t reads_ok;
    uint64_t transfers;
    uint64_t heavy_phases;
    uint64_t qfull_drops;
    uint64_t link_resets;
    uint64_t idle_ticks; /* ticks from the faults stopping to an idle, caught-up cluster */
    uint64_t final_ticks;
};

struct sim {
    uint64_t seed;
    uint32_t members; /* voters at the start and the floor for removals */
    uint64_t steps_max;
    bool verbose;
    bool brief; /* a failure prints one line (--keep-going) */

    struct rng rng;
    uint64_t now;
    uint64_t step;

    struct event *heap;
    uint32_t heap_n;
    uint32_t msgs_n;

    struct node nodes[SIM_ID_MAX];
    uint64_t next_id;
    struct model g;

    /* Network: a link from -> to is cut while now < cut_until[from][to]. */
    uint64_t cut_until[SIM_ID_MAX][SIM_ID_MAX];
    uint32_t loss_pm;
    uint32_t dup_pm;
    uint32_t delay_max;
    /* Send queue full (the driver drops the message and reports the peer
     * unreachable): from -> to drops while now < qfull_until[from][to]. */
    uint64_t qfull_until[SIM_ID_MAX][SIM_ID_MAX];
    uint32_t qfull_pm;

    struct raft_config cfg;
    uint32_t snap_every; /* applied entries between snapshots */

    uint64_t prop_seq;
    uint64_t heavy_until; /* heavy load: many proposals a tick, queue-full bursts */
    uint64_t heavy_tail;  /* steps before the faults stop that heavy load runs on; 0: none */
    struct readreq *reads;
    uint32_t reads_n;

    bool final; /* faults stopped: checking liveness */
    uint64_t final_start;
    /* Idle liveness, first part of the final stretch: no proposals; the
     * leader must commit its whole log and every member apply it. */
    bool idle_done;
    uint64_t idle_leader; /* leader (and term) all live members follow; 0: none */
    uint64_t idle_term;
    uint64_t idle_sig; /* hash of the logs' progress; a change is progress */
    uint64_t idle_since;
    uint64_t prop_start; /* the final proposal's deadline counts from here */
    uint64_t final_next_try;
    uint64_t final_index;
    uint64_t final_prop_id;

    struct stats st;

    char trace[SIM_TRACE_LINES][SIM_TRACE_BYTES];
    uint64_t trace_n;
};

/* ---- model.c ---- */
void sim_trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_fail(struct sim *s, const char *property, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

const struct blob *blob_intern(struct sim *s, uint8_t type, const void *data, uint32_t len);
uint64_t chain_next(uint64_t chain, uint64_t h);

bool conf_has(const struct raft_conf *c, uint64_t id);
bool conf_is_voter(const struct raft_conf *c, uint64_t id);
bool conf_equal(const struct raft_conf *a, const struct raft_conf *b);
void conf_apply(struct raft_conf *c, const struct raft_conf_change *cc);

void model_init(struct model *g, const struct raft_conf *conf);
void model_free(struct model *g);
void model_apply(struct sim *s, struct node *n, uint64_t index, uint64_t term, const struct blob *b,
                 uint64_t applier_term);
void model_record(struct sim *s, struct node *n, uint64_t index, uint64_t term, uint64_t prev_term,
                  const struct blob *b);
void model_observe_role(struct sim *s, struct node *n, uint8_t role, uint64_t term);
void model_check_leader_log(struct sim *s, struct node *n, uint64_t term);
void model_check_snapshot(struct sim *s, struct node *n, const struct snapdata *sd,
                          const char *what);

/* ---- node.c ---- */
void node_create(struct sim *s, uint64_t id, const struct raft_conf *boot_conf);
void node_restart(struct sim *s, struct node *n);
void node_crash(struct sim *s, struct node *n);
void node_retire(struct sim *s, struct node *n);
void node_free_storage(struct sim *s, struct node *n);
void node_drain(struct sim *s, struct node *n);
void node_sync(struct sim *s, struct node *n);
bool node_check_quiet(struct sim *s, struct node *n); /* true: became leader */
void net_deliver(struct sim *s, struct netmsg *nm);
void netmsg_free(struct netmsg *nm);

/* ---- sim.c ---- */
bool sim_schedule(struct sim *s, uint64_t time, uint8_t kind, uint64_t id, uint32_t inc,
                  uint64_t arg, struct netmsg *nm);
bool sim_link_cut(const struct sim *s, uint64_t from, uint64_t to);
bool sim_queue_full(struct sim *s, uint64_t from, uint64_t to);

#endif
