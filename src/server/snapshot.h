/*
 * snapshot.h — the member's state written to data-dir/member/snap, in the
 * background, and read back at start-up (internal to the server module).
 *
 * What a snapshot holds: the Raft position it covers (index, term), the
 * MVCC state (every stored version, current and compact revision), the
 * members, the lease table and, later, auth. The file format lives in src/raft/snap.c
 * (sections with CRC32C); this file decides what goes in the sections.
 *
 * Threads: snapshot_start() and snapshot_poll() are called by the core
 * only. The writing runs on a thread of its own that reads the MVCC index
 * through its own reader, inside one read section: the view is pinned at
 * the moment snapshot_start() is called, so the core keeps applying writes
 * meanwhile (memory that only the pinned view still sees is freed after).
 */
#ifndef CETCD_SNAPSHOT_H
#define CETCD_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mvcc_store;
struct snapshot;

/* What a finished snapshot covers. */
struct snapshot_point {
    uint64_t index;  /* last Raft entry applied in it */
    uint64_t term;   /* that entry's term */
    uint64_t alarms; /* the member's active alarms then (bit per AlarmType) */
    /* The cluster's membership as the core encodes it (opaque here, at
     * most SNAPSHOT_CLUSTER_BYTES_MAX). snapshot_start() copies it;
     * snapshot_load() returns a malloc'd copy the caller frees (NULL, 0
     * when the file has none); snapshot_poll() leaves it NULL. */
    uint8_t *cluster;
    size_t cluster_len;
    /* The lease table (lease_encode(); opaque here, at most
     * SNAPSHOT_LEASES_BYTES_MAX), handled as `cluster` is. NULL, 0: none
     * (a snapshot written before leases existed). */
    uint8_t *leases;
    size_t leases_len;
};

#define SNAPSHOT_CLUSTER_BYTES_MAX (1u << 20)
#define SNAPSHOT_LEASES_BYTES_MAX  (1ull << 32)

/* Sets up snapshots for the data dir (creates member/snap 0700 if absent). */
int snapshot_init(struct snapshot **out, const char *data_dir, struct mvcc_store *store, char *err,
                  size_t err_len);
void snapshot_fini(struct snapshot *s); /* waits for a running write */

/* Start-up, before any reader: loads the newest valid snapshot into the
 * (empty) store, falling back to older ones if one is damaged (and saying
 * so on stderr). *found false if there is none. -1 with err if snapshots
 * exist but none is valid. */
int snapshot_load(struct snapshot *s, struct snapshot_point *pt, bool *found, char *err,
                  size_t err_len);

/* Core: begins writing a snapshot of the store as applied up to `pt`, in
 * the background. Must be called between transactions (the current
 * published state is the one at pt). Returns 0, or -1 if one is already
 * being written. */
int snapshot_start(struct snapshot *s, const struct snapshot_point *pt);

/* Core, each turn: returns 1 and fills *done once a started snapshot is
 * durable (temp file fsynced, renamed, directory fsynced; older snapshot
 * files beyond the newest few removed), 0 while none finished, -1 if the
 * write failed (message on stderr; the core may retry later). */
int snapshot_poll(struct snapshot *s, struct snapshot_point *done);

/* true while a snapshot is being written. */
bool snapshot_busy(const struct snapshot *s);

/* Core: replaces the live store's state by the snapshot file at path
 * (checked whole first; readers keep reading meanwhile), and fills *pt
 * as snapshot_load() does. 0, or -1 with err (the store unchanged). */
int snapshot_install(struct snapshot *s, const char *path, struct snapshot_point *pt, char *err,
                     size_t err_len);

/* The path of the snapshot file at (term, index) in this data dir. */
void snapshot_path(const struct snapshot *s, uint64_t term, uint64_t index, char *buf, size_t len);

/* Bytes of the newest snapshot file (for Status dbSize). */
uint64_t snapshot_size_bytes(const struct snapshot *s);

#endif
