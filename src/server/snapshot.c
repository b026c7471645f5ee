/*
 * snapshot.c — what goes into a snapshot file (src/raft/snap.c owns the
 * file format) and the background thread that writes it; loading the
 * newest valid one at start-up.
 *
 * Threads:
 *  - The core calls snapshot_start(), snapshot_poll(), snapshot_busy().
 *  - One snapshot thread per struct snapshot (created in snapshot_init(),
 *    joined in snapshot_fini()) does all the writing, through an MVCC
 *    reader it registers itself, on first use.
 *  - snapshot_load() runs at start-up on the thread that will be the MVCC
 *    writer (or before that thread exists), before any reader reads.
 * Fields are grouped by who may touch them (see struct snapshot).
 *
 * PINNING THE VIEW. The snapshot must be the state as of snapshot_start()
 * (the core has applied exactly up to the point it passes), but the core
 * cannot enter a read section on the snapshot thread's behalf, and the
 * thread, if left to itself, would pin whatever state is published when
 * it gets round to it. So snapshot_start() hands the point over and
 * blocks until the thread has called mvcc_read_begin() and said so (a
 * mutex + condvar handshake: one thread wake-up, microseconds). The core
 * is the only MVCC writer and it is blocked meanwhile, so the state the
 * thread pins is exactly the one published when snapshot_start() was
 * called. As a check, the revision mvcc_dump() reports for the pinned
 * view must equal mvcc_current_revision() read by the core in
 * snapshot_start(); if not, the snapshot is failed. The core then goes on
 * applying while the thread walks its pinned view and writes; memory only
 * that view still sees is freed once the thread leaves its read section.
 *
 * SECTIONS (types, in file order)
 *
 *   2 MVCC: every stored version, as mvcc_dump() gives them (key order,
 *     then revision order), one MVCC record each, back to back.
 *   1 META, 40 bytes (little-endian), written last because mvcc_dump()
 *     reports the revisions it walked:
 *       OFFSET  SIZE  MEANING
 *            0     8  index: last Raft entry applied (= the file header's)
 *            8     8  term: its term (= the file header's)
 *           16     8  revision: the store's current revision (int64)
 *           24     8  compact revision (int64)
 *           32     8  alarms: bit (1 << AlarmType) per active alarm of
 *                     this member (replicated state, as the KV data)
 *   3 CLUSTER (optional, at most SNAPSHOT_CLUSTER_BYTES_MAX): the cluster's
 *     membership, in the core's encoding (core.c documents it).
 *   4 LEASES (optional, at most SNAPSHOT_LEASES_BYTES_MAX): the lease table,
 *     as lease_encode() writes it (src/lease/lease_codec.c documents it;
 *     it carries its own CRC). Files written before leases have none.
 *   MVCC and META must occur exactly once, CLUSTER and LEASES at most
 *   once; any other type fails the load.
 *
 * MVCC RECORD (uvarint = unsigned LEB128, at most 10 bytes; int64 fields
 * are stored as their uint64 two's-complement value)
 *
 *   uvarint  body_len: bytes of the rest of the record, <= RECORD_BYTES_MAX
 *   uvarint  key_len (>= 1), then key_len bytes of key
 *   uvarint  value_len, then value_len bytes of value (0 for a tombstone)
 *   uvarint  create_revision (live: 1..mod_revision)
 *   uvarint  mod_revision (>= 1)
 *   uvarint  sub: sub-revision within mod_revision (<= UINT32_MAX)
 *   uvarint  version (live: >= 1; 0 for a tombstone)
 *   uvarint  lease (0 = none)
 *   u8       flags: bit 0 = tombstone; the other bits 0
 *
 *   +----------+---------+-----+-----------+-------+--------+-----+-----+---------+-------+-------+
 *   | body_len | key_len | key | value_len | value | create | mod | sub | version | lease | flags |
 *   +----------+---------+-----+-----------+-------+--------+-----+-----+---------+-------+-------+
 *
 * The fields must fill body_len exactly. Records must come in mvcc_dump()
 * order: keys ascending bytewise, and for one key (mod_revision, sub)
 * ascending; no mod_revision above META's revision.
 *
 * LOADING is two passes over the chosen file: the first reads and checks
 * everything (every CRC of the file, every record and its order) without
 * touching the store, so that a damaged file can still be skipped for an
 * older one; the second feeds the records to mvcc_restore_version(). A
 * failure in the second pass (the file changed under us, out of memory)
 * leaves the store half restored and fails the load.
 */
#include "snapshot.h"

#include "mvcc.h"
#include "snap.h"
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SEC_META           1u
#define SEC_MVCC           2u
#define SEC_CLUSTER        3u
#define SEC_LEASES         4u
#define META_BYTES         40u
#define VARINT_BYTES_MAX   10u
#define REC_TAIL_BYTES_MAX (5 * VARINT_BYTES_MAX + 1)
#define REC_FLAG_TOMBSTONE 0x01u
/* A version's key and value arrived in one Raft entry: the record fits. */
#define RECORD_BYTES_MAX   ((uint64_t)WAL_ENTRY_BYTES_MAX + 2 * VARINT_BYTES_MAX + REC_TAIL_BYTES_MAX)
#define REC_SMALL_BYTES    4096u /* records up to this size take one snap_write() */
#define DEC_BUF_MIN_BYTES  (256u << 10)
#define SNAPSHOT_ERR_BYTES (PATH_MAX + 512)

enum job {
    JOB_IDLE,      /* nothing asked */
    JOB_REQUESTED, /* the core asked and waits for the pin */
    JOB_RUNNING,   /* pinned; writing */
    JOB_DONE,      /* durable; waiting for snapshot_poll() */
    JOB_FAILED,    /* failed; waiting for snapshot_poll() / the handshake */
};

struct snapshot {
    /* Set by snapshot_init(), read-only afterwards (any thread). */
    char dir[PATH_MAX]; /* data-dir/member/snap */
    struct mvcc_store *store;
    pthread_t thread;

    /* Guarded by mu; cv signals every change of job or stop. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum job job;
    bool stop;
    struct snapshot_point want; /* the point asked for (its cluster: a copy we own) */
    int64_t want_rev;           /* the store's revision at that point */

    /* The snapshot thread only. */
    struct mvcc_reader *reader;

    /* The core only. */
    bool busy;

    /* Any thread, atomically. */
    uint64_t size_bytes;
};

/* What the META section says. */
struct meta {
    uint64_t index;
    uint64_t term;
    int64_t rev;
    int64_t compact_rev;
    uint64_t alarms;
};

static void seterr(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || err_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static size_t uvarint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t uvarint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Decodes a uvarint from p[*off, end); -1 if it is cut off or too long. */
static int uvarint_get(const uint8_t *p, size_t end, size_t *off, uint64_t *out)
{
    uint64_t v = 0;

    for (unsigned shift = 0, i = 0; i < VARINT_BYTES_MAX && *off < end; i++, shift += 7) {
        uint8_t b = p[(*off)++];

        if (i == VARINT_BYTES_MAX - 1 && b > 1)
            return -1; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* ---- writing (the snapshot thread) ------------------------------------ */

struct enc {
    struct snap_writer *w;
    uint64_t records;
    const char *why; /* set when a record cannot be written */
};

static size_t rec_tail(uint8_t *p, const struct mvcc_version *v)
{
    size_t n = 0;

    n += uvarint_put(p + n, (uint64_t)v->create_revision);
    n += uvarint_put(p + n, (uint64_t)v->mod_revision);
    n += uvarint_put(p + n, (uint64_t)v->sub);
    n += uvarint_put(p + n, (uint64_t)v->version);
    n += uvarint_put(p + n, (uint64_t)v->lease);
    p[n++] = v->tombstone ? REC_FLAG_TOMBSTONE : 0;
    return n;
}

/* mvcc_dump() callback: one MVCC record. */
static int enc_version(void *arg, const struct mvcc_version *v)
{
    struct enc *e = arg;
    uint8_t small[REC_SMALL_BYTES], head[2 * VARINT_BYTES_MAX], tail[REC_TAIL_BYTES_MAX];
    size_t tail_len = rec_tail(tail, v), h = 0;
    uint64_t body =
        uvarint_len(v->key_len) + v->key_len + uvarint_len(v->value_len) + v->value_len + tail_len;
    int rv;

    if (v->key_len == 0 || body > RECORD_BYTES_MAX) {
        e->why = v->key_len == 0 ? "a version with an empty key" : "a version too large";
        return -1;
    }
    e->records++;
    if (body + VARINT_BYTES_MAX <= sizeof(small)) {
        h = uvarint_put(small, body);
        h += uvarint_put(small + h, v->key_len);
        memcpy(small + h, v->key, v->key_len);
        h += v->key_len;
        h += uvarint_put(small + h, v->value_len);
        if (v->value_len > 0)
            memcpy(small + h, v->value, v->value_len);
        h += v->value_len;
        memcpy(small + h, tail, tail_len);
        return snap_write(e->w, small, h + tail_len);
    }
    h = uvarint_put(head, body);
    h += uvarint_put(head + h, v->key_len);
    rv = snap_write(e->w, head, h);
    if (rv == 0)
        rv = snap_write(e->w, v->key, v->key_len);
    h = uvarint_put(head, v->value_len);
    if (rv == 0)
        rv = snap_write(e->w, head, h);
    if (rv == 0 && v->value_len > 0)
        rv = snap_write(e->w, v->value, v->value_len);
    if (rv == 0)
        rv = snap_write(e->w, tail, tail_len);
    return rv;
}

static int write_meta(struct snap_writer *w, const struct meta *m)
{
    uint8_t p[META_BYTES];

    put_le64(p, m->index);
    put_le64(p + 8, m->term);
    put_le64(p + 16, (uint64_t)m->rev);
    put_le64(p + 24, (uint64_t)m->compact_rev);
    put_le64(p + 32, m->alarms);
    if (snap_write_section_begin(w, SEC_META) != 0 || snap_write(w, p, sizeof(p)) != 0)
        return -1;
    return snap_write_section_end(w);
}

static int write_blob(struct snap_writer *w, uint32_t type, const uint8_t *p, size_t len)
{
    if (len == 0)
        return 0;
    if (snap_write_section_begin(w, type) != 0 || snap_write(w, p, len) != 0)
        return -1;
    return snap_write_section_end(w);
}

/* Walks the pinned view into the MVCC section, then leaves the read
 * section (as early as possible: it holds back memory reclamation). */
static int write_mvcc(struct snapshot *s, struct snap_writer *w, struct meta *m, char *err,
                      size_t err_len)
{
    struct enc e = {.w = w};
    int rv = snap_write_section_begin(w, SEC_MVCC);

    if (rv == 0)
        rv = mvcc_dump(s->reader, &m->rev, &m->compact_rev, enc_version, &e);
    mvcc_read_end(s->reader);
    if (rv == 0)
        rv = snap_write_section_end(w);
    if (rv == 0)
        return 0;
    if (e.why != NULL)
        seterr(err, err_len, "cannot write %s", e.why);
    else if (snap_write_error(w)[0] != '\0')
        seterr(err, err_len, "%s", snap_write_error(w));
    else
        seterr(err, err_len, "reading the MVCC state failed (%d)", rv);
    return -1;
}

/* Writes the snapshot of the view pinned by the caller, and leaves the
 * read section. */
static int write_snapshot(struct snapshot *s, const struct snapshot_point *pt, int64_t want_rev,
                          uint64_t *bytes, char *err, size_t err_len)
{
    struct meta m = {.index = pt->index, .term = pt->term, .alarms = pt->alarms};
    struct snap_writer *w;

    if (snap_write_begin(&w, s->dir, pt->term, pt->index, err, err_len) != 0) {
        mvcc_read_end(s->reader);
        return -1;
    }
    if (write_mvcc(s, w, &m, err, err_len) != 0)
        goto fail;
    if (m.rev != want_rev) {
        seterr(err, err_len, "pinned view is at revision %" PRId64 ", the core asked for %" PRId64,
               m.rev, want_rev);
        goto fail;
    }
    if (write_meta(w, &m) != 0 || write_blob(w, SEC_CLUSTER, pt->cluster, pt->cluster_len) != 0 ||
        write_blob(w, SEC_LEASES, pt->leases, pt->leases_len) != 0) {
        seterr(err, err_len, "%s", snap_write_error(w));
        goto fail;
    }
    if (snap_write_commit(w, bytes, err, err_len) != 0)
        return -1;
    /* The new snapshot is durable whatever happens to the old ones. */
    if (snap_purge(s->dir, SNAP_KEEP_DEFAULT, err, err_len) < 0)
        fprintf(stderr, "cetcd: snapshot: removing old snapshots: %s\n", err);
    return 0;
fail:
    snap_write_abort(w);
    return -1;
}

/* Waits for a request; pins the view and tells the core. Returns false
 * when asked to stop. */
static bool wait_and_pin(struct snapshot *s, struct snapshot_point *pt, int64_t *want_rev)
{
    pthread_mutex_lock(&s->mu);
    while (!s->stop && s->job != JOB_REQUESTED)
        pthread_cond_wait(&s->cv, &s->mu);
    if (s->job != JOB_REQUESTED) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    *pt = s->want;
    *want_rev = s->want_rev;
    if (s->reader == NULL)
        s->reader = mvcc_reader_register(s->store);
    if (s->reader != NULL) {
        mvcc_read_begin(s->reader);
        s->job = JOB_RUNNING;
    } else {
        fprintf(stderr, "cetcd: snapshot: cannot register an MVCC reader (out of memory)\n");
        s->job = JOB_FAILED;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return true;
}

static void *snapshot_thread(void *arg)
{
    struct snapshot *s = arg;
    struct snapshot_point pt;
    char err[SNAPSHOT_ERR_BYTES];
    int64_t want_rev;

    while (wait_and_pin(s, &pt, &want_rev)) {
        uint64_t bytes = 0;
        int rv;

        if (s->reader == NULL)
            continue; /* reported; the core saw JOB_FAILED */
        rv = write_snapshot(s, &pt, want_rev, &bytes, err, sizeof(err));
        if (rv != 0)
            fprintf(stderr, "cetcd: snapshot at index %" PRIu64 ": %s\n", pt.index, err);
        else
            __atomic_store_n(&s->size_bytes, bytes, __ATOMIC_RELAXED);
        pthread_mutex_lock(&s->mu);
        s->job = rv == 0 ? JOB_DONE : JOB_FAILED;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    mvcc_reader_unregister(s->reader);
    s->reader = NULL;
    return NULL;
}

/* ---- the core's side --------------------------------------------------- */

/* Snapshots being received from a leader are written here as *.part
 * files (src/raft/peer.c); one a crash left behind is useless. */
static void remove_partial(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        n = strlen(de->d_name);
        if (n > 5 && strcmp(de->d_name + n - 5, ".part") == 0)
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

int snapshot_init(struct snapshot **out, const char *data_dir, struct mvcc_store *store, char *err,
                  size_t err_len)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    sigset_t all, old;
    int rv;

    if (s == NULL) {
        seterr(err, err_len, "out of memory");
        return -1;
    }
    if ((size_t)snprintf(s->dir, sizeof(s->dir), "%s/member/snap", data_dir) >= sizeof(s->dir)) {
        seterr(err, err_len, "data dir path too long: %s", data_dir);
        free(s);
        return -1;
    }
    if (snap_dir_prepare(s->dir, err, err_len) != 0) {
        free(s);
        return -1;
    }
    remove_partial(s->dir);
    s->store = store;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    /* Signals go to the other threads, never to this one. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rv = pthread_create(&s->thread, NULL, snapshot_thread, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != 0) {
        seterr(err, err_len, "cannot start the snapshot thread: %s", strerror(rv));
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void snapshot_fini(struct snapshot *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->want.cluster);
    free(s->want.leases);
    free(s);
}

int snapshot_start(struct snapshot *s, const struct snapshot_point *pt)
{
    enum job job;

    if (s->busy)
        return -1;
    if (pt->cluster_len > SNAPSHOT_CLUSTER_BYTES_MAX || pt->leases_len > SNAPSHOT_LEASES_BYTES_MAX)
        return -1;
    uint8_t *cluster = NULL;
    uint8_t *leases = NULL;
    if ((pt->cluster_len != 0 && (cluster = malloc(pt->cluster_len)) == NULL) ||
        (pt->leases_len != 0 && (leases = malloc(pt->leases_len)) == NULL)) {
        free(cluster);
        return -1;
    }
    if (cluster != NULL)
        memcpy(cluster, pt->cluster, pt->cluster_len);
    if (leases != NULL)
        memcpy(leases, pt->leases, pt->leases_len);
    pthread_mutex_lock(&s->mu);
    free(s->want.cluster);
    free(s->want.leases);
    s->want = *pt;
    s->want.cluster = cluster;
    s->want.leases = leases;
    s->want_rev = mvcc_current_revision(s->store);
    s->job = JOB_REQUESTED;
    pthread_cond_broadcast(&s->cv);
    /* The handshake: see PINNING THE VIEW. */
    while (s->job == JOB_REQUESTED)
        pthread_cond_wait(&s->cv, &s->mu);
    job = s->job;
    if (job == JOB_FAILED)
        s->job = JOB_IDLE;
    pthread_mutex_unlock(&s->mu);
    if (job == JOB_FAILED)
        return -1;
    s->busy = true;
    return 0;
}

int snapshot_poll(struct snapshot *s, struct snapshot_point *done)
{
    int rv = 0;

    if (!s->busy || pthread_mutex_trylock(&s->mu) != 0)
        return 0;
    if (s->job == JOB_DONE) {
        *done = s->want;
        done->cluster = NULL;
        done->cluster_len = 0;
        done->leases = NULL;
        done->leases_len = 0;
        rv = 1;
    } else if (s->job == JOB_FAILED) {
        rv = -1;
    }
    if (rv != 0) {
        s->job = JOB_IDLE;
        s->busy = false;
    }
    pthread_mutex_unlock(&s->mu);
    return rv;
}

bool snapshot_busy(const struct snapshot *s)
{
    return s->busy;
}

uint64_t snapshot_size_bytes(const struct snapshot *s)
{
    return __atomic_load_n(&s->size_bytes, __ATOMIC_RELAXED);
}

/* ---- loading (start-up) ----------------------------------------------- */

/* Reads MVCC records out of a section, through a buffer that grows to the
 * largest record. */
struct dec {
    struct snap_reader *r;
    uint8_t *buf;
    size_t cap, start, end; /* unread bytes: buf[start, end) */
    bool eos;               /* the section's payload is all read, CRC checked */
    bool nomem;
    uint64_t pos; /* section offset of buf[start] */
};

/* Tries to have n unread bytes; fewer only at the end of the section.
 * Returns the number available, or -1. */
static int64_t dec_want(struct dec *d, size_t n)
{
    while (d->end - d->start < n && !d->eos) {
        ssize_t got;

        if (d->cap - d->start < n) {
            memmove(d->buf, d->buf + d->start, d->end - d->start);
            d->end -= d->start;
            d->start = 0;
        }
        if (d->cap < n) {
            size_t cap = d->cap;
            uint8_t *p;

            while (cap < n)
                cap *= 2;
            p = realloc(d->buf, cap);
            if (p == NULL) {
                d->nomem = true;
                return -1;
            }
            d->buf = p;
            d->cap = cap;
        }
        got = snap_read(d->r, d->buf + d->end, d->cap - d->end);
        if (got < 0)
            return -1;
        if (got == 0)
            d->eos = true;
        d->end += (size_t)got;
    }
    return (int64_t)(d->end - d->start < n ? d->end - d->start : n);
}

/* One decoded record, and the load's running state. */
struct load {
    struct snapshot *s;
    bool restore; /* second pass: feed the store */
    struct meta meta;
    bool have_meta, have_mvcc, have_cluster, have_leases;
    uint8_t *cluster; /* the CLUSTER section (last pass) */
    size_t cluster_len;
    uint8_t *leases; /* the LEASES section (last pass) */
    size_t leases_len;
    uint64_t records;
    int64_t max_mod;
    uint8_t *prev_key; /* first pass: order check */
    size_t prev_len, prev_cap;
    int64_t prev_mod, prev_sub;
    char why[256];
};

static int load_fail(struct load *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int load_fail(struct load *l, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(l->why, sizeof(l->why), fmt, ap);
    va_end(ap);
    return -1;
}

/* Parses the body of a record at p[0, n) into v (pointing into p). */
static int rec_decode(const uint8_t *p, size_t n, struct mvcc_version *v)
{
    uint64_t klen, vlen, f[5];
    size_t off = 0;

    if (uvarint_get(p, n, &off, &klen) != 0 || klen == 0 || klen > n - off)
        return -1;
    v->key = p + off;
    v->key_len = (size_t)klen;
    off += klen;
    if (uvarint_get(p, n, &off, &vlen) != 0 || vlen > n - off)
        return -1;
    v->value = p + off;
    v->value_len = (size_t)vlen;
    off += vlen;
    for (int i = 0; i < 5; i++) {
        if (uvarint_get(p, n, &off, &f[i]) != 0)
            return -1;
    }
    if (off + 1 != n || (p[off] & ~REC_FLAG_TOMBSTONE) != 0)
        return -1;
    v->create_revision = (int64_t)f[0];
    v->mod_revision = (int64_t)f[1];
    v->sub = (int64_t)f[2];
    v->version = (int64_t)f[3];
    v->lease = (int64_t)f[4];
    v->tombstone = (p[off] & REC_FLAG_TOMBSTONE) != 0;
    /* What mvcc_restore_version() accepts, checked before it is called. */
    if (v->mod_revision < 1 || v->sub < 0 || v->sub > UINT32_MAX)
        return -1;
    if (!v->tombstone &&
        (v->version < 1 || v->create_revision < 1 || v->create_revision > v->mod_revision))
        return -1;
    return 0;
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* First pass: records must come in mvcc_dump() order. */
static int order_check(struct load *l, const struct mvcc_version *v)
{
    int c = l->records == 0 ? 1 : key_cmp(l->prev_key, l->prev_len, v->key, v->key_len);

    if (c > 0 && l->records > 0)
        return load_fail(l, "MVCC record %" PRIu64 ": keys out of order", l->records + 1);
    if (c == 0 && (v->mod_revision < l->prev_mod ||
                   (v->mod_revision == l->prev_mod && v->sub <= l->prev_sub)))
        return load_fail(l, "MVCC record %" PRIu64 ": revisions out of order", l->records + 1);
    if (c != 0) {
        if (v->key_len > l->prev_cap) {
            uint8_t *p = realloc(l->prev_key, v->key_len);

            if (p == NULL)
                return load_fail(l, "out of memory");
            l->prev_key = p;
            l->prev_cap = v->key_len;
        }
        memcpy(l->prev_key, v->key, v->key_len);
        l->prev_len = v->key_len;
    }
    l->prev_mod = v->mod_revision;
    l->prev_sub = v->sub;
    return 0;
}

static int load_record(struct load *l, const struct mvcc_version *v)
{
    int rv;

    if (v->mod_revision > l->max_mod)
        l->max_mod = v->mod_revision;
    if (!l->restore)
        return order_check(l, v);
    rv = mvcc_restore_version(l->s->store, v);
    if (rv != MVCC_OK)
        return load_fail(l, "MVCC record %" PRIu64 ": restore failed (%d)", l->records + 1, rv);
    return 0;
}

/* Reads the MVCC section's records (the reader is at its start). */
static int load_mvcc(struct load *l, struct snap_reader *r)
{
    struct dec d = {.r = r, .cap = DEC_BUF_MIN_BYTES};
    int rv = 0;

    d.buf = malloc(d.cap);
    if (d.buf == NULL)
        return load_fail(l, "out of memory");
    for (;;) {
        struct mvcc_version v;
        uint64_t body;
        size_t off = 0;
        int64_t have = dec_want(&d, VARINT_BYTES_MAX);

        rv = -1;
        if (have <= 0) {
            rv = have == 0 ? 0 : -1;
            break;
        }
        if (uvarint_get(d.buf + d.start, d.start + (size_t)have, &off, &body) != 0 ||
            body > RECORD_BYTES_MAX) {
            load_fail(l, "MVCC record %" PRIu64 " at byte %" PRIu64 ": bad length", l->records + 1,
                      d.pos);
            break;
        }
        have = dec_want(&d, off + (size_t)body);
        if (have < 0)
            break;
        if ((uint64_t)have < off + body) {
            load_fail(l, "MVCC record %" PRIu64 " at byte %" PRIu64 ": runs past the section",
                      l->records + 1, d.pos);
            break;
        }
        if (rec_decode(d.buf + d.start + off, (size_t)body, &v) != 0) {
            load_fail(l, "MVCC record %" PRIu64 " at byte %" PRIu64 ": malformed", l->records + 1,
                      d.pos);
            break;
        }
        if (load_record(l, &v) != 0)
            break;
        l->records++;
        d.start += off + (size_t)body;
        d.pos += off + body;
    }
    if (d.nomem)
        load_fail(l, "out of memory");
    free(d.buf);
    if (rv != 0 && l->why[0] == '\0')
        load_fail(l, "%s", snap_read_error(r));
    return rv;
}

static int load_meta(struct load *l, struct snap_reader *r, uint64_t len)
{
    uint8_t p[META_BYTES];
    uint64_t term, index;

    if (len != META_BYTES)
        return load_fail(l, "META section of %" PRIu64 " bytes", len);
    if (snap_read_full(r, p, sizeof(p)) != 0 || snap_read(r, p, 1) != 0)
        return load_fail(l, "%s", snap_read_error(r));
    l->meta.index = get_le64(p);
    l->meta.term = get_le64(p + 8);
    l->meta.rev = (int64_t)get_le64(p + 16);
    l->meta.compact_rev = (int64_t)get_le64(p + 24);
    l->meta.alarms = get_le64(p + 32);
    snap_read_point(r, &term, &index);
    if (l->meta.index != index || l->meta.term != term)
        return load_fail(l, "META section does not match the header");
    if (l->meta.rev < 1 || l->meta.compact_rev < 0 || l->meta.compact_rev > l->meta.rev)
        return load_fail(l, "META section: bad revisions %" PRId64 " / %" PRId64, l->meta.rev,
                         l->meta.compact_rev);
    return 0;
}

/* An opaque section (CLUSTER, LEASES) read whole into *blob. */
static int load_blob(struct load *l, struct snap_reader *r, uint64_t len, uint64_t max,
                     const char *name, uint8_t **blob, size_t *blob_len)
{
    uint8_t extra;

    if (len == 0 || len > max)
        return load_fail(l, "%s section of %" PRIu64 " bytes", name, len);
    free(*blob);
    *blob = malloc((size_t)len);
    *blob_len = (size_t)len;
    if (*blob == NULL)
        return load_fail(l, "out of memory");
    if (snap_read_full(r, *blob, (size_t)len) != 0 || snap_read(r, &extra, 1) != 0)
        return load_fail(l, "%s", snap_read_error(r));
    return 0;
}

/* One pass over a file: reads every section and checks it all. */
static int load_pass(struct load *l, const char *path)
{
    struct snap_reader *r;
    uint32_t type;
    uint64_t len;
    int rv;

    l->why[0] = '\0';
    l->have_meta = l->have_mvcc = l->have_cluster = l->have_leases = false;
    l->records = 0;
    l->max_mod = 0;
    if (snap_read_open(&r, path, l->why, sizeof(l->why)) != 0)
        return -1;
    while ((rv = snap_read_section(r, &type, &len)) == 1) {
        bool *seen = type == SEC_META      ? &l->have_meta
                     : type == SEC_MVCC    ? &l->have_mvcc
                     : type == SEC_CLUSTER ? &l->have_cluster
                     : type == SEC_LEASES  ? &l->have_leases
                                           : NULL;

        if (seen == NULL || *seen) {
            rv = load_fail(l,
                           seen == NULL ? "unknown section type %" PRIu32
                                        : "section type %" PRIu32 " twice",
                           type);
            break;
        }
        *seen = true;
        rv = type == SEC_META      ? load_meta(l, r, len)
             : type == SEC_CLUSTER ? load_blob(l, r, len, SNAPSHOT_CLUSTER_BYTES_MAX, "CLUSTER",
                                               &l->cluster, &l->cluster_len)
             : type == SEC_LEASES  ? load_blob(l, r, len, SNAPSHOT_LEASES_BYTES_MAX, "LEASES",
                                               &l->leases, &l->leases_len)
                                   : load_mvcc(l, r);
        if (rv != 0) {
            /* Records are decoded as they stream, before the section's
             * CRC is known: if the CRC is bad, that is the better reason. */
            if (snap_read_error(r)[0] == '\0' && snap_read_section(r, &type, &len) < 0)
                load_fail(l, "%s", snap_read_error(r));
            break;
        }
    }
    if (rv < 0 && l->why[0] == '\0')
        load_fail(l, "%s", snap_read_error(r));
    snap_read_close(r);
    if (rv < 0)
        return -1;
    if (!l->have_meta || !l->have_mvcc)
        return load_fail(l, "no %s section", l->have_meta ? "MVCC" : "META");
    if (l->max_mod > l->meta.rev)
        return load_fail(l, "a version at revision %" PRId64 " above the store's %" PRId64,
                         l->max_mod, l->meta.rev);
    return 0;
}

/* Picks the newest file that passes every check; says on stderr which
 * ones it skipped. Returns its index in v, or -1. */
static ssize_t load_pick(struct snapshot *s, struct load *l, const struct snap_file *v, size_t n,
                         char *err, size_t err_len)
{
    char path[PATH_MAX + SNAP_NAME_BYTES + 2];

    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", s->dir, v[i].name);
        if (load_pass(l, path) == 0)
            return (ssize_t)i;
        if (i + 1 < n)
            fprintf(stderr, "cetcd: snapshot %s: %s; trying an older one\n", path, l->why);
        else
            seterr(err, err_len, "snapshot %s: %s; no valid snapshot in %s%s", path, l->why, s->dir,
                   n > 1 ? " (all damaged)" : "");
    }
    return -1;
}

int snapshot_install(struct snapshot *s, const char *path, struct snapshot_point *pt, char *err,
                     size_t err_len)
{
    struct load l = {.s = s};
    struct stat st;
    int rv;

    /* First pass: everything checks, the store untouched. */
    rv = load_pass(&l, path);
    free(l.prev_key);
    l.prev_key = NULL;
    free(l.cluster);
    l.cluster = NULL;
    l.cluster_len = 0;
    free(l.leases);
    l.leases = NULL;
    l.leases_len = 0;
    if (rv != 0) {
        seterr(err, err_len, "snapshot %s: %s", path, l.why);
        return -1;
    }
    l.restore = true;
    rv = load_pass(&l, path);
    if (rv == 0 && mvcc_restore_finish(s->store, l.meta.rev, l.meta.compact_rev) != MVCC_OK)
        rv = load_fail(&l, "restore failed");
    free(l.prev_key);
    if (rv != 0) {
        mvcc_restore_abort(s->store);
        seterr(err, err_len, "snapshot %s: %s (while restoring)", path, l.why);
        free(l.cluster);
        free(l.leases);
        return -1;
    }
    pt->index = l.meta.index;
    pt->term = l.meta.term;
    pt->alarms = l.meta.alarms;
    pt->cluster = l.cluster;
    pt->cluster_len = l.cluster_len;
    pt->leases = l.leases;
    pt->leases_len = l.leases_len;
    if (stat(path, &st) == 0)
        __atomic_store_n(&s->size_bytes, (uint64_t)st.st_size, __ATOMIC_RELAXED);
    return 0;
}

void snapshot_path(const struct snapshot *s, uint64_t term, uint64_t index, char *buf, size_t len)
{
    char name[SNAP_NAME_BYTES + 1];

    snap_file_name(name, term, index);
    snprintf(buf, len, "%s/%s", s->dir, name);
}

int snapshot_load(struct snapshot *s, struct snapshot_point *pt, bool *found, char *err,
                  size_t err_len)
{
    char path[PATH_MAX + SNAP_NAME_BYTES + 2];
    struct load l = {.s = s};
    struct snap_file *v;
    struct stat st;
    size_t n;
    ssize_t k;
    int rv;

    *found = false;
    if (snap_list(s->dir, &v, &n, err, err_len) != 0)
        return -1;
    if (n == 0)
        return 0;
    k = load_pick(s, &l, v, n, err, err_len);
    free(l.prev_key);
    l.prev_key = NULL;
    free(l.cluster);
    l.cluster = NULL;
    l.cluster_len = 0;
    free(l.leases);
    l.leases = NULL;
    l.leases_len = 0;
    if (k < 0) {
        free(v);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s", s->dir, v[k].name);
    l.restore = true;
    rv = load_pass(&l, path);
    if (rv == 0 && mvcc_restore_finish(s->store, l.meta.rev, l.meta.compact_rev) != MVCC_OK)
        rv = load_fail(&l, "restore failed");
    if (rv != 0) {
        seterr(err, err_len, "snapshot %s: %s (while restoring)", path, l.why);
        free(l.cluster);
        free(l.leases);
        free(v);
        return -1;
    }
    pt->index = l.meta.index;
    pt->term = l.meta.term;
    pt->alarms = l.meta.alarms;
    pt->cluster = l.cluster;
    pt->cluster_len = l.cluster_len;
    pt->leases = l.leases;
    pt->leases_len = l.leases_len;
    *found = true;
    if (stat(path, &st) == 0)
        __atomic_store_n(&s->size_bytes, (uint64_t)st.st_size, __ATOMIC_RELAXED);
    free(v);
    return 0;
}
