/*
 * snap.c — HashKV, dump and restore of the index.
 *
 * The stored history of a state with compact revision C is, per key, what
 * compaction at C keeps (bt_vpos_kept: the newest version <= C unless it
 * is a tombstone, and every version after it). It depends only on the
 * history and C, never on how far physical compaction has got, so hashes
 * and dumps agree between members whatever their compaction progress.
 *
 * Hash: CRC32C (Castagnoli; software slicing-by-8, tables built once)
 * over the bytes "key" (etcd's HashKV starts with its bucket's name, so an
 * empty store does not hash to 0), then each stored version with
 * mod_revision <= rev, in key then revision order, encoded as fixed-width
 * little-endian fields:
 *
 *   SIZE  MEANING
 *   4     key length
 *   n     key bytes
 *   8     mod_revision
 *   4     sub-revision
 *   8     create_revision (0 for a tombstone)
 *   8     version (0 = tombstone)
 *   8     lease
 *   4     value length
 *   n     value bytes
 *
 * No pointers, padding or host byte order reach the hash. Like etcd's
 * HashKV it covers the kept version at or below C too, so data untouched
 * since the last compaction is checked as well; rev and C are returned
 * rather than hashed, and members compare hashes taken at the same (rev,
 * C), as etcd's corruption check does.
 *
 * Restore: versions in dump order are staged per key in a detached slot
 * (the append path of puts) and the slots bulk-loaded bottom-up
 * (bt_build_*) into a tree beside the live one: each node is written
 * once, nothing is path-copied, and nothing readers can reach is touched.
 * Finish swaps the trees, retires the old one whole into the limbo
 * (bt_tree_retire; with a cancelled compaction's pending chain), and
 * publishes through mvcc_commit like any transaction, which hands the
 * limbo to ck_epoch after the release store: a reader pinned on the old
 * state keeps all of it until it leaves its section. A fresh store's
 * "old tree" is its empty root, so start-up pays nothing for this.
 *
 * Threads: hash and dump run on a reader inside its read section and
 * only read; restore runs on the writer, outside transactions, with
 * readers reading concurrently.
 *
 * Invariants (restore):
 * - Between the first mvcc_restore_version and finish/abort, the writer
 *   runs no transaction or compaction, so the live tree, the revisions
 *   and w.bytes' share of the live state (rs.bytes0) stay fixed.
 * - Finish either fails before the swap (the live state unchanged, the
 *   staging freed) or cannot fail; after it, w.bytes counts exactly the
 *   new tree (asserted).
 */
#include "mvcc_int.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- CRC32C ---- */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1; /* reflected Castagnoli */
        crc_tab[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (uint32_t i = 0; i < 256; i++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* crc32c(crc32c(0, a), b) == crc32c(0, a || b). */
static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = crc ^ le32(p), hi = le32(p + 4);
        crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
              crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
              crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
    }
    while (n-- > 0)
        crc = (crc >> 8) ^ crc_tab[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* ---- walking the stored history ---- */

typedef int (*walk_fn)(void *arg, const struct bt_slot *sl, const struct bt_ver *v);

/* Calls fn for every stored version of st with mod_revision <= rev. */
static int walk(const struct mvcc_state *st, int64_t rev, walk_fn fn, void *arg)
{
    const struct bt_slot *sl;
    struct bt_iter it;
    struct bt_vpos p;
    int rv;

    bt_iter_seek(&it, st->root, NULL, 0);
    while ((sl = bt_iter_next(&it)) != NULL) {
        if (!bt_vpos_kept(sl, st->compact_rev, &p))
            continue;
        do {
            const struct bt_ver *v = bt_vpos_ver(&p);
            if (v->mod_revision > rev)
                break;
            if ((rv = fn(arg, sl, v)) != 0)
                return rv;
        } while (bt_vpos_next(sl, &p));
    }
    return 0;
}

/* ---- hash ---- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int hash_ver(void *arg, const struct bt_slot *sl, const struct bt_ver *v)
{
    uint32_t *crc = arg;
    uint8_t b[40];

    put_le(b, sl->key->len, 4);
    *crc = crc32c(*crc, b, 4);
    *crc = crc32c(*crc, sl->key->bytes, sl->key->len);
    put_le(b, (uint64_t)v->mod_revision, 8);
    put_le(b + 8, v->sub, 4);
    put_le(b + 12, (uint64_t)v->create_revision, 8);
    put_le(b + 20, (uint64_t)v->version, 8);
    put_le(b + 28, (uint64_t)v->lease, 8);
    put_le(b + 36, v->value_len, 4);
    *crc = crc32c(*crc, b, sizeof(b));
    if (v->value_len > 0)
        *crc = crc32c(*crc, v->value, v->value_len);
    return 0;
}

int mvcc_hash_kv(struct mvcc_reader *r, int64_t rev, uint32_t *hash, int64_t *hash_rev,
                 int64_t *compact_rev)
{
    const struct mvcc_state *st = r->st;
    uint32_t crc;

    assert(st != NULL);
    *hash = 0;
    *hash_rev = st->rev;
    *compact_rev = st->compact_rev;
    if (rev > st->rev)
        return MVCC_ERR_FUTURE_REV;
    if (rev <= 0)
        rev = st->rev;
    if (rev < st->compact_rev)
        return MVCC_ERR_COMPACTED;
    pthread_once(&crc_once, crc_init); /* before the first crc32c() */
    /* Seeded with the name etcd seeds its HashKV with (its key bucket),
     * so even an empty store hashes to a non-zero value, as etcd's. */
    crc = crc32c(0, (const uint8_t *)"key", 3);
    walk(st, rev, hash_ver, &crc);
    *hash = crc;
    *hash_rev = rev;
    return MVCC_OK;
}

/* ---- dump ---- */

struct dump_ctx {
    mvcc_dump_fn fn;
    void *arg;
};

static int dump_ver(void *arg, const struct bt_slot *sl, const struct bt_ver *v)
{
    const struct dump_ctx *d = arg;
    struct mvcc_version mv = {
        .key = sl->key->bytes,
        .key_len = sl->key->len,
        .value = v->value,
        .value_len = v->value_len,
        .create_revision = v->create_revision,
        .mod_revision = v->mod_revision,
        .sub = v->sub,
        .version = v->version,
        .lease = v->lease,
        .tombstone = bt_ver_is_tomb(v),
    };

    return d->fn(d->arg, &mv);
}

int mvcc_dump(struct mvcc_reader *r, int64_t *rev, int64_t *compact_rev, mvcc_dump_fn fn, void *arg)
{
    const struct mvcc_state *st = r->st;
    struct dump_ctx d = {fn, arg};

    assert(st != NULL);
    *rev = st->rev;
    *compact_rev = st->compact_rev;
    return walk(st, INT64_MAX, dump_ver, &d);
}

/* ---- restore ---- */

/* Checks v on its own and against the previous one; *cmp > 0 when it
 * starts a new key. */
static int restore_check(const struct mvcc_restore *rs, const struct mvcc_version *v, int *cmp)
{
    const struct bt_key *k = rs->slot.key;

    if (v->key_len > UINT32_MAX || v->value_len > UINT32_MAX || v->mod_revision <= 0 ||
        v->sub < 0 || v->sub > UINT32_MAX)
        return MVCC_ERR_BAD_ORDER;
    if (!v->tombstone &&
        (v->version <= 0 || v->create_revision <= 0 || v->create_revision > v->mod_revision))
        return MVCC_ERR_BAD_ORDER;
    *cmp = k == NULL ? 1 : bt_key_cmp(v->key, v->key_len, k->bytes, k->len);
    if (*cmp < 0)
        return MVCC_ERR_BAD_ORDER;
    if (*cmp == 0 && (v->mod_revision < rs->last_mod ||
                      (v->mod_revision == rs->last_mod && (uint32_t)v->sub <= rs->last_sub)))
        return MVCC_ERR_BAD_ORDER;
    return MVCC_OK;
}

/* Moves the staged key into the tree being built. */
static int restore_flush(struct mvcc_store *s)
{
    struct mvcc_restore *rs = &s->rs;

    if (rs->slot.key == NULL)
        return MVCC_OK;
    if (bt_build_add(&s->w, &rs->build, &rs->slot) != 0)
        return MVCC_ERR_NOMEM;
    memset(&rs->slot, 0, sizeof(rs->slot));
    return MVCC_OK;
}

static int restore_key(struct mvcc_store *s, const struct mvcc_version *v)
{
    struct bt_key *k;

    if (bt_spare_fill(&s->w) != 0 || (k = bt_key_new(&s->w, v->key, v->key_len)) == NULL)
        return MVCC_ERR_NOMEM;
    bt_slot_init(&s->w, &s->rs.slot, k);
    return MVCC_OK;
}

static int restore_push(struct mvcc_store *s, const struct mvcc_version *v)
{
    struct bt_ver bv = {0};
    uint8_t *val = NULL;

    if (!v->tombstone) { /* a tombstone is version 0 with nothing else */
        bv.create_revision = v->create_revision;
        bv.version = v->version;
        bv.lease = v->lease;
        if (v->value_len > 0 && (val = malloc(v->value_len)) == NULL)
            return MVCC_ERR_NOMEM;
        if (val != NULL)
            memcpy(val, v->value, v->value_len);
        bv.value = val;
        bv.value_len = (uint32_t)v->value_len;
    }
    if (bt_slot_reserve(&s->w, &s->rs.slot) != 0) {
        free(val);
        return MVCC_ERR_NOMEM;
    }
    bv.mod_revision = v->mod_revision;
    bv.sub = (uint32_t)v->sub;
    bt_slot_push(&s->w, &s->rs.slot, &bv);
    return MVCC_OK;
}

static void restore_start(struct mvcc_store *s)
{
    assert(!s->in_txn);
    if (!s->rs.started) {
        s->rs.started = true;
        s->rs.bytes0 = s->w.bytes;
    }
}

int mvcc_restore_version(struct mvcc_store *s, const struct mvcc_version *v)
{
    struct mvcc_restore *rs = &s->rs;
    int cmp, rv;

    restore_start(s);
    if (rs->err != MVCC_OK)
        return rs->err;
    rv = restore_check(rs, v, &cmp);
    if (rv == MVCC_OK && cmp > 0 && (rv = restore_flush(s)) == MVCC_OK)
        rv = restore_key(s, v);
    if (rv == MVCC_OK)
        rv = restore_push(s, v);
    if (rv != MVCC_OK)
        return rs->err = rv;
    rs->last_mod = v->mod_revision;
    rs->last_sub = (uint32_t)v->sub;
    if (v->mod_revision > rs->max_mod)
        rs->max_mod = v->mod_revision;
    return MVCC_OK;
}

/* Drops everything staged, which no reader has seen (so it is freed at
 * once); the live state is as before the restore. Chunks the staging
 * replaced (a growing head) are in the limbo and go with the next
 * commit; their values belong to the staged heads. */
void mvcc_restore_abort(struct mvcc_store *s)
{
    struct mvcc_restore *rs = &s->rs;

    assert(!s->in_txn);
    if (rs->slot.key != NULL)
        bt_slot_free(&rs->slot);
    bt_build_abort(&s->w, &rs->build);
    if (rs->started)
        s->w.bytes = rs->bytes0;
    memset(rs, 0, sizeof(*rs));
}

/* Makes the built tree the working tree, or fails (out of memory) with
 * nothing changed. The old tree goes to the limbo whole, with the chain
 * of a cancelled compaction pass; the caller publishes, which hands the
 * limbo to ck_epoch. */
static int restore_swap(struct mvcc_store *s)
{
    struct mvcc_restore *rs = &s->rs;
    struct bt_node *old;
    int64_t staged;

    if (restore_flush(s) != MVCC_OK || bt_build_finish(&s->w, &rs->build, &old) != 0)
        return MVCC_ERR_NOMEM;
    staged = s->w.bytes - rs->bytes0;
    bt_tree_retire(&s->w, old);
    mvcc_compaction_reset(s);
    assert(s->w.bytes == staged); /* the old state's bytes all went */
    (void)staged;
    return MVCC_OK;
}

int mvcc_restore_finish(struct mvcc_store *s, int64_t rev, int64_t compact_rev)
{
    struct mvcc_restore *rs = &s->rs;
    int rv;

    restore_start(s); /* an empty snapshot stages nothing */
    rv = rs->err;
    if (rv == MVCC_OK && (rev < 1 || compact_rev < 0 || compact_rev > rev || rs->max_mod > rev))
        rv = MVCC_ERR_BAD_ORDER;
    if (rv == MVCC_OK && mvcc_state_reserve(s) != MVCC_OK)
        rv = MVCC_ERR_NOMEM;
    if (rv == MVCC_OK)
        rv = restore_swap(s);
    if (rv != MVCC_OK) {
        mvcc_restore_abort(s);
        return rv;
    }
    memset(rs, 0, sizeof(*rs));
    s->rev = rev;
    s->compact_rev = compact_rev;
    mvcc_commit(s, true);
    return MVCC_OK;
}

void mvcc_restore_free(struct mvcc_store *s)
{
    mvcc_restore_abort(s);
}
