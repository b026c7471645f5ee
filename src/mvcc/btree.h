/*
 * btree — the copy-on-write B+ tree under the MVCC index (internal to
 * src/mvcc; nothing outside this folder includes it).
 *
 * Keys live only in leaves, one slot per key: the key blob and the key's
 * version array. Inner nodes hold separators that alias leaf key blobs:
 * child i holds the keys k with keys[i-1] <= k < keys[i].
 *
 * Ownership: one writer (struct bt_writer) and any number of readers. A
 * node whose `txn` equals the writer's current txn was created in the
 * unpublished transaction and may be changed in place; any other node is
 * shared with readers and is copied first (path copying from the root).
 * Replaced nodes and version arrays go to the writer's limbo list; the
 * caller hands them to ck_epoch once the new root is published.
 *
 * A version array is append-only: a slot publishes the prefix v[0..n) and
 * the writer only ever writes v[n..cap), which no published slot can see.
 * When it is full the writer copies it to a larger array and retires the
 * old one. Values and key blobs are immutable and owned by the live tree.
 */
#ifndef CETCD_MVCC_BTREE_H
#define CETCD_MVCC_BTREE_H

#include <ck_epoch.h>
#include <ck_stack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_LEAF_MAX  32 /* slots per leaf */
#define BT_INNER_MAX 64 /* children per inner node */
#define BT_DEPTH_MAX 16 /* levels; 32^15 keys is far beyond any store */
#define BT_POOL_MAX  64 /* spare nodes of each kind the writer keeps */

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

/* Versions of one key, oldest first; mod_revision never decreases. */
struct bt_varr {
    ck_epoch_entry_t retire; /* writer only, once replaced */
    uint32_t cap;            /* writer only */
    struct bt_ver v[];
};

struct bt_slot {
    const struct bt_key *key;
    struct bt_varr *vers; /* NULL while n == 0 */
    uint32_t n;           /* published versions; 0 = key not visible */
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
    int64_t bytes; /* live nodes, keys, version arrays and values */
    ck_stack_t pool_leaf, pool_inner;
    uint32_t pool_leaf_n, pool_inner_n;
};

/* A forward cursor over the slots of one tree version (any thread). */
struct bt_iter {
    const struct bt_node *node[BT_DEPTH_MAX];
    uint16_t pos[BT_DEPTH_MAX];
    int top; /* -1 when exhausted */
};

static inline bool bt_ver_is_tomb(const struct bt_ver *v)
{
    return v->version == 0;
}

int bt_key_cmp(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);

/* Readers (any thread, inside an epoch section). */
const struct bt_slot *bt_find(const struct bt_node *root, const uint8_t *key, size_t key_len);
void bt_iter_seek(struct bt_iter *it, const struct bt_node *root, const uint8_t *key,
                  size_t key_len);
const struct bt_slot *bt_iter_next(struct bt_iter *it);

/* Writer. bt_writer_init returns -1 when out of memory. */
int bt_writer_init(struct bt_writer *w);
/* Frees the working tree, the pools and everything the tree owns. The
 * limbo must be empty. */
void bt_writer_destroy(struct bt_writer *w);
/* Returns the slot of key in the working tree, made private to the txn.
 * create: insert an empty slot (n == 0) when the key is missing. NULL when
 * the key is missing (!create) or memory ran out; the tree stays valid. */
struct bt_slot *bt_slot_mut(struct bt_writer *w, const uint8_t *key, size_t key_len, bool create);
/* Makes room for one more version in a private slot; -1 when out of
 * memory. bt_slot_push then cannot fail. */
int bt_slot_reserve(struct bt_writer *w, struct bt_slot *sl);
void bt_slot_push(struct bt_writer *w, struct bt_slot *sl, const struct bt_ver *v);
/* Queues an object replaced in this txn; the caller passes the limbo to
 * ck_epoch_call after publishing. */
void bt_retire(struct bt_writer *w, ck_epoch_entry_t *e, ck_epoch_cb_t *fn);
/* Frees or recycles one object that no reader can see any more. */
void bt_reclaim(struct bt_writer *w, ck_epoch_entry_t *e);

#endif
