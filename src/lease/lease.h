/*
 * lease — the lease table: etcd's leases (ID, granted TTL, attached keys)
 * as replicated state, plus the leader's clock-driven view of them.
 *
 * Two kinds of state live here:
 *
 * - Replicated state, changed only by operations applied from the Raft
 *   log in log order on every member: lease_grant, lease_revoke,
 *   lease_attach/lease_detach and lease_checkpoint. They read no clock and
 *   their results depend only on the table and their arguments, so every
 *   member holds the same table after the same entries (and encodes it to
 *   the same bytes, lease_encode).
 *
 * - Leader state: each lease's deadline, meaningful only on the member
 *   that is leader (between lease_promote and lease_demote). The caller
 *   passes its clock (any monotonic milliseconds) to every leader-side
 *   call; the table never reads one. Only the leader decides expiry: it
 *   asks lease_expired() and proposes the revokes through Raft.
 *
 * Checkpoints (etcd 3.4's experimental LeaseCheckpoint): the leader
 * periodically proposes each long lease's remaining TTL; every member
 * records it (lease_checkpoint), and a new leader starts the lease's
 * deadline from it instead of from the full TTL, so a lease's life is not
 * reset by each leader change as it is in etcd without checkpoints.
 *
 * A lease granted while this member is leader gets its deadline at the
 * next leader-side call (every one of them first settles such leases with
 * the time it is given): deadline = that time + its TTL. A checkpoint
 * applied on the leader changes no deadline (only a later promotion
 * reads it), as in etcd.
 * The apply loop calls the leader side in the same loop turn, so the lease
 * lives at most that gap longer; never shorter.
 *
 * Units: TTLs are whole seconds as in etcd's API; deadlines, remaining
 * times and checkpoints are milliseconds (a finer measure than etcd's
 * seconds: a checkpoint never rounds a lease's life up or down).
 *
 * Bounds (asserted, and answered with LEASE_ERR_FULL / LEASE_ERR_INVALID
 * before they could be exceeded): LEASE_MAX leases, LEASE_KEYS_MAX
 * attached keys over all leases, keys of 1..LEASE_KEY_BYTES_MAX bytes.
 *
 * Thread: the core's only (the apply loop and the leader's timers); no
 * locks, no system calls.
 *
 * Semantics follow etcd 3.4's lease/lessor.go and etcdserver's handlers.
 */
#ifndef CETCD_LEASE_H
#define CETCD_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEASE_MAX           (1u << 20)   /* leases in one table */
#define LEASE_KEYS_MAX      (1u << 24)   /* attached keys, all leases together */
#define LEASE_KEY_BYTES_MAX (1u << 24)   /* bytes of one key */
#define LEASE_TTL_MAX_S     9000000000LL /* etcd's MaxLeaseTTL */

/* Errors. X(name, value, message): the message is etcd's grpc-message
 * where etcd has one for the case. */
#define LEASE_ERRORS(X)                                                                            \
    X(LEASE_OK, 0, "ok")                                                                           \
    X(LEASE_ERR_NOT_FOUND, -1, "etcdserver: requested lease not found")                            \
    X(LEASE_ERR_EXISTS, -2, "etcdserver: lease already exists")                                    \
    X(LEASE_ERR_TTL_TOO_LARGE, -3, "etcdserver: too large lease TTL")                              \
    X(LEASE_ERR_NOT_PRIMARY, -4, "lease: this member is not the leader")                           \
    X(LEASE_ERR_EXPIRED, -5, "lease: expired, its revoke is pending")                              \
    X(LEASE_ERR_FULL, -6, "lease: too many leases or attached keys")                               \
    X(LEASE_ERR_INVALID, -7, "lease: invalid argument")                                            \
    X(LEASE_ERR_NOMEM, -8, "lease: out of memory")                                                 \
    X(LEASE_ERR_CORRUPT, -9, "lease: malformed table encoding")

#define LEASE_ERR_ENUM(name, value, msg) name = value,
enum lease_err { LEASE_ERRORS(LEASE_ERR_ENUM) };
#undef LEASE_ERR_ENUM

/* The message of an lease_err (a static string; "unknown" for others). */
const char *lease_strerror(int err);

struct lease_table;

struct lease_config {
    /* etcd's minLeaseTTL: ceil(3 * election_ticks / 2 * heartbeat) in
     * seconds; shorter grants are raised to it. >= 1. */
    int64_t min_ttl_s;
    /* How often the leader checkpoints a lease (etcd's default: 5 min);
     * 0 = never (etcd without --experimental-enable-lease-checkpoint). */
    int64_t checkpoint_interval_ms;
    /* How long an expired lease that lease_expired() reported waits
     * before it is reported again, its revoke not having been applied
     * (etcd's expiredLeaseRetryInterval: 3 s). >= 1. */
    int64_t expired_retry_ms;
};

/* A key as the caller sees it. */
struct lease_key {
    const uint8_t *key;
    size_t len;
};

/* Keys handed to the caller, in key order (bytewise, a prefix first):
 * v[0..n). Release with lease_keys_free() (also after an error: the
 * struct is then empty). */
struct lease_keys {
    struct lease_key *v;
    size_t n;
    void *own_; /* internal: storage the keys point into, if owned */
};
void lease_keys_free(struct lease_keys *k);

/* A new empty table, not leader. NULL if out of memory. The config is
 * copied; invalid values are asserted. */
struct lease_table *lease_create(const struct lease_config *cfg);
void lease_destroy(struct lease_table *t);

/* ---- replicated operations: applied in log order on every member ---- */

/* etcd's Grant. id != 0 (the server picks one for a request with ID 0,
 * as etcd's reqIDGen does, before proposing; an entry with 0 answers
 * LEASE_ERR_NOT_FOUND as etcd's lessor). A TTL below the configured
 * minimum (zero and negative ones too) is raised to it; *granted_ttl_s
 * (may be NULL) gets the TTL granted. Errors: LEASE_ERR_EXISTS,
 * LEASE_ERR_TTL_TOO_LARGE (ttl_s > LEASE_TTL_MAX_S), LEASE_ERR_FULL,
 * LEASE_ERR_NOMEM. */
int lease_grant(struct lease_table *t, int64_t id, int64_t ttl_s, int64_t *granted_ttl_s);

/* etcd's Revoke: removes the lease and hands back the keys that were
 * attached to it, in key order, for the caller to delete in one revision
 * (in that order, as etcd does, so every member's revision hashes agree).
 * The keys are detached. Errors: LEASE_ERR_NOT_FOUND, LEASE_ERR_NOMEM
 * (nothing changed). */
int lease_revoke(struct lease_table *t, int64_t id, struct lease_keys *keys);

/* A Put with a lease: attaches key to lease id, moving it off the lease
 * it was attached to (a key is attached to at most one lease). id == 0
 * detaches it (a Put without a lease). The key is copied. Errors:
 * LEASE_ERR_NOT_FOUND (nothing changed; etcd's apply checks the lease
 * before the put), LEASE_ERR_INVALID (empty or too long key),
 * LEASE_ERR_FULL, LEASE_ERR_NOMEM. */
int lease_attach(struct lease_table *t, const uint8_t *key, size_t len, int64_t id);

/* The key was deleted (DeleteRange, Txn delete, or a Put without a
 * lease): detaches it from its lease. LEASE_ERR_NOT_FOUND if it was not
 * attached (harmless). */
int lease_detach(struct lease_table *t, const uint8_t *key, size_t len);

/* etcd's LeaseCheckpoint: records the remaining TTL a leader measured
 * for lease id, for the next leader to continue from. remaining_ms <= 0
 * clears it (the lease then starts from its full TTL again, as after a
 * KeepAlive: see lease_renew); longer than the TTL is cut to the TTL.
 * LEASE_ERR_NOT_FOUND for an unknown lease (etcd's apply ignores it: the
 * lease may have been revoked since). */
int lease_checkpoint(struct lease_table *t, int64_t id, int64_t remaining_ms);

/* ---- queries: any member ---- */

struct lease_info {
    int64_t ttl_s;         /* granted TTL */
    int64_t checkpoint_ms; /* last checkpointed remaining TTL; 0 = none */
    size_t n_keys;         /* attached keys */
};

/* 0 and *info (may be NULL), or LEASE_ERR_NOT_FOUND: a Put's check that
 * its lease exists. */
int lease_get(const struct lease_table *t, int64_t id, struct lease_info *info);
/* The lease key is attached to, 0 if none. */
int64_t lease_of(const struct lease_table *t, const uint8_t *key, size_t len);
size_t lease_count(const struct lease_table *t);
/* etcd's Leases: every lease ID, ascending, in *ids (malloc'd, NULL when
 * there are none; free()). 0 or LEASE_ERR_NOMEM. */
int lease_list(const struct lease_table *t, int64_t **ids, size_t *n);

/* ---- leader side: the caller's clock in milliseconds ---- */

bool lease_is_leader(const struct lease_table *t);

/* This member became leader: every lease's deadline = now_ms + extend_ms
 * + its checkpointed remaining TTL, or its full TTL if it has none. etcd
 * extends by the election timeout, so that clients whose KeepAlives went
 * to the old leader have time to find this one. O(n log n). Asserts not
 * leader already. */
void lease_promote(struct lease_table *t, int64_t now_ms, int64_t extend_ms);

/* This member is leader no longer: deadlines are forgotten (replicated
 * state untouched). O(n). No-op if not leader. */
void lease_demote(struct lease_table *t);

/* etcd's Renew (a KeepAlive): deadline = now + full TTL; *ttl_s = the
 * granted TTL to answer. *clear_checkpoint (may be NULL) is set when the
 * lease carries a checkpoint, which the caller should clear by proposing
 * lease_checkpoint(id, 0) (as etcd does), or a later leader would resume
 * the lease from that stale, shorter remaining TTL. Errors (*ttl_s = 0,
 * KeepAlive's answer for an unknown lease): LEASE_ERR_NOT_FOUND;
 * LEASE_ERR_NOT_PRIMARY (forward to the leader); LEASE_ERR_EXPIRED: the
 * deadline has passed, so the lease is not renewed; etcd then waits for
 * the revoke to apply (and answers TTL 0) or for a demotion. */
int lease_renew(struct lease_table *t, int64_t id, int64_t now_ms, int64_t *ttl_s,
                bool *clear_checkpoint);

/* Milliseconds until lease id's deadline (negative once passed) in
 * *remaining_ms. LEASE_ERR_NOT_FOUND, LEASE_ERR_NOT_PRIMARY. */
int lease_remaining(struct lease_table *t, int64_t id, int64_t now_ms, int64_t *remaining_ms);

/* etcd's TimeToLive answer. */
struct lease_ttl {
    int64_t granted_ttl_s;
    /* Remaining seconds, truncated as etcd's int64(Remaining().Seconds())
     * (4.9 s left answers 4); 0 once the deadline passed (etcd goes
     * negative there, which a client cannot tell from -1); -1 for an
     * unknown lease. */
    int64_t ttl_s;
    struct lease_keys keys; /* with_keys only; point into the table, valid
                             * until the next replicated operation */
};
/* Fills *out (keys in key order). LEASE_ERR_NOT_FOUND (out->ttl_s = -1,
 * granted 0: etcd answers that rather than an error),
 * LEASE_ERR_NOT_PRIMARY, LEASE_ERR_NOMEM. lease_keys_free(&out->keys)
 * after any return. */
int lease_time_to_live(struct lease_table *t, int64_t id, int64_t now_ms, bool with_keys,
                       struct lease_ttl *out);

/* Up to max IDs of leases whose deadline is at or before now_ms, earliest
 * deadline first (ties by ID), for the leader to propose their revokes.
 * A lease reported is reported again only after expired_retry_ms if its
 * revoke has not been applied by then (a lost proposal). O(k log n) with
 * the deadline heap. Returns the number written; 0 when not leader. */
size_t lease_expired(struct lease_table *t, int64_t now_ms, int64_t *ids, size_t max);

struct lease_checkpoint {
    int64_t id;
    int64_t remaining_ms;
};

/* Up to max checkpoints due at now_ms, to propose as one LeaseCheckpoint
 * entry. Policy (etcd's, in ms): a lease whose TTL (or checkpointed
 * remaining TTL, at promotion) is longer than the interval is looked at
 * every interval; it is checkpointed unless its deadline passed (expiry
 * deals with it) or it was renewed within the last second (its remaining
 * TTL, in etcd's rounded-up seconds, is still its full TTL), and it stays
 * scheduled while its remaining TTL is longer than the interval; a renew
 * schedules it again (interval after the renew) if it is not. O(k log n)
 * with the checkpoint heap. Returns the number written; 0 when not leader or
 * checkpoints are off. */
size_t lease_checkpoints_due(struct lease_table *t, int64_t now_ms, struct lease_checkpoint *out,
                             size_t max);

/* ---- snapshots (format at the top of lease_codec.c) ---- */

/* The replicated state (IDs, TTLs, checkpoints, attached keys), in a
 * canonical order: equal tables encode to equal bytes. malloc'd (free()),
 * NULL if out of memory. */
uint8_t *lease_encode(const struct lease_table *t, size_t *len);

/* A new table (not leader) holding what buf encodes, TTLs below
 * cfg->min_ttl_s raised to it (as etcd's recovery does). *out = NULL and
 * LEASE_ERR_CORRUPT for any damage (bad CRC, length, order, bounds), or
 * LEASE_ERR_NOMEM. */
int lease_decode(const struct lease_config *cfg, const uint8_t *buf, size_t len,
                 struct lease_table **out);

#endif
