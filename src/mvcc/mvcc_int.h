/*
 * mvcc_int — the store's internals, shared by the files of src/mvcc
 * (mvcc.c: state, reads, transactions, reclamation; compact.c:
 * compaction; snap.c: hash, dump, restore). Nothing outside this folder
 * includes it.
 *
 * Writer modes, one at a time: idle, in a transaction (in_txn), or
 * staging a restore (rs.started). A compaction pass (cp.active) lives
 * across idle periods and transactions; a restore's finish cancels it.
 */
#ifndef CETCD_MVCC_INT_H
#define CETCD_MVCC_INT_H

#include "btree.h"
#include "mvcc.h"

#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* A published state; immutable once published. */
struct mvcc_state {
    ck_epoch_entry_t retire;
    const struct bt_node *root;
    int64_t rev;
    int64_t compact_rev;
};

/* A growable copy of a key (writer). */
struct mvcc_keybuf {
    uint8_t *b;
    size_t len, cap;
};

/* The compaction pass in progress (writer). It visits the keys from
 * `cur` (exclusive; from the first key if !has_cur) to the last; if the
 * target was raised mid-pass (has_stop), it then wraps around and ends
 * before `stop`, the key it had reached when raised. */
struct mvcc_compaction {
    bool active;
    bool has_cur, has_stop, wrapped;
    int64_t target;
    struct mvcc_keybuf cur, stop;
    struct bt_chain chain; /* chunks cut off the last key, being retired */
};

/* A restore in progress (writer): the key being staged and the tree
 * built so far, beside the working tree, which stays published and
 * untouched until mvcc_restore_finish swaps them. While `started`, no
 * transaction or compaction may run (asserted). */
struct mvcc_restore {
    bool started;
    int err; /* sticky until mvcc_restore_finish / _abort */
    struct bt_build build;
    struct bt_slot slot; /* key == NULL when nothing is staged */
    int64_t last_mod, max_mod;
    uint32_t last_sub;
    int64_t bytes0; /* w.bytes before the restore: the old state's share */
};

struct mvcc_store {
    ck_epoch_record_t wrec; /* writer: ck_epoch_call and poll only */
    ck_epoch_t epoch;       /* all records; register/recycle from any thread */

    /* Shared words: written by the writer with release stores. */
    struct mvcc_state *state;
    int64_t rev_pub;
    int64_t compact_pub;
    uint64_t bytes_pub;
    int tsan_sync; /* address of the TSan section-end -> free edge */

    /* Writer thread only. */
    struct bt_writer w;
    struct mvcc_state *next_state; /* preallocated so publishing cannot fail */
    ck_stack_t ready;              /* safe to free, drained in batches */
    bool in_txn;
    bool changed; /* the open txn wrote a version */
    uint32_t sub;
    int64_t rev;
    int64_t compact_rev;
    const struct bt_key **scratch; /* keys a delete_range removes */
    size_t scratch_cap;
    struct mvcc_compaction cp;
    struct mvcc_restore rs;
};

struct mvcc_reader {
    ck_epoch_record_t rec;
    /* The owning thread only. */
    struct mvcc_store *s;
    const struct mvcc_state *st; /* pinned between read_begin and read_end */
};

/* mvcc.c, writer: makes sure the next publication has a state object. */
int mvcc_state_reserve(struct mvcc_store *s);
/* mvcc.c, writer: publishes the working tree and revisions if anything
 * changed (or `force`), hands the limbo to ck_epoch, reclaims a batch. */
void mvcc_commit(struct mvcc_store *s, bool force);

/* compact.c / snap.c, writer: free what they own (mvcc_destroy). */
void mvcc_compaction_free(struct mvcc_store *s);
void mvcc_restore_free(struct mvcc_store *s);
/* compact.c, writer: cancels the pass in progress, if any, for a restore
 * that replaces the tree: its pending chain is retired (a published state
 * may still reach it), its cursor forgotten. */
void mvcc_compaction_reset(struct mvcc_store *s);

#endif
