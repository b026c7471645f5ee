/*
 * pending.c — the ring of this member's proposals waiting to be applied.
 *
 * Invariants: head <= tail; tail - head <= PENDING_MAX; the slot of a
 * number n in [head, tail) is v[n % PENDING_MAX]; head's slot is never a
 * hole (holes at the head are skipped at once); deadlines are handed in
 * non-decreasing with the number, so the head expires first.
 * Thread: the core's only.
 */
#include "pending.h"

#include "shard.h"

#include <stdlib.h>

static struct pending_slot *slot(const struct pending *p, uint64_t seq)
{
    return &p->v[seq & (PENDING_MAX - 1)];
}

int pending_init(struct pending *p, uint64_t first_seq)
{
    p->v = calloc(PENDING_MAX, sizeof(*p->v));
    p->head = first_seq != 0 ? first_seq : 1;
    p->tail = p->head;
    return p->v != NULL ? 0 : -1;
}

void pending_fini(struct pending *p)
{
    uint64_t s;

    if (p->v == NULL)
        return;
    for (s = p->head; s < p->tail; s++)
        shard_msg_free(slot(p, s)->m);
    free(p->v);
    p->v = NULL;
}

static void skip_holes(struct pending *p)
{
    while (p->head < p->tail && slot(p, p->head)->m == NULL)
        p->head++;
}

uint64_t pending_add(struct pending *p, struct shard_msg *m, uint64_t deadline_ms)
{
    struct pending_slot *s;

    if (p->tail - p->head >= PENDING_MAX)
        return 0;
    s = slot(p, p->tail);
    s->m = m;
    s->deadline_ms = deadline_ms;
    return p->tail++;
}

struct shard_msg *pending_take(struct pending *p, uint64_t seq)
{
    struct shard_msg *m;

    if (seq < p->head || seq >= p->tail)
        return NULL;
    m = slot(p, seq)->m;
    slot(p, seq)->m = NULL;
    skip_holes(p);
    return m;
}

struct shard_msg *pending_expired(struct pending *p, uint64_t now_ms)
{
    struct pending_slot *s;
    struct shard_msg *m;

    if (p->head == p->tail)
        return NULL;
    s = slot(p, p->head);
    if (s->deadline_ms > now_ms)
        return NULL;
    m = s->m;
    s->m = NULL;
    p->head++;
    skip_holes(p);
    return m;
}

uint64_t pending_count(const struct pending *p)
{
    return p->tail - p->head;
}
