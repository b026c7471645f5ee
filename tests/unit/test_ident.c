/*
 * test_ident.c — the member's identity file (src/server/ident.c): saved
 * and read back whole, absent is not an error, any damage is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ident.h"

static char dir[] = "/tmp/cetcd-test-ident.XXXXXX";

static void file_path(char *buf, size_t len)
{
    snprintf(buf, len, "%s/member/ident", dir);
}

static void test_roundtrip(void **state)
{
    uint8_t roster[300];
    struct ident in = {.member_id = 0x8e9e05c52164694dull,
                       .cluster_id = 0xcdf818194e3a8c32ull,
                       .roster = roster,
                       .roster_len = sizeof(roster)};
    struct ident out;
    char err[256];
    bool found = true;

    (void)state;
    for (size_t i = 0; i < sizeof(roster); i++)
        roster[i] = (uint8_t)(i * 7);
    assert_int_equal(ident_load(dir, &out, &found, err, sizeof(err)), 0);
    assert_false(found);
    assert_int_equal(ident_save(dir, &in, err, sizeof(err)), 0);
    assert_int_equal(ident_load(dir, &out, &found, err, sizeof(err)), 0);
    assert_true(found);
    assert_int_equal(out.member_id, in.member_id);
    assert_int_equal(out.cluster_id, in.cluster_id);
    assert_int_equal(out.roster_len, sizeof(roster));
    assert_memory_equal(out.roster, roster, sizeof(roster));
    free(out.roster);
}

/* Flipping any byte, or cutting the file anywhere, fails the load. */
static void test_damage(void **state)
{
    char path[512], err[256];
    struct ident out;
    bool found;
    FILE *f;
    uint8_t buf[4096];
    size_t n;

    (void)state;
    file_path(path, sizeof(path));
    f = fopen(path, "rb");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    for (size_t i = 0; i < n; i++) {
        buf[i] ^= 0x40;
        f = fopen(path, "wb");
        fwrite(buf, 1, n, f);
        fclose(f);
        assert_int_equal(ident_load(dir, &out, &found, err, sizeof(err)), -1);
        buf[i] ^= 0x40;
    }
    for (size_t cut = 0; cut < n; cut += 13) {
        f = fopen(path, "wb");
        fwrite(buf, 1, cut, f);
        fclose(f);
        assert_int_equal(ident_load(dir, &out, &found, err, sizeof(err)), -1);
    }
    f = fopen(path, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
    assert_int_equal(ident_load(dir, &out, &found, err, sizeof(err)), 0);
    free(out.roster);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    char path[512];

    (void)state;
    file_path(path, sizeof(path));
    unlink(path);
    snprintf(path, sizeof(path), "%s/member", dir);
    rmdir(path);
    rmdir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_damage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
