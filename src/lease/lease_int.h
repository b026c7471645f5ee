/*
 * lease_int.h — the lease table's insides, shared by lease.c (table,
 * replicated and leader operations), lease_heap.c (the deadline and
 * checkpoint heaps) and lease_codec.c (snapshot encoding). Internal to
 * the lease module.
 *
 * Layout:
 * - t->leases: chained hash of struct lease by ID.
 * - t->keys: chained hash of struct lease_kent by key bytes; every
 *   attached key has exactly one kent, which is also on its owner
 *   lease's doubly linked key list. The key bytes are stored once.
 * - t->heap[LEASE_H_EXP]: leases by (next expiry check, ID); holds every
 *   lease while leader, none otherwise. A lease granted while leader sits
 *   at the top with key LEASE_PENDING until settle() gives it a deadline.
 * - t->heap[LEASE_H_CKPT]: leases by (next checkpoint time, ID); the
 *   leases scheduled for a checkpoint, leader only.
 *
 * Thread: the core's only.
 */
#ifndef CETCD_LEASE_INT_H
#define CETCD_LEASE_INT_H

#include "lease.h"

#include <stdint.h>

#define LEASE_PENDING INT64_MIN  /* heap key of a lease awaiting its deadline */
#define LEASE_NOPOS   UINT32_MAX /* heap position of a lease not in that heap */

/* ---- hash table: intrusive chains, power-of-two buckets ---- */

struct lht_node {
    struct lht_node *next;
    uint64_t hash;
};

struct lht {
    struct lht_node **b;
    size_t mask; /* buckets - 1 */
    size_t n;
};

int lht_init(struct lht *h);
void lht_fini(struct lht *h);
/* Inserts (never fails: if the table cannot grow, chains get longer). */
void lht_insert(struct lht *h, struct lht_node *node);
void lht_remove(struct lht *h, struct lht_node *node);
static inline struct lht_node *lht_chain(const struct lht *h, uint64_t hash)
{
    return h->b[hash & h->mask];
}

uint64_t lease_hash_id(int64_t id);
uint64_t lease_hash_key(const uint8_t *key, size_t len);

/* ---- the table ---- */

struct lease;

/* An attached key. */
struct lease_kent {
    struct lht_node hn;             /* in t->keys */
    struct lease_kent *prev, *next; /* on owner's key list */
    struct lease *owner;
    uint32_t len;
    uint8_t key[];
};

enum { LEASE_H_EXP = 0, LEASE_H_CKPT = 1, LEASE_H_N = 2 };

struct lease {
    struct lht_node hn; /* in t->leases */
    int64_t id;
    int64_t ttl_s;
    int64_t checkpoint_ms; /* 0 = none */
    struct lease_kent *keys;
    size_t n_keys;
    /* Leader state: */
    int64_t deadline_ms;
    int64_t hkey[LEASE_H_N];
    uint32_t hpos[LEASE_H_N];
};

struct lease_heap {
    struct lease **a;
    uint32_t n, cap;
    int which; /* LEASE_H_* : which hkey/hpos of a lease it uses */
};

struct lease_table {
    struct lease_config cfg;
    struct lht leases;
    struct lht keys;
    size_t n_keys; /* attached keys, all leases */
    bool leader;
    struct lease_heap heap[LEASE_H_N];
};

struct lease *lease_find(const struct lease_table *t, int64_t id);
struct lease_kent *lease_kfind(const struct lease_table *t, const uint8_t *key, size_t len);
/* Bytewise key order (a prefix first); for qsort over struct lease_kent *. */
int lease_kent_cmp(const void *a, const void *b);
/* The lease's keys, sorted, in a malloc'd array; NULL if out of memory
 * (or no keys). */
struct lease_kent **lease_sorted_keys(const struct lease *l);

/* ---- heaps (lease_heap.c) ---- */

/* Makes room for `n` leases in each heap, so pushes never fail. */
int lheap_reserve(struct lease_heap *h, uint32_t n);
void lheap_push(struct lease_heap *h, struct lease *l, int64_t key);
/* Changes the key of a lease in the heap. */
void lheap_update(struct lease_heap *h, struct lease *l, int64_t key);
void lheap_remove(struct lease_heap *h, struct lease *l);
/* Empties the heap (positions reset; capacity kept). */
void lheap_clear(struct lease_heap *h);
static inline struct lease *lheap_top(const struct lease_heap *h)
{
    return h->n > 0 ? h->a[0] : NULL;
}
static inline bool lheap_has(const struct lease_heap *h, const struct lease *l)
{
    return l->hpos[h->which] != LEASE_NOPOS;
}

#endif
