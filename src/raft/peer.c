/*
 * peer.c — the Raft peer transport on the core's io_uring loop (peer.h):
 * listeners, one dialed (send-only) connection per member, accepted
 * (receive-only) connections, snapshot streaming both ways.
 *
 * Wire format. Each direction of a connection is a sequence of frames:
 *
 *   OFFSET  SIZE  MEANING
 *   0       4     N, the length of the protobuf bytes, little-endian,
 *                 1 <= N <= frame_bytes_max (else the connection closes)
 *   4       N     one cetcdpeer.Frame (proto/raftpb.proto): exactly one of
 *                 Hello, Message, SnapChunk, MembersRequest,
 *                 MembersResponse or Removed
 *
 *   FRAME            DIRECTION            WHEN
 *   Hello            dialer -> acceptor   first on a Raft connection
 *   Message          dialer -> acceptor   after the Hello
 *   SnapChunk        dialer -> acceptor   after the Hello
 *   MembersRequest   dialer -> acceptor   first and only frame of a
 *                                         members connection
 *   MembersResponse  acceptor -> dialer   the one answer to it; N is at
 *                                         most PEER_MEMBERS_FRAME_MAX
 *   Removed          acceptor -> dialer   the one answer to the Hello of
 *                                         a removed member (or sent when
 *                                         it is marked removed); N is at
 *                                         most PEER_WATCH_FRAME_MAX
 *
 * A Raft connection (peer_set_member):
 *
 *   dialer                                     acceptor
 *     | Hello{cluster_id, from, to}  --------->  | checks cluster_id, to
 *     | Message ...                  --------->  | on_msg (from must match)
 *     | SnapChunk{0, ..}..{k, .., last} ------>  | written to a temp file
 *     | Message{type SNAP}           --------->  | on_snapshot(path)
 *     | (reads only to see EOF, or the one Removed frame below)
 *
 * A Raft connection from a member marked removed (peer_mark_removed):
 *
 *   dialer                                     acceptor
 *     | Hello{cluster_id, from, to}  --------->  | cluster_id matches, from
 *     | Message ...                  --------->  | is removed: nothing more
 *     |                                          | is read or delivered
 *     | <--------- Removed{}
 *     | <--------- EOF                           | closes (or after
 *     | on_removed(acceptor)                     | PEER_REPLY_MS unsent)
 *
 * A members connection (peer_fetch_members, a member joining with
 * --initial-cluster-state existing):
 *
 *   dialer                                     acceptor
 *     | MembersRequest{}             --------->  | on_members() -> blob
 *     | <--------- MembersResponse{cfg.cluster_id, blob}
 *     | <--------- EOF                           | closes (also when it has
 *     |                                          | no on_members, when that
 *     |                                          | fails, or after
 *     |                                          | PEER_REPLY_MS unsent)
 *
 * On Raft connections only the dialer sends and only the acceptor reads,
 * so each pair of members uses two connections and there is no
 * tie-breaking. A dialed connection keeps a small recv armed (at most
 * PEER_LEN_BYTES + PEER_WATCH_FRAME_MAX bytes held) to learn at once that
 * the acceptor closed it or said Removed; anything else from the acceptor
 * is taken as a close. The MembersResponse and Removed are the only
 * frames an acceptor ever writes; it stops reading before it does.
 *
 * Threading: everything here belongs to the thread owning cfg.loop. Every
 * SQE's user_data is ring_ud(op_base + op, slot, generation); a slot's
 * generation moves on with each connection, so a completion of an earlier
 * connection in a reused slot is ignored.
 *
 * Invariants:
 *  - A connection's fd is closed, its frames freed and its slot released
 *    only when none of its operations is in flight: closing shuts the
 *    socket down (which completes its pending operations) and cancels
 *    them, then waits for their completions.
 *  - At most one send, one connect and one watch recv per dialed
 *    connection (the watch holds at most one small frame); at most one
 *    recv, one snapshot write or one reply send per accepted connection
 *    (parsing stops while a chunk is being written, so frames are
 *    handled in order, and for good once a reply is under way); at most
 *    one snapshot read per member.
 *  - A member's queue holds at most queue_bytes_max bytes plus one frame
 *    (q_fits); a receive buffer holds at most one frame_bytes_max frame
 *    plus its prefix (PEER_HELLO_BYTES_MAX before the Hello).
 */
#include "peer.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "le.h"
#include "peer_int.h"
#include "ring.h"

enum peer_op {
    OP_ACCEPT = 0,    /* slot: listener */
    OP_CONNECT = 1,   /* slot: member */
    OP_SEND = 2,      /* slot: member */
    OP_WATCH = 3,     /* slot: member; EOF watch on the dialed connection */
    OP_RECV = 4,      /* slot: accepted connection */
    OP_SNAP_READ = 5, /* slot: member; gen: snapshot generation */
    OP_IN_WRITE = 6,  /* slot: accepted connection; snapshot chunk or reply */
    OP_CANCEL = 7,    /* our cancels; nothing to do */
};

#define PEER_IOV_MAX         64           /* frames gathered into one sendmsg */
#define PEER_GATHER_BYTES    (4u << 20)   /* ... and bytes, past the first frame */
#define PEER_RBUF_BYTES      (128u << 10) /* receive buffer between large frames */
#define PEER_SNAP_LOW_BYTES  (256u << 10) /* next chunk only below this much queued */
#define PEER_BACKOFF_MIN_MS  100
#define PEER_BACKOFF_MAX_MS  2000
#define PEER_STABLE_MS       1000 /* a connection up this long resets the backoff */
#define PEER_CONNECT_MS      3000 /* connect attempts give up after this */
#define PEER_USER_TIMEOUT_MS 5000 /* TCP_USER_TIMEOUT: unacked data this long kills it */
#define PEER_LISTEN_BACKLOG  128
#define PEER_STACK_ENTRIES   64
#define PEER_HELLO_BYTES_MAX 1024 /* largest frame before the Hello is accepted */
#define PEER_REPLY_MS        5000 /* a reply (MembersResponse, Removed) not sent by then: closed */
#define PEER_WATCH_BYTES     (PEER_LEN_BYTES + PEER_WATCH_FRAME_MAX)

static_assert(PEER_OPS == OP_CANCEL + 1, "PEER_OPS counts the ops");

enum out_state {
    OUT_IDLE = 0,       /* no socket; dial at next_dial_ms */
    OUT_CONNECTING = 1, /* connect in flight */
    OUT_UP = 2,         /* Hello queued first; sending */
    OUT_CLOSING = 3,    /* shut down; waiting for operations in flight */
};

struct peer_addr {
    struct sockaddr_storage sa;
    socklen_t len;
};

/* A snapshot being streamed to a member. fd and buf are held until no
 * read is in flight; active until the result is reported. */
struct snap_out {
    bool active;
    bool read_inflight;
    bool all_queued; /* last chunk and the SNAP message are queued */
    int fd;
    uint32_t gen;
    uint64_t size;
    uint64_t off; /* next byte to read */
    uint8_t *buf;
    struct peer_frame *msg; /* the SNAP message, queued after the last chunk */
};

/* A member and the connection this member dials to it. */
struct member {
    bool used;
    bool removing; /* freed once nothing is in flight */
    uint64_t id;
    uint32_t slot;
    char urls[PEER_URLS_MAX][PEER_URL_BYTES];
    struct peer_addr addrs[PEER_URLS_MAX];
    unsigned n_urls;
    unsigned url_next; /* the address dialed next */

    int fd;
    uint32_t gen;
    uint8_t state; /* enum out_state */
    bool connect_inflight;
    bool send_inflight;
    bool watch_inflight;
    bool close_failed; /* the closing connection failed (vs. was retired) */
    uint64_t connect_start_ms;
    uint64_t up_since_ms; /* 0: not up yet */
    uint64_t next_dial_ms;
    uint32_t backoff_ms;

    struct peer_frame *head; /* queued frames; the first n_sending in flight */
    struct peer_frame *tail;
    size_t q_bytes;
    size_t head_off; /* bytes of head already sent */
    struct iovec iov[PEER_IOV_MAX];
    struct msghdr msg;
    uint8_t watch_buf[PEER_WATCH_BYTES]; /* what the acceptor wrote */
    size_t watch_len;

    struct snap_out snap;
};

/* A snapshot being received on an accepted connection. */
struct snap_in {
    int fd; /* -1: none */
    bool last_seen;
    bool write_inflight;
    uint64_t written;
    Cetcdpeer__Frame *pending; /* the chunk being written */
    const uint8_t *wp;
    size_t wleft;
    char path[PATH_MAX];
};

/* An accepted connection: receive only, but for the one reply
 * (MembersResponse on a members connection, Removed to a removed member). */
struct in_conn {
    int fd;
    uint32_t slot;
    uint32_t gen;
    uint64_t from; /* 0 until the Hello */
    bool closing;
    bool recv_inflight;
    bool reply_inflight;
    struct peer_frame *reply;   /* the reply being sent; no more reading */
    size_t reply_off;           /* bytes of it sent */
    uint64_t reply_deadline_ms; /* 0: set by the next peer_turn */
    uint8_t *rbuf;
    size_t rcap;
    size_t rpos; /* next frame starts here */
    size_t rlen; /* bytes held */
    struct snap_in snap;
};

struct peer_net {
    struct peer_config cfg; /* listen_urls not kept */
    struct peer_ops ops;
    void *arg;
    char snap_dir[PATH_MAX - 64]; /* leaves room for the temp file names */
    uint64_t now_ms;              /* as of the last peer_turn */

    int listen_fds[PEER_LISTEN_MAX];
    bool accept_armed[PEER_LISTEN_MAX];
    unsigned n_listen;

    struct member members[PEER_MEMBERS_MAX];
    struct in_conn *in[PEER_ACCEPTED_MAX];
    uint32_t in_gens[PEER_ACCEPTED_MAX];

    uint64_t removed[PEER_REMOVED_MAX]; /* member IDs marked removed, a ring */
    unsigned n_removed;
    unsigned removed_next; /* the slot the next one takes (the oldest when full) */
    bool removed_reported; /* on_removed has been called */
};

/* ---- small helpers ---- */

static struct io_uring_sqe *sqe_for(struct peer_net *n, unsigned op, uint32_t slot, uint32_t gen)
{
    struct io_uring_sqe *sqe = ring_sqe(n->cfg.loop);

    io_uring_sqe_set_data64(sqe, ring_ud(n->cfg.op_base + op, slot, gen));
    return sqe;
}

static void cancel_op(struct peer_net *n, unsigned op, uint32_t slot, uint32_t gen)
{
    struct io_uring_sqe *sqe = ring_sqe(n->cfg.loop);

    io_uring_prep_cancel64(sqe, ring_ud(n->cfg.op_base + op, slot, gen), 0);
    io_uring_sqe_set_data64(sqe, ring_ud(n->cfg.op_base + OP_CANCEL, 0, 0));
}

/* Cancels every operation on fd and waits for them (peer_net_destroy). */
static void cancel_fd_sync(struct peer_net *n, int fd)
{
    struct io_uring_sync_cancel_reg reg;

    if (fd < 0)
        return;
    memset(&reg, 0, sizeof(reg));
    reg.fd = fd;
    reg.flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL;
    reg.timeout.tv_sec = 1;
    (void)io_uring_register_sync_cancel(&n->cfg.loop->uring, &reg);
}

/* Go prints errno text in lower case; etcd's messages do too. */
static void errtext(int e, char *buf, size_t len)
{
    snprintf(buf, len, "%s", strerror(e));
    if (buf[0] >= 'A' && buf[0] <= 'Z')
        buf[0] = (char)(buf[0] - 'A' + 'a');
}

/* "http://host:port[/]" -> host, port. 0, -1 malformed, -2 https. */
static int parse_url(const char *url, char *host, size_t host_len, char *port, size_t port_len)
{
    const char *p;
    const char *end;
    const char *colon;
    const char *h;
    size_t hn;
    size_t pn;

    if (strncmp(url, "https://", 8) == 0)
        return -2;
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    p = url + 7;
    end = p + strlen(p);
    if (end > p && end[-1] == '/')
        end--;
    if (*p == '[') { /* [v6]:port */
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL || close + 1 >= end || close[1] != ':')
            return -1;
        h = p + 1;
        hn = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = memrchr(p, ':', (size_t)(end - p));
        if (colon == NULL)
            return -1;
        h = p;
        hn = (size_t)(colon - p);
    }
    pn = (size_t)(end - colon - 1);
    if (hn == 0 || hn >= host_len || pn == 0 || pn > 5 || pn >= port_len)
        return -1;
    memcpy(host, h, hn);
    host[hn] = '\0';
    memcpy(port, colon + 1, pn);
    port[pn] = '\0';
    if (strspn(port, "0123456789") != pn || atoi(port) > 65535)
        return -1;
    return 0;
}

static struct addrinfo *resolve(const char *host, const char *port, bool passive)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return NULL;
    return res;
}

static void frame_list_free(struct peer_frame *f)
{
    while (f != NULL) {
        struct peer_frame *next = f->next;
        free(f);
        f = next;
    }
}

/* ---- member send queues ---- */

static void q_append(struct member *m, struct peer_frame *f)
{
    f->next = NULL;
    if (m->tail != NULL)
        m->tail->next = f;
    else
        m->head = f;
    m->tail = f;
    m->q_bytes += f->len;
}

/* Hello goes first on a fresh connection: nothing is sent yet. */
static void q_prepend(struct member *m, struct peer_frame *f)
{
    assert(m->head_off == 0 && !m->send_inflight);
    f->next = m->head;
    m->head = f;
    if (m->tail == NULL)
        m->tail = f;
    m->q_bytes += f->len;
}

/* true if anything was dropped. */
static bool q_drop(struct member *m)
{
    bool any = m->head != NULL;

    frame_list_free(m->head);
    m->head = m->tail = NULL;
    m->q_bytes = 0;
    m->head_off = 0;
    return any;
}

/* Frees the frames the kernel has taken; true if the SNAP message ending
 * a snapshot stream was among them. */
static bool q_consume(struct member *m, size_t sent)
{
    bool snap_done = false;

    while (sent > 0) {
        struct peer_frame *f = m->head;
        size_t rest;

        assert(f != NULL);
        rest = f->len - m->head_off;
        if (sent < rest) {
            m->head_off += sent;
            break;
        }
        sent -= rest;
        m->head_off = 0;
        m->head = f->next;
        if (m->head == NULL)
            m->tail = NULL;
        m->q_bytes -= f->len;
        snap_done |= f->kind == PEER_FRAME_SNAP_MSG;
        free(f);
    }
    return snap_done;
}

/* A frame is admitted while the queue is below its bound, so a queue
 * holds at most queue_bytes_max + one frame, and even a frame larger than
 * the bound (a 64 MiB entry) gets in once the queue has drained a little. */
static bool q_fits(const struct peer_net *n, const struct member *m)
{
    return m->q_bytes < n->cfg.queue_bytes_max;
}

/* ---- members ---- */

static struct member *member_find(struct peer_net *n, uint64_t id)
{
    unsigned i;

    for (i = 0; i < PEER_MEMBERS_MAX; i++) {
        struct member *m = &n->members[i];
        if (m->used && !m->removing && m->id == id)
            return m;
    }
    return NULL;
}

static struct member *member_lookup(struct peer_net *n, uint32_t slot, uint32_t gen)
{
    struct member *m;

    if (slot >= PEER_MEMBERS_MAX)
        return NULL;
    m = &n->members[slot];
    return m->used && m->gen == gen ? m : NULL;
}

static void member_maybe_free(struct member *m)
{
    uint32_t gen = m->gen;
    uint32_t snap_gen = m->snap.gen;
    uint32_t slot = m->slot;

    if (!m->removing || m->state != OUT_IDLE || m->snap.read_inflight || m->snap.fd >= 0)
        return;
    assert(m->head == NULL && m->snap.buf == NULL && m->snap.msg == NULL);
    memset(m, 0, sizeof(*m));
    m->fd = -1;
    m->snap.fd = -1;
    m->gen = gen;
    m->snap.gen = snap_gen;
    m->slot = slot;
}

/* ---- snapshot streaming out ---- */

static void out_start_send(struct peer_net *n, struct member *m);

static void snap_out_release(struct member *m)
{
    struct snap_out *s = &m->snap;

    if (s->read_inflight)
        return;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    free(s->buf);
    s->buf = NULL;
    free(s->msg);
    s->msg = NULL;
}

static void snap_out_done(struct peer_net *n, struct member *m, bool ok)
{
    if (!m->snap.active)
        return;
    m->snap.active = false;
    snap_out_release(m);
    n->ops.on_snapshot_sent(n->arg, m->id, ok);
}

/* Queues the next chunk (and after the last one the SNAP message) once
 * the queue is nearly empty, so regular messages never wait behind more
 * than about one chunk. */
static void snap_out_pump(struct peer_net *n, struct member *m)
{
    struct snap_out *s = &m->snap;
    struct io_uring_sqe *sqe;
    uint64_t left;

    if (!s->active || s->read_inflight || s->all_queued || m->state != OUT_UP ||
        m->q_bytes > PEER_SNAP_LOW_BYTES)
        return;
    left = s->size - s->off;
    if (left == 0) { /* an empty file: one empty last chunk */
        struct peer_frame *f = peer_encode_chunk(0, NULL, 0, true, n->cfg.frame_bytes_max);
        if (f == NULL) {
            snap_out_done(n, m, false);
            return;
        }
        q_append(m, f);
        q_append(m, s->msg);
        s->msg = NULL;
        s->all_queued = true;
        return;
    }
    sqe = sqe_for(n, OP_SNAP_READ, m->slot, s->gen);
    io_uring_prep_read(sqe, s->fd, s->buf,
                       (unsigned)(left < PEER_CHUNK_BYTES ? left : PEER_CHUNK_BYTES), s->off);
    s->read_inflight = true;
}

static void on_snap_read(struct peer_net *n, struct member *m, int res)
{
    struct snap_out *s = &m->snap;
    struct peer_frame *f;
    bool last;

    s->read_inflight = false;
    if (!s->active) { /* failed while reading */
        snap_out_release(m);
        member_maybe_free(m);
        return;
    }
    if (res <= 0) {
        snap_out_done(n, m, false);
        return;
    }
    last = s->off + (uint64_t)res == s->size;
    f = peer_encode_chunk(s->off, s->buf, (size_t)res, last, n->cfg.frame_bytes_max);
    if (f == NULL) {
        snap_out_done(n, m, false);
        return;
    }
    s->off += (uint64_t)res;
    q_append(m, f);
    if (last) {
        q_append(m, s->msg);
        s->msg = NULL;
        s->all_queued = true;
    }
    out_start_send(n, m);
}

/* ---- dialed connections ---- */

static void out_start_send(struct peer_net *n, struct member *m)
{
    struct io_uring_sqe *sqe;
    struct peer_frame *f = m->head;
    size_t bytes = 0;
    unsigned i = 0;

    if (m->state != OUT_UP || m->send_inflight || f == NULL)
        return;
    m->iov[i].iov_base = f->data + m->head_off;
    m->iov[i].iov_len = f->len - m->head_off;
    for (i = 1, f = f->next; f != NULL && i < PEER_IOV_MAX && bytes < PEER_GATHER_BYTES;
         i++, f = f->next) {
        m->iov[i].iov_base = f->data;
        m->iov[i].iov_len = f->len;
        bytes += f->len;
    }
    memset(&m->msg, 0, sizeof(m->msg));
    m->msg.msg_iov = m->iov;
    m->msg.msg_iovlen = i;
    sqe = sqe_for(n, OP_SEND, m->slot, m->gen);
    io_uring_prep_sendmsg(sqe, m->fd, &m->msg, MSG_NOSIGNAL);
    m->send_inflight = true;
}

static void out_arm_watch(struct peer_net *n, struct member *m)
{
    struct io_uring_sqe *sqe = sqe_for(n, OP_WATCH, m->slot, m->gen);

    assert(m->watch_len < sizeof(m->watch_buf));
    io_uring_prep_recv(sqe, m->fd, m->watch_buf + m->watch_len, sizeof(m->watch_buf) - m->watch_len,
                       0);
    m->watch_inflight = true;
}

/* Starts closing the dialed connection; out_maybe_finish completes it.
 * failed: the connection broke (vs. retired by a URL change or removal). */
static void out_close(struct peer_net *n, struct member *m, bool failed)
{
    if (m->state != OUT_CONNECTING && m->state != OUT_UP)
        return;
    m->state = OUT_CLOSING;
    m->close_failed = failed;
    shutdown(m->fd, SHUT_RDWR);
    if (m->connect_inflight)
        cancel_op(n, OP_CONNECT, m->slot, m->gen);
    if (m->send_inflight)
        cancel_op(n, OP_SEND, m->slot, m->gen);
    if (m->watch_inflight)
        cancel_op(n, OP_WATCH, m->slot, m->gen);
}

static void out_schedule(struct peer_net *n, struct member *m, bool stable)
{
    if (stable)
        m->backoff_ms = PEER_BACKOFF_MIN_MS;
    m->next_dial_ms = n->now_ms + m->backoff_ms;
    m->backoff_ms =
        m->backoff_ms * 2 > PEER_BACKOFF_MAX_MS ? PEER_BACKOFF_MAX_MS : m->backoff_ms * 2;
}

/* A connection attempt or connection is over: its frames are dropped,
 * and the owner hears of it (snapshot failed, member unreachable). */
static void out_failed(struct peer_net *n, struct member *m, bool failed, bool stable)
{
    bool dropped = q_drop(m);

    if (m->up_since_ms == 0 && m->n_urls > 0)
        m->url_next = (m->url_next + 1) % m->n_urls;
    m->up_since_ms = 0;
    out_schedule(n, m, stable);
    if (m->removing) {
        member_maybe_free(m);
        return;
    }
    snap_out_done(n, m, false);
    if (failed || dropped)
        n->ops.on_unreachable(n->arg, m->id);
}

static void out_maybe_finish(struct peer_net *n, struct member *m)
{
    bool stable;

    if (m->state != OUT_CLOSING || m->connect_inflight || m->send_inflight || m->watch_inflight)
        return;
    close(m->fd);
    m->fd = -1;
    m->state = OUT_IDLE;
    stable = m->up_since_ms != 0 && n->now_ms - m->up_since_ms >= PEER_STABLE_MS;
    out_failed(n, m, m->close_failed, stable);
}

static void out_dial(struct peer_net *n, struct member *m)
{
    const struct peer_addr *a = &m->addrs[m->url_next % m->n_urls];
    struct io_uring_sqe *sqe;
    int one = 1;
    unsigned timeout_ms = PEER_USER_TIMEOUT_MS;
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        out_failed(n, m, true, false);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, sizeof(timeout_ms));
    m->fd = fd;
    m->gen++;
    m->state = OUT_CONNECTING;
    m->connect_start_ms = n->now_ms;
    m->up_since_ms = 0;
    m->head_off = 0;
    sqe = sqe_for(n, OP_CONNECT, m->slot, m->gen);
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&a->sa, a->len);
    m->connect_inflight = true;
}

static void on_connect(struct peer_net *n, struct member *m, int res)
{
    struct peer_frame *hello;

    m->connect_inflight = false;
    if (m->state == OUT_CONNECTING && res < 0)
        out_close(n, m, true);
    if (m->state == OUT_CLOSING) {
        out_maybe_finish(n, m);
        return;
    }
    hello = peer_encode_hello(n->cfg.cluster_id, n->cfg.self_id, m->id);
    if (hello == NULL) {
        out_close(n, m, true);
        out_maybe_finish(n, m);
        return;
    }
    m->state = OUT_UP;
    m->up_since_ms = n->now_ms > 0 ? n->now_ms : 1;
    m->watch_len = 0;
    q_prepend(m, hello);
    out_arm_watch(n, m);
    out_start_send(n, m);
}

static void on_send(struct peer_net *n, struct member *m, int res)
{
    m->send_inflight = false;
    if (m->state == OUT_UP && res <= 0)
        out_close(n, m, true);
    if (m->state == OUT_CLOSING) {
        out_maybe_finish(n, m);
        return;
    }
    if (q_consume(m, (size_t)res))
        snap_out_done(n, m, true);
    snap_out_pump(n, m);
    out_start_send(n, m);
}

/* What the watch holds: 1 a whole Removed frame, 0 too little yet to
 * tell, -1 anything else (too large, malformed, another frame). */
static int watch_parse(const struct member *m)
{
    Cetcdpeer__Frame *f;
    uint32_t len;
    bool removed;

    if (m->watch_len < PEER_LEN_BYTES)
        return 0;
    len = get_le32(m->watch_buf);
    if (len == 0 || len > PEER_WATCH_FRAME_MAX)
        return -1;
    if (m->watch_len < PEER_LEN_BYTES + (size_t)len)
        return 0;
    if (m->watch_len > PEER_LEN_BYTES + (size_t)len)
        return -1; /* more after the one frame an acceptor may write */
    f = peer_decode(m->watch_buf + PEER_LEN_BYTES, len);
    removed = f != NULL && f->body_case == CETCDPEER__FRAME__BODY_REMOVED;
    if (f != NULL)
        cetcdpeer__frame__free_unpacked(f, NULL);
    return removed ? 1 : -1;
}

/* The acceptor writes nothing but, at most, one Removed frame: any other
 * completion means the connection ended (0: EOF, < 0: error) or the
 * acceptor broke the protocol. A part of a frame waits for the rest. */
static void on_watch(struct peer_net *n, struct member *m, int res)
{
    int rv = 0;

    m->watch_inflight = false;
    if (res > 0) {
        m->watch_len += (size_t)res;
        rv = watch_parse(m);
    }
    if (rv == 0 && res > 0 && m->state == OUT_UP) {
        out_arm_watch(n, m);
        return;
    }
    if (rv == 1 && !n->removed_reported) {
        fprintf(stderr, "cetcd: peer: member %" PRIx64 " says this member was removed\n", m->id);
        n->removed_reported = true;
        if (n->ops.on_removed != NULL)
            n->ops.on_removed(n->arg, m->id);
    }
    out_close(n, m, true);
    out_maybe_finish(n, m);
}

/* ---- accepted connections ---- */

static struct in_conn *in_lookup(struct peer_net *n, uint32_t slot, uint32_t gen)
{
    struct in_conn *c;

    if (slot >= PEER_ACCEPTED_MAX)
        return NULL;
    c = n->in[slot];
    return c != NULL && c->gen == gen ? c : NULL;
}

static void snap_in_reset(struct in_conn *c, bool remove_file)
{
    struct snap_in *s = &c->snap;

    assert(!s->write_inflight);
    if (s->fd >= 0) {
        close(s->fd);
        if (remove_file)
            unlink(s->path);
    }
    s->fd = -1;
    s->last_seen = false;
    s->written = 0;
    if (s->pending != NULL)
        cetcdpeer__frame__free_unpacked(s->pending, NULL);
    s->pending = NULL;
}

static void in_close(struct peer_net *n, struct in_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    shutdown(c->fd, SHUT_RDWR);
    if (c->recv_inflight)
        cancel_op(n, OP_RECV, c->slot, c->gen);
    if (c->reply_inflight)
        cancel_op(n, OP_IN_WRITE, c->slot, c->gen);
}

static void in_maybe_free(struct peer_net *n, struct in_conn *c)
{
    if (!c->closing || c->recv_inflight || c->snap.write_inflight || c->reply_inflight)
        return;
    snap_in_reset(c, true);
    free(c->reply);
    close(c->fd);
    n->in[c->slot] = NULL;
    n->in_gens[c->slot]++;
    free(c->rbuf);
    free(c);
}

/* No frame is handled while a chunk is being written (order), and none
 * at all once a reply is under way. */
static bool in_paused(const struct in_conn *c)
{
    return c->closing || c->snap.write_inflight || c->reply != NULL;
}

static void in_arm_recv(struct peer_net *n, struct in_conn *c)
{
    struct io_uring_sqe *sqe = sqe_for(n, OP_RECV, c->slot, c->gen);

    assert(c->rlen < c->rcap);
    io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    c->recv_inflight = true;
}

static void in_open(struct peer_net *n, int fd)
{
    struct in_conn *c = NULL;
    uint32_t slot;
    int one = 1;

    for (slot = 0; slot < PEER_ACCEPTED_MAX && n->in[slot] != NULL; slot++)
        ;
    if (slot < PEER_ACCEPTED_MAX)
        c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->rbuf = malloc(PEER_RBUF_BYTES);
    if (c == NULL || c->rbuf == NULL) { /* at the limit or out of memory: refuse */
        free(c);
        close(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->slot = slot;
    c->gen = n->in_gens[slot];
    c->rcap = PEER_RBUF_BYTES;
    c->snap.fd = -1;
    n->in[slot] = c;
    in_arm_recv(n, c);
}

static void arm_accept(struct peer_net *n, unsigned i)
{
    struct io_uring_sqe *sqe = sqe_for(n, OP_ACCEPT, i, 0);

    io_uring_prep_accept(sqe, n->listen_fds[i], NULL, NULL, SOCK_CLOEXEC);
    n->accept_armed[i] = true;
}

/* After an error the accept is re-armed by the next peer_turn, not at
 * once, so a persistent error (EMFILE) cannot spin the loop. */
static void on_accept(struct peer_net *n, unsigned i, int res)
{
    n->accept_armed[i] = false;
    if (res < 0)
        return;
    in_open(n, res);
    arm_accept(n, i);
}

/* Sends what is left of the reply. */
static void in_reply_send(struct peer_net *n, struct in_conn *c)
{
    struct io_uring_sqe *sqe = sqe_for(n, OP_IN_WRITE, c->slot, c->gen);

    io_uring_prep_send(sqe, c->fd, c->reply->data + c->reply_off, c->reply->len - c->reply_off,
                       MSG_NOSIGNAL);
    c->reply_inflight = true;
}

/* Takes f, the one frame this connection will write; nothing more is
 * read from it, and it closes once f is sent (on_reply_sent) or after
 * PEER_REPLY_MS (reply_turn). The reply shares OP_IN_WRITE with the
 * snapshot writes: none may be in flight. */
static void in_reply(struct peer_net *n, struct in_conn *c, struct peer_frame *f)
{
    assert(c->reply == NULL && !c->snap.write_inflight && !c->closing);
    c->reply = f;
    c->reply_off = 0;
    c->reply_deadline_ms = 0;
    in_reply_send(n, c);
}

static bool is_removed(const struct peer_net *n, uint64_t id)
{
    unsigned i;

    for (i = 0; i < n->n_removed; i++) {
        if (n->removed[i] == id)
            return true;
    }
    return false;
}

/* Tells c's member it was removed. -2 (the caller closes c, and the
 * member's next Hello gets the answer) while a snapshot chunk is being
 * written (the reply cannot share OP_IN_WRITE with it) or out of memory. */
static int in_reply_removed(struct peer_net *n, struct in_conn *c, uint64_t from)
{
    struct peer_frame *f;

    fprintf(stderr, "cetcd: peer: rejected connection from %" PRIx64 ": member removed\n", from);
    f = c->snap.write_inflight ? NULL : peer_encode_removed();
    if (f == NULL)
        return -2;
    in_reply(n, c, f);
    return 0;
}

static int on_hello(struct peer_net *n, struct in_conn *c, const Cetcdpeer__Hello *h)
{
    unsigned i;

    if (c->from != 0 || h->from == RAFT_NONE || h->from == n->cfg.self_id)
        return -1;
    if (h->cluster_id != n->cfg.cluster_id) {
        fprintf(stderr, "cetcd: peer: rejected connection from %" PRIx64 ": cluster ID mismatch\n",
                h->from);
        return -2;
    }
    /* etcd checks removal before the destination (rafthttp answers 410
     * before 412): a removed member is told so whoever it meant to reach. */
    if (is_removed(n, h->from))
        return in_reply_removed(n, c, h->from);
    if (h->to != n->cfg.self_id) {
        fprintf(stderr,
                "cetcd: peer: rejected connection from %" PRIx64 ": meant for %" PRIx64 "\n",
                h->from, h->to);
        return -2;
    }
    c->from = h->from;
    /* A member dials one connection to us at a time: older ones from it
     * are dead, whatever TCP says. */
    for (i = 0; i < PEER_ACCEPTED_MAX; i++) {
        struct in_conn *o = n->in[i];
        if (o != NULL && o != c && o->from == c->from) {
            in_close(n, o);
            in_maybe_free(n, o);
        }
    }
    return 0;
}

/* The SNAP message: delivered only after its file arrived complete. */
static void on_snap_msg(struct peer_net *n, struct in_conn *c, const struct raft_msg *m)
{
    struct snap_in *s = &c->snap;

    if (s->fd < 0 || !s->last_seen) {
        fprintf(stderr, "cetcd: peer: snapshot message from %" PRIx64 " without its file\n",
                c->from);
        return;
    }
    close(s->fd);
    s->fd = -1; /* the callee owns the file now */
    snap_in_reset(c, false);
    n->ops.on_snapshot(n->arg, m, s->path);
}

static int on_message(struct peer_net *n, struct in_conn *c, const Cetcdpeer__Message *pm)
{
    struct raft_entry stack_ents[PEER_STACK_ENTRIES];
    struct raft_entry *ents = stack_ents;
    struct raft_msg m;
    int rv = 0;

    if (pm->n_entries > PEER_STACK_ENTRIES) {
        ents = malloc(pm->n_entries * sizeof(*ents));
        if (ents == NULL)
            return 0; /* dropped; Raft resends */
    }
    if (peer_msg_from_pb(pm, &m, ents) != 0)
        rv = -1;
    else if (m.from != c->from || m.to != n->cfg.self_id)
        ; /* not from whom the Hello said: dropped */
    else if (m.type == RAFT_MSG_SNAP)
        on_snap_msg(n, c, &m);
    else
        n->ops.on_msg(n->arg, &m);
    if (ents != stack_ents)
        free(ents);
    return rv;
}

/* Chunks are written with IORING_OP_WRITE, not pwrite: even a 1 MiB
 * write into the page cache can stall for long under writeback
 * pressure, and the core thread must not. Parsing pauses until the
 * write completes. f is kept until then. */
static void snap_in_write(struct peer_net *n, struct in_conn *c)
{
    struct snap_in *s = &c->snap;
    struct io_uring_sqe *sqe = sqe_for(n, OP_IN_WRITE, c->slot, c->gen);

    io_uring_prep_write(sqe, s->fd, s->wp, (unsigned)s->wleft, s->written);
    s->write_inflight = true;
}

static int snap_in_open(struct peer_net *n, struct in_conn *c)
{
    struct snap_in *s = &c->snap;

    snap_in_reset(c, true);
    /* The connection's generation is in the name: a closing connection
     * from the same sender may still have its partial file to remove. */
    snprintf(s->path, sizeof(s->path), "%s/peer-%016" PRIx64 "-%08" PRIx32 ".snap.part",
             n->snap_dir, c->from, c->gen);
    s->fd = open(s->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        fprintf(stderr, "cetcd: peer: open %s: %s\n", s->path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Takes f. A new snapshot (offset 0) replaces a partial one. */
static int on_chunk(struct peer_net *n, struct in_conn *c, Cetcdpeer__Frame *f)
{
    const Cetcdpeer__SnapChunk *ch = f->snap_chunk;
    struct snap_in *s = &c->snap;

    if (ch->offset == 0 && snap_in_open(n, c) != 0)
        goto bad;
    if (s->fd < 0 || s->last_seen || ch->offset != s->written)
        goto bad;
    s->last_seen = ch->last;
    if (ch->data.len == 0) {
        cetcdpeer__frame__free_unpacked(f, NULL);
        return 0;
    }
    s->pending = f;
    s->wp = ch->data.data;
    s->wleft = ch->data.len;
    snap_in_write(n, c);
    return 0;
bad:
    cetcdpeer__frame__free_unpacked(f, NULL);
    return -1;
}

/* A members connection: the answer goes out through the ring like every
 * other write, and nothing more is read. A dialer that does not read it
 * holds the connection at most PEER_REPLY_MS (peer_turn). -2 when
 * refused. */
static int on_members_request(struct peer_net *n, struct in_conn *c)
{
    uint8_t *blob = NULL;
    size_t len = 0;

    struct peer_frame *f;

    if (n->ops.on_members == NULL || n->ops.on_members(n->arg, &blob, &len) != 0) {
        fprintf(stderr, "cetcd: peer: members request refused: no member list to serve\n");
        return -2; /* the dialer sees EOF */
    }
    f = peer_encode_members_response(n->cfg.cluster_id, blob, len);
    free(blob);
    if (f == NULL) {
        fprintf(stderr, "cetcd: peer: member list of %zu bytes not sent (at most %u)\n", len,
                PEER_MEMBERS_BYTES_MAX);
        return -2;
    }
    in_reply(n, c, f);
    return 0;
}

static void on_reply_sent(struct peer_net *n, struct in_conn *c, int res)
{
    c->reply_inflight = false;
    if (!c->closing && res > 0) {
        c->reply_off += (size_t)res;
        if (c->reply_off < c->reply->len) {
            in_reply_send(n, c);
            return;
        }
    }
    in_close(n, c); /* sent (FIN follows the data), failed or timed out */
    in_maybe_free(n, c);
}

/* Takes f. -1: the connection must close; -2: the same, already logged. */
static int on_frame(struct peer_net *n, struct in_conn *c, Cetcdpeer__Frame *f)
{
    int rv = -1;

    if (f->body_case == CETCDPEER__FRAME__BODY_SNAP_CHUNK && c->from != 0)
        return on_chunk(n, c, f);
    if (f->body_case == CETCDPEER__FRAME__BODY_HELLO)
        rv = on_hello(n, c, f->hello);
    else if (f->body_case == CETCDPEER__FRAME__BODY_MEMBERS_REQUEST && c->from == 0)
        rv = on_members_request(n, c);
    else if (f->body_case == CETCDPEER__FRAME__BODY_MESSAGE && c->from != 0)
        rv = on_message(n, c, f->message);
    cetcdpeer__frame__free_unpacked(f, NULL);
    return rv;
}

static void in_bad(struct peer_net *n, struct in_conn *c, const char *why)
{
    if (c->from != 0)
        fprintf(stderr, "cetcd: peer: closed connection from %" PRIx64 ": %s\n", c->from, why);
    else
        fprintf(stderr, "cetcd: peer: closed connection before its hello: %s\n", why);
    in_close(n, c);
}

/* Moves what is left to the front, and sizes the buffer for the frame
 * that is coming (up to frame_bytes_max) or back to PEER_RBUF_BYTES. */
static int in_compact(struct in_conn *c)
{
    size_t want = PEER_RBUF_BYTES;
    uint8_t *p;

    c->rlen -= c->rpos;
    memmove(c->rbuf, c->rbuf + c->rpos, c->rlen);
    c->rpos = 0;
    if (c->rlen >= PEER_LEN_BYTES && PEER_LEN_BYTES + (size_t)get_le32(c->rbuf) > want)
        want = PEER_LEN_BYTES + (size_t)get_le32(c->rbuf);
    if (want == c->rcap || (want < c->rcap && c->rlen > want))
        return 0;
    p = realloc(c->rbuf, want);
    if (p == NULL)
        return want > c->rcap ? -1 : 0;
    c->rbuf = p;
    c->rcap = want;
    return 0;
}

/* Handles the whole frames held, then receives more. */
static void in_process(struct peer_net *n, struct in_conn *c)
{
    while (!in_paused(c) && c->rlen - c->rpos >= PEER_LEN_BYTES) {
        uint32_t len = get_le32(c->rbuf + c->rpos);
        size_t max = c->from != 0 ? n->cfg.frame_bytes_max : PEER_HELLO_BYTES_MAX;
        Cetcdpeer__Frame *f;
        int rv;

        /* Before the Hello nothing large is buffered: a stranger must not
         * make us allocate frame_bytes_max per connection. */
        if (len == 0 || len > max) {
            in_bad(n, c, "frame too large");
            return;
        }
        if (c->rlen - c->rpos < PEER_LEN_BYTES + (size_t)len)
            break;
        f = peer_decode(c->rbuf + c->rpos + PEER_LEN_BYTES, len);
        c->rpos += PEER_LEN_BYTES + (size_t)len;
        if (f == NULL) {
            in_bad(n, c, "malformed frame");
            return;
        }
        rv = on_frame(n, c, f);
        if (rv != 0) {
            if (rv == -2)
                in_close(n, c);
            else
                in_bad(n, c, "unexpected frame");
            return;
        }
    }
    if (in_paused(c))
        return;
    if (in_compact(c) != 0) {
        in_bad(n, c, "out of memory");
        return;
    }
    in_arm_recv(n, c);
}

static void on_recv(struct peer_net *n, struct in_conn *c, int res)
{
    c->recv_inflight = false;
    if (!c->closing && res <= 0)
        in_close(n, c);
    if (!c->closing) {
        c->rlen += (size_t)res;
        in_process(n, c);
    }
    in_maybe_free(n, c);
}

static void on_snap_write(struct peer_net *n, struct in_conn *c, int res)
{
    struct snap_in *s = &c->snap;

    s->write_inflight = false;
    if (!c->closing && res <= 0) {
        fprintf(stderr, "cetcd: peer: write %s: %s\n", s->path, strerror(res < 0 ? -res : EIO));
        in_close(n, c);
    }
    if (c->closing) {
        in_maybe_free(n, c);
        return;
    }
    s->written += (uint64_t)res;
    s->wp += res;
    s->wleft -= (size_t)res;
    if (s->wleft > 0) {
        snap_in_write(n, c);
        return;
    }
    cetcdpeer__frame__free_unpacked(s->pending, NULL);
    s->pending = NULL;
    in_process(n, c);
    in_maybe_free(n, c);
}

/* ---- set-up ---- */

/* One bound, listening socket, or -errno. */
static int bind_listen(const struct addrinfo *ai)
{
    int one = 1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int e;

    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, PEER_LISTEN_BACKLOG) == 0)
        return fd;
    e = errno;
    close(fd);
    return -e;
}

/* A server that just died may hold its port a little longer (the kernel
 * tears its io_uring down after the process, and armed accepts keep the
 * listening socket open until then): a busy port is retried for
 * cfg.bind_wait_ms, bounded. */
static int listen_one(struct peer_net *n, const char *url, char *err, size_t err_len)
{
    struct timespec pause = {0, 50 * 1000 * 1000};
    char host[PEER_URL_BYTES];
    char port[8];
    char why[128];
    struct addrinfo *ai;
    unsigned waited_ms = 0;
    int rv = parse_url(url, host, sizeof(host), port, sizeof(port));
    int fd;

    if (rv == -2) {
        snprintf(err, err_len, "TLS peer URLs are not supported yet");
        return -1;
    }
    if (rv != 0 || (ai = resolve(host, port, true)) == NULL) {
        snprintf(err, err_len, "invalid listen peer URL %s (want http://host:port)", url);
        return -1;
    }
    while ((fd = bind_listen(ai)) == -EADDRINUSE && waited_ms < n->cfg.bind_wait_ms) {
        nanosleep(&pause, NULL);
        waited_ms += 50;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        errtext(-fd, why, sizeof(why));
        snprintf(err, err_len, "listen tcp %s:%s: bind: %s", host, port, why);
        return -1;
    }
    n->listen_fds[n->n_listen++] = fd;
    return 0;
}

static int check_config(const struct peer_config *cfg, char *err, size_t err_len)
{
    if (cfg->loop == NULL || cfg->self_id == RAFT_NONE || cfg->op_base + PEER_OPS > 256 ||
        cfg->n_listen_urls > PEER_LISTEN_MAX || cfg->snap_recv_dir == NULL ||
        strlen(cfg->snap_recv_dir) >= PATH_MAX - 64 - 1) {
        snprintf(err, err_len, "invalid peer transport configuration");
        return -1;
    }
    return 0;
}

int peer_net_create(struct peer_net **out, const struct peer_config *cfg,
                    const struct peer_ops *ops, void *arg, char *err, size_t err_len)
{
    struct peer_net *n;
    struct timespec ts;
    unsigned i;

    *out = NULL;
    if (check_config(cfg, err, err_len) != 0)
        return -1;
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    n->cfg = *cfg;
    memset(n->cfg.listen_urls, 0, sizeof(n->cfg.listen_urls));
    if (n->cfg.queue_bytes_max == 0)
        n->cfg.queue_bytes_max = PEER_QUEUE_DEFAULT;
    if (n->cfg.frame_bytes_max == 0 || n->cfg.frame_bytes_max > UINT32_MAX - PEER_LEN_BYTES)
        n->cfg.frame_bytes_max = PEER_FRAME_DEFAULT;
    n->ops = *ops;
    n->arg = arg;
    snprintf(n->snap_dir, sizeof(n->snap_dir), "%s", cfg->snap_recv_dir);
    /* Generations start somewhere new for each net, so completions of a
     * destroyed net left in the CQ do not match this one's. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    for (i = 0; i < PEER_MEMBERS_MAX; i++) {
        n->members[i].slot = i;
        n->members[i].fd = -1;
        n->members[i].snap.fd = -1;
        n->members[i].gen = (uint32_t)ts.tv_nsec * 2654435761u + i;
    }
    for (i = 0; i < PEER_ACCEPTED_MAX; i++)
        n->in_gens[i] = (uint32_t)ts.tv_nsec * 2246822519u + i;
    for (i = 0; i < cfg->n_listen_urls; i++) {
        if (listen_one(n, cfg->listen_urls[i], err, err_len) != 0) {
            peer_net_destroy(n);
            return -1;
        }
    }
    for (i = 0; i < n->n_listen; i++)
        arm_accept(n, i);
    *out = n;
    return 0;
}

static void destroy_member(struct peer_net *n, struct member *m)
{
    if (m->fd >= 0) {
        shutdown(m->fd, SHUT_RDWR);
        cancel_fd_sync(n, m->fd);
        close(m->fd);
    }
    if (m->snap.fd >= 0) {
        cancel_fd_sync(n, m->snap.fd);
        close(m->snap.fd);
    }
    q_drop(m);
    free(m->snap.buf);
    free(m->snap.msg);
}

static void destroy_in(struct peer_net *n, struct in_conn *c)
{
    shutdown(c->fd, SHUT_RDWR);
    cancel_fd_sync(n, c->fd);
    cancel_fd_sync(n, c->snap.fd);
    c->snap.write_inflight = false;
    snap_in_reset(c, true);
    free(c->reply);
    close(c->fd);
    free(c->rbuf);
    free(c);
}

/* SQEs still in the SQ are submitted first, so the synchronous cancels
 * see every operation; after that the kernel holds no pointer into the
 * net. */
void peer_net_destroy(struct peer_net *n)
{
    unsigned i;

    if (n == NULL)
        return;
    io_uring_submit(&n->cfg.loop->uring);
    for (i = 0; i < n->n_listen; i++) {
        cancel_fd_sync(n, n->listen_fds[i]);
        close(n->listen_fds[i]);
    }
    for (i = 0; i < PEER_MEMBERS_MAX; i++)
        destroy_member(n, &n->members[i]);
    for (i = 0; i < PEER_ACCEPTED_MAX; i++) {
        if (n->in[i] != NULL)
            destroy_in(n, n->in[i]);
    }
    free(n);
}

/* ---- members ---- */

static int resolve_urls(const char *const *urls, unsigned n_urls, struct peer_addr *addrs)
{
    char host[PEER_URL_BYTES];
    char port[8];
    unsigned i;

    if (n_urls == 0 || n_urls > PEER_URLS_MAX)
        return -1;
    for (i = 0; i < n_urls; i++) {
        struct addrinfo *ai;
        if (strlen(urls[i]) >= PEER_URL_BYTES ||
            parse_url(urls[i], host, sizeof(host), port, sizeof(port)) != 0)
            return -1;
        ai = resolve(host, port, false);
        if (ai == NULL)
            return -1;
        memcpy(&addrs[i].sa, ai->ai_addr, ai->ai_addrlen);
        addrs[i].len = ai->ai_addrlen;
        freeaddrinfo(ai);
    }
    return 0;
}

static bool urls_equal(const struct member *m, const char *const *urls, unsigned n_urls)
{
    unsigned i;

    if (m->n_urls != n_urls)
        return false;
    for (i = 0; i < n_urls; i++) {
        if (strcmp(m->urls[i], urls[i]) != 0)
            return false;
    }
    return true;
}

static struct member *member_alloc(struct peer_net *n, uint64_t id)
{
    unsigned i;

    for (i = 0; i < PEER_MEMBERS_MAX; i++) {
        struct member *m = &n->members[i];
        if (!m->used) {
            assert(m->fd < 0 && m->snap.fd < 0 && m->head == NULL);
            m->used = true;
            m->id = id;
            m->state = OUT_IDLE;
            m->backoff_ms = PEER_BACKOFF_MIN_MS;
            m->next_dial_ms = 0;
            return m;
        }
    }
    return NULL;
}

int peer_set_member(struct peer_net *n, uint64_t id, const char *const *urls, unsigned n_urls)
{
    struct peer_addr addrs[PEER_URLS_MAX];
    struct member *m;
    unsigned i;

    if (id == RAFT_NONE || id == n->cfg.self_id || resolve_urls(urls, n_urls, addrs) != 0)
        return -1;
    m = member_find(n, id);
    if (m != NULL && urls_equal(m, urls, n_urls))
        return 0;
    if (m == NULL)
        m = member_alloc(n, id);
    if (m == NULL)
        return -1;
    for (i = 0; i < n_urls; i++) {
        snprintf(m->urls[i], sizeof(m->urls[i]), "%s", urls[i]);
        m->addrs[i] = addrs[i];
    }
    m->n_urls = n_urls;
    m->url_next = 0;
    m->next_dial_ms = 0;
    out_close(n, m, false); /* the old URLs' connection, if any */
    out_maybe_finish(n, m);
    return 0;
}

void peer_remove_member(struct peer_net *n, uint64_t id)
{
    struct member *m = member_find(n, id);

    if (m == NULL)
        return;
    snap_out_done(n, m, false);
    m->removing = true;
    out_close(n, m, false);
    out_maybe_finish(n, m);
    if (m->state == OUT_IDLE) {
        q_drop(m);
        member_maybe_free(m);
    }
}

/* ---- removed members ---- */

/* Connections from id that are open now are answered at once: the
 * member may have nothing else to make it dial again. Safe inside on_msg
 * for that very connection: nothing is freed here (an open accepted
 * connection always has an operation in flight, whose completion frees
 * it once closed), and a reply pauses its parsing. */
void peer_mark_removed(struct peer_net *n, uint64_t id)
{
    unsigned i;

    if (id == RAFT_NONE || id == n->cfg.self_id || is_removed(n, id))
        return;
    assert(n->n_removed <= PEER_REMOVED_MAX && n->removed_next < PEER_REMOVED_MAX);
    n->removed[n->removed_next] = id;
    n->removed_next = (n->removed_next + 1) % PEER_REMOVED_MAX;
    if (n->n_removed < PEER_REMOVED_MAX)
        n->n_removed++;
    for (i = 0; i < PEER_ACCEPTED_MAX; i++) {
        struct in_conn *c = n->in[i];
        if (c == NULL || c->from != id || c->closing || c->reply != NULL)
            continue;
        if (in_reply_removed(n, c, id) != 0)
            in_close(n, c);
    }
}

/* ---- sending ---- */

int peer_send(struct peer_net *n, const struct raft_msg *m)
{
    struct member *mb = member_find(n, m->to);
    struct peer_frame *f = NULL;

    if (mb != NULL && m->type != RAFT_MSG_SNAP)
        f = peer_encode_msg(m, n->cfg.frame_bytes_max);
    if (f != NULL && q_fits(n, mb)) {
        q_append(mb, f);
        return 0;
    }
    free(f);
    n->ops.on_unreachable(n->arg, m->to);
    return -1;
}

int peer_send_snapshot(struct peer_net *n, const struct raft_msg *m, const char *path)
{
    struct member *mb = member_find(n, m->to);
    struct snap_out *s;
    struct stat st;

    if (mb == NULL || m->type != RAFT_MSG_SNAP)
        return -1;
    s = &mb->snap;
    if (s->active || s->fd >= 0 || s->read_inflight)
        return -1;
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        return -1;
    s->buf = malloc(PEER_CHUNK_BYTES);
    s->msg = peer_encode_msg(m, n->cfg.frame_bytes_max);
    if (s->buf == NULL || s->msg == NULL || fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snap_out_release(mb);
        return -1;
    }
    s->active = true;
    s->all_queued = false;
    s->gen++;
    s->size = (uint64_t)st.st_size;
    s->off = 0;
    return 0;
}

/* ---- the loop ---- */

static void on_member_cqe(struct peer_net *n, unsigned op, uint32_t slot, uint32_t gen, int res)
{
    struct member *m;

    if (op == OP_SNAP_READ) {
        m = slot < PEER_MEMBERS_MAX ? &n->members[slot] : NULL;
        if (m != NULL && m->snap.read_inflight && m->snap.gen == gen)
            on_snap_read(n, m, res);
        return;
    }
    m = member_lookup(n, slot, gen);
    if (m == NULL)
        return;
    if (op == OP_CONNECT && m->connect_inflight)
        on_connect(n, m, res);
    else if (op == OP_SEND && m->send_inflight)
        on_send(n, m, res);
    else if (op == OP_WATCH && m->watch_inflight)
        on_watch(n, m, res);
}

void peer_cqe(struct peer_net *n, uint64_t user_data, int res)
{
    unsigned op = ring_ud_op(user_data) - n->cfg.op_base;
    uint32_t slot = ring_ud_slot(user_data);
    uint32_t gen = ring_ud_gen(user_data);
    struct in_conn *c;

    switch (op) {
    case OP_ACCEPT:
        if (slot < n->n_listen && n->accept_armed[slot])
            on_accept(n, slot, res);
        break;
    case OP_CONNECT:
    case OP_SEND:
    case OP_WATCH:
    case OP_SNAP_READ:
        on_member_cqe(n, op, slot, gen, res);
        break;
    case OP_RECV:
        c = in_lookup(n, slot, gen);
        if (c != NULL && c->recv_inflight)
            on_recv(n, c, res);
        break;
    case OP_IN_WRITE:
        c = in_lookup(n, slot, gen);
        if (c != NULL && c->reply_inflight)
            on_reply_sent(n, c, res);
        else if (c != NULL && c->snap.write_inflight)
            on_snap_write(n, c, res);
        break;
    default: /* OP_CANCEL: the cancelled operation reports itself */
        break;
    }
}

static void member_turn(struct peer_net *n, struct member *m)
{
    switch (m->state) {
    case OUT_IDLE:
        if (!m->removing && m->n_urls > 0 && n->now_ms >= m->next_dial_ms)
            out_dial(n, m);
        break;
    case OUT_CONNECTING:
        if (n->now_ms - m->connect_start_ms >= PEER_CONNECT_MS) {
            out_close(n, m, true);
            out_maybe_finish(n, m);
        }
        break;
    case OUT_UP:
        snap_out_pump(n, m);
        out_start_send(n, m);
        break;
    default:
        break;
    }
}

/* A reply the dialer does not take in PEER_REPLY_MS ends its connection
 * (the send in flight completes when shut down). */
static void reply_turn(struct peer_net *n, struct in_conn *c)
{
    if (c->reply == NULL || c->closing)
        return;
    if (c->reply_deadline_ms == 0) {
        c->reply_deadline_ms = n->now_ms + PEER_REPLY_MS;
        return;
    }
    if (n->now_ms >= c->reply_deadline_ms) {
        fprintf(stderr, "cetcd: peer: connection closed: reply not taken in %u ms\n",
                PEER_REPLY_MS);
        in_close(n, c);
    }
}

void peer_turn(struct peer_net *n, uint64_t now_ms)
{
    unsigned i;

    n->now_ms = now_ms;
    for (i = 0; i < n->n_listen; i++) {
        if (!n->accept_armed[i])
            arm_accept(n, i);
    }
    for (i = 0; i < PEER_MEMBERS_MAX; i++) {
        if (n->members[i].used)
            member_turn(n, &n->members[i]);
    }
    for (i = 0; i < PEER_ACCEPTED_MAX; i++) {
        if (n->in[i] != NULL)
            reply_turn(n, n->in[i]);
    }
}

bool peer_busy(const struct peer_net *n)
{
    unsigned i;

    for (i = 0; i < PEER_MEMBERS_MAX; i++) {
        const struct member *m = &n->members[i];
        if (!m->used || m->state != OUT_UP)
            continue;
        if (!m->send_inflight && m->head != NULL)
            return true;
        if (m->snap.active && !m->snap.read_inflight && !m->snap.all_queued &&
            m->q_bytes <= PEER_SNAP_LOW_BYTES)
            return true;
    }
    return false;
}

/* ---- fetching the member list (start-up, blocking) ----
 *
 * Plain blocking-style code on non-blocking sockets: every wait is a
 * poll() bounded by the attempt's deadline, so nothing here can hang. The
 * failure texts follow Go's net errors, as etcd prints them ("dial tcp
 * 127.0.0.1:2380: connect: connection refused", "read: i/o timeout"). */

#define FETCH_WHY_BYTES (PEER_URL_BYTES + 256)

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* 0: fd is ready for events (or has an error to report); 1: the
 * deadline passed; -errno. */
static int fetch_wait(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        uint64_t now = mono_ms();
        uint64_t left = deadline_ms > now ? deadline_ms - now : 0;
        int rv;

        if (left == 0)
            return 1;
        rv = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (rv > 0)
            return 0;
        if (rv < 0 && errno != EINTR)
            return -errno;
    }
}

/* A connected socket to the first of ai's addresses that answers, or -1
 * with why. */
static int fetch_dial(const struct addrinfo *ai, const char *host, const char *port,
                      uint64_t deadline_ms, char *why, size_t why_len)
{
    const char *open_br = strchr(host, ':') != NULL ? "[" : "";
    const char *close_br = *open_br != '\0' ? "]" : "";
    char text[96];
    int e = ENOTCONN;

    for (; ai != NULL; ai = ai->ai_next) {
        socklen_t elen = sizeof(e);
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int rv;

        if (fd < 0) {
            e = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            return fd;
        e = errno;
        if (e == EINPROGRESS) {
            rv = fetch_wait(fd, POLLOUT, deadline_ms);
            if (rv == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) == 0 && e == 0)
                return fd;
            if (rv != 0)
                e = rv == 1 ? EAGAIN : -rv; /* EAGAIN: our deadline */
        }
        close(fd);
        if (e == EAGAIN)
            break;
    }
    if (e == EAGAIN) {
        snprintf(why, why_len, "dial tcp %s%s%s:%s: i/o timeout", open_br, host, close_br, port);
    } else {
        errtext(e, text, sizeof(text));
        snprintf(why, why_len, "dial tcp %s%s%s:%s: connect: %s", open_br, host, close_br, port,
                 text);
    }
    return -1;
}

/* Sends (out) or receives len bytes at p by deadline_ms. 0, or -1 with
 * why. first: EOF before any byte is a plain "EOF" (the member closed
 * without answering), not a truncated frame. */
static int fetch_io(int fd, bool out, uint8_t *p, size_t len, bool first, uint64_t deadline_ms,
                    char *why, size_t why_len)
{
    const char *what = out ? "write" : "read";
    size_t done = 0;
    char text[96];

    while (done < len) {
        ssize_t r =
            out ? send(fd, p + done, len - done, MSG_NOSIGNAL) : recv(fd, p + done, len - done, 0);
        int rv;

        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        if (r == 0) {
            snprintf(why, why_len, "%s: %s", what, first && done == 0 ? "EOF" : "unexpected EOF");
            return -1;
        }
        if (errno == EINTR)
            continue;
        rv = errno == EAGAIN || errno == EWOULDBLOCK
                 ? fetch_wait(fd, out ? POLLOUT : POLLIN, deadline_ms)
                 : -errno;
        if (rv == 1) {
            snprintf(why, why_len, "%s: i/o timeout", what);
            return -1;
        }
        if (rv < 0) {
            errtext(-rv, text, sizeof(text));
            snprintf(why, why_len, "%s: %s", what, text);
            return -1;
        }
    }
    return 0;
}

/* Reads one MembersResponse from fd: 0, or -1 with why. */
static int fetch_answer(int fd, uint64_t deadline_ms, uint64_t *cluster_id, uint8_t **blob,
                        size_t *len, char *why, size_t why_len)
{
    uint8_t prefix[PEER_LEN_BYTES];
    uint8_t *body = NULL;
    Cetcdpeer__Frame *f = NULL;
    const Cetcdpeer__MembersResponse *r;
    uint32_t n;
    int rv = -1;

    if (fetch_io(fd, false, prefix, sizeof(prefix), true, deadline_ms, why, why_len) != 0)
        return -1;
    n = get_le32(prefix);
    if (n == 0 || n > PEER_MEMBERS_FRAME_MAX) {
        snprintf(why, why_len, "malformed answer (a frame of %" PRIu32 " bytes)", n);
        return -1;
    }
    body = malloc(n);
    if (body == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    if (fetch_io(fd, false, body, n, false, deadline_ms, why, why_len) != 0)
        goto out;
    f = peer_decode(body, n);
    if (f == NULL || f->body_case != CETCDPEER__FRAME__BODY_MEMBERS_RESPONSE) {
        snprintf(why, why_len, "malformed answer (%s)",
                 f == NULL ? "undecodable frame" : "not a MembersResponse");
        goto out;
    }
    r = f->members_response;
    if (r->members.len > PEER_MEMBERS_BYTES_MAX) {
        snprintf(why, why_len, "malformed answer (member list too large)");
        goto out;
    }
    *blob = malloc(r->members.len > 0 ? r->members.len : 1);
    if (*blob == NULL) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    if (r->members.len > 0)
        memcpy(*blob, r->members.data, r->members.len);
    *len = r->members.len;
    *cluster_id = r->cluster_id;
    rv = 0;
out:
    if (f != NULL)
        cetcdpeer__frame__free_unpacked(f, NULL);
    free(body);
    return rv;
}

/* One URL: 0, or -1 with why. */
static int fetch_one(const char *url, uint64_t deadline_ms, uint64_t *cluster_id, uint8_t **blob,
                     size_t *len, char *why, size_t why_len)
{
    char host[PEER_URL_BYTES];
    char port[8];
    struct addrinfo hints;
    struct addrinfo *ai = NULL;
    struct peer_frame *req;
    int fd;
    int rv;

    rv = strlen(url) < PEER_URL_BYTES ? parse_url(url, host, sizeof(host), port, sizeof(port)) : -1;
    if (rv != 0) {
        snprintf(why, why_len, "%s",
                 rv == -2 ? "TLS peer URLs are not supported yet"
                          : "invalid peer URL (want http://host:port)");
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rv = getaddrinfo(host, port, &hints, &ai);
    if (rv != 0) {
        snprintf(why, why_len, "dial tcp: lookup %s: %s", host, gai_strerror(rv));
        return -1;
    }
    fd = fetch_dial(ai, host, port, deadline_ms, why, why_len);
    freeaddrinfo(ai);
    if (fd < 0)
        return -1;
    rv = -1;
    req = peer_encode_members_request();
    if (req == NULL)
        snprintf(why, why_len, "out of memory");
    else if (fetch_io(fd, true, req->data, req->len, false, deadline_ms, why, why_len) == 0)
        rv = fetch_answer(fd, deadline_ms, cluster_id, blob, len, why, why_len);
    free(req);
    close(fd);
    return rv;
}

int peer_fetch_members(const char *const *urls, unsigned n_urls, uint64_t timeout_ms,
                       uint64_t *cluster_id, uint8_t **blob, size_t *len, char *err, size_t err_len)
{
    static const char failed[] = "could not retrieve cluster information from the given URLs";
    uint64_t start = mono_ms();
    uint64_t deadline = timeout_ms > UINT64_MAX - start ? UINT64_MAX : start + timeout_ms;
    char why[FETCH_WHY_BYTES];
    size_t pos;
    unsigned i;

    *blob = NULL;
    *len = 0;
    *cluster_id = 0;
    pos = (size_t)snprintf(err, err_len, "%s%s", failed, n_urls == 0 ? ": no URLs" : "");
    for (i = 0; i < n_urls; i++) {
        uint64_t now = mono_ms();
        /* an equal share of what is left: a silent member leaves time for
         * the next ones */
        uint64_t share = deadline > now ? (deadline - now) / (n_urls - i) : 0;

        if (fetch_one(urls[i], now + share, cluster_id, blob, len, why, sizeof(why)) == 0)
            return 0;
        if (pos < err_len)
            pos += (size_t)snprintf(err + pos, err_len - pos, "%s%s: %s", i == 0 ? ": " : "; ",
                                    urls[i], why);
    }
    return -1;
}
