/*
 * mvcc.c — revisions, reads and write transactions over the B+ tree.
 *
 * Owns: the published state {root, revision, compact revision}, the epoch
 * domain (ck_epoch) and its records, reclamation (the ready list, drained
 * a batch per commit and by mvcc_reclaim), the writer's transaction
 * bookkeeping, and the Range logic (etcd's applyRange: fetch, filter,
 * sort, truncate), for readers on a pinned state and for the writer
 * inside a transaction.
 *
 * Threads: the writer thread alone runs mvcc_txn_* (and create/destroy,
 * and compact.c / snap.c's writer calls); it builds the next tree
 * privately (btree.c, vers.c) and publishes a new state with one release
 * store in mvcc_commit. Readers pin a state with an acquire load inside
 * their own epoch section (mvcc_read_begin) and never write shared
 * memory. The *_pub fields are the only other shared words.
 *
 * Invariants:
 * - s->state is the last published state; its rev == s->rev and its
 *   compact_rev == s->compact_rev whenever no transaction is open. A
 *   published state, and every node, chunk and value reachable from it,
 *   is never written again (a head chunk's unpublished tail aside).
 * - Memory replaced in a transaction (or a compaction step) is handed to
 *   ck_epoch_call only after the state that no longer reaches it is
 *   published; it is freed (or recycled) only after ck_epoch_poll_deferred
 *   says no section can still see it, in batches bounded per commit (or
 *   per mvcc_reclaim call). The writer never waits.
 * - Every publication, a restore's included, goes through mvcc_commit:
 *   one release store of the state pointer switches root, revision and
 *   compact revision together. A restore may move the revisions down;
 *   nothing here assumes they only grow.
 * - Revision: +1 per transaction that wrote a version. A version is a
 *   tombstone iff version == 0; a put after a tombstone (or on a new key)
 *   starts a generation: create_revision = its revision, version = 1.
 */
#include "mvcc_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_THREAD__)
#define MVCC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MVCC_TSAN 1
#endif
#endif

/* ck_epoch orders a reader's section before the writer's free with fences
 * in inline assembly that ThreadSanitizer cannot see; these annotations
 * state exactly that edge (section end -> reclamation) and nothing more. */
#ifdef MVCC_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define TSAN_ACQUIRE(p) __tsan_acquire(p)
#define TSAN_RELEASE(p) __tsan_release(p)
#else
#define TSAN_ACQUIRE(p) ((void)(p))
#define TSAN_RELEASE(p) ((void)(p))
#endif

#define RECLAIM_BATCH_MIN 64u /* objects freed per commit beyond twice those retired */

/* The keys a request covers: etcd's key / range_end rules. */
enum span_kind { SPAN_ONE, SPAN_FROM, SPAN_TO };

struct span {
    enum span_kind kind;
    const struct bt_node *root;
    const uint8_t *key, *end;
    size_t key_len, end_len;
    struct bt_iter it;
    bool one_done;
};

/* ---- spans ---- */

static void span_init(struct span *sp, const struct bt_node *root, const uint8_t *key,
                      size_t key_len, const uint8_t *end, size_t end_len)
{
    memset(sp, 0, sizeof(*sp));
    sp->key = key;
    sp->key_len = key_len;
    sp->end = end;
    sp->end_len = end_len;
    if (end_len == 0)
        sp->kind = SPAN_ONE;
    else if (end_len == 1 && end[0] == 0)
        sp->kind = SPAN_FROM; /* etcd: range_end "\0" = every key >= key */
    else
        sp->kind = SPAN_TO;
    sp->root = root;
    if (sp->kind != SPAN_ONE)
        bt_iter_seek(&sp->it, root, key, key_len);
}

static const struct bt_slot *span_next(struct span *sp)
{
    const struct bt_slot *sl;

    if (sp->kind == SPAN_ONE) {
        if (sp->one_done)
            return NULL;
        sp->one_done = true;
        return bt_find(sp->root, sp->key, sp->key_len);
    }
    sl = bt_iter_next(&sp->it);
    if (sl == NULL || sp->kind == SPAN_FROM)
        return sl;
    if (bt_key_cmp(sl->key->bytes, sl->key->len, sp->end, sp->end_len) >= 0) {
        sp->it.top = -1;
        return NULL;
    }
    return sl;
}

/* ---- versions ---- */

static const struct bt_ver *live_at(const struct bt_slot *sl, int64_t rev)
{
    const struct bt_ver *v = bt_ver_at(sl, rev, NULL);

    return v != NULL && !bt_ver_is_tomb(v) ? v : NULL;
}

static const struct bt_ver *live_last(const struct bt_slot *sl)
{
    return live_at(sl, INT64_MAX);
}

/* Copies the live last version out (a reserve may move the head). */
static bool live_copy(const struct bt_slot *sl, struct bt_ver *out)
{
    const struct bt_ver *v = live_last(sl);

    if (v != NULL)
        *out = *v;
    return v != NULL;
}

static void kv_fill(struct mvcc_kv *kv, const struct bt_slot *sl, const struct bt_ver *v)
{
    kv->key = sl->key->bytes;
    kv->key_len = sl->key->len;
    kv->value = v->value;
    kv->value_len = v->value_len;
    kv->create_revision = v->create_revision;
    kv->mod_revision = v->mod_revision;
    kv->version = v->version;
    kv->lease = v->lease;
}

/* ---- create / destroy ---- */

static uint32_t limbo_flush(struct mvcc_store *s);

static void state_free_fn(ck_epoch_entry_t *e)
{
    free(CONTAINER(e, struct mvcc_state, retire));
}

/* compact_pub before the state: a reader that has pinned a state and then
 * loads mvcc_compact_revision() gets at least its state's compact
 * revision (unless a restore lowered it since). rev_pub after: a reader
 * that saw rev_pub pins that state or a later one. */
static void state_publish(struct mvcc_store *s, struct mvcc_state *st)
{
    __atomic_store_n(&s->compact_pub, st->compact_rev, __ATOMIC_RELEASE);
    __atomic_store_n(&s->state, st, __ATOMIC_RELEASE);
    __atomic_store_n(&s->rev_pub, st->rev, __ATOMIC_RELEASE);
    __atomic_store_n(&s->bytes_pub, (uint64_t)s->w.bytes, __ATOMIC_RELEASE);
}

struct mvcc_store *mvcc_create(void)
{
    struct mvcc_store *s = aligned_alloc(CK_MD_CACHELINE, sizeof(*s));
    struct mvcc_state *st;

    if (s == NULL)
        return NULL;
    memset(s, 0, sizeof(*s));
    if (bt_writer_init(&s->w) != 0)
        goto err_tree;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        goto err_state;
    ck_epoch_init(&s->epoch);
    ck_epoch_register(&s->epoch, &s->wrec, NULL);
    ck_stack_init(&s->ready);
    s->rev = 1; /* etcd: a fresh store is at revision 1 */
    st->root = s->w.root;
    st->rev = s->rev;
    state_publish(s, st);
    return s;

err_state:
    bt_writer_destroy(&s->w);
err_tree:
    free(s);
    return NULL;
}

static void ready_drain(struct mvcc_store *s, size_t budget)
{
    ck_stack_entry_t *se;

    TSAN_ACQUIRE(&s->tsan_sync);
    while (budget-- > 0 && (se = ck_stack_pop_npsc(&s->ready)) != NULL)
        bt_reclaim(&s->w, CONTAINER(se, ck_epoch_entry_t, stack_entry));
}

void mvcc_destroy(struct mvcc_store *s)
{
    ck_stack_entry_t *se, *next;

    if (s == NULL)
        return;
    if (s->in_txn) /* hand its replaced memory to the epoch lists below */
        mvcc_txn_end(s);
    mvcc_compaction_free(s);
    mvcc_restore_free(s);
    (void)limbo_flush(s); /* chunks an unfinished restore replaced */
    /* No reader is inside a section any more (the caller's contract). */
    TSAN_ACQUIRE(&s->tsan_sync);
    ck_epoch_reclaim(&s->wrec);
    ready_drain(s, SIZE_MAX);
    bt_writer_destroy(&s->w);
    free(s->state);
    free(s->next_state);
    free(s->scratch);
    for (se = CK_STACK_FIRST(&s->epoch.records); se != NULL; se = next) {
        ck_epoch_record_t *rec = CONTAINER(se, ck_epoch_record_t, record_next);
        next = CK_STACK_NEXT(se);
        if (rec != &s->wrec)
            free(CONTAINER(rec, struct mvcc_reader, rec));
    }
    free(s);
}

/* ---- readers ---- */

struct mvcc_reader *mvcc_reader_register(struct mvcc_store *s)
{
    ck_epoch_record_t *rec = ck_epoch_recycle(&s->epoch, NULL);
    struct mvcc_reader *r;

    if (rec != NULL) {
        r = CONTAINER(rec, struct mvcc_reader, rec);
        TSAN_ACQUIRE(r); /* ck's atomic hand-over from the last owner */
    } else {
        r = aligned_alloc(CK_MD_CACHELINE, sizeof(*r));
        if (r == NULL)
            return NULL;
        memset(r, 0, sizeof(*r));
        ck_epoch_register(&s->epoch, &r->rec, NULL);
    }
    r->s = s;
    r->st = NULL;
    return r;
}

void mvcc_reader_unregister(struct mvcc_reader *r)
{
    if (r == NULL)
        return;
    assert(r->st == NULL);
    TSAN_RELEASE(r);
    ck_epoch_unregister(&r->rec);
}

void mvcc_read_begin(struct mvcc_reader *r)
{
    assert(r->st == NULL);
    ck_epoch_begin(&r->rec, NULL);
    r->st = __atomic_load_n(&r->s->state, __ATOMIC_ACQUIRE);
}

void mvcc_read_end(struct mvcc_reader *r)
{
    assert(r->st != NULL);
    r->st = NULL;
    TSAN_RELEASE(&r->s->tsan_sync);
    ck_epoch_end(&r->rec, NULL);
}

int64_t mvcc_current_revision(const struct mvcc_store *s)
{
    return __atomic_load_n(&s->rev_pub, __ATOMIC_ACQUIRE);
}

int64_t mvcc_compact_revision(const struct mvcc_store *s)
{
    return __atomic_load_n(&s->compact_pub, __ATOMIC_ACQUIRE);
}

uint64_t mvcc_size_bytes(const struct mvcc_store *s)
{
    return __atomic_load_n(&s->bytes_pub, __ATOMIC_ACQUIRE);
}

/* ---- range ---- */

static int res_push(struct mvcc_range_res *res, size_t *cap, const struct bt_slot *sl,
                    const struct bt_ver *v)
{
    if (res->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct mvcc_kv *kvs = realloc(res->kvs, ncap * sizeof(*kvs));
        if (kvs == NULL)
            return MVCC_ERR_NOMEM;
        res->kvs = kvs;
        *cap = ncap;
    }
    kv_fill(&res->kvs[res->n++], sl, v);
    return MVCC_OK;
}

/* etcd's applyRange fetches everything when it will sort or filter, and
 * limit+1 otherwise to learn `more`. 0 = no limit. */
static int64_t fetch_limit(const struct mvcc_range_req *req)
{
    if (req->sort_order != MVCC_SORT_NONE || req->min_mod_revision != 0 ||
        req->max_mod_revision != 0 || req->min_create_revision != 0 ||
        req->max_create_revision != 0)
        return 0;
    return req->limit > 0 ? req->limit + 1 : 0;
}

/* Counts the live keys of the span at rev into res->count and collects
 * up to `limit` of them (all if 0; none if count_only). */
static int range_collect(const struct bt_node *root, const struct mvcc_range_req *req, int64_t rev,
                         struct mvcc_range_res *res)
{
    int64_t limit = fetch_limit(req);
    const struct bt_slot *sl;
    const struct bt_ver *v;
    struct span sp;
    size_t cap = 0;

    span_init(&sp, root, req->key, req->key_len, req->range_end, req->range_end_len);
    while ((sl = span_next(&sp)) != NULL) {
        if ((v = live_at(sl, rev)) == NULL)
            continue;
        res->count++;
        if (req->count_only || (limit > 0 && (int64_t)res->n >= limit))
            continue;
        if (res_push(res, &cap, sl, v) != MVCC_OK)
            return MVCC_ERR_NOMEM;
    }
    return MVCC_OK;
}

static bool kv_filtered_out(const struct mvcc_range_req *req, const struct mvcc_kv *kv)
{
    if (req->max_mod_revision != 0 && kv->mod_revision > req->max_mod_revision)
        return true;
    if (req->min_mod_revision != 0 && kv->mod_revision < req->min_mod_revision)
        return true;
    if (req->max_create_revision != 0 && kv->create_revision > req->max_create_revision)
        return true;
    return req->min_create_revision != 0 && kv->create_revision < req->min_create_revision;
}

static void range_filter(const struct mvcc_range_req *req, struct mvcc_range_res *res)
{
    size_t j = 0;

    for (size_t i = 0; i < res->n; i++)
        if (!kv_filtered_out(req, &res->kvs[i]))
            res->kvs[j++] = res->kvs[i];
    res->n = j;
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int kv_cmp_field(const struct mvcc_kv *a, const struct mvcc_kv *b, int target)
{
    switch (target) {
    case MVCC_TARGET_VERSION:
        return cmp_i64(a->version, b->version);
    case MVCC_TARGET_CREATE:
        return cmp_i64(a->create_revision, b->create_revision);
    case MVCC_TARGET_MOD:
        return cmp_i64(a->mod_revision, b->mod_revision);
    case MVCC_TARGET_VALUE:
        return bt_key_cmp(a->value, a->value_len, b->value, b->value_len);
    default:
        return bt_key_cmp(a->key, a->key_len, b->key, b->key_len);
    }
}

/* Sorts by the target in the given direction; equal elements keep key
 * order (the fetch order), as Go's sort does for etcd's small results. */
static int kv_cmp(const void *pa, const void *pb, void *arg)
{
    const int *how = arg; /* {target, order} */
    const struct mvcc_kv *a = pa, *b = pb;
    int c = kv_cmp_field(a, b, how[0]);

    if (how[1] == MVCC_SORT_DESCEND)
        c = -c;
    if (c != 0)
        return c;
    return bt_key_cmp(a->key, a->key_len, b->key, b->key_len);
}

static void kvs_reverse(struct mvcc_kv *kvs, size_t n)
{
    for (size_t i = 0; i < n / 2; i++) {
        struct mvcc_kv t = kvs[i];
        kvs[i] = kvs[n - 1 - i];
        kvs[n - 1 - i] = t;
    }
}

static void range_sort(const struct mvcc_range_req *req, struct mvcc_range_res *res)
{
    int how[2] = {req->sort_target, req->sort_order};

    /* etcd: a target other than KEY with order NONE sorts ascending. */
    if (how[0] != MVCC_TARGET_KEY && how[1] == MVCC_SORT_NONE)
        how[1] = MVCC_SORT_ASCEND;
    if (how[1] != MVCC_SORT_ASCEND && how[1] != MVCC_SORT_DESCEND)
        return;
    if (how[0] == MVCC_TARGET_KEY) { /* already in key order */
        if (how[1] == MVCC_SORT_DESCEND)
            kvs_reverse(res->kvs, res->n);
        return;
    }
    if (res->n > 1)
        qsort_r(res->kvs, res->n, sizeof(res->kvs[0]), kv_cmp, how);
}

static void range_finish(const struct mvcc_range_req *req, struct mvcc_range_res *res)
{
    range_filter(req, res);
    range_sort(req, res);
    if (req->limit > 0 && (int64_t)res->n > req->limit) {
        res->n = (size_t)req->limit;
        res->more = true;
    }
    if (req->keys_only) {
        for (size_t i = 0; i < res->n; i++) {
            res->kvs[i].value = NULL;
            res->kvs[i].value_len = 0;
        }
    }
}

/* A Range over the tree `root` whose current revision is cur; etcd's
 * checks: future revision, <= 0 = current, below compact = compacted
 * (the compact revision itself is still readable). */
static int range_at(const struct bt_node *root, int64_t cur, int64_t compact,
                    const struct mvcc_range_req *req, struct mvcc_range_res *res)
{
    int64_t rev = req->revision;
    int rv;

    memset(res, 0, sizeof(*res));
    res->revision = cur;
    if (rev > cur)
        return MVCC_ERR_FUTURE_REV;
    if (rev <= 0)
        rev = cur;
    if (rev < compact)
        return MVCC_ERR_COMPACTED;
    rv = range_collect(root, req, rev, res);
    if (rv != MVCC_OK)
        return rv;
    range_finish(req, res);
    return MVCC_OK;
}

int mvcc_range(struct mvcc_reader *r, const struct mvcc_range_req *req, struct mvcc_range_res *res)
{
    const struct mvcc_state *st = r->st;

    assert(st != NULL);
    return range_at(st->root, st->rev, st->compact_rev, req, res);
}

bool mvcc_range_streams(const struct mvcc_range_req *req)
{
    return req->sort_order == MVCC_SORT_NONE && req->sort_target == MVCC_TARGET_KEY &&
           req->min_mod_revision == 0 && req->max_mod_revision == 0 &&
           req->min_create_revision == 0 && req->max_create_revision == 0;
}

int mvcc_range_each(struct mvcc_reader *r, const struct mvcc_range_req *req, mvcc_each_fn fn,
                    void *arg, struct mvcc_range_res *res)
{
    const struct mvcc_state *st = r->st;
    int64_t rev = req->revision;
    const struct bt_slot *sl;
    const struct bt_ver *v;
    struct mvcc_kv kv;
    struct span sp;

    assert(st != NULL);
    memset(res, 0, sizeof(*res));
    res->revision = st->rev;
    if (!mvcc_range_streams(req))
        return MVCC_ERR_BAD_ORDER;
    if (rev > st->rev)
        return MVCC_ERR_FUTURE_REV;
    if (rev <= 0)
        rev = st->rev;
    if (rev < st->compact_rev)
        return MVCC_ERR_COMPACTED;
    span_init(&sp, st->root, req->key, req->key_len, req->range_end, req->range_end_len);
    while ((sl = span_next(&sp)) != NULL) {
        if ((v = live_at(sl, rev)) == NULL)
            continue;
        res->count++;
        if (req->count_only || (req->limit > 0 && (int64_t)res->n >= req->limit))
            continue;
        kv_fill(&kv, sl, v);
        if (req->keys_only) {
            kv.value = NULL;
            kv.value_len = 0;
        }
        fn(arg, &kv);
        res->n++;
    }
    res->more = req->limit > 0 && res->count > req->limit;
    return MVCC_OK;
}

void mvcc_range_res_free(struct mvcc_range_res *res)
{
    free(res->kvs);
    memset(res, 0, sizeof(*res));
}

/* ---- writer ---- */

void mvcc_txn_begin(struct mvcc_store *s)
{
    assert(!s->in_txn && !s->rs.started);
    s->in_txn = true;
    s->changed = false;
    s->sub = 0;
    s->w.txn++;
}

/* Every change first makes sure the commit will have a state to publish. */
int mvcc_state_reserve(struct mvcc_store *s)
{
    if (s->next_state == NULL)
        s->next_state = calloc(1, sizeof(*s->next_state));
    return s->next_state != NULL ? MVCC_OK : MVCC_ERR_NOMEM;
}

static int value_dup(const uint8_t *value, size_t value_len, uint8_t **out)
{
    *out = NULL;
    if (value_len == 0)
        return MVCC_OK;
    *out = malloc(value_len);
    if (*out == NULL)
        return MVCC_ERR_NOMEM;
    memcpy(*out, value, value_len);
    return MVCC_OK;
}

int mvcc_txn_put(struct mvcc_store *s, const uint8_t *key, size_t key_len, const uint8_t *value,
                 size_t value_len, int64_t lease, mvcc_prev_fn prev, void *arg)
{
    int64_t rev = s->rev + 1;
    struct bt_ver v = {0}, last;
    struct bt_slot *sl;
    uint8_t *val;
    bool live;

    assert(s->in_txn);
    if (key_len > UINT32_MAX || value_len > UINT32_MAX || mvcc_state_reserve(s) != MVCC_OK)
        return MVCC_ERR_NOMEM;
    if (value_dup(value, value_len, &val) != MVCC_OK)
        return MVCC_ERR_NOMEM;
    sl = bt_slot_mut(&s->w, key, key_len, true); /* a new slot can take one version */
    live = sl != NULL && live_copy(sl, &last);
    if (sl == NULL || bt_slot_reserve(&s->w, sl) != 0) {
        free(val);
        return MVCC_ERR_NOMEM;
    }
    if (live && prev != NULL) {
        struct mvcc_kv kv;
        kv_fill(&kv, sl, &last);
        prev(arg, &kv);
    }
    v.create_revision = live ? last.create_revision : rev;
    v.mod_revision = rev;
    v.version = live ? last.version + 1 : 1;
    v.lease = lease;
    v.value = val;
    v.value_len = (uint32_t)value_len;
    v.sub = s->sub++;
    bt_slot_push(&s->w, sl, &v);
    s->changed = true;
    return MVCC_OK;
}

static int scratch_push(struct mvcc_store *s, size_t n, const struct bt_key *k)
{
    if (n == s->scratch_cap) {
        size_t ncap = s->scratch_cap ? s->scratch_cap * 2 : 64;
        const struct bt_key **a = realloc(s->scratch, ncap * sizeof(*a));
        if (a == NULL)
            return MVCC_ERR_NOMEM;
        s->scratch = a;
        s->scratch_cap = ncap;
    }
    s->scratch[n] = k;
    return MVCC_OK;
}

/* Collects the keys live in the working tree into s->scratch, in order. */
static int64_t live_keys(struct mvcc_store *s, const uint8_t *key, size_t key_len,
                         const uint8_t *end, size_t end_len)
{
    const struct bt_slot *sl;
    struct span sp;
    size_t n = 0;

    span_init(&sp, s->w.root, key, key_len, end, end_len);
    while ((sl = span_next(&sp)) != NULL) {
        if (live_last(sl) == NULL)
            continue;
        if (scratch_push(s, n, sl->key) != MVCC_OK)
            return MVCC_ERR_NOMEM;
        n++;
    }
    return (int64_t)n;
}

/* Appends a tombstone to the live key k, reporting its last version. */
static int tombstone(struct mvcc_store *s, const struct bt_key *k, mvcc_prev_fn prev, void *arg)
{
    struct bt_slot *sl = bt_slot_mut(&s->w, k->bytes, k->len, false);
    struct bt_ver v = {0}, last;

    if (sl == NULL || !live_copy(sl, &last) || bt_slot_reserve(&s->w, sl) != 0)
        return MVCC_ERR_NOMEM;
    if (prev != NULL) {
        struct mvcc_kv kv;
        kv_fill(&kv, sl, &last);
        prev(arg, &kv);
    }
    v.mod_revision = s->rev + 1;
    v.sub = s->sub++;
    bt_slot_push(&s->w, sl, &v);
    s->changed = true;
    return MVCC_OK;
}

int64_t mvcc_txn_delete_range(struct mvcc_store *s, const uint8_t *key, size_t key_len,
                              const uint8_t *range_end, size_t range_end_len, mvcc_prev_fn prev,
                              void *arg)
{
    int64_t n;

    assert(s->in_txn);
    if (mvcc_state_reserve(s) != MVCC_OK)
        return MVCC_ERR_NOMEM;
    n = live_keys(s, key, key_len, range_end, range_end_len);
    for (int64_t i = 0; i < n; i++)
        if (tombstone(s, s->scratch[i], prev, arg) != MVCC_OK)
            return MVCC_ERR_NOMEM;
    return n;
}

/* Hands everything replaced in this txn to ck_epoch; returns how many. */
static uint32_t limbo_flush(struct mvcc_store *s)
{
    ck_stack_entry_t *se = ck_stack_batch_pop_npsc(&s->w.limbo), *next;
    uint32_t n = s->w.limbo_n;

    for (; se != NULL; se = next) {
        ck_epoch_entry_t *e = CONTAINER(se, ck_epoch_entry_t, stack_entry);
        next = CK_STACK_NEXT(se);
        ck_epoch_call(&s->wrec, e, e->function);
    }
    s->w.limbo_n = 0;
    return n;
}

static void publish(struct mvcc_store *s)
{
    struct mvcc_state *st = s->next_state, *old = s->state;

    assert(st != NULL);
    s->next_state = NULL;
    if (s->changed)
        s->rev++;
    s->changed = false;
    st->root = s->w.root;
    st->rev = s->rev;
    st->compact_rev = s->compact_rev;
    state_publish(s, st);
    bt_retire(&s->w, &old->retire, state_free_fn);
}

void mvcc_commit(struct mvcc_store *s, bool force)
{
    uint32_t retired = 0;

    /* Publish if the working tree differs, even without a new version: a
     * put that failed half way may have copied nodes. */
    if (force || s->changed || s->w.root != s->state->root || s->w.limbo_n > 0) {
        publish(s);
        retired = limbo_flush(s);
    }
    ck_epoch_poll_deferred(&s->wrec, &s->ready);
    ready_drain(s, RECLAIM_BATCH_MIN + 2u * (size_t)retired);
    (void)mvcc_state_reserve(s); /* a failure shows up at the next change */
}

int64_t mvcc_txn_end(struct mvcc_store *s)
{
    assert(s->in_txn);
    s->in_txn = false;
    mvcc_commit(s, false);
    return s->rev;
}

/* ---- writer-side reads ---- */

int mvcc_txn_range(struct mvcc_store *s, const struct mvcc_range_req *req,
                   struct mvcc_range_res *res)
{
    assert(s->in_txn);
    /* etcd storeTxnWrite.Range: the txn's revision once it has changed
     * something, else the revision it started at. */
    return range_at(s->w.root, s->rev + (s->changed ? 1 : 0), s->compact_rev, req, res);
}

int mvcc_txn_get(struct mvcc_store *s, const uint8_t *key, size_t key_len, struct mvcc_kv *out)
{
    const struct bt_slot *sl;
    const struct bt_ver *v;

    assert(s->in_txn);
    sl = bt_find(s->w.root, key, key_len);
    if (sl == NULL || (v = live_last(sl)) == NULL)
        return MVCC_ERR_NOT_FOUND;
    kv_fill(out, sl, v);
    return MVCC_OK;
}

int64_t mvcc_read_revision(const struct mvcc_reader *r)
{
    assert(r->st != NULL);
    return r->st->rev;
}

int64_t mvcc_read_compact_revision(const struct mvcc_reader *r)
{
    assert(r->st != NULL);
    return r->st->compact_rev;
}

/* ---- reclamation ---- */

bool mvcc_reclaim(struct mvcc_store *s, unsigned budget)
{
    assert(!s->in_txn);
    ck_epoch_poll_deferred(&s->wrec, &s->ready);
    ready_drain(s, budget);
    return s->wrec.n_pending > 0 || !CK_STACK_ISEMPTY(&s->ready);
}
