/*
 * test_lease.c — the lease table (src/lease): grants with etcd's TTL
 * rules, attach/move/detach, revoke handing back exactly its keys in
 * order, the leader's expiry on a fake clock (nothing early, everything on
 * time, in order, O(k log n) at the bound), renewals, checkpoints carrying
 * the remaining TTL over to a new leader, the snapshot encoding (round
 * trip, every truncation and bit flip rejected) and the bounds. A random
 * run checks the heaps against a brute-force scan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crc32c.h"
#include "le.h"
#include "lease.h"

#define MIN_TTL_S   5
#define INTERVAL_MS 10000
#define RETRY_MS    3000

static const struct lease_config cfg = {
    .min_ttl_s = MIN_TTL_S, .checkpoint_interval_ms = INTERVAL_MS, .expired_retry_ms = RETRY_MS};

static int64_t now_ms = 1000000; /* the fake clock */

static void grant(struct lease_table *t, int64_t id, int64_t ttl_s)
{
    int64_t granted;

    assert_int_equal(lease_grant(t, id, ttl_s, &granted), LEASE_OK);
    assert_int_equal(granted, ttl_s < MIN_TTL_S ? MIN_TTL_S : ttl_s);
}

static void attach(struct lease_table *t, const char *key, int64_t id)
{
    assert_int_equal(lease_attach(t, (const uint8_t *)key, strlen(key), id), LEASE_OK);
}

static int64_t owner(const struct lease_table *t, const char *key)
{
    return lease_of(t, (const uint8_t *)key, strlen(key));
}

static size_t expired(struct lease_table *t, int64_t *ids, size_t max)
{
    return lease_expired(t, now_ms, ids, max);
}

static void test_grant(void **state)
{
    struct lease_table *t = lease_create(&cfg);
    struct lease_info info;
    int64_t granted, *ids;
    size_t n;

    (void)state;
    grant(t, 7, 60);
    assert_int_equal(lease_grant(t, 7, 30, NULL), LEASE_ERR_EXISTS);
    assert_int_equal(lease_grant(t, 8, LEASE_TTL_MAX_S + 1, NULL), LEASE_ERR_TTL_TOO_LARGE);
    assert_int_equal(lease_get(t, 8, NULL), LEASE_ERR_NOT_FOUND);
    grant(t, 8, LEASE_TTL_MAX_S);
    /* Below the minimum, zero and negative TTLs are raised to it. */
    grant(t, 3, 1);
    grant(t, 4, 0);
    grant(t, -5, -7); /* etcd's lessor takes any ID but 0 */
    assert_int_equal(lease_grant(t, 0, 10, &granted), LEASE_ERR_NOT_FOUND);
    /* Existence is checked before the minimum is applied; TTL first. */
    assert_int_equal(lease_grant(t, 7, LEASE_TTL_MAX_S + 1, NULL), LEASE_ERR_TTL_TOO_LARGE);
    assert_int_equal(lease_count(t), 5);
    assert_int_equal(lease_get(t, 3, &info), LEASE_OK);
    assert_int_equal(info.ttl_s, MIN_TTL_S);
    assert_int_equal(info.checkpoint_ms, 0);
    assert_int_equal(lease_list(t, &ids, &n), LEASE_OK);
    assert_int_equal(n, 5);
    assert_int_equal(ids[0], -5);
    assert_int_equal(ids[1], 3);
    assert_int_equal(ids[2], 4);
    assert_int_equal(ids[3], 7);
    assert_int_equal(ids[4], 8);
    free(ids);
    assert_string_equal(lease_strerror(LEASE_ERR_EXISTS), "etcdserver: lease already exists");
    assert_string_equal(lease_strerror(LEASE_ERR_NOT_FOUND),
                        "etcdserver: requested lease not found");
    assert_string_equal(lease_strerror(LEASE_ERR_TTL_TOO_LARGE), "etcdserver: too large lease TTL");
    assert_string_equal(lease_strerror(12345), "unknown");
    lease_destroy(t);

    t = lease_create(&cfg);
    assert_int_equal(lease_list(t, &ids, &n), LEASE_OK);
    assert_null(ids);
    assert_int_equal(n, 0);
    lease_destroy(t);
}

static void test_attach_move_detach(void **state)
{
    struct lease_table *t = lease_create(&cfg);
    struct lease_info info;
    uint8_t byte = 'x';

    (void)state;
    grant(t, 1, 10);
    grant(t, 2, 10);
    attach(t, "a", 1);
    attach(t, "b", 1);
    attach(t, "a", 1); /* again: no change */
    assert_int_equal(owner(t, "a"), 1);
    lease_get(t, 1, &info);
    assert_int_equal(info.n_keys, 2);
    attach(t, "a", 2); /* moves */
    assert_int_equal(owner(t, "a"), 2);
    lease_get(t, 1, &info);
    assert_int_equal(info.n_keys, 1);
    lease_get(t, 2, &info);
    assert_int_equal(info.n_keys, 1);
    /* Unknown lease: nothing changes. */
    assert_int_equal(lease_attach(t, (const uint8_t *)"a", 1, 99), LEASE_ERR_NOT_FOUND);
    assert_int_equal(owner(t, "a"), 2);
    assert_int_equal(lease_attach(t, (const uint8_t *)"z", 1, 99), LEASE_ERR_NOT_FOUND);
    assert_int_equal(owner(t, "z"), 0);
    /* Bad keys. */
    assert_int_equal(lease_attach(t, &byte, 0, 1), LEASE_ERR_INVALID);
    assert_int_equal(lease_attach(t, &byte, (size_t)LEASE_KEY_BYTES_MAX + 1, 1), LEASE_ERR_INVALID);
    /* A put without a lease detaches. */
    attach(t, "b", 0);
    assert_int_equal(owner(t, "b"), 0);
    lease_get(t, 1, &info);
    assert_int_equal(info.n_keys, 0);
    attach(t, "b", 0); /* not attached: fine */
    assert_int_equal(lease_detach(t, (const uint8_t *)"a", 1), LEASE_OK);
    assert_int_equal(lease_detach(t, (const uint8_t *)"a", 1), LEASE_ERR_NOT_FOUND);
    lease_get(t, 2, &info);
    assert_int_equal(info.n_keys, 0);
    lease_destroy(t);
}

static void test_revoke_keys(void **state)
{
    static const char *const in[] = {"b", "ab", "a", "abc", "\x01", "zz", "z", "B"};
    static const char *const sorted[] = {"\x01", "B", "a", "ab", "abc", "b", "z", "zz"};
    struct lease_table *t = lease_create(&cfg);
    struct lease_keys k;

    (void)state;
    grant(t, 1, 10);
    grant(t, 2, 10);
    for (size_t i = 0; i < 8; i++)
        attach(t, in[i], 1);
    attach(t, "other", 2);
    attach(t, "moved", 1);
    attach(t, "moved", 2);
    attach(t, "gone", 1);
    lease_detach(t, (const uint8_t *)"gone", 4);
    assert_int_equal(lease_revoke(t, 1, &k), LEASE_OK);
    assert_int_equal(k.n, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(k.v[i].len, strlen(sorted[i]));
        assert_memory_equal(k.v[i].key, sorted[i], k.v[i].len);
        assert_int_equal(owner(t, sorted[i]), 0);
    }
    lease_keys_free(&k);
    assert_int_equal(lease_get(t, 1, NULL), LEASE_ERR_NOT_FOUND);
    assert_int_equal(owner(t, "other"), 2);
    assert_int_equal(owner(t, "moved"), 2);
    assert_int_equal(lease_revoke(t, 1, &k), LEASE_ERR_NOT_FOUND);
    assert_int_equal(k.n, 0);
    lease_keys_free(&k);
    /* A key may be attached again to a new lease after its revoke. */
    grant(t, 1, 10);
    attach(t, "a", 1);
    assert_int_equal(lease_revoke(t, 2, &k), LEASE_OK);
    assert_int_equal(k.n, 2);
    assert_memory_equal(k.v[0].key, "moved", 5);
    assert_memory_equal(k.v[1].key, "other", 5);
    lease_keys_free(&k);
    grant(t, 3, 10);
    assert_int_equal(lease_revoke(t, 3, &k), LEASE_OK);
    assert_int_equal(k.n, 0);
    assert_null(k.v);
    lease_keys_free(&k);
    assert_int_equal(lease_count(t), 1);
    lease_destroy(t);
}

static void test_expiry(void **state)
{
    struct lease_table *t = lease_create(&cfg);
    int64_t ids[8], ttl, rem;
    struct lease_keys k;
    bool clear;

    (void)state;
    /* Not leader: no deadlines, nothing expires, renew is refused. */
    grant(t, 1, 30);
    grant(t, 2, 10);
    grant(t, 3, 20);
    grant(t, 4, 10);
    grant(t, 5, 20);
    now_ms += 1000000;
    assert_int_equal(expired(t, ids, 8), 0);
    assert_int_equal(lease_renew(t, 1, now_ms, &ttl, &clear), LEASE_ERR_NOT_PRIMARY);
    assert_int_equal(ttl, 0);
    assert_int_equal(lease_remaining(t, 1, now_ms, &rem), LEASE_ERR_NOT_PRIMARY);
    assert_false(lease_is_leader(t));

    int64_t t0 = now_ms;
    lease_promote(t, t0, 0);
    assert_true(lease_is_leader(t));
    assert_int_equal(lease_remaining(t, 3, now_ms, &rem), LEASE_OK);
    assert_int_equal(rem, 20000);
    now_ms = t0 + 9999;
    assert_int_equal(expired(t, ids, 8), 0);
    now_ms = t0 + 10000; /* 2 and 4 together, by ID */
    assert_int_equal(expired(t, ids, 1), 1);
    assert_int_equal(ids[0], 2);
    assert_int_equal(expired(t, ids, 8), 1);
    assert_int_equal(ids[0], 4);
    assert_int_equal(expired(t, ids, 8), 0); /* reported: not again yet */
    assert_int_equal(lease_renew(t, 2, now_ms, &ttl, &clear), LEASE_ERR_EXPIRED);
    assert_int_equal(ttl, 0);
    /* The revoke of 2 is applied; that of 4 is lost and retried. */
    assert_int_equal(lease_revoke(t, 2, &k), LEASE_OK);
    lease_keys_free(&k);
    now_ms = t0 + 10000 + RETRY_MS - 1;
    assert_int_equal(expired(t, ids, 8), 0);
    now_ms = t0 + 10000 + RETRY_MS;
    assert_int_equal(expired(t, ids, 8), 1);
    assert_int_equal(ids[0], 4);
    lease_revoke(t, 4, &k);
    /* Late: everything due comes out in deadline order. */
    now_ms = t0 + 40000;
    assert_int_equal(expired(t, ids, 8), 3);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 5);
    assert_int_equal(ids[2], 1);
    /* Demoted: deadlines forgotten. */
    lease_demote(t);
    lease_demote(t);
    assert_int_equal(expired(t, ids, 8), 0);
    lease_destroy(t);
}

static void test_renew_and_ttl(void **state)
{
    struct lease_table *t = lease_create(&cfg);
    struct lease_ttl r;
    int64_t ids[4], ttl, t0 = now_ms;
    bool clear;

    (void)state;
    grant(t, 1, 10);
    attach(t, "k2", 1);
    attach(t, "k1", 1);
    lease_promote(t, t0, 2000); /* an election timeout of grace */
    now_ms = t0 + 100;
    assert_int_equal(lease_time_to_live(t, 1, now_ms, false, &r), LEASE_OK);
    assert_int_equal(r.granted_ttl_s, 10);
    assert_int_equal(r.ttl_s, 11); /* 11.9 s truncated */
    assert_int_equal(r.keys.n, 0);
    lease_keys_free(&r.keys);
    now_ms = t0 + 11999;
    assert_int_equal(expired(t, ids, 4), 0);
    /* KeepAlive pushes the deadline to now + TTL. */
    assert_int_equal(lease_renew(t, 1, now_ms, &ttl, &clear), LEASE_OK);
    assert_int_equal(ttl, 10);
    assert_false(clear);
    now_ms += 9999;
    assert_int_equal(expired(t, ids, 4), 0);
    assert_int_equal(lease_time_to_live(t, 1, now_ms, true, &r), LEASE_OK);
    assert_int_equal(r.ttl_s, 0); /* 1 ms left */
    assert_int_equal(r.keys.n, 2);
    assert_memory_equal(r.keys.v[0].key, "k1", 2);
    assert_memory_equal(r.keys.v[1].key, "k2", 2);
    lease_keys_free(&r.keys);
    now_ms += 1;
    assert_int_equal(expired(t, ids, 4), 1);
    now_ms += 5000; /* past, its revoke slow: 0, never negative */
    assert_int_equal(lease_time_to_live(t, 1, now_ms, false, &r), LEASE_OK);
    assert_int_equal(r.ttl_s, 0);
    /* Unknown leases: TTL -1 for TimeToLive, 0 for KeepAlive. */
    assert_int_equal(lease_time_to_live(t, 9, now_ms, true, &r), LEASE_ERR_NOT_FOUND);
    assert_int_equal(r.ttl_s, -1);
    assert_int_equal(r.granted_ttl_s, 0);
    lease_keys_free(&r.keys);
    assert_int_equal(lease_renew(t, 9, now_ms, &ttl, NULL), LEASE_ERR_NOT_FOUND);
    assert_int_equal(ttl, 0);
    /* Granted while leader: the deadline starts at the next leader call. */
    grant(t, 2, 6);
    now_ms += 50;
    int64_t t1 = now_ms;
    assert_int_equal(expired(t, ids, 4), 1); /* lease 1 again, after retry */
    assert_int_equal(ids[0], 1);
    struct lease_keys k;
    assert_int_equal(lease_revoke(t, 1, &k), LEASE_OK);
    assert_int_equal(k.n, 2);
    lease_keys_free(&k);
    now_ms = t1 + 5999;
    assert_int_equal(expired(t, ids, 4), 0);
    now_ms = t1 + 6000;
    assert_int_equal(expired(t, ids, 4), 1);
    assert_int_equal(ids[0], 2);
    /* A grant then a revoke before any leader call. */
    grant(t, 3, 6);
    assert_int_equal(lease_revoke(t, 3, &k), LEASE_OK);
    lease_keys_free(&k);
    now_ms += 100000;
    assert_int_equal(expired(t, ids, 4), 1); /* 2 again: its revoke never came */
    assert_int_equal(ids[0], 2);
    lease_destroy(t);
}

/* Applies one replicated op to every member. */
static void both_checkpoint(struct lease_table **m, const struct lease_checkpoint *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 2; j++)
            assert_int_equal(lease_checkpoint(m[j], c[i].id, c[i].remaining_ms), LEASE_OK);
}

static void test_checkpoint_failover(void **state)
{
    struct lease_table *m[2] = {lease_create(&cfg), lease_create(&cfg)};
    struct lease_checkpoint c[8];
    struct lease_info info;
    int64_t ids[4], rem, ttl, t0 = now_ms;
    bool clear;

    (void)state;
    for (int j = 0; j < 2; j++) {
        grant(m[j], 1, 60); /* checkpointed */
        grant(m[j], 2, 60); /* checkpointed, then renewed */
        grant(m[j], 3, 8);  /* TTL under the interval: never checkpointed */
    }
    lease_promote(m[0], t0, 0);
    now_ms = t0 + INTERVAL_MS - 1;
    assert_int_equal(lease_checkpoints_due(m[0], now_ms, c, 8), 0);
    now_ms = t0 + INTERVAL_MS;
    assert_int_equal(lease_checkpoints_due(m[0], now_ms, c, 1), 1); /* max honoured */
    assert_int_equal(c[0].id, 1);
    assert_int_equal(c[0].remaining_ms, 50000);
    assert_int_equal(lease_checkpoints_due(m[0], now_ms, c + 1, 8), 1);
    assert_int_equal(c[1].id, 2);
    both_checkpoint(m, c, 2);
    assert_int_equal(lease_get(m[1], 1, &info), LEASE_OK);
    assert_int_equal(info.checkpoint_ms, 50000);
    /* 2 is kept alive: the leader must clear its checkpoint. */
    now_ms = t0 + 15000;
    assert_int_equal(lease_renew(m[0], 2, now_ms, &ttl, &clear), LEASE_OK);
    assert_true(clear);
    c[0] = (struct lease_checkpoint){.id = 2, .remaining_ms = 0};
    both_checkpoint(m, c, 1);
    assert_int_equal(lease_renew(m[0], 2, now_ms, &ttl, &clear), LEASE_OK);
    assert_false(clear);
    /* Leadership moves at t0 + 20 s, before the next checkpoint lands. */
    now_ms = t0 + 20000;
    lease_demote(m[0]);
    lease_promote(m[1], now_ms, 0);
    /* Lease 1 continues from its 50 s: deadline t0 + 70 s, not t0 + 80 s
     * (a reset to its full TTL, etcd's behaviour without checkpoints). */
    assert_int_equal(lease_remaining(m[1], 1, now_ms, &rem), LEASE_OK);
    assert_int_equal(rem, 50000);
    /* Lease 2 was renewed and cleared: its full TTL. */
    assert_int_equal(lease_remaining(m[1], 2, now_ms, &rem), LEASE_OK);
    assert_int_equal(rem, 60000);
    assert_int_equal(lease_remaining(m[1], 3, now_ms, &rem), LEASE_OK);
    assert_int_equal(rem, 8000);
    now_ms = t0 + 28000;
    assert_int_equal(lease_expired(m[1], now_ms, ids, 4), 1);
    assert_int_equal(ids[0], 3);
    for (int j = 0; j < 2; j++) {
        struct lease_keys k;
        assert_int_equal(lease_revoke(m[j], 3, &k), LEASE_OK);
    }
    /* The new leader checkpoints on its own schedule. */
    now_ms = t0 + 30000;
    assert_int_equal(lease_checkpoints_due(m[1], now_ms, c, 8), 2);
    assert_int_equal(c[0].id, 1);
    assert_int_equal(c[0].remaining_ms, 40000);
    assert_int_equal(c[1].id, 2);
    assert_int_equal(c[1].remaining_ms, 50000);
    now_ms = t0 + 69999;
    assert_int_equal(lease_expired(m[1], now_ms, ids, 4), 0);
    now_ms = t0 + 70000;
    assert_int_equal(lease_expired(m[1], now_ms, ids, 4), 1);
    assert_int_equal(ids[0], 1);
    /* The old leader answers nothing leader-side. */
    assert_int_equal(lease_checkpoints_due(m[0], now_ms, c, 8), 0);
    lease_destroy(m[0]);
    lease_destroy(m[1]);
}

static void test_checkpoint_policy(void **state)
{
    struct lease_table *t = lease_create(&cfg);
    struct lease_checkpoint c[8];
    int64_t ttl, t0 = now_ms;

    (void)state;
    grant(t, 1, 25);
    grant(t, 2, 25);
    lease_promote(t, t0, 0);
    /* Renewed within the last second: nothing to save, still scheduled. */
    now_ms = t0 + 9500;
    lease_renew(t, 2, now_ms, &ttl, NULL);
    now_ms = t0 + INTERVAL_MS;
    assert_int_equal(lease_checkpoints_due(t, now_ms, c, 8), 1);
    assert_int_equal(c[0].id, 1);
    assert_int_equal(c[0].remaining_ms, 15000);
    lease_checkpoint(t, 1, 15000);
    /* 1 has 5 s left at the next look: no longer longer than the
     * interval, so checkpointed once more and then dropped. 2 has 14.5 s. */
    now_ms = t0 + 2 * INTERVAL_MS;
    assert_int_equal(lease_checkpoints_due(t, now_ms, c, 8), 2);
    assert_int_equal(c[0].id, 1);
    assert_int_equal(c[0].remaining_ms, 5000);
    assert_int_equal(c[1].id, 2);
    assert_int_equal(c[1].remaining_ms, 14500);
    now_ms = t0 + 3 * INTERVAL_MS; /* 2 has 4.5 s left: once more, dropped */
    assert_int_equal(lease_checkpoints_due(t, now_ms, c, 8), 1);
    assert_int_equal(c[0].id, 2);
    assert_int_equal(c[0].remaining_ms, 4500);
    assert_int_equal(lease_checkpoints_due(t, t0 + 4 * INTERVAL_MS, c, 8), 0);
    /* A renew schedules 1 again. */
    now_ms = t0 + 3 * INTERVAL_MS + 1; /* 1 expired at 25 s: renew refused */
    assert_int_equal(lease_renew(t, 1, now_ms, &ttl, NULL), LEASE_ERR_EXPIRED);
    lease_destroy(t);

    /* Checkpoints off. */
    struct lease_config off = cfg;
    off.checkpoint_interval_ms = 0;
    t = lease_create(&off);
    grant(t, 1, 100);
    lease_promote(t, t0, 0);
    assert_int_equal(lease_checkpoints_due(t, t0 + 1000000, c, 8), 0);
    lease_destroy(t);

    /* Renew re-schedules a lease that had dropped out. */
    t = lease_create(&cfg);
    grant(t, 1, 15);
    lease_promote(t, t0, 0);
    assert_int_equal(lease_checkpoints_due(t, t0 + INTERVAL_MS, c, 8), 1); /* 5 s left: dropped */
    assert_int_equal(lease_renew(t, 1, t0 + 14000, &ttl, NULL), LEASE_OK);
    assert_int_equal(lease_checkpoints_due(t, t0 + 14000 + INTERVAL_MS - 1, c, 8), 0);
    assert_int_equal(lease_checkpoints_due(t, t0 + 14000 + INTERVAL_MS, c, 8), 1);
    assert_int_equal(c[0].remaining_ms, 5000);
    lease_destroy(t);
}

/* ---- snapshots ---- */

static struct lease_table *sample(void)
{
    struct lease_table *t = lease_create(&cfg);

    grant(t, 42, 60);
    grant(t, -3, 7);
    grant(t, 9, 100);
    attach(t, "foo", 42);
    attach(t, "bar", 42);
    attach(t, "b", 42);
    attach(t, "x", 9);
    assert_int_equal(lease_checkpoint(t, 9, 54321), LEASE_OK);
    assert_int_equal(lease_checkpoint(t, 42, 999999), LEASE_OK); /* cut to the TTL */
    return t;
}

static void test_snapshot_round_trip(void **state)
{
    struct lease_table *t = sample(), *d;
    struct lease_info info;
    size_t len, len2;
    uint8_t *buf = lease_encode(t, &len), *buf2;
    struct lease_keys k;

    (void)state;
    assert_non_null(buf);
    assert_int_equal(lease_decode(&cfg, buf, len, &d), LEASE_OK);
    buf2 = lease_encode(d, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(buf, buf2, len);
    assert_false(lease_is_leader(d));
    assert_int_equal(lease_count(d), 3);
    assert_int_equal(lease_get(d, 42, &info), LEASE_OK);
    assert_int_equal(info.ttl_s, 60);
    assert_int_equal(info.checkpoint_ms, 60000);
    assert_int_equal(info.n_keys, 3);
    assert_int_equal(lease_get(d, 9, &info), LEASE_OK);
    assert_int_equal(info.checkpoint_ms, 54321);
    assert_int_equal(owner(d, "x"), 9);
    assert_int_equal(lease_revoke(d, 42, &k), LEASE_OK);
    assert_int_equal(k.n, 3);
    assert_memory_equal(k.v[0].key, "b", 1);
    assert_memory_equal(k.v[1].key, "bar", 3);
    lease_keys_free(&k);
    /* Equal tables built in another order encode to the same bytes. */
    struct lease_table *u = lease_create(&cfg);
    grant(u, 9, 100);
    attach(u, "x", 9);
    grant(u, 42, 60);
    attach(u, "b", 42);
    attach(u, "foo", 42);
    attach(u, "bar", 42);
    grant(u, -3, 7);
    lease_checkpoint(u, 42, 60000);
    lease_checkpoint(u, 9, 54321);
    free(buf2);
    buf2 = lease_encode(u, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(buf, buf2, len);
    /* Decoding raises TTLs to a larger minimum, as etcd's recovery. */
    struct lease_config big = cfg;
    big.min_ttl_s = 10;
    struct lease_table *r;
    assert_int_equal(lease_decode(&big, buf, len, &r), LEASE_OK);
    lease_get(r, -3, &info);
    assert_int_equal(info.ttl_s, 10);
    lease_destroy(r);
    /* The empty table. */
    struct lease_table *e = lease_create(&cfg);
    free(buf2);
    buf2 = lease_encode(e, &len2);
    assert_int_equal(len2, 28);
    lease_destroy(e);
    assert_int_equal(lease_decode(&cfg, buf2, len2, &e), LEASE_OK);
    assert_int_equal(lease_count(e), 0);
    lease_destroy(e);
    free(buf);
    free(buf2);
    lease_destroy(t);
    lease_destroy(d);
    lease_destroy(u);
}

static void test_snapshot_damage(void **state)
{
    struct lease_table *t = sample(), *d;
    size_t len;
    uint8_t *buf = lease_encode(t, &len);
    uint8_t *cp = malloc(len + 1);

    (void)state;
    for (size_t n = 0; n < len; n++) {
        memcpy(cp, buf, n);
        assert_int_equal(lease_decode(&cfg, cp, n, &d), LEASE_ERR_CORRUPT);
        assert_null(d);
    }
    memcpy(cp, buf, len);
    cp[len] = 0;
    assert_int_equal(lease_decode(&cfg, cp, len + 1, &d), LEASE_ERR_CORRUPT);
    for (size_t bit = 0; bit < len * 8; bit++) {
        memcpy(cp, buf, len);
        cp[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(lease_decode(&cfg, cp, len, &d), LEASE_ERR_CORRUPT);
        assert_null(d);
    }
    free(cp);
    free(buf);
    lease_destroy(t);
}

/* Damage that a recomputed CRC does not hide: the structure is checked. */
static void decode_resealed(uint8_t *b, size_t len, int want)
{
    struct lease_table *d;

    put_le32(b + len - 4, crc32c_extend(0, b, len - 4));
    assert_int_equal(lease_decode(&cfg, b, len, &d), want);
    lease_destroy(d);
}

static void test_snapshot_structure(void **state)
{
    struct lease_table *t = lease_create(&cfg);
    size_t len;
    uint8_t *buf, *b;

    (void)state;
    grant(t, 1, 10);
    grant(t, 2, 10);
    attach(t, "a", 1);
    attach(t, "b", 1);
    buf = lease_encode(t, &len);
    b = malloc(len);
    /* header 24 | lease 1 @24: id ttl ckpt m=2, "a" @52, "b" @57 |
     * lease 2 @62 | crc @90 */
    assert_int_equal(len, 94);
#define RESEAL(set, want)                                                                          \
    do {                                                                                           \
        memcpy(b, buf, len);                                                                       \
        set;                                                                                       \
        decode_resealed(b, len, want);                                                             \
    } while (0)
    RESEAL((void)0, LEASE_OK);
    RESEAL(b[0] ^= 1, LEASE_ERR_CORRUPT);                       /* magic */
    RESEAL(put_le32(b + 4, 2), LEASE_ERR_CORRUPT);              /* version */
    RESEAL(put_le64(b + 8, 3), LEASE_ERR_CORRUPT);              /* lease count */
    RESEAL(put_le64(b + 8, 1), LEASE_ERR_CORRUPT);              /* trailing bytes */
    RESEAL(put_le64(b + 16, 3), LEASE_ERR_CORRUPT);             /* key count */
    RESEAL(put_le64(b + 24, 0), LEASE_ERR_CORRUPT);             /* ID 0 */
    RESEAL(put_le64(b + 24, 2), LEASE_ERR_CORRUPT);             /* IDs not ascending */
    RESEAL(put_le64(b + 32, 0), LEASE_ERR_CORRUPT);             /* TTL 0 */
    RESEAL(put_le64(b + 32, 9000000001ull), LEASE_ERR_CORRUPT); /* TTL too large */
    RESEAL(put_le64(b + 40, 10001), LEASE_ERR_CORRUPT);         /* checkpoint > TTL */
    RESEAL(put_le64(b + 40, (uint64_t)-1), LEASE_ERR_CORRUPT);  /* negative checkpoint */
    RESEAL(put_le64(b + 40, 10000), LEASE_OK);
    RESEAL(put_le32(b + 48, 3), LEASE_ERR_CORRUPT);    /* keys of a lease */
    RESEAL(put_le32(b + 52, 0), LEASE_ERR_CORRUPT);    /* empty key */
    RESEAL(put_le32(b + 52, 1000), LEASE_ERR_CORRUPT); /* key overruns */
    RESEAL(b[56] = 'b', LEASE_ERR_CORRUPT);            /* duplicate key */
    RESEAL(b[56] = 'c', LEASE_ERR_CORRUPT);            /* keys not ascending */
#undef RESEAL
    /* The same key under two leases. */
    lease_destroy(t);
    t = lease_create(&cfg);
    grant(t, 1, 10);
    grant(t, 2, 10);
    attach(t, "a", 1);
    attach(t, "b", 2);
    free(buf);
    buf = lease_encode(t, &len);
    memcpy(b, buf, len);
    b[len - 5] = 'a'; /* lease 2's only key, just before the CRC */
    decode_resealed(b, len, LEASE_ERR_CORRUPT);
    free(b);
    free(buf);
    lease_destroy(t);
}

/* ---- bounds and scale ---- */

static void test_bounds(void **state)
{
    struct lease_table *t = lease_create(&cfg);
    int64_t *ids = malloc(LEASE_MAX * sizeof(*ids));
    int64_t t0 = now_ms, prev_deadline = 0;
    size_t n, total = 0;

    (void)state;
    /* The full table; TTLs spread so deadlines interleave with IDs. */
    for (uint32_t i = 1; i <= LEASE_MAX; i++)
        assert_int_equal(lease_grant(t, i, 5 + (i * 7919u) % 1000, NULL), LEASE_OK);
    assert_int_equal(lease_grant(t, LEASE_MAX + 1, 10, NULL), LEASE_ERR_FULL);
    assert_int_equal(lease_count(t), LEASE_MAX);
    lease_promote(t, t0, 0);
    /* Expiry in batches of 1000 per 500 ms turn, as etcd's revoke rate:
     * each lease no earlier than its deadline, in deadline order (the
     * first tenth: at ~1 us a lease, all of them would take a second). */
    for (now_ms = t0; total < LEASE_MAX / 10; now_ms += 500) {
        while ((n = lease_expired(t, now_ms, ids, 1000)) > 0) {
            for (size_t i = 0; i < n; i++) {
                int64_t ttl_ms = (5 + ((uint32_t)ids[i] * 7919u) % 1000) * 1000;
                assert_true(t0 + ttl_ms <= now_ms);
                assert_true(t0 + ttl_ms >= prev_deadline);
                assert_true(t0 + ttl_ms > now_ms - 500); /* on time */
                prev_deadline = t0 + ttl_ms;
                struct lease_keys k;
                assert_int_equal(lease_revoke(t, ids[i], &k), LEASE_OK);
            }
            total += n;
        }
    }
    assert_int_equal(lease_count(t), LEASE_MAX - total);
    /* Every one still there has a later deadline than any revoked. */
    assert_int_equal(lease_expired(t, now_ms - 500, ids, 1), 0);
    free(ids);
    lease_destroy(t);
}

/* A random run on the leader against a brute-force model. */
struct model {
    int64_t id, deadline, next_report;
    bool live;
};

static void test_random_against_model(void **state)
{
    enum { N = 400, STEPS = 20000 };
    struct lease_table *t = lease_create(&cfg), *f = lease_create(&cfg);
    static struct model m[N];
    int64_t ids[N], t0 = now_ms;
    unsigned seed = 12345;
    size_t reported = 0;

    (void)state;
    memset(m, 0, sizeof(m));
    lease_promote(t, t0, 0);
    for (int step = 0; step < STEPS; step++) {
        int i = (int)(rand_r(&seed) % N), op = (int)(rand_r(&seed) % 4);
        struct lease_keys k;
        int64_t ttl;
        char key[16];

        now_ms += rand_r(&seed) % 300;
        snprintf(key, sizeof(key), "k%d", (int)(rand_r(&seed) % 1000));
        if (op == 0 && !m[i].live) {
            int64_t s = 5 + rand_r(&seed) % 30;
            grant(t, i + 1, s);
            grant(f, i + 1, s);
            /* Settled at the next leader call, which is expired() below. */
            m[i] = (struct model){.id = i + 1, .deadline = now_ms + s * 1000, .live = true};
            m[i].next_report = m[i].deadline;
        } else if (op == 1 && m[i].live) {
            assert_int_equal(lease_revoke(t, i + 1, &k), LEASE_OK);
            lease_keys_free(&k);
            assert_int_equal(lease_revoke(f, i + 1, &k), LEASE_OK);
            lease_keys_free(&k);
            m[i].live = false;
        } else if (op == 2 && m[i].live) {
            int rv = lease_renew(t, i + 1, now_ms, &ttl, NULL);
            if (m[i].deadline <= now_ms) {
                assert_int_equal(rv, LEASE_ERR_EXPIRED);
            } else {
                assert_int_equal(rv, LEASE_OK);
                m[i].deadline = m[i].next_report = now_ms + ttl * 1000;
            }
        } else if (op == 3) {
            int64_t want = m[i].live ? i + 1 : 0;
            assert_int_equal(lease_attach(t, (uint8_t *)key, strlen(key), want), LEASE_OK);
            lease_attach(f, (uint8_t *)key, strlen(key), want);
        }
        /* What the model says is due, in (time, ID) order. */
        size_t n = lease_expired(t, now_ms, ids, N);
        for (size_t j = 0; j < n; j++) {
            struct model *e = &m[ids[j] - 1];
            assert_true(e->live && e->next_report <= now_ms);
            if (j > 0) {
                struct model *p = &m[ids[j - 1] - 1];
                assert_true(p->next_report < e->next_report ||
                            (p->next_report == e->next_report && p->id < e->id));
            }
        }
        for (size_t j = 0; j < n; j++)
            m[ids[j] - 1].next_report = now_ms + RETRY_MS;
        reported += n;
        for (int j = 0; j < N; j++)
            assert_false(m[j].live && m[j].next_report <= now_ms);
    }
    assert_true(reported > 1000);
    /* The follower, fed the same replicated ops, encodes the same. */
    size_t la, lb;
    uint8_t *a = lease_encode(t, &la), *b = lease_encode(f, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
    lease_destroy(t);
    lease_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grant),
        cmocka_unit_test(test_attach_move_detach),
        cmocka_unit_test(test_revoke_keys),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_renew_and_ttl),
        cmocka_unit_test(test_checkpoint_failover),
        cmocka_unit_test(test_checkpoint_policy),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_damage),
        cmocka_unit_test(test_snapshot_structure),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_random_against_model),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
