/*
 * lease.c — the lease table: replicated operations (grant, revoke,
 * attach, detach, checkpoint), queries, and the leader's deadlines.
 *
 * Replicated operations touch the leader state only to keep it
 * consistent (a revoked lease leaves the heaps; a lease granted while
 * leader enters the deadline heap as LEASE_PENDING) and never read a
 * clock; every leader-side call first runs settle(now), which gives
 * pending leases their deadline and checkpoint schedule.
 *
 * Invariants:
 * - t->leases.n <= LEASE_MAX, t->n_keys <= LEASE_KEYS_MAX, and n_keys is
 *   the sum of every lease's n_keys and t->keys.n.
 * - Each heap's capacity >= t->leases.n (reserved at grant).
 * - Leader: every lease is in the deadline heap; its key is LEASE_PENDING
 *   or >= its deadline (later only after lease_expired() reported it).
 *   Not leader: both heaps are empty.
 * - 1 <= ttl_s <= LEASE_TTL_MAX_S; 0 <= checkpoint_ms <= ttl_s * 1000.
 *
 * Thread: the core's only.
 */
#include "lease_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define ERR_MSG(name, value, msg)                                                                  \
    case value:                                                                                    \
        return msg;

const char *lease_strerror(int err)
{
    switch (err) {
        LEASE_ERRORS(ERR_MSG)
    }
    return "unknown";
}

void lease_keys_free(struct lease_keys *k)
{
    struct lease_kent **own = k->own_;

    if (own != NULL)
        for (size_t i = 0; i < k->n; i++)
            free(own[i]);
    free(own);
    free(k->v);
    *k = (struct lease_keys){0};
}

struct lease_table *lease_create(const struct lease_config *cfg)
{
    struct lease_table *t;

    assert(cfg->min_ttl_s >= 1 && cfg->min_ttl_s <= LEASE_TTL_MAX_S);
    assert(cfg->checkpoint_interval_ms >= 0 && cfg->expired_retry_ms >= 1);
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->cfg = *cfg;
    t->heap[LEASE_H_EXP].which = LEASE_H_EXP;
    t->heap[LEASE_H_CKPT].which = LEASE_H_CKPT;
    if (lht_init(&t->leases) != 0)
        goto err_leases;
    if (lht_init(&t->keys) != 0)
        goto err_keys;
    return t;

err_keys:
    lht_fini(&t->leases);
err_leases:
    free(t);
    return NULL;
}

static void free_lease(struct lease *l)
{
    struct lease_kent *e, *next;

    for (e = l->keys; e != NULL; e = next) {
        next = e->next;
        free(e);
    }
    free(l);
}

void lease_destroy(struct lease_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i <= t->leases.mask; i++) {
        struct lht_node *n = t->leases.b[i], *next;
        for (; n != NULL; n = next) {
            next = n->next;
            free_lease((struct lease *)n);
        }
    }
    lht_fini(&t->leases);
    lht_fini(&t->keys);
    for (int i = 0; i < LEASE_H_N; i++)
        free(t->heap[i].a);
    free(t);
}

/* ---- lookups ---- */

struct lease *lease_find(const struct lease_table *t, int64_t id)
{
    uint64_t h = lease_hash_id(id);

    for (struct lht_node *n = lht_chain(&t->leases, h); n != NULL; n = n->next)
        if (n->hash == h && ((struct lease *)n)->id == id)
            return (struct lease *)n;
    return NULL;
}

struct lease_kent *lease_kfind(const struct lease_table *t, const uint8_t *key, size_t len)
{
    uint64_t h = lease_hash_key(key, len);

    for (struct lht_node *n = lht_chain(&t->keys, h); n != NULL; n = n->next) {
        struct lease_kent *e = (struct lease_kent *)n;
        if (n->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

int lease_kent_cmp(const void *a, const void *b)
{
    const struct lease_kent *x = *(struct lease_kent *const *)a;
    const struct lease_kent *y = *(struct lease_kent *const *)b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);

    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

struct lease_kent **lease_sorted_keys(const struct lease *l)
{
    struct lease_kent **v;
    size_t i = 0;

    if (l->n_keys == 0)
        return NULL;
    v = malloc(l->n_keys * sizeof(*v));
    if (v == NULL)
        return NULL;
    for (struct lease_kent *e = l->keys; e != NULL; e = e->next)
        v[i++] = e;
    assert(i == l->n_keys);
    qsort(v, i, sizeof(*v), lease_kent_cmp);
    return v;
}

/* Fills k->v from sorted kents (the caller sets k->own_ if it owns them). */
static int keys_view(struct lease_keys *k, struct lease_kent **v, size_t n)
{
    *k = (struct lease_keys){0};
    if (n == 0)
        return 0;
    k->v = malloc(n * sizeof(*k->v));
    if (k->v == NULL)
        return LEASE_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        k->v[i] = (struct lease_key){.key = v[i]->key, .len = v[i]->len};
    k->n = n;
    return 0;
}

int lease_get(const struct lease_table *t, int64_t id, struct lease_info *info)
{
    const struct lease *l = lease_find(t, id);

    if (l == NULL)
        return LEASE_ERR_NOT_FOUND;
    if (info != NULL)
        *info = (struct lease_info){
            .ttl_s = l->ttl_s, .checkpoint_ms = l->checkpoint_ms, .n_keys = l->n_keys};
    return 0;
}

int64_t lease_of(const struct lease_table *t, const uint8_t *key, size_t len)
{
    const struct lease_kent *e = lease_kfind(t, key, len);

    return e != NULL ? e->owner->id : 0;
}

size_t lease_count(const struct lease_table *t)
{
    return t->leases.n;
}

static int id_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

int lease_list(const struct lease_table *t, int64_t **ids, size_t *n)
{
    size_t k = 0;

    *ids = NULL;
    *n = 0;
    if (t->leases.n == 0)
        return 0;
    *ids = malloc(t->leases.n * sizeof(**ids));
    if (*ids == NULL)
        return LEASE_ERR_NOMEM;
    for (size_t i = 0; i <= t->leases.mask; i++)
        for (struct lht_node *e = t->leases.b[i]; e != NULL; e = e->next)
            (*ids)[k++] = ((struct lease *)e)->id;
    assert(k == t->leases.n);
    qsort(*ids, k, sizeof(**ids), id_cmp);
    *n = k;
    return 0;
}

/* ---- replicated operations ---- */

int lease_grant(struct lease_table *t, int64_t id, int64_t ttl_s, int64_t *granted_ttl_s)
{
    struct lease *l;

    /* lessor.go Grant: ID 0 is "not found", then the TTL bound, then
     * uniqueness, then the minimum. */
    if (id == 0)
        return LEASE_ERR_NOT_FOUND;
    if (ttl_s > LEASE_TTL_MAX_S)
        return LEASE_ERR_TTL_TOO_LARGE;
    if (lease_find(t, id) != NULL)
        return LEASE_ERR_EXISTS;
    if (ttl_s < t->cfg.min_ttl_s)
        ttl_s = t->cfg.min_ttl_s;
    if (t->leases.n == LEASE_MAX)
        return LEASE_ERR_FULL;
    for (int i = 0; i < LEASE_H_N; i++)
        if (lheap_reserve(&t->heap[i], (uint32_t)t->leases.n + 1) != 0)
            return LEASE_ERR_NOMEM;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return LEASE_ERR_NOMEM;
    l->id = id;
    l->ttl_s = ttl_s;
    l->hpos[LEASE_H_EXP] = l->hpos[LEASE_H_CKPT] = LEASE_NOPOS;
    l->hn.hash = lease_hash_id(id);
    lht_insert(&t->leases, &l->hn);
    if (t->leader)
        lheap_push(&t->heap[LEASE_H_EXP], l, LEASE_PENDING);
    if (granted_ttl_s != NULL)
        *granted_ttl_s = ttl_s;
    return 0;
}

static void unlink_key(struct lease_kent *e)
{
    struct lease *o = e->owner;

    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        o->keys = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    o->n_keys--;
    e->owner = NULL;
    e->prev = e->next = NULL;
}

static void link_key(struct lease *l, struct lease_kent *e)
{
    e->owner = l;
    e->prev = NULL;
    e->next = l->keys;
    if (l->keys != NULL)
        l->keys->prev = e;
    l->keys = e;
    l->n_keys++;
}

int lease_revoke(struct lease_table *t, int64_t id, struct lease_keys *keys)
{
    struct lease *l = lease_find(t, id);
    struct lease_kent **v = NULL;
    size_t n;

    *keys = (struct lease_keys){0};
    if (l == NULL)
        return LEASE_ERR_NOT_FOUND;
    n = l->n_keys;
    if (n > 0) {
        v = lease_sorted_keys(l);
        if (v == NULL || keys_view(keys, v, n) != 0) {
            free(v);
            return LEASE_ERR_NOMEM;
        }
    }
    /* Nothing can fail from here on. The kents move to *keys. */
    keys->own_ = v;
    for (size_t i = 0; i < n; i++) {
        lht_remove(&t->keys, &v[i]->hn);
        unlink_key(v[i]);
    }
    t->n_keys -= n;
    for (int i = 0; i < LEASE_H_N; i++)
        if (lheap_has(&t->heap[i], l))
            lheap_remove(&t->heap[i], l);
    lht_remove(&t->leases, &l->hn);
    free_lease(l);
    return 0;
}

int lease_attach(struct lease_table *t, const uint8_t *key, size_t len, int64_t id)
{
    struct lease_kent *e;
    struct lease *l;

    if (len == 0 || len > LEASE_KEY_BYTES_MAX)
        return LEASE_ERR_INVALID;
    if (id == 0) {
        lease_detach(t, key, len);
        return 0;
    }
    l = lease_find(t, id);
    if (l == NULL)
        return LEASE_ERR_NOT_FOUND;
    e = lease_kfind(t, key, len);
    if (e != NULL) {
        if (e->owner != l) {
            unlink_key(e);
            link_key(l, e);
        }
        return 0;
    }
    if (t->n_keys == LEASE_KEYS_MAX)
        return LEASE_ERR_FULL;
    e = malloc(sizeof(*e) + len);
    if (e == NULL)
        return LEASE_ERR_NOMEM;
    memcpy(e->key, key, len);
    e->len = (uint32_t)len;
    e->hn.hash = lease_hash_key(key, len);
    lht_insert(&t->keys, &e->hn);
    link_key(l, e);
    t->n_keys++;
    assert(t->n_keys == t->keys.n);
    return 0;
}

int lease_detach(struct lease_table *t, const uint8_t *key, size_t len)
{
    struct lease_kent *e = lease_kfind(t, key, len);

    if (e == NULL)
        return LEASE_ERR_NOT_FOUND;
    lht_remove(&t->keys, &e->hn);
    unlink_key(e);
    free(e);
    t->n_keys--;
    return 0;
}

int lease_checkpoint(struct lease_table *t, int64_t id, int64_t remaining_ms)
{
    struct lease *l = lease_find(t, id);

    if (l == NULL)
        return LEASE_ERR_NOT_FOUND;
    if (remaining_ms < 0)
        remaining_ms = 0;
    if (remaining_ms > l->ttl_s * 1000)
        remaining_ms = l->ttl_s * 1000;
    l->checkpoint_ms = remaining_ms;
    return 0;
}

/* ---- leader side ---- */

bool lease_is_leader(const struct lease_table *t)
{
    return t->leader;
}

/* What a new deadline starts from: the checkpoint, else the full TTL
 * (lessor.go RemainingTTL). */
static int64_t start_ms(const struct lease *l)
{
    return l->checkpoint_ms > 0 ? l->checkpoint_ms : l->ttl_s * 1000;
}

static void schedule_checkpoint(struct lease_table *t, struct lease *l, int64_t now_ms,
                                int64_t remaining_ms)
{
    int64_t iv = t->cfg.checkpoint_interval_ms;

    if (iv == 0 || remaining_ms <= iv || lheap_has(&t->heap[LEASE_H_CKPT], l))
        return;
    lheap_push(&t->heap[LEASE_H_CKPT], l, now_ms + iv);
}

/* Gives leases granted since the last leader-side call their deadline. */
static void settle(struct lease_table *t, int64_t now_ms)
{
    struct lease_heap *h = &t->heap[LEASE_H_EXP];
    struct lease *l;

    while ((l = lheap_top(h)) != NULL && l->hkey[LEASE_H_EXP] == LEASE_PENDING) {
        l->deadline_ms = now_ms + start_ms(l);
        lheap_update(h, l, l->deadline_ms);
        schedule_checkpoint(t, l, now_ms, start_ms(l));
    }
}

void lease_promote(struct lease_table *t, int64_t now_ms, int64_t extend_ms)
{
    assert(!t->leader);
    assert(t->heap[LEASE_H_EXP].n == 0 && t->heap[LEASE_H_CKPT].n == 0);
    assert(extend_ms >= 0);
    t->leader = true;
    for (size_t i = 0; i <= t->leases.mask; i++) {
        for (struct lht_node *n = t->leases.b[i]; n != NULL; n = n->next) {
            struct lease *l = (struct lease *)n;
            l->deadline_ms = now_ms + extend_ms + start_ms(l);
            lheap_push(&t->heap[LEASE_H_EXP], l, l->deadline_ms);
            schedule_checkpoint(t, l, now_ms, start_ms(l));
        }
    }
}

void lease_demote(struct lease_table *t)
{
    if (!t->leader)
        return;
    t->leader = false;
    for (int i = 0; i < LEASE_H_N; i++)
        lheap_clear(&t->heap[i]);
}

/* The leader's view of lease id after settling: 0, or an error. */
static int leader_find(struct lease_table *t, int64_t id, int64_t now_ms, struct lease **out)
{
    if (!t->leader)
        return LEASE_ERR_NOT_PRIMARY;
    settle(t, now_ms);
    *out = lease_find(t, id);
    return *out != NULL ? 0 : LEASE_ERR_NOT_FOUND;
}

int lease_renew(struct lease_table *t, int64_t id, int64_t now_ms, int64_t *ttl_s,
                bool *clear_checkpoint)
{
    struct lease *l;
    int rv = leader_find(t, id, now_ms, &l);

    *ttl_s = 0;
    if (clear_checkpoint != NULL)
        *clear_checkpoint = false;
    if (rv != 0)
        return rv;
    if (l->deadline_ms <= now_ms)
        return LEASE_ERR_EXPIRED;
    l->deadline_ms = now_ms + l->ttl_s * 1000;
    lheap_update(&t->heap[LEASE_H_EXP], l, l->deadline_ms);
    schedule_checkpoint(t, l, now_ms, l->ttl_s * 1000);
    if (clear_checkpoint != NULL)
        *clear_checkpoint = l->checkpoint_ms != 0;
    *ttl_s = l->ttl_s;
    return 0;
}

int lease_remaining(struct lease_table *t, int64_t id, int64_t now_ms, int64_t *remaining_ms)
{
    struct lease *l;
    int rv = leader_find(t, id, now_ms, &l);

    if (rv != 0)
        return rv;
    *remaining_ms = l->deadline_ms - now_ms;
    return 0;
}

int lease_time_to_live(struct lease_table *t, int64_t id, int64_t now_ms, bool with_keys,
                       struct lease_ttl *out)
{
    struct lease_kent **v;
    struct lease *l;
    int rv = leader_find(t, id, now_ms, &l);

    *out = (struct lease_ttl){.ttl_s = -1};
    if (rv != 0)
        return rv;
    out->granted_ttl_s = l->ttl_s;
    /* int64(Duration.Seconds()) truncates toward zero. */
    out->ttl_s = l->deadline_ms > now_ms ? (l->deadline_ms - now_ms) / 1000 : 0;
    if (!with_keys || l->n_keys == 0)
        return 0;
    v = lease_sorted_keys(l);
    if (v == NULL)
        return LEASE_ERR_NOMEM;
    rv = keys_view(&out->keys, v, l->n_keys);
    free(v);
    return rv;
}

size_t lease_expired(struct lease_table *t, int64_t now_ms, int64_t *ids, size_t max)
{
    struct lease_heap *h = &t->heap[LEASE_H_EXP];
    struct lease *l;
    size_t n = 0;

    if (!t->leader)
        return 0;
    settle(t, now_ms);
    while (n < max && (l = lheap_top(h)) != NULL && l->hkey[LEASE_H_EXP] <= now_ms) {
        assert(l->deadline_ms <= now_ms);
        ids[n++] = l->id;
        /* lessor.go expireExists: look again after the retry interval. */
        lheap_update(h, l, now_ms + t->cfg.expired_retry_ms);
    }
    return n;
}

size_t lease_checkpoints_due(struct lease_table *t, int64_t now_ms, struct lease_checkpoint *out,
                             size_t max)
{
    struct lease_heap *h = &t->heap[LEASE_H_CKPT];
    int64_t iv = t->cfg.checkpoint_interval_ms;
    struct lease *l;
    size_t n = 0;

    if (!t->leader || iv == 0)
        return 0;
    settle(t, now_ms);
    while (n < max && (l = lheap_top(h)) != NULL && l->hkey[LEASE_H_CKPT] <= now_ms) {
        int64_t rem = l->deadline_ms - now_ms;
        lheap_remove(h, l);
        if (rem <= 0)
            continue; /* expiry's business now */
        /* lessor.go findDueScheduledCheckpoints: nothing to save while
         * ceil(remaining seconds) is still the full TTL. */
        if ((rem + 999) / 1000 < l->ttl_s)
            out[n++] = (struct lease_checkpoint){.id = l->id, .remaining_ms = rem};
        schedule_checkpoint(t, l, now_ms, rem);
    }
    return n;
}
