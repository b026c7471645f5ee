/*
 * test_members.c — src/server/members.c: etcd's --initial-cluster syntax
 * and URL rules, its bootstrap checks (with etcd 3.4.23's exact messages),
 * and the member and cluster IDs against vectors taken from real etcd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "members.h"

static struct members ms;
static char err[2048];

/* Vector 1, from real etcd 3.4.23:
 *   etcd --name n1 --initial-cluster n1=http://127.0.0.1:23801 \
 *        --initial-advertise-peer-urls http://127.0.0.1:23801 \
 *        --initial-cluster-token tok-test --listen-peer-urls http://127.0.0.1:23801 ...
 *   etcdctl member list -w json: ID 10206511772260819602, cluster_id 5123725728312069230 */
static void test_vector_one_member(void **state)
{
    (void)state;
    assert_int_equal(members_bootstrap(&ms, "n1", "n1=http://127.0.0.1:23801",
                                       "http://127.0.0.1:23801", "tok-test", 0, err, sizeof(err)),
                     0);
    assert_int_equal(ms.n, 1);
    assert_true(ms.m[0].id == 10206511772260819602ull);
    assert_true(ms.m[0].id == 0x8da4d0616572e292ull);
    assert_true(ms.cluster_id == 5123725728312069230ull);
}

/* etcd's defaults (--name default, http://localhost:2380, etcd-cluster):
 * the IDs every fresh etcd prints, 8e9e05c52164694d in cdf818194e3a8c32. */
static void test_vector_defaults(void **state)
{
    (void)state;
    assert_int_equal(members_bootstrap(&ms, "default", "default=http://localhost:2380",
                                       "http://localhost:2380", "etcd-cluster", 0, err,
                                       sizeof(err)),
                     0);
    assert_true(ms.m[0].id == 0x8e9e05c52164694dull);
    assert_true(ms.cluster_id == 0xcdf818194e3a8c32ull);
}

/* Vector 2, three members, one with two URLs given out of order, from the
 * log of real etcd 3.4.23 ("added member ... to cluster ..."):
 *   etcd --name a --initial-advertise-peer-urls http://127.0.0.1:23802,http://10.0.0.1:2380 \
 *     --initial-cluster
 * 'a=http://127.0.0.1:23802,b=http://10.0.0.2:2380,a=http://10.0.0.1:2380,c=https://node-c.example:2380'
 * \
 *     --initial-cluster-token vec-token ...
 *   a 8d834baedf30fa03, b 8f369c2dde91244c, c 678a45a1f44a4799, cluster 2b50f95f9926fbbd */
static void test_vector_three_members(void **state)
{
    struct members_member *a, *b, *c;

    (void)state;
    assert_int_equal(
        members_bootstrap(&ms, "a",
                          "a=http://127.0.0.1:23802,b=http://10.0.0.2:2380,a=http://10.0.0.1:2380,"
                          "c=https://node-c.example:2380",
                          "http://127.0.0.1:23802,http://10.0.0.1:2380", "vec-token", 0, err,
                          sizeof(err)),
        0);
    assert_int_equal(ms.n, 3);
    a = members_find_self(&ms, "a");
    b = members_find_self(&ms, "b");
    c = members_find_self(&ms, "c");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_null(members_find_self(&ms, "d"));
    assert_int_equal(a->n_peer_urls, 2);
    assert_string_equal(a->peer_urls[0], "http://10.0.0.1:2380"); /* sorted */
    assert_string_equal(a->peer_urls[1], "http://127.0.0.1:23802");
    assert_true(a->id == 0x8d834baedf30fa03ull);
    assert_true(b->id == 0x8f369c2dde91244cull);
    assert_true(c->id == 0x678a45a1f44a4799ull);
    assert_true(ms.cluster_id == 0x2b50f95f9926fbbdull);
    assert_ptr_equal(members_find_id(&ms, 0x8f369c2dde91244cull), b);
    assert_null(members_find_id(&ms, 1));
}

/* The building blocks: URL order does not matter; the time argument (for
 * members added later) changes the ID; the cluster ID ignores order. */
static void test_id_functions(void **state)
{
    const char *u1[] = {"http://127.0.0.1:23802", "http://10.0.0.1:2380"};
    const char *u2[] = {"http://10.0.0.1:2380", "http://127.0.0.1:23802"};
    uint64_t ids1[] = {0x8d834baedf30fa03ull, 0x8f369c2dde91244cull, 0x678a45a1f44a4799ull};
    uint64_t ids2[] = {0x678a45a1f44a4799ull, 0x8d834baedf30fa03ull, 0x8f369c2dde91244cull};
    int64_t t = 1700000000;

    (void)state;
    assert_true(members_member_id(u1, 2, "vec-token", NULL) == 0x8d834baedf30fa03ull);
    assert_true(members_member_id(u2, 2, "vec-token", NULL) == 0x8d834baedf30fa03ull);
    assert_true(members_member_id(u1, 2, "vec-token", &t) != 0x8d834baedf30fa03ull);
    assert_true(members_member_id(u1, 2, "other", NULL) != 0x8d834baedf30fa03ull);
    assert_true(members_cluster_id(ids1, 3) == 0x2b50f95f9926fbbdull);
    assert_true(members_cluster_id(ids2, 3) == 0x2b50f95f9926fbbdull);
}

static void test_url_parse(void **state)
{
    char out[MEMBERS_URL_MAX];

    (void)state;
    assert_int_equal(members_url_parse("  HTTP://h:1 ", out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "http://h:1");
    assert_int_equal(members_url_parse("http://[::1]:2380", out, sizeof(out), err, sizeof(err)), 0);
    assert_int_equal(members_url_parse("foo", out, sizeof(out), err, sizeof(err)), -1);
    assert_string_equal(err, "URL scheme must be http, https, unix, or unixs: foo");
    assert_int_equal(members_url_parse("", out, sizeof(out), err, sizeof(err)), -1);
    assert_string_equal(err, "URL scheme must be http, https, unix, or unixs: ");
    assert_int_equal(members_url_parse("ftp://h:1", out, sizeof(out), err, sizeof(err)), -1);
    assert_int_equal(members_url_parse("http://127.0.0.1", out, sizeof(out), err, sizeof(err)), -1);
    assert_string_equal(err, "URL address does not have the form \"host:port\": http://127.0.0.1");
    assert_int_equal(members_url_parse("http://a:b:1", out, sizeof(out), err, sizeof(err)), -1);
    assert_int_equal(members_url_parse("http://127.0.0.1:1/p", out, sizeof(out), err, sizeof(err)),
                     -1);
    assert_string_equal(err, "URL must not contain a path: http://127.0.0.1:1/p");
}

static void test_urls_check(void **state)
{
    (void)state;
    assert_int_equal(members_urls_check("http://127.0.0.1:1,http://localhost:2", MEMBERS_URL_BIND,
                                        err, sizeof(err)),
                     2);
    assert_int_equal(members_urls_check("unix://sock:0", MEMBERS_URL_BIND, err, sizeof(err)), 1);
    assert_int_equal(members_urls_check("http://myhost:1", MEMBERS_URL_BIND, err, sizeof(err)), -2);
    assert_string_equal(err, "expected IP in URL for binding (http://myhost:1)");
    assert_int_equal(members_urls_check("http://:1", MEMBERS_URL_ADVERTISE, err, sizeof(err)), -2);
    assert_string_equal(err, "unexpected empty host (http://:1)");
    assert_int_equal(members_urls_check("http://h:1,", MEMBERS_URL_ANY, err, sizeof(err)), -1);
    assert_int_equal(members_urls_check("http://a:1,http://a:2,http://a:3,http://a:4,http://a:5,"
                                        "http://a:6,http://a:7,http://a:8,http://a:9",
                                        MEMBERS_URL_ANY, err, sizeof(err)),
                     -1);
}

static void test_parse(void **state)
{
    (void)state;
    /* Empty pieces are skipped; a name may repeat. */
    assert_int_equal(
        members_parse(&ms, ",a=http://h:1,,b=http://h:2,a=http://g:1", err, sizeof(err)), 0);
    assert_int_equal(ms.n, 2);
    assert_string_equal(ms.m[0].name, "a");
    assert_int_equal(ms.m[0].n_peer_urls, 2);
    assert_string_equal(ms.m[0].peer_urls[0], "http://g:1");
    /* A piece without '=' is a name with an empty URL. */
    assert_int_equal(members_parse(&ms, "foo", err, sizeof(err)), -1);
    assert_string_equal(err, "URL scheme must be http, https, unix, or unixs: ");
    assert_int_equal(members_parse(&ms, "", err, sizeof(err)), 0);
    assert_int_equal(ms.n, 0);
}

/* The messages real etcd 3.4.23 prints for the common mistakes (each one
 * checked by running etcd with those flags). */
static void test_verify_messages(void **state)
{
    (void)state;
    assert_int_equal(members_bootstrap(&ms, "a", "b=http://127.0.0.1:23801",
                                       "http://127.0.0.1:23801", "t", 0, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "couldn't find local name \"a\" in the initial cluster configuration");
    assert_int_equal(members_bootstrap(&ms, "a", "a=http://127.0.0.1:23802",
                                       "http://127.0.0.1:23801", "t", 0, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "--initial-cluster has a=http://127.0.0.1:23802 but missing from "
                             "--initial-advertise-peer-urls=http://127.0.0.1:23801 (resolved "
                             "urls: \"http://127.0.0.1:23801\" != \"http://127.0.0.1:23802\")");
    assert_int_equal(members_bootstrap(&ms, "a",
                                       "a=http://127.0.0.1:23801,a=http://127.0.0.1:23802",
                                       "http://127.0.0.1:23801", "t", 0, err, sizeof(err)),
                     -1);
    assert_string_equal(err,
                        "--initial-cluster has a=http://127.0.0.1:23802 but missing from "
                        "--initial-advertise-peer-urls=http://127.0.0.1:23801 "
                        "(len([\"http://127.0.0.1:23801\"]) != len([\"http://127.0.0.1:23801\" "
                        "\"http://127.0.0.1:23802\"]))");
    assert_int_equal(members_bootstrap(&ms, "a", "a=http://127.0.0.1:23801",
                                       "http://127.0.0.1:23801,http://127.0.0.1:23802", "t", 0, err,
                                       sizeof(err)),
                     -1);
    assert_string_equal(err, "--initial-advertise-peer-urls has http://127.0.0.1:23802 but missing "
                             "from --initial-cluster=a=http://127.0.0.1:23801,a=http://"
                             "127.0.0.1:23802");
    assert_int_equal(members_bootstrap(&ms, "a",
                                       "a=http://127.0.0.1:23801,b=http://127.0.0.1:23801",
                                       "http://127.0.0.1:23801", "t", 0, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "initial cluster a=http://127.0.0.1:23801,b=http://127.0.0.1:23801 "
                             "has duplicate url");
    assert_int_equal(
        members_bootstrap(&ms, "a", "foo", "http://127.0.0.1:23801", "t", 0, err, sizeof(err)), -1);
    assert_string_equal(err, "error setting up initial cluster: URL scheme must be http, https, "
                             "unix, or unixs: ");
    /* Joining an existing cluster: the advertised URLs are not compared. */
    assert_int_equal(members_bootstrap(&ms, "a", "a=http://127.0.0.1:23802",
                                       "http://127.0.0.1:23801", "t", 1, err, sizeof(err)),
                     0);
}

static void test_limits(void **state)
{
    char big[MEMBERS_MAX * 40 + 64];
    size_t at = 0;
    int i;

    (void)state;
    for (i = 0; i <= MEMBERS_MAX; i++)
        at += (size_t)snprintf(big + at, sizeof(big) - at, "%sm%d=http://h:%d", i ? "," : "", i,
                               1000 + i);
    assert_int_equal(members_parse(&ms, big, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than"));
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(members_parse(&ms, big, err, sizeof(err)), -1);
}

static void test_client_urls(void **state)
{
    (void)state;
    assert_int_equal(members_parse(&ms, "a=http://h:1", err, sizeof(err)), 0);
    assert_int_equal(members_set_client_urls(&ms.m[0], "http://h:2,http://h:3"), 0);
    assert_int_equal(ms.m[0].n_client_urls, 2);
    assert_string_equal(ms.m[0].client_urls[1], "http://h:3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_one_member),
        cmocka_unit_test(test_vector_defaults),
        cmocka_unit_test(test_vector_three_members),
        cmocka_unit_test(test_id_functions),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_urls_check),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_verify_messages),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_client_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
