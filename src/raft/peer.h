/*
 * peer — the Raft peer transport: carries struct raft_msg values and
 * snapshot files between cetcd members over TCP, on the core's io_uring
 * loop.
 *
 * Each member dials every other member it knows and sends only on the
 * connections it dialed; it receives only on connections it accepted. So a
 * pair of members has two one-way TCP connections and nothing needs
 * tie-breaking. The first frame on a dialed connection is a Hello {cluster
 * ID, from, to}; the acceptor closes connections from another cluster or
 * meant for another member. Frames are length-prefixed protobuf-c messages
 * (proto/raftpb.proto; the layout is at the top of peer.c).
 *
 * Delivery is best effort, as Raft expects: a message is dropped (and
 * on_unreachable reported) when its member is unknown, its send queue is
 * full, or its connection fails; nothing ever blocks. Messages that are
 * delivered arrive in the order they were sent. A failed connection is
 * redialled with a backoff of 100 ms doubling to 2 s.
 *
 * Threading: a struct peer_net belongs to the thread that owns its
 * ring_loop (the core). Every call, and every callback, happens on that
 * thread. The net only queues SQEs with ring_sqe(); the loop owner submits
 * them and hands back every completion whose op is in [op_base, op_base +
 * PEER_OPS) to peer_cqe(). Callbacks may call peer_send(),
 * peer_send_snapshot() and peer_mark_removed(), not peer_net_destroy()
 * or peer_remove_member().
 *
 * A member joining a running cluster (etcd's --initial-cluster-state
 * existing) learns the cluster ID and the member list before it starts
 * Raft with peer_fetch_members(): a short connection whose first frame is
 * a MembersRequest instead of a Hello, answered with one MembersResponse
 * (the blob from on_members) and then closed.
 *
 * A member removed from the cluster may not learn it through Raft (the
 * leader stopped sending to it before it applied the change) and would
 * campaign forever at members that ignore it. As etcd answers its peer
 * requests with HTTP 410, a net that was told of the removal
 * (peer_mark_removed) answers that member's Hello with one Removed frame
 * and closes; the removed member's net reports it with on_removed. These
 * two replies are the only frames an acceptor ever writes.
 *
 * Limits: PEER_MEMBERS_MAX dialed connections (one per member),
 * PEER_ACCEPTED_MAX accepted ones (more are refused), a send queue of at
 * most queue_bytes_max (plus the one frame that crossed it) per member,
 * frames of at most frame_bytes_max, a member list blob of at most
 * PEER_MEMBERS_BYTES_MAX, PEER_REMOVED_MAX removed member IDs remembered.
 */
#ifndef CETCD_PEER_H
#define CETCD_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"

struct ring_loop;

#define PEER_OPS               8  /* completion ops used: op_base .. op_base + PEER_OPS - 1 */
#define PEER_MEMBERS_MAX       16 /* other members known (dialed connections) */
#define PEER_ACCEPTED_MAX      64 /* accepted connections at once */
#define PEER_LISTEN_MAX        8  /* listen URLs */
#define PEER_URLS_MAX          8  /* peer URLs per member */
#define PEER_URL_BYTES         256
#define PEER_CHUNK_BYTES       (1u << 20) /* snapshot bytes per chunk */
#define PEER_QUEUE_DEFAULT     (64u << 20)
#define PEER_FRAME_DEFAULT     (128u << 20)
#define PEER_MEMBERS_BYTES_MAX (1u << 20) /* member list blob in a MembersResponse */
#define PEER_REMOVED_MAX       64         /* removed member IDs kept; the oldest goes */

struct peer_net;

/* Called on the loop thread, from peer_cqe() or peer_send*(). */
struct peer_ops {
    /* A Raft message arrived; m and its entries are valid during the call
     * only. RAFT_MSG_SNAP never comes here (see on_snapshot). */
    void (*on_msg)(void *arg, const struct raft_msg *m);
    /* A RAFT_MSG_SNAP whose snapshot file arrived complete at path (a
     * file in cfg.snap_recv_dir, not fsynced). The callee owns the file:
     * it renames or unlinks it. */
    void (*on_snapshot)(void *arg, const struct raft_msg *m, const char *path);
    /* The streaming started by peer_send_snapshot() finished (ok: the
     * file and the SNAP message were handed to the kernel) or failed. */
    void (*on_snapshot_sent)(void *arg, uint64_t to, bool ok);
    /* A connection to `to` failed or a message to it was dropped. */
    void (*on_unreachable)(void *arg, uint64_t to);
    /* Optional (NULL: such requests are refused by closing). A joining
     * member asked for the member list: 0 with *blob a malloc'd
     * serialisation of it (*len <= PEER_MEMBERS_BYTES_MAX; the net frees
     * it once sent, or at once when too large), or -1 to refuse. The
     * response carries cfg.cluster_id with the blob. */
    int (*on_members)(void *arg, uint8_t **blob, size_t *len);
    /* Optional (NULL: not reported). Member `by` sent Removed on our
     * connection to it: this member has been removed from the cluster
     * (etcd: "the member has been permanently removed from the
     * cluster"). Called at most once per net; the connection is then
     * handled as failed (on_unreachable, redialled with backoff). */
    void (*on_removed)(void *arg, uint64_t by);
};

struct peer_config {
    uint64_t self_id;
    uint64_t cluster_id;
    /* "http://127.0.0.1:2380" form, as etcd's --listen-peer-urls.
     * https:// is refused ("TLS peer URLs are not supported yet"). */
    const char *listen_urls[PEER_LISTEN_MAX];
    unsigned n_listen_urls;
    struct ring_loop *loop; /* the owner's loop; the net only queues SQEs */
    unsigned op_base;       /* op_base + PEER_OPS - 1 <= 255 */
    const char *snap_recv_dir;
    size_t queue_bytes_max; /* per member send queue; 0: PEER_QUEUE_DEFAULT */
    size_t frame_bytes_max; /* largest frame sent or accepted; 0: PEER_FRAME_DEFAULT */
    /* A busy listen port is retried this long before start-up fails (a
     * server that just died may still hold it); 0: fail at once. */
    unsigned bind_wait_ms;
};

/* Binds the listeners now (a busy port fails here, with a message like
 * etcd's "listen tcp 127.0.0.1:2380: bind: address already in use") and
 * arms their accepts. 0, or -1 with err filled in. */
int peer_net_create(struct peer_net **out, const struct peer_config *cfg,
                    const struct peer_ops *ops, void *arg, char *err, size_t err_len);

/* Closes everything at once, synchronously cancelling the net's
 * operations in flight (no callback fires). Completions of the net that
 * are still in the CQ afterwards must not be passed to peer_cqe(). */
void peer_net_destroy(struct peer_net *n);

/* Adds member id or updates its peer URLs ("http://host:port"; names are
 * resolved now). URLs are tried in order, moving on after a failed
 * connection. Changed URLs close the current connection. 0, or -1 (bad or
 * unresolvable URL, https, too many members, id is self or RAFT_NONE). */
int peer_set_member(struct peer_net *n, uint64_t id, const char *const *urls, unsigned n_urls);

/* Forgets member id: its queue is dropped, its connection closed, a
 * snapshot in progress reported failed. */
void peer_remove_member(struct peer_net *n, uint64_t id);

/* Remembers that member id was removed from the cluster (at start-up for
 * the removed IDs kept, and whenever one is removed): its Hellos are
 * answered with Removed, and its connections to us open now are answered
 * so too (or, in the middle of a snapshot chunk, just closed). Nothing it
 * sends is delivered any more. Not implied by peer_remove_member(), nor
 * does it imply it. At most PEER_REMOVED_MAX IDs are kept, the oldest
 * forgotten first; RAFT_NONE and self are ignored. */
void peer_mark_removed(struct peer_net *n, uint64_t id);

/* Encodes m now (everything is copied) and queues it for m->to. 0 queued;
 * -1 dropped (unknown member, queue full, frame too large), and then
 * on_unreachable(m->to) has been called. RAFT_MSG_SNAP goes through
 * peer_send_snapshot() instead. */
int peer_send(struct peer_net *n, const struct raft_msg *m);

/* Streams the file at path to m->to in chunks of at most
 * PEER_CHUNK_BYTES, each queued only while that member's send queue is
 * nearly empty (so heartbeats keep flowing), then m (a RAFT_MSG_SNAP).
 * One snapshot per member at a time. 0: started, on_snapshot_sent() will
 * report the result exactly once; -1: not started (unknown member, one
 * already in progress, file unreadable), no callback. */
int peer_send_snapshot(struct peer_net *n, const struct raft_msg *m, const char *path);

/* A completion whose op is in [op_base, op_base + PEER_OPS). */
void peer_cqe(struct peer_net *n, uint64_t user_data, int res);

/* Once per loop turn, after the turn's peer_send calls: starts sends (one
 * in flight per connection, gathering the queued frames into one
 * sendmsg), snapshot chunk reads, connects and reconnects. */
void peer_turn(struct peer_net *n, uint64_t now_ms);

/* true while queued frames wait that peer_turn() would hand to the kernel
 * now (the loop should not sleep). */
bool peer_busy(const struct peer_net *n);

/* For start-up, before any loop runs; blocking, any thread, no net
 * needed. Asks the members at urls ("http://host:port", tried in order)
 * for the cluster ID and the member list, as etcd does over the peer URLs
 * of an existing cluster. The whole call takes at most about timeout_ms
 * (plus name resolution); each URL gets an equal share of the time that is
 * left, so one silent member does not use up the time of the others.
 * 0 with the first answer: *cluster_id, and *blob (malloc'd, never NULL;
 * the caller frees it) of *len bytes as the answering on_members gave it.
 * -1 with err like etcd's "could not retrieve cluster information from
 * the given URLs", followed by what failed at each URL. */
int peer_fetch_members(const char *const *urls, unsigned n_urls, uint64_t timeout_ms,
                       uint64_t *cluster_id, uint8_t **blob, size_t *len, char *err,
                       size_t err_len);

#endif
