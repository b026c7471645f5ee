/*
 * lease_codec.c — the lease table in a snapshot: the replicated state
 * only (no deadlines: a member restoring it is not leader, and a leader
 * promotes from the checkpoints).
 *
 * ENCODING (integers little-endian):
 *
 *   OFFSET  SIZE  MEANING
 *        0     4  magic "LSE1"
 *        4     4  format version, 1
 *        8     8  n: leases that follow (<= LEASE_MAX)
 *       16     8  k: attached keys, all leases (<= LEASE_KEYS_MAX)
 *       24     .  n lease records, by ascending ID
 *      end-4   4  CRC32C of every byte before it
 *
 *   a lease record:
 *        0     8  ID (!= 0)
 *        8     8  granted TTL, seconds (1..LEASE_TTL_MAX_S)
 *       16     8  checkpointed remaining TTL, ms (0 = none; <= TTL)
 *       24     4  m: keys attached to it
 *       28     .  m key records, in ascending key order
 *
 *   a key record:
 *        0     4  length (1..LEASE_KEY_BYTES_MAX)
 *        4     .  key bytes
 *
 *   +--------+-----------------+-----+-----------------+-------+
 *   | header | lease, its keys | ... | lease, its keys | CRC   |
 *   +--------+-----------------+-----+-----------------+-------+
 *
 * The order is canonical, so members with equal tables write equal
 * bytes. Decoding checks the CRC first and then every length, bound and
 * order (a damaged buffer with a matching CRC is still rejected), and
 * builds a new table with the replicated operations themselves, so a
 * decoded table satisfies every invariant of one built by applies.
 *
 * Thread: any (pure functions of the table and the buffer).
 */
#include "lease_int.h"

#include "crc32c.h"
#include "le.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC     0x3145534cu /* "LSE1" */
#define VERSION   1u
#define HDR_BYTES 24
#define REC_BYTES 28
#define CRC_BYTES 4

static int lease_ptr_cmp(const void *a, const void *b)
{
    const struct lease *x = *(struct lease *const *)a, *y = *(struct lease *const *)b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/* Every lease, by ascending ID; malloc'd (NULL if none or no memory). */
static struct lease **sorted_leases(const struct lease_table *t)
{
    struct lease **v;
    size_t k = 0;

    if (t->leases.n == 0)
        return NULL;
    v = malloc(t->leases.n * sizeof(*v));
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i <= t->leases.mask; i++)
        for (struct lht_node *e = t->leases.b[i]; e != NULL; e = e->next)
            v[k++] = (struct lease *)e;
    qsort(v, k, sizeof(*v), lease_ptr_cmp);
    return v;
}

static uint8_t *put_lease(uint8_t *p, const struct lease *l, struct lease_kent **keys)
{
    put_le64(p, (uint64_t)l->id);
    put_le64(p + 8, (uint64_t)l->ttl_s);
    put_le64(p + 16, (uint64_t)l->checkpoint_ms);
    put_le32(p + 24, (uint32_t)l->n_keys);
    p += REC_BYTES;
    for (size_t i = 0; i < l->n_keys; i++) {
        put_le32(p, keys[i]->len);
        memcpy(p + 4, keys[i]->key, keys[i]->len);
        p += 4 + keys[i]->len;
    }
    return p;
}

uint8_t *lease_encode(const struct lease_table *t, size_t *len)
{
    size_t n = t->leases.n, size = HDR_BYTES + CRC_BYTES;
    struct lease **ls = sorted_leases(t);
    uint8_t *buf = NULL, *p;

    if (n > 0 && ls == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size += REC_BYTES;
        for (const struct lease_kent *e = ls[i]->keys; e != NULL; e = e->next)
            size += 4 + (size_t)e->len;
    }
    buf = malloc(size);
    if (buf == NULL)
        goto out;
    put_le32(buf, MAGIC);
    put_le32(buf + 4, VERSION);
    put_le64(buf + 8, n);
    put_le64(buf + 16, t->n_keys);
    p = buf + HDR_BYTES;
    for (size_t i = 0; i < n; i++) {
        struct lease_kent **keys = lease_sorted_keys(ls[i]);
        if (ls[i]->n_keys > 0 && keys == NULL) {
            free(buf);
            buf = NULL;
            goto out;
        }
        p = put_lease(p, ls[i], keys);
        free(keys);
    }
    assert((size_t)(p - buf) == size - CRC_BYTES);
    put_le32(p, crc32c_extend(0, buf, size - CRC_BYTES));
    *len = size;
out:
    free(ls);
    return buf;
}

/* A bounds-checked reader over buf[0..end). */
struct rd {
    const uint8_t *p, *end;
};

static bool take(struct rd *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    *out = r->p;
    r->p += n;
    return true;
}

static int key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);

    return c != 0 ? c : (an > bn) - (an < bn);
}

/* Decodes one lease record and its keys into t. */
static int decode_lease(struct lease_table *t, struct rd *r, int64_t prev_id, int64_t *id,
                        uint64_t *n_keys)
{
    const uint8_t *h, *k, *prev = NULL;
    size_t prev_len = 0;
    int64_t ttl_s, ckpt_ms;
    uint32_t m;
    int rv;

    if (!take(r, REC_BYTES, &h))
        return LEASE_ERR_CORRUPT;
    *id = (int64_t)get_le64(h);
    ttl_s = (int64_t)get_le64(h + 8);
    ckpt_ms = (int64_t)get_le64(h + 16);
    m = get_le32(h + 24);
    if (*id == 0 || (prev_id != 0 && *id <= prev_id) || ttl_s < 1 || ttl_s > LEASE_TTL_MAX_S ||
        ckpt_ms < 0 || ckpt_ms > ttl_s * 1000 || m > *n_keys)
        return LEASE_ERR_CORRUPT;
    rv = lease_grant(t, *id, ttl_s, NULL);
    if (rv == 0 && ckpt_ms > 0)
        rv = lease_checkpoint(t, *id, ckpt_ms);
    for (uint32_t i = 0; rv == 0 && i < m; i++) {
        const uint8_t *lp;
        uint32_t len;
        if (!take(r, 4, &lp))
            return LEASE_ERR_CORRUPT;
        len = get_le32(lp);
        if (len == 0 || len > LEASE_KEY_BYTES_MAX || !take(r, len, &k))
            return LEASE_ERR_CORRUPT;
        if (prev != NULL && key_cmp(prev, prev_len, k, len) >= 0)
            return LEASE_ERR_CORRUPT;
        if (lease_of(t, k, len) != 0) /* under an earlier lease too */
            return LEASE_ERR_CORRUPT;
        rv = lease_attach(t, k, len, *id);
        prev = k;
        prev_len = len;
    }
    *n_keys -= m;
    return rv == LEASE_ERR_NOMEM ? rv : rv != 0 ? LEASE_ERR_CORRUPT : 0;
}

int lease_decode(const struct lease_config *cfg, const uint8_t *buf, size_t len,
                 struct lease_table **out)
{
    struct rd r = {.p = buf + HDR_BYTES};
    uint64_t n, n_keys;
    int64_t id = 0;
    struct lease_table *t;
    int rv = 0;

    *out = NULL;
    if (len < HDR_BYTES + CRC_BYTES ||
        get_le32(buf + len - CRC_BYTES) != crc32c_extend(0, buf, len - CRC_BYTES))
        return LEASE_ERR_CORRUPT;
    if (get_le32(buf) != MAGIC || get_le32(buf + 4) != VERSION)
        return LEASE_ERR_CORRUPT;
    n = get_le64(buf + 8);
    n_keys = get_le64(buf + 16);
    if (n > LEASE_MAX || n_keys > LEASE_KEYS_MAX)
        return LEASE_ERR_CORRUPT;
    t = lease_create(cfg);
    if (t == NULL)
        return LEASE_ERR_NOMEM;
    r.end = buf + len - CRC_BYTES;
    for (uint64_t i = 0; rv == 0 && i < n; i++)
        rv = decode_lease(t, &r, id, &id, &n_keys);
    if (rv == 0 && (n_keys != 0 || r.p != r.end))
        rv = LEASE_ERR_CORRUPT;
    if (rv != 0) {
        lease_destroy(t);
        return rv;
    }
    *out = t;
    return 0;
}
