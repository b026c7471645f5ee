/*
 * test_snap.c — unit tests of src/raft/snap.c (the snapshot file format,
 * the streaming writer and reader, listing, validation and purging) and of
 * src/server/snapshot.c (what a snapshot holds, the background writer with
 * its pinned view, loading with fallback), the latter on the real MVCC
 * store.
 *
 * Each test works in its own mkdtemp() directory under /tmp and removes it.
 * Section payloads are a pseudo-random function of (seed, offset), so a
 * reader can check every byte it gets however the stream was cut. Damage
 * tests change files behind the library's back: every prefix and every
 * single flipped byte of a small file must be rejected.
 *
 * Threading: the test thread is the MVCC writer and the core; snapshot.c
 * runs its own thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mvcc.h"
#include "snap.h"
#include "snapshot.h"

#define ERR_BYTES (PATH_MAX + 256)
#define BIG_BYTES (3 * SNAP_BUF_BYTES + 12345) /* larger than the buffer */

/* ---- payloads ---------------------------------------------------------- */

static uint8_t byte_at(uint64_t seed, uint64_t off)
{
    uint64_t z = (seed + 1) * 0x9E3779B97F4A7C15ull + off * 0xBF58476D1CE4E5B9ull;

    z ^= z >> 29;
    z *= 0x94D049BB133111EBull;
    return (uint8_t)(z >> 56);
}

static void fill(uint8_t *p, size_t len, uint64_t seed, uint64_t off)
{
    for (size_t i = 0; i < len; i++)
        p[i] = byte_at(seed, off + i);
}

/* ---- fixture ------------------------------------------------------------ */

struct fx {
    char root[64];
    char dir[128]; /* root/member/snap */
    char err[ERR_BYTES];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->root, "/tmp/cetcd-test-snap-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof(f->dir), "%s/member/snap", f->root);
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void prepare_ok(struct fx *f)
{
    if (snap_dir_prepare(f->dir, f->err, sizeof(f->err)) != 0)
        fail_msg("snap_dir_prepare: %s", f->err);
}

static void path_of(struct fx *f, uint64_t term, uint64_t index, char *out)
{
    snprintf(out, PATH_MAX, "%s/%016" PRIx64 "-%016" PRIx64 ".snap", f->dir, term, index);
}

/* One section to write: `len` bytes of payload `seed`, given to
 * snap_write() in pieces of `chunk` bytes. */
struct sec {
    uint32_t type;
    uint64_t len;
    size_t chunk;
};

static void write_sections(struct snap_writer *w, const struct sec *s, size_t n)
{
    uint8_t *p = malloc(BIG_BYTES);

    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(snap_write_section_begin(w, s[i].type), 0);
        for (uint64_t off = 0; off < s[i].len;) {
            size_t k = s[i].len - off < s[i].chunk ? (size_t)(s[i].len - off) : s[i].chunk;

            fill(p, k, s[i].type, off);
            assert_int_equal(snap_write(w, p, k), 0);
            off += k;
        }
        assert_int_equal(snap_write_section_end(w), 0);
    }
    free(p);
}

static uint64_t write_snap(struct fx *f, uint64_t term, uint64_t index, const struct sec *s,
                           size_t n)
{
    struct snap_writer *w;
    uint64_t bytes = 0;

    if (snap_write_begin(&w, f->dir, term, index, f->err, sizeof(f->err)) != 0)
        fail_msg("snap_write_begin: %s", f->err);
    write_sections(w, s, n);
    if (snap_write_commit(w, &bytes, f->err, sizeof(f->err)) != 0)
        fail_msg("snap_write_commit: %s", f->err);
    return bytes;
}

/* A small snapshot with a few short sections (every byte is flipped by a
 * test, so it stays small). */
static const struct sec small_secs[] = {
    {7, 5, 5},
    {8, 0, 1},
    {9, 40, 3},
};

static uint64_t write_small(struct fx *f, uint64_t term, uint64_t index)
{
    return write_snap(f, term, index, small_secs, 3);
}

/* Reads every section back, in reads of `cap` bytes, checking the bytes. */
static void read_back(const char *path, const struct sec *s, size_t n, size_t cap)
{
    struct snap_reader *r;
    char err[ERR_BYTES];
    uint8_t *p = malloc(cap);
    uint32_t type;
    uint64_t len;
    size_t i = 0;
    int rv;

    assert_non_null(p);
    if (snap_read_open(&r, path, err, sizeof(err)) != 0)
        fail_msg("snap_read_open: %s", err);
    while ((rv = snap_read_section(r, &type, &len)) == 1) {
        uint64_t off = 0;
        ssize_t k;

        assert_true(i < n);
        assert_int_equal(type, s[i].type);
        assert_int_equal(len, s[i].len);
        while ((k = snap_read(r, p, cap)) > 0) {
            for (ssize_t j = 0; j < k; j++)
                if (p[j] != byte_at(s[i].type, off + (uint64_t)j))
                    fail_msg("section %zu: byte %" PRIu64 " differs", i, off + (uint64_t)j);
            off += (uint64_t)k;
        }
        if (k < 0)
            fail_msg("snap_read: %s", snap_read_error(r));
        assert_int_equal(off, len);
        assert_int_equal(snap_read(r, p, cap), 0); /* stays at the end */
        i++;
    }
    if (rv != 0)
        fail_msg("snap_read_section: %s", snap_read_error(r));
    assert_int_equal(i, n);
    assert_int_equal(snap_read_section(r, &type, &len), 0);
    snap_read_close(r);
    free(p);
}

static int validate(const char *path, char *err)
{
    uint64_t term = 0, index = 0;

    return snap_validate(path, &term, &index, err, ERR_BYTES);
}

/* ---- tests --------------------------------------------------------------- */

/* Several sections, one empty and one larger than the I/O buffer, written
 * in pieces smaller and larger than the buffer, read back in pieces of
 * other sizes. */
static void test_roundtrip(void **state)
{
    struct fx *f = *state;
    const struct sec secs[] = {
        {1, 100, 7},
        {2, 0, 1},
        {0xfffffffe, BIG_BYTES, SNAP_BUF_BYTES * 2 + 3}, /* chunks > the buffer */
        {4, 2 * SNAP_BUF_BYTES + 1, 4093},               /* header patched on disk */
        {5, 1, 1},
    };
    char path[PATH_MAX];
    uint64_t term, index, bytes;
    struct stat st;

    prepare_ok(f);
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    bytes = write_snap(f, 3, 1000, secs, 5);
    path_of(f, 3, 1000, path);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal((uint64_t)st.st_size, bytes);
    /* header + 5 x (section header + crc) + payloads + trailer */
    assert_int_equal(bytes, 40 + 5 * 16 + 100 + BIG_BYTES + 2 * SNAP_BUF_BYTES + 1 + 1 + 24);
    read_back(path, secs, 5, 1);
    read_back(path, secs, 5, 1000);
    read_back(path, secs, 5, SNAP_BUF_BYTES + 17);
    assert_int_equal(snap_validate(path, &term, &index, f->err, sizeof(f->err)), 0);
    assert_int_equal(term, 3);
    assert_int_equal(index, 1000);
}

/* Reading only part of a section and moving on still checks the rest;
 * snap_read_full() fails at a section's end. */
static void test_partial_reads(void **state)
{
    struct fx *f = *state;
    const struct sec secs[] = {{1, BIG_BYTES, 65536}, {2, 10, 10}};
    struct snap_reader *r;
    char path[PATH_MAX];
    uint8_t buf[16];
    uint32_t type;
    uint64_t len, term, index;

    prepare_ok(f);
    write_snap(f, 1, 5, secs, 2);
    path_of(f, 1, 5, path);
    assert_int_equal(snap_read_open(&r, path, f->err, sizeof(f->err)), 0);
    snap_read_point(r, &term, &index);
    assert_int_equal(term, 1);
    assert_int_equal(index, 5);
    assert_int_equal(snap_read_section(r, &type, &len), 1);
    assert_int_equal(snap_read_full(r, buf, sizeof(buf)), 0);
    assert_int_equal(buf[3], byte_at(1, 3));
    assert_int_equal(snap_read_section(r, &type, &len), 1);
    assert_int_equal(type, 2);
    assert_int_equal(snap_read_full(r, buf, 10), 0);
    assert_int_equal(snap_read_full(r, buf, 1), -1);
    assert_non_null(strstr(snap_read_error(r), "ends early"));
    assert_int_equal(snap_read_section(r, &type, &len), -1); /* sticky */
    snap_read_close(r);
}

/* Every prefix of a file, and the file with a byte appended, fail. */
static void test_truncated(void **state)
{
    struct fx *f = *state;
    const struct sec big[] = {{1, BIG_BYTES, 100000}, {2, 3, 3}};
    char path[PATH_MAX];
    uint64_t size;
    int fd;

    prepare_ok(f);
    size = write_small(f, 1, 1);
    path_of(f, 1, 1, path);
    for (uint64_t cut = size; cut-- > 0;) {
        assert_int_equal(truncate(path, (off_t)cut), 0);
        if (validate(path, f->err) == 0)
            fail_msg("a file cut to %" PRIu64 " of %" PRIu64 " bytes passed", cut, size);
    }
    /* A big one cut at a few places, including inside the big payload. */
    size = write_snap(f, 1, 2, big, 2);
    path_of(f, 1, 2, path);
    for (uint64_t cut = size - 1; cut > 0; cut = cut * 2 / 3) {
        assert_int_equal(truncate(path, (off_t)cut), 0);
        assert_int_equal(validate(path, f->err), -1);
    }
    /* Bytes after the trailer. */
    size = write_small(f, 1, 3);
    path_of(f, 1, 3, path);
    fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "", 1), 1);
    close(fd);
    assert_int_equal(validate(path, f->err), -1);
    assert_non_null(strstr(f->err, "trailer"));
    assert_int_equal(truncate(path, (off_t)size), 0);
    assert_int_equal(validate(path, f->err), 0);
}

static void flip(const char *path, uint64_t off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    uint8_t b;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= mask;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

/* A flipped bit anywhere (header, section headers, payloads, section
 * crcs, trailer) fails the file; flipping it back makes it good again. */
static void test_flipped_bytes(void **state)
{
    struct fx *f = *state;
    const struct sec big[] = {{1, BIG_BYTES, 100000}};
    char path[PATH_MAX];
    uint64_t size;

    prepare_ok(f);
    size = write_small(f, 2, 9);
    path_of(f, 2, 9, path);
    for (uint64_t off = 0; off < size; off++) {
        for (unsigned bit = 0; bit < 8; bit += 3) {
            flip(path, off, (uint8_t)(1u << bit));
            if (validate(path, f->err) == 0)
                fail_msg("flipped bit %u of byte %" PRIu64 " passed", bit, off);
            flip(path, off, (uint8_t)(1u << bit));
        }
    }
    assert_int_equal(validate(path, f->err), 0);
    /* In a payload larger than the buffer, far from its start. */
    size = write_snap(f, 2, 10, big, 1);
    path_of(f, 2, 10, path);
    flip(path, 40 + 12 + SNAP_BUF_BYTES * 2 + 5, 0x10);
    assert_int_equal(validate(path, f->err), -1);
    assert_non_null(strstr(f->err, "crc mismatch"));
    assert_true(size > 0);
}

/* A file renamed to another point's name is refused. */
static void test_name_mismatch(void **state)
{
    struct fx *f = *state;
    char a[PATH_MAX], b[PATH_MAX];

    prepare_ok(f);
    write_small(f, 1, 7);
    path_of(f, 1, 7, a);
    path_of(f, 1, 8, b);
    assert_int_equal(rename(a, b), 0);
    assert_int_equal(validate(b, f->err), -1);
    assert_non_null(strstr(f->err, "file name"));
}

/* Lists newest first; other names (temporaries included) are ignored;
 * picking the newest valid one falls back past a damaged newest. */
static void test_list_and_fallback(void **state)
{
    struct fx *f = *state;
    struct snap_file *v;
    struct snap_writer *w;
    char path[PATH_MAX];
    size_t n, pick;
    int fd;

    prepare_ok(f);
    write_small(f, 1, 20);
    write_small(f, 2, 30);
    write_small(f, 1, 10);
    write_small(f, 2, 0x1234567890);
    snprintf(path, sizeof(path), "%s/not-a-snapshot.snap", f->dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    /* A write in progress. */
    assert_int_equal(snap_write_begin(&w, f->dir, 9, 99, f->err, sizeof(f->err)), 0);
    write_sections(w, small_secs, 1);

    assert_int_equal(snap_list(f->dir, &v, &n, f->err, sizeof(f->err)), 0);
    assert_int_equal(n, 4);
    assert_int_equal(v[0].index, 0x1234567890);
    assert_string_equal(v[0].name, "0000000000000002-0000001234567890.snap");
    assert_int_equal(v[1].index, 30);
    assert_int_equal(v[2].index, 20);
    assert_int_equal(v[3].index, 10);
    assert_int_equal(v[3].term, 1);

    /* Damage the newest: the pick goes to the next one. */
    path_of(f, 2, 0x1234567890, path);
    flip(path, 60, 0x01);
    for (pick = 0; pick < n; pick++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, v[pick].name);
        if (validate(path, f->err) == 0)
            break;
    }
    assert_int_equal(pick, 1);
    free(v);

    snap_write_abort(w);
    snprintf(path, sizeof(path), "%s/%016x-%016x.snap.tmp", f->dir, 9, 99);
    assert_int_not_equal(access(path, F_OK), 0);

    assert_int_equal(snap_list(f->root, &v, &n, f->err, sizeof(f->err)), 0);
    assert_int_equal(n, 0);
    assert_null(v);
    assert_int_equal(snap_list("/nonexistent/cetcd", &v, &n, f->err, sizeof(f->err)), -1);
}

/* Purge keeps the newest N and removes temporaries; snap_dir_prepare()
 * removes temporaries too, and nothing else. */
static void test_purge_and_tmp(void **state)
{
    struct fx *f = *state;
    struct snap_file *v;
    struct snap_writer *w;
    char tmp[PATH_MAX];
    size_t n;

    prepare_ok(f);
    for (uint64_t i = 1; i <= 8; i++)
        write_small(f, 1, i * 100);
    /* A crashed write: a temporary left behind. */
    assert_int_equal(snap_write_begin(&w, f->dir, 1, 900, f->err, sizeof(f->err)), 0);
    snprintf(tmp, sizeof(tmp), "%s/%016x-%016x.snap.tmp", f->dir, 1, 900);
    assert_int_equal(access(tmp, F_OK), 0);
    snap_write_abort(w);
    assert_int_not_equal(access(tmp, F_OK), 0);
    close(open(tmp, O_CREAT | O_WRONLY, 0600));

    assert_int_equal(snap_purge(f->dir, SNAP_KEEP_DEFAULT, f->err, sizeof(f->err)), 3 + 1);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(snap_list(f->dir, &v, &n, f->err, sizeof(f->err)), 0);
    assert_int_equal(n, SNAP_KEEP_DEFAULT);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(v[i].index, (8 - i) * 100);
    free(v);
    assert_int_equal(snap_purge(f->dir, SNAP_KEEP_DEFAULT, f->err, sizeof(f->err)), 0);
    assert_int_equal(snap_purge(f->dir, 1, f->err, sizeof(f->err)), 4);

    close(open(tmp, O_CREAT | O_WRONLY, 0600));
    prepare_ok(f);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(snap_list(f->dir, &v, &n, f->err, sizeof(f->err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].index, 800);
    free(v);
}

/* Writing the same point again replaces the file whole. */
static void test_rewrite_same_point(void **state)
{
    struct fx *f = *state;
    const struct sec other[] = {{3, 1000, 999}};
    char path[PATH_MAX];

    prepare_ok(f);
    write_small(f, 4, 44);
    write_snap(f, 4, 44, other, 1);
    path_of(f, 4, 44, path);
    read_back(path, other, 1, 64);
}

/* The writer's errors: section type 0 is reserved (assert), too many
 * sections fail and the temporary is removed. */
static void test_too_many_sections(void **state)
{
    struct fx *f = *state;
    struct snap_writer *w;
    char tmp[PATH_MAX];
    uint32_t i;

    prepare_ok(f);
    assert_int_equal(snap_write_begin(&w, f->dir, 1, 1, f->err, sizeof(f->err)), 0);
    for (i = 0; i < SNAP_SECTIONS_MAX; i++) {
        assert_int_equal(snap_write_section_begin(w, 1), 0);
        assert_int_equal(snap_write_section_end(w), 0);
    }
    assert_int_equal(snap_write_section_begin(w, 1), -1);
    assert_non_null(strstr(snap_write_error(w), "sections"));
    assert_int_equal(snap_write_commit(w, NULL, f->err, sizeof(f->err)), -1);
    snprintf(tmp, sizeof(tmp), "%s/%016x-%016x.snap.tmp", f->dir, 1, 1);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(snap_write_begin(&w, "/nonexistent/cetcd", 1, 1, f->err, sizeof(f->err)), -1);
}

/* ---- snapshot.c ---------------------------------------------------------- */

#define BIG_VALUE_BYTES (2 * SNAP_BUF_BYTES + 7) /* one record > the buffer */

/* Every version of a store, copied, with its revisions. */
struct dump {
    struct mvcc_version *v;
    size_t n, cap;
    int64_t rev, compact_rev;
};

static int dump_one(void *arg, const struct mvcc_version *v)
{
    struct dump *d = arg;
    struct mvcc_version *c;
    uint8_t *key = malloc(v->key_len), *val = malloc(v->value_len + 1);

    assert_non_null(key);
    assert_non_null(val);
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->v = realloc(d->v, d->cap * sizeof(*d->v));
        assert_non_null(d->v);
    }
    c = &d->v[d->n++];
    *c = *v;
    memcpy(key, v->key, v->key_len);
    if (v->value_len > 0)
        memcpy(val, v->value, v->value_len);
    c->key = key;
    c->value = val;
    return 0;
}

static void dump_store(struct mvcc_store *s, struct dump *d)
{
    struct mvcc_reader *r = mvcc_reader_register(s);

    assert_non_null(r);
    memset(d, 0, sizeof(*d));
    mvcc_read_begin(r);
    assert_int_equal(mvcc_dump(r, &d->rev, &d->compact_rev, dump_one, d), 0);
    mvcc_read_end(r);
    mvcc_reader_unregister(r);
}

static void dump_free(struct dump *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free((void *)d->v[i].key);
        free((void *)d->v[i].value);
    }
    free(d->v);
}

static void dump_expect_equal(const struct dump *a, const struct dump *b)
{
    assert_int_equal(a->rev, b->rev);
    assert_int_equal(a->compact_rev, b->compact_rev);
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const struct mvcc_version *x = &a->v[i], *y = &b->v[i];

        assert_int_equal(x->key_len, y->key_len);
        assert_memory_equal(x->key, y->key, x->key_len);
        assert_int_equal(x->value_len, y->value_len);
        if (x->value_len > 0)
            assert_memory_equal(x->value, y->value, x->value_len);
        assert_int_equal(x->create_revision, y->create_revision);
        assert_int_equal(x->mod_revision, y->mod_revision);
        assert_int_equal(x->sub, y->sub);
        assert_int_equal(x->version, y->version);
        assert_int_equal(x->lease, y->lease);
        assert_int_equal(x->tombstone, y->tombstone);
    }
}

static void put(struct mvcc_store *s, const char *key, const void *val, size_t len, int64_t lease)
{
    mvcc_txn_begin(s);
    assert_int_equal(
        mvcc_txn_put(s, (const uint8_t *)key, strlen(key), val, len, lease, NULL, NULL), MVCC_OK);
    mvcc_txn_end(s);
}

static void del(struct mvcc_store *s, const char *key)
{
    mvcc_txn_begin(s);
    assert_int_equal(
        mvcc_txn_delete_range(s, (const uint8_t *)key, strlen(key), NULL, 0, NULL, NULL), 1);
    mvcc_txn_end(s);
}

/* A history with several versions per key, tombstones, leases, a
 * transaction of several puts, a compaction and a value larger than the
 * I/O buffer. */
static void fill_store(struct mvcc_store *s, uint64_t seed)
{
    uint8_t *big = malloc(BIG_VALUE_BYTES);
    char key[32], val[64];

    assert_non_null(big);
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "key/%03d", i % 97);
        snprintf(val, sizeof(val), "value %d of %" PRIu64, i, seed);
        put(s, key, val, strlen(val) * (size_t)(i % 5 != 0), i % 7 == 0 ? 1000 + i : 0);
    }
    del(s, "key/005");
    del(s, "key/006");
    put(s, "key/006", "back", 4, -3);
    mvcc_txn_begin(s);
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof(key), "txn/%d", i);
        assert_int_equal(mvcc_txn_put(s, (const uint8_t *)key, strlen(key), (const uint8_t *)"t", 1,
                                      0, NULL, NULL),
                         MVCC_OK);
    }
    mvcc_txn_end(s);
    assert_int_equal(mvcc_compact(s, mvcc_current_revision(s) - 150), MVCC_OK);
    while (mvcc_compact_step(s, 7))
        ;
    fill(big, BIG_VALUE_BYTES, seed, 0);
    put(s, "big", big, BIG_VALUE_BYTES, 0);
    del(s, "key/010");
    free(big);
}

static int poll_done(struct snapshot *s, struct snapshot_point *done)
{
    int rv;

    while ((rv = snapshot_poll(s, done)) == 0)
        usleep(1000);
    return rv;
}

/* Writes a snapshot of `st` at `pt` with a fresh struct snapshot. */
static void snapshot_write(struct fx *f, struct mvcc_store *st, uint64_t term, uint64_t index)
{
    struct snapshot_point pt = {index, term}, done;
    struct snapshot *s;

    if (snapshot_init(&s, f->root, st, f->err, sizeof(f->err)) != 0)
        fail_msg("snapshot_init: %s", f->err);
    assert_int_equal(snapshot_start(s, &pt), 0);
    assert_int_equal(poll_done(s, &done), 1);
    assert_int_equal(done.index, index);
    assert_int_equal(done.term, term);
    snapshot_fini(s);
}

/* Loads into a fresh store; returns it, with the point in *pt. */
static struct mvcc_store *snapshot_read(struct fx *f, struct snapshot_point *pt, int *rv)
{
    struct mvcc_store *st = mvcc_create();
    struct snapshot *s;
    bool found = false;

    assert_non_null(st);
    if (snapshot_init(&s, f->root, st, f->err, sizeof(f->err)) != 0)
        fail_msg("snapshot_init: %s", f->err);
    *rv = snapshot_load(s, pt, &found, f->err, sizeof(f->err));
    assert_true(*rv != 0 || found);
    snapshot_fini(s);
    return st;
}

/* The snapshot is the state as of snapshot_start(), although the core
 * goes on writing while it is written; loading it gives that state back. */
static void test_snapshot_pinned_roundtrip(void **state)
{
    struct fx *f = *state;
    struct mvcc_store *a = mvcc_create(), *b;
    struct snapshot_point pt = {1234, 7}, done, got;
    struct snapshot *s;
    struct dump want, after, loaded;
    char path[PATH_MAX];
    struct stat st;
    bool found = true;
    int rv;

    assert_non_null(a);
    fill_store(a, 1);
    dump_store(a, &want);
    if (snapshot_init(&s, f->root, a, f->err, sizeof(f->err)) != 0)
        fail_msg("snapshot_init: %s", f->err);
    assert_int_equal(snapshot_load(s, &got, &found, f->err, sizeof(f->err)), 0);
    assert_false(found); /* none yet */
    assert_false(snapshot_busy(s));
    assert_int_equal(snapshot_size_bytes(s), 0);
    assert_int_equal(snapshot_start(s, &pt), 0);
    assert_true(snapshot_busy(s));
    assert_int_equal(snapshot_start(s, &pt), -1); /* one at a time */
    /* The core goes on applying meanwhile. */
    fill_store(a, 2);
    del(a, "big");
    assert_int_equal(poll_done(s, &done), 1);
    assert_int_equal(done.index, 1234);
    assert_int_equal(done.term, 7);
    assert_false(snapshot_busy(s));
    assert_int_equal(snapshot_poll(s, &done), 0);
    path_of(f, 7, 1234, path);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(snapshot_size_bytes(s), (uint64_t)st.st_size);
    assert_true(st.st_size > BIG_VALUE_BYTES);
    snapshot_fini(s);
    dump_store(a, &after);
    assert_true(after.rev > want.rev);

    b = snapshot_read(f, &got, &rv);
    if (rv != 0)
        fail_msg("snapshot_load: %s", f->err);
    assert_int_equal(got.index, 1234);
    assert_int_equal(got.term, 7);
    assert_int_equal(mvcc_current_revision(b), want.rev);
    assert_int_equal(mvcc_compact_revision(b), want.compact_rev);
    dump_store(b, &loaded);
    dump_expect_equal(&want, &loaded);
    dump_free(&want);
    dump_free(&after);
    dump_free(&loaded);
    mvcc_destroy(a);
    mvcc_destroy(b);
}

/* An empty store makes a snapshot that loads as an empty store. */
static void test_snapshot_empty_store(void **state)
{
    struct fx *f = *state;
    struct mvcc_store *a = mvcc_create(), *b;
    struct snapshot_point got;
    struct dump d;
    int rv;

    snapshot_write(f, a, 1, 1);
    b = snapshot_read(f, &got, &rv);
    assert_int_equal(rv, 0);
    assert_int_equal(got.index, 1);
    assert_int_equal(mvcc_current_revision(b), 1);
    dump_store(b, &d);
    assert_int_equal(d.n, 0);
    dump_free(&d);
    mvcc_destroy(a);
    mvcc_destroy(b);
}

/* A damaged newest snapshot is skipped for an older one; when every one is
 * damaged the load fails; old ones beyond the newest five are removed. */
static void test_snapshot_fallback_and_purge(void **state)
{
    struct fx *f = *state;
    struct mvcc_store *a = mvcc_create(), *b;
    struct snapshot_point got;
    struct dump older, loaded;
    struct snap_file *v;
    char path[PATH_MAX];
    size_t n;
    int rv;

    fill_store(a, 3);
    for (uint64_t i = 1; i <= 6; i++) {
        put(a, "step", &i, sizeof(i), 0);
        if (i == 5)
            dump_store(a, &older);
        snapshot_write(f, a, 2, 100 * i);
    }
    assert_int_equal(snap_list(f->dir, &v, &n, f->err, sizeof(f->err)), 0);
    assert_int_equal(n, SNAP_KEEP_DEFAULT);
    assert_int_equal(v[0].index, 600);
    assert_int_equal(v[n - 1].index, 200);
    free(v);

    path_of(f, 2, 600, path);
    flip(path, 100, 0x20); /* inside the MVCC section */
    b = snapshot_read(f, &got, &rv);
    if (rv != 0)
        fail_msg("snapshot_load: %s", f->err);
    assert_int_equal(got.index, 500);
    dump_store(b, &loaded);
    dump_expect_equal(&older, &loaded);
    dump_free(&loaded);
    dump_free(&older);
    mvcc_destroy(b);

    for (uint64_t i = 2; i <= 5; i++) {
        path_of(f, 2, 100 * i, path);
        assert_int_equal(truncate(path, 1000), 0);
    }
    b = snapshot_read(f, &got, &rv);
    assert_int_equal(rv, -1);
    assert_non_null(strstr(f->err, "no valid snapshot"));
    assert_non_null(strstr(f->err, "0000000000000002-00000000000000c8.snap"));
    mvcc_destroy(b);
    mvcc_destroy(a);
}

/* Writes a file at (1, index) with an MVCC section of `mvcc` bytes and a
 * META section (revision rev), through snap.c directly: files snapshot.c
 * did not write, checked all the same. `extra` adds a section of type 99. */
static void craft(struct fx *f, uint64_t index, const void *mvcc, size_t len, int64_t rev,
                  int extra)
{
    uint8_t meta[40] = {0}; /* META: index, term, revision, compact, alarms */
    struct snap_writer *w;

    meta[0] = (uint8_t)index;
    meta[8] = 1;
    meta[16] = (uint8_t)rev;
    assert_int_equal(snap_write_begin(&w, f->dir, 1, index, f->err, sizeof(f->err)), 0);
    assert_int_equal(snap_write_section_begin(w, 2), 0);
    assert_int_equal(snap_write(w, mvcc, len), 0);
    assert_int_equal(snap_write_section_end(w), 0);
    assert_int_equal(snap_write_section_begin(w, extra ? 99 : 1), 0);
    assert_int_equal(snap_write(w, meta, sizeof(meta)), 0);
    assert_int_equal(snap_write_section_end(w), 0);
    assert_int_equal(snap_write_commit(w, NULL, f->err, sizeof(f->err)), 0);
}

/* The only snapshot, at (term, index), fails to load for `why`; it is
 * removed afterwards. */
static void expect_load_error(struct fx *f, uint64_t term, uint64_t index, const char *why)
{
    struct snapshot_point got;
    struct mvcc_store *b;
    char path[PATH_MAX];
    int rv;

    b = snapshot_read(f, &got, &rv);
    assert_int_equal(rv, -1);
    if (strstr(f->err, why) == NULL)
        fail_msg("want \"%s\" in \"%s\"", why, f->err);
    mvcc_destroy(b);
    path_of(f, term, index, path);
    assert_int_equal(unlink(path), 0);
}

/* The reasons a load gives: the CRC for damage (although records are
 * decoded before it is checked), the record or section rule otherwise. */
static void test_snapshot_load_errors(void **state)
{
    struct fx *f = *state;
    /* body 10: key "k", value "v", create 2, mod 2, sub 0, version 1, lease 0, flags 0 */
    const uint8_t good[] = {10, 1, 'k', 1, 'v', 2, 2, 0, 1, 0, 0};
    uint8_t bad[sizeof(good)];
    struct mvcc_store *a = mvcc_create(), *b;
    struct snapshot_point got;
    char path[PATH_MAX];
    int rv;

    fill_store(a, 4);
    snapshot_write(f, a, 3, 30);
    path_of(f, 3, 30, path);
    flip(path, 40 + 12 + 1, 0x80); /* the first record's key length */
    expect_load_error(f, 3, 30, "crc mismatch");

    craft(f, 1, good, sizeof(good), 2, 0);
    b = snapshot_read(f, &got, &rv);
    if (rv != 0)
        fail_msg("snapshot_load: %s", f->err);
    assert_int_equal(mvcc_current_revision(b), 2);
    mvcc_destroy(b);
    path_of(f, 1, 1, path);
    assert_int_equal(unlink(path), 0);

    memcpy(bad, good, sizeof(bad));
    bad[10] = 2; /* unknown flag */
    craft(f, 2, bad, sizeof(bad), 2, 0);
    expect_load_error(f, 1, 2, "malformed");
    craft(f, 3, good, sizeof(good) - 1, 2, 0); /* cut short */
    expect_load_error(f, 1, 3, "runs past the section");
    memcpy(bad, good, sizeof(bad));
    bad[5] = 3; /* created after it was modified */
    craft(f, 4, bad, sizeof(bad), 3, 0);
    expect_load_error(f, 1, 4, "malformed");
    craft(f, 5, good, sizeof(good), 1, 0); /* a version above the revision */
    expect_load_error(f, 1, 5, "above the store's");
    craft(f, 6, good, sizeof(good), 2, 1);
    expect_load_error(f, 1, 6, "unknown section type 99");
    mvcc_destroy(a);
}

/* The CLUSTER section (the core's membership blob) comes back byte for
 * byte; a snapshot without one loads with none. */
static void test_snapshot_cluster_section(void **state)
{
    struct fx *f = *state;
    struct mvcc_store *a = mvcc_create(), *b;
    uint8_t blob[3000];
    struct snapshot_point pt = {77, 3}, done, got;
    struct snapshot *s;
    int rv;

    assert_non_null(a);
    fill_store(a, 3);
    fill(blob, sizeof(blob), 9, 0);
    pt.cluster = blob;
    pt.cluster_len = sizeof(blob);
    if (snapshot_init(&s, f->root, a, f->err, sizeof(f->err)) != 0)
        fail_msg("snapshot_init: %s", f->err);
    assert_int_equal(snapshot_start(s, &pt), 0);
    blob[0] ^= 0xff; /* the snapshot took a copy */
    assert_int_equal(poll_done(s, &done), 1);
    assert_null(done.cluster);
    snapshot_fini(s);
    blob[0] ^= 0xff;
    b = snapshot_read(f, &got, &rv);
    assert_int_equal(rv, 0);
    assert_int_equal(got.cluster_len, sizeof(blob));
    assert_memory_equal(got.cluster, blob, sizeof(blob));
    free(got.cluster);
    mvcc_destroy(b);
    /* A newer snapshot without the section: none comes back. */
    snapshot_write(f, a, 3, 78);
    b = snapshot_read(f, &got, &rv);
    assert_int_equal(rv, 0);
    assert_int_equal(got.index, 78);
    assert_null(got.cluster);
    assert_int_equal(got.cluster_len, 0);
    mvcc_destroy(b);
    mvcc_destroy(a);
}

/* The LEASES section (the lease table's encoding) comes back byte for
 * byte next to the CLUSTER one; a snapshot without it (older files)
 * loads with none. */
static void test_snapshot_leases_section(void **state)
{
    struct fx *f = *state;
    struct mvcc_store *a = mvcc_create(), *b;
    uint8_t cluster[100], leases[5000];
    struct snapshot_point pt = {90, 4}, done, got;
    struct snapshot *s;
    int rv;

    assert_non_null(a);
    fill_store(a, 3);
    fill(cluster, sizeof(cluster), 5, 0);
    fill(leases, sizeof(leases), 11, 0);
    pt.cluster = cluster;
    pt.cluster_len = sizeof(cluster);
    pt.leases = leases;
    pt.leases_len = sizeof(leases);
    if (snapshot_init(&s, f->root, a, f->err, sizeof(f->err)) != 0)
        fail_msg("snapshot_init: %s", f->err);
    assert_int_equal(snapshot_start(s, &pt), 0);
    leases[0] ^= 0xff; /* the snapshot took a copy */
    assert_int_equal(poll_done(s, &done), 1);
    assert_null(done.leases);
    snapshot_fini(s);
    leases[0] ^= 0xff;
    b = snapshot_read(f, &got, &rv);
    assert_int_equal(rv, 0);
    assert_int_equal(got.leases_len, sizeof(leases));
    assert_memory_equal(got.leases, leases, sizeof(leases));
    assert_int_equal(got.cluster_len, sizeof(cluster));
    free(got.cluster);
    free(got.leases);
    mvcc_destroy(b);
    snapshot_write(f, a, 4, 91);
    b = snapshot_read(f, &got, &rv);
    assert_int_equal(rv, 0);
    assert_int_equal(got.index, 91);
    assert_null(got.leases);
    assert_int_equal(got.leases_len, 0);
    mvcc_destroy(b);
    mvcc_destroy(a);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_roundtrip),
        T(test_partial_reads),
        T(test_truncated),
        T(test_flipped_bytes),
        T(test_name_mismatch),
        T(test_list_and_fallback),
        T(test_purge_and_tmp),
        T(test_rewrite_same_point),
        T(test_too_many_sections),
        T(test_snapshot_pinned_roundtrip),
        T(test_snapshot_empty_store),
        T(test_snapshot_fallback_and_purge),
        T(test_snapshot_load_errors),
        T(test_snapshot_cluster_section),
        T(test_snapshot_leases_section),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
