/*
 * test_roster.c — the replicated member list (src/server/roster.c): adds
 * and removes keep it sorted, the remembered removed IDs are bounded, the
 * encoding round-trips and rejects damage, published attributes apply
 * only to known members, and the answers decode as etcd's messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "roster.h"
#include "rpc.pb-c.h"

static void add(struct roster *r, uint64_t id, const char *name, const char *url, bool learner)
{
    const char *urls[1] = {url};
    assert_int_equal(roster_add(r, id, name, urls, 1, learner), 0);
}

static void test_add_remove_conf(void **state)
{
    struct roster r = {0};
    struct raft_conf conf;

    (void)state;
    add(&r, 30, "c", "http://127.0.0.1:3", false);
    add(&r, 10, "a", "http://127.0.0.1:1", false);
    add(&r, 20, "", "http://127.0.0.1:2", true);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.m[0].id, 10); /* sorted by ID */
    assert_int_equal(r.m[2].id, 30);
    roster_conf(&r, &conf);
    assert_int_equal(conf.n_voters, 2);
    assert_int_equal(conf.n_learners, 1);
    assert_int_equal(conf.learners[0], 20);
    assert_int_equal(roster_voters(&r), 2);
    assert_int_equal(roster_learners(&r), 1);
    /* "started" voters have published a name. */
    assert_int_equal(roster_started_voters(&r, 0), 2);
    assert_int_equal(roster_started_voters(&r, 10), 1);
    const char *used[1] = {"http://127.0.0.1:2"};
    assert_true(roster_peer_url_used(&r, used, 1, 0));
    assert_false(roster_peer_url_used(&r, used, 1, 20));
    roster_remove(&r, 10);
    assert_int_equal(r.n, 2);
    assert_null(roster_find(&r, 10));
    assert_int_equal(r.n_removed, 1);
    assert_int_equal(r.removed[0], 10);
    assert_int_equal(roster_add(&r, 0, "x", NULL, 0, false), -1);
}

static void test_removed_bounded(void **state)
{
    struct roster r = {0};

    (void)state;
    for (uint64_t id = 1; id <= ROSTER_REMOVED_MAX + 5; id++) {
        add(&r, id, "m", "http://127.0.0.1:9", false);
        roster_remove(&r, id);
    }
    assert_int_equal(r.n, 0);
    assert_int_equal(r.n_removed, ROSTER_REMOVED_MAX);
    assert_int_equal(r.removed[0], 6); /* the oldest were dropped */
    assert_int_equal(r.removed[ROSTER_REMOVED_MAX - 1], ROSTER_REMOVED_MAX + 5);
}

static void test_encode_roundtrip_and_damage(void **state)
{
    struct roster r = {0}, back;
    uint8_t *buf;
    size_t len;

    (void)state;
    add(&r, 7, "seven", "http://127.0.0.1:7", false);
    add(&r, 8, "", "http://127.0.0.1:8", true);
    strcpy(r.m[0].client_urls[0], "http://127.0.0.1:17");
    r.m[0].n_client_urls = 1;
    add(&r, 9, "nine", "http://127.0.0.1:9", false);
    roster_remove(&r, 9);
    buf = roster_encode(&r, &len);
    assert_non_null(buf);
    assert_int_equal(roster_decode(&back, buf, len), 0);
    assert_memory_equal(&back.m[0], &r.m[0], sizeof(r.m[0]));
    assert_memory_equal(&back.m[1], &r.m[1], sizeof(r.m[1]));
    assert_int_equal(back.n, 2);
    assert_int_equal(back.n_removed, 1);
    assert_int_equal(back.removed[0], 9);
    /* Every truncation fails, and leaves the target as it was. */
    for (size_t cut = 0; cut < len; cut++) {
        struct roster t = back;
        assert_int_equal(roster_decode(&t, buf, cut), -1);
        assert_memory_equal(&t, &back, sizeof(t));
    }
    free(buf);
}

static void test_attrs(void **state)
{
    struct roster r = {0};
    struct roster_member self = {.id = 5};
    uint8_t *buf;
    size_t len;

    (void)state;
    add(&r, 5, "", "http://127.0.0.1:5", false);
    strcpy(self.name, "five");
    strcpy(self.client_urls[0], "http://127.0.0.1:15");
    self.n_client_urls = 1;
    buf = roster_attrs_encode(&self, 6, &len);
    assert_non_null(buf);
    assert_int_equal(buf[0], 6);
    assert_int_equal(roster_attrs_apply(&r, buf + 1, len - 1), 0);
    assert_string_equal(r.m[0].name, "five");
    assert_string_equal(r.m[0].client_urls[0], "http://127.0.0.1:15");
    /* Peer URLs are not changed by attributes. */
    assert_string_equal(r.m[0].peer_urls[0], "http://127.0.0.1:5");
    free(buf);
    /* A member removed since: ignored. */
    self.id = 99;
    buf = roster_attrs_encode(&self, 6, &len);
    assert_int_equal(roster_attrs_apply(&r, buf + 1, len - 1), 0);
    assert_int_equal(r.n, 1);
    free(buf);
}

static void test_answers_decode(void **state)
{
    struct roster r = {0};
    Etcdserverpb__MemberAddResponse *add_resp;
    Etcdserverpb__MemberListResponse *list;
    uint8_t *buf;
    size_t len;

    (void)state;
    add(&r, 1, "one", "http://127.0.0.1:1", false);
    add(&r, 2, "", "http://127.0.0.1:2", true);
    buf = roster_member_list(&r, 111, 1, 3, &len);
    list = etcdserverpb__member_list_response__unpack(NULL, len, buf);
    assert_non_null(list);
    assert_int_equal(list->header->cluster_id, 111);
    assert_int_equal(list->header->member_id, 1);
    assert_int_equal(list->header->raft_term, 3);
    assert_int_equal(list->header->revision, 0);
    assert_int_equal(list->n_members, 2);
    assert_true(list->members[1]->islearner);
    etcdserverpb__member_list_response__free_unpacked(list, NULL);
    free(buf);
    buf = roster_member_add_reply(&r, 2, 111, 1, 3, &len);
    add_resp = etcdserverpb__member_add_response__unpack(NULL, len, buf);
    assert_non_null(add_resp);
    assert_int_equal(add_resp->member->id, 2);
    assert_true(add_resp->member->islearner);
    assert_int_equal(add_resp->member->n_peerurls, 1);
    assert_int_equal(add_resp->n_members, 2);
    etcdserverpb__member_add_response__free_unpacked(add_resp, NULL);
    free(buf);
    assert_null(roster_member_add_reply(&r, 42, 111, 1, 3, &len));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_remove_conf),
        cmocka_unit_test(test_removed_bounded),
        cmocka_unit_test(test_encode_roundtrip_and_damage),
        cmocka_unit_test(test_attrs),
        cmocka_unit_test(test_answers_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
