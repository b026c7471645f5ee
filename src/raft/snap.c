/*
 * snap.c — snapshot files: the on-disk format, the streaming writer and
 * reader, listing and purging of data-dir/member/snap.
 *
 * Owns: nothing shared. A writer owns its directory fd, its temporary
 * file's fd and one SNAP_BUF_BYTES buffer; a reader its file's fd and one
 * buffer. Thread: whichever thread uses the writer or reader (the
 * snapshot thread, or the core at start-up); all I/O is synchronous.
 * Invariants:
 *  - Writer: the file's logical contents are the bytes written to disk so
 *    far followed by buf[0, len); buf_off is the file offset of buf[0].
 *    Bytes are written in file order, except each section's 12-byte
 *    header, which is filled in (in the buffer or with one pwrite) when the
 *    section ends and its length is known.
 *  - Reader: off is the file offset of the next byte handed out; the
 *    running CRCs cover exactly the bytes before off that they cover.
 *  - No data is trusted before its CRC has checked: a reader's caller gets
 *    payload bytes as they stream, but the section (and file) only counts
 *    as good once snap_read() returned 0 (snap_read_section() returned 0).
 *
 * FILE NAME
 *
 * <16 lowercase hex term>-<16 lowercase hex index>.snap, so names sort by
 * term, then index. While being written: the same name + ".tmp".
 *
 *   0        40                                                  size-24  size
 *   +--------+-----------------+-----------------+-----+---------+--------+
 *   | HEADER | SECTION 1       | SECTION 2       | ... | SECTION | TRAILER|
 *   +--------+-----------------+-----------------+-----+---------+--------+
 *
 * HEADER (integers little-endian)
 *
 *   OFFSET  SIZE  MEANING
 *        0     8  magic "CETCDSNP"
 *        8     4  format version: 1
 *       12     4  flags: 0
 *       16     8  term of the last entry covered
 *       24     8  index of the last entry covered
 *       32     4  header_crc = CRC32C(bytes 0..31)
 *       36     4  reserved: 0
 *
 * SECTION
 *
 *   OFFSET  SIZE  MEANING
 *        0     4  type: the caller's, never 0 (0 starts the trailer)
 *        4     8  len: payload bytes
 *       12   len  payload
 *   12+len     4  crc = CRC32C(payload ‖ bytes 0..11 of this section)
 *
 *   +------+--------+---------------------------------+-----+
 *   | type | len    | payload ...                     | crc |
 *   +------+--------+---------------------------------+-----+
 *   0      4        12                                12+len
 *
 * The crc covers the payload before the header because the writer
 * streams the payload and learns its length only at the end.
 *
 * TRAILER (24 bytes, the end of the file)
 *
 *   OFFSET  SIZE  MEANING
 *        0     4  0 (where a section's type would be)
 *        4     4  count: number of sections, <= SNAP_SECTIONS_MAX
 *        8     8  file_bytes: size of the whole file, trailer included
 *       16     4  file_crc = CRC32C(header ‖ the crc of each section, as
 *                 its 4 bytes, in order ‖ trailer bytes 0..15)
 *       20     4  reserved: 0
 *
 * CHECKS
 *
 * A reader rejects the file at the first of: wrong magic, version or flags,
 * header_crc mismatch, header not matching the file name, a section whose
 * length runs past the end of the file (room left for its crc and a
 * trailer), a section crc mismatch, more than SNAP_SECTIONS_MAX sections,
 * a trailer whose count, file_bytes, file_crc or reserved field is wrong,
 * bytes after the trailer, or the end of the file before the trailer
 * ("truncated"). So a file cut anywhere, or with any byte changed, fails:
 * a changed payload or section header breaks its section's crc (a changed
 * length usually runs off the end first), a changed section crc breaks
 * file_crc, a changed trailer breaks file_crc or its own checks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "snap.h"
#include "crc32c.h"
#include "fileio.h"
#include "le.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_MAGIC         "CETCDSNP"
#define SNAP_VERSION       1u
#define SNAP_HDR_BYTES     40u
#define SNAP_HDR_CRC_BYTES 32u /* header bytes covered by header_crc */
#define SEC_HDR_BYTES      12u
#define SEC_CRC_BYTES      4u
#define TRAILER_BYTES      24u
#define TRAILER_CRC_BYTES  16u /* trailer bytes covered by file_crc */
#define SNAP_SUFFIX        ".snap"
#define SNAP_TMP_SUFFIX    ".tmp"
#define SNAP_ERR_BYTES     (PATH_MAX + 256)
#define SNAP_FILES_MAX     65536u

_Static_assert(SNAP_NAME_BYTES == 16 + 1 + 16 + sizeof(SNAP_SUFFIX) - 1, "name length");
_Static_assert(SNAP_BUF_BYTES >= SNAP_HDR_BYTES + SEC_HDR_BYTES + TRAILER_BYTES, "buffer size");

/* Writer. All fields: the writing thread only. */
struct snap_writer {
    int dir_fd;
    int fd;
    uint8_t *buf;      /* SNAP_BUF_BYTES */
    size_t len;        /* bytes in buf */
    uint64_t buf_off;  /* file offset of buf[0] */
    int in_section;    /* between section_begin and section_end */
    uint64_t sec_off;  /* file offset of the open section's header */
    uint64_t sec_len;  /* payload bytes so far */
    uint32_t sec_type; /* its type */
    uint32_t sec_crc;  /* CRC32C of its payload so far */
    uint32_t sections; /* sections ended */
    uint32_t file_crc; /* header ‖ section crcs so far */
    int failed;        /* sticky */
    char name[SNAP_NAME_BYTES + 1];
    char tmp[SNAP_NAME_BYTES + sizeof(SNAP_TMP_SUFFIX)];
    char dir[PATH_MAX];
    char err[SNAP_ERR_BYTES];
};

enum sec_state { SEC_NONE, SEC_OPEN, SEC_CLOSED };

/* Reader. All fields: the reading thread only. */
struct snap_reader {
    int fd;
    uint8_t *buf;    /* SNAP_BUF_BYTES */
    size_t pos, len; /* unread bytes are buf[pos, len) */
    uint64_t off;    /* file offset of buf[pos] */
    uint64_t size;   /* file size at open */
    uint64_t term;   /* from the header */
    uint64_t index;
    int state; /* enum sec_state */
    uint8_t sec_hdr[SEC_HDR_BYTES];
    uint64_t remaining; /* payload bytes of the open section not read */
    uint32_t sec_crc;
    uint32_t sections;
    uint32_t file_crc;
    int done;   /* trailer read and checked */
    int failed; /* sticky */
    char path[PATH_MAX];
    char err[SNAP_ERR_BYTES];
};

/* ---- small helpers ---------------------------------------------------- */

void snap_file_name(char out[SNAP_NAME_BYTES + 1], uint64_t term, uint64_t index)
{
    snprintf(out, SNAP_NAME_BYTES + 1, "%016" PRIx64 "-%016" PRIx64 SNAP_SUFFIX, term, index);
}

/* Parses a snapshot name followed by exactly `suffix` ("" or ".tmp"). */
static int snap_name_parse(const char *s, const char *suffix, uint64_t *term, uint64_t *index)
{
    if (strlen(s) != SNAP_NAME_BYTES + strlen(suffix) || s[16] != '-' ||
        memcmp(s + 33, SNAP_SUFFIX, sizeof(SNAP_SUFFIX) - 1) != 0 ||
        strcmp(s + SNAP_NAME_BYTES, suffix) != 0)
        return -1;
    return fio_hex16(s, term) == 0 && fio_hex16(s + 17, index) == 0 ? 0 : -1;
}

static void header_encode(uint8_t h[SNAP_HDR_BYTES], uint64_t term, uint64_t index)
{
    memset(h, 0, SNAP_HDR_BYTES);
    memcpy(h, SNAP_MAGIC, 8);
    put_le32(h + 8, SNAP_VERSION);
    put_le64(h + 16, term);
    put_le64(h + 24, index);
    put_le32(h + 32, crc32c_extend(0, h, SNAP_HDR_CRC_BYTES));
}

/* ---- directories ------------------------------------------------------ */

static int fsync_path(const char *path, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rv = fd < 0 ? -1 : fsync(fd);

    if (rv != 0)
        fio_seterr(err, err_len, "fsync %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return rv;
}

/* fsyncs the directory holding `path` (after creating an entry in it). */
static int fsync_parent(const char *path, char *err, size_t err_len)
{
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : (size_t)(slash - path);

    if (slash == NULL)
        return fsync_path(".", err, err_len);
    if (n == 0)
        return fsync_path("/", err, err_len);
    memcpy(parent, path, n);
    parent[n] = '\0';
    return fsync_path(parent, err, err_len);
}

/* mkdir -p with mode 0700; each directory made is fsynced in its parent. */
static int mkdir_p(const char *path, char *err, size_t err_len)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf)) {
        fio_seterr(err, err_len, "bad snapshot directory path");
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        int rv = 0;

        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0700) == 0)
            rv = fsync_parent(buf, err, err_len);
        else if (errno != EEXIST) {
            fio_seterr(err, err_len, "mkdir %s: %s", buf, strerror(errno));
            rv = -1;
        }
        buf[i] = path[i];
        if (rv != 0)
            return -1;
    }
    return 0;
}

static int file_cmp_newest_first(const void *a, const void *b)
{
    const struct snap_file *x = a, *y = b;

    if (x->term != y->term)
        return x->term > y->term ? -1 : 1;
    if (x->index != y->index)
        return x->index > y->index ? -1 : 1;
    return 0;
}

/* Lists snapshot files (sorted newest first); removes *.tmp files if
 * `dir_fd` >= 0. */
static int list_dir(const char *dir, int dir_fd, struct snap_file **out, size_t *n, int *removed,
                    char *err, size_t err_len)
{
    DIR *d = opendir(dir);
    struct snap_file *v = NULL, f;
    size_t cap = 0, count = 0;
    struct dirent *de;

    *out = NULL;
    *n = 0;
    if (d == NULL) {
        fio_seterr(err, err_len, "%s: %s", dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        if (dir_fd >= 0 && snap_name_parse(de->d_name, SNAP_TMP_SUFFIX, &f.term, &f.index) == 0) {
            if (unlinkat(dir_fd, de->d_name, 0) == 0)
                (*removed)++;
            continue;
        }
        if (snap_name_parse(de->d_name, "", &f.term, &f.index) != 0)
            continue;
        if (count == cap) {
            struct snap_file *nv;

            cap = cap ? cap * 2 : 16;
            nv = cap <= SNAP_FILES_MAX ? realloc(v, cap * sizeof(*v)) : NULL;
            if (nv == NULL) {
                closedir(d);
                free(v);
                fio_seterr(err, err_len, "%s: too many snapshot files", dir);
                return -1;
            }
            v = nv;
        }
        memcpy(f.name, de->d_name, SNAP_NAME_BYTES + 1);
        v[count++] = f;
    }
    closedir(d);
    if (count > 1)
        qsort(v, count, sizeof(*v), file_cmp_newest_first);
    *out = v;
    *n = count;
    return 0;
}

int snap_list(const char *dir, struct snap_file **out, size_t *n, char *err, size_t err_len)
{
    return list_dir(dir, -1, out, n, NULL, err, err_len);
}

static int open_dir(const char *dir, char *err, size_t err_len)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        fio_seterr(err, err_len, "%s: %s", dir, strerror(errno));
    return fd;
}

int snap_purge(const char *dir, size_t keep, char *err, size_t err_len)
{
    struct snap_file *v;
    size_t n;
    int removed = 0, rv = 0;
    int dir_fd = open_dir(dir, err, err_len);

    if (dir_fd < 0)
        return -1;
    if (list_dir(dir, dir_fd, &v, &n, &removed, err, err_len) != 0) {
        close(dir_fd);
        return -1;
    }
    for (size_t i = keep; i < n; i++) {
        if (unlinkat(dir_fd, v[i].name, 0) != 0) {
            fio_seterr(err, err_len, "unlink %s/%s: %s", dir, v[i].name, strerror(errno));
            rv = -1;
            break;
        }
        removed++;
    }
    free(v);
    if (removed > 0 && fsync(dir_fd) != 0 && rv == 0) {
        fio_seterr(err, err_len, "fsync %s: %s", dir, strerror(errno));
        rv = -1;
    }
    close(dir_fd);
    return rv == 0 ? removed : -1;
}

int snap_dir_prepare(const char *dir, char *err, size_t err_len)
{
    struct snap_file *v;
    size_t n;
    int removed = 0, dir_fd, rv;

    if (mkdir_p(dir, err, err_len) != 0)
        return -1;
    dir_fd = open_dir(dir, err, err_len);
    if (dir_fd < 0)
        return -1;
    rv = list_dir(dir, dir_fd, &v, &n, &removed, err, err_len);
    if (rv == 0)
        free(v);
    if (rv == 0 && removed > 0 && fsync(dir_fd) != 0) {
        fio_seterr(err, err_len, "fsync %s: %s", dir, strerror(errno));
        rv = -1;
    }
    close(dir_fd);
    return rv;
}

/* ---- writer ----------------------------------------------------------- */

static int wfail(struct snap_writer *w, const char *what)
{
    if (!w->failed)
        snprintf(w->err, sizeof(w->err), "%s %s/%s: %s", what, w->dir, w->tmp, strerror(errno));
    w->failed = 1;
    return -1;
}

static int wflush(struct snap_writer *w)
{
    if (w->len == 0)
        return 0;
    if (fio_pwrite_all(w->fd, w->buf, w->len, w->buf_off) != 0)
        return wfail(w, "write");
    w->buf_off += w->len;
    w->len = 0;
    return 0;
}

/* Appends bytes in file order, through the buffer; a piece at least as
 * large as the buffer goes straight to the file. */
static int wput(struct snap_writer *w, const void *p, size_t n)
{
    if (w->failed)
        return -1;
    if (n > SNAP_BUF_BYTES - w->len && wflush(w) != 0)
        return -1;
    if (n >= SNAP_BUF_BYTES) {
        if (fio_pwrite_all(w->fd, p, n, w->buf_off) != 0)
            return wfail(w, "write");
        w->buf_off += n;
        return 0;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return 0;
}

/* Writes bytes at an earlier offset (a section header once its length is
 * known): into the buffer if they are still there, else to the file. */
static int wpatch(struct snap_writer *w, uint64_t off, const void *p, size_t n)
{
    if (off >= w->buf_off) {
        assert(off + n <= w->buf_off + w->len);
        memcpy(w->buf + (off - w->buf_off), p, n);
        return 0;
    }
    if (off + n > w->buf_off && wflush(w) != 0)
        return -1;
    if (fio_pwrite_all(w->fd, p, n, off) != 0)
        return wfail(w, "write");
    return 0;
}

int snap_write_begin(struct snap_writer **out, const char *dir, uint64_t term, uint64_t index,
                     char *err, size_t err_len)
{
    struct snap_writer *w = calloc(1, sizeof(*w));
    uint8_t h[SNAP_HDR_BYTES];

    if (w == NULL || (w->buf = malloc(SNAP_BUF_BYTES)) == NULL) {
        free(w);
        fio_seterr(err, err_len, "out of memory");
        return -1;
    }
    w->fd = -1;
    if (strlen(dir) >= sizeof(w->dir)) {
        fio_seterr(err, err_len, "%s: path too long", dir);
        goto fail;
    }
    strcpy(w->dir, dir);
    snap_file_name(w->name, term, index);
    snprintf(w->tmp, sizeof(w->tmp), "%s" SNAP_TMP_SUFFIX, w->name);
    w->dir_fd = open_dir(dir, err, err_len);
    if (w->dir_fd < 0)
        goto fail;
    w->fd = openat(w->dir_fd, w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        fio_seterr(err, err_len, "%s/%s: %s", dir, w->tmp, strerror(errno));
        close(w->dir_fd);
        goto fail;
    }
    header_encode(h, term, index);
    memcpy(w->buf, h, sizeof(h));
    w->len = sizeof(h);
    w->file_crc = crc32c_extend(0, h, sizeof(h));
    *out = w;
    return 0;
fail:
    free(w->buf);
    free(w);
    return -1;
}

int snap_write_section_begin(struct snap_writer *w, uint32_t type)
{
    uint8_t h[SEC_HDR_BYTES] = {0};

    assert(!w->in_section && type != 0);
    if (w->failed)
        return -1;
    if (w->sections >= SNAP_SECTIONS_MAX) {
        snprintf(w->err, sizeof(w->err), "more than %u sections", SNAP_SECTIONS_MAX);
        w->failed = 1;
        return -1;
    }
    w->sec_off = w->buf_off + w->len;
    w->sec_type = type;
    w->sec_len = 0;
    w->sec_crc = 0;
    w->in_section = 1;
    return wput(w, h, sizeof(h)); /* filled in at the end */
}

int snap_write(struct snap_writer *w, const void *buf, size_t len)
{
    assert(w->in_section);
    if (w->failed)
        return -1;
    w->sec_crc = crc32c_extend(w->sec_crc, buf, len);
    w->sec_len += len;
    return wput(w, buf, len);
}

int snap_write_section_end(struct snap_writer *w)
{
    uint8_t h[SEC_HDR_BYTES], c[SEC_CRC_BYTES];
    uint32_t crc;

    assert(w->in_section);
    w->in_section = 0;
    if (w->failed)
        return -1;
    put_le32(h, w->sec_type);
    put_le64(h + 4, w->sec_len);
    crc = crc32c_extend(w->sec_crc, h, sizeof(h));
    put_le32(c, crc);
    if (wpatch(w, w->sec_off, h, sizeof(h)) != 0 || wput(w, c, sizeof(c)) != 0)
        return -1;
    w->file_crc = crc32c_extend(w->file_crc, c, sizeof(c));
    w->sections++;
    return 0;
}

static void writer_free(struct snap_writer *w, int unlink_tmp)
{
    if (w->fd >= 0)
        close(w->fd);
    if (unlink_tmp)
        unlinkat(w->dir_fd, w->tmp, 0);
    close(w->dir_fd);
    free(w->buf);
    free(w);
}

int snap_write_commit(struct snap_writer *w, uint64_t *bytes, char *err, size_t err_len)
{
    uint8_t t[TRAILER_BYTES] = {0};
    uint64_t size = w->buf_off + w->len + TRAILER_BYTES;

    assert(!w->in_section);
    put_le32(t + 4, w->sections);
    put_le64(t + 8, size);
    put_le32(t + 16, crc32c_extend(w->file_crc, t, TRAILER_CRC_BYTES));
    if (wput(w, t, sizeof(t)) != 0 || wflush(w) != 0)
        goto fail;
    assert(w->buf_off == size);
    if (fsync(w->fd) != 0) {
        wfail(w, "fsync");
        goto fail;
    }
    if (renameat(w->dir_fd, w->tmp, w->dir_fd, w->name) != 0) {
        wfail(w, "rename");
        goto fail;
    }
    if (fsync(w->dir_fd) != 0) {
        fio_seterr(err, err_len, "fsync %s: %s", w->dir, strerror(errno));
        writer_free(w, 0);
        return -1;
    }
    if (bytes != NULL)
        *bytes = size;
    writer_free(w, 0);
    return 0;
fail:
    fio_seterr(err, err_len, "%s", w->err);
    writer_free(w, 1);
    return -1;
}

void snap_write_abort(struct snap_writer *w)
{
    if (w != NULL)
        writer_free(w, 1);
}

const char *snap_write_error(const struct snap_writer *w)
{
    return w->failed ? w->err : "";
}

/* ---- reader ----------------------------------------------------------- */

static int rfail(struct snap_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int rfail(struct snap_reader *r, const char *fmt, ...)
{
    va_list ap;

    if (!r->failed) {
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof(r->err), fmt, ap);
        va_end(ap);
    }
    r->failed = 1;
    return -1;
}

/* Makes at least one unread byte available; 0, or -1 at the end of the
 * file or on an error. */
static int rfill(struct snap_reader *r)
{
    ssize_t n;

    if (r->pos < r->len)
        return 0;
    r->pos = r->len = 0;
    do
        n = read(r->fd, r->buf, SNAP_BUF_BYTES);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return rfail(r, "read at offset %" PRIu64 ": %s", r->off, strerror(errno));
    if (n == 0)
        return rfail(r, "truncated at offset %" PRIu64 " (file size %" PRIu64 ")", r->off, r->size);
    r->len = (size_t)n;
    return 0;
}

/* Takes up to n buffered bytes (at least 1); returns where they are. */
static const uint8_t *rtake(struct snap_reader *r, size_t n, size_t *got)
{
    const uint8_t *p;

    if (rfill(r) != 0)
        return NULL;
    *got = r->len - r->pos < n ? r->len - r->pos : n;
    p = r->buf + r->pos;
    r->pos += *got;
    r->off += *got;
    return p;
}

/* Reads exactly n bytes of the file into dst. */
static int rget(struct snap_reader *r, void *dst, size_t n)
{
    uint8_t *d = dst;

    while (n > 0) {
        size_t got;
        const uint8_t *p = rtake(r, n, &got);

        if (p == NULL)
            return -1;
        memcpy(d, p, got);
        d += got;
        n -= got;
    }
    return 0;
}

static int header_check(struct snap_reader *r, const uint8_t h[SNAP_HDR_BYTES])
{
    const char *base = strrchr(r->path, '/');
    uint64_t term, index;

    if (memcmp(h, SNAP_MAGIC, 8) != 0)
        return rfail(r, "not a snapshot file (bad magic)");
    if (get_le32(h + 32) != crc32c_extend(0, h, SNAP_HDR_CRC_BYTES))
        return rfail(r, "header crc mismatch");
    if (get_le32(h + 8) != SNAP_VERSION)
        return rfail(r, "unknown format version %" PRIu32, get_le32(h + 8));
    if (get_le32(h + 12) != 0 || get_le32(h + 36) != 0)
        return rfail(r, "unknown header flags");
    r->term = get_le64(h + 16);
    r->index = get_le64(h + 24);
    base = base != NULL ? base + 1 : r->path;
    if (snap_name_parse(base, "", &term, &index) == 0 && (term != r->term || index != r->index))
        return rfail(r, "header (term %" PRIu64 ", index %" PRIu64 ") does not match the file name",
                     r->term, r->index);
    return 0;
}

int snap_read_open(struct snap_reader **out, const char *path, char *err, size_t err_len)
{
    struct snap_reader *r = calloc(1, sizeof(*r));
    uint8_t h[SNAP_HDR_BYTES];
    struct stat st;

    if (r == NULL || (r->buf = malloc(SNAP_BUF_BYTES)) == NULL) {
        free(r);
        fio_seterr(err, err_len, "out of memory");
        return -1;
    }
    snprintf(r->path, sizeof(r->path), "%s", path);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0 || fstat(r->fd, &st) != 0) {
        fio_seterr(err, err_len, "%s", strerror(errno));
        snap_read_close(r);
        return -1;
    }
    r->size = (uint64_t)st.st_size;
    if (rget(r, h, sizeof(h)) != 0 || header_check(r, h) != 0) {
        fio_seterr(err, err_len, "%s", r->err);
        snap_read_close(r);
        return -1;
    }
    r->file_crc = crc32c_extend(0, h, sizeof(h));
    *out = r;
    return 0;
}

void snap_read_close(struct snap_reader *r)
{
    if (r == NULL)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    free(r);
}

void snap_read_point(const struct snap_reader *r, uint64_t *term, uint64_t *index)
{
    *term = r->term;
    *index = r->index;
}

const char *snap_read_error(const struct snap_reader *r)
{
    return r->failed ? r->err : "";
}

/* Payload done: reads and checks the section's crc. */
static int section_close(struct snap_reader *r)
{
    uint8_t c[SEC_CRC_BYTES];
    uint64_t at = r->off;

    assert(r->state == SEC_OPEN && r->remaining == 0);
    if (rget(r, c, sizeof(c)) != 0)
        return -1;
    if (get_le32(c) != crc32c_extend(r->sec_crc, r->sec_hdr, SEC_HDR_BYTES))
        return rfail(r, "section %" PRIu32 ": crc mismatch (crc at offset %" PRIu64 ")",
                     r->sections + 1, at);
    r->file_crc = crc32c_extend(r->file_crc, c, sizeof(c));
    r->sections++;
    r->state = SEC_CLOSED;
    return 0;
}

ssize_t snap_read(struct snap_reader *r, void *buf, size_t cap)
{
    const uint8_t *p;
    size_t got;

    assert(cap > 0 && r->state != SEC_NONE);
    if (r->failed)
        return -1;
    if (r->state == SEC_CLOSED)
        return 0;
    if (r->remaining == 0)
        return section_close(r) == 0 ? 0 : -1;
    if (cap > r->remaining)
        cap = (size_t)r->remaining;
    if (cap > SSIZE_MAX)
        cap = SSIZE_MAX;
    p = rtake(r, cap, &got);
    if (p == NULL)
        return -1;
    memcpy(buf, p, got);
    r->sec_crc = crc32c_extend(r->sec_crc, p, got);
    r->remaining -= got;
    return (ssize_t)got;
}

int snap_read_full(struct snap_reader *r, void *buf, size_t len)
{
    uint8_t *d = buf;

    while (len > 0) {
        ssize_t n = snap_read(r, d, len);

        if (n < 0)
            return -1;
        if (n == 0)
            return rfail(r, "section %" PRIu32 " ends early", r->sections);
        d += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Skips (checking) what is left of the open section. */
static int section_skip(struct snap_reader *r)
{
    while (r->remaining > 0) {
        size_t got;
        const uint8_t *p =
            rtake(r, r->remaining < SIZE_MAX ? (size_t)r->remaining : SIZE_MAX, &got);

        if (p == NULL)
            return -1;
        r->sec_crc = crc32c_extend(r->sec_crc, p, got);
        r->remaining -= got;
    }
    return section_close(r);
}

static int trailer_check(struct snap_reader *r)
{
    uint8_t t[TRAILER_BYTES] = {0};
    uint64_t at = r->off - 4;

    if (rget(r, t + 4, sizeof(t) - 4) != 0)
        return -1;
    if (get_le32(t + 16) != crc32c_extend(r->file_crc, t, TRAILER_CRC_BYTES))
        return rfail(r, "trailer at offset %" PRIu64 ": file crc mismatch", at);
    if (get_le32(t + 4) != r->sections)
        return rfail(r, "trailer at offset %" PRIu64 ": wrong section count", at);
    if (get_le32(t + 20) != 0)
        return rfail(r, "trailer at offset %" PRIu64 ": reserved field not zero", at);
    if (get_le64(t + 8) != r->size || r->off != r->size)
        return rfail(
            r, "trailer at offset %" PRIu64 ": file is %" PRIu64 " bytes, trailer says %" PRIu64,
            at, r->size, get_le64(t + 8));
    r->done = 1;
    return 0;
}

int snap_read_section(struct snap_reader *r, uint32_t *type, uint64_t *len)
{
    uint64_t at, room;

    if (r->failed)
        return -1;
    if (r->done)
        return 0;
    if (r->state == SEC_OPEN && section_skip(r) != 0)
        return -1;
    r->state = SEC_NONE;
    at = r->off;
    if (rget(r, r->sec_hdr, 4) != 0)
        return -1;
    if (get_le32(r->sec_hdr) == 0)
        return trailer_check(r) == 0 ? 0 : -1;
    if (r->sections >= SNAP_SECTIONS_MAX)
        return rfail(r, "more than %u sections", SNAP_SECTIONS_MAX);
    if (rget(r, r->sec_hdr + 4, 8) != 0)
        return -1;
    *type = get_le32(r->sec_hdr);
    *len = get_le64(r->sec_hdr + 4);
    room = r->size - r->off;
    if (room < SEC_CRC_BYTES + TRAILER_BYTES || *len > room - SEC_CRC_BYTES - TRAILER_BYTES)
        return rfail(r,
                     "section %" PRIu32 " at offset %" PRIu64 ": length %" PRIu64
                     " runs past the end of the file",
                     r->sections + 1, at, *len);
    r->remaining = *len;
    r->sec_crc = 0;
    r->state = SEC_OPEN;
    return 1;
}

int snap_validate(const char *path, uint64_t *term, uint64_t *index, char *err, size_t err_len)
{
    struct snap_reader *r;
    uint32_t type;
    uint64_t len;
    int rv;

    if (snap_read_open(&r, path, err, err_len) != 0)
        return -1;
    while ((rv = snap_read_section(r, &type, &len)) == 1)
        ;
    if (rv == 0)
        snap_read_point(r, term, index);
    else
        fio_seterr(err, err_len, "%s", r->err);
    snap_read_close(r);
    return rv == 0 ? 0 : -1;
}
