/*
 * test_mvcc.c — unit tests for src/mvcc (mvcc.c and btree.c).
 *
 * Semantics are checked against etcd's (etcdserver/apply.go applyRange,
 * mvcc/kvstore_txn.go): revisions, versions and generations, range_end
 * rules, limit/more/count, sort, filters, keys_only/count_only, deletes.
 * The last tests run one writer and three reader threads and check that
 * every read sees one consistent published state. cmocka is not thread
 * safe, so reader threads count violations and the main thread asserts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
 * revision, <= rev. The x* keys: exactly one per txn so far. */
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
    return at;
}

static void *conc_reader(void *arg)
{
    struct conc *c = arg;
    unsigned seed = __atomic_add_fetch(&c->seed, 7919, __ATOMIC_RELAXED);
    struct mvcc_reader *r = mvcc_reader_register(c->s);
    int64_t last = 0;

    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        int64_t cur, hist;
        mvcc_read_begin(r);
        cur = conc_check_at(c, r, 0);
        if (cur < last)
            conc_fail(c, "revision went back", cur, last);
        last = cur;
        hist = 1 + (int64_t)(rand_r(&seed) % (unsigned)cur);
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
    assert_int_equal(mvcc_txn_end(s), 1 + t);
}

static void test_concurrent_readers(void **state)
{
    struct fix *f = *state;
    struct conc c = {.s = f->s, .seed = 1};
    pthread_t th[CK_READERS];

    for (int i = 0; i < CK_READERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, conc_reader, &c), 0);
    for (int t = 1; t <= CK_TXNS; t++)
        conc_write_txn(f->s, t);
    __atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < CK_READERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(c.errors, 0);
    assert_true(c.reads > 0);
    assert_int_equal(mvcc_current_revision(f->s), 1 + CK_TXNS);
    /* Quiescent: one more check from this thread over the final state. */
    mvcc_read_begin(f->r);
    conc_check_at(&c, f->r, 0);
    conc_check_at(&c, f->r, CK_TXNS / 2);
    mvcc_read_end(f->r);
    assert_int_equal(c.errors, 0);
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
        cmocka_unit_test_setup_teardown(test_concurrent_readers, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
