/*
 * wal — the write-ahead log of Raft records under data-dir/member/wal.
 *
 * The WAL is a sequence of preallocated segment files holding records:
 * Raft entries (term, index, payload) and hard states (term, vote, commit).
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
 * return stops the open, which then fails with that value. */
struct wal_replay_ops {
    int (*entry)(void *arg, const struct wal_entry *e);
    int (*hardstate)(void *arg, const struct wal_hardstate *hs);
};

/* Result of wal_open(): what replay found. */
struct wal_info {
    uint64_t last_index; /* index of the last entry replayed, 0 if none */
    uint64_t last_term;  /* its term */
    uint64_t entries;    /* entries replayed */
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
 * too large (len > WAL_ENTRY_BYTES_MAX). */
int wal_add_entry(struct wal *w, uint64_t term, uint64_t index, const void *data, size_t len);
int wal_add_hardstate(struct wal *w, const struct wal_hardstate *hs);

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
 * segments all of whose entries are <= index (never the tail segment), and
 * fsyncs the directory. Replay after that starts at the first remaining
 * segment; its first entry may be > 1 (the caller skips entries its
 * snapshot already covers). Returns the number of segments removed, or -1
 * (err set). Called by the owner thread between batches. */
int wal_release(struct wal *w, uint64_t index, char *err, size_t err_len);

/* Bytes of records in all segments (what the log holds, not what is
 * preallocated). */
uint64_t wal_size_bytes(const struct wal *w);

#endif
