/*
 * wal — the write-ahead log of Raft records under data-dir/member/wal.
 *
 * The WAL is a sequence of preallocated segment files holding records:
 * Raft entries (term, index, payload), hard states (term, vote, commit) and
 * snapshot markers (index, term: "the log restarts after a snapshot").
 * Every record carries its length and a CRC32C chained over all records
 * before it, and starts on an 8-byte boundary. The exact on-disk format is
 * documented at the top of wal.c, where it is implemented.
 *
 * Threading: one owner thread (the core). Nothing here is shared.
 *
 * Writing is split so that the owner can drive the I/O itself through
 * io_uring: records are appended to an in-memory batch with wal_add_*(),
 * wal_batch_prepare() hands out the bytes, fd and file offset of the whole
 * batch, the owner submits one write plus one fdatasync, and reports the
 * outcome with wal_batch_done(). At most one batch is in flight; records
 * added while it is in flight go to the next batch. wal_batch_sync() does
 * the same synchronously (start-up, tests).
 *
 * Opening replays every valid record, in order, through the caller's
 * callbacks. A record that fails its checks at the tail of the last segment
 * is a torn write and is cut off (the space is zeroed and synced); a bad
 * record anywhere else fails the open with a message naming the file and
 * the offset.
 */
#ifndef CETCD_WAL_H
#define CETCD_WAL_H

#include <stddef.h>
#include <stdint.h>

/* Segment size: each segment file is preallocated to this many bytes. A
 * single batch larger than this gets a segment of its own, as large as it
 * needs. */
#define WAL_SEGMENT_BYTES (64u << 20)
/* Largest payload of one entry record. */
#define WAL_ENTRY_BYTES_MAX (64u << 20)

struct wal;

struct wal_hardstate {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
};

struct wal_entry {
    uint64_t term;
    uint64_t index;
    const void *data; /* valid only during the callback */
    size_t len;
};

/* Replay callbacks, called in log order during wal_open(). A non-zero
 * return stops the open, which then fails with that value. Any of them may
 * be NULL (the records are then checked and skipped).
 *
 * entry: an entry with an index <= the previous one's means Raft overwrote
 * a suffix (Raft §5.3): drop the replayed entries >= e->index first.
 * snapshot: a SNAPSHOT marker (see wal_add_snapshot()). Every entry
 * replayed before it is superseded: drop them all; the log now ends at
 * (index, term) and continues at index + 1. */
struct wal_replay_ops {
    int (*entry)(void *arg, const struct wal_entry *e);
    int (*hardstate)(void *arg, const struct wal_hardstate *hs);
    int (*snapshot)(void *arg, uint64_t index, uint64_t term);
};

/* Result of wal_open(): what replay found. */
struct wal_info {
    uint64_t last_index; /* last entry replayed, or the marker's index if a
                            marker came after it; 0 if none */
    uint64_t last_term;  /* its term */
    uint64_t entries;    /* entry records replayed (superseded ones too) */
    uint64_t snap_index; /* index of the last SNAPSHOT marker replayed, 0 if none */
    uint64_t snap_term;  /* its term */
    uint64_t torn_bytes; /* bytes cut off a torn tail (0 if none) */
};

/* One batch ready for the owner to write: `len` bytes at `buf`, to be
 * written at `offset` in `fd`, then fdatasync(fd). */
struct wal_write {
    int fd;
    uint64_t offset;
    const void *buf;
    size_t len;
};

/* Opens the WAL in `dir` (created with mode 0700 if absent, with its parent
 * directories; files are created 0600), replays it through `ops`, and cuts
 * a torn tail. Returns 0 and sets *out, or -1 with a one-line message in
 * `err` (for a corrupt record: "<file>: corrupt record at offset <n>: ..."). */
int wal_open(const char *dir, const struct wal_replay_ops *ops, void *arg, struct wal **out,
             struct wal_info *info, char *err, size_t err_len);
void wal_close(struct wal *w);

/* Appends a record to the pending batch. Returns 0, or -1 if the record is
 * too large (len > WAL_ENTRY_BYTES_MAX) or the batch is full.
 * Entry indexes never skip (asserted): index <= last index + 1, and after a
 * SNAPSHOT marker at S, index > S (the first one is exactly S + 1). */
int wal_add_entry(struct wal *w, uint64_t term, uint64_t index, const void *data, size_t len);
int wal_add_hardstate(struct wal *w, const struct wal_hardstate *hs);

/* Appends a SNAPSHOT marker: a snapshot covering every entry up to `index`
 * (whose term is `term`) has been installed, and the log restarts after
 * it. Every entry before the marker is superseded, whatever its index
 * (index may be below, at or far above the last index); the last index
 * becomes `index` and the next entry added must be index + 1. Write it
 * only once the snapshot file is durable: a durable marker is the WAL's
 * proof that such a snapshot exists (wal_release() relies on it).
 * Markers never go back (asserted): index >= 1, and (index, term) is not
 * below the previous marker's (same index means same term).
 * Not needed when the log already holds entry `index` with term `term`
 * (Raft §7: the entries following it are kept): that snapshot is like a
 * local one. If the process dies before the marker's batch is durable,
 * replay ends before it (it was never acknowledged): a snapshot file that
 * replay does not account for then calls for the marker again, before the
 * next entry. Returns 0, or -1 if the batch is full. */
int wal_add_snapshot(struct wal *w, uint64_t index, uint64_t term);

/* Bytes in the pending batch (not yet handed out). */
size_t wal_pending_bytes(const struct wal *w);

/* Hands out the pending batch. Returns 1 and fills *out if there was one,
 * 0 if the batch was empty, -1 on an I/O error while rolling to a new
 * segment (message in err). Must not be called while a batch is in flight.
 * Rolling to a new segment (create, preallocate, fsync the directory)
 * happens here, synchronously; it is rare (once per WAL_SEGMENT_BYTES). */
int wal_batch_prepare(struct wal *w, struct wal_write *out, char *err, size_t err_len);

/* The in-flight batch is durable (the write wrote everything and the
 * fdatasync returned 0). A failed write or fsync is fatal for the caller:
 * it must exit, never call this. */
void wal_batch_done(struct wal *w);

/* Prepare + pwrite + fdatasync + done, synchronously. 0 or -1 (err set). */
int wal_batch_sync(struct wal *w, char *err, size_t err_len);

/* A snapshot covering every entry up to `index` is durable: removes the
 * segments all of whose live entries are <= index (never the tail
 * segment), and fsyncs the directory. An entry superseded by a durable
 * SNAPSHOT marker at <= index is not live. Replay after that starts at the
 * first remaining segment; its first entry may be > 1 (the caller skips
 * entries its snapshot already covers), and the markers of removed
 * segments are not replayed (the caller's snapshot file covers them).
 * Returns the number of segments removed, or -1 (err set). Called by the
 * owner thread between batches. */
int wal_release(struct wal *w, uint64_t index, char *err, size_t err_len);

/* Bytes of records in all segments (what the log holds, not what is
 * preallocated). */
uint64_t wal_size_bytes(const struct wal *w);

#endif
