/*
 * rpc — the client-facing wire API: HTTP/2 (nghttp2) sessions, gRPC framing,
 * and the etcd v3 service handlers.
 *
 * Two halves:
 *  - rpc_conn: one HTTP/2 server session per client connection. It takes
 *    the bytes the shard read, hands complete unary gRPC requests to the
 *    shard (rpc_conn_ops.on_request), takes replies (rpc_conn_reply), and
 *    produces bytes for the shard to send. Streaming calls (Watch,
 *    LeaseKeepAlive, Observe) get their messages one by one as they arrive
 *    (on_stream_*) and send any number back (rpc_conn_stream_send/_end).
 *    It does no I/O itself.
 *  - rpc_dispatch: decodes one request, checks it, and either answers it at
 *    once (reads, errors, status) or turns it into a proposal for the core.
 *    rpc_apply is the core's side: it applies a committed proposal to the
 *    MVCC index and encodes the response.
 *
 * Threading: an rpc_conn belongs to the shard thread that owns the socket.
 * rpc_dispatch runs on that shard; rpc_apply runs on the core only.
 * struct rpc_member is written by the core (atomics) and read everywhere.
 */
#ifndef CETCD_RPC_H
#define CETCD_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mvcc_store;
struct mvcc_reader;
struct lease_table;

/* gRPC status codes (the subset of the gRPC spec this server sends). */
enum rpc_code {
    RPC_OK = 0,
    RPC_CANCELLED = 1,
    RPC_UNKNOWN = 2,
    RPC_INVALID_ARGUMENT = 3,
    RPC_DEADLINE_EXCEEDED = 4,
    RPC_NOT_FOUND = 5,
    RPC_FAILED_PRECONDITION = 9,
    RPC_OUT_OF_RANGE = 11,
    RPC_UNIMPLEMENTED = 12,
    RPC_INTERNAL = 13,
    RPC_UNAVAILABLE = 14,
    RPC_RESOURCE_EXHAUSTED = 8,
};

/* Overhead gRPC allows above --max-request-bytes before it refuses a
 * message outright (etcd's server sets its receive limit to this sum). */
#define RPC_GRPC_OVERHEAD_BYTES (512u * 1024u)
/* HTTP/2 limits of one connection. */
#define RPC_STREAMS_MAX    256u
#define RPC_PATH_BYTES_MAX 128u

/* ---- the member as the API reports it ---- */

#define RPC_URLS_MAX 8

struct rpc_member {
    /* Set once before the shards start; read-only afterwards. */
    uint64_t cluster_id;
    uint64_t member_id;
    const char *name;
    const char *peer_urls[RPC_URLS_MAX];
    unsigned n_peer_urls;
    const char *client_urls[RPC_URLS_MAX];
    unsigned n_client_urls;
    uint64_t max_request_bytes;
    uint64_t max_txn_ops;
    uint64_t quota_bytes; /* --quota-backend-bytes (0: etcd's default 2 GiB) */
    /* Written by the core only, read by every shard. */
    uint64_t alarms; /* bit (1 << AlarmType) set while that alarm is active here */
    uint64_t raft_term;
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t leader;
    uint64_t db_size_bytes;
    /* Members (voters and learners) in the cluster. With more than one, a
     * linearizable read first asks the core for a read index. */
    uint64_t cluster_size;
    uint64_t is_learner; /* 1 while this member is a learner */
};

/* Atomic accessors for the core-written fields. */
uint64_t rpc_member_load(const uint64_t *field);
void rpc_member_store(uint64_t *field, uint64_t v);

/* ---- connections ---- */

struct rpc_conn;

struct rpc_conn_ops {
    /* A complete unary request: msg is the protobuf body (without the
     * 5-byte gRPC prefix), valid during the call only. */
    void (*on_request)(void *arg, struct rpc_conn *c, int32_t stream_id, const char *path,
                       const uint8_t *msg, size_t len);

    /* ---- streaming calls (all optional: is_streaming NULL, none) ----
     * A path for which is_streaming() is true is a streaming call: it does
     * not wait for the client's END_STREAM. Life of one such stream:
     *   on_stream_open       once, when its request HEADERS are complete
     *                        (a call that is not gRPC - no POST, not
     *                        application/grpc - is refused and never opens);
     *   on_stream_msg        once per complete client message, in order
     *                        (msg without the 5-byte prefix, valid during
     *                        the call only);
     *   on_stream_half_close when the client ended its side (END_STREAM)
     *                        while the server has not ended the stream: no
     *                        more messages will come, sending still works;
     *   on_stream_close      exactly once per opened stream, when it is gone
     *                        for good: both sides ended, the client reset
     *                        it, or the connection is destroyed. Per-stream
     *                        state is freed here; sends fail from now on.
     * The callbacks run inside rpc_conn_feed / rpc_conn_output /
     * rpc_conn_destroy and may call rpc_conn_stream_send / _end (but not
     * rpc_conn_destroy). */
    bool (*is_streaming)(const char *path);
    void (*on_stream_open)(void *arg, struct rpc_conn *c, int32_t stream_id, const char *path);
    void (*on_stream_msg)(void *arg, struct rpc_conn *c, int32_t stream_id, const char *path,
                          const uint8_t *msg, size_t len);
    void (*on_stream_half_close)(void *arg, struct rpc_conn *c, int32_t stream_id);
    void (*on_stream_close)(void *arg, struct rpc_conn *c, int32_t stream_id);
};

/* Bounds on a streaming call's queued output (bytes handed to
 * rpc_conn_stream_send, prefixes included, not yet taken by HTTP/2 - a
 * client that does not read, or a closed flow-control window, keeps them
 * here). A send is refused once the stream holds RPC_STREAM_OUT_BYTES_MAX
 * or RPC_STREAM_OUT_MSGS_MAX messages, or the connection's streams hold
 * RPC_CONN_STREAM_OUT_BYTES_MAX together; one accepted message may
 * overshoot a byte bound by its own size. */
#define RPC_STREAM_OUT_BYTES_MAX      (4u << 20)
#define RPC_STREAM_OUT_MSGS_MAX       4096u
#define RPC_CONN_STREAM_OUT_BYTES_MAX (16u << 20)

/* max_msg_bytes: the largest gRPC message accepted on a stream. */
struct rpc_conn *rpc_conn_create(const struct rpc_conn_ops *ops, void *arg, size_t max_msg_bytes);
void rpc_conn_destroy(struct rpc_conn *c);

/* Feeds bytes read from the socket. Returns 0, or -1 if the connection
 * must be closed (broken preface, protocol error). */
int rpc_conn_feed(struct rpc_conn *c, const uint8_t *buf, size_t len);

/* Moves bytes to send into the connection's output buffer and returns it
 * (*len bytes at the returned pointer; *len 0 when there is nothing). The
 * caller sends some and calls rpc_conn_consumed(). */
const uint8_t *rpc_conn_output(struct rpc_conn *c, size_t *len);
void rpc_conn_consumed(struct rpc_conn *c, size_t n);

/* false once the session has nothing more to read or write (GOAWAY done,
 * or the peer closed): the shard closes the socket. */
bool rpc_conn_alive(struct rpc_conn *c);

/* Answers a request. code == RPC_OK: body (a protobuf message, may be
 * empty) becomes one gRPC message followed by trailers; otherwise a
 * trailers-only error with `message`. Takes ownership of body (malloc'd,
 * may be NULL). A stream the client has reset is answered silently. */
void rpc_conn_reply(struct rpc_conn *c, int32_t stream_id, int code, const char *message,
                    uint8_t *body, size_t len);

/* Did the request on this stream carry etcd's "hasleader: true" metadata
 * (the client wants an error at once rather than a wait without a
 * leader)? */
bool rpc_conn_require_leader(struct rpc_conn *c, int32_t stream_id);

/* Streams waiting for a reply (for bounds and tests). */
unsigned rpc_conn_pending(const struct rpc_conn *c);

/* ---- streaming calls ---- */

/* Queues one gRPC message on an open streaming call without ending it;
 * the response HEADERS go out before the first message. Always takes
 * ownership of body (malloc'd, may be NULL when len is 0): on failure it
 * is freed. Returns 0, or -1 when the message is dropped: the stream is
 * gone or already ended by the server, or an output bound is reached (see
 * RPC_STREAM_OUT_BYTES_MAX; check rpc_conn_stream_queued() to pause a
 * producer before that happens). */
int rpc_conn_stream_send(struct rpc_conn *c, int32_t stream_id, uint8_t *body, size_t len);

/* Ends a streaming call: once every queued message is out, trailers with
 * grpc-status `code` and grpc-message `message` (NULL: none) end the
 * stream. With nothing sent yet it is a trailers-only answer at once. If
 * the client has not ended its side, RST_STREAM(NO_ERROR) follows, as
 * grpc-go does. No effect on a stream that is gone or already ended. */
void rpc_conn_stream_end(struct rpc_conn *c, int32_t stream_id, int code, const char *message);

/* Bytes queued on a streaming call and not yet taken by HTTP/2 (0 for a
 * stream that is gone). */
size_t rpc_conn_stream_queued(struct rpc_conn *c, int32_t stream_id);

/* The application's pointer for an open streaming call (NULL until set,
 * and for a stream that is gone); still there during the stream's
 * on_stream_close, so the application can free what it points to. */
void rpc_conn_stream_set_user(struct rpc_conn *c, int32_t stream_id, void *user);
void *rpc_conn_stream_user(struct rpc_conn *c, int32_t stream_id);

/* Streaming calls opened and not yet closed (for bounds and tests). */
unsigned rpc_conn_streams_open(const struct rpc_conn *c);

/* ---- service dispatch (shard side) ---- */

/* Entry types in the replicated log (first byte of every entry payload;
 * the rest is the request's protobuf encoding). Format in apply.c. */
enum rpc_entry_type {
    RPC_ENTRY_NOOP = 0,
    RPC_ENTRY_PUT = 1,
    RPC_ENTRY_DELETE_RANGE = 2,
    RPC_ENTRY_TXN = 3,
    RPC_ENTRY_COMPACT = 4,
    RPC_ENTRY_ALARM = 5,
    RPC_ENTRY_MEMBER_ATTR = 6,       /* a member publishes its name and client URLs (the core's) */
    RPC_ENTRY_MEMBER_UPDATE = 7,     /* MemberUpdate: new peer URLs of a member (the core's) */
    RPC_ENTRY_LEASE_GRANT = 8,       /* LeaseGrantRequest, its ID chosen (never 0) */
    RPC_ENTRY_LEASE_REVOKE = 9,      /* LeaseRevokeRequest (a client's, or the leader's expiry) */
    RPC_ENTRY_LEASE_CHECKPOINT = 10, /* LeaseCheckpointRequest, remaining_TTL in ms */
    /* Types from here on are requests to the local core, never logged. */
    RPC_LOCAL_FIRST = 128,
    RPC_LOCAL_DEFRAG = 128,
    RPC_LOCAL_READ = 129,        /* a read waiting for a read index: rpc_read_barrier_encode */
    RPC_LOCAL_MEMBER_LIST = 130, /* MemberList, answered from the core's member list */
    /* Membership and leadership requests, [type][request protobuf],
     * carried out by the core. */
    RPC_LOCAL_MEMBER_ADD = 131,
    RPC_LOCAL_MEMBER_REMOVE = 132,
    RPC_LOCAL_MEMBER_UPDATE = 133,
    RPC_LOCAL_MEMBER_PROMOTE = 134,
    RPC_LOCAL_MOVE_LEADER = 135,
    /* Lease requests answered by the core from its lease table,
     * [type][request protobuf] (rpc_lease_local). */
    RPC_LOCAL_LEASE_TTL = 136,       /* LeaseTimeToLiveRequest */
    RPC_LOCAL_LEASE_LEASES = 137,    /* LeaseLeasesRequest */
    RPC_LOCAL_LEASE_KEEPALIVE = 138, /* one LeaseKeepAliveRequest of a KeepAlive stream */
};

/* After a reply, what the core still has to do before it may send it. */
enum rpc_wait {
    RPC_WAIT_NONE = 0,
    RPC_WAIT_COMPACTION = 1, /* physical compaction done */
    RPC_WAIT_SNAPSHOT = 2,   /* a fresh snapshot durable (defragment) */
};

/* RPC_ACT_READ_BARRIER: a linearizable read that must wait for a read
 * index; the shard sends it to the core (rpc_read_barrier_encode) and
 * dispatches it again, with env->linearized set, once the core says so. */
enum rpc_action { RPC_ACT_REPLY, RPC_ACT_PROPOSE, RPC_ACT_READ_BARRIER };

struct rpc_result {
    int action;          /* enum rpc_action */
    int code;            /* RPC_ACT_REPLY: enum rpc_code */
    const char *message; /* RPC_ACT_REPLY with code != OK: static string */
    uint8_t *body;       /* REPLY: encoded response; PROPOSE: entry payload */
    size_t len;
    int wait;      /* core: enum rpc_wait before replying */
    uint8_t *side; /* an extra entry to propose, answered to nobody */
    size_t side_len;
};

struct rpc_env {
    struct rpc_member *member;
    struct mvcc_store *store;
    struct mvcc_reader *reader; /* the calling thread's own */
    bool linearized;            /* this read already waited for its read index */
    bool require_leader;        /* the request asked for a leader (hasleader) */
    /* The replicated lease table: the core's only (apply and the leader's
     * timers); NULL in every shard's env. */
    struct lease_table *leases;
};

/* Handles one request for `path`. Always fills *out. */
void rpc_dispatch(const struct rpc_env *env, const char *path, const uint8_t *msg, size_t len,
                  struct rpc_result *out);

/* A read held for a read index, as the payload the core gets:
 *   OFFSET SIZE MEANING
 *   0      1    RPC_LOCAL_READ
 *   1      2    path length p (little-endian)
 *   3      p    the method path
 *   3+p    n    the request's protobuf encoding
 * encode returns a malloc'd buffer (NULL if out of memory); decode points
 * into buf and returns 0, or -1 if malformed. */
uint8_t *rpc_read_barrier_encode(const char *path, const uint8_t *msg, size_t len, size_t *out_len);
int rpc_read_barrier_decode(const uint8_t *buf, size_t len, char *path, size_t path_cap,
                            const uint8_t **msg, size_t *msg_len);

/* ---- apply (core side) ---- */

/* The response to a Defragment, once the core has done it. */
void rpc_defragment_reply(const struct rpc_env *env, struct rpc_result *out);

/* Applies one committed entry payload to env->store. When `want_reply`,
 * fills *out with the response (RPC_ACT_REPLY); otherwise only applies
 * (WAL replay). Returns 0, or -1 if the entry cannot be decoded (a
 * corrupt log: the caller stops). */
int rpc_apply(const struct rpc_env *env, const uint8_t *entry, size_t len, bool want_reply,
              struct rpc_result *out);

/* Core: answers a RPC_LOCAL_LEASE_* request (req[0] is its type) from
 * env->leases at the core's clock now_ms (monotonic ms), as etcd's leader
 * does. A KeepAlive on a member that is not leader is answered
 * UNAVAILABLE, RPC_MSG_NOT_LEADER: it must go to the leader. out->side may
 * carry an entry to propose (a KeepAlive clearing a checkpoint). */
void rpc_lease_local(const struct rpc_env *env, const uint8_t *req, size_t len, int64_t now_ms,
                     struct rpc_result *out);
#define RPC_MSG_NOT_LEADER "etcdserver: not leader"

/* Default of --quota-backend-bytes, as etcd's. */
#define RPC_QUOTA_DEFAULT_BYTES (2ull << 30)
/* Default of --max-txn-ops. */
#define RPC_MAX_TXN_OPS_DEFAULT 128

/* The etcd version this API speaks, reported by Status and --version. */
#define RPC_ETCD_VERSION "3.5.0"

#endif
