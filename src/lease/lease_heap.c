/*
 * lease_heap.c — binary min-heaps of leases, ordered by (key, ID), and
 * the chained hash tables the table keeps its leases and keys in.
 *
 * A heap holds each lease at most once; the lease records its position
 * (hpos[which]) so an update or removal is O(log n) without a search.
 * Ties on the key are broken by ID, so the order (and what
 * lease_expired() reports) is a function of the keys alone.
 *
 * Invariants: for every i > 0, a[(i-1)/2] orders before a[i];
 * a[i]->hpos[which] == i; leases not in the heap have LEASE_NOPOS.
 * Capacity is reserved ahead (lheap_reserve at grant), so nothing here
 * allocates on the leader's timer path.
 *
 * Thread: the core's only.
 */
#include "lease_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---- heaps ---- */

static bool before(const struct lease_heap *h, const struct lease *a, const struct lease *b)
{
    int64_t ka = a->hkey[h->which], kb = b->hkey[h->which];

    return ka < kb || (ka == kb && a->id < b->id);
}

static void place(struct lease_heap *h, uint32_t i, struct lease *l)
{
    h->a[i] = l;
    l->hpos[h->which] = i;
}

static void sift_up(struct lease_heap *h, uint32_t i)
{
    struct lease *l = h->a[i];

    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!before(h, l, h->a[p]))
            break;
        place(h, i, h->a[p]);
        i = p;
    }
    place(h, i, l);
}

static void sift_down(struct lease_heap *h, uint32_t i)
{
    struct lease *l = h->a[i];

    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(h, h->a[c + 1], h->a[c]))
            c++;
        if (!before(h, h->a[c], l))
            break;
        place(h, i, h->a[c]);
        i = c;
    }
    place(h, i, l);
}

int lheap_reserve(struct lease_heap *h, uint32_t n)
{
    struct lease **a;
    uint32_t cap;

    if (n <= h->cap)
        return 0;
    cap = h->cap < 64 ? 64 : h->cap;
    while (cap < n)
        cap *= 2;
    a = realloc(h->a, (size_t)cap * sizeof(*a));
    if (a == NULL)
        return -1;
    h->a = a;
    h->cap = cap;
    return 0;
}

void lheap_push(struct lease_heap *h, struct lease *l, int64_t key)
{
    assert(l->hpos[h->which] == LEASE_NOPOS);
    assert(h->n < h->cap);
    l->hkey[h->which] = key;
    h->a[h->n] = l;
    sift_up(h, h->n++);
}

void lheap_update(struct lease_heap *h, struct lease *l, int64_t key)
{
    uint32_t i = l->hpos[h->which];

    assert(i < h->n && h->a[i] == l);
    l->hkey[h->which] = key;
    sift_up(h, i);
    sift_down(h, l->hpos[h->which]);
}

void lheap_remove(struct lease_heap *h, struct lease *l)
{
    uint32_t i = l->hpos[h->which];
    struct lease *last;

    assert(i < h->n && h->a[i] == l);
    l->hpos[h->which] = LEASE_NOPOS;
    last = h->a[--h->n];
    if (i == h->n)
        return;
    place(h, i, last);
    sift_up(h, i);
    sift_down(h, last->hpos[h->which]);
}

void lheap_clear(struct lease_heap *h)
{
    for (uint32_t i = 0; i < h->n; i++)
        h->a[i]->hpos[h->which] = LEASE_NOPOS;
    h->n = 0;
}

/* ---- hash tables ---- */

#define LHT_MIN 64

int lht_init(struct lht *h)
{
    h->b = calloc(LHT_MIN, sizeof(*h->b));
    if (h->b == NULL)
        return -1;
    h->mask = LHT_MIN - 1;
    h->n = 0;
    return 0;
}

void lht_fini(struct lht *h)
{
    free(h->b);
    h->b = NULL;
}

/* Doubles the buckets (load factor 1). All at once: at the bounds this is
 * a few tens of ms, once per doubling. */
static void grow(struct lht *h)
{
    size_t nb = 2 * (h->mask + 1);
    struct lht_node **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return;
    for (size_t i = 0; i <= h->mask; i++) {
        struct lht_node *e = h->b[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(h->b);
    h->b = b;
    h->mask = nb - 1;
}

void lht_insert(struct lht *h, struct lht_node *node)
{
    struct lht_node **head;

    if (h->n > h->mask)
        grow(h);
    head = &h->b[node->hash & h->mask];
    node->next = *head;
    *head = node;
    h->n++;
}

void lht_remove(struct lht *h, struct lht_node *node)
{
    struct lht_node **pp = &h->b[node->hash & h->mask];

    while (*pp != node) {
        assert(*pp != NULL);
        pp = &(*pp)->next;
    }
    *pp = node->next;
    h->n--;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t lease_hash_id(int64_t id)
{
    return mix((uint64_t)id);
}

/* Keys come from clients, so a fixed hash can be attacked with colliding
 * keys (long chains, not wrong answers). */
uint64_t lease_hash_key(const uint8_t *key, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len;

    for (; len >= 8; key += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, key, 8);
        h = mix(h ^ w);
    }
    if (len > 0) {
        uint64_t w = 0;
        memcpy(&w, key, len);
        h = mix(h ^ w ^ 0xff);
    }
    return mix(h);
}
