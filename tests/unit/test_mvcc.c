/*
 * test_mvcc.c — unit tests for src/mvcc (mvcc.c and btree.c).
 *
 * Semantics are checked against etcd's (etcdserver/apply.go applyRange,
 * mvcc/kvstore_txn.go): revisions, versions and generations, range_end
 * rules, limit/more/count, sort, filters, keys_only/count_only, deletes.
 * Then issue 3: Txn-side reads of the open transaction, compaction (etcd
 * key_index.go compact(): semantics, errors, steps interleaved with
 * writes against a never-compacted twin store, tree shrinking), HashKV
 * (a known-answer vector, equal and unequal histories), dump/restore
 * (round trip at every retained revision, errors, 1M keys timed),
 * restore on a live store (replacing a populated store with history,
 * tombstones and compactions done and in progress; a reader pinned across
 * the swap; abort and failed finishes leave everything as it was; old
 * trees reclaimed, which ASan's leak check confirms), and a key put 2M
 * times (worst put latency printed). The last two tests run one writer
 * and several reader threads: the writer writes and compacts in steps, or
 * replaces the whole state again and again, and every read section must
 * see one consistent published state. cmocka is not thread safe, so
 * reader threads count violations and the main thread asserts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mvcc.h"

/* ---- helpers ---- */

struct fix {
    struct mvcc_store *s;
    struct mvcc_reader *r;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->s = mvcc_create();
    assert_non_null(f->s);
    f->r = mvcc_reader_register(f->s);
    assert_non_null(f->r);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;

    mvcc_reader_unregister(f->r);
    mvcc_destroy(f->s);
    free(f);
    return 0;
}

#define B(str) ((const uint8_t *)(str))

static int64_t put(struct mvcc_store *s, const char *k, const char *v)
{
    mvcc_txn_begin(s);
    assert_int_equal(mvcc_txn_put(s, B(k), strlen(k), B(v), strlen(v), 0, NULL, NULL), MVCC_OK);
    return mvcc_txn_end(s);
}

static int64_t del(struct mvcc_store *s, const char *k, const char *end, int64_t *deleted)
{
    int64_t n;

    mvcc_txn_begin(s);
    n = mvcc_txn_delete_range(s, B(k), strlen(k), B(end), end ? strlen(end) : 0, NULL, NULL);
    assert_true(n >= 0);
    if (deleted != NULL)
        *deleted = n;
    return mvcc_txn_end(s);
}

static struct mvcc_range_req req_of(const char *k, const char *end)
{
    struct mvcc_range_req q = {0};

    q.key = B(k);
    q.key_len = strlen(k);
    q.range_end = B(end);
    q.range_end_len = end ? strlen(end) : 0;
    return q;
}

/* Replaces res->kvs by one block holding the array, keys and values, so
 * the result outlives the read section; mvcc_range_res_free frees it. */
static void res_detach(struct mvcc_range_res *res)
{
    size_t bytes = res->n * sizeof(res->kvs[0]);
    struct mvcc_kv *kvs;
    uint8_t *p;

    for (size_t i = 0; i < res->n; i++)
        bytes += res->kvs[i].key_len + res->kvs[i].value_len;
    kvs = malloc(bytes ? bytes : 1);
    assert_non_null(kvs);
    p = (uint8_t *)(kvs + res->n);
    for (size_t i = 0; i < res->n; i++) {
        kvs[i] = res->kvs[i];
        kvs[i].key = memcpy(p, res->kvs[i].key, kvs[i].key_len);
        p += kvs[i].key_len;
        if (kvs[i].value != NULL)
            kvs[i].value = memcpy(p, res->kvs[i].value, kvs[i].value_len);
        p += kvs[i].value_len;
    }
    free(res->kvs);
    res->kvs = kvs;
}

/* Range with the reader in its own read section; the result is detached
 * from the index, so the caller may check it after the section. */
static int range(struct mvcc_reader *r, const struct mvcc_range_req *q, struct mvcc_range_res *res)
{
    int rv;

    mvcc_read_begin(r);
    rv = mvcc_range(r, q, res);
    res_detach(res);
    mvcc_read_end(r);
    return rv;
}

/* Range over [k, end) ("" end = single key) at rev, with values copied
 * out as "key=value,..." for easy comparison. */
static int range_fmt(struct mvcc_reader *r, struct mvcc_range_req *q, char *out, size_t cap)
{
    struct mvcc_range_res res;
    size_t off = 0;
    int rv = mvcc_range(r, q, &res);

    out[0] = 0;
    for (size_t i = 0; i < res.n && off < cap; i++) {
        int w = snprintf(out + off, cap - off, "%s%.*s=%.*s", i ? "," : "", (int)res.kvs[i].key_len,
                         (const char *)res.kvs[i].key, (int)res.kvs[i].value_len,
                         (const char *)res.kvs[i].value);
        off += w > 0 ? (size_t)w : 0;
    }
    mvcc_range_res_free(&res);
    return off < cap ? rv : -100;
}

/* Asserts only after the read section ends, so a failing check never
 * leaves the reader inside one. */
static void range_str(struct mvcc_reader *r, struct mvcc_range_req *q, char *out, size_t cap)
{
    int rv;

    mvcc_read_begin(r);
    rv = range_fmt(r, q, out, cap);
    mvcc_read_end(r);
    assert_int_equal(rv, MVCC_OK);
}

/* Looks key up at rev; returns false when absent. */
static bool get(struct mvcc_reader *r, const char *k, int64_t rev, struct mvcc_kv *kv)
{
    struct mvcc_range_req q = req_of(k, NULL);
    struct mvcc_range_res res;
    bool found;

    q.revision = rev;
    assert_int_equal(range(r, &q, &res), MVCC_OK);
    found = res.n == 1;
    assert_true(res.n <= 1);
    assert_int_equal(res.count, (int64_t)res.n);
    if (found) {
        *kv = res.kvs[0];
        kv->key = NULL; /* pointers die with res */
        kv->value = NULL;
    }
    mvcc_range_res_free(&res);
    return found;
}

static void assert_kv(const struct mvcc_kv *kv, int64_t create, int64_t mod, int64_t ver)
{
    assert_int_equal(kv->create_revision, create);
    assert_int_equal(kv->mod_revision, mod);
    assert_int_equal(kv->version, ver);
}

/* ---- basic semantics ---- */

static void test_fresh_store(void **state)
{
    struct fix *f = *state;
    struct mvcc_range_req q = req_of("\0", NULL);
    struct mvcc_range_res res;

    q.key_len = 1;
    q.range_end = B("\0");
    q.range_end_len = 1;
    assert_int_equal(mvcc_current_revision(f->s), 1);
    assert_int_equal(mvcc_compact_revision(f->s), 0);
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 0);
    assert_int_equal(res.count, 0);
    assert_false(res.more);
    assert_int_equal(res.revision, 1);
    mvcc_range_res_free(&res);
}

static void test_put_get(void **state)
{
    struct fix *f = *state;
    struct mvcc_range_req q = req_of("foo", NULL);
    struct mvcc_range_res res;

    mvcc_txn_begin(f->s);
    assert_int_equal(mvcc_txn_put(f->s, B("foo"), 3, B("bar"), 3, 77, NULL, NULL), MVCC_OK);
    assert_int_equal(mvcc_txn_end(f->s), 2);
    assert_int_equal(mvcc_current_revision(f->s), 2);

    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.count, 1);
    assert_int_equal(res.revision, 2);
    assert_memory_equal(res.kvs[0].key, "foo", 3);
    assert_int_equal(res.kvs[0].key_len, 3);
    assert_memory_equal(res.kvs[0].value, "bar", 3);
    assert_int_equal(res.kvs[0].value_len, 3);
    assert_int_equal(res.kvs[0].lease, 77);
    assert_kv(&res.kvs[0], 2, 2, 1);
    mvcc_range_res_free(&res);

    /* A missing key and a key that is a prefix of a present one. */
    q = req_of("fo", NULL);
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 0);
    assert_int_equal(res.count, 0);
    mvcc_range_res_free(&res);

    /* An empty value is a value. */
    put(f->s, "empty", "");
    q = req_of("empty", NULL);
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.kvs[0].value_len, 0);
    mvcc_range_res_free(&res);
}

static void test_versions_generations(void **state)
{
    struct fix *f = *state;
    struct mvcc_kv kv;
    int64_t n;

    assert_int_equal(put(f->s, "a", "1"), 2);
    assert_int_equal(put(f->s, "a", "2"), 3);
    assert_true(get(f->r, "a", 0, &kv));
    assert_kv(&kv, 2, 3, 2);
    assert_int_equal(del(f->s, "a", NULL, &n), 4);
    assert_int_equal(n, 1);
    assert_false(get(f->r, "a", 0, &kv));
    assert_int_equal(put(f->s, "a", "3"), 5);
    assert_true(get(f->r, "a", 0, &kv));
    assert_kv(&kv, 5, 5, 1); /* a new generation */
    assert_int_equal(put(f->s, "a", "4"), 6);
    assert_true(get(f->r, "a", 0, &kv));
    assert_kv(&kv, 5, 6, 2);

    /* History. */
    assert_false(get(f->r, "a", 1, &kv));
    assert_true(get(f->r, "a", 2, &kv));
    assert_kv(&kv, 2, 2, 1);
    assert_true(get(f->r, "a", 3, &kv));
    assert_kv(&kv, 2, 3, 2);
    assert_false(get(f->r, "a", 4, &kv));
    assert_true(get(f->r, "a", 5, &kv));
    assert_kv(&kv, 5, 5, 1);
}

static void test_txn_shares_revision(void **state)
{
    struct fix *f = *state;
    struct mvcc_kv kv;

    mvcc_txn_begin(f->s);
    assert_int_equal(mvcc_txn_put(f->s, B("x"), 1, B("1"), 1, 0, NULL, NULL), MVCC_OK);
    assert_int_equal(mvcc_txn_put(f->s, B("y"), 1, B("1"), 1, 0, NULL, NULL), MVCC_OK);
    assert_int_equal(mvcc_txn_put(f->s, B("x"), 1, B("2"), 1, 0, NULL, NULL), MVCC_OK);
    assert_int_equal(mvcc_txn_end(f->s), 2);
    assert_true(get(f->r, "x", 0, &kv));
    assert_kv(&kv, 2, 2, 2); /* etcd: a second put in one txn bumps version */
    assert_true(get(f->r, "y", 0, &kv));
    assert_kv(&kv, 2, 2, 1);

    /* Delete then put in one txn: the put starts a generation. */
    mvcc_txn_begin(f->s);
    assert_int_equal(mvcc_txn_delete_range(f->s, B("x"), 1, NULL, 0, NULL, NULL), 1);
    assert_int_equal(mvcc_txn_put(f->s, B("x"), 1, B("3"), 1, 0, NULL, NULL), MVCC_OK);
    assert_int_equal(mvcc_txn_end(f->s), 3);
    assert_true(get(f->r, "x", 0, &kv));
    assert_kv(&kv, 3, 3, 1);

    /* An empty txn does not advance. */
    mvcc_txn_begin(f->s);
    assert_int_equal(mvcc_txn_end(f->s), 3);
}

static void test_range_end_rules(void **state)
{
    struct fix *f = *state;
    const char *keys[] = {"a", "ab", "abc", "abd", "ac", "b", "c"};
    struct mvcc_range_req q;
    char out[256];

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        put(f->s, keys[i], keys[i]);

    q = req_of("ab", "ac"); /* prefix "ab" */
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "ab=ab,abc=abc,abd=abd");

    q = req_of("abc", NULL); /* single key */
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "abc=abc");

    q = req_of("ac", "\0"); /* from key */
    q.range_end_len = 1;
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "ac=ac,b=b,c=c");

    q = req_of("\0", "\0"); /* every key */
    q.key_len = 1;
    q.range_end_len = 1;
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "a=a,ab=ab,abc=abc,abd=abd,ac=ac,b=b,c=c");

    q = req_of("b", "a"); /* end before key: nothing */
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "");

    q = req_of("a", "b"); /* end is exclusive, key inclusive */
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "a=a,ab=ab,abc=abc,abd=abd,ac=ac");

    q = req_of("aa", "abd"); /* bounds that are not keys */
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "ab=ab,abc=abc");
}

static void test_binary_keys(void **state)
{
    struct fix *f = *state;
    const uint8_t k1[] = {0x00}, k2[] = {0x00, 0x00}, k3[] = {0xff}, k4[] = {0x7f, 0x80};
    const uint8_t *ks[] = {k3, k1, k4, k2};
    size_t ls[] = {1, 1, 2, 2};
    struct mvcc_range_req q = {0};
    struct mvcc_range_res res;

    mvcc_txn_begin(f->s);
    for (int i = 0; i < 4; i++)
        assert_int_equal(mvcc_txn_put(f->s, ks[i], ls[i], NULL, 0, 0, NULL, NULL), MVCC_OK);
    mvcc_txn_end(f->s);
    q.key = k1;
    q.key_len = 1;
    q.range_end = k1;
    q.range_end_len = 1;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 4); /* 00 < 00 00 < 7f 80 < ff */
    assert_memory_equal(res.kvs[0].key, k1, 1);
    assert_int_equal(res.kvs[0].key_len, 1);
    assert_memory_equal(res.kvs[1].key, k2, 2);
    assert_memory_equal(res.kvs[2].key, k4, 2);
    assert_memory_equal(res.kvs[3].key, k3, 1);
    mvcc_range_res_free(&res);
}

static void put_n(struct mvcc_store *s, int n)
{
    char k[32], v[32];

    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof(k), "key%03d", i);
        snprintf(v, sizeof(v), "val%03d", i);
        put(s, k, v);
    }
}

static void test_limit_more_count(void **state)
{
    struct fix *f = *state;
    struct mvcc_range_req q = req_of("key", "kez");
    struct mvcc_range_res res;

    put_n(f->s, 10);
    put(f->s, "other", "x");
    q.limit = 3;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 3);
    assert_true(res.more);
    assert_int_equal(res.count, 10);
    assert_memory_equal(res.kvs[2].key, "key002", 6);
    mvcc_range_res_free(&res);

    q.limit = 9;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 9);
    assert_true(res.more);
    mvcc_range_res_free(&res);

    for (int64_t limit = 10; limit <= 12; limit++) {
        q.limit = limit;
        assert_int_equal(range(f->r, &q, &res), MVCC_OK);
        assert_int_equal(res.n, 10);
        assert_false(res.more);
        assert_int_equal(res.count, 10);
        mvcc_range_res_free(&res);
    }

    q.limit = 0; /* no limit */
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 10);
    assert_false(res.more);
    mvcc_range_res_free(&res);

    /* A deleted key no longer counts. */
    del(f->s, "key004", NULL, NULL);
    q.limit = 3;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.count, 9);
    assert_true(res.more);
    mvcc_range_res_free(&res);
}

static void test_revision_history(void **state)
{
    struct fix *f = *state;
    struct mvcc_range_req q = req_of("k", "l");
    char out[128];

    put(f->s, "k1", "a");        /* 2 */
    put(f->s, "k2", "b");        /* 3 */
    put(f->s, "k1", "c");        /* 4 */
    del(f->s, "k2", NULL, NULL); /* 5 */
    put(f->s, "k3", "d");        /* 6 */
    del(f->s, "k", "l", NULL);   /* 7 */
    const char *want[] = {"", "", "k1=a", "k1=a,k2=b", "k1=c,k2=b", "k1=c", "k1=c,k3=d", ""};

    for (int64_t rev = 1; rev <= 7; rev++) {
        q.revision = rev;
        range_str(f->r, &q, out, sizeof(out));
        assert_string_equal(out, want[rev]);
    }
    q.revision = 0;
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "");
    q.revision = -5; /* <= 0 is current */
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "");
}

static void test_future_revision(void **state)
{
    struct fix *f = *state;
    struct mvcc_range_req q = req_of("a", NULL);
    struct mvcc_range_res res;

    put(f->s, "a", "1");
    q.revision = 3;
    assert_int_equal(range(f->r, &q, &res), MVCC_ERR_FUTURE_REV);
    assert_int_equal(res.n, 0);
    mvcc_range_res_free(&res);
    q.revision = 2;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 1);
    mvcc_range_res_free(&res);
}

static void test_keys_only_count_only(void **state)
{
    struct fix *f = *state;
    struct mvcc_range_req q = req_of("key", "kez");
    struct mvcc_range_res res;

    put_n(f->s, 5);
    q.keys_only = true;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 5);
    for (size_t i = 0; i < res.n; i++) {
        assert_null(res.kvs[i].value);
        assert_int_equal(res.kvs[i].value_len, 0);
        assert_int_equal(res.kvs[i].key_len, 6);
        assert_int_equal(res.kvs[i].version, 1);
    }
    mvcc_range_res_free(&res);

    q.keys_only = false;
    q.count_only = true;
    q.limit = 2;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 0);
    assert_int_equal(res.count, 5);
    assert_false(res.more); /* etcd: no kvs, so never more */
    mvcc_range_res_free(&res);
}

/* Keys k0..k4 with distinct version, create, mod and value orders. */
static void sort_fixture(struct mvcc_store *s)
{
    put(s, "k3", "c");  /* 2 */
    put(s, "k1", "e");  /* 3 */
    put(s, "k4", "a");  /* 4 */
    put(s, "k0", "d");  /* 5 */
    put(s, "k2", "b");  /* 6 */
    put(s, "k1", "e");  /* 7: k1 version 2 */
    put(s, "k1", "e");  /* 8: k1 version 3 */
    put(s, "k4", "a");  /* 9: k4 version 2 */
    put(s, "k3", "cc"); /* 10: k3 version 2 */
}

static void sort_check(struct mvcc_reader *r, int target, int order, const char *want)
{
    struct mvcc_range_req q = req_of("k", "l");
    struct mvcc_range_res res;
    char got[64] = "";

    q.sort_target = target;
    q.sort_order = order;
    assert_int_equal(range(r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 5);
    for (size_t i = 0; i < res.n; i++)
        got[i] = (char)res.kvs[i].key[1];
    mvcc_range_res_free(&res);
    assert_string_equal(got, want);
}

static void test_sort(void **state)
{
    struct fix *f = *state;

    sort_fixture(f->s);
    sort_check(f->r, MVCC_TARGET_KEY, MVCC_SORT_NONE, "01234");
    sort_check(f->r, MVCC_TARGET_KEY, MVCC_SORT_ASCEND, "01234");
    sort_check(f->r, MVCC_TARGET_KEY, MVCC_SORT_DESCEND, "43210");
    /* versions: k0 1, k1 3, k2 1, k3 2, k4 2; ties stay in key order */
    sort_check(f->r, MVCC_TARGET_VERSION, MVCC_SORT_ASCEND, "02341");
    sort_check(f->r, MVCC_TARGET_VERSION, MVCC_SORT_DESCEND, "13402");
    sort_check(f->r, MVCC_TARGET_VERSION, MVCC_SORT_NONE, "02341"); /* etcd: ascend */
    /* create: k3 2, k1 3, k4 4, k0 5, k2 6 */
    sort_check(f->r, MVCC_TARGET_CREATE, MVCC_SORT_ASCEND, "31402");
    sort_check(f->r, MVCC_TARGET_CREATE, MVCC_SORT_DESCEND, "20413");
    sort_check(f->r, MVCC_TARGET_CREATE, MVCC_SORT_NONE, "31402");
    /* mod: k0 5, k2 6, k1 8, k4 9, k3 10 */
    sort_check(f->r, MVCC_TARGET_MOD, MVCC_SORT_ASCEND, "02143");
    sort_check(f->r, MVCC_TARGET_MOD, MVCC_SORT_DESCEND, "34120");
    sort_check(f->r, MVCC_TARGET_MOD, MVCC_SORT_NONE, "02143");
    /* value: k4 a, k2 b, k3 cc, k0 d, k1 e ("c" < "cc" would matter too) */
    sort_check(f->r, MVCC_TARGET_VALUE, MVCC_SORT_ASCEND, "42301");
    sort_check(f->r, MVCC_TARGET_VALUE, MVCC_SORT_DESCEND, "10324");
    sort_check(f->r, MVCC_TARGET_VALUE, MVCC_SORT_NONE, "42301");
}

static void test_sort_limit(void **state)
{
    struct fix *f = *state;
    struct mvcc_range_req q = req_of("k", "l");
    struct mvcc_range_res res;

    sort_fixture(f->s);
    /* Sorted: the whole range is sorted first, then truncated. */
    q.sort_target = MVCC_TARGET_MOD;
    q.sort_order = MVCC_SORT_DESCEND;
    q.limit = 2;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 2);
    assert_true(res.more);
    assert_int_equal(res.count, 5);
    assert_int_equal(res.kvs[0].key[1], '3');
    assert_int_equal(res.kvs[1].key[1], '4');
    mvcc_range_res_free(&res);

    /* Target without order: etcd fetches limit+1 in key order and sorts
     * those (applyRange only widens the fetch when sort_order != NONE). */
    q.sort_order = MVCC_SORT_NONE;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 2);
    assert_true(res.more);
    assert_int_equal(res.kvs[0].key[1], '0'); /* k0 5, k2 6, k1 8 -> k0, k2 */
    assert_int_equal(res.kvs[1].key[1], '2');
    mvcc_range_res_free(&res);
}

static void filter_check(struct mvcc_reader *r, struct mvcc_range_req *q, const char *want,
                         int64_t limit, bool more)
{
    struct mvcc_range_res res;
    char got[64] = "";

    q->limit = limit;
    assert_int_equal(range(r, q, &res), MVCC_OK);
    for (size_t i = 0; i < res.n; i++)
        got[i] = (char)res.kvs[i].key[1];
    assert_int_equal(res.count, 5); /* before filters, as etcd reports */
    assert_int_equal(res.more, more);
    mvcc_range_res_free(&res);
    assert_string_equal(got, want);
}

static void test_filters(void **state)
{
    struct fix *f = *state;
    struct mvcc_range_req q = req_of("k", "l");

    sort_fixture(f->s);
    q.min_mod_revision = 8; /* mod: k0 5, k1 8, k2 6, k3 10, k4 9 */
    filter_check(f->r, &q, "134", 0, false);
    q.max_mod_revision = 9;
    filter_check(f->r, &q, "14", 0, false);
    q.min_mod_revision = 0;
    filter_check(f->r, &q, "0124", 0, false);
    filter_check(f->r, &q, "012", 3, true);
    q.max_mod_revision = 0;
    q.min_create_revision = 4; /* create: k0 5, k1 3, k2 6, k3 2, k4 4 */
    filter_check(f->r, &q, "024", 0, false);
    q.max_create_revision = 5;
    filter_check(f->r, &q, "04", 0, false);
    filter_check(f->r, &q, "04", 2, false);
    q.min_create_revision = 0;
    filter_check(f->r, &q, "0134", 0, false);
    filter_check(f->r, &q, "0", 1, true);
}

struct prevs {
    char buf[256];
    int n;
};

static void prev_cb(void *arg, const struct mvcc_kv *kv)
{
    struct prevs *p = arg;
    size_t off = strlen(p->buf);

    snprintf(p->buf + off, sizeof(p->buf) - off, "%s%.*s=%.*s@%lld/%lld/%lld", p->n ? "," : "",
             (int)kv->key_len, (const char *)kv->key, (int)kv->value_len, (const char *)kv->value,
             (long long)kv->create_revision, (long long)kv->mod_revision, (long long)kv->version);
    p->n++;
}

static void test_delete_range_prev(void **state)
{
    struct fix *f = *state;
    struct prevs p = {0};
    char out[128];
    struct mvcc_range_req q = req_of("a", "z");

    put(f->s, "b", "1");        /* 2 */
    put(f->s, "a", "2");        /* 3 */
    put(f->s, "c", "3");        /* 4 */
    put(f->s, "b", "4");        /* 5 */
    del(f->s, "c", NULL, NULL); /* 6 */
    put(f->s, "d", "5");        /* 7 */
    mvcc_txn_begin(f->s);
    assert_int_equal(mvcc_txn_delete_range(f->s, B("a"), 1, B("d"), 1, prev_cb, &p), 2);
    assert_int_equal(mvcc_txn_end(f->s), 8);
    assert_string_equal(p.buf, "a=2@3/3/1,b=4@2/5/2"); /* c was already deleted */
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "d=5");

    /* Put reports the live previous version, not a tombstone. */
    memset(&p, 0, sizeof(p));
    mvcc_txn_begin(f->s);
    assert_int_equal(mvcc_txn_put(f->s, B("a"), 1, B("x"), 1, 0, prev_cb, &p), MVCC_OK);
    assert_int_equal(mvcc_txn_put(f->s, B("d"), 1, B("y"), 1, 0, prev_cb, &p), MVCC_OK);
    assert_int_equal(mvcc_txn_end(f->s), 9);
    assert_string_equal(p.buf, "d=5@7/7/1");
}

static void test_empty_delete_keeps_revision(void **state)
{
    struct fix *f = *state;
    int64_t n = -1;

    put(f->s, "a", "1");
    assert_int_equal(del(f->s, "b", NULL, &n), 2);
    assert_int_equal(n, 0);
    assert_int_equal(del(f->s, "b", "z", &n), 2);
    assert_int_equal(n, 0);
    assert_int_equal(del(f->s, "a", NULL, &n), 3);
    assert_int_equal(n, 1);
    assert_int_equal(del(f->s, "a", NULL, &n), 3); /* already a tombstone */
    assert_int_equal(n, 0);
    assert_int_equal(mvcc_current_revision(f->s), 3);
}

/* ---- tree shape, memory, snapshots ---- */

static void test_many_keys(void **state)
{
    struct fix *f = *state;
    enum { N = 20000 };
    struct mvcc_range_req q = req_of("", "\0");
    struct mvcc_range_res res;
    uint64_t size0 = mvcc_size_bytes(f->s);
    char k[32];
    uint32_t x = 12345;
    int64_t n;

    q.range_end_len = 1;
    /* Each key once, in a scrambled order (i * 7919 mod N is a bijection). */
    for (int t = 0; t < N / 100; t++) {
        mvcc_txn_begin(f->s);
        for (int i = 0; i < 100; i++) {
            int id = (int)(((int64_t)(t * 100 + i) * 7919) % N);
            snprintf(k, sizeof(k), "%08d", id);
            assert_int_equal(mvcc_txn_put(f->s, B(k), 8, B(k), 8, 0, NULL, NULL), MVCC_OK);
        }
        mvcc_txn_end(f->s);
    }
    assert_int_equal(mvcc_current_revision(f->s), 1 + N / 100);
    assert_true(mvcc_size_bytes(f->s) > size0 + (uint64_t)N * (8 + 8 + 48));
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, N);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "%08d", i);
        assert_memory_equal(res.kvs[i].key, k, 8);
        assert_memory_equal(res.kvs[i].value, k, 8);
    }
    mvcc_range_res_free(&res);
    for (int i = 0; i < 200; i++) { /* point reads hit every part of the tree */
        struct mvcc_kv kv;
        x = x * 1103515245u + 12345u;
        snprintf(k, sizeof(k), "%08u", (x >> 8) % N);
        assert_true(get(f->r, k, 0, &kv));
    }
    /* Delete a middle slice, then check count and neighbours. */
    del(f->s, "00005000", "00015000", &n);
    assert_int_equal(n, 10000);
    q.count_only = true;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.count, N - 10000);
    mvcc_range_res_free(&res);
    q = req_of("00004999", "00015001");
    q.count_only = false;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 2);
    assert_memory_equal(res.kvs[1].key, "00015000", 8);
    mvcc_range_res_free(&res);
}

static void test_size_bytes(void **state)
{
    struct fix *f = *state;
    uint64_t s0 = mvcc_size_bytes(f->s), s1, s2;
    char *big = malloc(100000);

    assert_true(s0 > 0); /* the empty root */
    memset(big, 'v', 100000);
    mvcc_txn_begin(f->s);
    assert_int_equal(mvcc_txn_put(f->s, B("big"), 3, (uint8_t *)big, 100000, 0, NULL, NULL),
                     MVCC_OK);
    mvcc_txn_end(f->s);
    s1 = mvcc_size_bytes(f->s);
    assert_true(s1 >= s0 + 100000);
    assert_true(s1 < s0 + 100000 + 4096);
    del(f->s, "big", NULL, NULL); /* history keeps the value until compaction */
    s2 = mvcc_size_bytes(f->s);
    assert_true(s2 >= s1);
    free(big);
}

static void test_pinned_snapshot(void **state)
{
    struct fix *f = *state;
    struct mvcc_range_req q = req_of("key", "kez");
    struct mvcc_range_res res;
    char v[32], out[64];
    int rv, bad = 0;
    size_t n;
    int64_t rev;

    put_n(f->s, 50);
    mvcc_read_begin(f->r);
    /* Many write txns replace every node and version array the pinned
     * state uses; epoch reclamation must not free them (ASan checks). */
    for (int t = 0; t < 300; t++) {
        mvcc_txn_begin(f->s);
        for (int i = 0; i < 50; i++) {
            char k[16];
            snprintf(k, sizeof(k), "key%03d", i);
            snprintf(v, sizeof(v), "new%d", t);
            mvcc_txn_put(f->s, B(k), 6, B(v), strlen(v), 0, NULL, NULL);
        }
        if (t % 10 == 0)
            mvcc_txn_delete_range(f->s, B("key"), 3, B("kez"), 3, NULL, NULL);
        mvcc_txn_end(f->s);
    }
    rv = mvcc_range(f->r, &q, &res);
    for (size_t i = 0; i < res.n; i++) {
        snprintf(v, sizeof(v), "val%03zu", i);
        bad += memcmp(res.kvs[i].value, v, 6) != 0 || res.kvs[i].version != 1;
    }
    n = res.n;
    rev = res.revision;
    mvcc_range_res_free(&res);
    mvcc_read_end(f->r);
    assert_int_equal(rv, MVCC_OK);
    assert_int_equal(rev, 51);
    assert_int_equal(n, 50);
    assert_int_equal(bad, 0);
    assert_int_equal(mvcc_current_revision(f->s), 351);
    q = req_of("key000", NULL);
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "key000=new299");
}

static void test_reader_recycle(void **state)
{
    struct fix *f = *state;
    struct mvcc_reader *a, *b;
    struct mvcc_kv kv;

    put(f->s, "a", "1");
    a = mvcc_reader_register(f->s);
    assert_non_null(a);
    mvcc_reader_unregister(a);
    b = mvcc_reader_register(f->s);
    assert_ptr_equal(a, b); /* the record is reused */
    assert_true(get(b, "a", 0, &kv));
    mvcc_reader_unregister(b);
}

/* ---- helpers for history tests ---- */

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Every key at rev with every field, as one malloc'd string; *rv gets
 * mvcc_range's answer. */
static char *state_str(struct mvcc_reader *r, int64_t rev, int *rv)
{
    struct mvcc_range_req q = {0};
    struct mvcc_range_res res;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    q.range_end = B("\0");
    q.range_end_len = 1;
    q.revision = rev;
    mvcc_read_begin(r);
    *rv = mvcc_range(r, &q, &res);
    for (size_t i = 0; f != NULL && i < res.n; i++) {
        const struct mvcc_kv *kv = &res.kvs[i];
        fprintf(f, "%.*s=%.*s/%lld/%lld/%lld/%lld;", (int)kv->key_len, (const char *)kv->key,
                (int)kv->value_len, (const char *)kv->value, (long long)kv->create_revision,
                (long long)kv->mod_revision, (long long)kv->version, (long long)kv->lease);
    }
    mvcc_range_res_free(&res);
    mvcc_read_end(r);
    assert_non_null(f);
    fclose(f);
    return buf;
}

/* Both readers' stores answer the same at rev (the same error, or the
 * same keys with the same fields). */
static void assert_same_at(struct mvcc_reader *a, struct mvcc_reader *b, int64_t rev)
{
    int ra, rb;
    char *sa = state_str(a, rev, &ra), *sb = state_str(b, rev, &rb);
    int same = strcmp(sa, sb) == 0;

    if (ra != rb || !same)
        fprintf(stderr, "rev %lld: rv %d vs %d\n  %.300s\n  %.300s\n", (long long)rev, ra, rb, sa,
                sb);
    free(sa);
    free(sb);
    assert_int_equal(ra, rb);
    assert_true(same);
}

static int hash_at(struct mvcc_reader *r, int64_t rev, uint32_t *h)
{
    int64_t hr, cr;
    int rv;

    mvcc_read_begin(r);
    rv = mvcc_hash_kv(r, rev, h, &hr, &cr);
    mvcc_read_end(r);
    return rv;
}

static uint32_t hash_of(struct mvcc_reader *r, int64_t rev)
{
    uint32_t h;

    assert_int_equal(hash_at(r, rev, &h), MVCC_OK);
    return h;
}

static int range_rv(struct mvcc_reader *r, const char *k, int64_t rev)
{
    struct mvcc_range_req q = req_of(k, NULL);
    struct mvcc_range_res res;
    int rv;

    q.revision = rev;
    rv = range(r, &q, &res);
    mvcc_range_res_free(&res);
    return rv;
}

static uint32_t rnd(uint32_t *x)
{
    *x = *x * 1103515245u + 12345u;
    return *x >> 8;
}

/* One pseudo-random write txn over keys k000..k199 and a hot key: puts
 * (with leases), single deletes and small range deletes; now and then the
 * hot key is deleted too. */
static void gen_txn(struct mvcc_store *s, uint32_t *x, int t)
{
    int ops = 1 + (int)(rnd(x) % 3);
    char k[16], e[16], v[32];

    mvcc_txn_begin(s);
    for (int i = 0; i < ops; i++) {
        unsigned r = rnd(x) % 100, id = rnd(x) % 200;
        snprintf(k, sizeof(k), "k%03u", id);
        snprintf(e, sizeof(e), "k%03u", id + 5);
        snprintf(v, sizeof(v), "v%d.%d", t, i);
        if (r < 40)
            mvcc_txn_put(s, B(k), 4, B(v), strlen(v), rnd(x) % 3, NULL, NULL);
        else if (r < 69)
            mvcc_txn_put(s, B("hot"), 3, B(v), strlen(v), 0, NULL, NULL);
        else if (r < 70) /* a key of many chunks goes */
            assert_true(mvcc_txn_delete_range(s, B("hot"), 3, NULL, 0, NULL, NULL) >= 0);
        else if (r < 90)
            assert_true(mvcc_txn_delete_range(s, B(k), 4, NULL, 0, NULL, NULL) >= 0);
        else
            assert_true(mvcc_txn_delete_range(s, B(k), 4, B(e), 4, NULL, NULL) >= 0);
    }
    mvcc_txn_end(s);
}

/* An owned copy of a dump. */
struct dumped {
    struct mvcc_version *v;
    size_t n, cap;
    int stop_after; /* > 0: the callback returns 7 after this many */
};

static int dump_cb(void *arg, const struct mvcc_version *v)
{
    struct dumped *d = arg;
    struct mvcc_version *c;

    if (d->stop_after > 0 && (int)d->n == d->stop_after)
        return 7;
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->v = realloc(d->v, d->cap * sizeof(d->v[0]));
        if (d->v == NULL)
            return -1;
    }
    c = &d->v[d->n++];
    *c = *v;
    c->key = memcpy(malloc(v->key_len + 1), v->key, v->key_len);
    c->value = v->value_len ? memcpy(malloc(v->value_len), v->value, v->value_len) : NULL;
    return 0;
}

static void dump_store(struct mvcc_reader *r, struct dumped *d, int64_t *rev, int64_t *compact)
{
    int rv;

    memset(d, 0, sizeof(*d));
    mvcc_read_begin(r);
    rv = mvcc_dump(r, rev, compact, dump_cb, d);
    mvcc_read_end(r);
    assert_int_equal(rv, 0);
}

static void dumped_free(struct dumped *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free((void *)d->v[i].key);
        free((void *)d->v[i].value);
    }
    free(d->v);
}

static void restore_into(struct mvcc_store *s, const struct dumped *d, int64_t rev, int64_t compact)
{
    for (size_t i = 0; i < d->n; i++)
        assert_int_equal(mvcc_restore_version(s, &d->v[i]), MVCC_OK);
    assert_int_equal(mvcc_restore_finish(s, rev, compact), MVCC_OK);
}

static struct mvcc_store *restore_of(const struct dumped *d, int64_t rev, int64_t compact)
{
    struct mvcc_store *s = mvcc_create();

    assert_non_null(s);
    restore_into(s, d, rev, compact);
    return s;
}

/* Runs reclamation until nothing retired is left waiting. */
static void reclaim_all(struct mvcc_store *s)
{
    for (int i = 0; mvcc_reclaim(s, 1000); i++)
        assert_true(i < 1000000);
}

static void compact_all(struct mvcc_store *s, unsigned budget)
{
    while (mvcc_compact_step(s, budget))
        ;
}

/* ---- writer-side reads ---- */

static void test_txn_range_own_writes(void **state)
{
    struct fix *f = *state;
    struct mvcc_range_req q = req_of("a", "z");
    struct mvcc_range_res res;
    struct mvcc_kv kv;
    char out[128];

    put(f->s, "a", "1"); /* 2 */
    mvcc_txn_begin(f->s);
    assert_int_equal(mvcc_txn_range(f->s, &q, &res), MVCC_OK);
    assert_int_equal(res.revision, 2); /* nothing written yet */
    assert_int_equal(res.n, 1);
    mvcc_range_res_free(&res);
    assert_int_equal(mvcc_txn_put(f->s, B("a"), 1, B("2"), 1, 5, NULL, NULL), MVCC_OK);
    assert_int_equal(mvcc_txn_put(f->s, B("b"), 1, B("x"), 1, 0, NULL, NULL), MVCC_OK);
    assert_int_equal(mvcc_txn_range(f->s, &q, &res), MVCC_OK);
    assert_int_equal(res.revision, 3);
    assert_int_equal(res.n, 2);
    assert_int_equal(res.count, 2);
    assert_memory_equal(res.kvs[0].value, "2", 1);
    assert_kv(&res.kvs[0], 2, 3, 2);
    assert_int_equal(res.kvs[0].lease, 5);
    assert_kv(&res.kvs[1], 3, 3, 1);
    mvcc_range_res_free(&res);
    assert_int_equal(mvcc_txn_get(f->s, B("a"), 1, &kv), MVCC_OK);
    assert_kv(&kv, 2, 3, 2);
    assert_memory_equal(kv.value, "2", 1);
    assert_int_equal(mvcc_txn_get(f->s, B("c"), 1, &kv), MVCC_ERR_NOT_FOUND);

    /* Readers still see the published state; history inside the txn. */
    q = req_of("a", "z");
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "a=1");
    q.revision = 2;
    assert_int_equal(mvcc_txn_range(f->s, &q, &res), MVCC_OK);
    assert_int_equal(res.n, 1);
    assert_memory_equal(res.kvs[0].value, "1", 1);
    mvcc_range_res_free(&res);
    q.revision = 4;
    assert_int_equal(mvcc_txn_range(f->s, &q, &res), MVCC_ERR_FUTURE_REV);
    mvcc_range_res_free(&res);

    /* Delete then put again inside the same txn: a new generation. */
    assert_int_equal(mvcc_txn_delete_range(f->s, B("a"), 1, NULL, 0, NULL, NULL), 1);
    assert_int_equal(mvcc_txn_get(f->s, B("a"), 1, &kv), MVCC_ERR_NOT_FOUND);
    q.revision = 0;
    q.count_only = true;
    assert_int_equal(mvcc_txn_range(f->s, &q, &res), MVCC_OK);
    assert_int_equal(res.count, 1);
    mvcc_range_res_free(&res);
    assert_int_equal(mvcc_txn_put(f->s, B("a"), 1, B("3"), 1, 0, NULL, NULL), MVCC_OK);
    assert_int_equal(mvcc_txn_get(f->s, B("a"), 1, &kv), MVCC_OK);
    assert_kv(&kv, 3, 3, 1);
    assert_int_equal(mvcc_txn_end(f->s), 3);
    q = req_of("a", "z");
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "a=3,b=x");
}

/* ---- compaction ---- */

/* put a (2), a (3), b (4), del b (5), c (6), a (7), del c (8), c (9),
 * d (10), del d (11). */
static void compact_fixture(struct mvcc_store *s)
{
    put(s, "a", "1");
    put(s, "a", "2");
    put(s, "b", "1");
    del(s, "b", NULL, NULL);
    put(s, "c", "1");
    put(s, "a", "3");
    del(s, "c", NULL, NULL);
    put(s, "c", "2");
    put(s, "d", "1");
    del(s, "d", NULL, NULL);
}

static void dump_str(struct mvcc_reader *r, char *out, size_t cap)
{
    struct dumped d;
    int64_t rev, compact;
    size_t off = 0;

    dump_store(r, &d, &rev, &compact);
    out[0] = 0;
    for (size_t i = 0; i < d.n && off < cap; i++)
        off += (size_t)snprintf(out + off, cap - off, "%s%.*s@%lld%s", i ? "," : "",
                                (int)d.v[i].key_len, (const char *)d.v[i].key,
                                (long long)d.v[i].mod_revision, d.v[i].tombstone ? "t" : "");
    dumped_free(&d);
}

static void check_compacted_at_8(struct mvcc_reader *r)
{
    struct mvcc_range_req q = req_of("a", "z");
    struct mvcc_kv kv;
    char out[128];

    assert_int_equal(range_rv(r, "a", 7), MVCC_ERR_COMPACTED);
    assert_int_equal(range_rv(r, "a", 1), MVCC_ERR_COMPACTED);
    const char *want[] = {"a=3", "a=3,c=2", "a=3,c=2,d=1", "a=3,c=2"};
    for (int64_t rev = 8; rev <= 11; rev++) { /* etcd: the compact revision is readable */
        q.revision = rev;
        range_str(r, &q, out, sizeof(out));
        assert_string_equal(out, want[rev - 8]);
    }
    assert_true(get(r, "a", 8, &kv));
    assert_kv(&kv, 2, 7, 3); /* version and create survive the dropped history */
    assert_true(get(r, "c", 0, &kv));
    assert_kv(&kv, 9, 9, 1);
}

static void test_compact_semantics(void **state)
{
    struct fix *f = *state;
    struct mvcc_reader *old = mvcc_reader_register(f->s);
    struct mvcc_range_req q = req_of("a", NULL);
    struct mvcc_range_res res;
    uint64_t size0;
    char out[128];
    int rv;

    compact_fixture(f->s);
    dump_str(f->r, out, sizeof(out));
    assert_string_equal(out, "a@2,a@3,a@7,b@4,b@5t,c@6,c@8t,c@9,d@10,d@11t");
    size0 = mvcc_size_bytes(f->s);
    mvcc_read_begin(old); /* pinned before the compaction */
    assert_int_equal(mvcc_compact(f->s, 8), MVCC_OK);
    assert_int_equal(mvcc_compact_revision(f->s), 8);
    check_compacted_at_8(f->r); /* logical at once */
    dump_str(f->r, out, sizeof(out));
    assert_string_equal(out, "a@7,c@9,d@10,d@11t");
    compact_all(f->s, 1);
    check_compacted_at_8(f->r);
    dump_str(f->r, out, sizeof(out));
    assert_string_equal(out, "a@7,c@9,d@10,d@11t");
    assert_true(mvcc_size_bytes(f->s) < size0);
    assert_false(mvcc_compact_step(f->s, 10));

    /* The reader pinned before still reads its own state's history. */
    q.revision = 3;
    rv = mvcc_range(old, &q, &res);
    bool ok = res.n == 1 && res.kvs[0].value[0] == '2';
    mvcc_range_res_free(&res);
    mvcc_read_end(old);
    mvcc_reader_unregister(old);
    assert_int_equal(rv, MVCC_OK);
    assert_true(ok);

    /* Compacting at the current revision drops d's tombstone and d. */
    assert_int_equal(mvcc_compact(f->s, 11), MVCC_OK);
    compact_all(f->s, 2);
    dump_str(f->r, out, sizeof(out));
    assert_string_equal(out, "a@7,c@9");
    q = req_of("a", "z");
    range_str(f->r, &q, out, sizeof(out));
    assert_string_equal(out, "a=3,c=2");
}

static void test_compact_errors(void **state)
{
    struct fix *f = *state;
    struct mvcc_store *s = mvcc_create();
    uint32_t h;

    assert_false(mvcc_compact_step(f->s, 100));    /* nothing pending */
    assert_int_equal(mvcc_compact(s, 1), MVCC_OK); /* a fresh store is at 1 */
    assert_int_equal(mvcc_compact(s, 1), MVCC_ERR_COMPACTED);
    mvcc_destroy(s);

    put(f->s, "x", "1");
    put(f->s, "x", "2");
    put(f->s, "x", "3"); /* 4 */
    assert_int_equal(mvcc_compact(f->s, 5), MVCC_ERR_FUTURE_REV);
    assert_int_equal(mvcc_compact(f->s, 3), MVCC_OK);
    assert_int_equal(mvcc_compact(f->s, 3), MVCC_ERR_COMPACTED);
    assert_int_equal(mvcc_compact(f->s, 2), MVCC_ERR_COMPACTED);
    assert_int_equal(mvcc_compact(f->s, 0), MVCC_ERR_COMPACTED);
    assert_int_equal(mvcc_compact(f->s, 4), MVCC_OK); /* current is allowed; raises the target */
    assert_int_equal(mvcc_compact_revision(f->s), 4);
    assert_int_equal(range_rv(f->r, "x", 3), MVCC_ERR_COMPACTED);
    assert_int_equal(range_rv(f->r, "x", 4), MVCC_OK);
    assert_int_equal(range_rv(f->r, "x", 5), MVCC_ERR_FUTURE_REV);
    assert_int_equal(hash_at(f->r, 3, &h), MVCC_ERR_COMPACTED);
    assert_int_equal(hash_at(f->r, 5, &h), MVCC_ERR_FUTURE_REV);
    assert_int_equal(hash_at(f->r, 4, &h), MVCC_OK);
    assert_true(mvcc_compact_step(f->s, 0)); /* a zero budget does nothing */
    compact_all(f->s, 1);
    assert_int_equal(range_rv(f->r, "x", 4), MVCC_OK);
}

/* Keys with several chunks of versions (64 each): compaction inside a
 * full chunk keeps its dead prefix until a later compaction passes it; a
 * deleted key's whole chain goes one chunk per unit. */
static void test_compact_chunks(void **state)
{
    struct fix *f = *state;
    struct mvcc_kv kv;
    uint64_t size0 = mvcc_size_bytes(f->s), s1, s2;
    char v[16], out[64];

    for (int i = 0; i < 150; i++) { /* "m": revisions 2..151, versions 1..150 */
        snprintf(v, sizeof(v), "%d", i);
        put(f->s, "m", v);
    }
    for (int i = 0; i < 200; i++)
        put(f->s, "z", "v");    /* revisions 152..351 */
    del(f->s, "z", NULL, NULL); /* 352 */
    s1 = mvcc_size_bytes(f->s);
    assert_int_equal(mvcc_compact(f->s, 101), MVCC_OK); /* m version 100, in chunk 1 */
    compact_all(f->s, 1);
    s2 = mvcc_size_bytes(f->s);
    assert_true(s2 < s1);
    assert_int_equal(range_rv(f->r, "m", 100), MVCC_ERR_COMPACTED);
    assert_false(get(f->r, "z", 151, &kv)); /* before z's first of four chunks */
    for (int64_t rev = 101; rev <= 151; rev++) {
        assert_true(get(f->r, "m", rev, &kv));
        assert_kv(&kv, 2, rev, rev - 1);
    }
    assert_int_equal(mvcc_compact(f->s, 352), MVCC_OK); /* m keeps 150; z goes */
    compact_all(f->s, 1);
    assert_true(get(f->r, "m", 352, &kv));
    assert_kv(&kv, 2, 151, 150);
    assert_false(get(f->r, "z", 352, &kv));
    dump_str(f->r, out, sizeof(out));
    assert_string_equal(out, "m@151");
    assert_true(mvcc_size_bytes(f->s) < size0 + 1024); /* one small chunk and a key left */
    put(f->s, "z", "again");
    assert_true(get(f->r, "z", 0, &kv));
    assert_kv(&kv, 353, 353, 1);
}

/* Store A compacts in small steps between its writes; store B gets the
 * same writes and never compacts. Both must answer alike at every
 * revision >= A's compact revision, before and after the pass ends. */
static void test_compact_interleaved(void **state)
{
    struct fix *f = *state;
    struct mvcc_store *b = mvcc_create();
    struct mvcc_reader *rb = mvcc_reader_register(b);
    uint32_t xa = 7, xb = 7, xc = 99;
    int64_t cur = 1, c;

    for (int t = 0; t < 3000; t++) {
        gen_txn(f->s, &xa, t);
        gen_txn(b, &xb, t);
        cur = mvcc_current_revision(f->s);
        assert_int_equal(cur, mvcc_current_revision(b));
        c = mvcc_compact_revision(f->s);
        if (t % 250 == 249 && cur - 100 > c)
            assert_int_equal(mvcc_compact(f->s, cur - 100), MVCC_OK);
        if (t % 250 == 40 && cur - 20 > c) /* raise a pass in progress */
            assert_int_equal(mvcc_compact(f->s, cur - 20), MVCC_OK);
        mvcc_compact_step(f->s, 3);
        if (t % 97 == 0) {
            c = mvcc_compact_revision(f->s);
            c = c > 0 ? c : 1;
            assert_same_at(f->r, rb, c);
            assert_same_at(f->r, rb, cur);
            assert_same_at(f->r, rb, c + (int64_t)(rnd(&xc) % (uint64_t)(cur - c + 1)));
        }
    }
    compact_all(f->s, 3);
    c = mvcc_compact_revision(f->s);
    assert_true(c > 2000);
    for (int64_t rev = c; rev <= cur; rev++)
        assert_same_at(f->r, rb, rev);
    assert_int_equal(range_rv(f->r, "hot", c - 1), MVCC_ERR_COMPACTED);
    printf("interleaved: compact %lld of %lld, size %llu compacted vs %llu\n", (long long)c,
           (long long)cur, (unsigned long long)mvcc_size_bytes(f->s),
           (unsigned long long)mvcc_size_bytes(b));
    assert_true(mvcc_size_bytes(f->s) * 2 < mvcc_size_bytes(b));
    /* The hash depends on the history and the compact revision only. */
    assert_int_equal(mvcc_compact(b, c), MVCC_OK);
    assert_int_equal(hash_of(f->r, 0), hash_of(rb, 0));
    assert_int_equal(hash_of(f->r, c), hash_of(rb, c));
    compact_all(b, 1000);
    assert_int_equal(hash_of(f->r, c + 1), hash_of(rb, c + 1));
    mvcc_reader_unregister(rb);
    mvcc_destroy(b);
}

/* Many keys removed by compaction: leaves merge, nodes empty, separators
 * move; then everything goes and the size is back to an empty store's. */
static void test_compact_shrinks_tree(void **state)
{
    struct fix *f = *state;
    enum { N = 20000 };
    struct mvcc_range_req q = req_of("", "\0");
    struct mvcc_range_res res;
    uint64_t size0 = mvcc_size_bytes(f->s);
    int64_t n, units = 0;
    double t0, worst = 0;
    char k[32];

    q.range_end_len = 1;
    for (int t = 0; t < N / 100; t++) {
        mvcc_txn_begin(f->s);
        for (int i = 0; i < 100; i++) {
            snprintf(k, sizeof(k), "%08d", (int)(((int64_t)(t * 100 + i) * 7919) % N));
            assert_int_equal(mvcc_txn_put(f->s, B(k), 8, B(k), 8, 0, NULL, NULL), MVCC_OK);
        }
        mvcc_txn_end(f->s);
    }
    for (int t = 0; t < N / 100; t++) { /* delete every id % 3 != 0 */
        mvcc_txn_begin(f->s);
        for (int i = t * 100; i < t * 100 + 100; i++) {
            snprintf(k, sizeof(k), "%08d", i);
            if (i % 3 != 0)
                assert_int_equal(mvcc_txn_delete_range(f->s, B(k), 8, NULL, 0, NULL, NULL), 1);
        }
        mvcc_txn_end(f->s);
    }
    del(f->s, "00010000", "00012000", &n);
    assert_int_equal(n, 666); /* 10002, 10005, ..., 11997 */
    assert_int_equal(mvcc_compact(f->s, mvcc_current_revision(f->s)), MVCC_OK);
    for (bool more = true; more; units += 1000) {
        t0 = now_s();
        more = mvcc_compact_step(f->s, 1000);
        worst = now_s() - t0 > worst ? now_s() - t0 : worst;
    }
    printf("compaction of %d keys: %lld units, worst step of 1000 units %.0f us\n", N,
           (long long)units, worst * 1e6);
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.n, (N + 2) / 3 - 666);
    for (size_t i = 1; i < res.n; i++)
        assert_true(memcmp(res.kvs[i - 1].key, res.kvs[i].key, 8) < 0);
    mvcc_range_res_free(&res);
    for (int i = 0; i < N; i++) {
        struct mvcc_kv kv;
        snprintf(k, sizeof(k), "%08d", i);
        assert_int_equal(get(f->r, k, 0, &kv), i % 3 == 0 && (i < 10000 || i >= 12000));
    }
    put_n(f->s, 300); /* new keys among the survivors */
    q.count_only = true;
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.count, (N + 2) / 3 - 666 + 300);
    mvcc_range_res_free(&res);
    mvcc_txn_begin(f->s); /* everything */
    assert_int_equal(mvcc_txn_delete_range(f->s, B(""), 0, B("\0"), 1, NULL, NULL),
                     (N + 2) / 3 - 666 + 300);
    mvcc_txn_end(f->s);
    assert_int_equal(mvcc_compact(f->s, mvcc_current_revision(f->s)), MVCC_OK);
    compact_all(f->s, 777);
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.count, 0);
    mvcc_range_res_free(&res);
    assert_int_equal(mvcc_size_bytes(f->s), size0);
    put(f->s, "again", "1");
    assert_true(get(f->r, "again", 0, &(struct mvcc_kv){0}));
}

/* ---- hash, dump, restore ---- */

/* CRC32C, bit by bit, of the encoding snap.c documents. */
static uint32_t crc_bits(uint32_t crc, const void *p, size_t n)
{
    const uint8_t *b = p;

    crc = ~crc;
    while (n--) {
        crc ^= *b++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return ~crc;
}

static uint32_t crc_le(uint32_t crc, uint64_t v, int n)
{
    uint8_t b[8];

    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return crc_bits(crc, b, (size_t)n);
}

static void test_hash_kv(void **state)
{
    struct fix *f = *state;
    struct mvcc_store *s2 = mvcc_create(), *s3 = mvcc_create();
    struct mvcc_reader *r2 = mvcc_reader_register(s2), *r3 = mvcc_reader_register(s3);
    uint32_t want = 0, x1 = 3, x2 = 3, x3 = 3;
    int64_t c0;

    assert_int_equal(crc_bits(0, "123456789", 9), 0xe3069283u); /* the CRC32C check value */
    want = crc_bits(0, "key", 3);                               /* the seed, as etcd's */
    assert_int_equal(hash_of(f->r, 0), want);
    assert_true(want != 0); /* an empty store, as etcd's */
    mvcc_txn_begin(f->s);
    mvcc_txn_put(f->s, B("key"), 3, B("value"), 5, 9, NULL, NULL);
    mvcc_txn_end(f->s);
    want = crc_le(want, 3, 4);
    want = crc_bits(want, "key", 3);
    want = crc_le(crc_le(crc_le(want, 2, 8), 0, 4), 2, 8); /* mod, sub, create */
    want = crc_le(crc_le(crc_le(want, 1, 8), 9, 8), 5, 4); /* version, lease, length */
    want = crc_bits(want, "value", 5);
    assert_int_equal(hash_of(f->r, 0), want);
    mvcc_reader_unregister(f->r);
    mvcc_destroy(f->s);
    f->s = mvcc_create();
    f->r = mvcc_reader_register(f->s);

    for (int t = 0; t < 400; t++) {
        gen_txn(f->s, &x1, t);
        gen_txn(s2, &x2, t);
        gen_txn(s3, &x3, t);
    }
    c0 = mvcc_current_revision(f->s);
    assert_true(c0 > 300);
    assert_int_equal(hash_of(f->r, 0), hash_of(r2, 0));
    assert_int_equal(hash_of(f->r, 100), hash_of(r2, 100));
    assert_true(hash_of(f->r, 100) != hash_of(f->r, 101));
    /* Any change: a new version with the same value, a different lease. */
    put(s2, "hot", "same");
    put(s3, "hot", "same");
    assert_int_equal(hash_of(r2, 0), hash_of(r3, 0));
    assert_true(hash_of(f->r, 0) != hash_of(r2, 0));
    assert_int_equal(hash_of(f->r, c0), hash_of(r2, c0)); /* history up to c0 is the same */
    mvcc_txn_begin(s3);
    mvcc_txn_put(s3, B("hot"), 3, B("same"), 4, 1, NULL, NULL);
    mvcc_txn_end(s3);
    put(s2, "hot", "same");
    assert_true(hash_of(r2, 0) != hash_of(r3, 0));
    /* Compaction changes what is hashed only through the compact rev. */
    assert_int_equal(mvcc_compact(s2, c0 - 100), MVCC_OK);
    assert_int_equal(mvcc_compact(s3, c0 - 100), MVCC_OK);
    compact_all(s3, 5);
    assert_int_equal(hash_of(r2, c0), hash_of(r3, c0));
    assert_int_equal(hash_of(r2, c0 - 100), hash_of(r3, c0 - 100));
    mvcc_reader_unregister(r2);
    mvcc_reader_unregister(r3);
    mvcc_destroy(s2);
    mvcc_destroy(s3);
}

static void assert_restored_same(struct mvcc_store *s, struct mvcc_reader *r, struct mvcc_store *s2,
                                 struct mvcc_reader *r2)
{
    int64_t c = mvcc_compact_revision(s), cur = mvcc_current_revision(s);
    uint64_t a = mvcc_size_bytes(s), b = mvcc_size_bytes(s2);

    assert_int_equal(mvcc_current_revision(s2), cur);
    assert_int_equal(mvcc_compact_revision(s2), c);
    for (int64_t rev = c > 0 ? c : 1; rev <= cur; rev++)
        assert_same_at(r, r2, rev);
    if (c > 1)
        assert_same_at(r, r2, c - 1); /* both compacted */
    assert_int_equal(hash_of(r, 0), hash_of(r2, 0));
    assert_int_equal(hash_of(r, c), hash_of(r2, c));
    printf("restore: size %llu, restored %llu\n", (unsigned long long)a, (unsigned long long)b);
    assert_true(b < a + a / 10 && a < b + b / 5);
}

static void test_dump_restore(void **state)
{
    struct fix *f = *state;
    struct mvcc_store *s2;
    struct mvcc_reader *r2;
    struct dumped d;
    int64_t rev, compact;
    uint32_t x = 11, x2;

    for (int t = 0; t < 1500; t++) {
        gen_txn(f->s, &x, t);
        if (t == 1000)
            assert_int_equal(mvcc_compact(f->s, mvcc_current_revision(f->s) - 300), MVCC_OK);
        mvcc_compact_step(f->s, 2); /* the dump must not depend on how far it got */
    }
    dump_store(f->r, &d, &rev, &compact);
    assert_int_equal(rev, mvcc_current_revision(f->s));
    assert_int_equal(compact, mvcc_compact_revision(f->s));
    s2 = restore_of(&d, rev, compact);
    r2 = mvcc_reader_register(s2);
    assert_restored_same(f->s, f->r, s2, r2);
    dumped_free(&d);

    /* The restored store goes on like the original: writes, compaction. */
    x2 = x;
    for (int t = 1500; t < 1800; t++) {
        gen_txn(f->s, &x, t);
        gen_txn(s2, &x2, t);
    }
    assert_int_equal(mvcc_compact(f->s, rev + 100), MVCC_OK);
    assert_int_equal(mvcc_compact(s2, rev + 100), MVCC_OK);
    compact_all(f->s, 10);
    compact_all(s2, 3);
    assert_restored_same(f->s, f->r, s2, r2);
    mvcc_reader_unregister(r2);
    mvcc_destroy(s2);

    /* A dump callback's non-zero return stops the walk. */
    memset(&d, 0, sizeof(d));
    d.stop_after = 5;
    mvcc_read_begin(f->r);
    int rv = mvcc_dump(f->r, &rev, &compact, dump_cb, &d);
    mvcc_read_end(f->r);
    assert_int_equal(rv, 7);
    assert_int_equal(d.n, 5);
    dumped_free(&d);
}

static struct mvcc_version ver_of(const char *k, int64_t mod, int64_t sub, bool tomb)
{
    struct mvcc_version v = {.key = B(k), .key_len = strlen(k), .value = B("v"), .value_len = 1};

    v.mod_revision = mod;
    v.create_revision = tomb ? 0 : mod;
    v.version = tomb ? 0 : 1;
    v.sub = sub;
    v.tombstone = tomb;
    return v;
}

static void test_restore_errors(void **state)
{
    struct fix *f = *state;
    struct mvcc_store *s = mvcc_create();
    struct mvcc_version v;
    struct mvcc_kv kv;

    v = ver_of("b", 2, 0, false);
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_OK);
    v = ver_of("a", 3, 0, false); /* keys out of order */
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_ERR_BAD_ORDER);
    v = ver_of("c", 4, 0, false);
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_ERR_BAD_ORDER); /* sticky */
    assert_int_equal(mvcc_restore_finish(s, 10, 0), MVCC_ERR_BAD_ORDER);
    assert_int_equal(mvcc_current_revision(s), 1); /* still fresh: try again */
    v = ver_of("b", 3, 1, false);
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_OK);
    v = ver_of("b", 3, 1, true); /* same revision and sub-revision */
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_ERR_BAD_ORDER);
    assert_int_equal(mvcc_restore_finish(s, 10, 0), MVCC_ERR_BAD_ORDER);
    v = ver_of("b", 3, 1, false);
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_OK);
    v = ver_of("b", 2, 0, false); /* older revision */
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_ERR_BAD_ORDER);
    assert_int_equal(mvcc_restore_finish(s, 10, 0), MVCC_ERR_BAD_ORDER);
    v = ver_of("b", 0, 0, false); /* malformed */
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_ERR_BAD_ORDER);
    assert_int_equal(mvcc_restore_finish(s, 10, 0), MVCC_ERR_BAD_ORDER);
    v = ver_of("a", 2, 0, false);
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_OK);
    v = ver_of("b", 3, 0, false); /* "a" moves into the tree being built */
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_OK);
    v = ver_of("a", 4, 0, false);
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_ERR_BAD_ORDER);
    assert_int_equal(mvcc_restore_finish(s, 10, 0), MVCC_ERR_BAD_ORDER);
    v = ver_of("b", 12, 0, false);
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_OK);
    assert_int_equal(mvcc_restore_finish(s, 11, 0), MVCC_ERR_BAD_ORDER); /* newer than rev */
    assert_int_equal(mvcc_restore_finish(s, 5, 6), MVCC_ERR_BAD_ORDER);  /* compact > rev */
    v = ver_of("b", 2, 0, false);
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_OK);
    v = ver_of("b", 3, 0, true);
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_OK);
    v = ver_of("c", 3, 1, false);
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_OK);
    assert_int_equal(mvcc_restore_finish(s, 3, 2), MVCC_OK);
    assert_int_equal(mvcc_current_revision(s), 3);
    assert_int_equal(mvcc_compact_revision(s), 2);
    v = ver_of("d", 4, 0, false); /* a restored store may be restored again */
    assert_int_equal(mvcc_restore_version(s, &v), MVCC_OK);
    assert_int_equal(mvcc_restore_finish(s, 3, 0), MVCC_ERR_BAD_ORDER); /* d@4 > rev */
    assert_int_equal(mvcc_current_revision(s), 3);                      /* unchanged */
    assert_int_equal(mvcc_compact_revision(s), 2);
    mvcc_destroy(s);

    /* On a used store: errors leave the live state as it was. */
    put(f->s, "x", "1");
    v = ver_of("a", 2, 0, false);
    assert_int_equal(mvcc_restore_version(f->s, &v), MVCC_OK);
    v = ver_of("a", 1, 0, false);
    assert_int_equal(mvcc_restore_version(f->s, &v), MVCC_ERR_BAD_ORDER);
    assert_int_equal(mvcc_restore_finish(f->s, 2, 0), MVCC_ERR_BAD_ORDER);
    assert_true(get(f->r, "x", 0, &kv));
    assert_int_equal(mvcc_current_revision(f->s), 2);
    put(f->s, "y", "1"); /* a failed restore lets the writer go on */
    /* An empty snapshot replaces the state by an empty one. */
    assert_int_equal(mvcc_restore_finish(f->s, 7, 7), MVCC_OK);
    assert_false(get(f->r, "x", 0, &kv));
    assert_false(get(f->r, "y", 0, &kv));
    assert_int_equal(mvcc_current_revision(f->s), 7);
    assert_int_equal(mvcc_compact_revision(f->s), 7);
    assert_int_equal(range_rv(f->r, "x", 6), MVCC_ERR_COMPACTED);
    assert_int_equal(put(f->s, "x", "2"), 8);
    assert_true(get(f->r, "x", 0, &kv));
    assert_kv(&kv, 8, 8, 1);
}

/* ---- restore on a live store ---- */

/* A store with history, tombstones, one compaction done and one in
 * progress, written with seed x. */
static void live_fixture(struct mvcc_store *s, uint32_t x, int txns)
{
    for (int t = 0; t < txns; t++) {
        gen_txn(s, &x, t);
        if (t == txns / 2) {
            assert_int_equal(mvcc_compact(s, mvcc_current_revision(s) - 100), MVCC_OK);
            compact_all(s, 7);
        }
    }
    assert_int_equal(mvcc_compact(s, mvcc_current_revision(s) - 50), MVCC_OK);
    assert_true(mvcc_compact_step(s, 20)); /* in progress */
}

/* Every key's value at the pinned state's current revision, as a string. */
static void pinned_str(struct mvcc_reader *r, char *out, size_t cap)
{
    struct mvcc_range_req q = req_of("", "\0");

    q.range_end_len = 1;
    assert_int_equal(range_fmt(r, &q, out, cap), MVCC_OK);
}

static void test_restore_live(void **state)
{
    struct fix *f = *state;
    struct mvcc_store *src = mvcc_create(), *small = mvcc_create();
    struct mvcc_reader *rsrc = mvcc_reader_register(src), *rsmall = mvcc_reader_register(small);
    struct mvcc_reader *old = mvcc_reader_register(f->s);
    enum { CAP = 1 << 16 };
    char *before = malloc(CAP), *after = malloc(CAP);
    uint32_t h0, h1, x = 5, x2;
    int64_t rev, compact, hr, hc, old_rev, old_compact;
    struct dumped d;

    assert_non_null(before);
    assert_non_null(after);
    live_fixture(src, 31, 1500);
    live_fixture(f->s, 77, 1100);
    dump_store(rsrc, &d, &rev, &compact);

    /* A reader pinned before the restore keeps the old state whole. */
    mvcc_read_begin(old);
    old_rev = mvcc_read_revision(old);
    old_compact = mvcc_read_compact_revision(old);
    pinned_str(old, before, CAP);
    assert_int_equal(mvcc_hash_kv(old, 0, &h0, &hr, &hc), MVCC_OK);
    restore_into(f->s, &d, rev, compact);
    assert_int_equal(mvcc_read_revision(old), old_rev);
    assert_int_equal(mvcc_read_compact_revision(old), old_compact);
    pinned_str(old, after, CAP);
    assert_string_equal(before, after);
    assert_int_equal(mvcc_hash_kv(old, 0, &h1, &hr, &hc), MVCC_OK);
    assert_int_equal(h0, h1);
    assert_true(mvcc_reclaim(f->s, 1000000)); /* the old tree waits for `old` */
    pinned_str(old, after, CAP);
    assert_string_equal(before, after);
    mvcc_read_end(old);
    reclaim_all(f->s);

    /* The new state is the source's; the compaction pass was cancelled. */
    assert_false(mvcc_compact_step(f->s, 10));
    compact_all(src, 1000); /* the sizes compare then */
    assert_restored_same(src, rsrc, f->s, f->r);
    dumped_free(&d);

    /* Both go on alike: writes, compaction. */
    x2 = x;
    for (int t = 2000; t < 2300; t++) {
        gen_txn(src, &x, t);
        gen_txn(f->s, &x2, t);
    }
    assert_int_equal(mvcc_compact(src, rev + 100), MVCC_OK);
    assert_int_equal(mvcc_compact(f->s, rev + 100), MVCC_OK);
    compact_all(src, 10);
    compact_all(f->s, 3);
    assert_restored_same(src, rsrc, f->s, f->r);

    /* Replaced again, by a state with lower revisions. */
    for (int t = 0; t < 40; t++)
        gen_txn(small, &x, t);
    assert_int_equal(mvcc_compact(small, 20), MVCC_OK);
    assert_int_equal(mvcc_compact(f->s, mvcc_current_revision(f->s) - 5), MVCC_OK);
    assert_true(mvcc_compact_step(f->s, 5));
    compact_all(small, 1000);
    dump_store(rsmall, &d, &rev, &compact);
    restore_into(f->s, &d, rev, compact);
    dumped_free(&d);
    assert_int_equal(mvcc_current_revision(f->s), mvcc_current_revision(small));
    assert_restored_same(small, rsmall, f->s, f->r);
    reclaim_all(f->s);

    free(before);
    free(after);
    mvcc_reader_unregister(old);
    mvcc_reader_unregister(rsrc);
    mvcc_reader_unregister(rsmall);
    mvcc_destroy(src);
    mvcc_destroy(small);
}

/* An aborted restore (and a failed one) leaves the store as it was: its
 * answers, hash, size, and the compaction pass, which then ends as its
 * twin's. */
static void test_restore_abort(void **state)
{
    struct fix *f = *state;
    struct mvcc_store *twin = mvcc_create(), *src = mvcc_create();
    struct mvcc_reader *rtwin = mvcc_reader_register(twin), *rsrc = mvcc_reader_register(src);
    int64_t rev, compact, cur, c;
    struct mvcc_version bad;
    struct dumped d;
    uint64_t size;
    uint32_t h;

    live_fixture(f->s, 3, 900);
    live_fixture(twin, 3, 900);
    live_fixture(src, 9, 600);
    dump_store(rsrc, &d, &rev, &compact);
    cur = mvcc_current_revision(f->s);
    c = mvcc_compact_revision(f->s);
    size = mvcc_size_bytes(f->s);
    h = hash_of(f->r, 0);

    for (size_t i = 0; i < d.n; i++) /* everything staged, then dropped */
        assert_int_equal(mvcc_restore_version(f->s, &d.v[i]), MVCC_OK);
    mvcc_restore_abort(f->s);
    for (size_t i = 0; i < d.n / 2; i++) /* half staged, then an error */
        assert_int_equal(mvcc_restore_version(f->s, &d.v[i]), MVCC_OK);
    bad = d.v[0];
    assert_int_equal(mvcc_restore_version(f->s, &bad), MVCC_ERR_BAD_ORDER);
    assert_int_equal(mvcc_restore_finish(f->s, rev, compact), MVCC_ERR_BAD_ORDER);
    for (size_t i = 0; i < d.n; i++) /* all staged, but finish's revisions are wrong */
        assert_int_equal(mvcc_restore_version(f->s, &d.v[i]), MVCC_OK);
    assert_int_equal(mvcc_restore_finish(f->s, rev, rev + 1), MVCC_ERR_BAD_ORDER);

    assert_int_equal(mvcc_current_revision(f->s), cur);
    assert_int_equal(mvcc_compact_revision(f->s), c);
    assert_int_equal(mvcc_size_bytes(f->s), size);
    assert_int_equal(hash_of(f->r, 0), h);
    for (int64_t r = c; r <= cur; r++)
        assert_same_at(f->r, rtwin, r);
    assert_true(mvcc_compact_step(f->s, 5)); /* the pass goes on */
    compact_all(f->s, 5);
    compact_all(twin, 50);
    for (int64_t r = c; r <= cur; r++)
        assert_same_at(f->r, rtwin, r);
    assert_int_equal(hash_of(f->r, 0), hash_of(rtwin, 0));
    assert_int_equal(mvcc_size_bytes(f->s), mvcc_size_bytes(twin));
    assert_int_equal(put(f->s, "after", "1"), cur + 1);

    dumped_free(&d);
    mvcc_reader_unregister(rtwin);
    mvcc_reader_unregister(rsrc);
    mvcc_destroy(twin);
    mvcc_destroy(src);
}

/* 1,000,000 keys with one version each, as a snapshot would bring them. */
static void test_restore_1m_keys(void **state)
{
    struct fix *f = *state;
    enum { N = 1000000 };
    struct mvcc_range_req q = req_of("", "\0");
    struct mvcc_range_res res;
    struct mvcc_version v = {0};
    char k[32], val[32];
    struct mvcc_kv kv;
    double t0, t1;

    q.range_end_len = 1;
    q.count_only = true;
    t0 = now_s();
    for (int i = 0; i < N; i++) {
        v.key_len = (size_t)snprintf(k, sizeof(k), "/registry/pods/%08d", i);
        v.value_len = (size_t)snprintf(val, sizeof(val), "value-%010d", i);
        v.key = B(k);
        v.value = B(val);
        v.mod_revision = v.create_revision = 2 + i;
        v.version = 1;
        if (mvcc_restore_version(f->s, &v) != MVCC_OK)
            fail();
    }
    assert_int_equal(mvcc_restore_finish(f->s, N + 1, N / 2), MVCC_OK);
    t1 = now_s();
    printf("restore of %d keys: %.0f ms, %.1f MB\n", N, (t1 - t0) * 1e3,
           (double)mvcc_size_bytes(f->s) / 1e6);
    assert_true(t1 - t0 < 20.0); /* generous: sanitizer builds are slow */
    assert_int_equal(range(f->r, &q, &res), MVCC_OK);
    assert_int_equal(res.count, N);
    mvcc_range_res_free(&res);
    assert_true(get(f->r, "/registry/pods/00777777", 0, &kv));
    assert_kv(&kv, 777779, 777779, 1);
    assert_int_equal(range_rv(f->r, "/registry/pods/00000001", N / 2 - 1), MVCC_ERR_COMPACTED);
    put(f->s, "/registry/pods/00000001", "new");
    assert_true(get(f->r, "/registry/pods/00000001", 0, &kv));
    assert_kv(&kv, 3, N + 2, 2);
}

/* The worst single put allowed, in thread CPU time (wall time on a busy
 * machine includes preemption): generous, so the test never flakes; the
 * sanitizers' runtimes stall far longer than the index itself. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PUT_MAX_S 0.200
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PUT_MAX_S 0.200
#endif
#endif
#ifndef PUT_MAX_S
#define PUT_MAX_S 0.020
#endif

static double cpu_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One key put 2,000,000 times: appends never copy the history. Each
 * put's time runs from the end of the previous one (both clocks). */
static void test_hot_key(void **state)
{
    struct fix *f = *state;
    enum { N = 2000000 };
    double t0 = now_s(), t, tc, prev = t0, prev_c = cpu_s(), worst = 0, worst_c = 0;
    double step_worst = 0;
    uint64_t size_full;
    uint32_t x = 5;
    char v[32];
    int bad = 0, steps = 0;

    for (int i = 0; i < N; i++) {
        int n = snprintf(v, sizeof(v), "%d", i + 2); /* the value is the revision */
        mvcc_txn_begin(f->s);
        mvcc_txn_put(f->s, B("hot"), 3, B(v), (size_t)n, 0, NULL, NULL);
        mvcc_txn_end(f->s);
        t = now_s();
        tc = cpu_s();
        worst = t - prev > worst ? t - prev : worst;
        worst_c = tc - prev_c > worst_c ? tc - prev_c : worst_c;
        prev = t;
        prev_c = tc;
    }
    printf("hot key: %d puts, %.0f ns mean (with timing), max single put %.1f us wall, %.1f us "
           "cpu\n",
           N, (now_s() - t0) / N * 1e9, worst * 1e6, worst_c * 1e6);
    assert_true(worst_c < PUT_MAX_S);
    /* Reads at any revision find the one version of that revision. */
    t0 = now_s();
    for (int i = 0; i < 20000; i++) {
        struct mvcc_range_req q = req_of("hot", NULL);
        struct mvcc_range_res res;
        q.revision = 2 + (int64_t)(rnd(&x) % N);
        mvcc_read_begin(f->r);
        mvcc_range(f->r, &q, &res);
        snprintf(v, sizeof(v), "%lld", (long long)q.revision);
        bad += res.n != 1 || res.kvs[0].mod_revision != q.revision ||
               res.kvs[0].version != q.revision - 1 || res.kvs[0].value_len != strlen(v) ||
               memcmp(res.kvs[0].value, v, strlen(v)) != 0;
        mvcc_range_res_free(&res);
        mvcc_read_end(f->r);
    }
    printf("hot key: historical read %.0f ns\n", (now_s() - t0) / 20000 * 1e9);
    assert_int_equal(bad, 0);
    size_full = mvcc_size_bytes(f->s);
    assert_int_equal(mvcc_compact(f->s, N / 2), MVCC_OK);
    for (bool more = true; more; steps++) {
        t = now_s();
        more = mvcc_compact_step(f->s, 100);
        t = now_s() - t;
        step_worst = t > step_worst ? t : step_worst;
    }
    printf("hot key: compaction at %d in %d steps of 100 units, worst step %.0f us, size %.1f -> "
           "%.1f MB\n",
           N / 2, steps, step_worst * 1e6, (double)size_full / 1e6,
           (double)mvcc_size_bytes(f->s) / 1e6);
    assert_true(mvcc_size_bytes(f->s) < size_full * 6 / 10);
    assert_int_equal(range_rv(f->r, "hot", N / 2 - 1), MVCC_ERR_COMPACTED);
    for (int64_t rev = N / 2; rev < N / 2 + 200; rev++) {
        struct mvcc_kv kv;
        assert_true(get(f->r, "hot", rev, &kv));
        assert_int_equal(kv.mod_revision, rev);
    }
    assert_int_equal(mvcc_compact(f->s, N + 1), MVCC_OK);
    compact_all(f->s, 1000);
    assert_true(mvcc_size_bytes(f->s) < 4096);
}

/* ---- one writer, three readers ---- */

enum { CK_KEYS = 100, CK_TXNS = 2000, CK_READERS = 3 };

struct conc {
    struct mvcc_store *s;
    int stop;
    int64_t errors;
    int64_t reads;
    unsigned seed;
};

static void conc_fail(struct conc *c, const char *what, long long a, long long b)
{
    if (__atomic_fetch_add(&c->errors, 1, __ATOMIC_RELAXED) < 5)
        fprintf(stderr, "concurrency check failed: %s (%lld, %lld)\n", what, a, b);
}

/* The k* keys at rev: none, or all CK_KEYS with one value and one mod
 * revision, <= rev. The x* keys: exactly one per txn so far. The y* keys:
 * the last five txns' (each txn deletes the one of five txns before, so
 * compaction removes them from the tree). */
static int64_t conc_check_at(struct conc *c, struct mvcc_reader *r, int64_t rev)
{
    struct mvcc_range_req q = req_of("k", "l");
    struct mvcc_range_res res;
    int64_t at;

    q.revision = rev;
    if (mvcc_range(r, &q, &res) != MVCC_OK) {
        conc_fail(c, "range k", rev, 0);
        mvcc_range_res_free(&res);
        return -1;
    }
    at = rev > 0 ? rev : res.revision;
    if ((res.n != 0 && res.n != CK_KEYS) || res.count != (int64_t)res.n)
        conc_fail(c, "k count", (long long)res.n, res.count);
    for (size_t i = 1; i < res.n; i++) {
        if (res.kvs[i].value_len != res.kvs[0].value_len ||
            memcmp(res.kvs[i].value, res.kvs[0].value, res.kvs[0].value_len) != 0 ||
            res.kvs[i].mod_revision != res.kvs[0].mod_revision)
            conc_fail(c, "k values differ", (long long)i, res.kvs[i].mod_revision);
    }
    if (res.n > 0 && res.kvs[0].mod_revision > at)
        conc_fail(c, "k mod rev > read rev", res.kvs[0].mod_revision, at);
    mvcc_range_res_free(&res);

    q = req_of("x", "y");
    q.revision = rev;
    q.count_only = true;
    if (mvcc_range(r, &q, &res) != MVCC_OK || res.count != at - 1)
        conc_fail(c, "x count", res.count, at - 1);
    mvcc_range_res_free(&res);
    q = req_of("y", "z");
    q.revision = rev;
    q.count_only = true;
    if (mvcc_range(r, &q, &res) != MVCC_OK || res.count != (at - 1 < 5 ? at - 1 : 5))
        conc_fail(c, "y count", res.count, at - 1);
    mvcc_range_res_free(&res);
    return at;
}

static void *conc_reader(void *arg)
{
    struct conc *c = arg;
    unsigned seed = __atomic_add_fetch(&c->seed, 7919, __ATOMIC_RELAXED);
    struct mvcc_reader *r = mvcc_reader_register(c->s);
    int64_t last = 0;

    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        int64_t cur, hist, lo;
        mvcc_read_begin(r);
        cur = conc_check_at(c, r, 0);
        if (cur < last)
            conc_fail(c, "revision went back", cur, last);
        last = cur;
        /* >= the pinned state's compact revision (mvcc.h), so readable */
        lo = mvcc_compact_revision(c->s);
        lo = lo < 1 ? 1 : lo > cur ? cur : lo;
        hist = lo + (int64_t)(rand_r(&seed) % (unsigned)(cur - lo + 1));
        conc_check_at(c, r, hist);
        mvcc_read_end(r);
        __atomic_add_fetch(&c->reads, 1, __ATOMIC_RELAXED);
        if (rand_r(&seed) % 64 == 0) { /* exercise record recycling */
            mvcc_reader_unregister(r);
            r = mvcc_reader_register(c->s);
        }
    }
    mvcc_reader_unregister(r);
    return NULL;
}

static void conc_write_txn(struct mvcc_store *s, int t)
{
    char k[16], v[16];

    mvcc_txn_begin(s);
    if (t % 7 == 0) {
        /* txn t-1 was a put of every k key */
        assert_int_equal(mvcc_txn_delete_range(s, B("k"), 1, B("l"), 1, NULL, NULL), CK_KEYS);
    } else {
        snprintf(v, sizeof(v), "v%06d", t);
        for (int i = 0; i < CK_KEYS; i++) {
            snprintf(k, sizeof(k), "k%03d", (i * 37) % CK_KEYS);
            assert_int_equal(mvcc_txn_put(s, B(k), 4, B(v), strlen(v), 0, NULL, NULL), MVCC_OK);
        }
    }
    snprintf(k, sizeof(k), "x%06d", t);
    assert_int_equal(mvcc_txn_put(s, B(k), strlen(k), NULL, 0, 0, NULL, NULL), MVCC_OK);
    snprintf(k, sizeof(k), "y%06d", t);
    assert_int_equal(mvcc_txn_put(s, B(k), strlen(k), B(k), strlen(k), 0, NULL, NULL), MVCC_OK);
    if (t > 5) {
        snprintf(k, sizeof(k), "y%06d", t - 5);
        assert_int_equal(mvcc_txn_delete_range(s, B(k), strlen(k), NULL, 0, NULL, NULL), 1);
    }
    assert_int_equal(mvcc_txn_end(s), 1 + t);
}

static void test_concurrent_readers(void **state)
{
    struct fix *f = *state;
    struct conc c = {.s = f->s, .seed = 1};
    pthread_t th[CK_READERS];

    for (int i = 0; i < CK_READERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, conc_reader, &c), 0);
    for (int t = 1; t <= CK_TXNS; t++) {
        conc_write_txn(f->s, t);
        if (t % 50 == 0) /* compaction runs in the writer, between txns */
            assert_int_equal(mvcc_compact(f->s, 1 + t - 20), MVCC_OK);
        mvcc_compact_step(f->s, 8);
    }
    compact_all(f->s, 8);
    __atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < CK_READERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(c.errors, 0);
    assert_true(c.reads > 0);
    assert_int_equal(mvcc_current_revision(f->s), 1 + CK_TXNS);
    /* Quiescent: one more check from this thread over the final state. */
    mvcc_read_begin(f->r);
    conc_check_at(&c, f->r, 0);
    conc_check_at(&c, f->r, mvcc_compact_revision(f->s));
    mvcc_read_end(f->r);
    assert_int_equal(c.errors, 0);
    assert_int_equal(range_rv(f->r, "k000", mvcc_compact_revision(f->s) - 1), MVCC_ERR_COMPACTED);
}

/* ---- readers while the writer replaces the whole state ---- */

/* Generation g is a source store with key "gen" = "g<g>" and RG keys(g)
 * k* keys whose values all read "g<g>:<txn>" at every revision (or none
 * at all: some txns delete them). The live store is restored from the
 * generations' dumps in turn (revisions go up and down), writes a few
 * txns of the same generation, starts a compaction, sometimes aborts a
 * restore. Readers check that each section sees one generation whole. */
enum { RG_GENS = 4, RG_ROUNDS = 40, RG_READERS = 4, RG_EXTRA = 12 };

static const int rg_txns[RG_GENS] = {300, 100, 700, 500};

static int rg_keys(int g)
{
    return 40 + 13 * g;
}

struct rg {
    struct mvcc_store *s;
    struct dumped d[RG_GENS];
    int64_t rev[RG_GENS], compact[RG_GENS];
    uint32_t hash[RG_GENS]; /* at (rev, compact) */
    int stop;
    int64_t errors, reads, holds;
    unsigned seen; /* generations readers saw, a bit each */
    unsigned seed;
};

static void rg_fail(struct rg *c, const char *what, long long a, long long b)
{
    if (__atomic_fetch_add(&c->errors, 1, __ATOMIC_RELAXED) < 5)
        fprintf(stderr, "replace check failed: %s (%lld, %lld)\n", what, a, b);
}

static void rg_txn(struct mvcc_store *s, int g, int t)
{
    char k[16], v[32];

    mvcc_txn_begin(s);
    if (t % 9 == 8) {
        assert_true(mvcc_txn_delete_range(s, B("k"), 1, B("l"), 1, NULL, NULL) >= 0);
    } else {
        snprintf(v, sizeof(v), "g%d:%d", g, t);
        for (int i = 0; i < rg_keys(g); i++) {
            snprintf(k, sizeof(k), "k%03d", (i * 7) % rg_keys(g));
            assert_int_equal(mvcc_txn_put(s, B(k), 4, B(v), strlen(v), 0, NULL, NULL), MVCC_OK);
        }
    }
    mvcc_txn_end(s);
}

static void rg_source(struct rg *c, int g)
{
    struct mvcc_store *s = mvcc_create();
    struct mvcc_reader *r = mvcc_reader_register(s);
    char v[8];

    snprintf(v, sizeof(v), "g%d", g);
    put(s, "gen", v);
    for (int t = 0; t < rg_txns[g]; t++)
        rg_txn(s, g, t);
    assert_int_equal(mvcc_compact(s, mvcc_current_revision(s) - 30), MVCC_OK);
    mvcc_compact_step(s, 10);
    dump_store(r, &c->d[g], &c->rev[g], &c->compact[g]);
    c->hash[g] = hash_of(r, c->rev[g]);
    mvcc_reader_unregister(r);
    mvcc_destroy(s);
}

/* The generation whose "gen" key the pinned state holds at rev, or -1. */
static int rg_gen_at(struct mvcc_reader *r, int64_t rev)
{
    struct mvcc_range_req q = req_of("gen", NULL);
    struct mvcc_range_res res;
    int g = -1;

    q.revision = rev;
    if (mvcc_range(r, &q, &res) == MVCC_OK && res.n == 1 && res.kvs[0].value_len == 2 &&
        res.kvs[0].value[0] == 'g')
        g = res.kvs[0].value[1] - '0';
    mvcc_range_res_free(&res);
    return g >= 0 && g < RG_GENS ? g : -1;
}

/* The k* keys at rev: none, or all of generation g's with one value of
 * that generation and one mod revision. */
static void rg_check_k(struct rg *c, struct mvcc_reader *r, int64_t rev, int g)
{
    struct mvcc_range_req q = req_of("k", "l");
    struct mvcc_range_res res;
    char pre[8];
    int n = snprintf(pre, sizeof(pre), "g%d:", g);

    q.revision = rev;
    if (mvcc_range(r, &q, &res) != MVCC_OK)
        rg_fail(c, "range k", rev, g);
    else if ((res.n != 0 && res.n != (size_t)rg_keys(g)) || res.count != (int64_t)res.n)
        rg_fail(c, "k count", (long long)res.n, g);
    for (size_t i = 0; i < res.n; i++) {
        const struct mvcc_kv *kv = &res.kvs[i], *k0 = &res.kvs[0];
        if (kv->value_len < (size_t)n || memcmp(kv->value, pre, (size_t)n) != 0 ||
            kv->value_len != k0->value_len || memcmp(kv->value, k0->value, k0->value_len) != 0 ||
            kv->mod_revision != k0->mod_revision)
            rg_fail(c, "k value of another state", (long long)i, g);
    }
    mvcc_range_res_free(&res);
}

/* One section's checks; returns the generation seen. */
static int rg_check(struct rg *c, struct mvcc_reader *r, unsigned *seed)
{
    int64_t rev = mvcc_read_revision(r), cr = mvcc_read_compact_revision(r), hist, hr, hc;
    int g = rg_gen_at(r, 0);
    uint32_t h;

    if (g < 0) {
        rg_fail(c, "no generation", rev, cr);
        return 0;
    }
    if (rev < c->rev[g] || rev > c->rev[g] + RG_EXTRA || cr < c->compact[g] || cr > rev)
        rg_fail(c, "revisions of another state", rev, g);
    hist = cr + (int64_t)(rand_r(seed) % (unsigned)(rev - cr + 1));
    if (rg_gen_at(r, hist) != g)
        rg_fail(c, "history of another state", hist, g);
    rg_check_k(c, r, 0, g);
    rg_check_k(c, r, hist, g);
    if (cr == c->compact[g] && rand_r(seed) % 4 == 0 &&
        (mvcc_hash_kv(r, c->rev[g], &h, &hr, &hc) != MVCC_OK || h != c->hash[g]))
        rg_fail(c, "hash of the generation", g, rev);
    return g;
}

/* Now and then a section is held across the writer's work: its state
 * must not change under it. */
static void rg_hold(struct rg *c, struct mvcc_reader *r)
{
    struct timespec ts = {0, 200000};
    int64_t rev = mvcc_read_revision(r), hr, hc;
    uint32_t h0, h1;

    if (mvcc_hash_kv(r, 0, &h0, &hr, &hc) != MVCC_OK)
        rg_fail(c, "hash", rev, 0);
    nanosleep(&ts, NULL);
    if (mvcc_hash_kv(r, 0, &h1, &hr, &hc) != MVCC_OK || h0 != h1 || mvcc_read_revision(r) != rev)
        rg_fail(c, "held state changed", h0, h1);
    __atomic_add_fetch(&c->holds, 1, __ATOMIC_RELAXED);
}

static void *rg_reader(void *arg)
{
    struct rg *c = arg;
    unsigned seed = __atomic_add_fetch(&c->seed, 7919, __ATOMIC_RELAXED);
    struct mvcc_reader *r = mvcc_reader_register(c->s);

    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        int g;
        mvcc_read_begin(r);
        g = rg_check(c, r, &seed);
        if (rand_r(&seed) % 16 == 0) {
            rg_hold(c, r);
            rg_check(c, r, &seed);
        }
        mvcc_read_end(r);
        __atomic_or_fetch(&c->seen, 1u << g, __ATOMIC_RELAXED);
        __atomic_add_fetch(&c->reads, 1, __ATOMIC_RELAXED);
        if (rand_r(&seed) % 64 == 0) {
            mvcc_reader_unregister(r);
            r = mvcc_reader_register(c->s);
        }
    }
    mvcc_reader_unregister(r);
    return NULL;
}

/* One round of the writer: restore generation g (or stage another and
 * abort first), write, start a compaction, reclaim a little. */
static void rg_round(struct rg *c, int round)
{
    struct timespec ts = {0, 300000};
    int g = round % RG_GENS, extra = round % RG_EXTRA;
    const struct dumped *o = &c->d[(g + 1) % RG_GENS];

    if (round % 5 == 4) {
        for (size_t i = 0; i < o->n / 2; i++)
            assert_int_equal(mvcc_restore_version(c->s, &o->v[i]), MVCC_OK);
        mvcc_restore_abort(c->s);
    }
    restore_into(c->s, &c->d[g], c->rev[g], c->compact[g]);
    for (int t = 0; t < extra; t++) {
        rg_txn(c->s, g, 100000 + round * 100 + t);
        nanosleep(&ts, NULL);
    }
    if (round % 2 == 0 && extra >= 2) {
        assert_int_equal(mvcc_compact(c->s, mvcc_current_revision(c->s) - 1), MVCC_OK);
        mvcc_compact_step(c->s, 3); /* left in progress for the next restore */
    }
    mvcc_reclaim(c->s, 256);
    nanosleep(&ts, NULL);
}

static void test_restore_concurrent_readers(void **state)
{
    struct fix *f = *state;
    struct rg *c = calloc(1, sizeof(*c));
    pthread_t th[RG_READERS];

    assert_non_null(c);
    c->s = f->s;
    c->seed = 3;
    for (int g = 0; g < RG_GENS; g++)
        rg_source(c, g);
    restore_into(f->s, &c->d[0], c->rev[0], c->compact[0]);
    for (int i = 0; i < RG_READERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, rg_reader, c), 0);
    for (int round = 1; round <= RG_ROUNDS; round++)
        rg_round(c, round);
    __atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < RG_READERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    printf("replace: %d restores, %lld reads (%lld held), generations seen %#x\n", RG_ROUNDS,
           (long long)c->reads, (long long)c->holds, c->seen);
    assert_int_equal(c->errors, 0);
    assert_true(c->reads > 0);
    assert_true(__builtin_popcount(c->seen) >= 2);
    reclaim_all(f->s);
    /* Quiescent: the last round's generation, checked from this thread. */
    mvcc_read_begin(f->r);
    unsigned seed = 1;
    int g = rg_check(c, f->r, &seed);
    mvcc_read_end(f->r);
    assert_int_equal(g, RG_ROUNDS % RG_GENS);
    assert_int_equal(c->errors, 0);
    for (int g2 = 0; g2 < RG_GENS; g2++)
        dumped_free(&c->d[g2]);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions_generations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_shares_revision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_end_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_more_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revision_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_revision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_only_count_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sort_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_range_prev, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_delete_keeps_revision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pinned_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_recycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_range_own_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_semantics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_interleaved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_shrinks_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_1m_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hot_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_concurrent_readers, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
