/*
 * pending.h — the proposals this member made that wait for their log entry
 * to be applied (internal to the server module).
 *
 * Every proposal gets the next sequence number of this member; the number
 * travels in the entry (see core.c), so when any member applies the entry
 * the proposer recognises it and answers its client. A proposal can be
 * lost (a follower forwarded it to a leader that failed): it then waits
 * until its deadline and is answered "etcdserver: request timed out".
 *
 * The table is a ring indexed by sequence number: numbers are handed out
 * in order, so the live ones lie in [head, tail) and a lookup is one
 * subtraction. Entries taken out of order leave holes that the head skips.
 * Thread: the core's only.
 */
#ifndef CETCD_PENDING_H
#define CETCD_PENDING_H

#include <stdbool.h>
#include <stdint.h>

#define PENDING_MAX (1u << 18) /* proposals waiting at once (power of two) */

struct shard_msg;

struct pending_slot {
    struct shard_msg *m; /* NULL: taken (a hole) */
    uint64_t deadline_ms;
};

struct pending {
    struct pending_slot *v; /* PENDING_MAX slots */
    uint64_t head;          /* oldest sequence number still in the ring */
    uint64_t tail;          /* next sequence number to hand out */
};

/* first_seq: the first number to hand out (never 0; the core starts from
 * the clock so numbers from an earlier run cannot come back as its own). */
int pending_init(struct pending *p, uint64_t first_seq);
void pending_fini(struct pending *p); /* frees the messages still waiting */

/* Adds m; returns its sequence number, or 0 if the table is full. */
uint64_t pending_add(struct pending *p, struct shard_msg *m, uint64_t deadline_ms);

/* Takes the message with number seq out, or NULL (not ours, or gone). */
struct shard_msg *pending_take(struct pending *p, uint64_t seq);

/* Takes out the oldest message whose deadline is <= now_ms, or NULL.
 * Deadlines grow with sequence numbers, so only the head is examined. */
struct shard_msg *pending_expired(struct pending *p, uint64_t now_ms);

uint64_t pending_count(const struct pending *p);

#endif
