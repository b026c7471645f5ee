/*
 * wal.c — the write-ahead log: segment files under data-dir/member/wal,
 * the record format, replay with torn-tail repair, and the double-buffered
 * batches that the owner writes through io_uring (or wal_batch_sync()).
 *
 * Owns: the directory fd, the tail segment's fd (plus, during one batch
 * after a roll, the previous tail's), two batch buffers, and the list of
 * segments on disk (to release the old ones after a snapshot).
 * Thread: the core, the WAL's only user. Nothing here is shared or locked.
 * Invariants:
 *  - At most one batch is in flight; adds meanwhile go to the other buffer,
 *    and the buffer being prepared always has an empty sibling.
 *  - w->crc is the chain value after the last record added (pending ones
 *    included); a buffer's crc_start is the value before its first record.
 *  - In the tail segment, bytes [seg_used, seg_size) are zero on disk,
 *    except the range of the batch in flight.
 *  - Entry indexes added never skip: index <= last + 1, and index > the
 *    last SNAPSHOT marker's (see REPLAY); w->last_index is the last entry
 *    added, or the marker's index if a marker came after it.
 *  - w->segs lists the segments on disk in sequence order, consecutive
 *    numbers, the tail last; w->hs_seq names the one holding the newest
 *    durable HARDSTATE (0 if there is none), which is never released;
 *    w->snap_seq the one holding the newest durable SNAPSHOT marker.
 *
 * SEGMENT FILES
 *
 * NAME = SSSSSSSSSSSSSSSS-IIIIIIIIIIIIIIII.wal: S is the sequence number
 * (1, 2, 3, ... with no gaps; after a RELEASE the oldest remaining one may
 * be any S > 0, and the numbers still run without gaps from it), I the
 * index of the first entry written to the segment, or if the batch that
 * created it holds none, the last index after that batch + 1 (a SNAPSHOT
 * marker at index M sets the last index to M: a segment begun by a lone
 * marker is named M + 1, the index its first entry will have); both are
 * 16 lowercase hex digits, so names sort in log order. A segment is
 * created as NAME.tmp, preallocated with fallocate to WAL_SEGMENT_BYTES
 * (or larger, for one batch that needs more), its META record written and
 * fsynced, then renamed to NAME and the directory fsynced: a segment
 * either exists whole, with its META, or not at all. Leftover *.wal.tmp
 * files are removed at open. Zero bytes after the records mean "no more
 * records".
 *
 *   0                                                  end of data  file size
 *   +------+-------+-----------+----------+-------+-----+- - - - - - - - - -+
 *   | META | ENTRY | HARDSTATE | SNAPSHOT | ENTRY | ... | 00 00 00 00 00 ...|
 *   +------+-------+-----------+----------+-------+-----+- - - - - - - - - -+
 *
 * RECORD (integers little-endian; each record starts 8-byte aligned)
 *
 *   OFFSET  SIZE  MEANING
 *        0     4  len: payload bytes (not counting header or padding)
 *        4     1  type: 1 = META, 2 = ENTRY, 3 = HARDSTATE, 4 = SNAPSHOT
 *                 (0 never valid)
 *        5     3  back: (offset of this record - offset of the first record
 *                 of the batch it was written in) / 8; 0 for META
 *        8     4  prev_crc: chain value before this record
 *       12     4  crc = crc32c_extend(prev_crc, bytes 0..7 ‖ payload ‖ pad)
 *       16   len  payload
 *   16+len   0-7  zero padding up to a multiple of 8
 *
 *   +-----+------+-----+----------+-----+------------------+-----+
 *   | len | type | back| prev_crc | crc | payload ...      | pad |
 *   +-----+------+-----+----------+-----+------------------+-----+
 *   0     4      5     8          12    16                 16+len
 *
 * PAYLOADS
 *
 *   META, len 16 (always at offset 0 of a segment, nowhere else)
 *        0     8  seq: the segment's sequence number (= the name's S)
 *        8     8  first_index (= the name's I)
 *   ENTRY, len 16 + n, n <= WAL_ENTRY_BYTES_MAX
 *        0     8  term
 *        8     8  index
 *       16     n  data
 *   HARDSTATE, len 24
 *        0     8  term
 *        8     8  vote
 *       16     8  commit
 *   SNAPSHOT, len 16 (a marker: a snapshot up to index is installed and
 *   the log restarts after it; the snapshot itself is a separate file)
 *        0     8  index: last entry the snapshot covers, >= 1
 *        8     8  term: that entry's term
 *
 * THE CHAIN
 *
 * A record's crc is the chain value after it, and the next record's
 * prev_crc must equal it, also across segments: a segment's META carries
 * in prev_crc the value after the last record of the segment before. The
 * first record replayed (the oldest segment's META) sets the start, so
 * whole old segments may be deleted. Since a record holds both ends of its
 * link it can be checked on its own (does crc match prev_crc and the
 * bytes?) and in the chain (is prev_crc the value before it?).
 *
 * REPLAY
 *
 * Segments are read in sequence order. In each, records are read from
 * offset 0 until a zero header (16 zero bytes, or fewer than 16 bytes left
 * in the file, all zero) or the end of the file. A record is *bad* if its
 * header is not sane (known type, length right for the type, record
 * inside the file) or its crc does not match its bytes.
 * Entry indexes: the first entry may have any index >= 1; after that an
 * index must be <= previous + 1. Exactly previous + 1 appends. Less than
 * or equal means Raft overwrote a suffix (Raft §5.3: a follower deletes
 * the conflicting entry and all that follow it, then appends the
 * leader's): the callback is called anyway and the caller must first drop
 * its replayed entries >= that index. More than previous + 1 is a gap,
 * which is corruption.
 * SNAPSHOT markers: a marker (M, T) supersedes every entry replayed before
 * it, whatever their indexes (a follower's log may run past M with entries
 * that conflict with the snapshot: Raft §7, the follower discards its
 * entire log). The callback is told so; from there on the log ends at
 * (M, T) (last_index and last_term say so until an entry follows), so by
 * the rule above the next entry must be exactly M + 1, and no later entry
 * may be <= M either (the snapshot holds only committed entries, which
 * Raft never overwrites: §5.4). A marker with M = 0, or one that goes
 * back from the previous marker replayed (M below its index, T below its
 * term, or the same index with another term) is corruption: snapshots
 * installed only move forward (a leader's older snapshot is refused, not
 * installed). Markers in released segments are gone (see RELEASE), so
 * only the replayed ones are compared.
 *
 * TORN-TAIL RULE
 *
 * Replay of a segment stops at offset X: a zero header, the end of the
 * file, or a bad record. If only zeros follow X, that is the clean end.
 * Otherwise, in the last segment with X > 0 (a META is durable before its
 * segment has a name, so it is never torn), what follows X is a torn write
 * unless some 8-aligned offset Y in it starts a record that checks on its
 * own and whose batch began after X (Y - 8 * back > X). Only the last
 * batch can be torn: it is the only one that may have been in flight, and
 * its pages may reach the disk in any order, so records of that same batch
 * may check while an earlier one of it does not; but a record of a later
 * batch means the batch holding X was synced before it was written. A torn
 * tail is cut: the bytes from X to the last nonzero byte of the file (the
 * most the crashed write could have left) are overwritten with zeros and
 * fdatasynced; their count is torn_bytes and appending resumes at X.
 *
 * Everything else fails the open with "<path>: corrupt record at offset
 * <n>: <reason>": a bad record or nonzero bytes after X in any other
 * segment, or followed by a record of a later batch in the last one; a bad
 * or missing META; a META anywhere but offset 0 or not matching the file
 * name; a record with a right crc but a broken chain; an entry index gap.
 * A missing segment fails the open too. Bit rot inside the last batch is
 * indistinguishable from a torn write and is cut like one.
 * A SNAPSHOT marker is a record like any other here: a torn batch that
 * held one was never acknowledged, so replay ends before the marker and
 * the log ends where it did before that batch.
 *
 * RELEASE
 *
 * Once a snapshot covering every entry <= N is durable, wal_release(N)
 * unlinks, oldest first, each segment k that is not the tail and either
 *  (a) whose successor's first index I(k+1) <= N + 1. Every entry of k
 *      still live in the log is < I(k+1): the successor's batch began with
 *      entry I(k+1), which replaced any entry >= I(k+1) before it (Raft
 *      §5.3), or with a marker, which superseded every entry before it;
 *      or it held no entry and I(k+1) is the last index + 1 after it,
 *      where a marker at M made the last index M and superseded all
 *      before it, so the live entries of k are <= the last index.
 *  or
 *  (b) that is older than the segment holding the newest durable SNAPSHOT
 *      marker (M, T), with M <= N. That marker supersedes every entry of
 *      k, and a snapshot covering M is durable (the marker is written only
 *      after it; N >= M says so too).
 * Either way k holds no live entry the snapshot lacks. Then the directory
 * is fsynced. A crash in between leaves a prefix of them unlinked: the
 * rest is still consecutive and replays. Replay then starts at the oldest
 * remaining segment: its META sets the chain start, and its first entry
 * may have any index (the caller skips the entries its snapshot already
 * covers). A marker is released with its segment only under (a), after
 * its successor began at I(k+1) > M (entries after a marker are > M), so
 * N >= M: the snapshot covers it, and every entry the marker superseded
 * was in k or before it, released with it. The segment holding the
 * newest marker is never released under (b): its entries before the
 * marker are stale and only the marker says so.
 *
 * The newest durable HARDSTATE (term, vote, commit: Raft §5.1, it must
 * survive) must survive the release too: the segment holding it and the
 * later ones are kept, and if that stopped the release, a copy of the
 * hard state is added to the pending batch (unless a batch already holds
 * one), so a later release, once that batch is durable, removes the rest.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wal.h"
#include "crc32c.h"
#include "fileio.h"
#include "le.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define REC_HDR_BYTES      16u
#define REC_CRC_HDR_BYTES  8u /* header bytes covered by the crc */
#define REC_OFF_LEN        0
#define REC_OFF_TYPE       4
#define REC_OFF_BACK       5 /* 3 bytes */
#define REC_OFF_PREV       8
#define REC_OFF_CRC        12
#define META_LEN           16u
#define META_RECORD_BYTES  (REC_HDR_BYTES + META_LEN)
#define ENTRY_PREFIX_BYTES 16u
#define HARDSTATE_LEN      24u
#define SNAPSHOT_LEN       16u
#define ENTRY_LEN_MAX      (ENTRY_PREFIX_BYTES + WAL_ENTRY_BYTES_MAX)

enum rec_type { REC_META = 1, REC_ENTRY = 2, REC_HARDSTATE = 3, REC_SNAPSHOT = 4 };
enum rec_parse_result { REC_OK, REC_END, REC_BAD };

/* Limits. A batch may hold at most WAL_BATCH_BYTES_MAX bytes of records
 * (so that `back` fits its 24 bits); wal_add_*() returns -1 beyond it, or
 * when memory runs out. */
#define WAL_BATCH_BYTES_MAX (128u << 20)
#define WAL_BUF_MIN_BYTES   (64u << 10)
#define WAL_BUF_KEEP_BYTES  (8u << 20) /* larger buffers are freed after use */
#define WAL_SEGMENTS_MAX    65536u
#define WAL_NAME_BYTES      37 /* 16 hex + '-' + 16 hex + ".wal" */
#define WAL_TMP_SUFFIX      ".tmp"
#define WAL_ZERO_BYTES      (64u << 10)
#define WAL_PATH_BYTES      PATH_MAX
#define WAL_ALLOC_ALIGN     4096u

_Static_assert(ENTRY_LEN_MAX <= UINT32_MAX, "entry length must fit the len field");
_Static_assert(WAL_BATCH_BYTES_MAX >= REC_HDR_BYTES + ENTRY_LEN_MAX + 8, "one entry fits a batch");
_Static_assert(WAL_BATCH_BYTES_MAX / 8 <= (1u << 24), "back fits in 24 bits");
_Static_assert(WAL_SEGMENT_BYTES % 8 == 0, "segments hold whole records");

static const uint8_t wal_zeros[WAL_ZERO_BYTES];

/* A segment as named in the directory. */
struct seg_id {
    uint64_t seq;
    uint64_t first_index;
    uint64_t used; /* bytes of records, once sealed (not the tail) */
};

struct seg_list {
    struct seg_id *v;
    size_t n;
    size_t cap;
};

/* A batch buffer. Owner thread only. */
struct wal_buf {
    uint8_t *p;
    size_t len;           /* bytes of encoded records */
    size_t cap;           /* bytes allocated at p */
    uint32_t crc_start;   /* chain value before the first record */
    uint64_t first_index; /* index of the first entry in it, 0 if none */
    int has_hs;           /* it holds a HARDSTATE record */
    uint64_t snap_index;  /* index of its last SNAPSHOT marker, 0 if none */
};

/* All fields: owner thread only. */
struct wal {
    int dir_fd;
    int fd;                  /* tail segment; -1 until one exists */
    int retired_fd;          /* previous tail, closed when the batch is done */
    uint64_t seq;            /* tail segment's sequence number, 0 if none */
    uint64_t seg_used;       /* bytes of records durable in the tail */
    uint64_t seg_size;       /* tail's file size */
    uint64_t sealed_bytes;   /* bytes of records in the earlier segments */
    uint32_t crc;            /* chain value after the last record added */
    uint64_t last_index;     /* last entry index added or replayed (a marker's
                                index if one came after it), 0 if none */
    struct wal_hardstate hs; /* newest hard state added or replayed */
    uint64_t hs_seq;         /* segment of the newest durable one, 0 if none */
    uint64_t snap_index;     /* newest SNAPSHOT marker added or replayed, 0 if none */
    uint64_t snap_term;      /* its term */
    uint64_t snap_seq;       /* segment of the newest durable marker, 0 if none */
    uint64_t snap_seq_index; /* that marker's index */
    struct seg_list segs;    /* segments on disk, oldest first, tail last */
    struct wal_buf buf[2];
    int cur;                       /* buffer receiving adds */
    int inflight;                  /* 1 while buf[cur ^ 1] is handed out */
    char dir[WAL_PATH_BYTES];      /* absolute path of the directory */
    char seg_path[WAL_PATH_BYTES]; /* tail's path, for messages */
};

/* One segment mapped for replay. */
struct seg_view {
    struct seg_id id;
    int fd;
    int last;         /* the newest segment: its tail may be torn */
    const uint8_t *p; /* the whole file, read-only; NULL if empty */
    uint64_t size;
    uint64_t end;    /* where replay stopped: the valid records end here */
    uint64_t stop;   /* end of the last nonzero byte after `end` */
    const char *why; /* why replay stopped at a bad record, NULL if clean */
    char path[WAL_PATH_BYTES];
};

/* One record parsed from a mapped segment. */
struct rec {
    uint32_t len;
    uint8_t type;
    uint32_t back; /* in 8-byte units */
    uint32_t prev;
    uint32_t crc;
    const uint8_t *payload;
    uint64_t total; /* header + payload + padding */
};

/* Replay state across segments. */
struct replay {
    const struct wal_replay_ops *ops;
    void *arg;
    struct wal_info *info;
    uint32_t crc;            /* chain value after the last record replayed */
    int chained;             /* 0 until the first record sets the chain */
    struct wal_hardstate hs; /* the last hard state replayed */
    uint64_t hs_seq;         /* its segment, 0 if none yet */
    uint64_t snap_seq;       /* segment of the last marker replayed, 0 if none */
    char *err;
    size_t err_len;
};

/* ---- small helpers ---------------------------------------------------- */

static int seg_list_reserve(struct seg_list *l);

static size_t pad8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

static int all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static int path_join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, WAL_PATH_BYTES, "%s/%s", dir, name);

    return n > 0 && n < WAL_PATH_BYTES ? 0 : -1;
}

static void seg_name(char out[WAL_NAME_BYTES + 1], const struct seg_id *id)
{
    snprintf(out, WAL_NAME_BYTES + 1, "%016" PRIx64 "-%016" PRIx64 ".wal", id->seq,
             id->first_index);
}

static int zero_range(int fd, uint64_t off, uint64_t len)
{
    while (len > 0) {
        size_t n = len < WAL_ZERO_BYTES ? (size_t)len : WAL_ZERO_BYTES;

        if (fio_pwrite_all(fd, wal_zeros, n, off) != 0)
            return -1;
        off += n;
        len -= n;
    }
    return 0;
}

/* Reserves file space that reads as zeros. Falls back to a sparse file on
 * file systems without fallocate. */
static int preallocate(int fd, uint64_t size)
{
    if (fallocate(fd, 0, 0, (off_t)size) == 0)
        return 0;
    if (errno != EOPNOTSUPP)
        return -1;
    return ftruncate(fd, (off_t)size);
}

/* ---- record encoding -------------------------------------------------- */

/* Sets prev_crc and crc of an encoded record; returns the new chain value. */
static uint32_t rec_seal(uint8_t *rec, uint32_t prev)
{
    size_t body = pad8(get_le32(rec + REC_OFF_LEN));
    uint32_t crc = crc32c_extend(prev, rec, REC_CRC_HDR_BYTES);

    crc = crc32c_extend(crc, rec + REC_HDR_BYTES, body);
    put_le32(rec + REC_OFF_PREV, prev);
    put_le32(rec + REC_OFF_CRC, crc);
    return crc;
}

/* Header and padding of a record with `len` payload bytes, `back` 8-byte
 * units after the start of its batch (unsealed). */
static void rec_frame(uint8_t *rec, uint8_t type, uint32_t len, size_t back)
{
    assert(back < (1u << 24));
    memset(rec, 0, REC_HDR_BYTES);
    put_le32(rec + REC_OFF_LEN, len);
    rec[REC_OFF_TYPE] = type;
    rec[REC_OFF_BACK] = (uint8_t)back;
    rec[REC_OFF_BACK + 1] = (uint8_t)(back >> 8);
    rec[REC_OFF_BACK + 2] = (uint8_t)(back >> 16);
    memset(rec + REC_HDR_BYTES + len, 0, pad8(len) - len);
}

static uint32_t meta_encode(uint8_t rec[META_RECORD_BYTES], const struct seg_id *id, uint32_t prev)
{
    rec_frame(rec, REC_META, META_LEN, 0);
    put_le64(rec + REC_HDR_BYTES, id->seq);
    put_le64(rec + REC_HDR_BYTES + 8, id->first_index);
    return rec_seal(rec, prev);
}

/* Re-seals every record of a batch on a new chain start (after a roll put
 * a META before it). Returns the chain value after the batch. */
static uint32_t batch_rechain(struct wal_buf *b, uint32_t crc)
{
    b->crc_start = crc;
    for (size_t off = 0; off < b->len;) {
        uint8_t *rec = b->p + off;

        crc = rec_seal(rec, crc);
        off += REC_HDR_BYTES + pad8(get_le32(rec + REC_OFF_LEN));
    }
    return crc;
}

/* Assert before writing: the batch is whole records, linked in a chain
 * that starts at crc_start and ends at `end`. */
__attribute__((unused)) static int batch_ok(const struct wal_buf *b, uint32_t end)
{
    uint32_t crc = b->crc_start;
    size_t off = 0;

    while (off < b->len) {
        const uint8_t *rec = b->p + off;
        uint8_t type = rec[REC_OFF_TYPE];

        if ((type != REC_ENTRY && type != REC_HARDSTATE && type != REC_SNAPSHOT) ||
            get_le32(rec + REC_OFF_PREV) != crc)
            return 0;
        crc = get_le32(rec + REC_OFF_CRC);
        off += REC_HDR_BYTES + pad8(get_le32(rec + REC_OFF_LEN));
    }
    return off == b->len && crc == end;
}

/* ---- batch buffers ---------------------------------------------------- */

static uint8_t *buf_reserve(struct wal_buf *b, size_t bytes)
{
    size_t need, cap;
    uint8_t *p;

    if (bytes > WAL_BATCH_BYTES_MAX - b->len)
        return NULL;
    need = b->len + bytes;
    if (need <= b->cap)
        return b->p + b->len;
    cap = b->cap ? b->cap : WAL_BUF_MIN_BYTES;
    while (cap < need)
        cap *= 2;
    if (cap > WAL_BATCH_BYTES_MAX)
        cap = WAL_BATCH_BYTES_MAX;
    p = realloc(b->p, cap);
    if (p == NULL)
        return NULL;
    b->p = p;
    b->cap = cap;
    return p + b->len;
}

/* Clears a written buffer; frees it if one huge batch made it big. */
static void buf_reset(struct wal_buf *b)
{
    b->len = 0;
    b->first_index = 0;
    b->has_hs = 0;
    b->snap_index = 0;
    if (b->cap > WAL_BUF_KEEP_BYTES) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

/* Frames a record of `len` payload bytes at the end of the pending batch
 * and returns it for the caller to fill and seal, or NULL. */
static uint8_t *batch_append(struct wal *w, uint8_t type, uint32_t len)
{
    struct wal_buf *b = &w->buf[w->cur];
    uint8_t *rec = buf_reserve(b, REC_HDR_BYTES + pad8(len));

    if (rec == NULL)
        return NULL;
    if (b->len == 0)
        b->crc_start = w->crc;
    rec_frame(rec, type, len, b->len / 8);
    b->len += REC_HDR_BYTES + pad8(len);
    return rec;
}

int wal_add_entry(struct wal *w, uint64_t term, uint64_t index, const void *data, size_t len)
{
    struct wal_buf *b = &w->buf[w->cur];
    uint8_t *rec;

    if (len > WAL_ENTRY_BYTES_MAX)
        return -1;
    assert(index >= 1);
    assert(w->last_index == 0 || index <= w->last_index + 1); /* no gaps */
    assert(index > w->snap_index); /* the snapshot's entries are committed */
    rec = batch_append(w, REC_ENTRY, (uint32_t)(ENTRY_PREFIX_BYTES + len));
    if (rec == NULL)
        return -1;
    put_le64(rec + REC_HDR_BYTES, term);
    put_le64(rec + REC_HDR_BYTES + 8, index);
    if (len > 0)
        memcpy(rec + REC_HDR_BYTES + ENTRY_PREFIX_BYTES, data, len);
    w->crc = rec_seal(rec, w->crc);
    if (b->first_index == 0)
        b->first_index = index;
    w->last_index = index;
    return 0;
}

int wal_add_hardstate(struct wal *w, const struct wal_hardstate *hs)
{
    uint8_t *rec = batch_append(w, REC_HARDSTATE, HARDSTATE_LEN);

    if (rec == NULL)
        return -1;
    put_le64(rec + REC_HDR_BYTES, hs->term);
    put_le64(rec + REC_HDR_BYTES + 8, hs->vote);
    put_le64(rec + REC_HDR_BYTES + 16, hs->commit);
    w->crc = rec_seal(rec, w->crc);
    w->buf[w->cur].has_hs = 1;
    w->hs = *hs;
    return 0;
}

/* Does marker (index, term) go back from the marker (prev_index,
 * prev_term)? See REPLAY. */
static int snap_goes_back(uint64_t index, uint64_t term, uint64_t prev_index, uint64_t prev_term)
{
    return index < prev_index || term < prev_term || (index == prev_index && term != prev_term);
}

int wal_add_snapshot(struct wal *w, uint64_t index, uint64_t term)
{
    struct wal_buf *b = &w->buf[w->cur];
    uint8_t *rec;

    assert(index >= 1);
    assert(w->snap_index == 0 || !snap_goes_back(index, term, w->snap_index, w->snap_term));
    rec = batch_append(w, REC_SNAPSHOT, SNAPSHOT_LEN);
    if (rec == NULL)
        return -1;
    put_le64(rec + REC_HDR_BYTES, index);
    put_le64(rec + REC_HDR_BYTES + 8, term);
    w->crc = rec_seal(rec, w->crc);
    b->snap_index = index;
    w->snap_index = index;
    w->snap_term = term;
    w->last_index = index; /* the log restarts at index + 1 */
    return 0;
}

size_t wal_pending_bytes(const struct wal *w)
{
    return w->buf[w->cur].len;
}

uint64_t wal_size_bytes(const struct wal *w)
{
    return w->sealed_bytes + w->seg_used;
}

/* ---- segments --------------------------------------------------------- */

/* Creates segment `id` durably (see SEGMENT FILES) with a META whose
 * prev_crc is `prev`. Returns its fd and sets *meta_crc, or -1. */
static int seg_create(struct wal *w, const struct seg_id *id, uint32_t prev, uint64_t size,
                      uint32_t *meta_crc, char *err, size_t err_len)
{
    char name[WAL_NAME_BYTES + 1], tmp[WAL_NAME_BYTES + sizeof(WAL_TMP_SUFFIX)];
    uint8_t meta[META_RECORD_BYTES];
    int fd, e;

    seg_name(name, id);
    memcpy(tmp, name, WAL_NAME_BYTES);
    memcpy(tmp + WAL_NAME_BYTES, WAL_TMP_SUFFIX, sizeof(WAL_TMP_SUFFIX));
    *meta_crc = meta_encode(meta, id, prev);
    fd = openat(w->dir_fd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto fail;
    if (preallocate(fd, size) != 0 || fio_pwrite_all(fd, meta, sizeof(meta), 0) != 0 ||
        fsync(fd) != 0 || renameat(w->dir_fd, tmp, w->dir_fd, name) != 0)
        goto fail_file;
    if (fsync(w->dir_fd) != 0)
        goto fail_dir;
    return fd;

fail_dir:
    e = errno;
    close(fd);
    fio_seterr(err, err_len, "fsync %s: %s", w->dir, strerror(e));
    return -1;
fail_file:
    e = errno;
    close(fd);
    unlinkat(w->dir_fd, tmp, 0);
    errno = e;
fail:
    fio_seterr(err, err_len, "%s/%s: %s", w->dir, tmp, strerror(errno));
    return -1;
}

/* Starts a new tail segment for batch b (the pending one, whose sibling is
 * empty) and re-chains b after its META. */
static int wal_roll(struct wal *w, struct wal_buf *b, char *err, size_t err_len)
{
    struct seg_id id = {
        .seq = w->seq + 1,
        .first_index = b->first_index ? b->first_index : w->last_index + 1,
    };
    uint64_t need = META_RECORD_BYTES + b->len;
    uint64_t size = WAL_SEGMENT_BYTES;
    char name[WAL_NAME_BYTES + 1];
    uint32_t meta_crc;
    int fd;

    if (need > size)
        size = (need + WAL_ALLOC_ALIGN - 1) / WAL_ALLOC_ALIGN * WAL_ALLOC_ALIGN;
    if (seg_list_reserve(&w->segs) != 0) {
        fio_seterr(err, err_len, "%s: more than %u segments", w->dir, WAL_SEGMENTS_MAX);
        return -1;
    }
    fd = seg_create(w, &id, b->crc_start, size, &meta_crc, err, err_len);
    if (fd < 0)
        return -1;
    if (w->fd >= 0) {
        assert(w->retired_fd < 0);
        assert(w->segs.n > 0 && w->segs.v[w->segs.n - 1].seq == w->seq);
        w->retired_fd = w->fd;
        w->sealed_bytes += w->seg_used;
        w->segs.v[w->segs.n - 1].used = w->seg_used;
    }
    w->segs.v[w->segs.n++] = id;
    w->fd = fd;
    w->seq = id.seq;
    w->seg_used = META_RECORD_BYTES;
    w->seg_size = size;
    seg_name(name, &id);
    if (path_join(w->seg_path, w->dir, name) != 0)
        w->seg_path[0] = '\0';
    w->crc = batch_rechain(b, meta_crc);
    return 0;
}

int wal_batch_prepare(struct wal *w, struct wal_write *out, char *err, size_t err_len)
{
    struct wal_buf *b = &w->buf[w->cur];

    assert(!w->inflight);
    assert(w->buf[w->cur ^ 1].len == 0);
    if (b->len == 0)
        return 0;
    if (w->fd < 0 || w->seg_used + b->len > w->seg_size) {
        if (wal_roll(w, b, err, err_len) != 0)
            return -1;
    }
    assert(batch_ok(b, w->crc));
    assert(w->seg_used + b->len <= w->seg_size);
    out->fd = w->fd;
    out->offset = w->seg_used;
    out->buf = b->p;
    out->len = b->len;
    w->inflight = 1;
    w->cur ^= 1;
    return 1;
}

void wal_batch_done(struct wal *w)
{
    struct wal_buf *b = &w->buf[w->cur ^ 1];

    assert(w->inflight);
    w->seg_used += b->len;
    assert(w->seg_used <= w->seg_size);
    if (b->has_hs)
        w->hs_seq = w->seq;
    if (b->snap_index != 0) {
        w->snap_seq = w->seq;
        w->snap_seq_index = b->snap_index;
    }
    buf_reset(b);
    w->inflight = 0;
    if (w->retired_fd >= 0) {
        close(w->retired_fd);
        w->retired_fd = -1;
    }
}

int wal_batch_sync(struct wal *w, char *err, size_t err_len)
{
    struct wal_write wr;
    int rv = wal_batch_prepare(w, &wr, err, err_len);

    if (rv <= 0)
        return rv;
    if (fio_pwrite_all(wr.fd, wr.buf, wr.len, wr.offset) != 0) {
        fio_seterr(err, err_len, "write %s: %s", w->seg_path, strerror(errno));
        return -1;
    }
    if (fdatasync(wr.fd) != 0) {
        fio_seterr(err, err_len, "fdatasync %s: %s", w->seg_path, strerror(errno));
        return -1;
    }
    wal_batch_done(w);
    return 0;
}

/* ---- directory -------------------------------------------------------- */

/* fsyncs the directory that holds `path` (after creating an entry in it). */
static int fsync_parent(const char *path, char *err, size_t err_len)
{
    char parent[WAL_PATH_BYTES];
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : (size_t)(slash - path);
    int fd, rv;

    if (slash == NULL)
        memcpy(parent, ".", 2);
    else if (n == 0)
        memcpy(parent, "/", 2);
    else {
        memcpy(parent, path, n);
        parent[n] = '\0';
    }
    fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rv = fd < 0 ? -1 : fsync(fd);
    if (rv != 0)
        fio_seterr(err, err_len, "fsync %s: %s", parent, strerror(errno));
    if (fd >= 0)
        close(fd);
    return rv;
}

static int mkdir_one(const char *path, char *err, size_t err_len)
{
    if (mkdir(path, 0700) == 0)
        return fsync_parent(path, err, err_len);
    if (errno == EEXIST)
        return 0;
    fio_seterr(err, err_len, "mkdir %s: %s", path, strerror(errno));
    return -1;
}

/* mkdir -p with mode 0700; each directory made is made durable. */
static int mkdir_p(const char *path, char *err, size_t err_len)
{
    char buf[WAL_PATH_BYTES];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf)) {
        fio_seterr(err, err_len, "bad wal directory path");
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        int rv;

        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        rv = mkdir_one(buf, err, err_len);
        buf[i] = path[i];
        if (rv != 0)
            return -1;
    }
    return 0;
}

static int wal_dir_open(struct wal *w, const char *dir, char *err, size_t err_len)
{
    if (mkdir_p(dir, err, err_len) != 0)
        return -1;
    if (realpath(dir, w->dir) == NULL) {
        fio_seterr(err, err_len, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (strlen(w->dir) + 2 + WAL_NAME_BYTES + sizeof(WAL_TMP_SUFFIX) > WAL_PATH_BYTES) {
        fio_seterr(err, err_len, "%s: path too long", w->dir);
        return -1;
    }
    w->dir_fd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dir_fd < 0) {
        fio_seterr(err, err_len, "%s: %s", w->dir, strerror(errno));
        return -1;
    }
    /* One process per WAL: the lock lives as long as dir_fd (the process),
     * so a crashed owner never leaves it behind. */
    if (flock(w->dir_fd, LOCK_EX | LOCK_NB) != 0) {
        fio_seterr(err, err_len, "%s: %s", w->dir,
                   errno == EWOULDBLOCK ? "in use by another process (locked)" : strerror(errno));
        return -1;
    }
    return 0;
}

/* Parses NAME (see SEGMENT FILES); `suffix_len` extra bytes must follow
 * ".wal" (0 for a segment, 4 for ".tmp"). */
static int seg_name_parse(const char *s, size_t suffix_len, struct seg_id *id)
{
    if (strlen(s) != WAL_NAME_BYTES + suffix_len || s[16] != '-' || memcmp(s + 33, ".wal", 4) != 0)
        return -1;
    if (fio_hex16(s, &id->seq) != 0 || fio_hex16(s + 17, &id->first_index) != 0 || id->seq == 0)
        return -1;
    return 0;
}

/* Makes room for one more segment in the list. */
static int seg_list_reserve(struct seg_list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct seg_id *v;

        if (cap > WAL_SEGMENTS_MAX)
            return -1;
        v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    return 0;
}

static int seg_list_push(struct seg_list *l, const struct seg_id *id)
{
    if (seg_list_reserve(l) != 0)
        return -1;
    l->v[l->n++] = *id;
    return 0;
}

static int seg_id_cmp(const void *a, const void *b)
{
    const struct seg_id *x = a, *y = b;

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Lists the segments in sequence order (removing leftover .tmp files) and
 * checks that no sequence number is missing. */
static int seg_list_read(struct wal *w, struct seg_list *l, char *err, size_t err_len)
{
    DIR *d = opendir(w->dir);
    struct dirent *de;
    struct seg_id id = {0};
    int full = 0;

    if (d == NULL) {
        fio_seterr(err, err_len, "%s: %s", w->dir, strerror(errno));
        return -1;
    }
    while (!full && (de = readdir(d)) != NULL) {
        if (seg_name_parse(de->d_name, strlen(WAL_TMP_SUFFIX), &id) == 0)
            unlinkat(w->dir_fd, de->d_name, 0);
        else if (seg_name_parse(de->d_name, 0, &id) == 0)
            full = seg_list_push(l, &id) != 0;
    }
    closedir(d);
    if (full) {
        fio_seterr(err, err_len, "%s: more than %u segments", w->dir, WAL_SEGMENTS_MAX);
        return -1;
    }
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), seg_id_cmp);
    for (size_t i = 1; i < l->n; i++) {
        if (l->v[i].seq != l->v[i - 1].seq + 1) {
            fio_seterr(err, err_len, "%s: segment %016" PRIx64 " missing or duplicated", w->dir,
                       l->v[i - 1].seq + 1);
            return -1;
        }
    }
    return 0;
}

/* ---- replay ----------------------------------------------------------- */

/* Checks the header and crc of the record at `off` on its own. */
static int rec_parse(const uint8_t *p, uint64_t size, uint64_t off, struct rec *r, const char **why)
{
    const uint8_t *h = p + off;

    if (size - off < REC_HDR_BYTES) {
        *why = "truncated header";
        return all_zero(h, size - off) ? REC_END : REC_BAD;
    }
    if (all_zero(h, REC_HDR_BYTES))
        return REC_END;
    r->len = get_le32(h + REC_OFF_LEN);
    r->type = h[REC_OFF_TYPE];
    r->back = get_le32(h + REC_OFF_TYPE) >> 8;
    r->prev = get_le32(h + REC_OFF_PREV);
    r->crc = get_le32(h + REC_OFF_CRC);
    r->payload = h + REC_HDR_BYTES;
    r->total = REC_HDR_BYTES + pad8(r->len);
    *why = "unknown record type";
    if (r->type != REC_META && r->type != REC_ENTRY && r->type != REC_HARDSTATE &&
        r->type != REC_SNAPSHOT)
        return REC_BAD;
    *why = "bad length";
    if ((r->type == REC_META && r->len != META_LEN) ||
        (r->type == REC_HARDSTATE && r->len != HARDSTATE_LEN) ||
        (r->type == REC_SNAPSHOT && r->len != SNAPSHOT_LEN) ||
        (r->type == REC_ENTRY && (r->len < ENTRY_PREFIX_BYTES || r->len > ENTRY_LEN_MAX)))
        return REC_BAD;
    *why = "record runs past the end of the file";
    if (r->total > size - off)
        return REC_BAD;
    *why = "crc mismatch";
    if (crc32c_extend(crc32c_extend(r->prev, h, REC_CRC_HDR_BYTES), r->payload,
                      r->total - REC_HDR_BYTES) != r->crc)
        return REC_BAD;
    return REC_OK;
}

/* Fails the open: "<path>: corrupt record at offset <off>: <reason>". */
static int corrupt(struct replay *r, const struct seg_view *s, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int corrupt(struct replay *r, const struct seg_view *s, uint64_t off, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    fio_seterr(r->err, r->err_len, "%s: corrupt record at offset %" PRIu64 ": %s", s->path, off,
               why);
    return -1;
}

static int replay_cb_failed(struct replay *r, const struct seg_view *s, uint64_t off, int rv)
{
    fio_seterr(r->err, r->err_len, "%s: replay callback failed at offset %" PRIu64 " (%d)", s->path,
               off, rv);
    return rv;
}

static int replay_meta(struct replay *r, const struct seg_view *s, const struct rec *rec)
{
    if (get_le64(rec->payload) != s->id.seq || get_le64(rec->payload + 8) != s->id.first_index)
        return corrupt(r, s, 0, "metadata record does not match the file name");
    return 0;
}

static int replay_entry(struct replay *r, const struct seg_view *s, uint64_t off,
                        const struct rec *rec)
{
    struct wal_info *info = r->info;
    struct wal_entry e = {
        .term = get_le64(rec->payload),
        .index = get_le64(rec->payload + 8),
        .data = rec->payload + ENTRY_PREFIX_BYTES,
        .len = rec->len - ENTRY_PREFIX_BYTES,
    };
    int rv;

    if (e.index == 0)
        return corrupt(r, s, off, "entry index 0");
    /* last_index is 0 until an entry or a marker (index >= 1) is replayed. */
    if (info->last_index != 0 && e.index > info->last_index + 1)
        return corrupt(r, s, off, "entry index %" PRIu64 " after %" PRIu64, e.index,
                       info->last_index);
    if (e.index <= info->snap_index)
        return corrupt(r, s, off, "entry index %" PRIu64 " at or below snapshot %" PRIu64, e.index,
                       info->snap_index);
    if (r->ops != NULL && r->ops->entry != NULL) {
        rv = r->ops->entry(r->arg, &e);
        if (rv != 0)
            return replay_cb_failed(r, s, off, rv);
    }
    info->last_index = e.index;
    info->last_term = e.term;
    info->entries++;
    return 0;
}

static int replay_hardstate(struct replay *r, const struct seg_view *s, uint64_t off,
                            const struct rec *rec)
{
    struct wal_hardstate hs = {
        .term = get_le64(rec->payload),
        .vote = get_le64(rec->payload + 8),
        .commit = get_le64(rec->payload + 16),
    };
    int rv = 0;

    r->hs = hs;
    r->hs_seq = s->id.seq;
    if (r->ops != NULL && r->ops->hardstate != NULL)
        rv = r->ops->hardstate(r->arg, &hs);
    return rv == 0 ? 0 : replay_cb_failed(r, s, off, rv);
}

static int replay_snapshot(struct replay *r, const struct seg_view *s, uint64_t off,
                           const struct rec *rec)
{
    struct wal_info *info = r->info;
    uint64_t index = get_le64(rec->payload), term = get_le64(rec->payload + 8);
    int rv = 0;

    if (index == 0)
        return corrupt(r, s, off, "snapshot index 0");
    if (info->snap_index != 0 && snap_goes_back(index, term, info->snap_index, info->snap_term))
        return corrupt(r, s, off,
                       "snapshot %" PRIu64 "/%" PRIu64 " goes back from %" PRIu64 "/%" PRIu64
                       " (index/term)",
                       index, term, info->snap_index, info->snap_term);
    if (r->ops != NULL && r->ops->snapshot != NULL)
        rv = r->ops->snapshot(r->arg, index, term);
    if (rv != 0)
        return replay_cb_failed(r, s, off, rv);
    info->snap_index = info->last_index = index;
    info->snap_term = info->last_term = term;
    r->snap_seq = s->id.seq;
    return 0;
}

/* A record that checks on its own: check its place, link and meaning. */
static int replay_apply(struct replay *r, const struct seg_view *s, uint64_t off,
                        const struct rec *rec)
{
    if (off == 0 && rec->type != REC_META)
        return corrupt(r, s, off, "segment does not start with a metadata record");
    if (off != 0 && rec->type == REC_META)
        return corrupt(r, s, off, "metadata record inside a segment");
    if (r->chained && rec->prev != r->crc)
        return corrupt(r, s, off, "crc chain broken");
    r->crc = rec->crc;
    r->chained = 1;
    if (rec->type == REC_META)
        return replay_meta(r, s, rec);
    if (rec->type == REC_ENTRY)
        return replay_entry(r, s, off, rec);
    if (rec->type == REC_SNAPSHOT)
        return replay_snapshot(r, s, off, rec);
    return replay_hardstate(r, s, off, rec);
}

/* Replays one mapped segment up to its first zero header or bad record;
 * sets s->end and s->why. */
static int replay_records(struct replay *r, struct seg_view *s)
{
    uint64_t off = 0;

    while (off < s->size) {
        struct rec rec;
        const char *why = NULL;
        int k = rec_parse(s->p, s->size, off, &rec, &why);
        int rv;

        if (k == REC_END)
            break;
        if (k == REC_BAD) {
            s->why = why;
            break;
        }
        rv = replay_apply(r, s, off, &rec);
        if (rv != 0)
            return rv;
        off += rec.total;
    }
    s->end = off;
    return 0;
}

static int seg_view_open(struct wal *w, const struct seg_id *id, int last, struct seg_view *s,
                         char *err, size_t err_len)
{
    char name[WAL_NAME_BYTES + 1];
    struct stat st;

    memset(s, 0, sizeof(*s));
    s->id = *id;
    s->last = last;
    seg_name(name, id);
    if (path_join(s->path, w->dir, name) != 0)
        s->path[0] = '\0';
    s->fd = openat(w->dir_fd, name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (s->fd < 0 || fstat(s->fd, &st) != 0)
        goto fail;
    s->size = (uint64_t)st.st_size;
    if (s->size == 0)
        return 0;
    s->p = mmap(NULL, s->size, PROT_READ, MAP_SHARED, s->fd, 0);
    if (s->p != MAP_FAILED)
        return 0;
    s->p = NULL;
fail:
    fio_seterr(err, err_len, "%s: %s", s->path, strerror(errno));
    return -1;
}

static void seg_view_close(struct seg_view *s)
{
    if (s->p != NULL)
        munmap((void *)s->p, s->size);
    if (s->fd >= 0)
        close(s->fd);
}

/* End of the last nonzero byte in [from, size), or `from` if none. */
static uint64_t nonzero_end(const uint8_t *p, uint64_t from, uint64_t size)
{
    uint64_t last = from;

    for (uint64_t off = from; off < size; off += WAL_ZERO_BYTES) {
        size_t n = size - off < WAL_ZERO_BYTES ? (size_t)(size - off) : WAL_ZERO_BYTES;

        if (memcmp(p + off, wal_zeros, n) == 0)
            continue;
        while (n > 0 && p[off + n - 1] == 0)
            n--;
        last = off + n;
    }
    return last;
}

/* Does a record of a batch begun after s->end lie in (s->end, s->stop)? */
static int later_batch_after(const struct seg_view *s)
{
    for (uint64_t o = s->end + 8; o < s->stop; o += 8) {
        struct rec rec;
        const char *why;

        if (rec_parse(s->p, s->size, o, &rec, &why) == REC_OK && o - 8u * rec.back > s->end)
            return 1;
    }
    return 0;
}

/* Judges what follows the valid records: clean end, torn tail (s->stop >
 * s->end, last segment only) or corruption. See TORN-TAIL RULE. */
static int replay_end(struct replay *r, struct seg_view *s)
{
    const char *why = s->why != NULL ? s->why : "nonzero bytes after the last record";

    if (s->end == 0)
        return corrupt(r, s, 0, "%s", s->why != NULL ? s->why : "segment has no metadata record");
    s->stop = nonzero_end(s->p, s->end, s->size);
    if (s->stop == s->end)
        return 0;
    if (!s->last)
        return corrupt(r, s, s->end, "%s", why);
    if (later_batch_after(s))
        return corrupt(r, s, s->end, "%s (a later batch follows)", why);
    return 0;
}

/* Zeros the torn tail of the last segment, if any, restores its
 * preallocation, and makes it the tail. */
static int tail_adopt(struct wal *w, struct seg_view *s, struct wal_info *info, char *err,
                      size_t err_len)
{
    info->torn_bytes = s->stop - s->end;
    if (s->stop > s->end &&
        (zero_range(s->fd, s->end, s->stop - s->end) != 0 || fdatasync(s->fd) != 0))
        goto fail;
    w->seg_size = s->size; /* s->size stays the mapped length */
    if (w->seg_size < WAL_SEGMENT_BYTES) {
        if (preallocate(s->fd, WAL_SEGMENT_BYTES) != 0 || fsync(s->fd) != 0)
            goto fail;
        w->seg_size = WAL_SEGMENT_BYTES;
    }
    w->fd = s->fd;
    s->fd = -1;
    w->seq = s->id.seq;
    w->seg_used = s->end;
    memcpy(w->seg_path, s->path, sizeof(w->seg_path));
    return 0;
fail:
    fio_seterr(err, err_len, "%s: cutting torn tail: %s", s->path, strerror(errno));
    return -1;
}

static int replay_segment(struct wal *w, struct replay *r, struct seg_id *id, int last)
{
    struct seg_view s;
    int rv = seg_view_open(w, id, last, &s, r->err, r->err_len);

    if (rv == 0)
        rv = replay_records(r, &s);
    if (rv == 0)
        rv = replay_end(r, &s);
    if (rv == 0 && last)
        rv = tail_adopt(w, &s, r->info, r->err, r->err_len);
    else if (rv == 0) {
        w->sealed_bytes += s.end;
        id->used = s.end;
    }
    seg_view_close(&s);
    return rv;
}

static int replay_all(struct wal *w, struct seg_list *l, struct replay *r)
{
    for (size_t i = 0; i < l->n; i++) {
        int rv = replay_segment(w, r, &l->v[i], i + 1 == l->n);

        if (rv != 0)
            return rv;
    }
    w->crc = r->crc;
    w->last_index = r->info->last_index;
    w->hs = r->hs;
    w->hs_seq = r->hs_seq;
    w->snap_index = w->snap_seq_index = r->info->snap_index;
    w->snap_term = r->info->snap_term;
    w->snap_seq = r->snap_seq;
    return 0;
}

/* ---- open / close ----------------------------------------------------- */

int wal_open(const char *dir, const struct wal_replay_ops *ops, void *arg, struct wal **out,
             struct wal_info *info, char *err, size_t err_len)
{
    struct wal_info scratch;
    struct seg_list segs = {0};
    struct replay r = {.ops = ops, .arg = arg, .err = err, .err_len = err_len};
    struct wal *w = calloc(1, sizeof(*w));
    int rv;

    r.info = info != NULL ? info : &scratch;
    memset(r.info, 0, sizeof(*r.info));
    if (w == NULL) {
        fio_seterr(err, err_len, "out of memory");
        return -1;
    }
    w->dir_fd = w->fd = w->retired_fd = -1;
    rv = wal_dir_open(w, dir, err, err_len);
    if (rv == 0)
        rv = seg_list_read(w, &segs, err, err_len);
    if (rv == 0)
        rv = replay_all(w, &segs, &r);
    w->segs = segs; /* freed by wal_close() */
    if (rv != 0) {
        wal_close(w);
        return rv;
    }
    *out = w;
    return 0;
}

void wal_close(struct wal *w)
{
    if (w == NULL)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->retired_fd >= 0)
        close(w->retired_fd);
    if (w->dir_fd >= 0)
        close(w->dir_fd);
    free(w->buf[0].p);
    free(w->buf[1].p);
    free(w->segs.v);
    free(w);
}

/* ---- release ---------------------------------------------------------- */

/* Does segment segs[k] (not the tail) hold only live entries <= index?
 * See RELEASE: (a) its live entries are all below its successor's first
 * index; (b) a later durable marker at <= index superseded them all. */
static int seg_covered(const struct wal *w, size_t k, uint64_t index)
{
    uint64_t next_first = w->segs.v[k + 1].first_index;

    if (next_first <= 1 || next_first - 1 <= index)
        return 1;
    return w->segs.v[k].seq < w->snap_seq && w->snap_seq_index <= index;
}

/* Does a batch not yet durable (pending or in flight) hold a hard state? */
static int hs_on_the_way(const struct wal *w)
{
    return w->buf[w->cur].has_hs || (w->inflight && w->buf[w->cur ^ 1].has_hs);
}

int wal_release(struct wal *w, uint64_t index, char *err, size_t err_len)
{
    size_t k = 0, removed = 0;
    char name[WAL_NAME_BYTES + 1];
    int rv = 0;

    while (k + 1 < w->segs.n && seg_covered(w, k, index))
        k++;
    if (k > 0 && w->hs_seq != 0 && w->segs.v[k - 1].seq >= w->hs_seq) {
        /* Keep the newest hard state: see RELEASE. */
        while (k > 0 && w->segs.v[k - 1].seq >= w->hs_seq)
            k--;
        if (!hs_on_the_way(w) && wal_add_hardstate(w, &w->hs) != 0) {
            fio_seterr(err, err_len, "%s: cannot carry the hard state forward", w->dir);
            return -1;
        }
    }
    for (; removed < k; removed++) {
        seg_name(name, &w->segs.v[removed]);
        if (unlinkat(w->dir_fd, name, 0) != 0) {
            fio_seterr(err, err_len, "unlink %s/%s: %s", w->dir, name, strerror(errno));
            rv = -1;
            break;
        }
        w->sealed_bytes -= w->segs.v[removed].used;
    }
    if (removed > 0) {
        w->segs.n -= removed;
        memmove(w->segs.v, w->segs.v + removed, w->segs.n * sizeof(*w->segs.v));
        if (fsync(w->dir_fd) != 0 && rv == 0) {
            fio_seterr(err, err_len, "fsync %s: %s", w->dir, strerror(errno));
            rv = -1;
        }
    }
    return rv == 0 ? (int)removed : -1;
}
