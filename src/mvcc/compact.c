/*
 * compact.c — etcd's compaction: logical at once, physical in bounded steps.
 *
 * mvcc_compact publishes the new compact revision C (reads below C fail
 * from then on) and starts a pass over the keys, or widens the pass in
 * progress to the new C. Each mvcc_compact_step examines keys in order
 * from a cursor and applies etcd's rule (mvcc/key_index.go compact()):
 * keep the newest version <= C unless it is a tombstone, drop everything
 * older, remove keys left with nothing. It changes the tree the way a
 * write transaction does (a private txn, path copying, publish at the
 * end), so readers at any revision >= their state's compact revision
 * never see a hole, and anything it drops reaches ck_epoch only after the
 * state without it is published.
 *
 * Threads: the writer thread only; the pass state (struct
 * mvcc_compaction) is the writer's. Writes may run between steps.
 *
 * Invariants:
 * - The cursor is a copied key, not a tree position: a step re-seeks the
 *   working tree after anything it changed, so writes between steps (new
 *   keys, new versions, splits, merges) need no bookkeeping. What a key
 *   keeps depends only on its versions <= C, which writes never touch.
 * - A step does at most `budget` units: one per key examined, one per
 *   chunk retired. The chunks a key loses go to one chain that is
 *   retired before the next key is examined, so a hot key with millions
 *   of versions costs many steps, never one long one.
 * - Raising C mid-pass: the pass goes on from its cursor to the end with
 *   the new C and then wraps around up to where it was raised, so every
 *   key is examined at the final C.
 * - A restore that replaces the tree cancels the pass
 *   (mvcc_compaction_reset): the new tree comes from a dump, which holds
 *   only what compaction at its compact revision keeps (anything else is
 *   left to the next compaction); the chain being retired goes to
 *   ck_epoch at once, since
 *   the old published state may still reach it. No compaction runs while
 *   a restore is staged.
 */
#include "mvcc_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static int keybuf_set(struct mvcc_keybuf *kb, const uint8_t *key, size_t len)
{
    if (len > kb->cap) {
        size_t cap = len < 64 ? 64 : len;
        uint8_t *b = realloc(kb->b, cap);
        if (b == NULL)
            return -1;
        kb->b = b;
        kb->cap = cap;
    }
    if (len > 0)
        memcpy(kb->b, key, len);
    kb->len = len;
    return 0;
}

static bool compact_pending(const struct mvcc_store *s)
{
    return s->cp.active || s->cp.chain.next != NULL;
}

int mvcc_compact(struct mvcc_store *s, int64_t rev)
{
    struct mvcc_compaction *cp = &s->cp;
    bool widen = cp->active && cp->has_cur;

    assert(!s->in_txn && !s->rs.started);
    if (rev <= s->compact_rev)
        return MVCC_ERR_COMPACTED;
    if (rev > s->rev)
        return MVCC_ERR_FUTURE_REV;
    if (mvcc_state_reserve(s) != MVCC_OK)
        return MVCC_ERR_NOMEM;
    if (widen && keybuf_set(&cp->stop, cp->cur.b, cp->cur.len) != 0)
        return MVCC_ERR_NOMEM;
    cp->has_stop = widen;
    if (!cp->active)
        cp->has_cur = false;
    cp->active = true;
    cp->wrapped = false;
    cp->target = rev;
    s->compact_rev = rev;
    mvcc_commit(s, true);
    return MVCC_OK;
}

/* The pass reached the last key: wrap around if it was widened, else it
 * is over. */
static void pass_end(struct mvcc_compaction *cp)
{
    if (cp->has_stop && !cp->wrapped) {
        cp->wrapped = true;
        cp->has_cur = false;
        return;
    }
    cp->active = false;
}

/* Moves it to the first key after the cursor; NULL when the pass has no
 * key left (pass_end decides whether it is over). */
static const struct bt_slot *pass_next(struct mvcc_store *s, struct bt_iter *it, bool seek)
{
    struct mvcc_compaction *cp = &s->cp;
    const struct bt_slot *sl;

    if (seek)
        bt_iter_seek(it, s->w.root, cp->cur.b, cp->has_cur ? cp->cur.len : 0);
    sl = bt_iter_next(it);
    if (sl != NULL && seek && cp->has_cur &&
        bt_key_cmp(sl->key->bytes, sl->key->len, cp->cur.b, cp->cur.len) == 0)
        sl = bt_iter_next(it);
    if (sl != NULL && cp->wrapped &&
        bt_key_cmp(sl->key->bytes, sl->key->len, cp->stop.b, cp->stop.len) >= 0)
        return NULL;
    return sl;
}

static int trim_key(struct mvcc_store *s, const struct bt_slot *sl, const struct bt_vpos *start)
{
    struct bt_slot *msl = bt_slot_mut(&s->w, sl->key->bytes, sl->key->len, false);

    if (msl == NULL)
        return -1;
    bt_slot_trim(&s->w, msl, start, &s->cp.chain);
    return 0;
}

/* The key's newest version <= C is a tombstone and nothing follows it. */
static int drop_key(struct mvcc_store *s, const struct bt_slot *sl)
{
    struct bt_slot gone = *sl; /* sl points into a node the removal rewrites */

    if (bt_slot_remove(&s->w, gone.key->bytes, gone.key->len) != 0)
        return -1;
    s->w.bytes -= (int64_t)bt_key_size(gone.key);
    bt_chain_key(&s->cp.chain, &gone);
    return 0;
}

/* Compacts one key. Returns 1 if it changed the tree, 0 if not, -1 when
 * out of memory (the key is left for the next step). */
static int compact_key(struct mvcc_store *s, const struct bt_slot *sl)
{
    struct bt_vpos start;

    switch (bt_trim_plan(sl, s->cp.target, &start)) {
    case BT_TRIM_NONE:
        return 0;
    case BT_TRIM_KEY:
        return drop_key(s, sl) == 0 ? 1 : -1;
    default:
        return trim_key(s, sl, &start) == 0 ? 1 : -1;
    }
}

/* Examines keys (and retires chains) until the budget or the pass ends. */
static void step_run(struct mvcc_store *s, unsigned budget)
{
    struct mvcc_compaction *cp = &s->cp;
    const struct bt_slot *sl;
    const struct bt_key *k;
    struct bt_iter it;
    bool seek = true;
    int rv;

    while (budget > 0 && compact_pending(s)) {
        if (cp->chain.next != NULL) {
            budget -= bt_chain_retire(&s->w, &cp->chain, budget);
            continue;
        }
        if ((sl = pass_next(s, &it, seek)) == NULL) {
            pass_end(cp);
            seek = true;
            continue;
        }
        budget--;
        k = sl->key; /* stays valid: a removed key's blob is retired, not freed */
        if ((rv = compact_key(s, sl)) < 0 || keybuf_set(&cp->cur, k->bytes, k->len) != 0)
            return; /* out of memory: a later step retries from the cursor */
        cp->has_cur = true;
        seek = rv > 0; /* a change may have moved the iterator's nodes */
    }
}

bool mvcc_compact_step(struct mvcc_store *s, unsigned budget)
{
    assert(!s->in_txn && !s->rs.started);
    if (!compact_pending(s))
        return false;
    if (mvcc_state_reserve(s) != MVCC_OK)
        return true;
    s->w.txn++; /* nodes copied from here on are this step's */
    step_run(s, budget);
    mvcc_commit(s, false);
    return compact_pending(s);
}

void mvcc_compaction_reset(struct mvcc_store *s)
{
    struct mvcc_compaction *cp = &s->cp;

    while (cp->chain.next != NULL)
        bt_chain_retire(&s->w, &cp->chain, UINT32_MAX);
    memset(&cp->chain, 0, sizeof(cp->chain));
    cp->active = cp->has_cur = cp->has_stop = cp->wrapped = false;
    cp->target = 0;
    cp->cur.len = cp->stop.len = 0; /* the buffers are kept for the next pass */
}

void mvcc_compaction_free(struct mvcc_store *s)
{
    bt_chain_free(&s->cp.chain);
    free(s->cp.cur.b);
    free(s->cp.stop.b);
    memset(&s->cp, 0, sizeof(s->cp));
}
