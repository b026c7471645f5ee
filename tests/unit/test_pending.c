/*
 * test_pending.c — the ring of proposals waiting to be applied
 * (src/server/pending.c): numbers in order, lookups by number, holes,
 * deadlines from the head, the bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "pending.h"
#include "shard.h"

/* pending.c frees leftovers with shard_msg_free (src/shard); the test
 * provides it. */
void shard_msg_free(struct shard_msg *m)
{
    if (m != NULL)
        free(m->data);
    free(m);
}

static struct shard_msg *msg(void)
{
    struct shard_msg *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    return m;
}

static void test_numbers_and_take(void **state)
{
    struct pending p;
    struct shard_msg *a = msg(), *b = msg(), *c = msg();

    (void)state;
    assert_int_equal(pending_init(&p, 1000), 0);
    assert_int_equal(pending_add(&p, a, 10), 1000);
    assert_int_equal(pending_add(&p, b, 20), 1001);
    assert_int_equal(pending_add(&p, c, 30), 1002);
    assert_int_equal(pending_count(&p), 3);
    /* Out of order: a hole in the middle, then the head goes. */
    assert_ptr_equal(pending_take(&p, 1001), b);
    assert_null(pending_take(&p, 1001));
    assert_null(pending_take(&p, 999));
    assert_null(pending_take(&p, 1003));
    assert_ptr_equal(pending_take(&p, 1000), a);
    /* The head skipped the hole: only c is left. */
    assert_int_equal(pending_count(&p), 1);
    shard_msg_free(a);
    shard_msg_free(b);
    pending_fini(&p); /* frees c */
}

static void test_deadlines(void **state)
{
    struct pending p;
    struct shard_msg *a = msg(), *b = msg(), *c = msg();

    (void)state;
    assert_int_equal(pending_init(&p, 1), 0);
    pending_add(&p, a, 100);
    pending_add(&p, b, 200);
    pending_add(&p, c, 300);
    assert_null(pending_expired(&p, 99));
    assert_ptr_equal(pending_expired(&p, 100), a);
    assert_null(pending_expired(&p, 150));
    /* b was applied meanwhile: c is next to expire. */
    assert_ptr_equal(pending_take(&p, 2), b);
    assert_ptr_equal(pending_expired(&p, 1000), c);
    assert_null(pending_expired(&p, 1000));
    assert_int_equal(pending_count(&p), 0);
    shard_msg_free(a);
    shard_msg_free(b);
    shard_msg_free(c);
    pending_fini(&p);
}

/* The ring holds PENDING_MAX; one more is refused (0), and a number
 * handed out earlier is not confused with the slot's new owner. */
static void test_bound_and_wrap(void **state)
{
    struct pending p;
    struct shard_msg *extra = msg();
    uint64_t first;

    (void)state;
    assert_int_equal(pending_init(&p, 5), 0);
    for (uint64_t i = 0; i < PENDING_MAX; i++)
        assert_int_equal(pending_add(&p, msg(), i), 5 + i);
    assert_int_equal(pending_add(&p, extra, 0), 0);
    shard_msg_free(extra);
    first = 5;
    shard_msg_free(pending_take(&p, first));
    assert_int_equal(pending_add(&p, msg(), PENDING_MAX), 5 + PENDING_MAX);
    /* Same slot, different number: the old number finds nothing. */
    assert_null(pending_take(&p, first));
    pending_fini(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_and_take),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_bound_and_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
