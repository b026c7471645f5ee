/*
 * ring.c — io_uring loop set-up, SQE allocation, eventfd wake-ups and
 * mailbox storage.
 *
 * A loop is touched only by its owner thread, except ring_wake(), which any
 * thread may call: it only writes the eventfd. The eventfd counter keeps
 * wake-ups that arrive while no read is armed, so none is ever lost: the
 * owner drains its mailboxes after every wake completion and re-arms.
 */
#include "ring.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int ring_loop_init(struct ring_loop *l, unsigned entries)
{
    struct io_uring_params p;
    int rv;

    memset(l, 0, sizeof(*l));
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CLAMP;
    p.cq_entries = entries * 4;
    p.flags |= IORING_SETUP_CQSIZE;
    rv = io_uring_queue_init_params(entries, &l->uring, &p);
    if (rv < 0)
        return rv;
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->wake_fd < 0) {
        rv = -errno;
        io_uring_queue_exit(&l->uring);
        return rv;
    }
    return 0;
}

void ring_loop_fini(struct ring_loop *l)
{
    io_uring_queue_exit(&l->uring);
    close(l->wake_fd);
}

void ring_loop_iowq_unpin(struct ring_loop *l)
{
    cpu_set_t all;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long i;

    CPU_ZERO(&all);
    for (i = 0; i < ncpu && i < CPU_SETSIZE; i++)
        CPU_SET(i, &all);
    (void)io_uring_register_iowq_aff(&l->uring, sizeof(all), &all);
}

struct io_uring_sqe *ring_sqe(struct ring_loop *l)
{
    struct io_uring_sqe *sqe;
    int tries;

    for (tries = 0; tries < 1000; tries++) {
        sqe = io_uring_get_sqe(&l->uring);
        if (sqe != NULL)
            return sqe;
        if (io_uring_submit(&l->uring) < 0 && errno != EBUSY && errno != EAGAIN)
            break;
    }
    fprintf(stderr, "cetcd: io_uring submission queue stuck\n");
    abort();
}

void ring_arm_wake(struct ring_loop *l, uint64_t user_data)
{
    struct io_uring_sqe *sqe = ring_sqe(l);

    io_uring_prep_read(sqe, l->wake_fd, &l->wake_count, sizeof(l->wake_count), 0);
    io_uring_sqe_set_data64(sqe, user_data);
}

void ring_wake(struct ring_loop *l)
{
    uint64_t one = 1;
    ssize_t n;

    do {
        n = write(l->wake_fd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN means the counter is saturated: the loop is already woken. */
}

int ring_mbox_init(struct ring_mbox *m, unsigned capacity)
{
    if (capacity < 4 || (capacity & (capacity - 1)) != 0)
        return -EINVAL;
    m->buf = calloc(capacity, sizeof(*m->buf));
    if (m->buf == NULL)
        return -ENOMEM;
    m->capacity = capacity;
    ck_ring_init(&m->ring, capacity);
    return 0;
}

void ring_mbox_fini(struct ring_mbox *m)
{
    free(m->buf);
    m->buf = NULL;
}
