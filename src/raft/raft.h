/*
 * raft — the Raft consensus state machine, pure: it makes no system call,
 * reads no clock and draws no random number it was not seeded for.
 *
 * Inputs: ticks (raft_tick), messages from peers (raft_step), proposals
 * (raft_propose, raft_propose_conf), read requests (raft_read_index),
 * leadership transfer (raft_transfer_leader) and storage completions
 * (raft_persisted). Output: a *ready* record (raft_ready) listing what the
 * driver must do: entries and hard state to make durable, messages to send
 * now, messages to send only once that is durable, committed entries to
 * apply, confirmed read indexes, a snapshot to install. The core's io_uring
 * driver (src/server/core.c) and the deterministic simulator in tests/sim
 * drive the same code.
 *
 * Scope: leader election with randomized timeouts, PreVote and CheckQuorum
 * (Raft thesis §9.6); log replication pipelined with a bounded window of
 * in-flight appends per follower; commit once a quorum holds an entry
 * durably, the leader's own log write counting like any follower's, so the
 * leader's fdatasync runs in parallel with its sends (thesis §10.2.1);
 * ReadIndex (thesis §6.4), one quorum round for every read registered
 * under one context; proposals and read requests made on a follower are
 * forwarded to the leader; leadership transfer (thesis §3.10); membership
 * changes one server at a time (thesis §4.1), with learners (non-voting
 * members that receive the log); snapshots for a follower whose next entry
 * the leader no longer holds (thesis §5).
 *
 * Membership changes take effect when their entry is handed out for apply
 * (in raft_ready's `committed`), before the driver sees it. Only one change
 * may be in the log and not yet applied at a time.
 *
 * Threading: a struct raft belongs to one thread; nothing here locks.
 *
 * Memory: the log kept in memory holds the entries after the last
 * compaction point (raft_compact); the driver bounds it by compacting after
 * each snapshot. Everything else is bounded by the limits below.
 */
#ifndef CETCD_RAFT_H
#define CETCD_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_NONE 0 /* no member: "no leader", "voted for nobody" */

#define RAFT_MEMBERS_MAX    16          /* voters + learners */
#define RAFT_INFLIGHT_MAX   1024        /* upper bound of raft_config.max_inflight */
#define RAFT_READS_MAX      1024        /* read contexts waiting at once */
#define RAFT_CONF_CTX_BYTES 4096        /* driver context carried by a conf change */
#define RAFT_PROPOSAL_BYTES (64u << 20) /* largest entry payload */
/* Proposals are refused with RAFT_ERR_BUSY when the leader holds more than
 * RAFT_BACKLOG_ENTRIES entries or RAFT_BACKLOG_BYTES of payload that are
 * not durable locally yet, or when a follower has that much buffered for
 * forwarding in one loop turn. */
#define RAFT_BACKLOG_ENTRIES 100000
#define RAFT_BACKLOG_BYTES   (64u << 20)

/* Errors: 0 is success, these are negative. RAFT_ERROR_LIST(X) generates
 * the enum and raft_strerror(). */
#define RAFT_ERROR_LIST(X)                                                                         \
    X(RAFT_ERR_NO_LEADER, -1, "no leader is known")                                                \
    X(RAFT_ERR_NOT_LEADER, -2, "this member is not the leader")                                    \
    X(RAFT_ERR_TRANSFERRING, -3, "leadership is being transferred")                                \
    X(RAFT_ERR_CONF_PENDING, -4, "a membership change is still pending")                           \
    X(RAFT_ERR_UNKNOWN_MEMBER, -5, "no such member")                                               \
    X(RAFT_ERR_MEMBER_EXISTS, -6, "member already exists")                                         \
    X(RAFT_ERR_TOO_MANY_MEMBERS, -7, "too many members")                                           \
    X(RAFT_ERR_TOO_LARGE, -8, "proposal too large")                                                \
    X(RAFT_ERR_BUSY, -9, "too many requests waiting")                                              \
    X(RAFT_ERR_REMOVED, -10, "this member was removed from the cluster")                           \
    X(RAFT_ERR_NOT_LEARNER, -11, "member is not a learner")                                        \
    X(RAFT_ERR_INVALID, -12, "invalid argument")

enum raft_error {
#define RAFT_ERR_ENUM(name, value, text) name = value,
    RAFT_ERROR_LIST(RAFT_ERR_ENUM)
#undef RAFT_ERR_ENUM
};

const char *raft_strerror(int rv);

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRECANDIDATE = 1,
    RAFT_CANDIDATE = 2,
    RAFT_LEADER = 3,
};

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* driver payload (may be empty: a new leader's entry) */
    RAFT_ENTRY_CONF = 1,   /* a membership change, encoded by raft_conf_encode */
};

/* A log entry. When raft hands one out (ready, messages), `data` points
 * into raft's memory and stays valid until raft_advance(). When the driver
 * hands one in (raft_step, raft_load), raft copies what it keeps. */
struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint8_t type; /* enum raft_entry_type */
    uint32_t len;
    const uint8_t *data;
};

/* Persistent state (Raft §5 figure 2): written before any message that
 * depends on it is sent. commit is persisted too, so a restart can re-apply
 * what was committed without waiting for a leader. */
struct raft_hardstate {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
};

/* The membership: voter and learner IDs, no duplicates, no ID in both. */
struct raft_conf {
    uint64_t voters[RAFT_MEMBERS_MAX];
    uint64_t learners[RAFT_MEMBERS_MAX];
    uint32_t n_voters;
    uint32_t n_learners;
};

/* What a snapshot covers: every entry up to (index, term), and the
 * membership in force after applying it. */
struct raft_snap_meta {
    uint64_t index;
    uint64_t term;
    struct raft_conf conf;
};

enum raft_conf_op {
    RAFT_CONF_ADD_VOTER = 1,   /* a new voter */
    RAFT_CONF_ADD_LEARNER = 2, /* a new learner */
    RAFT_CONF_REMOVE = 3,      /* a voter or learner leaves */
    RAFT_CONF_PROMOTE = 4,     /* a learner becomes a voter */
};

/* A membership change as carried in a RAFT_ENTRY_CONF entry. ctx is the
 * driver's (names, URLs); raft only carries it. */
struct raft_conf_change {
    uint8_t op; /* enum raft_conf_op */
    uint64_t id;
    const uint8_t *ctx;
    uint32_t ctx_len;
};

/* Entry data of a conf change: op (1 byte), 7 zero bytes, id (8 bytes,
 * little-endian), ctx. raft_conf_encode returns the bytes written (16 +
 * ctx_len) or 0 if cap is too small; raft_conf_decode returns 0 or
 * RAFT_ERR_INVALID, and points c->ctx into data. */
size_t raft_conf_encode(const struct raft_conf_change *c, uint8_t *out, size_t cap);
int raft_conf_decode(const uint8_t *data, size_t len, struct raft_conf_change *c);

enum raft_msg_type {
    RAFT_MSG_APP = 1,       /* entries after (index, log_term); commit */
    RAFT_MSG_APP_RESP = 2,  /* index: last index now matching, or the rejected one */
    RAFT_MSG_VOTE = 3,      /* index/log_term: the candidate's last entry */
    RAFT_MSG_VOTE_RESP = 4, /* reject */
    RAFT_MSG_PREVOTE = 5,   /* term: the term the candidate would campaign in */
    RAFT_MSG_PREVOTE_RESP = 6,
    RAFT_MSG_HEARTBEAT = 7,        /* commit; ctx: read-index round (0: none) */
    RAFT_MSG_HEARTBEAT_RESP = 8,   /* ctx echoed */
    RAFT_MSG_PROP = 9,             /* follower -> leader: forwarded proposals (entries) */
    RAFT_MSG_READ_INDEX = 10,      /* follower -> leader: ctx */
    RAFT_MSG_READ_INDEX_RESP = 11, /* index: the read index for ctx; reject: none */
    RAFT_MSG_SNAP = 12,            /* leader -> follower: install snap (data sent by the driver) */
    RAFT_MSG_TIMEOUT_NOW = 13,     /* leader -> transfer target: campaign now */
    RAFT_MSG_TRANSFER = 14,        /* follower -> leader: transfer leadership to `index` (an ID) */
};

/* ctx of a VOTE or PREVOTE sent by a leadership-transfer target (after
 * TIMEOUT_NOW): voters grant it even while they still hear from a leader
 * (CheckQuorum leader stickiness does not apply), as in etcd. */
#define RAFT_CTX_TRANSFER 1

/* Terms, as in etcd's raft: a message of a newer term makes the receiver a
 * follower of that term (of its sender if it is an APP, HEARTBEAT or SNAP),
 * except a PREVOTE and a granted PREVOTE_RESP, which change nothing, and a
 * (PRE)VOTE that arrives while a leader is still heard from with
 * check_quorum on, which is ignored (unless ctx == RAFT_CTX_TRANSFER).
 * Messages of an older term are ignored, except a PREVOTE (answered with a
 * rejecting PREVOTE_RESP) and, with check_quorum or pre_vote, an APP or
 * HEARTBEAT (answered with an APP_RESP of the newer term, so that a stale
 * leader steps down). A VOTE of a newer term restarts the election timer
 * only if it is granted (Raft §5.2 figure 2), so candidates with stale logs
 * cannot keep up-to-date members from campaigning. Granted VOTE_RESPs and
 * accepting APP_RESPs only ever go in msgs_durable; VOTE requests too (they
 * rest on the new term). */

/* One message. Field use per type is listed in enum raft_msg_type. Every
 * message carries from, to and term (term 0 for PROP, READ_INDEX and
 * TRANSFER, which are not part of the protocol's term checks). */
struct raft_msg {
    uint8_t type; /* enum raft_msg_type */
    bool reject;
    uint64_t from;
    uint64_t to;
    uint64_t term;
    uint64_t log_term; /* APP: term of entry `index`; APP_RESP reject: term at reject_hint */
    uint64_t index;
    uint64_t commit;
    uint64_t reject_hint; /* APP_RESP reject: the follower's guess of where logs match */
    uint64_t ctx;
    const struct raft_entry *entries; /* APP, PROP */
    uint32_t n_entries;
    struct raft_snap_meta snap; /* SNAP */
};

struct raft_config {
    uint64_t id; /* this member, != RAFT_NONE */
    /* Ticks without hearing from a leader before campaigning; the timeout
     * actually used is drawn in [election_ticks, 2 * election_ticks). */
    uint32_t election_ticks;
    uint32_t heartbeat_ticks; /* leader: ticks between heartbeats; < election_ticks */
    uint64_t seed;            /* for the randomized election timeouts */
    uint32_t max_inflight;    /* appends in flight per follower, 1..RAFT_INFLIGHT_MAX */
    uint32_t max_msg_bytes;   /* entry bytes per APP message (at least one entry) */
    uint32_t max_apply_bytes; /* committed entry bytes per ready (at least one entry) */
    bool pre_vote;            /* thesis §9.6 */
    bool check_quorum;        /* leader steps down without a quorum for an election timeout */
};

/* Where a member starts from: the hard state and snapshot found on disk
 * (both zero for a brand new member, with snap.conf the initial
 * membership; a member joining a running cluster boots with the
 * membership it was told, without itself, and learns the rest from the
 * conf entries or the snapshot the leader sends). The log after the snapshot is handed in with
 * raft_load() before the first raft_tick/raft_step. Entries (snap.index, hs.commit] are handed out
 * again for apply: the driver's state is the snapshot's. */
struct raft_boot {
    struct raft_hardstate hs;
    struct raft_snap_meta snap;
};

struct raft;

/* NULL if out of memory or the config is invalid. */
struct raft *raft_new(const struct raft_config *cfg, const struct raft_boot *boot);
void raft_free(struct raft *r);

/* Start-up only: appends one entry replayed from the WAL. Indexes must run
 * on from snap.index + 1; an index at or below the last loaded one
 * replaces the log from there (as it did when it was written). 0, or
 * RAFT_ERR_INVALID. */
int raft_load(struct raft *r, const struct raft_entry *e);

/* One tick of the logical clock. */
void raft_tick(struct raft *r);

/* Starts an election now (a sole voter becomes leader at once). */
void raft_campaign(struct raft *r);

/* A message from a peer. Messages from unknown members, to someone else
 * or malformed are dropped. A member that is not in its own configuration
 * (it joined and has not learned the membership yet, or it was removed)
 * accepts messages from anyone: it has no other way to learn. */
void raft_step(struct raft *r, const struct raft_msg *m);

/* Appends a normal entry (leader) or forwards it to the leader
 * (follower). Data is copied. 0 or RAFT_ERR_NO_LEADER, _TRANSFERRING,
 * _TOO_LARGE, _BUSY, _REMOVED. A forwarded proposal may still be lost (the
 * leader fails first); the driver recognises its own entries when they
 * come back for apply and times out the others. */
int raft_propose(struct raft *r, const void *data, size_t len);

/* Proposes a membership change: appended on the leader, forwarded to it
 * by a follower (which checks it against its own view of the membership
 * first; the leader checks again and drops it if it may not, so a
 * forwarded change may be lost like any forwarded proposal). 0 or
 * RAFT_ERR_NO_LEADER, _CONF_PENDING, _UNKNOWN_MEMBER, _MEMBER_EXISTS,
 * _TOO_MANY_MEMBERS, _NOT_LEARNER, _TOO_LARGE (ctx), _TRANSFERRING,
 * _REMOVED. Removing a voter that would leave no voter is
 * RAFT_ERR_INVALID. */
int raft_propose_conf(struct raft *r, enum raft_conf_op op, uint64_t id, const void *ctx,
                      size_t ctx_len);

/* Registers a linearizable read under ctx (!= 0; the driver uses one ctx
 * for every read of one loop turn). When a quorum has confirmed this
 * member's leadership at a commit index at least that of the request, a
 * raft_read {ctx, index} comes out in a ready; the driver serves the reads
 * once it has applied `index`. A leader that has not yet committed an
 * entry of its term waits until it has (thesis §6.4). On a follower the
 * request goes to the leader. 0 or RAFT_ERR_NO_LEADER, _BUSY. Reads lost
 * with a leader change never come out: the driver times them out. */
int raft_read_index(struct raft *r, uint64_t ctx);

/* Leadership transfer to `to` (thesis §3.10): the leader brings it up to
 * date, then tells it to campaign at once; proposals are refused
 * (RAFT_ERR_TRANSFERRING) until it happens or an election timeout passes.
 * On a follower the request goes to the leader (RAFT_MSG_TRANSFER), `to`
 * may then be the follower itself. 0 or RAFT_ERR_NO_LEADER,
 * _UNKNOWN_MEMBER (also for a learner), RAFT_ERR_INVALID (leader: to is
 * self). */
int raft_transfer_leader(struct raft *r, uint64_t to);

/* Storage completion: every entry up to `index` handed out in earlier
 * readies, and the hard states handed out with them, are durable; `term`
 * is the term of entry `index`. If the log was since replaced at or below
 * index by entries of another term, only the matching prefix counts. */
void raft_persisted(struct raft *r, uint64_t index, uint64_t term);

/* A snapshot covering everything up to meta->index is durable and can be
 * sent to followers; meta->index must be <= the applied index. */
void raft_snapshot_taken(struct raft *r, const struct raft_snap_meta *meta);

/* Drops log entries <= index from memory (index <= the newest snapshot's).
 * Followers that need them get the snapshot instead. */
void raft_compact(struct raft *r, uint64_t index);

/* The driver could not deliver the snapshot to `to` (ok false) or
 * delivered it (ok true; raft then waits for the follower's answer). */
void raft_report_snapshot(struct raft *r, uint64_t to, bool ok);

/* The driver could not reach `to`: its pipeline falls back to probing. */
void raft_report_unreachable(struct raft *r, uint64_t to);

struct raft_read {
    uint64_t ctx;
    uint64_t index;
};

/* Everything the driver must do, in this order:
 *  1. If has_snap: install the snapshot (received with the SNAP message)
 *     and make it durable; the log is empty afterwards and continues at
 *     snap.index + 1.
 *  2. Append `entries` to the log (the first may be at or below the last
 *     index written before: the log from there on is replaced), and write
 *     `hs` if hs_changed. Not necessarily durable yet.
 *  3. Send `msgs` now.
 *  4. Send `msgs_durable` only once 1 and 2 are durable, then call
 *     raft_persisted() with the last entry of 2 (if any).
 *  5. Apply `committed` in order (they are durable locally).
 *  6. Serve the reads in `reads` once the applied index reaches theirs.
 * Pointers stay valid until raft_advance(); no other raft_* call may come
 * between raft_ready() and raft_advance(). */
struct raft_ready {
    bool has_snap;
    struct raft_snap_meta snap;

    const struct raft_entry *entries;
    uint32_t n_entries;
    bool hs_changed;
    struct raft_hardstate hs;

    const struct raft_msg *msgs;
    uint32_t n_msgs;
    const struct raft_msg *msgs_durable;
    uint32_t n_msgs_durable;

    const struct raft_entry *committed;
    uint32_t n_committed;

    const struct raft_read *reads;
    uint32_t n_reads;

    /* Soft state, always filled in. */
    uint64_t leader;
    uint64_t term;
    uint8_t role; /* enum raft_role */
};

/* true if raft_ready() would return anything to do (it may still find
 * nothing, e.g. when a pending send turns out empty). */
bool raft_has_ready(const struct raft *r);
/* Fills rd (false: nothing to do, and raft_advance() is then a no-op).
 * A change of leader, role or term alone also makes a ready. */
bool raft_ready(struct raft *r, struct raft_ready *rd);
/* The driver has taken everything out of the last ready (copied entries,
 * queued messages, applied committed entries). */
void raft_advance(struct raft *r);

/* ---- queries ---- */

uint64_t raft_id(const struct raft *r);
uint64_t raft_term(const struct raft *r);
uint64_t raft_leader(const struct raft *r);
enum raft_role raft_role(const struct raft *r);
uint64_t raft_commit_index(const struct raft *r);
uint64_t raft_applied_index(const struct raft *r); /* last handed out for apply */
uint64_t raft_first_index(const struct raft *r);   /* first entry held in memory */
uint64_t raft_last_index(const struct raft *r);
const struct raft_conf *raft_conf(const struct raft *r);
bool raft_is_voter(const struct raft_conf *c, uint64_t id);
bool raft_is_learner(const struct raft_conf *c, uint64_t id);

enum raft_progress_state {
    RAFT_PROGRESS_PROBE = 0,
    RAFT_PROGRESS_REPLICATE = 1,
    RAFT_PROGRESS_SNAPSHOT = 2,
};

struct raft_progress_info {
    uint64_t match; /* highest index known replicated (durable) there */
    uint64_t next;  /* next index to send */
    uint8_t state;  /* enum raft_progress_state */
    bool recent_active;
};

/* Leader only: what it knows of member id. 0 or RAFT_ERR_NOT_LEADER,
 * RAFT_ERR_UNKNOWN_MEMBER. */
int raft_progress(const struct raft *r, uint64_t id, struct raft_progress_info *out);

#endif
