/*
 * btree.c — the copy-on-write B+ tree that orders the MVCC index by key.
 *
 * Owns: tree nodes (leaves and inner nodes), key blobs, version arrays
 * and value bytes of the live tree, plus the writer's spare-node pools.
 *
 * Threads: the writer thread alone calls the bt_writer / bt_slot_* /
 * bt_retire / bt_reclaim functions; any thread may call bt_find and the
 * iterator on a root it obtained from a published state, inside an epoch
 * section. Readers only ever read.
 *
 * Invariants:
 * - A node is private to the writer iff node->txn == w->txn; the writer
 *   writes only private nodes. Writing a shared node means copying it
 *   (node_own), storing the copy in its (already private) parent and
 *   retiring the original; so an insert copies the root-to-leaf path once
 *   per transaction and then works in place.
 * - Keys in a leaf are strictly increasing (bt_key_cmp order: bytes, then
 *   shorter first). Inner node: n children, n-1 separators; child i holds
 *   keys k with keys[i-1] <= k < keys[i]. Separators alias leaf key blobs.
 * - Every leaf except an empty root holds >= 1 slot; splits keep nodes at
 *   least half full. Height <= BT_DEPTH_MAX.
 * - The writer never writes a version slot below any published count n,
 *   so a reader's v[0..n) never changes under it.
 * - Before any change an insert reserves all nodes it might need from the
 *   pools, so a failed allocation leaves the tree unchanged and valid.
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

static size_t varr_size(uint32_t cap)
{
    return sizeof(struct bt_varr) + (size_t)cap * sizeof(struct bt_ver);
}

static void node_free_fn(ck_epoch_entry_t *e)
{
    free(CONTAINER(e, struct bt_node, retire));
}

static void varr_free_fn(ck_epoch_entry_t *e)
{
    free(CONTAINER(e, struct bt_varr, retire));
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

/* Reserves every node one insert can need: a leaf copy and a leaf split,
 * a copy and a split per inner level, and a new root. */
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

static struct bt_key *key_new(struct bt_writer *w, const uint8_t *key, size_t key_len)
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

    if (i < l->hdr.n && key_cmp(l->slots[i].key, key, key_len) == 0)
        return &l->slots[i];
    if (!create)
        return NULL;
    s.key = key_new(w, key, key_len);
    if (s.key == NULL)
        return NULL;
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

    if (pool_reserve(w) != 0)
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

/* ---- writer: versions ---- */

int bt_slot_reserve(struct bt_writer *w, struct bt_slot *sl)
{
    uint32_t cap = sl->vers ? sl->vers->cap : 0;
    struct bt_varr *a;

    if (sl->n < cap)
        return 0;
    if (cap > UINT32_MAX / 2)
        return -1;
    cap = cap ? cap * 2 : 1;
    a = malloc(varr_size(cap));
    if (a == NULL)
        return -1;
    a->cap = cap;
    if (sl->n > 0)
        memcpy(a->v, sl->vers->v, sl->n * sizeof(a->v[0]));
    if (sl->vers != NULL) {
        w->bytes -= (int64_t)varr_size(sl->vers->cap);
        bt_retire(w, &sl->vers->retire, varr_free_fn);
    }
    sl->vers = a;
    w->bytes += (int64_t)varr_size(cap);
    return 0;
}

void bt_slot_push(struct bt_writer *w, struct bt_slot *sl, const struct bt_ver *v)
{
    assert(sl->vers != NULL && sl->n < sl->vers->cap);
    sl->vers->v[sl->n] = *v;
    sl->n++;
    w->bytes += v->value_len;
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

static void slot_free(const struct bt_slot *sl)
{
    for (uint32_t i = 0; i < sl->n; i++)
        free((void *)sl->vers->v[i].value);
    free(sl->vers);
    free((void *)sl->key);
}

static void subtree_free(struct bt_node *n)
{
    if (n->leaf) {
        for (unsigned i = 0; i < n->n; i++)
            slot_free(&leaf_of(n)->slots[i]);
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
    memset(w, 0, sizeof(*w));
}
