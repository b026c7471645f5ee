/*
 * vers.c — the versions of one key: a newest-first list of chunks.
 *
 * Owns: chunks (struct bt_chunk), the values in them, and the writer's
 * spare chunk. A slot names its newest chunk (head), how many of the
 * head's versions are in use (n) and its oldest chunk (base, by seq).
 * Chunk s+1 links to chunk s (older) and to one further older chunk
 * (jump, set by Myers' rule: "An applicative random-access stack", IPL
 * 17(5), 1983), so finding the chunk of a revision or of a sequence
 * number takes O(log chunks) hops; inside a chunk versions are oldest
 * first and found by binary search.
 *
 * Threads: the writer alone calls the functions that take a bt_writer;
 * the readers (bt_ver_at, bt_vpos_*) run on any thread inside an epoch
 * section and only read.
 *
 * Invariants:
 * - Every chunk but the head is full (n == cap == BT_CHUNK_MAX) and never
 *   changes again. The head publishes v[0..n); the writer writes only
 *   v[n..cap). A full head smaller than BT_CHUNK_MAX grows by copying (at
 *   most 32 versions), a full head of BT_CHUNK_MAX gets a new chunk on
 *   top: an append is O(1) in the worst case, whatever the history.
 * - Chunks below the slot's base may already be freed: readers follow
 *   `older` only from seq > base and `jump` only when jump_seq >= base,
 *   judging by the chunk they stand on, never by the one pointed at.
 * - Each value is owned by exactly one chunk; a retired chunk frees the
 *   prefix v[0..own_n) of its values (0 when a copy took them over).
 * - Compaction at C raises base to the chunk of the first version kept
 *   (bt_vpos_kept) and hands the chunks below to a chain that is retired
 *   in bounded steps; a head with dead versions before that one is
 *   replaced by a copy of the rest. A full non-head base chunk keeps its
 *   dead prefix (< BT_CHUNK_MAX versions) until compaction passes it.
 * - A slot dropped whole (bt_slot_retire, when a restore replaces the
 *   tree) retires its chunks from the head down to base: those below base
 *   were retired by compaction already, so each chunk is retired once.
 */
#include "btree.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static size_t chunk_size(uint32_t cap)
{
    return sizeof(struct bt_chunk) + (size_t)cap * sizeof(struct bt_ver);
}

/* Versions in use in c, a chunk of sl. */
static uint32_t chunk_n(const struct bt_slot *sl, const struct bt_chunk *c)
{
    return c == sl->head ? sl->n : c->cap;
}

/* ---- readers ---- */

/* The newest chunk whose first version is <= rev, or NULL. Myers: jump
 * when the jump target is still too new, else step to the older chunk. */
static const struct bt_chunk *chunk_at_rev(const struct bt_slot *sl, int64_t rev)
{
    const struct bt_chunk *c = sl->head;

    while (c->v[0].mod_revision > rev) {
        if (c->seq == sl->base)
            return NULL;
        if (c->jump != NULL && c->jump_seq >= sl->base && c->jump->v[0].mod_revision > rev)
            c = c->jump;
        else
            c = c->older;
    }
    return c;
}

/* The chunk numbered seq (base <= seq <= head's). */
static const struct bt_chunk *chunk_at_seq(const struct bt_slot *sl, uint32_t seq)
{
    const struct bt_chunk *c = sl->head;

    while (c->seq > seq)
        c = c->jump != NULL && c->jump_seq >= seq ? c->jump : c->older;
    return c;
}

const struct bt_ver *bt_ver_at(const struct bt_slot *sl, int64_t rev, struct bt_vpos *pos)
{
    const struct bt_chunk *c = sl->head;
    uint32_t lo = 0, hi = sl->n;

    if (hi == 0)
        return NULL;
    if (c->v[hi - 1].mod_revision <= rev) {
        lo = hi;
    } else {
        if ((c = chunk_at_rev(sl, rev)) == NULL)
            return NULL;
        hi = chunk_n(sl, c);
        while (lo < hi) { /* first index with mod_revision > rev; v[0] <= rev */
            uint32_t mid = lo + (hi - lo) / 2;
            if (c->v[mid].mod_revision <= rev)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    if (pos != NULL) {
        pos->c = c;
        pos->i = lo - 1;
    }
    return &c->v[lo - 1];
}

bool bt_vpos_next(const struct bt_slot *sl, struct bt_vpos *pos)
{
    if (pos->i + 1 < chunk_n(sl, pos->c)) {
        pos->i++;
        return true;
    }
    if (pos->c == sl->head)
        return false;
    pos->c = chunk_at_seq(sl, pos->c->seq + 1);
    pos->i = 0;
    return true;
}

/* etcd key_index.go compact()/keep(): keep the newest version <= C unless
 * it is a tombstone; everything older goes. */
bool bt_vpos_kept(const struct bt_slot *sl, int64_t compact, struct bt_vpos *pos)
{
    const struct bt_ver *v;

    if (sl->n == 0)
        return false;
    v = bt_ver_at(sl, compact, pos);
    if (v == NULL) { /* every version is newer than C */
        pos->c = chunk_at_seq(sl, sl->base);
        pos->i = 0;
        return true;
    }
    return !bt_ver_is_tomb(v) || bt_vpos_next(sl, pos);
}

/* ---- writer: memory ---- */

static void chunk_free_fn(ck_epoch_entry_t *e)
{
    struct bt_chunk *c = CONTAINER(e, struct bt_chunk, retire);

    for (uint32_t i = 0; i < c->own_n; i++)
        free((void *)c->v[i].value);
    free((void *)c->own_key);
    free(c);
}

/* A chunk with no links; the caller accounts for it once it is used. */
static struct bt_chunk *chunk_alloc(uint32_t cap)
{
    struct bt_chunk *c = malloc(chunk_size(cap));

    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->cap = (uint16_t)cap;
    return c;
}

/* Retires c, which the working tree no longer reaches, with the values
 * v[0..own_n) and the key blob `key` (may be NULL). */
static void chunk_retire(struct bt_writer *w, struct bt_chunk *c, uint32_t own_n,
                         const struct bt_key *key)
{
    int64_t bytes = (int64_t)chunk_size(c->cap);

    for (uint32_t i = 0; i < own_n; i++)
        bytes += c->v[i].value_len;
    c->own_n = (uint16_t)own_n;
    c->own_key = key;
    w->bytes -= bytes;
    bt_retire(w, &c->retire, chunk_free_fn);
}

int bt_spare_fill(struct bt_writer *w)
{
    if (w->spare == NULL)
        w->spare = chunk_alloc(1);
    return w->spare != NULL ? 0 : -1;
}

void bt_slot_init(struct bt_writer *w, struct bt_slot *sl, const struct bt_key *key)
{
    assert(w->spare != NULL);
    sl->key = key;
    sl->head = w->spare;
    sl->n = 0;
    sl->base = 0;
    w->spare = NULL;
    w->bytes += (int64_t)chunk_size(1);
}

/* ---- writer: append ---- */

/* Links c on top of the full head p. Myers' rule: if p's jump and the
 * jump's jump span equal distances, c jumps over both; else c jumps to
 * p. Jumps that base has passed count as absent. */
static void chunk_link(struct bt_chunk *c, struct bt_chunk *p, uint32_t base)
{
    const struct bt_chunk *pj = p->jump;

    c->older = p;
    c->seq = p->seq + 1;
    c->jump = p;
    c->jump_seq = p->seq;
    if (pj == NULL || p->jump_seq < base || pj->jump == NULL || pj->jump_seq < base)
        return;
    if (p->seq - p->jump_seq == p->jump_seq - pj->jump_seq) {
        c->jump = pj->jump;
        c->jump_seq = pj->jump_seq;
    }
}

/* Replaces the full head (cap < BT_CHUNK_MAX) by a copy twice its size. */
static int head_grow(struct bt_writer *w, struct bt_slot *sl)
{
    struct bt_chunk *old = sl->head, *c = chunk_alloc(old->cap * 2u);

    if (c == NULL)
        return -1;
    c->older = old->older;
    c->jump = old->jump;
    c->seq = old->seq;
    c->jump_seq = old->jump_seq;
    memcpy(c->v, old->v, sl->n * sizeof(c->v[0]));
    w->bytes += (int64_t)chunk_size(c->cap);
    chunk_retire(w, old, 0, NULL);
    sl->head = c;
    return 0;
}

/* Starts a new head on top of the full head of BT_CHUNK_MAX versions. */
static int head_push_chunk(struct bt_writer *w, struct bt_slot *sl)
{
    struct bt_chunk *c = chunk_alloc(BT_CHUNK_MAX);

    if (c == NULL)
        return -1;
    chunk_link(c, sl->head, sl->base);
    w->bytes += (int64_t)chunk_size(c->cap);
    sl->head = c;
    sl->n = 0;
    return 0;
}

int bt_slot_reserve(struct bt_writer *w, struct bt_slot *sl)
{
    if (sl->n < sl->head->cap)
        return 0;
    if (sl->head->cap < BT_CHUNK_MAX)
        return head_grow(w, sl);
    return head_push_chunk(w, sl);
}

void bt_slot_push(struct bt_writer *w, struct bt_slot *sl, const struct bt_ver *v)
{
    assert(sl->n < sl->head->cap);
    sl->head->v[sl->n] = *v;
    sl->n++;
    w->bytes += v->value_len;
}

/* ---- writer: compaction ---- */

enum bt_trim bt_trim_plan(const struct bt_slot *sl, int64_t compact, struct bt_vpos *start)
{
    if (!bt_vpos_kept(sl, compact, start))
        return BT_TRIM_KEY;
    if (start->c->seq == sl->base && (start->c != sl->head || start->i == 0))
        return BT_TRIM_NONE;
    return BT_TRIM_BASE;
}

/* Replaces the head, which is the base, by a copy of its versions from j
 * on; the old head keeps (and frees) the values before j. */
static void head_trim(struct bt_writer *w, struct bt_slot *sl, uint32_t j)
{
    struct bt_chunk *old = sl->head, *c;
    uint32_t n = sl->n - j, cap = 1;

    while (cap < n)
        cap *= 2;
    if ((c = chunk_alloc(cap)) == NULL)
        return; /* the dead versions stay until a later compaction */
    c->seq = old->seq;
    memcpy(c->v, &old->v[j], n * sizeof(c->v[0]));
    w->bytes += (int64_t)chunk_size(cap);
    chunk_retire(w, old, j, NULL);
    sl->head = c;
    sl->n = n;
}

void bt_slot_trim(struct bt_writer *w, struct bt_slot *sl, const struct bt_vpos *start,
                  struct bt_chain *ch)
{
    struct bt_chunk *c = (struct bt_chunk *)start->c;

    assert(ch->next == NULL);
    if (c->seq > sl->base) {
        ch->next = c->older;
        ch->head = NULL;
        ch->key = NULL;
        ch->head_n = 0;
        ch->stop = sl->base;
        sl->base = c->seq;
    }
    if (c == sl->head && start->i > 0)
        head_trim(w, sl, start->i);
}

void bt_chain_key(struct bt_chain *ch, const struct bt_slot *sl)
{
    assert(ch->next == NULL);
    ch->next = sl->head;
    ch->head = sl->head;
    ch->key = sl->key;
    ch->head_n = sl->n;
    ch->stop = sl->base;
}

/* Unlinks the next chunk of the chain; *own_n and *key say what it owns. */
static struct bt_chunk *chain_pop(struct bt_chain *ch, uint32_t *own_n, const struct bt_key **key)
{
    struct bt_chunk *c = ch->next;
    bool head = c == ch->head;

    *own_n = head ? ch->head_n : c->cap;
    *key = head ? ch->key : NULL;
    ch->next = c->seq == ch->stop ? NULL : c->older;
    return c;
}

uint32_t bt_chain_retire(struct bt_writer *w, struct bt_chain *ch, uint32_t budget)
{
    uint32_t done = 0, own_n;
    const struct bt_key *key;

    for (; done < budget && ch->next != NULL; done++) {
        struct bt_chunk *c = chain_pop(ch, &own_n, &key);
        chunk_retire(w, c, own_n, key);
    }
    return done;
}

void bt_slot_retire(struct bt_writer *w, const struct bt_slot *sl)
{
    struct bt_chain ch = {0};

    w->bytes -= (int64_t)bt_key_size(sl->key);
    bt_chain_key(&ch, sl);
    while (ch.next != NULL)
        bt_chain_retire(w, &ch, UINT32_MAX);
}

void bt_chain_free(struct bt_chain *ch)
{
    uint32_t own_n;
    const struct bt_key *key;

    while (ch->next != NULL) {
        struct bt_chunk *c = chain_pop(ch, &own_n, &key);
        c->own_n = (uint16_t)own_n;
        c->own_key = key;
        chunk_free_fn(&c->retire);
    }
}

void bt_slot_free(const struct bt_slot *sl)
{
    struct bt_chain ch = {0};

    bt_chain_key(&ch, sl);
    bt_chain_free(&ch);
}
