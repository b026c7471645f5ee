/*
 * netproxy — a TCP proxy for cetcd's Raft peer connections that makes
 * network partitions on loopback without root.
 *
 *   netproxy --control FILE NAME=LISTEN_PORT:TARGET_PORT...
 *
 * For each member NAME it listens on 127.0.0.1:LISTEN_PORT (the member's
 * advertised peer port) and forwards every accepted connection to
 * 127.0.0.1:TARGET_PORT (its real --listen-peer-urls port). cetcd's peer
 * transport (src/raft/peer.c) opens each dialed connection with a Hello
 * frame, a 4-byte little-endian length and a cetcdpeer.Frame
 * {hello {cluster_id, from, to}}; the proxy parses that first frame to
 * attribute the connection to the directed pair from -> to, and only then
 * dials the target (so a refused connection never reaches it) and forwards
 * the Hello and what follows unchanged. Member IDs are learned from the
 * Hellos themselves: a Hello that arrives on NAME's port names NAME's ID
 * in `to`. A connection whose `from` is not known yet is forwarded and
 * attributed (and the rules applied to it) once it is.
 *
 * Threading: one thread; all state below is owned by it (the signal
 * handlers only set flags).
 *
 * The control file, re-read on SIGHUP and whenever it changes (polled
 * every 50 ms), holds one rule per line, later lines winning; NAME may be
 * "*" for every member; anything not named passes:
 *   drop FROM TO        close FROM->TO connections; refuse new ones right
 *                       after their Hello
 *   delay FROM TO MS    hold FROM->TO bytes for MS ms before forwarding
 *   pass FROM TO
 * Each change of the rule matrix is logged as one line on stdout.
 *
 * One thread, one epoll loop. Limits: CONNS_MAX connections; per direction
 * at most CHUNKS_MAX chunks of CHUNK_BYTES bytes buffered (reading stops
 * while the buffer is full), so memory is bounded. SIGTERM or SIGINT ends
 * the process.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "raftpb.pb-c.h"

#define MEMBERS_MAX     8
#define CONNS_MAX       256
#define CHUNK_BYTES     16384
#define CHUNKS_MAX      16
#define HELLO_BYTES_MAX 256
#define POLL_MS         50
#define DELAY_MS_MAX    60000
#define NAME_BYTES      32

enum mode { PASS = 0, DROP = 1, DELAY = 2 };

struct member {
    char name[NAME_BYTES];
    int listen_port;
    int target_port;
    int lfd;
    uint64_t id; /* 0: not learned yet */
};

struct chunk {
    int64_t release_ms;
    size_t len;
    size_t off;
    uint8_t data[CHUNK_BYTES];
};

/* Bytes read from one socket, waiting to be written to the other. */
struct pipe_buf {
    struct chunk *q[CHUNKS_MAX];
    size_t head; /* index of the oldest chunk */
    size_t n;
};

struct conn {
    int used;
    unsigned gen;
    int cfd; /* accepted, from the dialing member */
    int sfd; /* ours, to the target member */
    int connected;
    int to;   /* member index of the listening port */
    int from; /* member index, -1 until known */
    uint64_t from_id;
    int hello_done;
    uint8_t hello[HELLO_BYTES_MAX];
    size_t hello_len;
    struct pipe_buf up;   /* cfd -> sfd */
    struct pipe_buf down; /* sfd -> cfd */
};

static struct member g_members[MEMBERS_MAX];
static int g_n_members;
static struct conn g_conns[CONNS_MAX];
static int g_mode[MEMBERS_MAX][MEMBERS_MAX];
static int g_delay_ms[MEMBERS_MAX][MEMBERS_MAX];
static int g_ep;
static const char *g_ctl_path;
static struct stat g_ctl_st;
static volatile sig_atomic_t g_stop, g_hup;

/* epoll data: kind in the top bits, then generation, then slot. */
#define UD_LISTEN 1ULL
#define UD_CLIENT 2ULL
#define UD_SERVER 3ULL

static uint64_t ud(uint64_t kind, unsigned gen, unsigned slot)
{
    return kind << 56 | (uint64_t)gen << 16 | slot;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logf_(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    printf("netproxy: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("netproxy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void on_signal(int sig)
{
    if (sig == SIGHUP) {
        g_hup = 1;
    } else {
        g_stop = 1;
    }
}

/* ---------------------------------------------------------------- rules --- */

static int member_index(const char *name)
{
    int i;

    for (i = 0; i < g_n_members; i++) {
        if (strcmp(g_members[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

static void set_rule(int a, int b, int mode, int delay)
{
    int i, j;

    for (i = 0; i < g_n_members; i++) {
        for (j = 0; j < g_n_members; j++) {
            if ((a < 0 || a == i) && (b < 0 || b == j) && i != j) {
                g_mode[i][j] = mode;
                g_delay_ms[i][j] = delay;
            }
        }
    }
}

/* Parse the control file into the rule matrix. 0, or -1 if unreadable. */
static int read_rules(void)
{
    FILE *f = fopen(g_ctl_path, "r");
    char line[256];
    int lineno = 0;

    memset(g_mode, 0, sizeof(g_mode));
    memset(g_delay_ms, 0, sizeof(g_delay_ms));
    if (f == NULL) {
        return errno == ENOENT ? 0 : -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char verb[16], a[NAME_BYTES], b[NAME_BYTES];
        int ia, ib, ms = 0, n;

        lineno++;
        n = sscanf(line, "%15s %31s %31s %d", verb, a, b, &ms);
        if (n <= 0 || verb[0] == '#') {
            continue;
        }
        ia = strcmp(a, "*") == 0 ? -1 : member_index(a);
        ib = strcmp(b, "*") == 0 ? -1 : member_index(b);
        if (n < 3 || (ia < 0 && strcmp(a, "*") != 0) || (ib < 0 && strcmp(b, "*") != 0)) {
            logf_("control file line %d ignored: %s", lineno, line);
            continue;
        }
        if (strcmp(verb, "drop") == 0) {
            set_rule(ia, ib, DROP, 0);
        } else if (strcmp(verb, "pass") == 0) {
            set_rule(ia, ib, PASS, 0);
        } else if (strcmp(verb, "delay") == 0 && n == 4 && ms >= 0 && ms <= DELAY_MS_MAX) {
            set_rule(ia, ib, ms ? DELAY : PASS, ms);
        } else {
            logf_("control file line %d ignored: %s", lineno, line);
        }
    }
    fclose(f);
    return 0;
}

static void log_rules(void)
{
    char buf[1024];
    size_t n = 0;
    int i, j;

    buf[0] = '\0';
    for (i = 0; i < g_n_members; i++) {
        for (j = 0; j < g_n_members; j++) {
            if (g_mode[i][j] == DROP) {
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s->%s:drop", g_members[i].name,
                                      g_members[j].name);
            } else if (g_mode[i][j] == DELAY) {
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s->%s:delay%dms",
                                      g_members[i].name, g_members[j].name, g_delay_ms[i][j]);
            }
            if (n >= sizeof(buf)) {
                n = sizeof(buf) - 1;
            }
        }
    }
    logf_("rules:%s", n ? buf : " all pass");
}

/* ---------------------------------------------------------- connections --- */

static void pipe_free(struct pipe_buf *p)
{
    size_t i;

    for (i = 0; i < CHUNKS_MAX; i++) {
        free(p->q[i]);
        p->q[i] = NULL;
    }
    p->head = 0;
    p->n = 0;
}

static void conn_close(struct conn *c, const char *why)
{
    if (!c->used) {
        return;
    }
    if (why != NULL) {
        logf_("close %s->%s: %s", c->from >= 0 ? g_members[c->from].name : "?",
              g_members[c->to].name, why);
    }
    close(c->cfd);
    if (c->sfd >= 0) {
        close(c->sfd);
    }
    c->sfd = -1;
    pipe_free(&c->up);
    pipe_free(&c->down);
    c->used = 0;
    c->gen++;
}

static int pair_mode(const struct conn *c)
{
    return c->from < 0 ? PASS : g_mode[c->from][c->to];
}

/* Apply the rules to every attributed connection. */
static void enforce_rules(void)
{
    int i;

    for (i = 0; i < CONNS_MAX; i++) {
        struct conn *c = &g_conns[i];

        if (c->used && c->hello_done && pair_mode(c) == DROP) {
            conn_close(c, "dropped by rule");
        }
    }
}

/* Learn member IDs; attribute connections whose sender is now known. */
static void learn_id(int member, uint64_t id)
{
    int i;

    if (g_members[member].id == id) {
        return;
    }
    g_members[member].id = id;
    logf_("member %s has ID %llx", g_members[member].name, (unsigned long long)id);
    for (i = 0; i < CONNS_MAX; i++) {
        struct conn *c = &g_conns[i];

        if (c->used && c->hello_done && c->from < 0 && c->from_id == id) {
            c->from = member;
        }
    }
    enforce_rules();
}

static int member_by_id(uint64_t id)
{
    int i;

    for (i = 0; i < g_n_members; i++) {
        if (g_members[i].id == id && id != 0) {
            return i;
        }
    }
    return -1;
}

/* Look at the first bytes from the dialer: once the Hello frame is whole,
 * attribute the connection. The bytes are forwarded regardless. */
static void sniff_hello(struct conn *c, const uint8_t *p, size_t n)
{
    size_t take = HELLO_BYTES_MAX - c->hello_len, len;
    Cetcdpeer__Frame *fr;

    if (take > n) {
        take = n;
    }
    memcpy(c->hello + c->hello_len, p, take);
    c->hello_len += take;
    if (c->hello_len < 4) {
        return;
    }
    len = (size_t)c->hello[0] | (size_t)c->hello[1] << 8 | (size_t)c->hello[2] << 16 |
          (size_t)c->hello[3] << 24;
    if (len > HELLO_BYTES_MAX - 4) {
        c->hello_done = 1;
        logf_("connection to %s does not start with a Hello (frame of %zu bytes)",
              g_members[c->to].name, len);
        return;
    }
    if (c->hello_len < 4 + len) {
        return;
    }
    c->hello_done = 1;
    fr = cetcdpeer__frame__unpack(NULL, len, c->hello + 4);
    if (fr == NULL || fr->body_case != CETCDPEER__FRAME__BODY_HELLO || fr->hello == NULL) {
        logf_("connection to %s: first frame is not a Hello", g_members[c->to].name);
    } else {
        c->from_id = fr->hello->from;
        learn_id(c->to, fr->hello->to);
        c->from = member_by_id(c->from_id);
    }
    if (fr != NULL) {
        cetcdpeer__frame__free_unpacked(fr, NULL);
    }
    if (pair_mode(c) == DROP) {
        conn_close(c, "refused by rule");
    }
}

static void watch(int fd, uint64_t data, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};

    if (epoll_ctl(g_ep, op, fd, &ev) != 0 && op != EPOLL_CTL_DEL) {
        die("epoll_ctl: %s", strerror(errno));
    }
}

static int dial_target(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0) {
        return -1;
    }
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void on_accept(int member)
{
    int fd, i, one = 1;
    struct conn *c = NULL;

    for (;;) {
        fd = accept4(g_members[member].lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;
        }
        for (i = 0; i < CONNS_MAX && g_conns[i].used; i++) {
        }
        if (i == CONNS_MAX) {
            logf_("too many connections; refusing one to %s", g_members[member].name);
            close(fd);
            continue;
        }
        c = &g_conns[i];
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->used = 1;
        c->cfd = fd;
        c->to = member;
        c->from = -1;
        c->from_id = 0;
        c->hello_done = 0;
        c->hello_len = 0;
        c->connected = 0;
        c->sfd = -1;
        watch(c->cfd, ud(UD_CLIENT, c->gen, (unsigned)i), EPOLLIN | EPOLLOUT | EPOLLET,
              EPOLL_CTL_ADD);
    }
}

/*
 * Read from fd into p as long as there is room. Bytes read within a few ms
 * of each other share a chunk, so a delayed link holds many small frames,
 * not CHUNKS_MAX of them. 0; -1: EOF or error; -2: the connection was
 * refused after its Hello (c is closed).
 */
static int fill(struct conn *c, int fd, struct pipe_buf *p, int delay_ms, int is_up)
{
    for (;;) {
        int64_t release_ms = now_ms() + delay_ms;
        struct chunk *ch = NULL;
        size_t slot;
        ssize_t r;

        if (p->n > 0) {
            ch = p->q[(p->head + p->n - 1) % CHUNKS_MAX];
            if (ch->len == CHUNK_BYTES || ch->release_ms + 5 < release_ms) {
                ch = NULL;
            }
        }
        if (ch == NULL) {
            if (p->n == CHUNKS_MAX) {
                return 0; /* full: pump_buffered() reads again once it drains */
            }
            slot = (p->head + p->n) % CHUNKS_MAX;
            if (p->q[slot] == NULL) {
                p->q[slot] = malloc(sizeof(struct chunk));
                if (p->q[slot] == NULL) {
                    return 0;
                }
            }
            ch = p->q[slot];
            ch->len = 0;
            ch->off = 0;
            ch->release_ms = release_ms;
        }
        r = recv(fd, ch->data + ch->len, CHUNK_BYTES - ch->len, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            return 0;
        }
        if (r <= 0) {
            return -1;
        }
        if (ch->len == 0) {
            p->n++;
        }
        ch->len += (size_t)r;
        if (is_up && !c->hello_done) {
            sniff_hello(c, ch->data + ch->len - (size_t)r, (size_t)r);
            if (!c->used) {
                return -2; /* ch is freed */
            }
        }
    }
}

/* Write what is due from p to fd. -1: error. */
static int drain(int fd, struct pipe_buf *p, int64_t now)
{
    while (p->n > 0) {
        struct chunk *ch = p->q[p->head];
        ssize_t w;

        if (ch->release_ms > now) {
            return 0;
        }
        w = send(fd, ch->data + ch->off, ch->len - ch->off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            return 0;
        }
        if (w < 0) {
            return -1;
        }
        ch->off += (size_t)w;
        if (ch->off == ch->len) {
            p->head = (p->head + 1) % CHUNKS_MAX;
            p->n--;
        }
    }
    return 0;
}

/* Move bytes both ways as far as possible; close on EOF or error. */
/* The Hello passed: connect to the target member. 0 or -1. */
static int start_target(struct conn *c)
{
    c->sfd = dial_target(g_members[c->to].target_port);
    if (c->sfd < 0) {
        return -1;
    }
    c->connected = 0;
    watch(c->sfd, ud(UD_SERVER, c->gen, (unsigned)(c - g_conns)), EPOLLIN | EPOLLOUT | EPOLLET,
          EPOLL_CTL_ADD);
    return 0;
}

/* Has the connect to the target finished? Closes c if it failed. */
static int target_ready(struct conn *c)
{
    struct pollfd pfd = {.fd = c->sfd, .events = POLLOUT};
    int err = 0;
    socklen_t el = sizeof(err);

    if (c->connected) {
        return 1;
    }
    if (poll(&pfd, 1, 0) == 0) {
        return 0; /* still connecting: its EPOLLOUT comes later */
    }
    if (getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0 ||
        (pfd.revents & (POLLERR | POLLHUP))) {
        conn_close(c, NULL); /* target down: the dialer sees a close */
        return 0;
    }
    c->connected = 1;
    return 1;
}

/*
 * Move bytes both ways as far as possible; close on EOF or error. The
 * target is dialed only once the Hello passed the rules, so a refused
 * connection never reaches the target member.
 */
static void pump(struct conn *c)
{
    int64_t now = now_ms();
    int delay = c->from >= 0 && pair_mode(c) == DELAY ? g_delay_ms[c->from][c->to] : 0;
    int rc = fill(c, c->cfd, &c->up, delay, 1);

    if (rc == -2) {
        return;
    }
    if (rc < 0) {
        conn_close(c, NULL);
        return;
    }
    if (c->sfd < 0) {
        if (!c->hello_done) {
            return;
        }
        if (start_target(c) != 0) {
            conn_close(c, NULL);
            return;
        }
    }
    if (!target_ready(c)) {
        return;
    }
    if (fill(c, c->sfd, &c->down, 0, 0) < 0 || drain(c->sfd, &c->up, now) < 0 ||
        drain(c->cfd, &c->down, now) < 0) {
        conn_close(c, NULL);
        return;
    }
    /* Room freed by the drain: read again (edge-triggered epoll). */
    if (c->up.n < CHUNKS_MAX && c->down.n < CHUNKS_MAX) {
        rc = fill(c, c->cfd, &c->up, delay, 1);
        if (rc == -2) {
            return;
        }
        if (rc < 0 || fill(c, c->sfd, &c->down, 0, 0) < 0) {
            conn_close(c, NULL);
        }
    }
}

/* Time until the next delayed chunk is due, at most POLL_MS. Connections
 * with buffered data are pumped again on every tick. */
static int next_timeout(void)
{
    int64_t now = now_ms(), best = POLL_MS;
    int i;

    for (i = 0; i < CONNS_MAX; i++) {
        const struct conn *c = &g_conns[i];
        const struct pipe_buf *ps[2] = {&c->up, &c->down};
        int k;

        if (!c->used) {
            continue;
        }
        for (k = 0; k < 2; k++) {
            /* Chunks already due wait for EPOLLOUT, not for a timer. */
            if (ps[k]->n > 0) {
                int64_t d = ps[k]->q[ps[k]->head]->release_ms - now;

                best = d > 0 && d < best ? d : best;
            }
        }
    }
    return (int)best;
}

static void pump_buffered(void)
{
    int i;

    for (i = 0; i < CONNS_MAX; i++) {
        struct conn *c = &g_conns[i];

        if (c->used && (c->up.n > 0 || c->down.n > 0 || (c->sfd >= 0 && !c->connected))) {
            pump(c);
        }
    }
}

static void maybe_reload(int force)
{
    struct stat st;
    int changed;
    static int64_t last_ms;
    static int old_mode[MEMBERS_MAX][MEMBERS_MAX], old_delay[MEMBERS_MAX][MEMBERS_MAX];

    if (!force && now_ms() - last_ms < POLL_MS) {
        return;
    }
    last_ms = now_ms();
    if (stat(g_ctl_path, &st) != 0) {
        memset(&st, 0, sizeof(st));
    }
    changed = st.st_ino != g_ctl_st.st_ino || st.st_size != g_ctl_st.st_size ||
              st.st_mtim.tv_sec != g_ctl_st.st_mtim.tv_sec ||
              st.st_mtim.tv_nsec != g_ctl_st.st_mtim.tv_nsec;
    if (!changed && !force) {
        return;
    }
    g_ctl_st = st;
    memcpy(old_mode, g_mode, sizeof(old_mode));
    memcpy(old_delay, g_delay_ms, sizeof(old_delay));
    if (read_rules() != 0) {
        logf_("cannot read %s: %s", g_ctl_path, strerror(errno));
        return;
    }
    if (memcmp(old_mode, g_mode, sizeof(old_mode)) != 0 ||
        memcmp(old_delay, g_delay_ms, sizeof(old_delay)) != 0) {
        log_rules();
        enforce_rules();
    }
}

static int listen_on(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0) {
        die("socket: %s", strerror(errno));
    }
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 64) != 0) {
        die("listen on 127.0.0.1:%d: %s", port, strerror(errno));
    }
    return fd;
}

static void parse_member(const char *arg)
{
    struct member *m;
    const char *eq = strchr(arg, '=');

    if (g_n_members == MEMBERS_MAX) {
        die("too many members (at most %d)", MEMBERS_MAX);
    }
    m = &g_members[g_n_members];
    if (eq == NULL || eq == arg || (size_t)(eq - arg) >= NAME_BYTES ||
        sscanf(eq + 1, "%d:%d", &m->listen_port, &m->target_port) != 2 || m->listen_port <= 0 ||
        m->listen_port > 65535 || m->target_port <= 0 || m->target_port > 65535) {
        die("want NAME=LISTEN_PORT:TARGET_PORT, got '%s'", arg);
    }
    memcpy(m->name, arg, (size_t)(eq - arg));
    m->name[eq - arg] = '\0';
    if (strcmp(m->name, "*") == 0 || member_index(m->name) >= 0) {
        die("bad or duplicate member name '%s'", m->name);
    }
    g_n_members++;
}

static void dispatch(uint64_t data)
{
    unsigned kind = (unsigned)(data >> 56), slot = (unsigned)(data & 0xffff);
    unsigned gen = (unsigned)(data >> 16) & 0xffffffffu;
    struct conn *c;

    if (kind == UD_LISTEN) {
        on_accept((int)slot);
        return;
    }
    if (slot >= CONNS_MAX) {
        return;
    }
    c = &g_conns[slot];
    if (c->used && c->gen == gen) {
        pump(c);
    }
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_signal};
    struct epoll_event evs[64];
    int i;

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--control") == 0 && i + 1 < argc) {
            g_ctl_path = argv[++i];
        } else {
            parse_member(argv[i]);
        }
    }
    if (g_ctl_path == NULL || g_n_members < 2) {
        fputs("usage: netproxy --control FILE NAME=LISTEN_PORT:TARGET_PORT...\n"
              "(see the comment at the top of tests/e2e/netproxy.c)\n",
              stderr);
        return 1;
    }
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) {
        die("epoll_create1: %s", strerror(errno));
    }
    for (i = 0; i < g_n_members; i++) {
        g_members[i].lfd = listen_on(g_members[i].listen_port);
        watch(g_members[i].lfd, ud(UD_LISTEN, 0, (unsigned)i), EPOLLIN, EPOLL_CTL_ADD);
        logf_("%s: 127.0.0.1:%d -> 127.0.0.1:%d", g_members[i].name, g_members[i].listen_port,
              g_members[i].target_port);
    }
    for (i = 0; i < CONNS_MAX; i++) {
        g_conns[i].sfd = -1;
    }
    maybe_reload(1);
    log_rules();
    while (!g_stop) {
        int n = epoll_wait(g_ep, evs, 64, next_timeout()), k;

        if (n < 0 && errno != EINTR) {
            die("epoll_wait: %s", strerror(errno));
        }
        for (k = 0; k < n; k++) {
            dispatch(evs[k].data.u64);
        }
        if (g_hup) {
            g_hup = 0;
            maybe_reload(1);
        } else {
            maybe_reload(0);
        }
        pump_buffered();
    }
    for (i = 0; i < CONNS_MAX; i++) {
        conn_close(&g_conns[i], NULL);
    }
    logf_("exiting");
    return 0;
}
