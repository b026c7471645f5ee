/*
 * txn.c — etcdserverpb.KV/Txn: the request checks (on the shard) and the
 * execution (on the core for a txn that writes, on the shard for one that
 * only reads), with etcd's semantics (etcdserver/apply.go, v3rpc/key.go):
 *
 *  - checks before anything runs: at most --max-txn-ops operations per
 *    level (compares, success ops, failure ops: the largest of the three),
 *    nested txns sharing what is left; no empty key; no empty RequestOp;
 *    no key put twice, or put and deleted, on one branch path.
 *  - compares are evaluated against the state before the txn; a compare on
 *    a range holds if it holds for every key in it; a VALUE compare on no
 *    key fails; other targets compare against zero.
 *  - the chosen branch's puts and ranges are checked first (a put with
 *    ignore_value/ignore_lease needs the key, a lease must exist (in the
 *    core's lease table; a put attaches its key, a delete detaches), a range's
 *    revision must be neither future nor compacted): one failure fails the
 *    whole txn and nothing is written.
 *  - operations then run in order in one MVCC transaction: one revision
 *    for the whole txn; a range sees the txn's earlier writes. Responses
 *    nested inside carry only a revision in their header, as etcd's.
 *
 * Memory: one arena per request holds every decoded-to-encode structure
 * and every copied key/value; it is freed once the response is packed.
 */
#include "rpc_int.h"

#include "mvcc.h"

#include <stdlib.h>
#include <string.h>

/* ---- arena ---- */

#define ARENA_BLOCK_BYTES 16384u

struct arena_block {
    struct arena_block *next;
    size_t used;
    size_t cap;
    max_align_t data[];
};

struct arena {
    struct arena_block *head;
    bool nomem;
};

static void *arena_alloc(struct arena *a, size_t n)
{
    struct arena_block *b = a->head;
    size_t need = (n + 15u) & ~(size_t)15u;

    if (b == NULL || b->cap - b->used < need) {
        size_t cap = need > ARENA_BLOCK_BYTES ? need : ARENA_BLOCK_BYTES;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL) {
            a->nomem = true;
            return NULL;
        }
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += need;
    memset(p, 0, n);
    return p;
}

static void arena_free(struct arena *a)
{
    while (a->head != NULL) {
        struct arena_block *b = a->head;
        a->head = b->next;
        free(b);
    }
}

/* ---- shard side: checks ---- */

static int check_op(const Etcdserverpb__RequestOp *op, size_t max_ops);

static int check_txn(const Etcdserverpb__TxnRequest *r, size_t max_ops)
{
    size_t opc = r->n_compare;
    size_t i;
    int e;

    if (opc < r->n_success)
        opc = r->n_success;
    if (opc < r->n_failure)
        opc = r->n_failure;
    if (opc > max_ops)
        return RPC_E_TOO_MANY_OPS;
    for (i = 0; i < r->n_compare; i++) {
        if (r->compare[i]->key.len == 0)
            return RPC_E_EMPTY_KEY;
    }
    for (i = 0; i < r->n_success; i++) {
        if ((e = check_op(r->success[i], max_ops - opc)) >= 0)
            return e;
    }
    for (i = 0; i < r->n_failure; i++) {
        if ((e = check_op(r->failure[i], max_ops - opc)) >= 0)
            return e;
    }
    return -1;
}

/* -1 if fine, else an enum rpc_err. */
static int check_op(const Etcdserverpb__RequestOp *op, size_t max_ops)
{
    switch (op->request_case) {
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
        if (op->request_range->key.len == 0)
            return RPC_E_EMPTY_KEY;
        if (op->request_range->sort_order < 0 || op->request_range->sort_order > 2 ||
            op->request_range->sort_target < 0 || op->request_range->sort_target > 4)
            return RPC_E_INVALID_SORT;
        return -1;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT: {
        const Etcdserverpb__PutRequest *p = op->request_put;
        if (p->key.len == 0)
            return RPC_E_EMPTY_KEY;
        if (p->ignore_value && p->value.len != 0)
            return RPC_E_VALUE_PROVIDED;
        if (p->ignore_lease && p->lease != 0)
            return RPC_E_LEASE_PROVIDED;
        return -1;
    }
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
        return op->request_delete_range->key.len == 0 ? RPC_E_EMPTY_KEY : -1;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
        return check_txn(op->request_txn, max_ops);
    default:
        return RPC_E_KEY_NOT_FOUND; /* an empty RequestOp, as etcd answers */
    }
}

/* Keys put and ranges deleted on one branch path (etcd's checkIntervals).
 * Sizes are bounded by the op limits checked before. */
struct keyset {
    const ProtobufCBinaryData **puts;
    size_t n_puts;
    const Etcdserverpb__DeleteRangeRequest **dels;
    size_t n_dels;
    struct arena *arena;
};

static int bin_cmp(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n != 0 ? memcmp(a->data, b->data, n) : 0;

    return c != 0 ? c : (a->len > b->len) - (a->len < b->len);
}

/* Does delete d cover key k? [key, range_end), or key alone. */
static bool del_covers(const Etcdserverpb__DeleteRangeRequest *d, const ProtobufCBinaryData *k)
{
    if (d->range_end.len == 0)
        return bin_cmp(&d->key, k) == 0;
    return bin_cmp(&d->key, k) <= 0 && bin_cmp(k, &d->range_end) < 0;
}

static bool set_has_put(const struct keyset *s, const ProtobufCBinaryData *k)
{
    for (size_t i = 0; i < s->n_puts; i++) {
        if (bin_cmp(s->puts[i], k) == 0)
            return true;
    }
    return false;
}

static bool set_deletes(const struct keyset *s, const ProtobufCBinaryData *k)
{
    for (size_t i = 0; i < s->n_dels; i++) {
        if (del_covers(s->dels[i], k))
            return true;
    }
    return false;
}

static int set_init(struct keyset *s, struct arena *a, size_t cap)
{
    memset(s, 0, sizeof(*s));
    s->arena = a;
    s->puts = arena_alloc(a, (cap + 1) * sizeof(*s->puts));
    s->dels = arena_alloc(a, (cap + 1) * sizeof(*s->dels));
    return s->puts != NULL && s->dels != NULL ? 0 : -1;
}

static size_t count_ops(const Etcdserverpb__RequestOp *const *ops, size_t n)
{
    size_t total = n;

    for (size_t i = 0; i < n; i++) {
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN) {
            const Etcdserverpb__TxnRequest *t = ops[i]->request_txn;
            total += count_ops((const Etcdserverpb__RequestOp *const *)t->success, t->n_success);
            total += count_ops((const Etcdserverpb__RequestOp *const *)t->failure, t->n_failure);
        }
    }
    return total;
}

static int check_intervals(const Etcdserverpb__RequestOp *const *ops, size_t n, struct keyset *out);

/* Merges a nested txn's branch sets into this level's (etcd's rules: the
 * then and else branches exclude each other, so they may share keys). */
static int merge_nested(struct keyset *s, const Etcdserverpb__TxnRequest *t)
{
    struct keyset then_s = {.arena = s->arena};
    struct keyset else_s = {.arena = s->arena};
    size_t i;

    if (check_intervals((const Etcdserverpb__RequestOp *const *)t->success, t->n_success,
                        &then_s) != 0 ||
        check_intervals((const Etcdserverpb__RequestOp *const *)t->failure, t->n_failure,
                        &else_s) != 0)
        return -1;
    size_t base_puts = s->n_puts;
    for (i = 0; i < then_s.n_puts; i++) {
        if (set_has_put(s, then_s.puts[i]) || set_deletes(s, then_s.puts[i]))
            return -1;
        s->puts[s->n_puts++] = then_s.puts[i];
    }
    for (i = 0; i < else_s.n_puts; i++) {
        bool in_base = false;
        for (size_t j = 0; j < base_puts; j++)
            in_base = in_base || bin_cmp(s->puts[j], else_s.puts[i]) == 0;
        if (in_base || set_deletes(s, else_s.puts[i]))
            return -1;
        if (!set_has_put(&then_s, else_s.puts[i]))
            s->puts[s->n_puts++] = else_s.puts[i];
    }
    for (i = 0; i < then_s.n_dels; i++)
        s->dels[s->n_dels++] = then_s.dels[i];
    for (i = 0; i < else_s.n_dels; i++)
        s->dels[s->n_dels++] = else_s.dels[i];
    return 0;
}

/* 0, or -1 for a duplicate. out is allocated in `arena` of the caller's
 * set (passed through out->arena). */
static int check_intervals(const Etcdserverpb__RequestOp *const *ops, size_t n, struct keyset *out)
{
    struct arena *a = out->arena;
    size_t i;

    if (set_init(out, a, count_ops(ops, n)) != 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE)
            out->dels[out->n_dels++] = ops[i]->request_delete_range;
    }
    for (i = 0; i < n; i++) {
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
            merge_nested(out, ops[i]->request_txn) != 0)
            return -1;
    }
    for (i = 0; i < n; i++) {
        if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
            continue;
        const ProtobufCBinaryData *k = &ops[i]->request_put->key;
        if (set_has_put(out, k) || set_deletes(out, k))
            return -1;
        out->puts[out->n_puts++] = k;
    }
    return 0;
}

static bool has_duplicates(const Etcdserverpb__TxnRequest *r)
{
    struct arena a = {0};
    struct keyset s;
    bool dup;

    s.arena = &a;
    dup =
        check_intervals((const Etcdserverpb__RequestOp *const *)r->success, r->n_success, &s) != 0;
    if (!dup) {
        s.arena = &a;
        dup = check_intervals((const Etcdserverpb__RequestOp *const *)r->failure, r->n_failure,
                              &s) != 0;
    }
    arena_free(&a);
    return dup;
}

static bool txn_writes(const Etcdserverpb__TxnRequest *r);

static bool ops_write(Etcdserverpb__RequestOp *const *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (ops[i]->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            return true;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
            if (txn_writes(ops[i]->request_txn))
                return true;
            break;
        default:
            break;
        }
    }
    return false;
}

/* May any branch of the txn write? (etcd's isTxnReadonly, inverted.) */
static bool txn_writes(const Etcdserverpb__TxnRequest *r)
{
    return ops_write(r->success, r->n_success) || ops_write(r->failure, r->n_failure);
}

static bool ops_put(Etcdserverpb__RequestOp *const *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
            return true;
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
            rpc_txn_has_put(ops[i]->request_txn))
            return true;
    }
    return false;
}

bool rpc_txn_has_put(const Etcdserverpb__TxnRequest *r)
{
    return ops_put(r->success, r->n_success) || ops_put(r->failure, r->n_failure);
}

/* ---- execution (core for writing txns, shard for read-only ones) ---- */

struct txn_exec {
    const struct rpc_env *env;
    bool writer;      /* inside an MVCC write transaction on the core */
    bool want_reply;  /* build responses (false: WAL replay) */
    bool changed;     /* something was written so far */
    int64_t base_rev; /* current revision before the txn */
    struct arena arena;
};

static int64_t rev_now(const struct txn_exec *x)
{
    return x->base_rev + (x->changed ? 1 : 0);
}

/* A range through the right view: the open transaction for current reads
 * on the core, the published state otherwise. */
static int view_range(struct txn_exec *x, const struct mvcc_range_req *q,
                      struct mvcc_range_res *res)
{
    if (x->writer && q->revision <= 0)
        return mvcc_txn_range(x->env->store, q, res);
    return mvcc_range(x->env->reader, q, res);
}

static int64_t cmp_i64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

static bool compare_kv(const Etcdserverpb__Compare *c, const struct mvcc_kv *kv)
{
    int64_t r = 0;

    switch (c->target) {
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
        ProtobufCBinaryData have = {kv->value_len, (uint8_t *)kv->value};
        ProtobufCBinaryData want = {0, NULL};
        if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE)
            want = c->value;
        r = bin_cmp(&have, &want);
        break;
    }
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
        r = cmp_i64(kv->create_revision,
                    c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION
                        ? c->create_revision
                        : 0);
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
        r = cmp_i64(kv->mod_revision,
                    c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION
                        ? c->mod_revision
                        : 0);
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
        r = cmp_i64(kv->version, c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION
                                     ? c->version
                                     : 0);
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
        r = cmp_i64(kv->lease, c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE
                                   ? c->lease
                                   : 0);
        break;
    default:
        break;
    }
    switch (c->result) {
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL:
        return r == 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL:
        return r != 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER:
        return r > 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS:
        return r < 0;
    default:
        return true;
    }
}

static bool compare_one(struct txn_exec *x, const Etcdserverpb__Compare *c)
{
    struct mvcc_range_req q;
    struct mvcc_range_res res;
    struct mvcc_kv zero;
    bool ok = true;

    memset(&q, 0, sizeof(q));
    memset(&res, 0, sizeof(res));
    q.key = c->key.data;
    q.key_len = c->key.len;
    q.range_end = c->range_end.data;
    q.range_end_len = c->range_end.len;
    if (view_range(x, &q, &res) != MVCC_OK) {
        ok = false;
    } else if (res.n == 0) {
        memset(&zero, 0, sizeof(zero));
        ok = c->target != ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE && compare_kv(c, &zero);
    } else {
        for (size_t i = 0; i < res.n && ok; i++)
            ok = compare_kv(c, &res.kvs[i]);
    }
    mvcc_range_res_free(&res);
    return ok;
}

static bool compares_hold(struct txn_exec *x, const Etcdserverpb__TxnRequest *r)
{
    for (size_t i = 0; i < r->n_compare; i++) {
        if (!compare_one(x, r->compare[i]))
            return false;
    }
    return true;
}

/* The branch each txn (this one, then nested ones in order) takes: decided
 * up front against the state before the txn, as etcd's compareToPath. */
struct txn_path {
    bool *v;
    size_t n;
    size_t cap;
};

static int path_build(struct txn_exec *x, const Etcdserverpb__TxnRequest *r, struct txn_path *p)
{
    bool ok = compares_hold(x, r);
    Etcdserverpb__RequestOp **ops = ok ? r->success : r->failure;
    size_t n = ok ? r->n_success : r->n_failure;

    if (p->n == p->cap) {
        size_t cap = p->cap != 0 ? p->cap * 2 : 16;
        bool *v = realloc(p->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = ok;
    for (size_t i = 0; i < n; i++) {
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
            path_build(x, ops[i]->request_txn, p) != 0)
            return -1;
    }
    return 0;
}

/* etcd's checkPut/checkRange over the chosen path: -1 if fine, else an
 * enum rpc_err. *pos walks the path as path_build laid it out. */
static int path_check(struct txn_exec *x, const Etcdserverpb__TxnRequest *r,
                      const struct txn_path *p, size_t *pos)
{
    bool ok = p->v[(*pos)++];
    Etcdserverpb__RequestOp **ops = ok ? r->success : r->failure;
    size_t n = ok ? r->n_success : r->n_failure;
    int64_t cur = x->base_rev;
    int64_t compact = mvcc_compact_revision(x->env->store);
    struct mvcc_kv kv;
    int e;

    for (size_t i = 0; i < n; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT) {
            const Etcdserverpb__PutRequest *pr = op->request_put;
            if (pr->lease != 0 && !rpc_lease_exists(x->env, pr->lease))
                return RPC_E_LEASE_NOT_FOUND;
            if ((pr->ignore_value || pr->ignore_lease) &&
                (x->writer ? mvcc_txn_get(x->env->store, pr->key.data, pr->key.len, &kv)
                           : MVCC_ERR_NOT_FOUND) != MVCC_OK)
                return RPC_E_KEY_NOT_FOUND;
        } else if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE) {
            int64_t rev = op->request_range->revision;
            if (rev > cur)
                return RPC_E_FUTURE_REV;
            if (rev > 0 && rev < compact)
                return RPC_E_COMPACTED;
        } else if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN) {
            if ((e = path_check(x, op->request_txn, p, pos)) >= 0)
                return e;
        }
    }
    return -1;
}

/* Copies a kv into the arena as a protobuf KeyValue. */
static Mvccpb__KeyValue *kv_arena(struct arena *a, const struct mvcc_kv *kv)
{
    Mvccpb__KeyValue *c = arena_alloc(a, sizeof(*c) + kv->key_len + kv->value_len);
    uint8_t *p;

    if (c == NULL)
        return NULL;
    mvccpb__key_value__init(c);
    p = (uint8_t *)(c + 1);
    if (kv->key_len != 0)
        memcpy(p, kv->key, kv->key_len);
    if (kv->value_len != 0)
        memcpy(p + kv->key_len, kv->value, kv->value_len);
    c->key.data = p;
    c->key.len = kv->key_len;
    c->value.data = p + kv->key_len;
    c->value.len = kv->value_len;
    c->create_revision = kv->create_revision;
    c->mod_revision = kv->mod_revision;
    c->version = kv->version;
    c->lease = kv->lease;
    return c;
}

static Etcdserverpb__ResponseHeader *inner_header(struct arena *a, int64_t rev)
{
    Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof(*h));

    if (h != NULL) {
        etcdserverpb__response_header__init(h);
        h->revision = rev;
    }
    return h;
}

static void op_range(struct txn_exec *x, const Etcdserverpb__RangeRequest *r,
                     Etcdserverpb__ResponseOp *out)
{
    Etcdserverpb__RangeResponse *resp = arena_alloc(&x->arena, sizeof(*resp));
    struct mvcc_range_req q;
    struct mvcc_range_res res;

    memset(&res, 0, sizeof(res));
    if (resp == NULL)
        return;
    etcdserverpb__range_response__init(resp);
    rpc_range_req(r, &q);
    if (view_range(x, &q, &res) == MVCC_OK) {
        resp->kvs = arena_alloc(&x->arena, (res.n + 1) * sizeof(*resp->kvs));
        for (size_t i = 0; resp->kvs != NULL && i < res.n; i++)
            resp->kvs[resp->n_kvs++] = kv_arena(&x->arena, &res.kvs[i]);
        resp->more = res.more;
        resp->count = res.count;
    }
    mvcc_range_res_free(&res);
    resp->header = inner_header(&x->arena, rev_now(x));
    out->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
    out->response_range = resp;
}

struct prev_collect {
    struct arena *arena;
    Mvccpb__KeyValue **v;
    size_t n;
    size_t cap;
};

static void prev_one(void *arg, const struct mvcc_kv *kv)
{
    struct prev_collect *c = arg;

    if (c->n == c->cap) {
        size_t cap = c->cap != 0 ? c->cap * 2 : 8;
        Mvccpb__KeyValue **v = arena_alloc(c->arena, cap * sizeof(*v));
        if (v == NULL)
            return;
        if (c->n != 0)
            memcpy(v, c->v, c->n * sizeof(*v));
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n] = kv_arena(c->arena, kv);
    if (c->v[c->n] != NULL)
        c->n++;
}

static int op_put(struct txn_exec *x, const Etcdserverpb__PutRequest *r,
                  Etcdserverpb__ResponseOp *out)
{
    Etcdserverpb__PutResponse *resp = arena_alloc(&x->arena, sizeof(*resp));
    struct prev_collect prev = {&x->arena, NULL, 0, 0};
    struct mvcc_kv cur;
    const uint8_t *value = r->value.data;
    size_t value_len = r->value.len;
    int64_t lease = r->lease;

    if (resp == NULL)
        return -1;
    etcdserverpb__put_response__init(resp);
    if ((r->ignore_value || r->ignore_lease) &&
        mvcc_txn_get(x->env->store, r->key.data, r->key.len, &cur) == MVCC_OK) {
        if (r->ignore_value) {
            value = cur.value;
            value_len = cur.value_len;
        }
        if (r->ignore_lease)
            lease = cur.lease;
    }
    /* path_check found the lease; ignore_lease leaves the key where it is. */
    if (!r->ignore_lease && rpc_lease_attach(x->env, r->key.data, r->key.len, lease) >= 0)
        return -1;
    if (mvcc_txn_put(x->env->store, r->key.data, r->key.len, value, value_len, lease,
                     r->prev_kv && x->want_reply ? prev_one : NULL, &prev) != MVCC_OK)
        return -1;
    x->changed = true;
    resp->prev_kv = prev.n > 0 ? prev.v[0] : NULL;
    resp->header = inner_header(&x->arena, rev_now(x));
    out->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
    out->response_put = resp;
    return 0;
}

/* A deleted key leaves its lease; its previous version kept if asked. */
struct del_collect {
    const struct rpc_env *env;
    struct prev_collect *prev; /* NULL: not asked */
};

static void del_one(void *arg, const struct mvcc_kv *kv)
{
    struct del_collect *d = arg;

    rpc_lease_detach(d->env, kv);
    if (d->prev != NULL)
        prev_one(d->prev, kv);
}

static int op_delete(struct txn_exec *x, const Etcdserverpb__DeleteRangeRequest *r,
                     Etcdserverpb__ResponseOp *out)
{
    Etcdserverpb__DeleteRangeResponse *resp = arena_alloc(&x->arena, sizeof(*resp));
    struct prev_collect prev = {&x->arena, NULL, 0, 0};
    struct del_collect dc = {x->env, r->prev_kv && x->want_reply ? &prev : NULL};
    int64_t n;

    if (resp == NULL)
        return -1;
    etcdserverpb__delete_range_response__init(resp);
    n = mvcc_txn_delete_range(x->env->store, r->key.data, r->key.len, r->range_end.data,
                              r->range_end.len, del_one, &dc);
    if (n < 0)
        return -1;
    if (n > 0)
        x->changed = true;
    resp->deleted = n;
    resp->n_prev_kvs = prev.n;
    resp->prev_kvs = prev.v;
    resp->header = inner_header(&x->arena, rev_now(x));
    out->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
    out->response_delete_range = resp;
    return 0;
}

static Etcdserverpb__TxnResponse *run_txn(struct txn_exec *x, const Etcdserverpb__TxnRequest *r,
                                          const struct txn_path *p, size_t *pos);

static int run_op(struct txn_exec *x, const Etcdserverpb__RequestOp *op,
                  Etcdserverpb__ResponseOp *out, const struct txn_path *p, size_t *pos)
{
    switch (op->request_case) {
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
        op_range(x, op->request_range, out);
        return 0;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
        return op_put(x, op->request_put, out);
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
        return op_delete(x, op->request_delete_range, out);
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
        out->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
        out->response_txn = run_txn(x, op->request_txn, p, pos);
        return out->response_txn != NULL ? 0 : -1;
    default:
        return 0;
    }
}

static Etcdserverpb__TxnResponse *run_txn(struct txn_exec *x, const Etcdserverpb__TxnRequest *r,
                                          const struct txn_path *p, size_t *pos)
{
    Etcdserverpb__TxnResponse *resp = arena_alloc(&x->arena, sizeof(*resp));
    bool ok = p->v[(*pos)++];
    Etcdserverpb__RequestOp **ops = ok ? r->success : r->failure;
    size_t n = ok ? r->n_success : r->n_failure;

    if (resp == NULL)
        return NULL;
    etcdserverpb__txn_response__init(resp);
    resp->succeeded = ok;
    resp->responses = arena_alloc(&x->arena, (n + 1) * sizeof(*resp->responses));
    if (resp->responses == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        Etcdserverpb__ResponseOp *o = arena_alloc(&x->arena, sizeof(*o));
        if (o == NULL)
            return NULL;
        etcdserverpb__response_op__init(o);
        if (run_op(x, ops[i], o, p, pos) != 0)
            return NULL;
        resp->responses[resp->n_responses++] = o;
    }
    resp->header = inner_header(&x->arena, rev_now(x));
    return resp;
}

/* Runs a checked txn. On the core (writer) inside one MVCC transaction;
 * on a shard (read-only txn) inside the caller's read section. */
static void execute(struct txn_exec *x, const Etcdserverpb__TxnRequest *r, struct rpc_result *out)
{
    struct txn_path path = {0};
    Etcdserverpb__TxnResponse *resp;
    Etcdserverpb__ResponseHeader hdr;
    size_t pos = 0;
    int e;

    /* The writer's view is the published state; a shard's is the state its
     * read section pinned. */
    x->base_rev =
        x->writer ? mvcc_current_revision(x->env->store) : mvcc_read_revision(x->env->reader);
    if (x->writer)
        mvcc_txn_begin(x->env->store); /* ends below; publishes only changes */
    if (path_build(x, r, &path) != 0) {
        rpc_fail(out, RPC_E_NOMEM);
        goto done;
    }
    if ((e = path_check(x, r, &path, &pos)) >= 0) {
        rpc_fail(out, (enum rpc_err)e);
        goto done;
    }
    pos = 0;
    resp = run_txn(x, r, &path, &pos);
    if (resp == NULL || x->arena.nomem) {
        rpc_fail(out, RPC_E_NOMEM);
        goto done;
    }
    if (x->want_reply) {
        rpc_header(x->env, &hdr, rev_now(x));
        resp->header = &hdr;
        rpc_reply_msg(out, &resp->base);
    } else {
        rpc_fail_code(out, RPC_OK, NULL);
    }
done:
    if (x->writer)
        mvcc_txn_end(x->env->store);
    free(path.v);
    arena_free(&x->arena);
}

/* As etcd decides it: a read-only txn may skip the read index only if
 * every operation of both branches is a serializable range. */
static bool ops_serializable(Etcdserverpb__RequestOp **ops, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE ||
            !ops[i]->request_range->serializable)
            return false;
    }
    return true;
}

static bool txn_serializable(const Etcdserverpb__TxnRequest *r)
{
    return ops_serializable(r->success, r->n_success) && ops_serializable(r->failure, r->n_failure);
}

void rpc_kv_txn(const struct rpc_env *env, const uint8_t *msg, size_t len, struct rpc_result *out)
{
    Etcdserverpb__TxnRequest *r = etcdserverpb__txn_request__unpack(NULL, len, msg);
    struct txn_exec x;
    int e;

    if (r == NULL) {
        rpc_fail_unmarshal(out, msg, len);
        return;
    }
    if ((e = check_txn(r, env->member->max_txn_ops)) >= 0) {
        rpc_fail(out, (enum rpc_err)e);
    } else if (has_duplicates(r)) {
        rpc_fail(out, RPC_E_DUPLICATE_KEY);
    } else if (txn_writes(r)) {
        if (rpc_txn_has_put(r) && rpc_quota_exceeded(env, len))
            rpc_quota_fail(env, out);
        else
            rpc_propose(env, RPC_ENTRY_TXN, msg, len, out);
    } else if (!txn_serializable(r) && rpc_needs_read_index(env)) {
        out->action = RPC_ACT_READ_BARRIER;
    } else {
        memset(&x, 0, sizeof(x));
        x.env = env;
        x.want_reply = true;
        mvcc_read_begin(env->reader);
        execute(&x, r, out);
        mvcc_read_end(env->reader);
    }
    etcdserverpb__txn_request__free_unpacked(r, NULL);
}

void rpc_apply_txn(const struct rpc_env *env, const Etcdserverpb__TxnRequest *r, bool want_reply,
                   struct rpc_result *out)
{
    struct txn_exec x;

    if (rpc_alarm_active(env, ETCDSERVERPB__ALARM_TYPE__NOSPACE) && rpc_txn_has_put(r)) {
        rpc_fail(out, RPC_E_NOSPACE);
        return;
    }
    memset(&x, 0, sizeof(x));
    x.env = env;
    x.writer = true;
    x.want_reply = want_reply;
    mvcc_read_begin(env->reader); /* history reads (revision > 0) */
    execute(&x, r, out);
    mvcc_read_end(env->reader);
}
