/*
 * model.c — the simulator's PRNG, hashes, payload store, log helper and
 * the global model that every safety property is checked against.
 *
 * The global model holds, for one run:
 *  - the committed history: entry `index` as first applied by any member,
 *    with a chained hash of the state after it. State Machine Safety: every
 *    later apply of that index, anywhere, must be the same entry, and every
 *    member's chained state must equal the history's.
 *  - every (index, term) ever written durably, or written by a member that
 *    was not leader, with its payload and the term of the entry before it.
 *    Log Matching: one (index, term) never carries two payloads nor two
 *    different predecessors (which by induction makes the prefixes equal).
 *    A leader's own unsynced, never-sent entries are left out: a crash may
 *    legally lose them, and only what another member or a disk saw counts.
 *  - term -> leader. Election Safety: at most one leader per term.
 *  - for each committed entry an upper bound of the term it was committed
 *    in (the applier's term). Leader Completeness: a member that becomes
 *    leader of term T holds every entry committed in a term <= T.
 * Everything here is single-threaded and lives for one run.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

/* ---- PRNG and hashes (splitmix64: small, fast, seedable) ---- */

uint64_t rng_next(struct rng *g)
{
    uint64_t z = (g->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rng_below(struct rng *g, uint64_t n)
{
    return rng_next(g) % n;
}

bool rng_permille(struct rng *g, uint32_t p)
{
    return rng_below(g, 1000) < p;
}

uint64_t hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(uint8_t type, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ type;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return hash64(h ^ len);
}

uint64_t chain_next(uint64_t chain, uint64_t h)
{
    return hash64(chain * 0x9e3779b97f4a7c15ULL + h + 1);
}

/* ---- trace and failure ---- */

void sim_trace(struct sim *s, const char *fmt, ...)
{
    char *line = s->trace[s->trace_n % SIM_TRACE_LINES];
    int off = snprintf(line, SIM_TRACE_BYTES, "t=%llu.%02llu #%llu ",
                       (unsigned long long)(s->now / SIM_TICK_UNITS),
                       (unsigned long long)(s->now % SIM_TICK_UNITS), (unsigned long long)s->step);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, SIM_TRACE_BYTES - (size_t)off, fmt, ap);
    va_end(ap);
    s->trace_n++;
    if (s->verbose)
        printf("%s\n", line);
}

void sim_fail(struct sim *s, const char *property, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (s->brief)
        goto summary;
    if (!s->verbose) {
        uint64_t first = s->trace_n > SIM_TRACE_LINES ? s->trace_n - SIM_TRACE_LINES : 0;
        fprintf(stderr, "sim: last events:\n");
        for (uint64_t i = first; i < s->trace_n; i++)
            fprintf(stderr, "  %s\n", s->trace[i % SIM_TRACE_LINES]);
    }
    for (uint64_t id = 1; id < SIM_ID_MAX; id++) {
        const struct node *n = &s->nodes[id];
        if (n->state == NODE_NONE)
            continue;
        fprintf(stderr,
                "sim:   member %llu state=%d inc=%u applied=%llu mlog=(%llu,%llu] "
                "dlog=(%llu,%llu] mhs={t%llu v%llu c%llu} dhs={t%llu v%llu c%llu} unsynced=%u\n",
                (unsigned long long)id, n->state, n->inc, (unsigned long long)n->applied,
                (unsigned long long)n->mlog.base_index, (unsigned long long)slog_last(&n->mlog),
                (unsigned long long)n->dlog.base_index, (unsigned long long)slog_last(&n->dlog),
                (unsigned long long)n->mhs.term, (unsigned long long)n->mhs.vote,
                (unsigned long long)n->mhs.commit, (unsigned long long)n->dhs.term,
                (unsigned long long)n->dhs.vote, (unsigned long long)n->dhs.commit, n->w_n);
    }
summary:
    fprintf(stderr, "sim: FAIL seed=%llu members=%u step=%llu: %s: %s\n",
            (unsigned long long)s->seed, s->members, (unsigned long long)s->step, property, detail);
    fprintf(stderr, "sim: replay with: --seed %llu --members %u --steps %llu\n",
            (unsigned long long)s->seed, s->members, (unsigned long long)s->steps_max);
    fflush(stderr);
    /* _exit: a failed run leaves memory allocated on purpose; the leak
     * checker would only bury the report. */
    _exit(1);
}

/* ---- payload store: open addressing on the payload hash ---- */

static void blob_grow(struct model *g)
{
    size_t cap = g->blob_cap ? g->blob_cap * 2 : 1024;
    struct blob **t = calloc(cap, sizeof(*t));
    if (!t)
        abort();
    for (size_t i = 0; i < g->blob_cap; i++) {
        struct blob *b = g->blobs[i];
        if (!b)
            continue;
        size_t j = b->h & (cap - 1);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = b;
    }
    free(g->blobs);
    g->blobs = t;
    g->blob_cap = cap;
}

const struct blob *blob_intern(struct sim *s, uint8_t type, const void *data, uint32_t len)
{
    struct model *g = &s->g;
    if (len && !data)
        sim_fail(s, "entry", "entry with len %u and no data", len);
    uint64_t h = hash_bytes(type, data, len);
    if (2 * (g->blob_n + 1) > g->blob_cap)
        blob_grow(g);
    size_t j = h & (g->blob_cap - 1);
    for (; g->blobs[j]; j = (j + 1) & (g->blob_cap - 1)) {
        const struct blob *b = g->blobs[j];
        if (b->h != h)
            continue;
        if (b->len != len || b->type != type || (len && memcmp(b->data, data, len) != 0))
            sim_fail(s, "simulator", "payload hash collision");
        return b;
    }
    struct blob *b = malloc(sizeof(*b) + len);
    if (!b)
        abort();
    b->h = h;
    b->len = len;
    b->type = type;
    if (len)
        memcpy(b->data, data, len);
    g->blobs[j] = b;
    g->blob_n++;
    return b;
}

/* ---- log helper ---- */

uint64_t slog_last(const struct slog *l)
{
    return l->base_index + l->n;
}

bool slog_term(const struct slog *l, uint64_t index, uint64_t *term)
{
    if (index == l->base_index) {
        *term = l->base_term;
        return true;
    }
    if (index < l->base_index || index > slog_last(l))
        return false;
    *term = l->e[index - l->base_index - 1].term;
    return true;
}

const struct sent *slog_at(const struct slog *l, uint64_t index)
{
    if (index <= l->base_index || index > slog_last(l))
        return NULL;
    return &l->e[index - l->base_index - 1];
}

void slog_truncate(struct slog *l, uint64_t index)
{
    if (index <= l->base_index)
        l->n = 0;
    else if (index <= slog_last(l))
        l->n = index - l->base_index - 1;
}

void slog_append(struct slog *l, struct sent e)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->e = realloc(l->e, l->cap * sizeof(*l->e));
        if (!l->e)
            abort();
    }
    l->e[l->n++] = e;
}

void slog_reset(struct slog *l, uint64_t base_index, uint64_t base_term)
{
    l->base_index = base_index;
    l->base_term = base_term;
    l->n = 0;
}

void slog_compact(struct slog *l, uint64_t index, uint64_t term)
{
    if (index <= l->base_index)
        return;
    if (index >= slog_last(l)) {
        slog_reset(l, index, term);
        return;
    }
    size_t drop = index - l->base_index;
    memmove(l->e, l->e + drop, (l->n - drop) * sizeof(*l->e));
    l->n -= drop;
    l->base_index = index;
    l->base_term = term;
}

void slog_copy(struct slog *dst, const struct slog *src)
{
    slog_reset(dst, src->base_index, src->base_term);
    for (size_t i = 0; i < src->n; i++)
        slog_append(dst, src->e[i]);
}

void slog_free(struct slog *l)
{
    free(l->e);
    memset(l, 0, sizeof(*l));
}

/* ---- membership ---- */

static bool ids_has(const uint64_t *ids, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static void ids_remove(uint64_t *ids, uint32_t *n, uint64_t id)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (ids[i] == id) {
            ids[i] = ids[--*n];
            return;
        }
    }
}

bool conf_is_voter(const struct raft_conf *c, uint64_t id)
{
    return ids_has(c->voters, c->n_voters, id);
}

bool conf_has(const struct raft_conf *c, uint64_t id)
{
    return conf_is_voter(c, id) || ids_has(c->learners, c->n_learners, id);
}

bool conf_equal(const struct raft_conf *a, const struct raft_conf *b)
{
    if (a->n_voters != b->n_voters || a->n_learners != b->n_learners)
        return false;
    for (uint32_t i = 0; i < a->n_voters; i++)
        if (!ids_has(b->voters, b->n_voters, a->voters[i]))
            return false;
    for (uint32_t i = 0; i < a->n_learners; i++)
        if (!ids_has(b->learners, b->n_learners, a->learners[i]))
            return false;
    return true;
}

/* The simulator's own reading of a conf change, kept beside raft's to
 * cross-check raft_conf() and to fill snapshot metadata. */
void conf_apply(struct raft_conf *c, const struct raft_conf_change *cc)
{
    switch (cc->op) {
    case RAFT_CONF_ADD_VOTER:
        if (!conf_has(c, cc->id) && c->n_voters < RAFT_MEMBERS_MAX)
            c->voters[c->n_voters++] = cc->id;
        break;
    case RAFT_CONF_ADD_LEARNER:
        if (!conf_has(c, cc->id) && c->n_learners < RAFT_MEMBERS_MAX)
            c->learners[c->n_learners++] = cc->id;
        break;
    case RAFT_CONF_REMOVE:
        ids_remove(c->voters, &c->n_voters, cc->id);
        ids_remove(c->learners, &c->n_learners, cc->id);
        break;
    case RAFT_CONF_PROMOTE:
        if (ids_has(c->learners, c->n_learners, cc->id)) {
            ids_remove(c->learners, &c->n_learners, cc->id);
            c->voters[c->n_voters++] = cc->id;
        }
        break;
    default:
        break;
    }
}

/* ---- the global model ---- */

void model_init(struct model *g, const struct raft_conf *conf)
{
    memset(g, 0, sizeof(*g));
    g->a_cap = 1024;
    g->a = calloc(g->a_cap, sizeof(*g->a));
    g->lm_cap = 4096;
    g->lm = calloc(g->lm_cap, sizeof(*g->lm));
    g->leader_cap = 256;
    g->leader_of = calloc(g->leader_cap, sizeof(*g->leader_of));
    if (!g->a || !g->lm || !g->leader_of)
        abort();
    g->conf = *conf;
}

void model_free(struct model *g)
{
    for (size_t i = 0; i < g->blob_cap; i++)
        free(g->blobs[i]);
    free(g->blobs);
    free(g->a);
    free(g->lm);
    free(g->leader_of);
    memset(g, 0, sizeof(*g));
}

/* State Machine Safety: member n applies (index, term, b) while in term
 * applier_term. The first apply of an index anywhere extends the history. */
void model_apply(struct sim *s, struct node *n, uint64_t index, uint64_t term, const struct blob *b,
                 uint64_t applier_term)
{
    struct model *g = &s->g;
    if (index <= g->max) {
        struct gent *e = &g->a[index];
        if (e->term != term || e->b != b)
            sim_fail(s, "State Machine Safety",
                     "member %llu applies index %llu term %llu payload %016llx; "
                     "committed there: term %llu payload %016llx",
                     (unsigned long long)n->id, (unsigned long long)index, (unsigned long long)term,
                     (unsigned long long)b->h, (unsigned long long)e->term,
                     (unsigned long long)e->b->h);
        if (applier_term < e->ct)
            e->ct = applier_term;
        return;
    }
    if (index != g->max + 1)
        sim_fail(s, "State Machine Safety",
                 "member %llu applies index %llu first, but the highest index applied "
                 "anywhere is %llu (a gap)",
                 (unsigned long long)n->id, (unsigned long long)index, (unsigned long long)g->max);
    if (index >= g->a_cap) {
        g->a_cap *= 2;
        g->a = realloc(g->a, g->a_cap * sizeof(*g->a));
        if (!g->a)
            abort();
    }
    g->a[index] = (struct gent){
        .term = term,
        .b = b,
        .chain = chain_next(g->a[index - 1].chain, b->h),
        .ct = applier_term,
    };
    g->max = index;
    s->st.applied++;
    if (b->type == RAFT_ENTRY_CONF) {
        struct raft_conf_change cc;
        if (raft_conf_decode(b->data, b->len, &cc) != 0)
            sim_fail(s, "entry", "committed conf entry %llu does not decode",
                     (unsigned long long)index);
        conf_apply(&g->conf, &cc);
        s->st.conf_applied++;
        sim_trace(s, "committed conf op=%u id=%llu at %llu: voters=%u learners=%u", cc.op,
                  (unsigned long long)cc.id, (unsigned long long)index, g->conf.n_voters,
                  g->conf.n_learners);
    }
    if (s->final && !s->final_index && b->type == RAFT_ENTRY_NORMAL && b->len >= 1 &&
        b->data[0] == 'F')
        s->final_index = index;
}

static size_t lm_slot(const struct model *g, uint64_t index, uint64_t term)
{
    return hash64(index * 0x100000001b3ULL ^ hash64(term)) & (g->lm_cap - 1);
}

static void lm_grow(struct model *g)
{
    size_t old_cap = g->lm_cap;
    struct lment *old = g->lm;
    g->lm_cap *= 2;
    g->lm = calloc(g->lm_cap, sizeof(*g->lm));
    if (!g->lm)
        abort();
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].b)
            continue;
        size_t j = lm_slot(g, old[i].index, old[i].term);
        while (g->lm[j].b)
            j = (j + 1) & (g->lm_cap - 1);
        g->lm[j] = old[i];
    }
    free(old);
}

/* Log Matching: (index, term) written by member n after prev_term. */
void model_record(struct sim *s, struct node *n, uint64_t index, uint64_t term, uint64_t prev_term,
                  const struct blob *b)
{
    struct model *g = &s->g;
    if (2 * (g->lm_n + 1) > g->lm_cap)
        lm_grow(g);
    size_t j = lm_slot(g, index, term);
    for (; g->lm[j].b; j = (j + 1) & (g->lm_cap - 1)) {
        struct lment *e = &g->lm[j];
        if (e->index != index || e->term != term)
            continue;
        if (e->b != b || e->prev_term != prev_term)
            sim_fail(s, "Log Matching",
                     "member %llu holds (index %llu, term %llu) = payload %016llx after term "
                     "%llu; elsewhere the same (index, term) is payload %016llx after term %llu",
                     (unsigned long long)n->id, (unsigned long long)index, (unsigned long long)term,
                     (unsigned long long)b->h, (unsigned long long)prev_term,
                     (unsigned long long)e->b->h, (unsigned long long)e->prev_term);
        return;
    }
    g->lm[j] = (struct lment){.index = index, .term = term, .prev_term = prev_term, .b = b};
    g->lm_n++;
}

/* Election Safety: member n reports role in term. */
void model_observe_role(struct sim *s, struct node *n, uint8_t role, uint64_t term)
{
    if (role != RAFT_LEADER)
        return;
    struct model *g = &s->g;
    while (term >= g->leader_cap) {
        size_t old = g->leader_cap;
        g->leader_cap *= 2;
        g->leader_of = realloc(g->leader_of, g->leader_cap * sizeof(*g->leader_of));
        if (!g->leader_of)
            abort();
        memset(g->leader_of + old, 0, (g->leader_cap - old) * sizeof(*g->leader_of));
    }
    if (g->leader_of[term] == 0) {
        g->leader_of[term] = n->id;
        s->st.leaders++;
        sim_trace(s, "member %llu is leader of term %llu", (unsigned long long)n->id,
                  (unsigned long long)term);
    } else if (g->leader_of[term] != n->id) {
        sim_fail(s, "Election Safety", "members %llu and %llu are both leader of term %llu",
                 (unsigned long long)g->leader_of[term], (unsigned long long)n->id,
                 (unsigned long long)term);
    }
}

/* Leader Completeness: n just became leader of term; its log (as written:
 * durable and unsynced, which is raft's log) holds every entry committed
 * in a term <= term. Entries at or below its log's base are in the
 * snapshot it started from, checked against the history when installed. */
void model_check_leader_log(struct sim *s, struct node *n, uint64_t term)
{
    const struct model *g = &s->g;
    for (uint64_t i = n->mlog.base_index + 1; i <= g->max; i++) {
        const struct gent *e = &g->a[i];
        if (e->ct > term)
            continue;
        const struct sent *have = slog_at(&n->mlog, i);
        if (!have)
            sim_fail(s, "Leader Completeness",
                     "member %llu is leader of term %llu with log (%llu, %llu] but index %llu "
                     "(term %llu) was committed by term %llu",
                     (unsigned long long)n->id, (unsigned long long)term,
                     (unsigned long long)n->mlog.base_index,
                     (unsigned long long)slog_last(&n->mlog), (unsigned long long)i,
                     (unsigned long long)e->term, (unsigned long long)e->ct);
        if (have->term != e->term || have->b != e->b)
            sim_fail(s, "Leader Completeness",
                     "member %llu is leader of term %llu and holds term %llu at index %llu; "
                     "committed there (by term %llu): term %llu",
                     (unsigned long long)n->id, (unsigned long long)term,
                     (unsigned long long)have->term, (unsigned long long)i,
                     (unsigned long long)e->ct, (unsigned long long)e->term);
    }
    if (n->mlog.base_index > 0 && n->mlog.base_index <= g->max &&
        g->a[n->mlog.base_index].term != n->mlog.base_term)
        sim_fail(s, "Leader Completeness",
                 "member %llu is leader of term %llu from base (%llu, term %llu); committed "
                 "there: term %llu",
                 (unsigned long long)n->id, (unsigned long long)term,
                 (unsigned long long)n->mlog.base_index, (unsigned long long)n->mlog.base_term,
                 (unsigned long long)g->a[n->mlog.base_index].term);
}

/* A snapshot (taken, sent or installed) must be the history's state at its
 * index: same term, same chained state. */
void model_check_snapshot(struct sim *s, struct node *n, const struct snapdata *sd,
                          const char *what)
{
    const struct model *g = &s->g;
    uint64_t i = sd->meta.index;
    if (i == 0)
        return;
    if (i > g->max)
        sim_fail(s, "State Machine Safety",
                 "member %llu: %s snapshot at index %llu beyond anything applied (%llu)",
                 (unsigned long long)n->id, what, (unsigned long long)i,
                 (unsigned long long)g->max);
    if (g->a[i].term != sd->meta.term || g->a[i].chain != sd->chain)
        sim_fail(s, "State Machine Safety",
                 "member %llu: %s snapshot (index %llu, term %llu) differs from the "
                 "committed state (term %llu)",
                 (unsigned long long)n->id, what, (unsigned long long)i,
                 (unsigned long long)sd->meta.term, (unsigned long long)g->a[i].term);
}
