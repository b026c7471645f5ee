/*
 * ring — the per-thread io_uring event loop and the mailboxes between loops.
 *
 * Every shard thread owns one struct ring_loop: an io_uring plus an eventfd
 * that other threads write to when they have left messages for it. Threads
 * exchange messages only through struct ring_mbox: a fixed-capacity
 * single-producer single-consumer ck_ring of pointers, one per direction per
 * pair of threads. A full mailbox is back-pressure for the producer, never a
 * reason to allocate.
 *
 * Completions are dispatched on a packed user_data: the operation in the top
 * byte, a slot number and a generation below it (ring_ud()), so one switch
 * handles every completion and a stale completion for a reused slot is
 * recognised by its generation.
 */
#ifndef CETCD_RING_H
#define CETCD_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include <ck_ring.h>

struct ring_loop {
    struct io_uring uring; /* owner thread only */
    int wake_fd;           /* eventfd: any thread writes, the owner reads */
    uint64_t wake_count;   /* read target of the armed eventfd read */
};

/* Creates the io_uring with `entries` submission slots and the eventfd. */
int ring_loop_init(struct ring_loop *l, unsigned entries);
void ring_loop_fini(struct ring_loop *l);

/* Lets the loop's io-wq workers (which run the operations that block, such
 * as the WAL's synchronous writes) use every CPU. They inherit the creating
 * thread's affinity otherwise, and a worker pinned to the CPU of the loop
 * that waits for it competes with that loop. Best effort. */
void ring_loop_iowq_unpin(struct ring_loop *l);

/* A free SQE; submits what is queued to make room when the SQ is full, so
 * it never returns NULL (aborts if the kernel refuses to take any). */
struct io_uring_sqe *ring_sqe(struct ring_loop *l);

/* Arms the read of the wake eventfd; its completion carries user_data. */
void ring_arm_wake(struct ring_loop *l, uint64_t user_data);

/* Wakes the loop (any thread): its armed eventfd read completes. */
void ring_wake(struct ring_loop *l);

/* user_data packing: op (8 bits) | slot (24 bits) | generation (32 bits). */
static inline uint64_t ring_ud(unsigned op, uint32_t slot, uint32_t gen)
{
    return ((uint64_t)(op & 0xffu) << 56) | ((uint64_t)(slot & 0xffffffu) << 32) | gen;
}
static inline unsigned ring_ud_op(uint64_t ud)
{
    return (unsigned)(ud >> 56);
}
static inline uint32_t ring_ud_slot(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & 0xffffffu;
}
static inline uint32_t ring_ud_gen(uint64_t ud)
{
    return (uint32_t)ud;
}

/* ThreadSanitizer cannot see the fences ck_ring issues in inline assembly.
 * Under TSan, a push releases and a pop acquires the mailbox, which is
 * exactly the ordering ck_ring guarantees: everything the producer wrote
 * into a message before pushing it is visible to the consumer that pops
 * it. ck_ring's own slot accesses are listed in tests/tsan.supp. */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define RING_TSAN_RELEASE(p) __tsan_release(p)
#define RING_TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define RING_TSAN_RELEASE(p) ((void)(p))
#define RING_TSAN_ACQUIRE(p) ((void)(p))
#endif

/* A single-producer single-consumer mailbox of pointers. */
struct ring_mbox {
    struct ck_ring ring;
    struct ck_ring_buffer *buf;
    unsigned capacity; /* power of two; holds capacity - 1 messages */
};

int ring_mbox_init(struct ring_mbox *m, unsigned capacity);
void ring_mbox_fini(struct ring_mbox *m);

/* Producer thread only. false when full. */
static inline bool ring_mbox_push(struct ring_mbox *m, void *msg)
{
    RING_TSAN_RELEASE(&m->ring);
    return ck_ring_enqueue_spsc(&m->ring, m->buf, msg);
}

/* Consumer thread only. NULL when empty. */
static inline void *ring_mbox_pop(struct ring_mbox *m)
{
    void *msg;
    if (!ck_ring_dequeue_spsc(&m->ring, m->buf, &msg))
        return NULL;
    RING_TSAN_ACQUIRE(&m->ring);
    return msg;
}

#endif
