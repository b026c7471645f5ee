/*
 * raft_log.c — the in-memory Raft log: the entries after the compaction
 * point (the last snapshot the driver compacted to), each with its own
 * copy of the payload.
 *
 * Invariants: ents[i].index == snap_index + 1 + i; terms never decrease
 * along the log (Raft §5.3: a leader only appends entries of its term after
 * those it holds); the term of the compaction point is kept, so an APP whose
 * previous entry is exactly the compaction point still passes the log
 * matching check. cum[] holds running payload byte totals so the size of any
 * range is one subtraction.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "raft_int.h"

int log_init(struct raft_log *l, uint64_t snap_index, uint64_t snap_term)
{
    memset(l, 0, sizeof(*l));
    l->snap_index = snap_index;
    l->snap_term = snap_term;
    return 0;
}

static void free_range(struct raft_log *l, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        free((void *)l->ents[i].data);
        l->ents[i].data = NULL;
    }
}

void log_free(struct raft_log *l)
{
    free_range(l, 0, l->n);
    free(l->ents);
    free(l->cum);
    memset(l, 0, sizeof(*l));
}

uint64_t log_first_index(const struct raft_log *l)
{
    return l->snap_index + 1;
}

uint64_t log_last_index(const struct raft_log *l)
{
    return l->snap_index + l->n;
}

uint64_t log_last_term(const struct raft_log *l)
{
    return l->n ? l->ents[l->n - 1].term : l->snap_term;
}

const struct raft_entry *log_get(const struct raft_log *l, uint64_t i)
{
    if (i <= l->snap_index || i > log_last_index(l))
        return NULL;
    return &l->ents[i - l->snap_index - 1];
}

uint64_t log_term(const struct raft_log *l, uint64_t i)
{
    if (i == l->snap_index)
        return l->snap_term;
    const struct raft_entry *e = log_get(l, i);
    return e ? e->term : 0;
}

bool log_match(const struct raft_log *l, uint64_t i, uint64_t term)
{
    if (i < l->snap_index || i > log_last_index(l))
        return false;
    return log_term(l, i) == term;
}

static int grow(struct raft_log *l)
{
    size_t cap = l->cap ? l->cap * 2 : 64;
    struct raft_entry *e = realloc(l->ents, cap * sizeof(*e));
    if (!e)
        return RAFT_ERR_BUSY;
    l->ents = e;
    uint64_t *c = realloc(l->cum, cap * sizeof(*c));
    if (!c)
        return RAFT_ERR_BUSY;
    l->cum = c;
    l->cap = cap;
    return 0;
}

int log_append(struct raft_log *l, const struct raft_entry *e)
{
    assert(e->index == log_last_index(l) + 1);
    assert(e->term >= log_last_term(l));
    if (l->n == l->cap && grow(l) != 0)
        return RAFT_ERR_BUSY;
    uint8_t *copy = NULL;
    if (e->len) {
        copy = malloc(e->len);
        if (!copy)
            return RAFT_ERR_BUSY;
        memcpy(copy, e->data, e->len);
    }
    struct raft_entry *d = &l->ents[l->n];
    *d = *e;
    d->data = copy;
    l->cum[l->n] = (l->n ? l->cum[l->n - 1] : l->cum_base) + e->len;
    l->n++;
    return 0;
}

void log_truncate(struct raft_log *l, uint64_t i)
{
    assert(i > l->snap_index);
    if (i > log_last_index(l))
        return;
    size_t at = (size_t)(i - l->snap_index - 1);
    free_range(l, at, l->n);
    l->n = at;
}

void log_compact(struct raft_log *l, uint64_t i)
{
    if (i <= l->snap_index)
        return;
    assert(i <= log_last_index(l));
    size_t k = (size_t)(i - l->snap_index);
    uint64_t term = l->ents[k - 1].term;
    l->cum_base = l->cum[k - 1];
    free_range(l, 0, k);
    memmove(l->ents, l->ents + k, (l->n - k) * sizeof(*l->ents));
    memmove(l->cum, l->cum + k, (l->n - k) * sizeof(*l->cum));
    l->n -= k;
    l->snap_index = i;
    l->snap_term = term;
}

void log_restore(struct raft_log *l, uint64_t index, uint64_t term)
{
    free_range(l, 0, l->n);
    l->n = 0;
    l->cum_base = 0;
    l->snap_index = index;
    l->snap_term = term;
}

static uint64_t cum_at(const struct raft_log *l, uint64_t i)
{
    if (i <= l->snap_index)
        return l->cum_base;
    return l->cum[i - l->snap_index - 1];
}

uint64_t log_bytes(const struct raft_log *l, uint64_t lo, uint64_t hi)
{
    if (hi < lo)
        return 0;
    return cum_at(l, hi) - cum_at(l, lo - 1);
}

uint64_t log_find_by_term(const struct raft_log *l, uint64_t i, uint64_t term)
{
    if (i > log_last_index(l))
        i = log_last_index(l);
    while (i > l->snap_index && log_term(l, i) > term)
        i--;
    return i;
}

/* Raft §5.4.1: a log is more up to date if its last entry has the later
 * term, or the same term and at least the same index. */
bool log_is_up_to_date(const struct raft_log *l, uint64_t index, uint64_t term)
{
    uint64_t lt = log_last_term(l);
    return term > lt || (term == lt && index >= log_last_index(l));
}
