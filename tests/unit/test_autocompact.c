/*
 * test_autocompact.c — the auto-compaction policies of
 * src/server/autocompact.c on a fake clock: when each mode compacts and at
 * which revision, as etcd's v3compactor does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "autocompact.h"

#define SEC 1000u

static void test_off(void **state)
{
    struct core_auto a;

    (void)state;
    autoc_init(&a, 0, 0, 0, 1);
    assert_false(autoc_enabled(&a));
    assert_int_equal(autoc_tick(&a, 3600 * SEC, 100), 0);
}

/* revision mode: every 5 minutes, at current - retention, never twice the
 * same revision, never <= 0. */
static void test_revision(void **state)
{
    struct core_auto a;
    uint64_t t = 0;

    (void)state;
    autoc_init(&a, 0, 10, t, 1);
    assert_true(autoc_enabled(&a));
    assert_int_equal(autoc_wait_ms(&a, t), AUTOC_REVISION_INTERVAL_MS);
    assert_int_equal(autoc_tick(&a, t + 1000, 50), 0); /* too early */
    t += AUTOC_REVISION_INTERVAL_MS;
    assert_int_equal(autoc_tick(&a, t, 5), 0); /* 5 - 10 <= 0 */
    t += AUTOC_REVISION_INTERVAL_MS;
    assert_int_equal(autoc_tick(&a, t, 50), 40);
    t += AUTOC_REVISION_INTERVAL_MS;
    assert_int_equal(autoc_tick(&a, t, 50), 0); /* same revision again */
    t += AUTOC_REVISION_INTERVAL_MS;
    assert_int_equal(autoc_tick(&a, t, 75), 65);
}

/* periodic mode, period 10 s: samples every 1 s; the first compaction
 * comes 10 s after the start, at the revision of the start; later ones
 * every 10 s, each at the oldest sample kept. */
static void test_periodic(void **state)
{
    struct core_auto a;
    uint64_t t = 0;
    int64_t rev = 100;
    int64_t got = 0;
    int i;

    (void)state;
    autoc_init(&a, 10 * SEC, 0, t, rev);
    assert_int_equal(autoc_wait_ms(&a, t), 1 * SEC);
    for (i = 1; i <= 9; i++) {
        t += SEC;
        rev += 10;
        assert_int_equal(autoc_tick(&a, t, rev), 0);
    }
    t += SEC;
    rev += 10;
    got = autoc_tick(&a, t, rev);
    assert_int_equal(got, 100); /* the revision at t = 0 */
    for (i = 1; i <= 9; i++) {
        t += SEC;
        rev += 10;
        assert_int_equal(autoc_tick(&a, t, rev), 0);
    }
    t += SEC;
    rev += 10;
    got = autoc_tick(&a, t, rev);
    /* The oldest of the 11 samples kept (one per second) is from 11 s ago,
     * exactly as etcd's sampling loop keeps them. */
    assert_int_equal(got, 190);
}

/* A long period compacts first after the period, then every hour. */
static void test_periodic_long(void **state)
{
    struct core_auto a;
    uint64_t t = 0;
    int64_t rev = 1;
    unsigned compactions = 0;

    (void)state;
    autoc_init(&a, 10 * 3600 * SEC, 0, t, rev);
    assert_int_equal(autoc_wait_ms(&a, t), 360 * SEC); /* 1 h / 10 */
    while (t < 12 * 3600 * SEC) {
        t += 360 * SEC;
        rev++;
        if (autoc_tick(&a, t, rev) != 0)
            compactions++;
    }
    assert_int_equal(compactions, 3); /* at 10 h, 11 h, 12 h */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_revision),
        cmocka_unit_test(test_periodic),
        cmocka_unit_test(test_periodic_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
