/*
 * btree — the copy-on-write B+ tree under the MVCC index and the version
 * chunks its slots point to (internal to src/mvcc; nothing outside this
 * folder includes it). btree.c has the tree, vers.c the versions.
 *
 * Keys live only in leaves, one slot per key: the key blob and the key's
 * versions. Inner nodes hold separators that alias leaf key blobs: child i
 * holds the keys k with keys[i-1] <= k < keys[i]. A blob is aliased by at
 * most one separator, and a removal that deletes an aliased key moves the
 * alias to the key's successor before the blob is retired.
 *
 * A key's versions are a newest-first list of chunks (struct bt_chunk):
 * the slot points at the newest (head) and says how many of its versions
 * are published (n) and which chunk is the oldest it owns (base). Every
 * chunk but the head is full and never changes; appends write only the
 * head's unpublished tail or start a new chunk, so no append ever copies
 * more than BT_CHUNK_MAX / 2 versions.
 *
 * Ownership: one writer (struct bt_writer) and any number of readers. A
 * node whose `txn` equals the writer's current txn was created in the
 * unpublished transaction and may be changed in place; any other node is
 * shared with readers and is copied first (path copying from the root).
 * Replaced nodes and chunks go to the writer's limbo list; the caller
 * hands them to ck_epoch once the new root is published. Values and key
 * blobs are immutable; each value is owned by exactly one chunk, each key
 * blob by its slot (or, once the slot is removed, by the retired head).
 * A restore bulk-builds a whole new tree beside the working one
 * (bt_build_*) and then retires the old tree whole (bt_tree_retire), so
 * readers of the old published root keep it intact until ck_epoch says
 * they have left.
 */
#ifndef CETCD_MVCC_BTREE_H
#define CETCD_MVCC_BTREE_H

#include <ck_epoch.h>
#include <ck_stack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_LEAF_MAX  32 /* slots per leaf */
#define BT_LEAF_LOW  8  /* a leaf below this merges with a sibling it fits in */
#define BT_INNER_MAX 64 /* children per inner node */
#define BT_DEPTH_MAX 16 /* levels; 32^15 keys is far beyond any store */
#define BT_POOL_MAX  64 /* spare nodes of each kind the writer keeps */
#define BT_CHUNK_MAX 64 /* versions per chunk; smaller heads grow by copying */

/* An immutable key. */
struct bt_key {
    uint32_t len;
    uint8_t bytes[];
};

/* One version of a key. A tombstone has version 0 and no value. */
struct bt_ver {
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
    const uint8_t *value; /* NULL when value_len is 0 */
    uint32_t value_len;
    uint32_t sub; /* sub-revision inside mod_revision's transaction */
};

/* Versions of one key, oldest first; chunk seq s+1 holds newer versions
 * than chunk s. `older` and `jump` (Myers' skew-binary jump pointer) may
 * point at freed chunks once the slot's base has passed them: follow
 * `older` only from seq > base and `jump` only when jump_seq >= base. */
struct bt_chunk {
    ck_epoch_entry_t retire;      /* writer only, once replaced */
    struct bt_chunk *older;       /* chunk seq - 1 */
    struct bt_chunk *jump;        /* some older chunk, NULL if none */
    const struct bt_key *own_key; /* writer only: key blob freed with the chunk */
    uint32_t seq;                 /* 0 for a key's first chunk */
    uint32_t jump_seq;            /* jump->seq, known without touching jump */
    uint16_t cap;
    uint16_t own_n; /* writer only: values v[0..own_n) are freed with the chunk */
    struct bt_ver v[];
};

struct bt_slot {
    const struct bt_key *key;
    struct bt_chunk *head; /* newest chunk; never NULL in a published slot */
    uint32_t n;            /* versions of head in use; >= 1 in a published slot */
    uint32_t base;         /* seq of the oldest chunk the slot owns */
};

/* A position in a slot's versions. */
struct bt_vpos {
    const struct bt_chunk *c;
    uint32_t i;
};

/* Chunks cut off a key's list by compaction, retired a few at a time:
 * next, next->older, ... down to seq `stop`. `head`, if in the chain, is
 * a removed key's head: it owns head_n values and the key blob. */
struct bt_chain {
    struct bt_chunk *next; /* NULL when nothing is pending */
    struct bt_chunk *head;
    const struct bt_key *key;
    uint32_t head_n;
    uint32_t stop;
};

struct bt_node {
    ck_epoch_entry_t retire; /* writer only, once replaced */
    uint64_t txn;            /* writer txn that created the node */
    uint16_t n;              /* slots (leaf) or children (inner) */
    bool leaf;
};

struct bt_leaf {
    struct bt_node hdr;
    struct bt_slot slots[BT_LEAF_MAX];
};

struct bt_inner {
    struct bt_node hdr;
    const struct bt_key *keys[BT_INNER_MAX - 1];
    struct bt_node *child[BT_INNER_MAX];
};

/* The writer's working tree. Every field is the writer thread's. */
struct bt_writer {
    struct bt_node *root; /* working root; equals the published one until changed */
    uint32_t height;      /* levels, 1 = the root is a leaf */
    uint64_t txn;         /* current transaction; nodes with this txn are private */
    ck_stack_t limbo;     /* replaced this txn, not yet handed to ck_epoch */
    uint32_t limbo_n;
    int64_t bytes; /* live nodes, keys, chunks and values */
    ck_stack_t pool_leaf, pool_inner;
    uint32_t pool_leaf_n, pool_inner_n;
    struct bt_chunk *spare; /* the first chunk of the next new key */
};

/* A forward cursor over the slots of one tree version (any thread). */
struct bt_iter {
    const struct bt_node *node[BT_DEPTH_MAX];
    uint16_t pos[BT_DEPTH_MAX];
    int top; /* -1 when exhausted */
};

/* Bottom-up bulk load from slots in key order (writer). cur[l] is the
 * open node of level l (0 = leaves), min[l] the smallest key under it. */
struct bt_build {
    struct bt_node *cur[BT_DEPTH_MAX];
    const struct bt_key *min[BT_DEPTH_MAX];
    int top;
};

static inline bool bt_ver_is_tomb(const struct bt_ver *v)
{
    return v->version == 0;
}

static inline size_t bt_key_size(const struct bt_key *k)
{
    return sizeof(*k) + k->len;
}

int bt_key_cmp(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);

/* ---- tree readers (any thread, inside an epoch section) ---- */

const struct bt_slot *bt_find(const struct bt_node *root, const uint8_t *key, size_t key_len);
void bt_iter_seek(struct bt_iter *it, const struct bt_node *root, const uint8_t *key,
                  size_t key_len);
const struct bt_slot *bt_iter_next(struct bt_iter *it);

/* ---- version readers (any thread, on a slot of a pinned tree) ---- */

/* The newest version with mod_revision <= rev (maybe a tombstone), or
 * NULL; *pos (if not NULL) gets its position. O(log chunks + log 64). */
const struct bt_ver *bt_ver_at(const struct bt_slot *sl, int64_t rev, struct bt_vpos *pos);
/* The first version compaction at `compact` keeps: the newest <= compact
 * if it is not a tombstone, else the next one. False if none is kept. */
bool bt_vpos_kept(const struct bt_slot *sl, int64_t compact, struct bt_vpos *pos);
/* Steps to the next newer version; false at the newest. */
bool bt_vpos_next(const struct bt_slot *sl, struct bt_vpos *pos);

static inline const struct bt_ver *bt_vpos_ver(const struct bt_vpos *pos)
{
    return &pos->c->v[pos->i];
}

/* ---- tree writer ---- */

/* bt_writer_init returns -1 when out of memory. */
int bt_writer_init(struct bt_writer *w);
/* Frees the working tree, the pools and everything the tree owns. The
 * limbo must be empty. */
void bt_writer_destroy(struct bt_writer *w);
struct bt_key *bt_key_new(struct bt_writer *w, const uint8_t *key, size_t key_len);
/* Returns the slot of key in the working tree, made private to the txn.
 * create: insert a slot with an empty 1-version head (n == 0) when the
 * key is missing; the caller pushes a version at once. NULL when the key
 * is missing (!create) or memory ran out; the tree stays valid. */
struct bt_slot *bt_slot_mut(struct bt_writer *w, const uint8_t *key, size_t key_len, bool create);
/* Removes the slot of key (which must exist) from the working tree. The
 * caller has taken the slot's chunks and key blob over. Leaves under
 * BT_LEAF_LOW merge into a sibling when they fit; empty nodes go. Returns
 * -1 when out of memory; the tree stays valid and holds the key. */
int bt_slot_remove(struct bt_writer *w, const uint8_t *key, size_t key_len);
/* Queues an object replaced in this txn; the caller passes the limbo to
 * ck_epoch_call after publishing. */
void bt_retire(struct bt_writer *w, ck_epoch_entry_t *e, ck_epoch_cb_t *fn);
/* Frees or recycles one object that no reader can see any more. */
void bt_reclaim(struct bt_writer *w, ck_epoch_entry_t *e);

/* Bulk load, off to the side of the working tree, which it never
 * touches until finish: add slots in strictly increasing key order, then
 * finish, which makes the built tree (an empty leaf if nothing was added)
 * the working tree and returns the old root in *old for bt_tree_retire.
 * Finish fails (-1, out of memory) before changing anything; the caller
 * then aborts, which frees everything added. */
int bt_build_add(struct bt_writer *w, struct bt_build *b, const struct bt_slot *sl);
int bt_build_finish(struct bt_writer *w, struct bt_build *b, struct bt_node **old);
void bt_build_abort(struct bt_writer *w, struct bt_build *b);
/* Retires a whole tree the working tree no longer reaches (but a
 * published state may): every node, and every slot with bt_slot_retire.
 * O(nodes + chunks), no allocation. */
void bt_tree_retire(struct bt_writer *w, struct bt_node *root);

/* ---- version writer (vers.c) ---- */

/* Makes sure bt_slot_init has a chunk to take; -1 when out of memory. */
int bt_spare_fill(struct bt_writer *w);
/* Makes sl an empty slot of key whose head is the spare chunk. */
void bt_slot_init(struct bt_writer *w, struct bt_slot *sl, const struct bt_key *key);
/* Makes room for one more version in a private slot; -1 when out of
 * memory (the slot is unchanged). bt_slot_push then cannot fail. Read
 * what you need of the slot's last version before: a new chunk leaves
 * n == 0 until the push. */
int bt_slot_reserve(struct bt_writer *w, struct bt_slot *sl);
void bt_slot_push(struct bt_writer *w, struct bt_slot *sl, const struct bt_ver *v);

/* Compaction of one slot at `compact`: what to do, and from where. */
enum bt_trim { BT_TRIM_NONE, BT_TRIM_BASE, BT_TRIM_KEY };
enum bt_trim bt_trim_plan(const struct bt_slot *sl, int64_t compact, struct bt_vpos *start);
/* BT_TRIM_BASE on the private slot: chunks older than start's go to the
 * (empty) chain, a head with versions before start is replaced by a copy
 * of the rest. */
void bt_slot_trim(struct bt_writer *w, struct bt_slot *sl, const struct bt_vpos *start,
                  struct bt_chain *ch);
/* BT_TRIM_KEY, after bt_slot_remove: every chunk of the removed slot (a
 * copy of it) and its key blob go to the (empty) chain. */
void bt_chain_key(struct bt_chain *ch, const struct bt_slot *sl);
/* Retires up to `budget` chunks of the chain; returns how many. */
uint32_t bt_chain_retire(struct bt_writer *w, struct bt_chain *ch, uint32_t budget);
/* Retires everything the slot owns: its chunks from the head down to
 * base (with their values) and its key blob, as a chain. */
void bt_slot_retire(struct bt_writer *w, const struct bt_slot *sl);
/* Frees at once what a slot or a chain owns (destroy, aborted restore). */
void bt_slot_free(const struct bt_slot *sl);
void bt_chain_free(struct bt_chain *ch);

#endif
