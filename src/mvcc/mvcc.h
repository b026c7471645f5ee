/*
 * mvcc — the multi-version key-value index.
 *
 * A B-tree ordered by key bytes; each key holds its versions
 * {create_revision, mod_revision, version, lease, value} and tombstones.
 * The store revision is a 64-bit counter, +1 per write transaction that
 * changes something; a fresh store is at revision 1 (as etcd's).
 *
 * Threading: exactly one writer thread (the core's apply loop) and any
 * number of reader threads (the shards, and the core itself). Readers never
 * lock and never block the writer: B-tree nodes are copy-on-write, a key's
 * versions are append-only chunks, the writer publishes a new root with one
 * release store at mvcc_txn_end() (and after each compaction step), and
 * replaced memory is freed through ck_epoch once no reader can still see
 * it. A reader that has called mvcc_read_begin() sees
 * one consistent published state until mvcc_read_end(); every pointer a
 * read returns stays valid until then. That holds across a restore too,
 * which replaces the whole state while readers read (mvcc_restore_*).
 *
 * Revisions only grow, except across a restore that installs a state
 * with lower ones.
 *
 * Semantics follow etcd's v3 API (etcdserver/apply.go, mvcc/kvstore*.go).
 */
#ifndef CETCD_MVCC_H
#define CETCD_MVCC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mvcc_store;
struct mvcc_reader;

enum mvcc_err {
    MVCC_OK = 0,
    MVCC_ERR_FUTURE_REV = -1, /* "etcdserver: mvcc: required revision is a future revision" */
    MVCC_ERR_COMPACTED = -2,  /* "etcdserver: mvcc: required revision has been compacted" */
    MVCC_ERR_NOMEM = -3,
    MVCC_ERR_NOT_FOUND = -4,
    MVCC_ERR_BAD_ORDER = -5,
};

/* etcd's RangeRequest.SortOrder and SortTarget values. */
enum mvcc_sort_order { MVCC_SORT_NONE = 0, MVCC_SORT_ASCEND = 1, MVCC_SORT_DESCEND = 2 };
enum mvcc_sort_target {
    MVCC_TARGET_KEY = 0,
    MVCC_TARGET_VERSION = 1,
    MVCC_TARGET_CREATE = 2,
    MVCC_TARGET_MOD = 3,
    MVCC_TARGET_VALUE = 4,
};

/* One key at one version. Pointers point into the index. */
struct mvcc_kv {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
};

/* etcd's RangeRequest, field for field. range_end: NULL/0 length = the
 * single key; one byte "\0" = every key >= key; otherwise [key, range_end).
 * revision <= 0 means the current revision. */
struct mvcc_range_req {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *range_end;
    size_t range_end_len;
    int64_t limit;
    int64_t revision;
    int sort_order;  /* enum mvcc_sort_order */
    int sort_target; /* enum mvcc_sort_target */
    bool keys_only;
    bool count_only;
    int64_t min_mod_revision;
    int64_t max_mod_revision;
    int64_t min_create_revision;
    int64_t max_create_revision;
};

/* etcd's RangeResponse body: kvs (value_len 0 and value NULL when
 * keys_only; none when count_only), more, count. `revision` is the store's
 * current revision at the time of the read (the header revision). */
struct mvcc_range_res {
    struct mvcc_kv *kvs; /* array owned by the result; entries point into the index */
    size_t n;
    int64_t count;
    bool more;
    int64_t revision;
};

struct mvcc_store *mvcc_create(void);
/* From the writer thread, once no reader is inside a read section; frees
 * every mvcc_reader of the store too. */
void mvcc_destroy(struct mvcc_store *s);

/* Each thread that reads registers once, and uses its reader only from that
 * thread. */
struct mvcc_reader *mvcc_reader_register(struct mvcc_store *s);
void mvcc_reader_unregister(struct mvcc_reader *r);
void mvcc_read_begin(struct mvcc_reader *r);
void mvcc_read_end(struct mvcc_reader *r);

/* Inside a read section. Returns MVCC_OK or an mvcc_err; res must be
 * released with mvcc_range_res_free() (also after an error). */
int mvcc_range(struct mvcc_reader *r, const struct mvcc_range_req *req, struct mvcc_range_res *res);
void mvcc_range_res_free(struct mvcc_range_res *res);

/* The same Range without building an array, for requests answered in
 * index order (no sort, no min/max filters: mvcc_range_streams()): calls
 * fn for each kv mvcc_range() would return, in order; fills count, more,
 * revision and n of *res (kvs stays NULL). A huge range then costs no
 * memory beyond what the caller does with each kv. MVCC_ERR_BAD_ORDER for
 * other requests. Inside a read section. */
typedef void (*mvcc_each_fn)(void *arg, const struct mvcc_kv *kv);
bool mvcc_range_streams(const struct mvcc_range_req *req);
int mvcc_range_each(struct mvcc_reader *r, const struct mvcc_range_req *req, mvcc_each_fn fn,
                    void *arg, struct mvcc_range_res *res);

/* Inside a read section: the revision of the pinned state, and its
 * compact revision; every revision between the two is readable in the
 * section. */
int64_t mvcc_read_revision(const struct mvcc_reader *r);
int64_t mvcc_read_compact_revision(const struct mvcc_reader *r);

/* Current and compacted revisions as last published (any thread). Inside
 * a read section, mvcc_compact_revision() is >= the pinned state's compact
 * revision, so any revision between it and the state's is readable
 * (unless a restore lowered the revisions since the section began; see
 * mvcc_read_compact_revision()). */
int64_t mvcc_current_revision(const struct mvcc_store *s);
int64_t mvcc_compact_revision(const struct mvcc_store *s);
/* Approximate bytes the live state takes (keys, values, versions, nodes). */
uint64_t mvcc_size_bytes(const struct mvcc_store *s);

/* ---- writer side: the single writer thread only ---- */

/* Called once per previous version found by a put or delete, synchronously
 * inside the call; the kv is valid only during the callback. */
typedef void (*mvcc_prev_fn)(void *arg, const struct mvcc_kv *kv);

/* Starts a write transaction at revision current+1. Everything written in
 * it shares that revision (sub-revisions in order of the calls). */
void mvcc_txn_begin(struct mvcc_store *s);
/* Puts key=value. Calls prev(arg, old) first if the key exists (prev may
 * be NULL). Returns MVCC_OK or MVCC_ERR_NOMEM. */
int mvcc_txn_put(struct mvcc_store *s, const uint8_t *key, size_t key_len, const uint8_t *value,
                 size_t value_len, int64_t lease, mvcc_prev_fn prev, void *arg);
/* Deletes the live keys in the range (same range_end rules as Range),
 * calling prev for each one deleted, in key order. Returns the number
 * deleted (>= 0) or MVCC_ERR_NOMEM. */
int64_t mvcc_txn_delete_range(struct mvcc_store *s, const uint8_t *key, size_t key_len,
                              const uint8_t *range_end, size_t range_end_len, mvcc_prev_fn prev,
                              void *arg);
/* Ends the transaction: if anything changed, the revision advances and the
 * new state is published to readers. Returns the store's current revision
 * after the transaction. Also lets ck_epoch free memory no reader sees. */
int64_t mvcc_txn_end(struct mvcc_store *s);

/* ---- issue 3: history, compaction, hashing, snapshots ---- */

/* Writer side, inside a transaction: a Range that also sees what the open
 * transaction wrote so far (a Txn's range after its own put, as etcd's
 * storeTxnWrite.Range). The transaction's revision is current+1 once it
 * has written something, else current; req->revision <= 0 reads at it
 * and res->revision reports it. An explicit revision reads history with
 * mvcc_range()'s rules (etcd allows it in a Txn too). Pointers stay valid
 * until the next write call or mvcc_txn_end(). */
int mvcc_txn_range(struct mvcc_store *s, const struct mvcc_range_req *req,
                   struct mvcc_range_res *res);

/* Writer side, inside a transaction: the live version of one key as the
 * open transaction sees it, or MVCC_ERR_NOT_FOUND (used by Txn compares,
 * put's ignore_value/ignore_lease). */
int mvcc_txn_get(struct mvcc_store *s, const uint8_t *key, size_t key_len, struct mvcc_kv *out);

/* Writer side, outside a transaction: compact at `rev` (etcd's rule: per
 * key keep the newest version <= rev unless it is a tombstone, drop all
 * older ones; keys left with nothing go). Logical at once: this call
 * publishes the new compact revision, so reads below rev answer
 * MVCC_ERR_COMPACTED (rev itself stays readable). Physical removal is done
 * later in bounded steps by mvcc_compact_step(); compacting again while a
 * pass is pending raises its target. Errors: MVCC_ERR_COMPACTED if rev <=
 * the compact revision, MVCC_ERR_FUTURE_REV if rev > current,
 * MVCC_ERR_NOMEM. Compacting at the current revision is allowed. */
int mvcc_compact(struct mvcc_store *s, int64_t rev);

/* Writer side, outside a transaction: does at most `budget` units of
 * pending physical compaction and publishes the result. A unit is one key
 * examined or one chunk (up to 64 versions) of a compacted key freed; a
 * unit costs well under a microsecond unless it frees a chunk's values.
 * Returns true while more remains. Writes may interleave freely between
 * steps. */
bool mvcc_compact_step(struct mvcc_store *s, unsigned budget);

/* Inside a read section: a CRC32C of every version (key, mod and sub
 * revision, create, version, lease, value; tombstones too) that the pinned
 * state's history holds at or below rev (rev <= 0 meaning current), in key
 * then revision order: the versions in (compact revision, rev] plus, as in
 * etcd's HashKV, the version each key keeps at the compact revision. A
 * pure function of the history and the two revisions, whatever physical
 * compaction has done (encoding in snap.c). *hash_rev and *compact_rev get
 * the revisions used; compare hashes only when both match. Errors:
 * MVCC_ERR_FUTURE_REV, MVCC_ERR_COMPACTED (rev < compact revision). */
int mvcc_hash_kv(struct mvcc_reader *r, int64_t rev, uint32_t *hash, int64_t *hash_rev,
                 int64_t *compact_rev);

/* One version as stored, for snapshots: tombstone = deletion marker
 * (value empty, version 0). `sub` is its sub-revision within mod_revision. */
struct mvcc_version {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t sub;
    int64_t version;
    int64_t lease;
    bool tombstone;
};

/* Inside a read section: calls fn for every stored version of the state
 * pinned by the section, in key order then revision order: what
 * compaction at the state's compact revision keeps (as mvcc_hash_kv), so
 * the dump does not depend on how far physical compaction has got. A
 * non-zero return from fn stops the walk and is returned. Also reports the
 * state's current and compact revisions before the first call. */
typedef int (*mvcc_dump_fn)(void *arg, const struct mvcc_version *v);
int mvcc_dump(struct mvcc_reader *r, int64_t *rev, int64_t *compact_rev, mvcc_dump_fn fn,
              void *arg);

/* Restore: replaces the whole state by a snapshot's (a member starting
 * from its snapshot file, a Raft follower sent the leader's), on a fresh
 * store or a live one with readers reading.
 *
 * Writer side, outside a transaction (asserted). mvcc_restore_version
 * takes versions in mvcc_dump() order; the first call starts the restore.
 * They are bulk-loaded into a new tree beside the live one: readers go on
 * seeing the live state, untouched, and the writer may not begin a
 * transaction, compact or compact-step until the restore is finished or
 * aborted (asserted). mvcc_restore_finish (which also starts and finishes
 * an empty restore) then publishes the new tree with its current and
 * compact revisions, in one publication as a commit's, cancels a
 * compaction pass in progress, and retires the old tree whole: ck_epoch
 * frees it once no reader can still see it, in batches as later commits
 * and mvcc_reclaim() run. mvcc_restore_abort drops everything staged and
 * leaves the live state, and the compaction pass, as they were.
 *
 * Readers: a section begun before the publication keeps the whole old
 * state (its revisions, history and hash) to its end; one begun after
 * sees only the new. The new revisions may be lower than the old ones,
 * so mvcc_current_revision(), mvcc_compact_revision() and the revisions
 * a thread reads go back across a restore that lowers them (and only
 * then); use mvcc_read_compact_revision() for the pinned state's.
 *
 * Returns MVCC_OK, MVCC_ERR_NOMEM, or MVCC_ERR_BAD_ORDER if versions come
 * out of order or are malformed (mod_revision <= 0, a live version with
 * version or create_revision <= 0 or create > mod). An error sticks:
 * later calls return it, and mvcc_restore_finish returns it and aborts;
 * finish also fails (and aborts) with MVCC_ERR_BAD_ORDER if rev < 1,
 * compact_rev is outside [0, rev] or a version is newer than rev, and
 * with MVCC_ERR_NOMEM. After a failed finish the live state is unchanged
 * and a new restore may start. */
int mvcc_restore_version(struct mvcc_store *s, const struct mvcc_version *v);
int mvcc_restore_finish(struct mvcc_store *s, int64_t rev, int64_t compact_rev);
void mvcc_restore_abort(struct mvcc_store *s);

/* Writer side, outside a transaction: frees up to `budget` retired
 * objects (nodes, chunks with their values and keys, states) that no
 * reader can see any more. Commits already free a batch each, a little
 * more than they retire; this catches up with a large backlog, such as
 * the old tree a restore left, in bounded steps (when idle, say).
 * Returns true while retired memory is still waiting: for readers still
 * in sections that may see it, or for more budget. */
bool mvcc_reclaim(struct mvcc_store *s, unsigned budget);

#endif
