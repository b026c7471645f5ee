/*
 * lincheck — a linearizability test client and checker for cetcd.
 *
 *   lincheck run [OPTIONS] --history FILE HOST:PORT...
 *       C concurrent clients (one thread and one HTTP/2 connection each,
 *       starting round-robin over the endpoints, moving to the next one
 *       after any failure) run for D seconds against K keys PREFIX0..: a
 *       linearizable get (Range), a put of a unique value, or a
 *       compare-and-set Txn {value(key) == expected (or version(key) == 0)
 *       -> put key new, else -> range key}. Every operation goes into the
 *       history with its invocation and response times (CLOCK_MONOTONIC,
 *       comparable across processes) and its outcome. --serializable makes
 *       the gets serializable (possibly stale): not linearizable, a way to
 *       show that the whole test catches stale reads.
 *   lincheck check --history FILE [--final HOST:PORT...]
 *       With --final: read every key once more (retrying, bounded) and
 *       append those reads to the history: a final read after every other
 *       operation is what catches a lost acknowledged write. Then check the
 *       history and print a summary.
 *   lincheck --selftest
 *       Hand-made and generated histories with known answers.
 *
 * Outcomes. A response is "ok"; anything else (deadline, connection lost,
 * any gRPC error such as "etcdserver: request timed out", "leader changed",
 * "no leader") is "unknown" for a write, which may then have taken effect
 * at any time after its invocation or never, and a failed read is dropped.
 *
 * The checker. A history is linearizable iff each key's sub-history is
 * (P-compositionality, Horn & Kroening), so keys are checked one by one
 * with the Wing & Gong search as improved by Lowe ("Testing for
 * linearizability", 2017) and used by Knossos/Porcupine: the operations'
 * call and return events form one doubly linked list in time order; the
 * search walks it, linearizes the first call whose operation the register
 * model allows (lifting its call and return out of the list) and backtracks
 * when it meets the return of an operation not yet linearized. A cache of
 * (set of linearized operations, register value) pairs already explored
 * makes the search polynomial on well-behaved histories. The model is a
 * register holding one value or "absent": put sets it; get returns it; cas
 * succeeds iff it equals expected (then sets new) and fails iff not (the
 * failure branch's range shows the value). Unknown writes have no return
 * event: they may be linearized anywhere after their call or left out (an
 * unknown cas is linearized only where its compare holds: a failed one has
 * no effect, the same as leaving it out), and the search succeeds once
 * every ok operation is linearized. Before the
 * search, unknown writes whose value no operation ever observes are left
 * out: dropping such a write from any linearization leaves it valid,
 * because whatever follows it up to the next blind put observes nothing.
 *
 * History file: a "# lincheck keys=K prefix=P" line, then one line per
 * operation (values are "v<id>" on the wire, written here as the id;
 * -1 absent, -2 a value no client wrote, -3 not observed):
 *   ID CLIENT KEY put|get|cas EXPECT CALL_NS RET_NS|inf ok|unknown CAS_OK READ
 *
 * Exit status: 0 linearizable; 1 a violation (the offending window is
 * printed); 2 the search hit its cap (--max-states, default 4M states, or
 * CACHE_BYTES_MAX of cache; a test design problem: less concurrency or
 * shorter runs); 3 usage, I/O or final reads failed.
 *
 * Threading: in run mode each client thread owns its struct client; the
 * main thread reads them only after joining. The checker is single-threaded.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "h2client.h"
#include "rpc.pb-c.h"

enum {
    EXIT_LIN = 0,
    EXIT_VIOLATION = 1,
    EXIT_CAP = 2,
    EXIT_ERR = 3,
};

#define CLIENTS_MAX        64
#define KEYS_MAX           64
#define ENDPOINTS_MAX      16
#define OPS_PER_CLIENT_MAX (1u << 20)
#define ERRMSGS_MAX        16
#define KEY_BYTES_MAX      128
#define WINDOW_OPS_MAX     30

#define VAL_ABSENT    (-1)
#define VAL_FOREIGN   (-2)
#define VAL_UNSEEN    (-3) /* cas failed, value not reported */
#define T_INF         INT64_MAX
#define FINAL_CLIENT  (-1)
#define FINAL_READ_MS 30000

enum op_kind { OP_PUT, OP_GET, OP_CAS };

struct op {
    int64_t id; /* unique; a write writes "v<id>" */
    int client; /* FINAL_CLIENT: a final read */
    int key;
    int kind;
    int64_t expect;  /* cas: expected value; VAL_ABSENT: version == 0 */
    int64_t call_ns; /* CLOCK_MONOTONIC */
    int64_t ret_ns;  /* T_INF: outcome unknown */
    int ok;          /* 1: answered; 0: unknown (writes only) */
    int cas_ok;      /* cas, ok: the compare held */
    int64_t read;    /* get: value read; failed cas: value seen */
};

struct hist {
    struct op *v;
    size_t n;
    size_t cap;
    int keys;
    char prefix[KEY_BYTES_MAX];
};

static const char *const kind_name[] = {"put", "get", "cas"};

/* ------------------------------------------------------------ helpers --- */

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("lincheck: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(EXIT_ERR);
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL) {
        die("out of memory (%zu bytes)", n);
    }
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL) {
        die("out of memory (%zu x %zu bytes)", n, size);
    }
    return p;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void hist_add(struct hist *h, const struct op *o)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 1024;
        h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
    }
    h->v[h->n++] = *o;
}

static void key_name(const struct hist *h, int key, char *out, size_t cap)
{
    snprintf(out, cap, "%s%d", h->prefix, key);
}

/* "v<digits>" -> id; anything else is a value none of our clients wrote. */
static int64_t parse_value(const uint8_t *p, size_t n)
{
    int64_t v = 0;
    size_t i;

    if (n < 2 || n > 19 || p[0] != 'v') {
        return VAL_FOREIGN;
    }
    for (i = 1; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return VAL_FOREIGN;
        }
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static void fmt_value(int64_t v, char *out, size_t cap)
{
    switch (v) {
    case VAL_ABSENT:
        snprintf(out, cap, "absent");
        break;
    case VAL_FOREIGN:
        snprintf(out, cap, "foreign");
        break;
    case VAL_UNSEEN:
        snprintf(out, cap, "?");
        break;
    default:
        snprintf(out, cap, "v%" PRId64, v);
    }
}

/* ------------------------------------------------------- history file --- */

static int cmp_op_id(const void *a, const void *b)
{
    const struct op *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

static void hist_write(const struct hist *h, const char *path)
{
    FILE *f = fopen(path, "w");
    size_t i;

    if (f == NULL) {
        die("open %s: %s", path, strerror(errno));
    }
    fprintf(f, "# lincheck keys=%d prefix=%s\n", h->keys, h->prefix);
    for (i = 0; i < h->n; i++) {
        const struct op *o = &h->v[i];
        char ret[32];

        if (o->ret_ns == T_INF) {
            snprintf(ret, sizeof(ret), "inf");
        } else {
            snprintf(ret, sizeof(ret), "%" PRId64, o->ret_ns);
        }
        fprintf(f, "%" PRId64 " %d %d %s %" PRId64 " %" PRId64 " %s %s %d %" PRId64 "\n", o->id,
                o->client, o->key, kind_name[o->kind], o->expect, o->call_ns, ret,
                o->ok ? "ok" : "unknown", o->cas_ok, o->read);
    }
    if (fclose(f) != 0) {
        die("write %s: %s", path, strerror(errno));
    }
}

static void hist_read(struct hist *h, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    size_t lineno = 0;

    if (f == NULL) {
        die("open %s: %s", path, strerror(errno));
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        struct op o = {0};
        char kind[8], ret[32], outcome[16];
        int k;

        lineno++;
        if (line[0] == '#') {
            if (sscanf(line, "# lincheck keys=%d prefix=%127s", &h->keys, h->prefix) < 1) {
                die("%s:%zu: bad header", path, lineno);
            }
            continue;
        }
        if (sscanf(line, "%" SCNd64 " %d %d %7s %" SCNd64 " %" SCNd64 " %31s %15s %d %" SCNd64,
                   &o.id, &o.client, &o.key, kind, &o.expect, &o.call_ns, ret, outcome, &o.cas_ok,
                   &o.read) != 10) {
            die("%s:%zu: bad line", path, lineno);
        }
        for (k = 0; k < 3 && strcmp(kind, kind_name[k]) != 0; k++) {
        }
        if (k == 3 || o.key < 0 || o.key >= KEYS_MAX) {
            die("%s:%zu: bad kind or key", path, lineno);
        }
        o.kind = k;
        o.ret_ns = strcmp(ret, "inf") == 0 ? T_INF : strtoll(ret, NULL, 10);
        o.ok = strcmp(outcome, "ok") == 0;
        if (o.key >= h->keys) {
            h->keys = o.key + 1;
        }
        hist_add(h, &o);
    }
    fclose(f);
}

/* -------------------------------------------------------- run: client --- */

struct run_cfg {
    const char *endpoints[ENDPOINTS_MAX];
    int n_endpoints;
    int clients;
    int keys;
    const char *prefix;
    double duration_s;
    int timeout_ms;
    uint64_t seed;
    int serializable; /* gets may be stale: to show the checker catches it */
};

/* Owned by its thread until joined. */
struct client {
    int idx;
    const struct run_cfg *cfg;
    pthread_t th;
    uint64_t rng;
    int ep;
    struct h2c *conn;
    struct hist ops;
    int64_t last[KEYS_MAX]; /* value last seen per key */
    int has_last[KEYS_MAX];
    long dropped_reads;
    long conn_fails;
};

static atomic_llong g_next_id = 1;
static int64_t g_run_end_ns;

/* Distinct error messages seen, for the summary. */
static pthread_mutex_t g_err_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_errmsg[ERRMSGS_MAX][H2C_GRPC_MSG_BYTES + 16];
static long g_errcnt[ERRMSGS_MAX];
static int g_n_errmsg;

static void note_error(const char *what)
{
    int i;

    pthread_mutex_lock(&g_err_mu);
    for (i = 0; i < g_n_errmsg && strcmp(g_errmsg[i], what) != 0; i++) {
    }
    if (i < g_n_errmsg) {
        g_errcnt[i]++;
    } else if (g_n_errmsg < ERRMSGS_MAX) {
        snprintf(g_errmsg[g_n_errmsg], sizeof(g_errmsg[0]), "%s", what);
        g_errcnt[g_n_errmsg++] = 1;
    }
    pthread_mutex_unlock(&g_err_mu);
}

/* Connect to the current endpoint, moving on after each failure; false if
 * the run ended first. */
static int ensure_conn(struct client *cl, int64_t end_ns)
{
    while (cl->conn == NULL) {
        const char *ep = cl->cfg->endpoints[cl->ep];

        if (h2c_dial(&cl->conn, ep, 1000) == 0) {
            return 1;
        }
        cl->conn_fails++;
        cl->ep = (cl->ep + 1) % cl->cfg->n_endpoints;
        if (now_ns() >= end_ns) {
            return 0;
        }
        usleep(50 * 1000);
    }
    return 1;
}

/* One unary call; on success *rep holds the response message. Any failure
 * drops the connection and moves to the next endpoint. 0 or -1. */
static int rpc(struct client *cl, const char *path, const uint8_t *req, size_t len,
               struct h2c_reply *rep)
{
    int rc = h2c_unary(cl->conn, path, req, len, cl->cfg->timeout_ms, rep);
    char what[H2C_GRPC_MSG_BYTES + 16];

    if (rc == H2C_OK && rep->grpc_status == 0 && rep->msg != NULL) {
        return 0;
    }
    if (rc == H2C_TIMEOUT) {
        note_error("client deadline");
    } else if (rc == H2C_CONN) {
        note_error("connection lost");
    } else {
        snprintf(what, sizeof(what), "grpc %d: %s", rep->grpc_status, rep->grpc_message);
        note_error(what);
    }
    h2c_reply_free(rep);
    h2c_close(cl->conn);
    cl->conn = NULL;
    cl->ep = (cl->ep + 1) % cl->cfg->n_endpoints;
    return -1;
}

static int64_t kv_value(const Etcdserverpb__RangeResponse *r)
{
    if (r->n_kvs == 0) {
        return VAL_ABSENT;
    }
    return parse_value(r->kvs[0]->value.data, r->kvs[0]->value.len);
}

static void do_get(struct client *cl, struct op *o, const char *key)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *resp;
    struct h2c_reply rep;
    uint8_t buf[256];
    size_t n;

    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    req.serializable = cl->cfg->serializable;
    n = etcdserverpb__range_request__pack(&req, buf);
    o->call_ns = now_ns();
    if (rpc(cl, "/etcdserverpb.KV/Range", buf, n, &rep) != 0) {
        o->ok = -1;
        return;
    }
    o->ret_ns = now_ns();
    resp = etcdserverpb__range_response__unpack(NULL, rep.msg_len, rep.msg);
    h2c_reply_free(&rep);
    if (resp == NULL) {
        o->ok = -1;
        return;
    }
    o->ok = 1;
    o->read = kv_value(resp);
    etcdserverpb__range_response__free_unpacked(resp, NULL);
}

static void do_put(struct client *cl, struct op *o, const char *key)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *resp;
    struct h2c_reply rep;
    char val[32];
    uint8_t buf[256];
    size_t n;

    snprintf(val, sizeof(val), "v%" PRId64, o->id);
    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    req.value.data = (uint8_t *)val;
    req.value.len = strlen(val);
    n = etcdserverpb__put_request__pack(&req, buf);
    o->call_ns = now_ns();
    if (rpc(cl, "/etcdserverpb.KV/Put", buf, n, &rep) != 0) {
        return;
    }
    resp = etcdserverpb__put_response__unpack(NULL, rep.msg_len, rep.msg);
    h2c_reply_free(&rep);
    if (resp == NULL) {
        return;
    }
    o->ret_ns = now_ns();
    o->ok = 1;
    etcdserverpb__put_response__free_unpacked(resp, NULL);
}

static void do_cas(struct client *cl, struct op *o, const char *key)
{
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT, *cmps[1] = {&cmp};
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RequestOp op_put = ETCDSERVERPB__REQUEST_OP__INIT, *succ[1] = {&op_put};
    Etcdserverpb__RequestOp op_get = ETCDSERVERPB__REQUEST_OP__INIT, *fail[1] = {&op_get};
    Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnResponse *resp;
    struct h2c_reply rep;
    char val[32], exp[32];
    uint8_t buf[512];
    size_t n;

    snprintf(val, sizeof(val), "v%" PRId64, o->id);
    cmp.key.data = (uint8_t *)key;
    cmp.key.len = strlen(key);
    cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    if (o->expect == VAL_ABSENT) {
        cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
        cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
        cmp.version = 0;
    } else {
        snprintf(exp, sizeof(exp), "v%" PRId64, o->expect);
        cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
        cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
        cmp.value.data = (uint8_t *)exp;
        cmp.value.len = strlen(exp);
    }
    put.key = cmp.key;
    put.value.data = (uint8_t *)val;
    put.value.len = strlen(val);
    get.key = cmp.key;
    op_put.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op_put.request_put = &put;
    op_get.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    op_get.request_range = &get;
    req.n_compare = 1;
    req.compare = cmps;
    req.n_success = 1;
    req.success = succ;
    req.n_failure = 1;
    req.failure = fail;
    n = etcdserverpb__txn_request__pack(&req, buf);
    o->call_ns = now_ns();
    if (rpc(cl, "/etcdserverpb.KV/Txn", buf, n, &rep) != 0) {
        return;
    }
    resp = etcdserverpb__txn_response__unpack(NULL, rep.msg_len, rep.msg);
    h2c_reply_free(&rep);
    if (resp == NULL) {
        return;
    }
    o->ret_ns = now_ns();
    o->ok = 1;
    o->cas_ok = resp->succeeded;
    o->read = VAL_UNSEEN;
    if (!resp->succeeded && resp->n_responses == 1 &&
        resp->responses[0]->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE) {
        o->read = kv_value(resp->responses[0]->response_range);
    }
    etcdserverpb__txn_response__free_unpacked(resp, NULL);
}

/* Choose and run one operation; record it unless it is a failed read. */
static void client_step(struct client *cl)
{
    const struct run_cfg *cfg = cl->cfg;
    struct op o = {.client = cl->idx, .ret_ns = T_INF, .read = VAL_UNSEEN};
    char key[KEY_BYTES_MAX + 16];
    unsigned r = (unsigned)(splitmix64(&cl->rng) % 100);

    o.key = (int)(splitmix64(&cl->rng) % (uint64_t)cfg->keys);
    o.id = atomic_fetch_add(&g_next_id, 1);
    snprintf(key, sizeof(key), "%s%d", cfg->prefix, o.key);
    if (r < 40) {
        o.kind = OP_GET;
        do_get(cl, &o, key);
        if (o.ok != 1) {
            cl->dropped_reads++;
            return;
        }
        cl->last[o.key] = o.read;
        cl->has_last[o.key] = 1;
    } else if (r < 70 || !cl->has_last[o.key]) {
        o.kind = OP_PUT;
        do_put(cl, &o, key);
        if (o.ok) {
            cl->last[o.key] = o.id;
            cl->has_last[o.key] = 1;
        }
    } else {
        o.kind = OP_CAS;
        o.expect = r < 73 ? VAL_ABSENT : cl->last[o.key];
        do_cas(cl, &o, key);
        if (o.ok && o.cas_ok) {
            cl->last[o.key] = o.id;
        } else if (o.ok && o.read != VAL_UNSEEN) {
            cl->last[o.key] = o.read;
        }
    }
    hist_add(&cl->ops, &o);
}

static void *client_main(void *arg)
{
    struct client *cl = arg;

    while (now_ns() < g_run_end_ns && cl->ops.n < OPS_PER_CLIENT_MAX) {
        if (!ensure_conn(cl, g_run_end_ns)) {
            break;
        }
        client_step(cl);
    }
    h2c_close(cl->conn);
    cl->conn = NULL;
    return NULL;
}

static int do_run(const struct run_cfg *cfg, const char *hist_path)
{
    struct client *cls = xcalloc((size_t)cfg->clients, sizeof(*cls));
    struct hist h = {.keys = cfg->keys};
    long dropped = 0, conn_fails = 0, n_ok = 0, n_unknown = 0;
    int i;
    size_t j;

    snprintf(h.prefix, sizeof(h.prefix), "%s", cfg->prefix);
    g_run_end_ns = now_ns() + (int64_t)(cfg->duration_s * 1e9);
    for (i = 0; i < cfg->clients; i++) {
        uint64_t s = cfg->seed * 1000003u + (uint64_t)i;

        cls[i].idx = i;
        cls[i].cfg = cfg;
        cls[i].rng = splitmix64(&s);
        cls[i].ep = i % cfg->n_endpoints;
        if (pthread_create(&cls[i].th, NULL, client_main, &cls[i]) != 0) {
            die("pthread_create failed");
        }
    }
    for (i = 0; i < cfg->clients; i++) {
        pthread_join(cls[i].th, NULL);
        for (j = 0; j < cls[i].ops.n; j++) {
            hist_add(&h, &cls[i].ops.v[j]);
        }
        dropped += cls[i].dropped_reads;
        conn_fails += cls[i].conn_fails;
        free(cls[i].ops.v);
    }
    free(cls);
    qsort(h.v, h.n, sizeof(*h.v), cmp_op_id);
    for (j = 0; j < h.n; j++) {
        if (h.v[j].ok) {
            n_ok++;
        } else {
            n_unknown++;
        }
    }
    hist_write(&h, hist_path);
    printf("lincheck run: %zu ops recorded (%ld ok, %ld unknown), %ld failed reads dropped, "
           "%ld failed dials\n",
           h.n, n_ok, n_unknown, dropped, conn_fails);
    for (i = 0; i < g_n_errmsg; i++) {
        printf("lincheck run: error seen %ld times: %s\n", g_errcnt[i], g_errmsg[i]);
    }
    free(h.v);
    return EXIT_LIN;
}

/* Read every key until it answers (bounded); append the reads. 0 or -1. */
static int final_reads(struct hist *h, const char *const *eps, int n_eps)
{
    struct run_cfg cfg = {.n_endpoints = n_eps, .keys = h->keys, .timeout_ms = 2000};
    struct client cl = {.cfg = &cfg};
    int64_t end_ns = now_ns() + (int64_t)FINAL_READ_MS * 1000000;
    int64_t next_id = 1;
    size_t i;
    int k;

    for (k = 0; k < n_eps; k++) {
        cfg.endpoints[k] = eps[k];
    }
    cfg.prefix = h->prefix;
    for (i = 0; i < h->n; i++) {
        if (h->v[i].id >= next_id) {
            next_id = h->v[i].id + 1;
        }
    }
    for (k = 0; k < h->keys; k++) {
        char key[KEY_BYTES_MAX + 16];
        struct op o = {0};

        key_name(h, k, key, sizeof(key));
        do {
            if (!ensure_conn(&cl, end_ns)) {
                break;
            }
            o = (struct op){.id = next_id, .client = FINAL_CLIENT, .key = k, .kind = OP_GET};
            do_get(&cl, &o, key);
            if (o.ok != 1) {
                usleep(100 * 1000);
            }
        } while (o.ok != 1 && now_ns() < end_ns);
        if (o.ok != 1) {
            fprintf(stderr, "lincheck: final read of %s failed for %d ms\n", key, FINAL_READ_MS);
            h2c_close(cl.conn);
            return -1;
        }
        next_id++;
        hist_add(h, &o);
    }
    h2c_close(cl.conn);
    return 0;
}

/* ------------------------------------------------------------ checker --- */

/*
 * The cache of explored configurations: a hash set of (set of linearized
 * operations, register value). Ops are indexed in call order, so a set is
 * mostly "all of the first few thousand, then a sparse tail": it is stored
 * as the number of leading all-ones words and the words after them up to
 * the last non-zero one, in one growable arena. The table is open-addressed
 * at a load factor of at most 1/2; the hash is maintained incrementally by
 * the search (Zobrist: the xor of one random word per linearized op).
 */
struct cache_slot {
    uint64_t h; /* 0: empty */
    int64_t st;
    size_t off;    /* tail words in the arena */
    uint32_t ones; /* leading words that are all ones */
    uint32_t len;  /* tail words stored */
};

struct cache {
    size_t words; /* uint64_t per full bitset */
    uint64_t *arena;
    size_t arena_len;
    size_t arena_cap;
    size_t n;
    struct cache_slot *tab;
    size_t tab_cap; /* a power of two */
    size_t max_states;
    size_t max_bytes;
};

#define CACHE_BYTES_MAX (1024u << 20)

static uint64_t mix_state(uint64_t h, int64_t st)
{
    uint64_t s = (uint64_t)st ^ 0x5851f42d4c957f2dULL;

    h ^= splitmix64(&s);
    return h ? h : 1;
}

static void cache_grow(struct cache *c)
{
    struct cache_slot *old = c->tab;
    size_t old_cap = c->tab_cap, i;

    c->tab_cap = old_cap ? 2 * old_cap : 1024;
    c->tab = xcalloc(c->tab_cap, sizeof(*c->tab));
    for (i = 0; i < old_cap; i++) {
        size_t j = old[i].h & (c->tab_cap - 1);

        if (old[i].h == 0) {
            continue;
        }
        while (c->tab[j].h != 0) {
            j = (j + 1) & (c->tab_cap - 1);
        }
        c->tab[j] = old[i];
    }
    free(old);
}

/* 1: added; 0: already there; -1: a cap (states or bytes) is reached. */
static int cache_add(struct cache *c, uint64_t h, int64_t st, const uint64_t *bits)
{
    size_t j, ones = 0, end = c->words;

    while (ones < c->words && bits[ones] == ~0ULL) {
        ones++;
    }
    while (end > ones && bits[end - 1] == 0) {
        end--;
    }
    if (2 * (c->n + 1) > c->tab_cap) {
        if (c->tab_cap * 2 * sizeof(*c->tab) + c->arena_cap * 8 > c->max_bytes) {
            return -1;
        }
        cache_grow(c);
    }
    for (j = h & (c->tab_cap - 1); c->tab[j].h != 0; j = (j + 1) & (c->tab_cap - 1)) {
        const struct cache_slot *s = &c->tab[j];

        if (s->h == h && s->st == st && s->ones == ones && s->len == end - ones &&
            memcmp(c->arena + s->off, bits + ones, s->len * 8) == 0) {
            return 0;
        }
    }
    if (c->n >= c->max_states) {
        return -1;
    }
    while (c->arena_len + (end - ones) > c->arena_cap) {
        c->arena_cap = c->arena_cap ? 2 * c->arena_cap : 4096;
        if (c->arena_cap * 8 + c->tab_cap * sizeof(*c->tab) > c->max_bytes) {
            return -1;
        }
        c->arena = xrealloc(c->arena, c->arena_cap * 8);
    }
    memcpy(c->arena + c->arena_len, bits + ones, (end - ones) * 8);
    c->tab[j] = (struct cache_slot){.h = h,
                                    .st = st,
                                    .off = c->arena_len,
                                    .ones = (uint32_t)ones,
                                    .len = (uint32_t)(end - ones)};
    c->arena_len += end - ones;
    c->n++;
    return 1;
}

/* One event of the search list. */
struct entry {
    int op; /* index into the key's op array */
    int is_call;
    int64_t t;
    struct entry *prev, *next;
    struct entry *ret; /* call: its return entry, or NULL (unknown) */
};

/* Register model. 1 and *out the new value if o may take effect in st. */
static int step(const struct op *o, int64_t st, int64_t *out)
{
    *out = st;
    switch (o->kind) {
    case OP_PUT:
        *out = o->id;
        return 1;
    case OP_GET:
        return o->read == st;
    case OP_CAS:
        if (!o->ok || o->cas_ok) {
            if (st != o->expect) {
                return 0;
            }
            *out = o->id;
            return 1;
        }
        return st != o->expect && (o->read == VAL_UNSEEN || o->read == st);
    }
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    if (x->t != y->t) {
        return x->t < y->t ? -1 : 1;
    }
    /* Same instant: calls first, the permissive order. */
    return y->is_call - x->is_call;
}

struct key_result {
    int verdict; /* EXIT_LIN, EXIT_VIOLATION or EXIT_CAP */
    size_t n_ops;
    size_t n_pruned;
    size_t states;
    /* On a violation: the deepest configuration reached. */
    size_t best_depth;
    int64_t best_state;
    int *best_stack; /* op indices, in linearization order */
    uint64_t *best_bits;
};

static void print_op(const struct op *o, int64_t t0, const char *mark)
{
    char a[24], b[24], r[24];
    double call_ms = (double)(o->call_ns - t0) / 1e6;

    fmt_value(o->id, b, sizeof(b));
    fmt_value(o->expect, a, sizeof(a));
    fmt_value(o->read, r, sizeof(r));
    printf("#   %s op %" PRId64 " client %d %s", mark, o->id, o->client, kind_name[o->kind]);
    switch (o->kind) {
    case OP_PUT:
        printf(" %s", b);
        break;
    case OP_GET:
        printf(" -> %s", o->ok ? r : "?");
        break;
    case OP_CAS:
        printf(" %s->%s", a, b);
        if (o->ok && o->cas_ok) {
            printf(" succeeded");
        } else if (o->ok) {
            printf(" failed (saw %s)", r);
        }
        break;
    }
    if (o->ret_ns == T_INF) {
        printf("  [%.3f ms .. unknown]\n", call_ms);
    } else {
        printf("  [%.3f .. %.3f ms]\n", call_ms, (double)(o->ret_ns - t0) / 1e6);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/*
 * The values some op observes (reads, or expects in a cas), sorted: an
 * unknown write of any other value is never worth linearizing.
 */
static size_t observed_values(const struct op *ops, size_t n, int64_t *out)
{
    size_t i, k = 0;

    for (i = 0; i < n; i++) {
        const struct op *o = &ops[i];

        if (o->kind == OP_CAS) {
            out[k++] = o->expect;
        }
        if (o->ok && (o->kind == OP_GET || (o->kind == OP_CAS && !o->cas_ok))) {
            out[k++] = o->read;
        }
    }
    qsort(out, k, sizeof(*out), cmp_i64);
    return k;
}

/* Unlink a call entry and its return entry from the list; relink them. */
static void lift(struct entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    if (e->ret != NULL) {
        e->ret->prev->next = e->ret->next;
        e->ret->next->prev = e->ret->prev;
    }
}

static void unlift(struct entry *e)
{
    if (e->ret != NULL) {
        e->ret->prev->next = e->ret;
        e->ret->next->prev = e->ret;
    }
    e->prev->next = e;
    e->next->prev = e;
}

/* Build the time-ordered event list of ops[0..n) between head and tail. */
static size_t build_events(const struct op *ops, size_t n, struct entry *ev, struct entry *head,
                           struct entry *tail)
{
    struct entry **call_of = xcalloc(n, sizeof(*call_of));
    size_t m = 0, i;

    for (i = 0; i < n; i++) {
        ev[m++] = (struct entry){.op = (int)i, .is_call = 1, .t = ops[i].call_ns};
        if (ops[i].ret_ns != T_INF) {
            ev[m++] = (struct entry){.op = (int)i, .is_call = 0, .t = ops[i].ret_ns};
        }
    }
    qsort(ev, m, sizeof(*ev), cmp_entry);
    for (i = 0; i < m; i++) {
        if (ev[i].is_call) {
            call_of[ev[i].op] = &ev[i];
        } else {
            call_of[ev[i].op]->ret = &ev[i];
        }
    }
    free(call_of);
    head->next = m ? &ev[0] : tail;
    tail->prev = m ? &ev[m - 1] : head;
    for (i = 0; i < m; i++) {
        ev[i].prev = i ? &ev[i - 1] : head;
        ev[i].next = i + 1 < m ? &ev[i + 1] : tail;
    }
    return m;
}

/*
 * The Wing & Gong search with Lowe's cache over one key's ops. Walk the
 * list: at a call whose op the model allows and whose configuration is new,
 * linearize it (lift it, push it) and start again from the head; at the
 * return of an op not yet linearized, backtrack (pop, unlift, go on after
 * the popped call). Done when every ok op is linearized.
 */
static void check_key(const struct op *ops, size_t n, size_t max_states, struct key_result *res)
{
    struct entry *ev = xcalloc(2 * n + 2, sizeof(*ev));
    struct entry *head = &ev[2 * n], *tail = &ev[2 * n + 1], *e;
    struct cache c = {
        .words = (n + 63) / 64 + 1, .max_states = max_states, .max_bytes = CACHE_BYTES_MAX};
    uint64_t *bits = xcalloc(c.words, 8), *zob = xcalloc(n + 1, 8), h = 0;
    struct entry **stack = xcalloc(n + 1, sizeof(*stack));
    int64_t *stack_st = xcalloc(n + 1, sizeof(int64_t));
    size_t i, depth = 0, ok_left = 0, ok_done = 0;
    int64_t st = VAL_ABSENT, nst;
    uint64_t seed = 42;

    for (i = 0; i < n; i++) {
        zob[i] = splitmix64(&seed);
        ok_left += ops[i].ret_ns != T_INF;
    }
    build_events(ops, n, ev, head, tail);
    res->verdict = EXIT_LIN;
    res->best_depth = 0;
    res->best_state = st;
    res->best_stack = xcalloc(n + 1, sizeof(int));
    res->best_stack[0] = -1;
    res->best_bits = xcalloc(c.words, 8);

    e = head->next;
    while (ok_done < ok_left) {
        if (e != tail && e->is_call) {
            int rc;

            if (!step(&ops[e->op], st, &nst)) {
                e = e->next;
                continue;
            }
            bits[e->op / 64] |= 1ULL << (e->op % 64);
            rc = cache_add(&c, mix_state(h ^ zob[e->op], nst), nst, bits);
            if (rc < 0) {
                res->verdict = EXIT_CAP;
                break;
            }
            if (rc == 0) {
                bits[e->op / 64] &= ~(1ULL << (e->op % 64));
                e = e->next;
                continue;
            }
            stack[depth] = e;
            stack_st[depth] = st;
            depth++;
            h ^= zob[e->op];
            st = nst;
            lift(e);
            ok_done += e->ret != NULL;
            if (ok_done > res->best_depth) {
                res->best_depth = ok_done;
                res->best_state = st;
                for (i = 0; i < depth; i++) {
                    res->best_stack[i] = stack[i]->op;
                }
                res->best_stack[depth] = -1;
                memcpy(res->best_bits, bits, c.words * 8);
            }
            e = head->next;
            continue;
        }
        /* The return of an op not yet linearized (or the end): backtrack. */
        if (depth == 0) {
            res->verdict = EXIT_VIOLATION;
            break;
        }
        depth--;
        e = stack[depth];
        st = stack_st[depth];
        h ^= zob[e->op];
        bits[e->op / 64] &= ~(1ULL << (e->op % 64));
        ok_done -= e->ret != NULL;
        unlift(e);
        e = e->next;
    }
    res->states = c.n;
    free(ev);
    free(c.arena);
    free(c.tab);
    free(bits);
    free(zob);
    free(stack);
    free(stack_st);
}

/* Print the window around the point where the search got stuck. */
static void report_violation(const struct op *ops, size_t n, const struct key_result *res,
                             int64_t t0)
{
    const struct op *blocked = NULL;
    size_t i, d, shown = 0;
    char sv[24];

    for (i = 0; i < n; i++) {
        int lin = (res->best_bits[i / 64] >> (i % 64)) & 1;

        if (!lin && ops[i].ret_ns != T_INF &&
            (blocked == NULL || ops[i].ret_ns < blocked->ret_ns)) {
            blocked = &ops[i];
        }
    }
    fmt_value(res->best_state, sv, sizeof(sv));
    printf("#   longest linearizable prefix: %zu ok ops; the register then holds %s\n",
           res->best_depth, sv);
    for (d = 0; res->best_stack[d] >= 0; d++) {
    }
    printf("#   its last linearized ops, in order:\n");
    for (i = d > 8 ? d - 8 : 0; i < d; i++) {
        print_op(&ops[res->best_stack[i]], t0, "lin ");
    }
    if (blocked == NULL) {
        return;
    }
    printf("#   the first ok op (by response time) that cannot follow:\n");
    print_op(blocked, t0, "FAIL");
    printf("#   ops overlapping it (lin = in the prefix above):\n");
    for (i = 0; i < n && shown < WINDOW_OPS_MAX; i++) {
        const struct op *o = &ops[i];
        int lin = (res->best_bits[i / 64] >> (i % 64)) & 1;

        if (o != blocked && o->call_ns <= blocked->ret_ns && o->ret_ns >= blocked->call_ns) {
            print_op(o, t0, lin ? "lin " : "    ");
            shown++;
        }
    }
    if (blocked->kind != OP_PUT && blocked->read >= 0) {
        for (i = 0; i < n; i++) {
            if (ops[i].id == blocked->read && ops[i].kind != OP_GET) {
                printf("#   the write of the value it saw:\n");
                print_op(&ops[i], t0, "    ");
            }
        }
    }
}

static int cmp_op_call(const void *a, const void *b)
{
    const struct op *x = a, *y = b;

    if (x->call_ns != y->call_ns) {
        return x->call_ns < y->call_ns ? -1 : 1;
    }
    return x->id < y->id ? -1 : x->id > y->id;
}

struct check_stats {
    long ok[3];
    long unknown[3];
    long cas_won;
    long states;
};

/*
 * Check a whole history; prints a line per key (and the window of a
 * violation unless quiet). Returns the exit status.
 */
static int check_hist(struct hist *h, size_t max_states, int quiet, struct check_stats *cs)
{
    int verdict = EXIT_LIN, k;
    int64_t t0 = T_INF;
    size_t i;

    memset(cs, 0, sizeof(*cs));
    for (i = 0; i < h->n; i++) {
        const struct op *o = &h->v[i];

        if (o->call_ns < t0) {
            t0 = o->call_ns;
        }
        if (o->ok) {
            cs->ok[o->kind]++;
            cs->cas_won += o->kind == OP_CAS && o->cas_ok;
        } else {
            cs->unknown[o->kind]++;
        }
    }
    for (k = 0; k < h->keys; k++) {
        struct op *ops = xcalloc(h->n, sizeof(*ops));
        int64_t *seen = xcalloc(2 * h->n, sizeof(*seen));
        struct key_result res = {0};
        size_t n = 0, kept = 0, n_seen;
        char key[KEY_BYTES_MAX + 16];

        for (i = 0; i < h->n; i++) {
            const struct op *o = &h->v[i];

            /* A read without an answer says nothing. */
            if (o->key == k && !(o->kind == OP_GET && !o->ok)) {
                ops[n++] = *o;
            }
        }
        n_seen = observed_values(ops, n, seen);
        for (i = 0; i < n; i++) {
            if (ops[i].ok || bsearch(&ops[i].id, seen, n_seen, sizeof(*seen), cmp_i64) != NULL) {
                ops[kept++] = ops[i];
            }
        }
        qsort(ops, kept, sizeof(*ops), cmp_op_call);
        check_key(ops, kept, max_states, &res);
        cs->states += (long)res.states;
        key_name(h, k, key, sizeof(key));
        if (!quiet) {
            printf("# key %s: %zu ops (%zu unobserved unknown writes left out), %zu states: %s\n",
                   key, n, n - kept, res.states,
                   res.verdict == EXIT_LIN         ? "linearizable"
                   : res.verdict == EXIT_VIOLATION ? "NOT LINEARIZABLE"
                                                   : "state cap reached (no verdict)");
        }
        if (res.verdict == EXIT_VIOLATION && !quiet) {
            report_violation(ops, kept, &res, t0);
        }
        if (res.verdict == EXIT_VIOLATION ||
            (res.verdict == EXIT_CAP && verdict != EXIT_VIOLATION)) {
            verdict = res.verdict;
        }
        free(res.best_stack);
        free(res.best_bits);
        free(seen);
        free(ops);
    }
    return verdict;
}

static void print_finals(const struct hist *h)
{
    size_t i, j;

    for (i = 0; i < h->n; i++) {
        const struct op *f = &h->v[i];
        char key[KEY_BYTES_MAX + 16], v[24];

        if (f->client != FINAL_CLIENT) {
            continue;
        }
        key_name(h, f->key, key, sizeof(key));
        fmt_value(f->read, v, sizeof(v));
        printf("# final read: %s = %s", key, v);
        for (j = 0; j < h->n; j++) {
            const struct op *w = &h->v[j];

            if (w->id == f->read && w->kind != OP_GET) {
                printf(" (written by client %d's %s, %s)", w->client, kind_name[w->kind],
                       w->ok ? "acknowledged" : "outcome unknown");
            }
        }
        printf("\n");
    }
}

static int do_check(const char *hist_path, const char *const *eps, int n_eps, size_t max_states)
{
    struct hist h = {0};
    struct check_stats cs;
    int verdict;
    long ok_all;

    hist_read(&h, hist_path);
    if (n_eps > 0) {
        if (final_reads(&h, eps, n_eps) != 0) {
            free(h.v);
            return EXIT_ERR;
        }
        hist_write(&h, hist_path);
        print_finals(&h);
    }
    verdict = check_hist(&h, max_states, 0, &cs);
    ok_all = cs.ok[OP_PUT] + cs.ok[OP_GET] + cs.ok[OP_CAS];
    printf("# ops: put %ld ok %ld unknown; get %ld ok; cas %ld ok (%ld succeeded) %ld unknown\n",
           cs.ok[OP_PUT], cs.unknown[OP_PUT], cs.ok[OP_GET], cs.ok[OP_CAS], cs.cas_won,
           cs.unknown[OP_CAS]);
    printf("lincheck: %s ok_ops=%ld unknown_ops=%ld states=%ld\n",
           verdict == EXIT_LIN         ? "LINEARIZABLE"
           : verdict == EXIT_VIOLATION ? "VIOLATION"
                                       : "STATE-CAP",
           ok_all, cs.unknown[OP_PUT] + cs.unknown[OP_CAS], cs.states);
    free(h.v);
    return verdict;
}

/* ----------------------------------------------------------- selftest --- */

/* Hand-made ops on key 0: times in ms; ret_ms < 0 means unknown. */
static void t_op(struct hist *h, int64_t id, int kind, int64_t expect, int64_t call_ms,
                 int64_t ret_ms, int cas_ok, int64_t read)
{
    struct op o = {
        .id = id,
        .client = (int)(id % 7),
        .kind = kind,
        .expect = expect,
        .call_ns = call_ms * 1000000,
        .ret_ns = ret_ms < 0 ? T_INF : ret_ms * 1000000,
        .ok = ret_ms >= 0,
        .cas_ok = cas_ok,
        .read = read,
    };

    h->keys = 1;
    hist_add(h, &o);
}

struct selftest {
    const char *name;
    int want; /* EXIT_LIN or EXIT_VIOLATION */
    void (*build)(struct hist *h);
};

#define A VAL_ABSENT
#define U (-1) /* unknown response */

static void st_seq(struct hist *h)
{
    t_op(h, 1, OP_GET, 0, 0, 5, 0, A);
    t_op(h, 2, OP_PUT, 0, 10, 20, 0, 0);
    t_op(h, 3, OP_GET, 0, 30, 40, 0, 2);
    t_op(h, 4, OP_CAS, 2, 50, 60, 1, 0);
    t_op(h, 5, OP_CAS, 2, 70, 80, 0, 4);
    t_op(h, 6, OP_GET, 0, 90, 95, 0, 4);
}

static void st_concurrent_read_old(struct hist *h)
{
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_PUT, 0, 20, 40, 0, 0);
    t_op(h, 3, OP_GET, 0, 25, 30, 0, 1); /* overlaps put 2: old value ok */
    t_op(h, 4, OP_GET, 0, 26, 31, 0, 2); /* ... or the new one */
}

static void st_reordered_puts(struct hist *h)
{
    /* Two overlapping puts; reads show 2 then 1: 2 took effect first. */
    t_op(h, 1, OP_PUT, 0, 0, 50, 0, 0);
    t_op(h, 2, OP_PUT, 0, 0, 50, 0, 0);
    t_op(h, 3, OP_GET, 0, 10, 20, 0, 2);
    t_op(h, 4, OP_GET, 0, 30, 60, 0, 1);
    t_op(h, 5, OP_GET, 0, 70, 80, 0, 1);
}

static void st_unknown_taken(struct hist *h)
{
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_PUT, 0, 20, U, 0, 0);
    t_op(h, 3, OP_GET, 0, 30, 40, 0, 1);
    t_op(h, 4, OP_GET, 0, 500, 510, 0, 2); /* took effect late */
    t_op(h, 5, OP_CAS, 2, 600, U, 0, 0);
    t_op(h, 6, OP_PUT, 0, 610, U, 0, 0); /* never observed */
    t_op(h, 7, OP_GET, 0, 700, 710, 0, 5);
}

static void st_unknown_never(struct hist *h)
{
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_PUT, 0, 20, U, 0, 0);
    t_op(h, 3, OP_CAS, 1, 30, U, 0, 0);
    t_op(h, 4, OP_GET, 0, 500, 510, 0, 1);
}

static void st_failed_cas_sees(struct hist *h)
{
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_CAS, A, 20, 30, 0, 1);
    t_op(h, 3, OP_CAS, 9, 40, 50, 0, 1);
    t_op(h, 4, OP_CAS, 1, 60, 70, 1, 0);
}

static void st_stale_read(struct hist *h)
{
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_PUT, 0, 20, 30, 0, 0);
    t_op(h, 3, OP_GET, 0, 40, 50, 0, 1);
}

static void st_stale_read_after_unknown_read(struct hist *h)
{
    /* A read saw the unknown write 2; a later read must not see 1. */
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_PUT, 0, 20, U, 0, 0);
    t_op(h, 3, OP_GET, 0, 30, 40, 0, 2);
    t_op(h, 4, OP_GET, 0, 50, 60, 0, 1);
}

static void st_lost_write(struct hist *h)
{
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_PUT, 0, 20, U, 0, 0);
    t_op(h, 3, OP_GET, 0, 100, 110, 0, A); /* the final read */
}

static void st_lost_write_overwritten_by_old(struct hist *h)
{
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_PUT, 0, 20, 30, 0, 0);
    t_op(h, 3, OP_GET, 0, 100, 110, 0, 1);
}

static void st_two_cas_winners(struct hist *h)
{
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_CAS, 1, 20, 40, 1, 0);
    t_op(h, 3, OP_CAS, 1, 25, 45, 1, 0);
}

static void st_two_cas_winners_absent(struct hist *h)
{
    t_op(h, 1, OP_CAS, A, 20, 40, 1, 0);
    t_op(h, 2, OP_CAS, A, 25, 45, 1, 0);
}

static void st_cas_wrong_fail(struct hist *h)
{
    /* The compare held, yet the cas says it failed. */
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_CAS, 1, 20, 30, 0, 1);
}

static void st_read_before_write(struct hist *h)
{
    t_op(h, 1, OP_GET, 0, 0, 10, 0, 2);
    t_op(h, 2, OP_PUT, 0, 20, U, 0, 0);
}

static void st_foreign(struct hist *h)
{
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_GET, 0, 20, 30, 0, VAL_FOREIGN);
}

static void st_unknown_cas_wrong_expect(struct hist *h)
{
    /* An unknown cas whose compare cannot hold never takes effect. */
    t_op(h, 1, OP_PUT, 0, 0, 10, 0, 0);
    t_op(h, 2, OP_CAS, 7, 20, U, 0, 0);
    t_op(h, 3, OP_GET, 0, 30, 40, 0, 2);
}

#undef A
#undef U

static const struct selftest selftests[] = {
    {"sequential put/get/cas", EXIT_LIN, st_seq},
    {"reads concurrent with a put see old or new", EXIT_LIN, st_concurrent_read_old},
    {"overlapping puts in either order", EXIT_LIN, st_reordered_puts},
    {"unknown writes taking effect late", EXIT_LIN, st_unknown_taken},
    {"unknown writes never taking effect", EXIT_LIN, st_unknown_never},
    {"failed cas reports the value", EXIT_LIN, st_failed_cas_sees},
    {"stale read after an acknowledged write", EXIT_VIOLATION, st_stale_read},
    {"stale read after a read of an unknown write", EXIT_VIOLATION,
     st_stale_read_after_unknown_read},
    {"lost acknowledged write (final read absent)", EXIT_VIOLATION, st_lost_write},
    {"lost acknowledged write (older value final)", EXIT_VIOLATION,
     st_lost_write_overwritten_by_old},
    {"two cas winners from the same value", EXIT_VIOLATION, st_two_cas_winners},
    {"two cas winners from absent", EXIT_VIOLATION, st_two_cas_winners_absent},
    {"cas failed although the compare held", EXIT_VIOLATION, st_cas_wrong_fail},
    {"read of a value before its write began", EXIT_VIOLATION, st_read_before_write},
    {"read of a value nobody wrote", EXIT_VIOLATION, st_foreign},
    {"unknown cas with a wrong expected value", EXIT_VIOLATION, st_unknown_cas_wrong_expect},
};

/*
 * A random linearizable history: clients issue ops one after the other;
 * each op takes effect at a random instant inside its interval, and the
 * results come from applying them in that order. Unknown writes take
 * effect or not. With mutate, one read is made to return a value whose
 * write began after the read ended: never linearizable.
 */
struct gen_ev {
    int64_t lin_ns;
    size_t idx;
    int applies;
};

static int cmp_gen_ev(const void *a, const void *b)
{
    const struct gen_ev *x = a, *y = b;

    return x->lin_ns < y->lin_ns ? -1 : x->lin_ns > y->lin_ns;
}

static int gen_history(struct hist *h, uint64_t seed, int clients, int per_client, int mutate)
{
    struct gen_ev *evs = xcalloc((size_t)(clients * per_client), sizeof(*evs));
    int64_t t[CLIENTS_MAX] = {0}, cur = VAL_ABSENT;
    int64_t id = 1;
    size_t i, n = 0;
    int c, j;

    h->keys = 1;
    for (c = 0; c < clients; c++) {
        for (j = 0; j < per_client; j++) {
            struct op o = {.id = id++, .client = c, .read = VAL_UNSEEN};
            unsigned r = (unsigned)(splitmix64(&seed) % 100);
            int64_t dur = 1000 + (int64_t)(splitmix64(&seed) % 50000);

            t[c] += (int64_t)(splitmix64(&seed) % 20000);
            o.call_ns = t[c];
            o.ret_ns = t[c] + dur;
            o.kind = r < 40 ? OP_GET : r < 70 ? OP_PUT : OP_CAS;
            o.ok = o.kind == OP_GET || splitmix64(&seed) % 100 >= 8;
            evs[n].lin_ns = o.call_ns + 1 + (int64_t)(splitmix64(&seed) % (uint64_t)(dur - 1));
            evs[n].idx = h->n;
            evs[n].applies = o.ok || splitmix64(&seed) % 2;
            t[c] = o.ret_ns;
            if (!o.ok) {
                o.ret_ns = T_INF;
                t[c] += 100000;
            }
            hist_add(h, &o);
            n++;
        }
    }
    qsort(evs, n, sizeof(*evs), cmp_gen_ev);
    for (i = 0; i < n; i++) {
        struct op *o = &h->v[evs[i].idx];
        int64_t old = cur;

        if (o->kind == OP_CAS) {
            o->expect = splitmix64(&seed) % 3 ? cur : (int64_t)(splitmix64(&seed) % (uint64_t)id);
            if (o->expect == 0) {
                o->expect = VAL_ABSENT;
            }
        }
        if (!evs[i].applies) {
            continue;
        }
        switch (o->kind) {
        case OP_PUT:
            cur = o->id;
            break;
        case OP_GET:
            o->read = cur;
            break;
        case OP_CAS:
            o->cas_ok = old == o->expect;
            cur = o->cas_ok ? o->id : cur;
            o->read = o->cas_ok ? VAL_UNSEEN : old;
            break;
        }
    }
    free(evs);
    if (mutate) {
        for (i = 0; i < h->n; i++) {
            struct op *g = &h->v[i];

            if (g->kind != OP_GET) {
                continue;
            }
            for (j = 0; j < (int)h->n; j++) {
                const struct op *w = &h->v[j];

                if (w->kind != OP_GET && w->call_ns > g->ret_ns) {
                    g->read = w->id;
                    return 1;
                }
            }
        }
        return 0;
    }
    return 1;
}

static int do_selftest(void)
{
    size_t i, fails = 0, max_states = 4000000;
    struct check_stats cs;
    int s;

    for (i = 0; i < sizeof(selftests) / sizeof(selftests[0]); i++) {
        struct hist h = {0};
        int got;

        selftests[i].build(&h);
        got = check_hist(&h, max_states, 1, &cs);
        printf("%s - selftest: %s (want %s)\n", got == selftests[i].want ? "ok" : "not ok",
               selftests[i].name, selftests[i].want == EXIT_LIN ? "linearizable" : "violation");
        fails += got != selftests[i].want;
        free(h.v);
    }
    for (s = 0; s < 40; s++) {
        struct hist h = {0};
        int mutate = s % 2, clients = 2 + s % 5, per = s < 36 ? 60 : 600;
        int64_t t0 = now_ns();
        int got;

        if (!gen_history(&h, (uint64_t)s + 1, clients, per, mutate)) {
            free(h.v);
            continue;
        }
        got = check_hist(&h, max_states, 1, &cs);
        if (got != (mutate ? EXIT_VIOLATION : EXIT_LIN) || per > 100) {
            printf("%s - selftest: generated history %d (%zu ops, %d clients%s): %s, %ld states, "
                   "%.1f ms\n",
                   got == (mutate ? EXIT_VIOLATION : EXIT_LIN) ? "ok" : "not ok", s, h.n, clients,
                   mutate ? ", mutated" : "",
                   got == EXIT_LIN         ? "linearizable"
                   : got == EXIT_VIOLATION ? "violation"
                                           : "cap",
                   cs.states, (double)(now_ns() - t0) / 1e6);
        }
        fails += got != (mutate ? EXIT_VIOLATION : EXIT_LIN);
        free(h.v);
    }
    {
        /* A search that needs more states than allowed gives no verdict. */
        struct hist h = {0};
        int got;

        gen_history(&h, 38, 5, 600, 0);
        got = check_hist(&h, 100, 1, &cs);
        printf("%s - selftest: the state cap ends the search with exit %d (want %d)\n",
               got == EXIT_CAP ? "ok" : "not ok", got, EXIT_CAP);
        fails += got != EXIT_CAP;
        free(h.v);
    }
    printf("lincheck selftest: %s (%zu failures)\n", fails ? "FAILED" : "PASSED", fails);
    return fails ? EXIT_VIOLATION : EXIT_LIN;
}

/* ---------------------------------------------------------------- main --- */

static void usage(void)
{
    fputs("usage: lincheck run [--duration S] [--clients C] [--keys K] [--prefix P]\n"
          "                    [--timeout-ms MS] [--seed N] [--serializable] --history FILE\n"
          "                    HOST:PORT...\n"
          "       lincheck check --history FILE [--max-states N] [--final HOST:PORT...]\n"
          "       lincheck --selftest\n"
          "(see the comment at the top of tests/e2e/lincheck.c)\n",
          stderr);
    exit(EXIT_ERR);
}

static double num_arg(const char *s, const char *what)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < 0) {
        die("bad %s: '%s'", what, s);
    }
    return v;
}

int main(int argc, char **argv)
{
    struct run_cfg cfg = {
        .clients = 6,
        .keys = 4,
        .prefix = "lin/",
        .duration_s = 20,
        .timeout_ms = 2000,
        .seed = 1,
    };
    const char *hist_path = NULL, *mode;
    size_t max_states = 4000000;
    int i, final = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && strcmp(argv[1], "--selftest") == 0) {
        return do_selftest();
    }
    if (argc < 2) {
        usage();
    }
    mode = argv[1];
    for (i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (a[0] != '-') {
            if (cfg.n_endpoints == ENDPOINTS_MAX) {
                die("too many endpoints");
            }
            cfg.endpoints[cfg.n_endpoints++] = a;
            continue;
        }
        if (strcmp(a, "--final") == 0) {
            final = 1;
            continue;
        }
        if (strcmp(a, "--serializable") == 0) {
            cfg.serializable = 1;
            continue;
        }
        if (v == NULL) {
            usage();
        }
        i++;
        if (strcmp(a, "--duration") == 0) {
            cfg.duration_s = num_arg(v, a);
        } else if (strcmp(a, "--clients") == 0) {
            cfg.clients = (int)num_arg(v, a);
        } else if (strcmp(a, "--keys") == 0) {
            cfg.keys = (int)num_arg(v, a);
        } else if (strcmp(a, "--prefix") == 0) {
            cfg.prefix = v;
        } else if (strcmp(a, "--timeout-ms") == 0) {
            cfg.timeout_ms = (int)num_arg(v, a);
        } else if (strcmp(a, "--seed") == 0) {
            cfg.seed = (uint64_t)num_arg(v, a);
        } else if (strcmp(a, "--history") == 0) {
            hist_path = v;
        } else if (strcmp(a, "--max-states") == 0) {
            max_states = (size_t)num_arg(v, a);
        } else {
            usage();
        }
    }
    if (hist_path == NULL) {
        usage();
    }
    if (strcmp(mode, "run") == 0) {
        if (cfg.n_endpoints == 0 || cfg.clients < 1 || cfg.clients > CLIENTS_MAX || cfg.keys < 1 ||
            cfg.keys > KEYS_MAX || strlen(cfg.prefix) >= KEY_BYTES_MAX || cfg.timeout_ms < 1) {
            usage();
        }
        return do_run(&cfg, hist_path);
    }
    if (strcmp(mode, "check") == 0) {
        if (final && cfg.n_endpoints == 0) {
            usage();
        }
        return do_check(hist_path, cfg.endpoints, final ? cfg.n_endpoints : 0, max_states);
    }
    usage();
    return EXIT_ERR;
}
