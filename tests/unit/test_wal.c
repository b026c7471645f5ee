/*
 * test_wal.c — unit tests of src/raft/wal.c and src/raft/crc32c.c.
 *
 * Each test works in its own mkdtemp() directory under /tmp and removes it.
 * Entry payloads are a pseudo-random function of (term, index, len), so
 * the replay callback checks every byte it is given. Some tests reach into
 * the on-disk format (documented at the top of wal.c) to tear, flip or
 * hand-craft records; the constants below mirror it.
 *
 * Threading: single-threaded, like the WAL's owner.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "wal.h"

/* The on-disk format, as documented in wal.c. */
#define HDR_BYTES       16u
#define META_BYTES      32u
#define HARDSTATE_BYTES 40u
#define ENTRY_HDR_BYTES 32u /* header + term + index */
#define SNAP_BYTES      32u /* header + index + term */
#define TYPE_ENTRY      2
#define TYPE_SNAPSHOT   4
#define MIB             (1u << 20)
#define INDEX_MAX       512u
#define ERR_BYTES       (PATH_MAX + 256)

static size_t pad8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

static uint64_t entry_bytes(size_t len)
{
    return HDR_BYTES + pad8(16 + len);
}

/* ---- payloads ---------------------------------------------------------- */

static void fill(uint8_t *p, size_t len, uint64_t term, uint64_t index)
{
    uint64_t x = term * 0x9E3779B97F4A7C15ull ^ index * 0xBF58476D1CE4E5B9ull ^ len;

    for (size_t i = 0; i < len; i += 8) {
        uint64_t z;

        x += 0x9E3779B97F4A7C15ull;
        z = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        z ^= z >> 31;
        memcpy(p + i, &z, len - i < 8 ? len - i : 8);
    }
}

/* ---- replay collector -------------------------------------------------- */

struct ev {
    int is_entry;
    int is_snap; /* a SNAPSHOT marker: index, term */
    uint64_t term;
    uint64_t index;
    size_t len;
    struct wal_hardstate hs;
};

struct coll {
    struct ev *v;
    size_t n;
    size_t cap;
    int bad_payloads;
    uint64_t fail_at; /* entry index whose callback fails, 0 = never */
    uint8_t *scratch;
    size_t scratch_cap;
};

static struct ev *coll_push(struct coll *c)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = realloc(c->v, c->cap * sizeof(*c->v));
        assert_non_null(c->v);
    }
    memset(&c->v[c->n], 0, sizeof(c->v[0]));
    return &c->v[c->n++];
}

static int on_entry(void *arg, const struct wal_entry *e)
{
    struct coll *c = arg;
    struct ev *v;

    if (c->fail_at != 0 && e->index == c->fail_at)
        return 7;
    if (e->len > c->scratch_cap) {
        free(c->scratch);
        c->scratch = malloc(e->len);
        assert_non_null(c->scratch);
        c->scratch_cap = e->len;
    }
    fill(c->scratch, e->len, e->term, e->index);
    if (e->len > 0 && memcmp(c->scratch, e->data, e->len) != 0)
        c->bad_payloads++;
    v = coll_push(c);
    v->is_entry = 1;
    v->term = e->term;
    v->index = e->index;
    v->len = e->len;
    return 0;
}

static int on_hardstate(void *arg, const struct wal_hardstate *hs)
{
    struct ev *v = coll_push(arg);

    v->hs = *hs;
    return 0;
}

static int on_snapshot(void *arg, uint64_t index, uint64_t term)
{
    struct ev *v = coll_push(arg);

    v->is_snap = 1;
    v->index = index;
    v->term = term;
    return 0;
}

static const struct wal_replay_ops ops = {on_entry, on_hardstate, on_snapshot};

static void coll_free(struct coll *c)
{
    free(c->v);
    free(c->scratch);
    memset(c, 0, sizeof(*c));
}

/* Checks that the replayed entries are exactly first..last (in order),
 * each of term `term` and length `len`, ignoring hard states. */
static void expect_entries(const struct coll *c, uint64_t first, uint64_t last, uint64_t term,
                           size_t len)
{
    uint64_t want = first;

    assert_int_equal(c->bad_payloads, 0);
    for (size_t i = 0; i < c->n; i++) {
        if (!c->v[i].is_entry)
            continue;
        assert_int_equal(c->v[i].index, want);
        assert_int_equal(c->v[i].term, term);
        assert_int_equal(c->v[i].len, len);
        want++;
    }
    assert_int_equal(want, last + 1);
}

/* Checks that the events from c->v[k] on, hard states skipped, are the
 * entries first..last of term `term`; returns the index of the next one. */
static size_t expect_run(const struct coll *c, size_t k, uint64_t first, uint64_t last,
                         uint64_t term)
{
    assert_int_equal(c->bad_payloads, 0);
    for (uint64_t i = first; i <= last; i++, k++) {
        while (k < c->n && !c->v[k].is_entry && !c->v[k].is_snap)
            k++;
        assert_true(k < c->n);
        assert_true(c->v[k].is_entry);
        assert_int_equal(c->v[k].index, i);
        assert_int_equal(c->v[k].term, term);
    }
    return k;
}

/* Checks that the next event from c->v[k] on, hard states skipped, is the
 * marker (index, term); returns the index of the one after it. */
static size_t expect_snap(const struct coll *c, size_t k, uint64_t index, uint64_t term)
{
    while (k < c->n && !c->v[k].is_entry && !c->v[k].is_snap)
        k++;
    assert_true(k < c->n);
    assert_true(c->v[k].is_snap);
    assert_int_equal(c->v[k].index, index);
    assert_int_equal(c->v[k].term, term);
    return k + 1;
}

/* Checks that no entry or marker follows c->v[k]. */
static void expect_end(const struct coll *c, size_t k)
{
    for (; k < c->n; k++)
        assert_false(c->v[k].is_entry || c->v[k].is_snap);
}

/* ---- fixture: a temporary data dir, the wal, positions of records ----- */

struct pos {
    uint64_t seq; /* segment */
    uint64_t off; /* record offset in it */
    uint64_t bytes;
};

struct fx {
    char root[64];
    char dir[128];       /* root/member/wal, as given to wal_open */
    char real[PATH_MAX]; /* its realpath, as it appears in messages */
    struct wal *w;
    struct wal_info info;
    struct coll c;
    struct pos pos[INDEX_MAX + 1];
    char err[ERR_BYTES];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->root, "/tmp/cetcd-test-wal-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof(f->dir), "%s/member/wal", f->root);
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

    wal_close(f->w);
    coll_free(&f->c);
    nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Opens (or reopens) the wal; the replay goes to a fresh collector. */
static int fx_open(struct fx *f)
{
    int rv;

    wal_close(f->w);
    f->w = NULL;
    coll_free(&f->c);
    f->err[0] = '\0';
    rv = wal_open(f->dir, &ops, &f->c, &f->w, &f->info, f->err, sizeof(f->err));
    if (rv == 0)
        assert_non_null(realpath(f->dir, f->real));
    return rv;
}

static void fx_open_ok(struct fx *f)
{
    int rv = fx_open(f);

    if (rv != 0)
        fail_msg("wal_open: %s", f->err);
}

static int count_segments(const char *dir, uint64_t seq, char *path_out)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char prefix[32];
    int n = 0;

    assert_non_null(d);
    snprintf(prefix, sizeof(prefix), "%016" PRIx64 "-", seq);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);

        if (len < 4 || strcmp(de->d_name + len - 4, ".wal") != 0)
            continue;
        n++;
        if (path_out != NULL && strncmp(de->d_name, prefix, 17) == 0)
            snprintf(path_out, PATH_MAX, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    return n;
}

/* The path of segment `seq` (fails the test if there is none). */
static void seg_path(struct fx *f, uint64_t seq, char *out)
{
    out[0] = '\0';
    count_segments(f->dir, seq, out);
    assert_true(out[0] != '\0');
}

/* Adds entries first..first+n-1 (term, len) and, if hs, a hard state, to
 * what is pending, then writes the batch the way the core does: prepare,
 * pwrite, fdatasync, done. Records where each entry went. */
static void put_batch(struct fx *f, uint64_t first, uint64_t n, uint64_t term, size_t len, int hs)
{
    uint8_t *p = malloc(len ? len : 1);
    uint64_t rel = wal_pending_bytes(f->w), seq;
    struct wal_write wr;
    char err[ERR_BYTES];

    assert_non_null(p);
    for (uint64_t i = first; i < first + n; i++) {
        fill(p, len, term, i);
        assert_int_equal(wal_add_entry(f->w, term, i, p, len), 0);
        assert_true(i <= INDEX_MAX);
        f->pos[i].off = rel;
        f->pos[i].bytes = entry_bytes(len);
        rel += entry_bytes(len);
    }
    if (hs) {
        struct wal_hardstate h = {term, 1, first + n - 1};

        assert_int_equal(wal_add_hardstate(f->w, &h), 0);
        rel += HARDSTATE_BYTES;
    }
    assert_int_equal(wal_pending_bytes(f->w), rel);
    if (wal_batch_prepare(f->w, &wr, err, sizeof(err)) != 1)
        fail_msg("prepare: %s", err);
    assert_int_equal(wr.len, rel);
    assert_int_equal(wr.offset % 8, 0);
    assert_int_equal(pwrite(wr.fd, wr.buf, wr.len, (off_t)wr.offset), (ssize_t)wr.len);
    assert_int_equal(fdatasync(wr.fd), 0);
    wal_batch_done(f->w);
    seq = (uint64_t)count_segments(f->dir, 0, NULL);
    for (uint64_t i = first; i < first + n; i++) {
        f->pos[i].seq = seq;
        f->pos[i].off += wr.offset;
    }
    free(p);
}

static void sync_ok(struct fx *f)
{
    if (wal_batch_sync(f->w, f->err, sizeof(f->err)) != 0)
        fail_msg("wal_batch_sync: %s", f->err);
}

/* Overwrites `len` bytes at `off` of segment `seq`. */
static void scribble(struct fx *f, uint64_t seq, uint64_t off, const void *buf, size_t len)
{
    char path[PATH_MAX];
    int fd;

    seg_path(f, seq, path);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void flip_byte(struct fx *f, uint64_t seq, uint64_t off)
{
    char path[PATH_MAX];
    uint8_t b;
    int fd;

    seg_path(f, seq, path);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

/* Expects the last open to have failed with a corrupt-record message for
 * segment `seq` at `off`. */
static void expect_corrupt(struct fx *f, uint64_t seq, uint64_t off)
{
    char path[PATH_MAX], real[PATH_MAX], want[ERR_BYTES];

    seg_path(f, seq, path);
    assert_non_null(realpath(path, real));
    snprintf(want, sizeof(want), "%s: corrupt record at offset %" PRIu64 ": ", real, off);
    if (strncmp(f->err, want, strlen(want)) != 0)
        fail_msg("want \"%s...\", got \"%s\"", want, f->err);
    assert_null(f->w);
}

/* ---- crc32c ------------------------------------------------------------ */

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_crc_impl(crc_fn fn)
{
    uint8_t buf[1031], zeros[32] = {0}, ones[32], inc[32];

    assert_int_equal(fn(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(fn(0, "", 0), 0);
    /* RFC 3720 (iSCSI) B.4 test vectors. */
    memset(ones, 0xff, sizeof(ones));
    for (int i = 0; i < 32; i++)
        inc[i] = (uint8_t)i;
    assert_int_equal(fn(0, zeros, 32), 0x8A9136AAu);
    assert_int_equal(fn(0, ones, 32), 0x62A8AB43u);
    assert_int_equal(fn(0, inc, 32), 0x46DD794Eu);
    /* Chaining: crc(a ‖ b) == extend(crc(a), b), at every alignment. */
    fill(buf, sizeof(buf), 1, 2);
    for (size_t start = 0; start < 8; start++) {
        uint32_t whole = fn(0, buf + start, sizeof(buf) - start);

        for (size_t cut = 0; cut <= sizeof(buf) - start; cut += 13)
            assert_int_equal(
                fn(fn(0, buf + start, cut), buf + start + cut, sizeof(buf) - start - cut), whole);
    }
}

static void test_crc32c_sw(void **state)
{
    (void)state;
    check_crc_impl(crc32c_extend_sw);
    check_crc_impl(crc32c_extend);
}

static void test_crc32c_hw(void **state)
{
    uint8_t buf[4099];

    (void)state;
    if (!crc32c_hw_available())
        skip();
    check_crc_impl(crc32c_extend_hw);
    fill(buf, sizeof(buf), 3, 4);
    for (size_t start = 0; start < 16; start++) {
        for (size_t len = 0; len + start <= sizeof(buf); len += 97)
            assert_int_equal(crc32c_extend_hw(0x12345678u, buf + start, len),
                             crc32c_extend_sw(0x12345678u, buf + start, len));
    }
}

/* ---- wal --------------------------------------------------------------- */

static void test_empty_and_modes(void **state)
{
    struct fx *f = *state;
    struct wal_hardstate hs = {3, 2, 1};
    struct wal_write wr;
    char path[PATH_MAX];
    struct stat st;

    fx_open_ok(f);
    assert_int_equal(f->info.entries, 0);
    assert_int_equal(f->info.last_index, 0);
    assert_int_equal(wal_size_bytes(f->w), 0);
    assert_int_equal(wal_batch_prepare(f->w, &wr, f->err, sizeof(f->err)), 0);
    assert_int_equal(wal_batch_sync(f->w, f->err, sizeof(f->err)), 0);
    assert_int_equal(count_segments(f->dir, 0, NULL), 0);
    /* Directories made 0700, with parents. */
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/member", f->root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* The first batch creates the first segment, 0600 and preallocated. */
    assert_int_equal(wal_add_hardstate(f->w, &hs), 0);
    sync_ok(f);
    snprintf(path, sizeof(path), "%s/0000000000000001-0000000000000001.wal", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, WAL_SEGMENT_BYTES);
    assert_int_equal(wal_size_bytes(f->w), META_BYTES + HARDSTATE_BYTES);
    fx_open_ok(f);
    assert_int_equal(f->c.n, 1);
    assert_false(f->c.v[0].is_entry);
    assert_int_equal(f->c.v[0].hs.term, 3);
    assert_int_equal(f->c.v[0].hs.vote, 2);
    assert_int_equal(f->c.v[0].hs.commit, 1);
    assert_int_equal(f->info.torn_bytes, 0);
    assert_int_equal(wal_size_bytes(f->w), META_BYTES + HARDSTATE_BYTES);
}

static void test_limits(void **state)
{
    struct fx *f = *state;
    uint8_t one = 1;

    fx_open_ok(f);
    assert_int_equal(wal_add_entry(f->w, 1, 1, &one, (size_t)WAL_ENTRY_BYTES_MAX + 1), -1);
    assert_int_equal(wal_pending_bytes(f->w), 0);
    assert_int_equal(wal_add_entry(f->w, 1, 1, &one, 1), 0);
    assert_int_equal(wal_pending_bytes(f->w), entry_bytes(1));
}

/* Many entries and hard states across a segment roll, written with
 * wal_batch_sync(), then replayed in the same order. */
static void test_roundtrip_roll(void **state)
{
    struct fx *f = *state;
    const uint64_t n = 80;
    uint64_t bytes = META_BYTES, seg2_first = 0;
    size_t len_max = MIB + 4096;
    uint8_t *p = malloc(len_max);
    char path[PATH_MAX];
    struct stat st;

    assert_non_null(p);
    fx_open_ok(f);
    for (uint64_t i = 1; i <= n; i++) {
        size_t len = MIB + (size_t)(i * 37 % 4096);

        fill(p, len, 2, i);
        assert_int_equal(wal_add_entry(f->w, 2, i, p, len), 0);
        bytes += entry_bytes(len);
        if (i % 3 == 0) {
            struct wal_hardstate hs = {2, 1, i};

            assert_int_equal(wal_add_hardstate(f->w, &hs), 0);
            bytes += HARDSTATE_BYTES;
        }
        if (i % 4 != 0)
            continue;
        sync_ok(f);
        if (seg2_first == 0 && count_segments(f->dir, 0, NULL) == 2) {
            seg2_first = i - 3;
            bytes += META_BYTES;
        }
    }
    free(p);
    assert_true(seg2_first > 1);
    assert_int_equal(count_segments(f->dir, 0, NULL), 2);
    snprintf(path, sizeof(path), "%s/%016" PRIx64 "-%016" PRIx64 ".wal", f->dir, (uint64_t)2,
             seg2_first);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(wal_size_bytes(f->w), bytes);

    fx_open_ok(f);
    assert_int_equal(f->info.entries, n);
    assert_int_equal(f->info.last_index, n);
    assert_int_equal(f->info.last_term, 2);
    assert_int_equal(f->info.torn_bytes, 0);
    assert_int_equal(f->c.bad_payloads, 0);
    assert_int_equal(wal_size_bytes(f->w), bytes);
    /* Order: entry i, then a hard state after every third entry. */
    size_t k = 0;
    for (uint64_t i = 1; i <= n; i++) {
        assert_true(k < f->c.n);
        assert_true(f->c.v[k].is_entry);
        assert_int_equal(f->c.v[k].index, i);
        assert_int_equal(f->c.v[k].len, MIB + i * 37 % 4096);
        k++;
        if (i % 3 == 0) {
            assert_true(k < f->c.n);
            assert_false(f->c.v[k].is_entry);
            assert_int_equal(f->c.v[k].hs.commit, i);
            k++;
        }
    }
    assert_int_equal(k, f->c.n);
}

/* One batch larger than a segment gets a segment of its own; a batch is
 * bounded, so a second maximal entry does not fit the same one. */
static void test_big_batch(void **state)
{
    struct fx *f = *state;
    size_t len = WAL_ENTRY_BYTES_MAX;
    uint8_t *p = malloc(len);
    char path[PATH_MAX];
    struct stat st;

    assert_non_null(p);
    fx_open_ok(f);
    put_batch(f, 1, 2, 1, 100, 1);
    fill(p, len, 1, 3);
    assert_int_equal(wal_add_entry(f->w, 1, 3, p, len), 0);
    fill(p, len, 1, 4);
    assert_int_equal(wal_add_entry(f->w, 1, 4, p, len), -1);
    sync_ok(f);
    assert_int_equal(wal_add_entry(f->w, 1, 4, p, len), 0);
    sync_ok(f);
    free(p);
    /* 1: META + 2 small; 2: META + entry 3 (bigger than a segment); 3: entry 4. */
    assert_int_equal(count_segments(f->dir, 0, NULL), 3);
    seg_path(f, 2, path);
    assert_int_equal(stat(path, &st), 0);
    assert_true((uint64_t)st.st_size >= META_BYTES + entry_bytes(len));
    assert_true((uint64_t)st.st_size > WAL_SEGMENT_BYTES);
    /* A small batch still fits behind entry 4 in segment 3. */
    put_batch(f, 5, 1, 1, 100, 0);
    assert_int_equal(count_segments(f->dir, 0, NULL), 3);
    assert_int_equal(f->pos[5].seq, 3);

    fx_open_ok(f);
    assert_int_equal(f->info.entries, 5);
    assert_int_equal(f->info.torn_bytes, 0);
    assert_int_equal(f->c.bad_payloads, 0);
    assert_int_equal(f->c.v[3].len, len);
    assert_int_equal(f->c.v[4].index, 4);
}

/* Records added while a batch is in flight go to the next batch. */
static void test_double_buffer(void **state)
{
    struct fx *f = *state;
    struct wal_write w1, w2;
    uint8_t p[300];

    fx_open_ok(f);
    for (uint64_t i = 1; i <= 3; i++) {
        fill(p, sizeof(p), 1, i);
        assert_int_equal(wal_add_entry(f->w, 1, i, p, sizeof(p)), 0);
    }
    assert_int_equal(wal_batch_prepare(f->w, &w1, f->err, sizeof(f->err)), 1);
    assert_int_equal(w1.offset, META_BYTES);
    assert_int_equal(w1.len, 3 * entry_bytes(sizeof(p)));
    assert_int_equal(wal_pending_bytes(f->w), 0);
    for (uint64_t i = 4; i <= 6; i++) {
        fill(p, sizeof(p), 1, i);
        assert_int_equal(wal_add_entry(f->w, 1, i, p, sizeof(p)), 0);
    }
    assert_int_equal(wal_pending_bytes(f->w), 3 * entry_bytes(sizeof(p)));
    assert_int_equal(pwrite(w1.fd, w1.buf, w1.len, (off_t)w1.offset), (ssize_t)w1.len);
    assert_int_equal(fdatasync(w1.fd), 0);
    assert_int_equal(wal_size_bytes(f->w), META_BYTES);
    wal_batch_done(f->w);
    assert_int_equal(wal_size_bytes(f->w), META_BYTES + w1.len);
    assert_int_equal(wal_batch_prepare(f->w, &w2, f->err, sizeof(f->err)), 1);
    assert_int_equal(w2.offset, w1.offset + w1.len);
    assert_int_equal(pwrite(w2.fd, w2.buf, w2.len, (off_t)w2.offset), (ssize_t)w2.len);
    assert_int_equal(fdatasync(w2.fd), 0);
    wal_batch_done(f->w);

    fx_open_ok(f);
    expect_entries(&f->c, 1, 6, 1, sizeof(p));
}

/* Reopening continues the chain; a lower index overwrites a suffix. */
static void test_reopen_append(void **state)
{
    struct fx *f = *state;

    fx_open_ok(f);
    put_batch(f, 1, 10, 1, 50, 1);
    fx_open_ok(f);
    expect_entries(&f->c, 1, 10, 1, 50);
    put_batch(f, 11, 10, 1, 50, 1);
    fx_open_ok(f);
    expect_entries(&f->c, 1, 20, 1, 50);
    assert_int_equal(f->info.last_index, 20);
    /* Raft §5.3: the leader of term 2 overwrote 15..: replay reports it. */
    put_batch(f, 15, 3, 2, 50, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.entries, 23);
    assert_int_equal(f->info.last_index, 17);
    assert_int_equal(f->info.last_term, 2);
    assert_int_equal(f->c.v[f->c.n - 3].index, 15);
    assert_int_equal(f->c.v[f->c.n - 3].term, 2);
    assert_int_equal(f->c.bad_payloads, 0);
    put_batch(f, 18, 1, 2, 50, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.last_index, 18);
    assert_int_equal(f->info.torn_bytes, 0);
}

/* Appends after a torn tail and checks everything comes back. */
static void append_after_torn(struct fx *f, uint64_t good)
{
    put_batch(f, good + 1, 2, 3, 40, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.torn_bytes, 0);
    assert_int_equal(f->info.entries, good + 2);
    assert_int_equal(f->info.last_index, good + 2);
    assert_int_equal(f->info.last_term, 3);
    assert_int_equal(f->c.bad_payloads, 0);
}

static void test_torn_truncated(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    struct stat st;

    fx_open_ok(f);
    for (uint64_t i = 1; i <= 10; i++)
        put_batch(f, i, 1, 1, 200, 0);
    wal_close(f->w);
    f->w = NULL;
    seg_path(f, 1, path);
    assert_int_equal(truncate(path, (off_t)(f->pos[10].off + 100)), 0);

    fx_open_ok(f);
    assert_true(f->info.torn_bytes > 0);
    assert_true(f->info.torn_bytes <= 100);
    expect_entries(&f->c, 1, 9, 1, 200);
    assert_int_equal(wal_size_bytes(f->w), f->pos[10].off);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, WAL_SEGMENT_BYTES);
    append_after_torn(f, 9);
}

static void test_torn_garbage(void **state)
{
    struct fx *f = *state;
    uint8_t junk[600];

    fx_open_ok(f);
    for (uint64_t i = 1; i <= 10; i++)
        put_batch(f, i, 1, 1, 200, 0);
    wal_close(f->w);
    f->w = NULL;
    /* Garbage over the whole last record and past its end. */
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 151 + 7) | 1;
    scribble(f, 1, f->pos[10].off, junk, sizeof(junk));

    fx_open_ok(f);
    assert_int_equal(f->info.torn_bytes, sizeof(junk));
    expect_entries(&f->c, 1, 9, 1, 200);
    append_after_torn(f, 9);
}

/* The last batch's pages reached the disk out of order: a record of it is
 * bad (or zeroed) while later records of the same batch check. */
static void test_torn_batch_out_of_order(void **state)
{
    struct fx *f = *state;
    uint8_t zeros[64] = {0};

    fx_open_ok(f);
    put_batch(f, 1, 5, 1, 200, 0);
    put_batch(f, 6, 3, 1, 200, 1);
    wal_close(f->w);
    f->w = NULL;
    scribble(f, 1, f->pos[7].off + 100, zeros, sizeof(zeros));
    fx_open_ok(f);
    /* Up to the last nonzero byte: the hard state's high commit bytes are 0. */
    assert_true(f->info.torn_bytes > 2 * entry_bytes(200));
    assert_true(f->info.torn_bytes <= 2 * entry_bytes(200) + HARDSTATE_BYTES);
    expect_entries(&f->c, 1, 6, 1, 200);
    append_after_torn(f, 6);

    /* Same with the header of the first record of the last batch gone. */
    put_batch(f, 9, 3, 3, 40, 0);
    wal_close(f->w);
    f->w = NULL;
    scribble(f, 1, f->pos[9].off, zeros, HDR_BYTES);
    fx_open_ok(f);
    assert_true(f->info.torn_bytes > 0);
    assert_int_equal(f->info.last_index, 8);
    append_after_torn(f, 8);
}

static void test_corrupt_middle(void **state)
{
    struct fx *f = *state;

    fx_open_ok(f);
    for (uint64_t i = 1; i <= 10; i++)
        put_batch(f, i, 1, 1, 200, 0);
    wal_close(f->w);
    f->w = NULL;
    flip_byte(f, 1, f->pos[2].off + ENTRY_HDR_BYTES + 5);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, f->pos[2].off);
    assert_non_null(strstr(f->err, "crc mismatch"));
}

static void test_corrupt_zeroed_middle(void **state)
{
    struct fx *f = *state;
    uint8_t zeros[HDR_BYTES] = {0};

    fx_open_ok(f);
    for (uint64_t i = 1; i <= 10; i++)
        put_batch(f, i, 1, 1, 200, 0);
    wal_close(f->w);
    f->w = NULL;
    scribble(f, 1, f->pos[4].off, zeros, sizeof(zeros));
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, f->pos[4].off);
}

/* Writes entries 1..n of 1 MiB, 4 per batch, until there are 2 segments. */
static uint64_t fill_two_segments(struct fx *f)
{
    uint64_t i = 1;

    fx_open_ok(f);
    while (count_segments(f->dir, 0, NULL) < 2 || f->pos[i - 1].seq < 2) {
        put_batch(f, i, 4, 1, MIB, 0);
        i += 4;
        assert_true(i < INDEX_MAX);
    }
    put_batch(f, i, 4, 1, MIB, 0);
    return i + 3;
}

/* The last record of segment 1 is bad: a torn tail anywhere else than in
 * the last segment is corruption. */
static void test_corrupt_nonlast_segment(void **state)
{
    struct fx *f = *state;
    uint64_t last = fill_two_segments(f), k = 1;

    while (f->pos[k + 1].seq == 1)
        k++;
    wal_close(f->w);
    f->w = NULL;
    flip_byte(f, 1, f->pos[k].off + f->pos[k].bytes - 8);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, f->pos[k].off);
    assert_true(last > k);
}

/* A segment's META ties it to the chain and to its name. */
static void test_corrupt_meta(void **state)
{
    struct fx *f = *state;

    char path[PATH_MAX], renamed[PATH_MAX];
    size_t n;

    fill_two_segments(f);
    wal_close(f->w);
    f->w = NULL;
    /* Segment 2 renamed to another first index: its META disagrees. */
    seg_path(f, 2, path);
    n = strlen(path);
    snprintf(renamed, sizeof(renamed), "%.*sff.wal", (int)(n - 6), path);
    assert_int_equal(rename(path, renamed), 0);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 2, 0);
    assert_non_null(strstr(f->err, "does not match the file name"));
    assert_int_equal(rename(renamed, path), 0);
    fx_open_ok(f);
    wal_close(f->w);
    f->w = NULL;
    /* A flipped bit in segment 2's META. */
    flip_byte(f, 2, 20);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 2, 0);
    assert_non_null(strstr(f->err, "crc mismatch"));
}

static void test_missing_segment(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    uint64_t last = fill_two_segments(f);

    put_batch(f, last + 1, 70, 1, MIB, 0); /* bigger than a segment */
    assert_int_equal(count_segments(f->dir, 0, NULL), 3);
    wal_close(f->w);
    f->w = NULL;
    seg_path(f, 2, path);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(fx_open(f), -1);
    assert_non_null(strstr(f->err, "missing"));
}

/* Reads the crc (chain value after it) of the record at `off`. */
static uint32_t read_crc(struct fx *f, uint64_t seq, uint64_t off)
{
    char path[PATH_MAX];
    uint8_t h[HDR_BYTES];
    int fd;

    seg_path(f, seq, path);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, h, HDR_BYTES, (off_t)off), HDR_BYTES);
    close(fd);
    return (uint32_t)h[12] | (uint32_t)h[13] << 8 | (uint32_t)h[14] << 16 | (uint32_t)h[15] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Hand-encodes a record of `type` with the 16-byte payload (a, b) (layout
 * from wal.c) whose own crc is right for `prev`, and writes it at `off` of
 * segment 1. */
static void craft_rec(struct fx *f, uint64_t off, uint32_t prev, uint8_t type, uint64_t a,
                      uint64_t b)
{
    uint8_t rec[HDR_BYTES + 16] = {0};
    uint32_t crc;

    rec[0] = 16; /* len */
    rec[4] = type;
    put64(rec + 16, a);
    put64(rec + 24, b);
    crc = crc32c_extend(crc32c_extend(prev, rec, 8), rec + 16, 16);
    for (int i = 0; i < 4; i++) {
        rec[8 + i] = (uint8_t)(prev >> (8 * i));
        rec[12 + i] = (uint8_t)(crc >> (8 * i));
    }
    scribble(f, 1, off, rec, sizeof(rec));
}

/* An entry with no data: term 1, `index`. */
static void craft_entry(struct fx *f, uint64_t off, uint32_t prev, uint64_t index)
{
    craft_rec(f, off, prev, TYPE_ENTRY, 1, index);
}

/* Records with a right crc but a wrong place in the log. */
static void test_index_gap_and_chain(void **state)
{
    struct fx *f = *state;
    uint64_t off;

    fx_open_ok(f);
    put_batch(f, 1, 3, 1, 8, 0);
    off = f->pos[3].off + f->pos[3].bytes;
    wal_close(f->w);
    f->w = NULL;
    /* Index 5 after 3: a gap. */
    craft_entry(f, off, read_crc(f, 1, f->pos[3].off), 5);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, off);
    assert_non_null(strstr(f->err, "entry index 5 after 3"));
    /* Linked to entry 2 instead of entry 3: the chain is broken. */
    craft_entry(f, off, read_crc(f, 1, f->pos[2].off), 4);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, off);
    assert_non_null(strstr(f->err, "crc chain broken"));
    /* Index 4 linked to entry 3 is accepted: the format is as documented. */
    craft_entry(f, off, read_crc(f, 1, f->pos[3].off), 4);
    fx_open_ok(f);
    assert_int_equal(f->info.last_index, 4);
    assert_int_equal(f->info.torn_bytes, 0);
    put_batch(f, 5, 1, 1, 8, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.last_index, 5);
}

static void test_callback_error_and_tmp(void **state)
{
    struct fx *f = *state;
    char tmp[PATH_MAX];
    int fd;

    fx_open_ok(f);
    put_batch(f, 1, 10, 1, 20, 0);
    snprintf(tmp, sizeof(tmp), "%s/0000000000000002-000000000000000b.wal.tmp", f->dir);
    fd = open(tmp, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    wal_close(f->w);
    f->w = NULL;
    coll_free(&f->c);
    f->c.fail_at = 5;
    assert_int_equal(wal_open(f->dir, &ops, &f->c, &f->w, &f->info, f->err, sizeof(f->err)), 7);
    assert_null(f->w);
    assert_non_null(strstr(f->err, "callback"));
    fx_open_ok(f);
    assert_int_equal(f->info.entries, 10);
    assert_int_not_equal(access(tmp, F_OK), 0);
}

/* ---- release ------------------------------------------------------------ */

/* Writes batches of 4 entries of 1 MiB (each with a hard state if hs)
 * until segment `nseg` holds entries, then one more batch. Returns the
 * last index. */
static uint64_t fill_segments(struct fx *f, uint64_t nseg, int hs)
{
    uint64_t i = 1;

    fx_open_ok(f);
    while (count_segments(f->dir, 0, NULL) < (int)nseg || f->pos[i - 1].seq < nseg) {
        put_batch(f, i, 4, 1, MIB, hs);
        i += 4;
        assert_true(i < INDEX_MAX);
    }
    put_batch(f, i, 4, 1, MIB, hs);
    return i + 3;
}

/* The index of the first entry written to segment `seq`. */
static uint64_t first_in(const struct fx *f, uint64_t seq, uint64_t last)
{
    for (uint64_t i = 1; i <= last; i++)
        if (f->pos[i].seq == seq)
            return i;
    fail_msg("no entry in segment %" PRIu64, seq);
    return 0;
}

static int release(struct fx *f, uint64_t index)
{
    int rv = wal_release(f->w, index, f->err, sizeof(f->err));

    if (rv < 0)
        fail_msg("wal_release: %s", f->err);
    return rv;
}

/* The last hard state replayed. */
static const struct wal_hardstate *last_hs(const struct fx *f)
{
    for (size_t i = f->c.n; i-- > 0;)
        if (!f->c.v[i].is_entry && !f->c.v[i].is_snap)
            return &f->c.v[i].hs;
    return NULL;
}

/* Segments wholly at or below the index go, oldest first, never the tail;
 * replay then starts at the first remaining one and appending goes on. */
static void test_release(void **state)
{
    struct fx *f = *state;
    uint64_t last = fill_segments(f, 3, 1);
    uint64_t first2 = first_in(f, 2, last), first3 = first_in(f, 3, last), size;
    char path[PATH_MAX];

    assert_int_equal(count_segments(f->dir, 0, NULL), 3);
    assert_int_equal(release(f, 0), 0);
    assert_int_equal(release(f, first2 - 2), 0); /* segment 1 still holds first2 - 1 */
    size = wal_size_bytes(f->w);
    assert_int_equal(release(f, first2 - 1), 1);
    path[0] = '\0';
    assert_int_equal(count_segments(f->dir, 1, path), 2);
    assert_string_equal(path, ""); /* segment 1 is the one gone */
    assert_true(wal_size_bytes(f->w) < size);
    assert_int_equal(wal_pending_bytes(f->w), 0); /* the hard state is in the tail */
    size = wal_size_bytes(f->w);

    fx_open_ok(f);
    assert_int_equal(wal_size_bytes(f->w), size);
    expect_entries(&f->c, first2, last, 1, MIB);
    assert_int_equal(f->info.entries, last - first2 + 1);
    assert_int_equal(f->info.last_index, last);
    /* Far past the end: everything but the tail goes. */
    assert_int_equal(release(f, UINT64_MAX), 1);
    assert_int_equal(count_segments(f->dir, 0, NULL), 1);
    assert_int_equal(release(f, UINT64_MAX), 0);
    size = wal_size_bytes(f->w);

    fx_open_ok(f);
    assert_int_equal(wal_size_bytes(f->w), size);
    expect_entries(&f->c, first3, last, 1, MIB);
    assert_non_null(last_hs(f));
    assert_int_equal(last_hs(f)->commit, last);
    put_batch(f, last + 1, 3, 2, 100, 1);
    fx_open_ok(f);
    assert_int_equal(f->info.last_index, last + 3);
    assert_int_equal(f->info.last_term, 2);
    assert_int_equal(f->info.entries, last + 3 - first3 + 1);
    assert_int_equal(f->c.bad_payloads, 0);
    assert_int_equal(f->info.torn_bytes, 0);
}

/* The segment holding the newest hard state is kept; the hard state is
 * carried into the next batch, after which the release can go on. */
static void test_release_keeps_hardstate(void **state)
{
    struct fx *f = *state;
    struct wal_hardstate hs = {5, 3, 2};
    uint64_t last, first3;

    fx_open_ok(f);
    assert_int_equal(release(f, UINT64_MAX), 0); /* no segment at all */
    assert_int_equal(wal_add_hardstate(f->w, &hs), 0);
    sync_ok(f);
    wal_close(f->w);
    f->w = NULL;
    last = fill_segments(f, 3, 0); /* reopens: the hard state is replayed */
    first3 = first_in(f, 3, last);
    assert_int_equal(release(f, UINT64_MAX), 0);
    assert_int_equal(count_segments(f->dir, 0, NULL), 3);
    assert_int_equal(wal_pending_bytes(f->w), HARDSTATE_BYTES);
    assert_int_equal(release(f, UINT64_MAX), 0); /* not carried twice */
    assert_int_equal(wal_pending_bytes(f->w), HARDSTATE_BYTES);
    sync_ok(f);
    assert_int_equal(release(f, UINT64_MAX), 2);
    assert_int_equal(count_segments(f->dir, 0, NULL), 1);

    fx_open_ok(f);
    expect_entries(&f->c, first3, last, 1, MIB);
    assert_non_null(last_hs(f));
    assert_int_equal(last_hs(f)->term, 5);
    assert_int_equal(last_hs(f)->vote, 3);
    assert_int_equal(last_hs(f)->commit, 2);
}

/* A segment whose later entries were overwritten by the next one (Raft
 * §5.3) goes once the entries before the overwrite are covered. */
static void test_release_after_overwrite(void **state)
{
    struct fx *f = *state;

    fx_open_ok(f);
    for (uint64_t i = 1; i <= 56; i += 4)
        put_batch(f, i, 4, 1, MIB, 0);
    put_batch(f, 50, 10, 2, MIB, 1); /* does not fit: a new segment from 50 */
    assert_int_equal(count_segments(f->dir, 0, NULL), 2);
    assert_int_equal(f->pos[50].seq, 2);
    assert_int_equal(release(f, 48), 0);
    assert_int_equal(release(f, 49), 1);

    fx_open_ok(f);
    expect_entries(&f->c, 50, 59, 2, MIB);
}

/* A release while a batch that rolled to a new segment is in flight: the
 * hard state in that batch does not count until it is durable. */
static void test_release_inflight(void **state)
{
    struct fx *f = *state;
    uint64_t last = fill_segments(f, 2, 1);
    const uint64_t n = 70; /* more than a segment: the batch rolls */
    struct wal_hardstate hs = {1, 1, last + n};
    uint8_t *p = malloc(MIB);
    struct wal_write wr;

    assert_non_null(p);
    for (uint64_t i = last + 1; i <= last + n; i++) {
        fill(p, MIB, 1, i);
        assert_int_equal(wal_add_entry(f->w, 1, i, p, MIB), 0);
    }
    free(p);
    assert_int_equal(wal_add_hardstate(f->w, &hs), 0);
    assert_int_equal(wal_batch_prepare(f->w, &wr, f->err, sizeof(f->err)), 1);
    assert_int_equal(count_segments(f->dir, 0, NULL), 3);
    /* Segment 2 holds the newest durable hard state: only segment 1 goes,
     * and nothing is carried (the batch in flight holds a hard state). */
    assert_int_equal(release(f, last), 1);
    assert_int_equal(wal_pending_bytes(f->w), 0);
    assert_int_equal(pwrite(wr.fd, wr.buf, wr.len, (off_t)wr.offset), (ssize_t)wr.len);
    assert_int_equal(fdatasync(wr.fd), 0);
    wal_batch_done(f->w);
    assert_int_equal(release(f, last), 1);
    assert_int_equal(count_segments(f->dir, 0, NULL), 1);
    put_batch(f, last + n + 1, 1, 1, MIB, 0);

    fx_open_ok(f);
    expect_entries(&f->c, last + 1, last + n + 1, 1, MIB);
    assert_int_equal(last_hs(f)->commit, last + n);
}

/* ---- snapshot markers --------------------------------------------------- */

/* Adds a SNAPSHOT marker (index, term) and writes it in a batch of its own. */
static void put_snap(struct fx *f, uint64_t index, uint64_t term)
{
    assert_int_equal(wal_add_snapshot(f->w, index, term), 0);
    sync_ok(f);
}

/* Entries 1..10, a marker at 50, entries 51..60: replay hands them back in
 * that order; appending goes on after a reopen. */
static void test_snapshot_roundtrip(void **state)
{
    struct fx *f = *state;
    static const struct wal_replay_ops no_snap_ops = {on_entry, on_hardstate, NULL};
    char path[PATH_MAX];
    size_t k;

    fx_open_ok(f);
    put_batch(f, 1, 10, 1, 100, 1);
    /* The marker and the first entries after it share a batch. */
    assert_int_equal(wal_add_snapshot(f->w, 50, 3), 0);
    assert_int_equal(wal_pending_bytes(f->w), SNAP_BYTES);
    put_batch(f, 51, 5, 3, 100, 1);
    assert_int_equal(f->pos[51].off,
                     f->pos[10].off + f->pos[10].bytes + HARDSTATE_BYTES + SNAP_BYTES);
    put_batch(f, 56, 5, 3, 100, 0);
    assert_int_equal(count_segments(f->dir, 0, NULL), 1);
    assert_int_equal(wal_size_bytes(f->w),
                     META_BYTES + 20 * entry_bytes(100) + 2 * HARDSTATE_BYTES + SNAP_BYTES);

    fx_open_ok(f);
    k = expect_run(&f->c, 0, 1, 10, 1);
    k = expect_snap(&f->c, k, 50, 3);
    k = expect_run(&f->c, k, 51, 60, 3);
    expect_end(&f->c, k);
    assert_int_equal(f->info.entries, 20);
    assert_int_equal(f->info.last_index, 60);
    assert_int_equal(f->info.last_term, 3);
    assert_int_equal(f->info.snap_index, 50);
    assert_int_equal(f->info.snap_term, 3);
    assert_int_equal(f->info.torn_bytes, 0);
    assert_int_equal(last_hs(f)->commit, 55);

    /* Reopen and append; a second marker further on. */
    put_batch(f, 61, 2, 3, 100, 0);
    put_snap(f, 80, 4);
    put_batch(f, 81, 1, 4, 100, 0);
    fx_open_ok(f);
    k = expect_run(&f->c, 0, 1, 10, 1);
    k = expect_snap(&f->c, k, 50, 3);
    k = expect_run(&f->c, k, 51, 62, 3);
    k = expect_snap(&f->c, k, 80, 4);
    k = expect_run(&f->c, k, 81, 81, 4);
    expect_end(&f->c, k);
    assert_int_equal(f->info.last_index, 81);
    assert_int_equal(f->info.last_term, 4);
    assert_int_equal(f->info.snap_index, 80);
    assert_int_equal(f->info.snap_term, 4);

    /* Without a snapshot callback the markers are checked and skipped. */
    wal_close(f->w);
    f->w = NULL;
    coll_free(&f->c);
    assert_int_equal(wal_open(f->dir, &no_snap_ops, &f->c, &f->w, &f->info, f->err, sizeof(f->err)),
                     0);
    assert_int_equal(f->info.entries, 23);
    assert_int_equal(f->info.snap_index, 80);
    assert_int_equal(f->info.last_index, 81);
    for (size_t i = 0; i < f->c.n; i++)
        assert_false(f->c.v[i].is_snap);
    snprintf(path, sizeof(path), "%s/0000000000000001-0000000000000001.wal", f->dir);
    assert_int_equal(access(path, F_OK), 0);
}

/* A marker with nothing after it: the log ends at the marker; the next
 * entry, after a reopen, is the marker's index + 1. A marker as the very
 * first record (a new member's first snapshot) names its segment index + 1. */
static void test_snapshot_alone(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    size_t k;

    fx_open_ok(f);
    put_snap(f, 50, 2);
    snprintf(path, sizeof(path), "%s/0000000000000001-0000000000000033.wal", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    fx_open_ok(f);
    k = expect_snap(&f->c, 0, 50, 2);
    expect_end(&f->c, k);
    assert_int_equal(f->info.entries, 0);
    assert_int_equal(f->info.last_index, 50);
    assert_int_equal(f->info.last_term, 2);
    assert_int_equal(f->info.snap_index, 50);

    put_batch(f, 51, 10, 2, 30, 0);
    put_snap(f, 70, 2); /* above the last index: the log jumps to 70 */
    fx_open_ok(f);
    k = expect_snap(&f->c, 0, 50, 2);
    k = expect_run(&f->c, k, 51, 60, 2);
    k = expect_snap(&f->c, k, 70, 2);
    expect_end(&f->c, k);
    assert_int_equal(f->info.entries, 10);
    assert_int_equal(f->info.last_index, 70);
    assert_int_equal(f->info.last_term, 2);
    assert_int_equal(f->info.snap_index, 70);
    assert_int_equal(f->info.snap_term, 2);

    put_batch(f, 71, 1, 3, 30, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.last_index, 71);
    assert_int_equal(f->info.last_term, 3);
    assert_int_equal(f->info.entries, 11);
    assert_int_equal(f->info.snap_index, 70);
    assert_int_equal(count_segments(f->dir, 0, NULL), 1);
}

/* A follower whose log ran past the snapshot with conflicting entries of
 * an old term (Raft §7: it discards its entire log): the marker below the
 * last index supersedes them all and the log restarts after it. */
static void test_snapshot_below_last(void **state)
{
    struct fx *f = *state;
    size_t k;

    fx_open_ok(f);
    put_batch(f, 1, 100, 1, 20, 1);
    assert_int_equal(wal_add_snapshot(f->w, 50, 2), 0);
    put_batch(f, 51, 5, 2, 20, 0);
    fx_open_ok(f);
    k = expect_run(&f->c, 0, 1, 100, 1);
    k = expect_snap(&f->c, k, 50, 2);
    k = expect_run(&f->c, k, 51, 55, 2);
    expect_end(&f->c, k);
    assert_int_equal(f->info.entries, 105);
    assert_int_equal(f->info.last_index, 55);
    assert_int_equal(f->info.last_term, 2);
    assert_int_equal(f->info.snap_index, 50);

    /* A Raft §5.3 overwrite after the marker is still allowed above it. */
    put_batch(f, 53, 2, 3, 20, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.last_index, 54);
    assert_int_equal(f->info.last_term, 3);
    assert_int_equal(f->info.entries, 107);

    /* At the last index itself. */
    put_snap(f, 54, 3);
    put_batch(f, 55, 1, 3, 20, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.snap_index, 54);
    assert_int_equal(f->info.last_index, 55);
}

/* Records with a right crc after a marker, but a wrong place in the log. */
static void test_snapshot_gap_corrupt(void **state)
{
    struct fx *f = *state;
    uint64_t moff, off;
    uint32_t prev;

    fx_open_ok(f);
    put_batch(f, 1, 3, 1, 8, 0);
    moff = f->pos[3].off + f->pos[3].bytes;
    put_snap(f, 50, 3);
    off = moff + SNAP_BYTES;
    assert_int_equal(wal_size_bytes(f->w), off);
    wal_close(f->w);
    f->w = NULL;
    prev = read_crc(f, 1, moff);

    craft_entry(f, off, prev, 52);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, off);
    assert_non_null(strstr(f->err, "entry index 52 after 50"));
    craft_entry(f, off, prev, 50);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, off);
    assert_non_null(strstr(f->err, "entry index 50 at or below snapshot 50"));
    craft_entry(f, off, prev, 3);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, off);
    assert_non_null(strstr(f->err, "at or below snapshot"));
    /* Markers never go back. */
    craft_rec(f, off, prev, TYPE_SNAPSHOT, 40, 3);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, off);
    assert_non_null(strstr(f->err, "snapshot 40/3 goes back from 50/3"));
    craft_rec(f, off, prev, TYPE_SNAPSHOT, 50, 4);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, off);
    craft_rec(f, off, prev, TYPE_SNAPSHOT, 60, 2);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, off);
    craft_rec(f, off, prev, TYPE_SNAPSHOT, 0, 3);
    assert_int_equal(fx_open(f), -1);
    expect_corrupt(f, 1, off);
    assert_non_null(strstr(f->err, "snapshot index 0"));
    /* The same marker again, then a later one: accepted. */
    craft_rec(f, off, prev, TYPE_SNAPSHOT, 50, 3);
    fx_open_ok(f);
    assert_int_equal(f->info.snap_index, 50);
    assert_int_equal(f->info.last_index, 50);
    wal_close(f->w);
    f->w = NULL;
    craft_rec(f, off, prev, TYPE_SNAPSHOT, 60, 3);
    fx_open_ok(f);
    assert_int_equal(f->info.snap_index, 60);
    assert_int_equal(f->info.last_index, 60);
    wal_close(f->w);
    f->w = NULL;
    /* Index 51 is the one that may follow the marker at 50. */
    craft_entry(f, off, prev, 51);
    fx_open_ok(f);
    assert_int_equal(f->info.last_index, 51);
    assert_int_equal(f->info.torn_bytes, 0);
    put_batch(f, 52, 1, 1, 8, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.last_index, 52);
    assert_int_equal(f->info.snap_index, 50);
}

/* The batch holding the marker was torn (never acknowledged): replay ends
 * before it, and the caller writes the marker again. */
static void test_snapshot_torn(void **state)
{
    struct fx *f = *state;
    uint8_t junk[200];
    uint64_t moff;
    size_t k;

    fx_open_ok(f);
    for (uint64_t i = 1; i <= 10; i++)
        put_batch(f, i, 1, 1, 50, 0);
    assert_int_equal(wal_add_snapshot(f->w, 50, 2), 0);
    put_batch(f, 51, 2, 2, 50, 0);
    moff = f->pos[51].off - SNAP_BYTES;
    assert_int_equal(moff, f->pos[10].off + f->pos[10].bytes);
    wal_close(f->w);
    f->w = NULL;
    /* Garbage over the marker's payload and what follows. */
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 151 + 7) | 1;
    scribble(f, 1, moff + HDR_BYTES, junk, sizeof(junk));

    fx_open_ok(f);
    assert_true(f->info.torn_bytes > 0);
    k = expect_run(&f->c, 0, 1, 10, 1);
    expect_end(&f->c, k);
    assert_int_equal(f->info.snap_index, 0);
    assert_int_equal(f->info.last_index, 10);
    assert_int_equal(wal_size_bytes(f->w), moff);
    /* The marker again, and the log after it. */
    assert_int_equal(wal_add_snapshot(f->w, 50, 2), 0);
    put_batch(f, 51, 2, 2, 50, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.torn_bytes, 0);
    k = expect_run(&f->c, 0, 1, 10, 1);
    k = expect_snap(&f->c, k, 50, 2);
    k = expect_run(&f->c, k, 51, 52, 2);
    expect_end(&f->c, k);

    /* Torn after the marker, in the same batch: the marker checks and
     * stays; the entry after it is cut. */
    assert_int_equal(wal_add_snapshot(f->w, 60, 2), 0);
    put_batch(f, 61, 2, 2, 50, 0);
    wal_close(f->w);
    f->w = NULL;
    scribble(f, 1, f->pos[61].off + HDR_BYTES, junk, sizeof(junk));
    fx_open_ok(f);
    assert_true(f->info.torn_bytes > 0);
    assert_int_equal(f->info.snap_index, 60);
    assert_int_equal(f->info.last_index, 60);
    put_batch(f, 61, 1, 2, 50, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.last_index, 61);
    assert_int_equal(f->info.torn_bytes, 0);
}

/* Markers crossing segment rolls: a lone marker that does not fit starts a
 * segment named index + 1; so does a marker that begins a batch of
 * entries. A marker released with its segment is not replayed. */
static void test_snapshot_roll(void **state)
{
    struct fx *f = *state;
    const size_t len = WAL_SEGMENT_BYTES - 80; /* fills segment 1 but 16 bytes */
    uint8_t *p = malloc(len);
    char path[PATH_MAX];
    size_t k;

    assert_non_null(p);
    fx_open_ok(f);
    fill(p, len, 1, 1);
    assert_int_equal(wal_add_entry(f->w, 1, 1, p, len), 0);
    sync_ok(f);
    assert_int_equal(wal_size_bytes(f->w), WAL_SEGMENT_BYTES - 16);
    put_snap(f, 50, 2);
    assert_int_equal(count_segments(f->dir, 0, NULL), 2);
    snprintf(path, sizeof(path), "%s/0000000000000002-0000000000000033.wal", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    put_batch(f, 51, 3, 2, 100, 1);
    assert_int_equal(f->pos[51].seq, 2);
    /* A marker and an entry too big for segment 2's room: segment 3. */
    assert_int_equal(wal_add_snapshot(f->w, 100, 3), 0);
    fill(p, len, 3, 101);
    assert_int_equal(wal_add_entry(f->w, 3, 101, p, len), 0);
    sync_ok(f);
    free(p);
    assert_int_equal(count_segments(f->dir, 0, NULL), 3);
    snprintf(path, sizeof(path), "%s/0000000000000003-0000000000000065.wal", f->dir);
    assert_int_equal(access(path, F_OK), 0);

    fx_open_ok(f);
    k = expect_run(&f->c, 0, 1, 1, 1);
    k = expect_snap(&f->c, k, 50, 2);
    k = expect_run(&f->c, k, 51, 53, 2);
    k = expect_snap(&f->c, k, 100, 3);
    k = expect_run(&f->c, k, 101, 101, 3);
    expect_end(&f->c, k);
    assert_int_equal(f->info.entries, 5);
    assert_int_equal(f->info.last_index, 101);
    assert_int_equal(f->info.snap_index, 100);

    /* Segment 1 is wholly before segment 2's first index 51. */
    assert_int_equal(release(f, 49), 0);
    assert_int_equal(release(f, 50), 1);
    fx_open_ok(f);
    k = expect_snap(&f->c, 0, 50, 2);
    k = expect_run(&f->c, k, 51, 53, 2);
    /* Segment 2, marker and all, goes once 100 is covered; the hard state
     * in it is carried forward first. */
    assert_int_equal(release(f, 100), 0);
    sync_ok(f);
    assert_int_equal(release(f, 100), 1);
    fx_open_ok(f);
    k = expect_snap(&f->c, 0, 100, 3);
    k = expect_run(&f->c, k, 101, 101, 3);
    expect_end(&f->c, k);
    assert_int_equal(f->info.snap_index, 100);
    assert_int_equal(f->info.last_index, 101);
    assert_int_equal(last_hs(f)->commit, 53);
    put_batch(f, 102, 1, 3, 100, 0);
    fx_open_ok(f);
    assert_int_equal(f->info.last_index, 102);
}

/* A marker below the entries of older segments (a conflicting follower
 * log): once it is durable, the segments before it hold only superseded
 * entries and go with a release at the marker's index. */
static void test_snapshot_release(void **state)
{
    struct fx *f = *state;
    uint64_t last = fill_segments(f, 3, 0), first3 = first_in(f, 3, last);
    uint64_t i = 24, first4 = 0;
    struct wal_write wr;
    size_t k;

    assert_int_equal(count_segments(f->dir, 0, NULL), 3);
    assert_int_equal(wal_add_snapshot(f->w, 20, 2), 0);
    /* Not durable yet: nothing is superseded. */
    assert_int_equal(release(f, 20), 0);
    assert_int_equal(wal_batch_prepare(f->w, &wr, f->err, sizeof(f->err)), 1);
    assert_int_equal(release(f, 20), 0);
    assert_int_equal(pwrite(wr.fd, wr.buf, wr.len, (off_t)wr.offset), (ssize_t)wr.len);
    assert_int_equal(fdatasync(wr.fd), 0);
    wal_batch_done(f->w);
    put_batch(f, 21, 3, 2, 100, 0);
    /* Durable: a snapshot covering 19 is not enough, one covering 20 is. */
    assert_int_equal(release(f, 19), 0);
    assert_int_equal(release(f, 20), 2);
    assert_int_equal(count_segments(f->dir, 0, NULL), 1);
    assert_int_equal(release(f, UINT64_MAX), 0); /* never the tail */

    fx_open_ok(f);
    k = expect_run(&f->c, 0, first3, last, 1);
    k = expect_snap(&f->c, k, 20, 2);
    k = expect_run(&f->c, k, 21, 23, 2);
    expect_end(&f->c, k);
    assert_int_equal(f->info.last_index, 23);
    assert_int_equal(f->info.last_term, 2);
    assert_int_equal(f->info.snap_index, 20);
    /* Again with the marker known from replay: the log grows into a new
     * segment, then a later marker below its last index. */
    while (first4 == 0) {
        put_batch(f, i, 4, 2, MIB, 0);
        if (count_segments(f->dir, 0, NULL) == 2)
            first4 = i;
        i += 4;
        assert_true(i < INDEX_MAX);
    }
    put_batch(f, i, 4, 2, MIB, 0);
    assert_true(first4 > 31);
    put_snap(f, 30, 3);
    put_batch(f, 31, 1, 3, 100, 0);
    fx_open_ok(f);
    assert_int_equal(release(f, 29), 0);
    assert_int_equal(release(f, 30), 1);
    assert_int_equal(count_segments(f->dir, 0, NULL), 1);
    fx_open_ok(f);
    k = expect_run(&f->c, 0, first4, i + 3, 2);
    k = expect_snap(&f->c, k, 30, 3);
    k = expect_run(&f->c, k, 31, 31, 3);
    expect_end(&f->c, k);
    assert_int_equal(f->info.last_index, 31);
    assert_int_equal(f->info.snap_index, 30);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_sw),
        cmocka_unit_test(test_crc32c_hw),
        T(test_empty_and_modes),
        T(test_limits),
        T(test_roundtrip_roll),
        T(test_big_batch),
        T(test_double_buffer),
        T(test_reopen_append),
        T(test_torn_truncated),
        T(test_torn_garbage),
        T(test_torn_batch_out_of_order),
        T(test_corrupt_middle),
        T(test_corrupt_zeroed_middle),
        T(test_corrupt_nonlast_segment),
        T(test_corrupt_meta),
        T(test_missing_segment),
        T(test_index_gap_and_chain),
        T(test_callback_error_and_tmp),
        T(test_release),
        T(test_release_keeps_hardstate),
        T(test_release_after_overwrite),
        T(test_release_inflight),
        T(test_snapshot_roundtrip),
        T(test_snapshot_alone),
        T(test_snapshot_below_last),
        T(test_snapshot_gap_corrupt),
        T(test_snapshot_torn),
        T(test_snapshot_roll),
        T(test_snapshot_release),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
