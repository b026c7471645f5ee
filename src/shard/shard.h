/*
 * shard — the thread-per-core runtime.
 *
 * One shard thread per core, pinned, each with its own io_uring loop and
 * its own SO_REUSEPORT listeners. A shard owns its client connections from
 * accept to close: it reads with io_uring, feeds the connection's HTTP/2
 * session (rpc_conn), answers what it can at once (reads, errors) and sends
 * writes to the core as proposals. The core is shard 0: it also runs the
 * Raft log, the WAL and the apply loop, through the hooks in
 * struct shard_core_ops.
 *
 * Messages between threads are struct shard_msg pointers in ring_mbox
 * mailboxes: shard k -> core (to_core) and core -> shard k (from_core).
 * Both directions are bounded; a producer that finds a mailbox full keeps
 * the message in its own backlog and retries, and no thread ever blocks on
 * another.
 */
#ifndef CETCD_SHARD_H
#define CETCD_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"

struct rpc_member;
struct mvcc_store;

#define SHARD_MAX           64
#define SHARD_LISTEN_MAX    8     /* listen addresses per shard */
#define SHARD_CONNS_MAX     4096  /* connections per shard */
#define SHARD_MBOX_CAPACITY 8192  /* messages per mailbox (power of two) */
#define SHARD_RECV_BYTES    16384 /* receive buffer per connection */
#define SHARD_STREAMS_MAX   16384 /* streaming calls with a service, per shard */

/* Completion ops below SHARD_OP_CORE_BASE are the shard's own; the core's
 * hooks get every completion whose op is >= SHARD_OP_CORE_BASE. */
#define SHARD_OP_CORE_BASE 32

/* Who to answer: the shard, the connection slot and generation, the
 * HTTP/2 stream. */
struct shard_tag {
    uint32_t shard;
    uint32_t slot;
    uint32_t gen;
    int32_t stream_id;
};

/* One proposal (shard -> core) or reply (core -> shard). The receiver of a
 * message owns it and frees it with shard_msg_free(). */
enum shard_msg_kind {
    SHARD_MSG_REPLY = 0,   /* core -> shard: the answer to send */
    SHARD_MSG_READ_GO = 1, /* core -> shard: the held read (data) may run now */
    SHARD_MSG_STREAM = 2,  /* both ways: a message of a streaming call; the
                            * core answers with one message on the stream
                            * (code OK) or ends it (an error) */
};

struct shard_msg {
    struct shard_tag tag;
    struct shard_msg *next; /* backlog link, owner thread only */
    uint8_t kind;           /* core -> shard: enum shard_msg_kind */
    int code;               /* reply: enum rpc_code */
    const char *message;    /* reply: static error string */
    uint8_t *data;          /* proposal: entry payload; reply: response body */
    size_t len;
};

void shard_msg_free(struct shard_msg *m);

struct shard;
struct shard_set;

/* The core's hooks, called on shard 0's thread. */
struct shard_core_ops {
    /* Once per loop turn, after completions were handled. */
    void (*turn)(void *arg);
    /* A completion whose op is >= SHARD_OP_CORE_BASE. */
    void (*cqe)(void *arg, uint64_t user_data, int res);
    /* true while the core has queued work that needs another turn soon
     * even without a completion (e.g. replies waiting for mailbox room). */
    bool (*busy)(void *arg);
    /* true while the core waits for a completion it expects soon (its
     * WAL write): the loop polls briefly before sleeping. */
    bool (*waiting)(void *arg);
};

struct shard_config {
    unsigned n_shards;
    const char *listen_urls[SHARD_LISTEN_MAX];
    unsigned n_listen_urls;
    struct rpc_member *member;
    struct mvcc_store *store;
    /* Pin shard k to CPU k (mod CPUs). Off by default: on a small machine
     * shared with other programs (a client, a load generator), letting the
     * scheduler place shards measured lower latency than pinning them. */
    bool pin;
};

/* Creates the shards and binds every listener (n_shards sockets per URL,
 * SO_REUSEPORT). Returns NULL with a one-line message in err on failure. */
struct shard_set *shard_set_create(const struct shard_config *cfg, char *err, size_t err_len);

/* The core's hooks; must be attached before shard_set_run(). (Listeners
 * are bound first, so a busy port fails the start before the data dir is
 * touched.) */
void shard_set_attach_core(struct shard_set *set, const struct shard_core_ops *ops, void *arg);

/* Runs shards 1..n-1 on their own threads and shard 0 (the core) on the
 * calling thread, until shard_set_stop(). */
int shard_set_run(struct shard_set *set);
void shard_set_stop(struct shard_set *set);
void shard_set_destroy(struct shard_set *set);

unsigned shard_set_count(const struct shard_set *set);

/* ---- for the core (shard 0's thread) ---- */

/* The core's io_uring loop (shard 0's). */
struct ring_loop *shard_core_loop(struct shard_set *set);

/* Next proposal from shard k, or NULL. */
struct shard_msg *shard_core_pop(struct shard_set *set, unsigned k);

/* Sends a reply to the shard named in its tag (ownership passes). */
void shard_core_reply(struct shard_set *set, struct shard_msg *m);

/* Wakes every shard that was sent replies since the last flush; retries
 * replies that found a mailbox full. */
void shard_core_flush(struct shard_set *set);

/* true while some reply still waits for room in a shard's mailbox. */
bool shard_core_replies_waiting(struct shard_set *set);

#endif
