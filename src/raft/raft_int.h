/*
 * raft_int.h — the inside of struct raft, shared by the raft_*.c files and
 * by nothing else (raft.h is the only way in from outside the module).
 *
 * Files, one concern each:
 *   raft.c             public API: construction, proposals, step dispatch
 *                      with the term rules, ready/advance, queries
 *   raft_log.c         the in-memory log after the compaction point
 *   raft_progress.c    membership, per-member progress, in-flight windows,
 *                      quorum arithmetic
 *   raft_election.c    roles, ticks, (pre)campaigns, votes, CheckQuorum
 *   raft_replication.c leader sends (APP, SNAP, heartbeats), answers,
 *                      commit; follower receipt of APP, SNAP, heartbeats
 *   raft_read.c        ReadIndex rounds
 *
 * Invariants (checked with assert where cheap):
 *   log.snap_index <= applied <= commit; applied <= persisted;
 *   persisted <= last index; unstable <= last index + 1;
 *   commit <= last index once the boot log is loaded;
 *   at most one member with role leader per term (Raft §5.2, by votes).
 * All of it belongs to the one thread that owns the struct raft.
 */
#ifndef CETCD_RAFT_INT_H
#define CETCD_RAFT_INT_H

#include "raft.h"

#define RAFT_MSGS_MAX     65536 /* messages queued per ready; more are dropped like a lossy net */
#define RAFT_MSG_ENTS_MAX 65536 /* entries accepted in one APP or PROP message */

/* The in-memory log: ents[i] has index snap_index + 1 + i. cum[i] is the
 * payload bytes of ents[0..i] plus `cum_base`, so the bytes of any range
 * are a difference. Entry data is owned (malloc'd per entry). */
struct raft_log {
    struct raft_entry *ents;
    uint64_t *cum;
    uint64_t cum_base;
    size_t n;
    size_t cap;
    uint64_t snap_index; /* compaction point: entries <= it are gone */
    uint64_t snap_term;  /* term of entry snap_index (kept for log matching) */
};

/* What the leader knows of one member (etcd's progress tracker). */
struct raft_progress {
    bool used;
    bool learner;
    bool paused;        /* probe: one APP is out; wait for its answer */
    bool recent_active; /* heard from since the last CheckQuorum round */
    bool want_send;     /* an event asks for an APP (even empty) at the next ready */
    uint8_t state;      /* enum raft_progress_state */
    uint64_t id;
    uint64_t match;
    uint64_t next;
    uint64_t pending_snap; /* snapshot state: index of the snapshot sent */
    uint64_t sent_commit;  /* commit index last sent to it */
    uint64_t read_ack;     /* highest read round it acknowledged */
    uint64_t *infl;        /* ring of last indexes of APPs in flight */
    uint32_t infl_start;
    uint32_t infl_count;
};

/* A read waiting for its quorum round on the leader. seq 0: held until
 * the leader has committed an entry of its term. */
struct raft_read_req {
    uint64_t ctx;
    uint64_t from;
    uint64_t index;
    uint64_t seq;
};

struct raft_msgvec {
    struct raft_msg *v;
    uint32_t n;
    uint32_t cap;
};

struct raft {
    struct raft_config cfg;

    /* Persistent state (Raft §5 figure 2) and what was last handed out. */
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
    struct raft_hardstate hs_out;

    struct raft_log log;
    uint64_t persisted; /* highest index durable locally */
    uint64_t unstable;  /* first index not yet handed out in a ready */
    uint64_t applied;   /* last index handed out for apply */
    struct raft_conf conf;
    bool removed; /* applied a conf change removing this member */

    /* Soft state. */
    uint8_t role;
    uint64_t leader;
    uint8_t role_out;
    uint64_t leader_out;
    uint64_t term_out;
    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t timeout; /* randomized election timeout in force */
    uint64_t rng;

    /* Candidate: votes received this campaign. */
    uint64_t vote_id[RAFT_MEMBERS_MAX];
    bool vote_ok[RAFT_MEMBERS_MAX];
    uint32_t n_votes;

    /* Leader. */
    struct raft_progress prs[RAFT_MEMBERS_MAX];
    uint64_t *infl_buf;
    uint64_t pending_conf; /* index of the last conf entry possibly unapplied */
    uint64_t transferee;   /* RAFT_NONE: no leadership transfer going on */
    uint32_t transfer_elapsed;
    struct raft_read_req *rq; /* FIFO, RAFT_READS_MAX */
    uint32_t n_rq;
    uint64_t read_seq;  /* last read round broadcast */
    bool read_round;    /* reads registered for round read_seq + 1 */
    uint64_t sent_last; /* leader: last index handed to APP building */

    /* Snapshots. */
    bool has_snap_avail;
    struct raft_snap_meta snap_avail; /* newest snapshot followers can get */
    bool snap_in_pending;
    struct raft_snap_meta snap_in; /* received, to install at the next ready */

    /* Output accumulated for the next ready. */
    struct raft_msgvec msgs;
    struct raft_msgvec durable;
    struct raft_read *reads_out; /* RAFT_READS_MAX */
    uint32_t n_reads_out;
    struct raft_entry *props; /* follower: proposals to forward */
    uint32_t n_props;
    uint32_t cap_props;
    uint64_t props_bytes;

    /* Between raft_ready and raft_advance. */
    bool in_ready;
    uint64_t rd_last; /* last entry index handed out in the ready */
};

/* raft_log.c */
int log_init(struct raft_log *l, uint64_t snap_index, uint64_t snap_term);
void log_free(struct raft_log *l);
uint64_t log_last_index(const struct raft_log *l);
uint64_t log_last_term(const struct raft_log *l);
uint64_t log_first_index(const struct raft_log *l);
/* Term of entry i; 0 if unknown (compacted or beyond the end). */
uint64_t log_term(const struct raft_log *l, uint64_t i);
bool log_match(const struct raft_log *l, uint64_t i, uint64_t term);
const struct raft_entry *log_get(const struct raft_log *l, uint64_t i);
/* Appends a copy of e (e->index == last + 1). 0 or RAFT_ERR_BUSY (memory). */
int log_append(struct raft_log *l, const struct raft_entry *e);
/* Drops entries >= i. */
void log_truncate(struct raft_log *l, uint64_t i);
void log_compact(struct raft_log *l, uint64_t i);
/* Drops everything; the log continues at index + 1. */
void log_restore(struct raft_log *l, uint64_t index, uint64_t term);
/* Payload bytes of entries [lo, hi]. */
uint64_t log_bytes(const struct raft_log *l, uint64_t lo, uint64_t hi);
/* Largest j <= i with term(j) <= term (etcd's findConflictByTerm). */
uint64_t log_find_by_term(const struct raft_log *l, uint64_t i, uint64_t term);
bool log_is_up_to_date(const struct raft_log *l, uint64_t index, uint64_t term);

/* raft_progress.c */
bool conf_add(struct raft_conf *c, uint64_t id, bool learner);
bool conf_remove(struct raft_conf *c, uint64_t id);
bool conf_member(const struct raft_conf *c, uint64_t id);
uint32_t conf_quorum(const struct raft_conf *c);
struct raft_progress *pr_get(struct raft *r, uint64_t id);
void pr_reset_all(struct raft *r);
void pr_sync_conf(struct raft *r);
void pr_become_probe(struct raft_progress *pr);
void pr_become_replicate(struct raft_progress *pr);
void pr_become_snapshot(struct raft_progress *pr, uint64_t snap_index);
bool pr_maybe_update(struct raft_progress *pr, uint64_t index);
bool pr_maybe_decr(struct raft_progress *pr, uint64_t rejected, uint64_t hint);
bool pr_infl_full(const struct raft *r, const struct raft_progress *pr);
void pr_infl_add(const struct raft *r, struct raft_progress *pr, uint64_t last);
void pr_infl_free_le(const struct raft *r, struct raft_progress *pr, uint64_t index);
void pr_infl_free_first(const struct raft *r, struct raft_progress *pr);
/* The highest value a quorum of voters has reached, val() per voter. */
uint64_t pr_quorum_value(struct raft *r, uint64_t (*val)(struct raft *, struct raft_progress *));

/* raft_election.c */
void el_reset_timeout(struct raft *r);
void el_become_follower(struct raft *r, uint64_t term, uint64_t leader);
void el_become_leader(struct raft *r);
void el_campaign(struct raft *r, bool pre, bool transfer);
void el_hup(struct raft *r, bool transfer);
bool el_promotable(const struct raft *r);
void el_tick(struct raft *r);
void el_handle_vote(struct raft *r, const struct raft_msg *m);
void el_handle_vote_resp(struct raft *r, const struct raft_msg *m);

/* raft_replication.c */
void rep_send_heartbeats(struct raft *r, uint64_t ctx);
void rep_send_timeout_now(struct raft *r, uint64_t to);
void rep_build_appends(struct raft *r);
bool rep_maybe_commit(struct raft *r);
void rep_leader_persisted(struct raft *r);
void rep_handle_app_resp(struct raft *r, const struct raft_msg *m);
void rep_handle_hb_resp(struct raft *r, const struct raft_msg *m);
void rep_handle_app(struct raft *r, const struct raft_msg *m);
void rep_handle_heartbeat(struct raft *r, const struct raft_msg *m);
void rep_handle_snap(struct raft *r, const struct raft_msg *m);
int rep_append_local(struct raft *r, uint8_t type, const void *data, size_t len);
bool rep_backlog_full(const struct raft *r, size_t more_bytes);
bool rep_wants_send(const struct raft *r);

/* raft_read.c */
int rd_request(struct raft *r, uint64_t from, uint64_t ctx);
void rd_release_held(struct raft *r);
void rd_advance(struct raft *r);
void rd_broadcast(struct raft *r);
void rd_clear(struct raft *r);
void rd_deliver(struct raft *r, uint64_t from, uint64_t ctx, uint64_t index);

/* raft.c */
struct raft_msg *raft_out(struct raft *r, bool durable, uint8_t type, uint64_t to);
bool raft_self_voter(const struct raft *r);

#endif
