/*
 * btree.c — the copy-on-write B+ tree that orders the MVCC index by key.
 *
 * Owns: tree nodes (leaves and inner nodes), key blobs of the live tree,
 * the writer's spare-node pools, and the bulk loader used by restore
 * (which builds a whole tree beside the working one and swaps it in; the
 * old tree is then retired whole by bt_tree_retire). The versions a slot
 * points to are vers.c's.
 *
 * Threads: the writer thread alone calls the bt_writer / bt_slot_* /
 * bt_build_* / bt_retire / bt_reclaim functions; any thread may call
 * bt_find and the iterator on a root it obtained from a published state,
 * inside an epoch section. Readers only ever read.
 *
 * Invariants:
 * - A node is private to the writer iff node->txn == w->txn; the writer
 *   writes only private nodes. Writing a shared node means copying it
 *   (node_own), storing the copy in its (already private) parent and
 *   retiring the original; so an insert copies the root-to-leaf path once
 *   per transaction and then works in place.
 * - Keys in a leaf are strictly increasing (bt_key_cmp order: bytes, then
 *   shorter first). Inner node: n >= 1 children, n-1 separators; child i
 *   holds keys k with keys[i-1] <= k < keys[i]. A separator aliases the
 *   blob of the smallest key under its right child when it was set; a
 *   removal moves the alias of a removed key to its successor.
 * - Every leaf except an empty root holds >= 1 slot. Splits leave halves;
 *   removals merge a leaf below BT_LEAF_LOW into a sibling it fits in and
 *   drop empty nodes; a root with one child is replaced by the child.
 *   Height <= BT_DEPTH_MAX.
 * - Before any change an insert or removal reserves all nodes it might
 *   need from the pools (and a new key its first chunk), so a failed
 *   allocation leaves the tree unchanged and valid.
 * - A node is retired at most once: when a copy replaces it, when it
 *   empties or merges away, or with its whole tree (bt_tree_retire, which
 *   reaches only live nodes: replaced ones left every tree it walks).
 */
#include "btree.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct split {
    struct bt_node *right;    /* new right sibling, NULL when no split */
    const struct bt_key *sep; /* smallest key under right */
};

int bt_key_cmp(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    size_t n = a_len < b_len ? a_len : b_len;
    int c = n ? memcmp(a, b, n) : 0;

    if (c != 0)
        return c;
    return a_len < b_len ? -1 : a_len > b_len;
}

static int key_cmp(const struct bt_key *k, const uint8_t *key, size_t key_len)
{
    return bt_key_cmp(k->bytes, k->len, key, key_len);
}

static const struct bt_leaf *leaf_c(const struct bt_node *n)
{
    return (const struct bt_leaf *)n;
}

static const struct bt_inner *inner_c(const struct bt_node *n)
{
    return (const struct bt_inner *)n;
}

static struct bt_leaf *leaf_of(struct bt_node *n)
{
    return (struct bt_leaf *)n;
}

static struct bt_inner *inner_of(struct bt_node *n)
{
    return (struct bt_inner *)n;
}

/* First slot index whose key is >= key. */
static unsigned leaf_lower(const struct bt_leaf *l, const uint8_t *key, size_t key_len)
{
    unsigned lo = 0, hi = l->hdr.n;

    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (key_cmp(l->slots[mid].key, key, key_len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Index of the child whose key range holds key: first separator > key. */
static unsigned inner_child(const struct bt_inner *in, const uint8_t *key, size_t key_len)
{
    unsigned lo = 0, hi = in->hdr.n - 1u;

    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (key_cmp(in->keys[mid], key, key_len) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- readers ---- */

const struct bt_slot *bt_find(const struct bt_node *root, const uint8_t *key, size_t key_len)
{
    const struct bt_node *n = root;
    const struct bt_leaf *l;
    unsigned i;

    while (!n->leaf)
        n = inner_c(n)->child[inner_child(inner_c(n), key, key_len)];
    l = leaf_c(n);
    i = leaf_lower(l, key, key_len);
    if (i < l->hdr.n && key_cmp(l->slots[i].key, key, key_len) == 0)
        return &l->slots[i];
    return NULL;
}

void bt_iter_seek(struct bt_iter *it, const struct bt_node *root, const uint8_t *key,
                  size_t key_len)
{
    const struct bt_node *n = root;
    int d = 0;

    while (!n->leaf) {
        assert(d < BT_DEPTH_MAX - 1);
        it->node[d] = n;
        it->pos[d] = (uint16_t)inner_child(inner_c(n), key, key_len);
        n = inner_c(n)->child[it->pos[d]];
        d++;
    }
    it->node[d] = n;
    it->pos[d] = (uint16_t)leaf_lower(leaf_c(n), key, key_len);
    it->top = d;
}

/* Moves to the first slot of the next leaf; false at the end. */
static bool iter_next_leaf(struct bt_iter *it)
{
    int d = it->top - 1;
    const struct bt_node *n;

    while (d >= 0 && it->pos[d] + 1u >= it->node[d]->n)
        d--;
    if (d < 0)
        return false;
    it->pos[d]++;
    n = inner_c(it->node[d])->child[it->pos[d]];
    for (d++; d <= it->top; d++) {
        it->node[d] = n;
        it->pos[d] = 0;
        if (!n->leaf)
            n = inner_c(n)->child[0];
    }
    return true;
}

const struct bt_slot *bt_iter_next(struct bt_iter *it)
{
    while (it->top >= 0) {
        const struct bt_leaf *l = leaf_c(it->node[it->top]);
        if (it->pos[it->top] < l->hdr.n)
            return &l->slots[it->pos[it->top]++];
        if (!iter_next_leaf(it))
            it->top = -1;
    }
    return NULL;
}

/* ---- writer: memory ---- */

static size_t node_size(bool leaf)
{
    return leaf ? sizeof(struct bt_leaf) : sizeof(struct bt_inner);
}

static void node_free_fn(ck_epoch_entry_t *e)
{
    free(CONTAINER(e, struct bt_node, retire));
}

static ck_stack_t *pool_of(struct bt_writer *w, bool leaf, uint32_t **count)
{
    *count = leaf ? &w->pool_leaf_n : &w->pool_inner_n;
    return leaf ? &w->pool_leaf : &w->pool_inner;
}

static void pool_put(struct bt_writer *w, struct bt_node *n)
{
    uint32_t *count;
    ck_stack_t *pool = pool_of(w, n->leaf, &count);

    ck_stack_push_spnc(pool, &n->retire.stack_entry);
    (*count)++;
}

/* Tops the pool of one kind up to `want` spare nodes. */
static int pool_fill(struct bt_writer *w, bool leaf, uint32_t want)
{
    uint32_t *count;

    pool_of(w, leaf, &count);
    while (*count < want) {
        struct bt_node *n = malloc(node_size(leaf));
        if (n == NULL)
            return -1;
        n->leaf = leaf;
        pool_put(w, n);
    }
    return 0;
}

/* Reserves every node one insert or removal can need: a leaf copy and a
 * leaf split, a copy and a split per inner level, and a new root. */
static int pool_reserve(struct bt_writer *w)
{
    if (pool_fill(w, true, 2) != 0)
        return -1;
    return pool_fill(w, false, 2 * w->height + 1);
}

static struct bt_node *node_take(struct bt_writer *w, bool leaf)
{
    uint32_t *count;
    ck_stack_entry_t *se = ck_stack_pop_npsc(pool_of(w, leaf, &count));
    struct bt_node *n;

    assert(se != NULL); /* pool_reserve ran first */
    (*count)--;
    n = CONTAINER(se, struct bt_node, retire.stack_entry);
    n->txn = w->txn;
    n->leaf = leaf;
    n->n = 0;
    w->bytes += (int64_t)node_size(leaf);
    return n;
}

void bt_retire(struct bt_writer *w, ck_epoch_entry_t *e, ck_epoch_cb_t *fn)
{
    e->function = fn;
    ck_stack_push_spnc(&w->limbo, &e->stack_entry);
    w->limbo_n++;
}

static void node_retire(struct bt_writer *w, struct bt_node *n)
{
    w->bytes -= (int64_t)node_size(n->leaf);
    bt_retire(w, &n->retire, node_free_fn);
}

void bt_reclaim(struct bt_writer *w, ck_epoch_entry_t *e)
{
    if (e->function == node_free_fn) {
        struct bt_node *n = CONTAINER(e, struct bt_node, retire);
        uint32_t *count;
        pool_of(w, n->leaf, &count);
        if (*count < BT_POOL_MAX) {
            pool_put(w, n);
            return;
        }
    }
    e->function(e);
}

/* Returns n itself if private to this txn, else a private copy that
 * replaces it (the caller stores it where n was). */
static struct bt_node *node_own(struct bt_writer *w, struct bt_node *n)
{
    struct bt_node *c;

    if (n->txn == w->txn)
        return n;
    c = node_take(w, n->leaf);
    memcpy((char *)c + sizeof(c->retire), (char *)n + sizeof(n->retire),
           node_size(n->leaf) - sizeof(n->retire));
    c->txn = w->txn;
    node_retire(w, n);
    return c;
}

struct bt_key *bt_key_new(struct bt_writer *w, const uint8_t *key, size_t key_len)
{
    struct bt_key *k = malloc(sizeof(*k) + key_len);

    if (k == NULL)
        return NULL;
    k->len = (uint32_t)key_len;
    if (key_len > 0)
        memcpy(k->bytes, key, key_len);
    w->bytes += (int64_t)(sizeof(*k) + key_len);
    return k;
}

/* ---- writer: insert ---- */

/* Inserts slot s at index i of the full leaf l, splitting it; returns the
 * slot's new address. Left keeps h slots, right gets the rest. */
static struct bt_slot *leaf_split_insert(struct bt_writer *w, struct bt_leaf *l, unsigned i,
                                         const struct bt_slot *s, struct split *sp)
{
    const unsigned max = BT_LEAF_MAX, h = (BT_LEAF_MAX + 1) / 2;
    struct bt_leaf *r = leaf_of(node_take(w, true));
    struct bt_slot *res;

    if (i < h) {
        memcpy(r->slots, &l->slots[h - 1], (max - h + 1) * sizeof(*s));
        memmove(&l->slots[i + 1], &l->slots[i], (h - 1 - i) * sizeof(*s));
        l->slots[i] = *s;
        res = &l->slots[i];
    } else {
        unsigned j = i - h;
        memcpy(r->slots, &l->slots[h], j * sizeof(*s));
        r->slots[j] = *s;
        memcpy(&r->slots[j + 1], &l->slots[i], (max - i) * sizeof(*s));
        res = &r->slots[j];
    }
    l->hdr.n = (uint16_t)h;
    r->hdr.n = (uint16_t)(max + 1 - h);
    sp->right = &r->hdr;
    sp->sep = r->slots[0].key;
    return res;
}

static struct bt_slot *leaf_insert(struct bt_writer *w, struct bt_leaf *l, const uint8_t *key,
                                   size_t key_len, bool create, struct split *sp)
{
    unsigned i = leaf_lower(l, key, key_len);
    struct bt_slot s = {0};
    struct bt_key *k;

    if (i < l->hdr.n && key_cmp(l->slots[i].key, key, key_len) == 0)
        return &l->slots[i];
    if (!create || (k = bt_key_new(w, key, key_len)) == NULL)
        return NULL;
    bt_slot_init(w, &s, k); /* bt_slot_mut filled the spare */
    if (l->hdr.n == BT_LEAF_MAX)
        return leaf_split_insert(w, l, i, &s, sp);
    memmove(&l->slots[i + 1], &l->slots[i], (l->hdr.n - i) * sizeof(s));
    l->slots[i] = s;
    l->hdr.n++;
    return &l->slots[i];
}

/* Adds separator sep and child right after child i of the full inner node
 * in, splitting it: the left keeps h children, keys[h-1] moves up. */
static void inner_split_add(struct bt_writer *w, struct bt_inner *in, unsigned i,
                            const struct split *csp, struct split *sp)
{
    const unsigned max = BT_INNER_MAX, h = (BT_INNER_MAX + 1) / 2;
    const struct bt_key *tk[BT_INNER_MAX];
    struct bt_node *tc[BT_INNER_MAX + 1];
    struct bt_inner *r = inner_of(node_take(w, false));

    memcpy(tk, in->keys, i * sizeof(tk[0]));
    tk[i] = csp->sep;
    memcpy(&tk[i + 1], &in->keys[i], (max - 1 - i) * sizeof(tk[0]));
    memcpy(tc, in->child, (i + 1) * sizeof(tc[0]));
    tc[i + 1] = csp->right;
    memcpy(&tc[i + 2], &in->child[i + 1], (max - 1 - i) * sizeof(tc[0]));

    memcpy(in->keys, tk, (h - 1) * sizeof(tk[0]));
    memcpy(in->child, tc, h * sizeof(tc[0]));
    in->hdr.n = (uint16_t)h;
    memcpy(r->keys, &tk[h], (max - h) * sizeof(tk[0]));
    memcpy(r->child, &tc[h], (max + 1 - h) * sizeof(tc[0]));
    r->hdr.n = (uint16_t)(max + 1 - h);
    sp->right = &r->hdr;
    sp->sep = tk[h - 1];
}

static void inner_add(struct bt_writer *w, struct bt_inner *in, unsigned i, const struct split *csp,
                      struct split *sp)
{
    unsigned n = in->hdr.n;

    if (n == BT_INNER_MAX) {
        inner_split_add(w, in, i, csp, sp);
        return;
    }
    memmove(&in->keys[i + 1], &in->keys[i], (n - 1 - i) * sizeof(in->keys[0]));
    memmove(&in->child[i + 2], &in->child[i + 1], (n - 1 - i) * sizeof(in->child[0]));
    in->keys[i] = csp->sep;
    in->child[i + 1] = csp->right;
    in->hdr.n++;
}

/* Makes *pp private, then descends to key's leaf; a split of *pp is
 * reported in sp for the caller to link in. */
static struct bt_slot *insert(struct bt_writer *w, struct bt_node **pp, const uint8_t *key,
                              size_t key_len, bool create, struct split *sp)
{
    struct bt_node *n = node_own(w, *pp);
    struct split csp = {0};
    struct bt_inner *in;
    struct bt_slot *sl;
    unsigned i;

    *pp = n;
    sp->right = NULL;
    if (n->leaf)
        return leaf_insert(w, leaf_of(n), key, key_len, create, sp);
    in = inner_of(n);
    i = inner_child(in, key, key_len);
    sl = insert(w, &in->child[i], key, key_len, create, &csp);
    if (csp.right != NULL)
        inner_add(w, in, i, &csp, sp);
    return sl;
}

struct bt_slot *bt_slot_mut(struct bt_writer *w, const uint8_t *key, size_t key_len, bool create)
{
    struct split sp = {0};
    struct bt_slot *sl;
    struct bt_inner *root;

    if (pool_reserve(w) != 0 || (create && bt_spare_fill(w) != 0))
        return NULL;
    sl = insert(w, &w->root, key, key_len, create, &sp);
    if (sp.right == NULL)
        return sl;
    assert(w->height < BT_DEPTH_MAX);
    root = inner_of(node_take(w, false));
    root->child[0] = w->root;
    root->child[1] = sp.right;
    root->keys[0] = sp.sep;
    root->hdr.n = 2;
    w->root = &root->hdr;
    w->height++;
    return sl;
}

/* ---- writer: remove ---- */

/* Makes the path to key's leaf private: path[0] is the root, path[d] the
 * leaf, idx[l] the child taken at path[l]. Returns d. */
static int path_own(struct bt_writer *w, const uint8_t *key, size_t key_len, struct bt_node **path,
                    unsigned *idx)
{
    struct bt_node **pp = &w->root;
    int d = 0;

    for (;;) {
        struct bt_node *n = node_own(w, *pp);
        *pp = n;
        path[d] = n;
        if (n->leaf)
            return d;
        idx[d] = inner_child(inner_of(n), key, key_len);
        pp = &inner_of(n)->child[idx[d]];
        d++;
    }
}

/* Drops child i of in and the separator beside it (the one on its left,
 * or for child 0 the one on its right). */
static void inner_remove(struct bt_inner *in, unsigned i)
{
    unsigned n = in->hdr.n, k = i > 0 ? i - 1 : 0;

    if (n > 1)
        memmove(&in->keys[k], &in->keys[k + 1], (n - 2 - k) * sizeof(in->keys[0]));
    memmove(&in->child[i], &in->child[i + 1], (n - 1 - i) * sizeof(in->child[0]));
    in->hdr.n--;
}

static bool leaf_fits(const struct bt_inner *in, unsigned j, unsigned n)
{
    return j < in->hdr.n && in->child[j]->n + n <= BT_LEAF_MAX;
}

/* Moves the slots of a sibling of the private leaf l = child i of the
 * private in into l, if one fits; the sibling is retired. */
static void leaf_merge(struct bt_writer *w, struct bt_inner *in, unsigned i)
{
    struct bt_leaf *l = leaf_of(in->child[i]), *o;
    const size_t sz = sizeof(l->slots[0]);

    if (leaf_fits(in, i + 1, l->hdr.n)) {
        o = leaf_of(in->child[i + 1]);
        memcpy(&l->slots[l->hdr.n], o->slots, o->hdr.n * sz);
        inner_remove(in, i + 1);
    } else if (i > 0 && leaf_fits(in, i - 1, l->hdr.n)) {
        o = leaf_of(in->child[i - 1]);
        memmove(&l->slots[o->hdr.n], l->slots, l->hdr.n * sz);
        memcpy(l->slots, o->slots, o->hdr.n * sz);
        in->child[i - 1] = &l->hdr;
        inner_remove(in, i);
    } else {
        return;
    }
    l->hdr.n = (uint16_t)(l->hdr.n + o->hdr.n);
    node_retire(w, &o->hdr);
}

/* Replaces an inner root with one child by the child. (A removal takes
 * at most one child from a root that had two or more, so an inner root
 * never empties.) */
static void root_shrink(struct bt_writer *w)
{
    while (!w->root->leaf && w->root->n == 1) {
        struct bt_node *old = w->root;
        w->root = inner_of(old)->child[0];
        w->height--;
        node_retire(w, old);
    }
    assert(w->root->leaf || w->root->n >= 2);
}

/* After a slot left the leaf path[d]: drops emptied nodes bottom-up,
 * merges a small leaf into a sibling, shrinks the root. */
static void path_fix(struct bt_writer *w, struct bt_node **path, const unsigned *idx, int d)
{
    for (; d > 0; d--) {
        struct bt_inner *parent = inner_of(path[d - 1]);
        if (path[d]->n == 0) {
            inner_remove(parent, idx[d - 1]);
            node_retire(w, path[d]);
            continue;
        }
        if (path[d]->leaf && path[d]->n < BT_LEAF_LOW)
            leaf_merge(w, parent, idx[d - 1]);
        break;
    }
    root_shrink(w);
}

/* If a separator still aliases the removed key k, it sits on the way
 * down to k (in a private node) and must name k's successor, the
 * smallest key of its right child now. */
static void alias_move(struct bt_writer *w, const struct bt_key *k)
{
    struct bt_node *n = w->root;
    const struct bt_slot *next;
    struct bt_iter it;

    while (!n->leaf) {
        struct bt_inner *in = inner_of(n);
        unsigned i = inner_child(in, k->bytes, k->len);
        if (i > 0 && in->keys[i - 1] == k) {
            assert(n->txn == w->txn);
            bt_iter_seek(&it, w->root, k->bytes, k->len);
            next = bt_iter_next(&it);
            assert(next != NULL);
            in->keys[i - 1] = next->key;
            return;
        }
        n = in->child[i];
    }
}

int bt_slot_remove(struct bt_writer *w, const uint8_t *key, size_t key_len)
{
    struct bt_node *path[BT_DEPTH_MAX];
    unsigned idx[BT_DEPTH_MAX], i;
    const struct bt_key *k;
    struct bt_leaf *l;
    int d;

    if (pool_reserve(w) != 0)
        return -1;
    d = path_own(w, key, key_len, path, idx);
    l = leaf_of(path[d]);
    i = leaf_lower(l, key, key_len);
    assert(i < l->hdr.n && key_cmp(l->slots[i].key, key, key_len) == 0);
    k = l->slots[i].key;
    memmove(&l->slots[i], &l->slots[i + 1], (l->hdr.n - 1u - i) * sizeof(l->slots[0]));
    l->hdr.n--;
    path_fix(w, path, idx, d);
    alias_move(w, k);
    return 0;
}

/* ---- writer: life cycle ---- */

int bt_writer_init(struct bt_writer *w)
{
    memset(w, 0, sizeof(*w));
    ck_stack_init(&w->limbo);
    ck_stack_init(&w->pool_leaf);
    ck_stack_init(&w->pool_inner);
    w->height = 1;
    if (pool_fill(w, true, 1) != 0)
        return -1;
    w->root = node_take(w, true); /* txn 0: shared from the first txn on */
    return 0;
}

static void subtree_free(struct bt_node *n)
{
    if (n->leaf) {
        for (unsigned i = 0; i < n->n; i++)
            bt_slot_free(&leaf_of(n)->slots[i]);
    } else {
        for (unsigned i = 0; i < n->n; i++)
            subtree_free(inner_of(n)->child[i]);
    }
    free(n);
}

static void pool_drain(ck_stack_t *pool)
{
    ck_stack_entry_t *se;

    while ((se = ck_stack_pop_npsc(pool)) != NULL)
        free(CONTAINER(se, struct bt_node, retire.stack_entry));
}

void bt_writer_destroy(struct bt_writer *w)
{
    assert(CK_STACK_ISEMPTY(&w->limbo));
    if (w->root != NULL)
        subtree_free(w->root);
    pool_drain(&w->pool_leaf);
    pool_drain(&w->pool_inner);
    free(w->spare);
    memset(w, 0, sizeof(*w));
}

/* ---- writer: bulk load ---- */

static struct bt_node *node_new(struct bt_writer *w, bool leaf)
{
    struct bt_node *n = malloc(node_size(leaf));

    if (n == NULL)
        return NULL;
    n->txn = w->txn;
    n->leaf = leaf;
    n->n = 0;
    w->bytes += (int64_t)node_size(leaf);
    return n;
}

/* Appends child, whose smallest key is min, to the open inner node of
 * level l, first closing a full one into level l + 1. On failure every
 * node is still held by b (cur[] or a child of one). */
static int build_push(struct bt_writer *w, struct bt_build *b, int l, struct bt_node *child,
                      const struct bt_key *min)
{
    struct bt_inner *in;

    assert(l < BT_DEPTH_MAX);
    if (b->cur[l] != NULL && b->cur[l]->n == BT_INNER_MAX) {
        if (build_push(w, b, l + 1, b->cur[l], b->min[l]) != 0)
            return -1;
        b->cur[l] = NULL;
    }
    if (b->cur[l] == NULL) {
        if ((b->cur[l] = node_new(w, false)) == NULL)
            return -1;
        b->min[l] = min;
        b->top = l > b->top ? l : b->top;
    }
    in = inner_of(b->cur[l]);
    if (in->hdr.n > 0)
        in->keys[in->hdr.n - 1] = min;
    in->child[in->hdr.n++] = child;
    return 0;
}

int bt_build_add(struct bt_writer *w, struct bt_build *b, const struct bt_slot *sl)
{
    struct bt_leaf *l;

    if (b->cur[0] != NULL && b->cur[0]->n == BT_LEAF_MAX) {
        if (build_push(w, b, 1, b->cur[0], b->min[0]) != 0)
            return -1;
        b->cur[0] = NULL;
    }
    if (b->cur[0] == NULL) {
        if ((b->cur[0] = node_new(w, true)) == NULL)
            return -1;
        b->min[0] = sl->key;
    }
    l = leaf_of(b->cur[0]);
    l->slots[l->hdr.n++] = *sl;
    return 0;
}

int bt_build_finish(struct bt_writer *w, struct bt_build *b, struct bt_node **old)
{
    for (int l = 0; l < b->top; l++) { /* build_push may raise top */
        if (build_push(w, b, l + 1, b->cur[l], b->min[l]) != 0)
            return -1;
        b->cur[l] = NULL;
    }
    if (b->cur[b->top] == NULL && (b->cur[b->top] = node_new(w, true)) == NULL)
        return -1; /* nothing was added: the new tree is an empty leaf */
    *old = w->root;
    w->root = b->cur[b->top];
    w->height = (uint32_t)b->top + 1;
    memset(b, 0, sizeof(*b));
    return 0;
}

void bt_tree_retire(struct bt_writer *w, struct bt_node *n)
{
    if (n->leaf) {
        for (unsigned i = 0; i < n->n; i++)
            bt_slot_retire(w, &leaf_of(n)->slots[i]);
    } else {
        for (unsigned i = 0; i < n->n; i++)
            bt_tree_retire(w, inner_of(n)->child[i]);
    }
    node_retire(w, n);
}

void bt_build_abort(struct bt_writer *w, struct bt_build *b)
{
    (void)w;
    for (int l = 0; l <= b->top; l++)
        if (b->cur[l] != NULL)
            subtree_free(b->cur[l]);
    memset(b, 0, sizeof(*b));
}
