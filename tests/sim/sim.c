/*
 * sim.c — deterministic simulation of a Raft cluster (3 or 5 members)
 * built on src/raft/raft.h: the command line, the event loop, the faults,
 * the clients and the final liveness check.
 *
 * One run: virtual time in units (SIM_TICK_UNITS per raft tick) and one
 * queue of events ordered by (time, random tie-break), so events due at
 * once are processed in a seed-chosen order. An event is one "step": a
 * member's tick, a message delivered, a storage sync completed, a
 * snapshot transfer reported, a restart, a client request or a fault.
 * After every step each member's readies are drained (node.c) and the
 * cluster-wide properties are checked (model.c). For the first --steps
 * steps faults run: crashes (with torn unsynced writes), symmetric and
 * one-way partitions, loss, duplication, long delays, slow disks, failed
 * snapshot transfers, leadership transfers and membership changes (one at
 * a time, voters never below the starting count, at most a minority of
 * voters down), and heavy load phases: several proposals a tick, mostly
 * on the leader, while send queues overflow in bursts (the message is
 * dropped and raft_report_unreachable() called at once, after
 * raft_advance() if it happened inside a ready) and connections reset
 * (every message in flight on the link lost, the sender told). Half the
 * runs end their faulty stretch under heavy load. Then everything heals
 * and crashed members restart. First, with no new proposal, the leader
 * must commit its whole log and every member apply it (idle liveness:
 * once all live members follow one leader, SIM_IDLE_HB heartbeat
 * intervals without any progress fail, and so does not getting there
 * within SIM_FINAL_TICKS ticks); then a final proposal must be applied
 * on every member within SIM_FINAL_TICKS ticks.
 *
 * Determinism: all randomness comes from one splitmix64 stream seeded by
 * (seed, members); raft's own seeds are derived from it. The simulator
 * reads no clock. Every loop is bounded: the queue (SIM_EVENTS_MAX), the
 * messages in flight (SIM_MSGS_MAX), the readies per step, the steps.
 *
 * Usage: sim [--members 3|5] [--steps K] [--seeds N] [--first-seed S]
 *        sim --seed S [--members N] [--steps K]   (one run, verbose trace)
 *        sim ... --keep-going   (each seed in a child process; count failures)
 * CETCD_SIM_SEEDS in the environment overrides --seeds (longer soaks).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sim.h"

/* ---- event queue: a binary heap on (time, tie) ---- */

static bool ev_before(const struct event *a, const struct event *b)
{
    return a->time < b->time || (a->time == b->time && a->tie < b->tie);
}

bool sim_schedule(struct sim *s, uint64_t time, uint8_t kind, uint64_t id, uint32_t inc,
                  uint64_t arg, struct netmsg *nm)
{
    if (s->heap_n == SIM_EVENTS_MAX)
        return false;
    if (kind == EV_MSG) {
        if (s->msgs_n == SIM_MSGS_MAX)
            return false;
        s->msgs_n++;
    }
    struct event ev = {.time = time,
                       .tie = rng_next(&s->rng),
                       .kind = kind,
                       .id = id,
                       .inc = inc,
                       .arg = arg,
                       .nm = nm};
    uint32_t i = s->heap_n++;
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!ev_before(&ev, &s->heap[parent]))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = ev;
    return true;
}

static struct event ev_pop(struct sim *s)
{
    struct event top = s->heap[0];
    struct event last = s->heap[--s->heap_n];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= s->heap_n)
            break;
        if (c + 1 < s->heap_n && ev_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!ev_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->heap_n)
        s->heap[i] = last;
    if (top.kind == EV_MSG)
        s->msgs_n--;
    return top;
}

bool sim_link_cut(const struct sim *s, uint64_t from, uint64_t to)
{
    return from < SIM_ID_MAX && to < SIM_ID_MAX && s->now < s->cut_until[from][to];
}

/* Called for each message sent: true drops it as a full send queue would. */
bool sim_queue_full(struct sim *s, uint64_t from, uint64_t to)
{
    return !s->final && from < SIM_ID_MAX && to < SIM_ID_MAX && s->now < s->qfull_until[from][to] &&
           rng_permille(&s->rng, s->qfull_pm);
}

/* ---- helpers ---- */

static struct node *live_node(struct sim *s, uint64_t id, uint32_t inc)
{
    struct node *n = &s->nodes[id];
    return n->state == NODE_UP && n->inc == inc ? n : NULL;
}

static struct node *random_up(struct sim *s)
{
    uint64_t ids[SIM_ID_MAX];
    uint32_t k = 0;
    for (uint64_t id = 1; id < SIM_ID_MAX; id++)
        if (s->nodes[id].state == NODE_UP)
            ids[k++] = id;
    return k ? &s->nodes[ids[rng_below(&s->rng, k)]] : NULL;
}

/* The member that is leader in the highest term any live member knows. */
static struct node *current_leader(struct sim *s)
{
    struct node *best = NULL;
    for (uint64_t id = 1; id < SIM_ID_MAX; id++) {
        struct node *n = &s->nodes[id];
        if (n->state != NODE_UP || raft_role(n->r) != RAFT_LEADER)
            continue;
        if (!best || raft_term(n->r) > raft_term(best->r))
            best = n;
    }
    return best;
}

static uint32_t voters_down(const struct sim *s)
{
    uint32_t down = 0;
    for (uint32_t i = 0; i < s->g.conf.n_voters; i++)
        if (s->nodes[s->g.conf.voters[i]].state != NODE_UP)
            down++;
    return down;
}

/* ---- clients ---- */

static void propose_one(struct sim *s, struct node *n)
{
    uint8_t buf[64];
    uint32_t len = 9 + (uint32_t)rng_below(&s->rng, 40);
    uint64_t seq = ++s->prop_seq;
    buf[0] = 'P';
    memcpy(buf + 1, &seq, sizeof(seq));
    for (uint32_t i = 9; i < len; i++)
        buf[i] = (uint8_t)rng_next(&s->rng);
    int rv = raft_propose(n->r, buf, len);
    sim_trace(s, "propose #%llu on %llu: %d", (unsigned long long)seq, (unsigned long long)n->id,
              rv);
    if (rv == 0)
        s->st.proposals++;
}

/* A burst of full send queues: for a while most messages from one member
 * to another are dropped (sim_queue_full). */
static void qfull_burst(struct sim *s, struct node *from)
{
    struct node *to = random_up(s);
    if (!from || !to || from == to)
        return;
    uint64_t until = s->now + 20 + rng_below(&s->rng, 3 * SIM_TICK_UNITS);
    if (s->qfull_until[from->id][to->id] < until)
        s->qfull_until[from->id][to->id] = until;
    sim_trace(s, "queue full %llu -> %llu until t=%llu.%02llu", (unsigned long long)from->id,
              (unsigned long long)to->id, (unsigned long long)(until / SIM_TICK_UNITS),
              (unsigned long long)(until % SIM_TICK_UNITS));
}

/* The connection from -> to breaks: every message queued on it (in
 * flight here) is lost and the sender hears at once that the peer is
 * unreachable, as the driver's peer net reports a dropped queue. */
static void link_reset(struct sim *s, struct node *from, struct node *to)
{
    if (!from || !to || from == to)
        return;
    uint32_t lost = 0;
    for (uint32_t i = 0; i < s->heap_n; i++) {
        struct netmsg *nm = s->heap[i].nm;
        if (s->heap[i].kind == EV_MSG && nm && !nm->has_snapdata && nm->m.from == from->id &&
            nm->m.to == to->id && nm->from_inc == from->inc && !nm->reset) {
            nm->reset = true;
            lost++;
        }
    }
    s->st.link_resets++;
    sim_trace(s, "connection %llu -> %llu reset: %u messages lost", (unsigned long long)from->id,
              (unsigned long long)to->id, lost);
    raft_report_unreachable(from->r, to->id);
}

static void heavy_start(struct sim *s, uint64_t until)
{
    s->heavy_until = until;
    s->qfull_pm = rng_permille(&s->rng, 300) ? 1000 : 300 + (uint32_t)rng_below(&s->rng, 701);
    s->st.heavy_phases++;
    sim_trace(s, "heavy load until t=%llu, queue-full drops %u%%",
              (unsigned long long)(until / SIM_TICK_UNITS), s->qfull_pm / 10);
}

/* Normal load: a proposal every 0.1-2 ticks on a random member. Heavy
 * load: several a tick, mostly on the leader, so many appends are in
 * flight per follower, and now and then a send queue overflows. */
static void client_propose(struct sim *s)
{
    if (s->now >= s->heavy_until) {
        struct node *n = random_up(s);
        if (n)
            propose_one(s, n);
        sim_schedule(s, s->now + 10 + rng_below(&s->rng, 200), EV_PROPOSE, 0, 0, 0, NULL);
        return;
    }
    struct node *l = current_leader(s);
    uint64_t k = 1 + rng_below(&s->rng, 8);
    /* Clients have a bounded number of requests outstanding. */
    if (l && raft_last_index(l->r) - raft_commit_index(l->r) > SIM_HEAVY_OUTSTANDING)
        k = 0;
    for (uint64_t i = 0; i < k; i++) {
        struct node *n = l && rng_permille(&s->rng, 800) ? l : random_up(s);
        if (n)
            propose_one(s, n);
    }
    if (rng_permille(&s->rng, 150))
        qfull_burst(s, l && rng_permille(&s->rng, 800) ? l : random_up(s));
    if (rng_permille(&s->rng, 40))
        link_reset(s, l && rng_permille(&s->rng, 800) ? l : random_up(s), random_up(s));
    sim_schedule(s, s->now + 5 + rng_below(&s->rng, 30), EV_PROPOSE, 0, 0, 0, NULL);
}

static uint64_t read_floor(struct sim *s)
{
    uint64_t floor = s->g.max;
    for (uint64_t id = 1; id < SIM_ID_MAX; id++) {
        const struct node *n = &s->nodes[id];
        if (n->state == NODE_UP && raft_commit_index(n->r) > floor)
            floor = raft_commit_index(n->r);
    }
    return floor;
}

static void client_read(struct sim *s)
{
    struct node *n = random_up(s);
    if (n && s->reads_n < SIM_READS_MAX) {
        uint64_t ctx = ++s->reads_n;
        struct readreq *q = &s->reads[ctx - 1];
        /* Linearizability: every index committed anywhere before the read
         * is issued (so possibly acknowledged) must be visible to it. */
        q->id = n->id;
        q->floor = read_floor(s);
        q->done = false;
        int rv = raft_read_index(n->r, ctx);
        if (rv != 0)
            q->done = true;
        sim_trace(s, "read ctx %llu on %llu floor %llu: %d", (unsigned long long)ctx,
                  (unsigned long long)n->id, (unsigned long long)q->floor, rv);
    }
    sim_schedule(s, s->now + 30 + rng_below(&s->rng, 300), EV_READ, 0, 0, 0, NULL);
}

static void client_transfer(struct sim *s)
{
    struct node *n = random_up(s);
    if (!n || s->g.conf.n_voters == 0)
        return;
    uint64_t to = s->g.conf.voters[rng_below(&s->rng, s->g.conf.n_voters)];
    int rv = raft_transfer_leader(n->r, to);
    sim_trace(s, "transfer leadership to %llu via %llu: %d", (unsigned long long)to,
              (unsigned long long)n->id, rv);
    if (rv == 0)
        s->st.transfers++;
}

/* A new member only starts once raft can no longer send it the log from
 * index 1 (every member has compacted), so it always begins from a
 * snapshot; its boot membership only needs to name the current members. */
static bool can_add_member(struct sim *s, struct node *leader)
{
    if (s->next_id >= SIM_ID_MAX || raft_first_index(leader->r) <= 1)
        return false;
    for (uint64_t id = 1; id < SIM_ID_MAX; id++) {
        const struct node *n = &s->nodes[id];
        if ((n->state == NODE_UP || n->state == NODE_DOWN) && n->dsnap.meta.index == 0)
            return false;
    }
    return true;
}

static void client_conf_change(struct sim *s)
{
    struct node *l = current_leader(s);
    if (!l)
        return;
    const struct raft_conf *c = &s->g.conf;
    uint8_t op = 0;
    uint64_t id = 0;
    for (uint32_t i = 0; i < c->n_learners && !op; i++) {
        struct raft_progress_info pi;
        uint64_t lid = c->learners[i];
        if (s->nodes[lid].state == NODE_UP && raft_progress(l->r, lid, &pi) == 0 &&
            pi.match + 3 >= raft_last_index(l->r) && rng_permille(&s->rng, 700)) {
            op = RAFT_CONF_PROMOTE;
            id = lid;
        }
    }
    uint64_t pick = rng_below(&s->rng, 3);
    if (!op && pick == 0 && c->n_voters > s->members) {
        id = c->voters[rng_below(&s->rng, c->n_voters)];
        if (id != l->id || rng_permille(&s->rng, 250))
            op = RAFT_CONF_REMOVE;
    } else if (!op && pick == 1 && c->n_learners > 0) {
        op = RAFT_CONF_REMOVE;
        id = c->learners[rng_below(&s->rng, c->n_learners)];
    } else if (!op && c->n_voters + c->n_learners < s->members + 2 && can_add_member(s, l)) {
        op = rng_permille(&s->rng, 150) ? RAFT_CONF_ADD_VOTER : RAFT_CONF_ADD_LEARNER;
        id = s->next_id;
    }
    if (!op)
        return;
    char ctx[32];
    int ctx_len = snprintf(ctx, sizeof(ctx), "member-%llu", (unsigned long long)id);
    int rv = raft_propose_conf(l->r, op, id, ctx, (size_t)ctx_len);
    sim_trace(s, "propose conf op=%u id=%llu on leader %llu: %d", op, (unsigned long long)id,
              (unsigned long long)l->id, rv);
    if (rv == 0 && (op == RAFT_CONF_ADD_VOTER || op == RAFT_CONF_ADD_LEARNER))
        s->next_id++;
}

/* ---- faults ---- */

static void cut(struct sim *s, uint64_t from, uint64_t to, uint64_t until)
{
    if (s->cut_until[from][to] < until)
        s->cut_until[from][to] = until;
}

static void fault_partition(struct sim *s)
{
    uint64_t until = s->now + (2 + rng_below(&s->rng, 40)) * SIM_TICK_UNITS;
    struct node *a = random_up(s);
    struct node *b = random_up(s);
    if (!a || !b)
        return;
    uint64_t kind = rng_below(&s->rng, 4);
    for (uint64_t x = 1; x < SIM_ID_MAX; x++) {
        for (uint64_t y = 1; y < SIM_ID_MAX; y++) {
            if (x == y)
                continue;
            bool side_x = (hash64(s->seed ^ (s->step * 64 + x)) & 1) != 0;
            bool side_y = (hash64(s->seed ^ (s->step * 64 + y)) & 1) != 0;
            if ((kind == 0 && (x == a->id || y == a->id)) || (kind == 1 && side_x != side_y) ||
                (kind == 2 && x == a->id && y == b->id) || (kind == 3 && y == a->id))
                cut(s, x, y, until);
        }
    }
    s->st.partitions++;
    sim_trace(s, "partition kind=%llu around %llu/%llu until t=%llu", (unsigned long long)kind,
              (unsigned long long)a->id, (unsigned long long)b->id,
              (unsigned long long)(until / SIM_TICK_UNITS));
}

static void fault_crash(struct sim *s, struct node *n)
{
    if (!n)
        return;
    /* At most a minority of voters down, so the cluster can go on. */
    if (conf_is_voter(&s->g.conf, n->id) && voters_down(s) + 1 > (s->g.conf.n_voters - 1) / 2)
        return;
    node_crash(s, n);
    sim_schedule(s, s->now + (1 + rng_below(&s->rng, 30)) * SIM_TICK_UNITS, EV_RESTART, n->id,
                 n->inc, 0, NULL);
}

static void chaos(struct sim *s)
{
    if (s->final)
        return;
    static const uint32_t loss[] = {0, 0, 10, 50, 200};
    static const uint32_t dup[] = {0, 20, 100};
    static const uint32_t delay[] = {5, 20, 60, 150};
    uint64_t pick = rng_below(&s->rng, 100);
    if (pick < 15) {
        fault_crash(s, random_up(s));
    } else if (pick < 30) {
        fault_partition(s);
    } else if (pick < 38) {
        memset(s->cut_until, 0, sizeof(s->cut_until));
        sim_trace(s, "heal all links");
    } else if (pick < 46) {
        s->loss_pm = loss[rng_below(&s->rng, 5)];
        s->dup_pm = dup[rng_below(&s->rng, 3)];
        s->delay_max = delay[rng_below(&s->rng, 4)];
        sim_trace(s, "network loss=%u%% dup=%u%% delay<=%u", s->loss_pm / 10, s->dup_pm / 10,
                  s->delay_max);
    } else if (pick < 56) {
        client_transfer(s);
    } else if (pick < 72) {
        client_conf_change(s);
    } else if (pick < 82) {
        struct node *n = random_up(s);
        if (n) {
            n->disk_slow = rng_permille(&s->rng, 500) ? 1 : 2 + (uint32_t)rng_below(&s->rng, 8);
            sim_trace(s, "member %llu disk x%u", (unsigned long long)n->id, n->disk_slow);
        }
    } else if (pick < 86) {
        struct node *n = random_up(s);
        if (n) {
            sim_trace(s, "member %llu campaigns", (unsigned long long)n->id);
            raft_campaign(n->r);
        }
    } else if (pick < 90 && s->now >= s->heavy_until) {
        heavy_start(s, s->now + (5 + rng_below(&s->rng, 30)) * SIM_TICK_UNITS);
    }
    sim_schedule(s, s->now + 50 + rng_below(&s->rng, 400), EV_CHAOS, 0, 0, 0, NULL);
}

/* ---- membership as committed: start joiners, stop removed members ---- */

static void reconcile_members(struct sim *s)
{
    for (uint64_t id = 1; id < SIM_ID_MAX; id++) {
        struct node *n = &s->nodes[id];
        bool in = conf_has(&s->g.conf, id);
        if (in && n->state == NODE_NONE) {
            sim_trace(s, "member %llu joins", (unsigned long long)id);
            node_create(s, id, &s->g.conf);
        } else if (!in && (n->state == NODE_UP || n->state == NODE_DOWN) && !n->retiring) {
            n->retiring = true;
            /* Sometimes a removed member lingers, unaware, and campaigns. */
            uint64_t ticks = rng_permille(&s->rng, 300) ? 60 : 10;
            sim_schedule(s, s->now + rng_below(&s->rng, ticks * SIM_TICK_UNITS), EV_RETIRE, id, 0,
                         0, NULL);
        }
    }
}

/* ---- the final stretch: no faults; a leader and a commit everywhere ---- */

static void final_start(struct sim *s)
{
    s->final = true;
    s->final_start = s->now;
    s->final_next_try = s->now;
    s->idle_since = s->now;
    memset(s->cut_until, 0, sizeof(s->cut_until));
    memset(s->qfull_until, 0, sizeof(s->qfull_until));
    s->heavy_until = 0;
    s->loss_pm = 0;
    s->dup_pm = 0;
    s->delay_max = 20;
    sim_trace(s, "faults stop");
    for (uint64_t id = 1; id < SIM_ID_MAX; id++) {
        struct node *n = &s->nodes[id];
        if (n->state == NODE_DOWN && !n->retiring)
            node_restart(s, n);
        if (n->state == NODE_UP)
            n->disk_slow = 1;
    }
}

/* One line per live member, and the leader's view of each, for a report. */
static void cluster_detail(struct sim *s, char *out, size_t cap)
{
    struct node *l = current_leader(s);
    int off = 0;
    out[0] = '\0';
    for (uint64_t id = 1; id < SIM_ID_MAX && off >= 0 && (size_t)off + 160 < cap; id++) {
        struct node *n = &s->nodes[id];
        struct raft_progress_info pi;
        if (n->state != NODE_UP)
            continue;
        off += snprintf(
            out + off, cap - (size_t)off,
            " [%llu role=%d term=%llu leader=%llu last=%llu commit=%llu applied=%llu",
            (unsigned long long)id, raft_role(n->r), (unsigned long long)raft_term(n->r),
            (unsigned long long)raft_leader(n->r), (unsigned long long)raft_last_index(n->r),
            (unsigned long long)raft_commit_index(n->r), (unsigned long long)n->applied);
        if (l && n != l && raft_progress(l->r, id, &pi) == 0)
            off += snprintf(out + off, cap - (size_t)off,
                            " | leader sees match=%llu next=%llu state=%u active=%d",
                            (unsigned long long)pi.match, (unsigned long long)pi.next, pi.state,
                            pi.recent_active);
        if (l && !conf_has(raft_conf(n->r), l->id))
            off += snprintf(out + off, cap - (size_t)off, " conf-lacks-leader");
        off += snprintf(out + off, cap - (size_t)off, "]");
    }
}

static uint64_t conf_member_at(const struct raft_conf *c, uint32_t i)
{
    return i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
}

/* Every live member of the committed membership follows l in l's term. */
static bool leader_stable(struct sim *s, const struct node *l)
{
    const struct raft_conf *c = &s->g.conf;
    for (uint32_t i = 0; i < c->n_voters + c->n_learners; i++) {
        const struct node *n = &s->nodes[conf_member_at(c, i)];
        if (n->state == NODE_UP &&
            (raft_leader(n->r) != l->id || raft_term(n->r) != raft_term(l->r)))
            return false;
    }
    return true;
}

/* l has committed its whole log and every member has applied it. */
static bool caught_up(struct sim *s, const struct node *l)
{
    uint64_t last = raft_last_index(l->r);
    if (raft_commit_index(l->r) != last)
        return false;
    const struct raft_conf *c = &s->g.conf;
    for (uint32_t i = 0; i < c->n_voters + c->n_learners; i++) {
        const struct node *n = &s->nodes[conf_member_at(c, i)];
        if (n->state != NODE_UP || n->applied < last)
            return false;
    }
    return true;
}

/* Changes whenever a log grows or shrinks, a commit or applied index
 * moves, or the leader learns a follower matches further. */
static uint64_t progress_sig(struct sim *s, struct node *l)
{
    uint64_t h = 0;
    for (uint64_t id = 1; id < SIM_ID_MAX; id++) {
        struct node *n = &s->nodes[id];
        struct raft_progress_info pi;
        if (n->state != NODE_UP)
            continue;
        h = hash64(h ^ id);
        h = hash64(h ^ raft_last_index(n->r));
        h = hash64(h ^ raft_commit_index(n->r));
        h = hash64(h ^ n->applied);
        if (raft_progress(l->r, id, &pi) == 0)
            h = hash64(h ^ pi.match);
    }
    return h;
}

/* Raft §5.3: the leader retries AppendEntries indefinitely, so with no
 * new proposal at all an idle leader must still bring every follower up
 * to date and commit its whole log (queue-full drops, lost answers and
 * full windows of the faulty stretch must not leave entries hanging).
 * Once all live members follow one leader, a stretch of SIM_IDLE_HB
 * heartbeat intervals in which nothing progresses is a failure; so is
 * not getting there within SIM_FINAL_TICKS. */
static bool idle_check(struct sim *s)
{
    char detail[1600];
    struct node *l = current_leader(s);
    uint64_t limit = (uint64_t)SIM_IDLE_HB * s->cfg.heartbeat_ticks * SIM_TICK_UNITS;
    if (l && leader_stable(s, l) && caught_up(s, l)) {
        s->idle_done = true;
        s->prop_start = s->now;
        s->final_next_try = s->now;
        s->st.idle_ticks = (s->now - s->final_start) / SIM_TICK_UNITS;
        sim_trace(s, "idle: leader %llu committed and everyone applied %llu",
                  (unsigned long long)l->id, (unsigned long long)raft_last_index(l->r));
        return true;
    }
    if (s->now > s->final_start + SIM_FINAL_TICKS * SIM_TICK_UNITS) {
        cluster_detail(s, detail, sizeof(detail));
        sim_fail(s, "idle liveness",
                 "%d ticks after the faults stopped, with no new proposal, the log is not "
                 "committed and applied everywhere:%s",
                 SIM_FINAL_TICKS, detail);
    }
    if (!l || !leader_stable(s, l)) {
        s->idle_leader = 0;
        return false;
    }
    uint64_t sig = progress_sig(s, l);
    if (s->idle_leader != l->id || s->idle_term != raft_term(l->r) || s->idle_sig != sig) {
        s->idle_leader = l->id;
        s->idle_term = raft_term(l->r);
        s->idle_sig = sig;
        s->idle_since = s->now;
        return false;
    }
    if (s->now > s->idle_since + limit) {
        cluster_detail(s, detail, sizeof(detail));
        sim_fail(s, "idle liveness",
                 "leader %llu (term %llu) is followed by everyone, no proposal is made, and "
                 "for %llu ticks (%d heartbeat intervals) nothing progresses; last %llu, "
                 "commit %llu:%s",
                 (unsigned long long)l->id, (unsigned long long)raft_term(l->r),
                 (unsigned long long)(limit / SIM_TICK_UNITS), SIM_IDLE_HB,
                 (unsigned long long)raft_last_index(l->r),
                 (unsigned long long)raft_commit_index(l->r), detail);
    }
    return false;
}

static bool final_done(struct sim *s)
{
    if (!s->idle_done && !idle_check(s))
        return false;
    if (s->now > s->prop_start + SIM_FINAL_TICKS * SIM_TICK_UNITS) {
        char detail[1600];
        cluster_detail(s, detail, sizeof(detail));
        sim_fail(s, "liveness",
                 "%d ticks after the idle check the final proposal is not applied "
                 "everywhere (applied anywhere at %llu):%s",
                 SIM_FINAL_TICKS, (unsigned long long)s->final_index, detail);
    }
    if (!s->final_index) {
        if (s->now < s->final_next_try)
            return false;
        struct node *l = current_leader(s);
        if (!l)
            return false;
        uint8_t buf[9] = {'F'};
        uint64_t seq = ++s->final_prop_id;
        memcpy(buf + 1, &seq, sizeof(seq));
        int rv = raft_propose(l->r, buf, sizeof(buf));
        sim_trace(s, "final proposal #%llu on leader %llu: %d", (unsigned long long)seq,
                  (unsigned long long)l->id, rv);
        s->final_next_try = s->now + 20 * SIM_TICK_UNITS;
        return false;
    }
    const struct raft_conf *c = &s->g.conf;
    for (uint32_t i = 0; i < c->n_voters + c->n_learners; i++) {
        const struct node *n = &s->nodes[conf_member_at(c, i)];
        if (n->state != NODE_UP || n->applied < s->final_index)
            return false;
    }
    s->st.final_ticks = (s->now - s->final_start) / SIM_TICK_UNITS;
    return true;
}

/* ---- one run ---- */

static void dispatch(struct sim *s, struct event *ev)
{
    struct node *n;
    switch (ev->kind) {
    case EV_TICK:
        if ((n = live_node(s, ev->id, ev->inc))) {
            raft_tick(n->r);
            sim_schedule(s, s->now + SIM_TICK_UNITS - 3 + rng_below(&s->rng, 7), EV_TICK, n->id,
                         n->inc, 0, NULL);
        }
        break;
    case EV_MSG:
        net_deliver(s, ev->nm);
        break;
    case EV_SYNC:
        if ((n = live_node(s, ev->id, ev->inc)) && n->w_n)
            node_sync(s, n);
        break;
    case EV_SNAP_REPORT:
        if ((n = live_node(s, ev->id, ev->inc))) {
            sim_trace(s, "member %llu: snapshot to %llu %s", (unsigned long long)n->id,
                      (unsigned long long)(ev->arg / 2), ev->arg & 1 ? "delivered" : "failed");
            raft_report_snapshot(n->r, ev->arg / 2, ev->arg & 1);
        }
        break;
    case EV_UNREACH:
        if ((n = live_node(s, ev->id, ev->inc)))
            raft_report_unreachable(n->r, ev->arg);
        break;
    case EV_RESTART:
        n = &s->nodes[ev->id];
        if (n->state == NODE_DOWN && n->inc == ev->inc && !n->retiring)
            node_restart(s, n);
        break;
    case EV_RETIRE:
        n = &s->nodes[ev->id];
        if (n->state == NODE_UP || n->state == NODE_DOWN)
            node_retire(s, n);
        break;
    case EV_PROPOSE:
        if (!s->final)
            client_propose(s);
        break;
    case EV_READ:
        if (!s->final)
            client_read(s);
        break;
    case EV_CHAOS:
        chaos(s);
        break;
    case EV_CRASH:
        if (!s->final && (n = live_node(s, ev->id, ev->inc)))
            fault_crash(s, n);
        break;
    default:
        sim_fail(s, "simulator", "unknown event %u", ev->kind);
    }
}

static void setup(struct sim *s)
{
    static const uint32_t inflight[] = {1, 2, 4, 8, 16, 64, 256};
    static const uint32_t msg_bytes[] = {1, 100, 1024, 1u << 20};
    s->rng.s = hash64(s->seed) ^ (s->members * 0x9e3779b97f4a7c15ULL);
    s->cfg = (struct raft_config){
        .election_ticks = 10,
        .heartbeat_ticks = 1 + (uint32_t)rng_below(&s->rng, 3),
        .max_inflight = inflight[rng_below(&s->rng, 7)],
        .max_msg_bytes = msg_bytes[rng_below(&s->rng, 4)],
        .max_apply_bytes = msg_bytes[rng_below(&s->rng, 4)],
        .pre_vote = !rng_permille(&s->rng, 200),
        .check_quorum = !rng_permille(&s->rng, 200),
    };
    s->snap_every = 5 + (uint32_t)rng_below(&s->rng, 40);
    /* Half the runs end their faulty stretch under heavy load, so the
     * idle check starts with many appends in flight. */
    if (rng_permille(&s->rng, 500))
        s->heavy_tail = 100 + rng_below(&s->rng, 2000);
    s->delay_max = 20;
    s->heap = calloc(SIM_EVENTS_MAX, sizeof(*s->heap));
    s->reads = calloc(SIM_READS_MAX, sizeof(*s->reads));
    if (!s->heap || !s->reads)
        abort();
    struct raft_conf conf;
    memset(&conf, 0, sizeof(conf));
    for (uint32_t i = 0; i < s->members; i++)
        conf.voters[conf.n_voters++] = i + 1;
    model_init(&s->g, &conf);
    s->next_id = s->members + 1;
    sim_trace(s,
              "seed %llu: %u members, heartbeat %u, inflight %u, msg bytes %u, apply bytes %u, "
              "prevote %d, checkquorum %d, snapshot every %u, heavy tail %llu steps",
              (unsigned long long)s->seed, s->members, s->cfg.heartbeat_ticks, s->cfg.max_inflight,
              s->cfg.max_msg_bytes, s->cfg.max_apply_bytes, s->cfg.pre_vote, s->cfg.check_quorum,
              s->snap_every, (unsigned long long)s->heavy_tail);
    for (uint64_t id = 1; id <= s->members; id++)
        node_create(s, id, &conf);
    if (rng_permille(&s->rng, 500))
        raft_campaign(s->nodes[1 + rng_below(&s->rng, s->members)].r);
    sim_schedule(s, 1 + rng_below(&s->rng, 300), EV_CHAOS, 0, 0, 0, NULL);
    sim_schedule(s, 1 + rng_below(&s->rng, 100), EV_PROPOSE, 0, 0, 0, NULL);
    sim_schedule(s, 1 + rng_below(&s->rng, 300), EV_READ, 0, 0, 0, NULL);
}

static void teardown(struct sim *s)
{
    while (s->heap_n) {
        struct event ev = ev_pop(s);
        netmsg_free(ev.nm);
    }
    for (uint64_t id = 1; id < SIM_ID_MAX; id++) {
        struct node *n = &s->nodes[id];
        if (n->r)
            raft_free(n->r);
        n->r = NULL;
        node_free_storage(s, n);
    }
    model_free(&s->g);
    free(s->heap);
    free(s->reads);
}

static void run(struct sim *s)
{
    setup(s);
    uint64_t conf_seen = ~0ull;
    for (;;) {
        if (s->step == s->steps_max && !s->final)
            final_start(s);
        if (s->heavy_tail && s->step + s->heavy_tail == s->steps_max)
            heavy_start(s, UINT64_MAX);
        if (!s->heap_n)
            sim_fail(s, "simulator", "no event left");
        struct event ev = ev_pop(s);
        s->now = ev.time;
        s->step++;
        dispatch(s, &ev);
        for (uint64_t id = 1; id < SIM_ID_MAX; id++)
            if (s->nodes[id].state == NODE_UP)
                node_drain(s, &s->nodes[id]);
        for (uint64_t id = 1; id < SIM_ID_MAX; id++) {
            struct node *n = &s->nodes[id];
            /* A new leader sometimes crashes within its first fsyncs: the
             * window where what it has not yet made durable matters most. */
            if (node_check_quiet(s, n) && !s->final && rng_permille(&s->rng, 100))
                sim_schedule(s, s->now + rng_below(&s->rng, 100), EV_CRASH, id, n->inc, 0, NULL);
        }
        if (conf_seen != s->st.conf_applied) {
            conf_seen = s->st.conf_applied;
            reconcile_members(s);
        }
        if (s->final && final_done(s))
            break;
    }
    s->st.events = s->step;
    teardown(s);
}

/* ---- command line ---- */

static uint64_t arg_u64(const char *flag, const char *v)
{
    char *end;
    if (!v)
        goto bad;
    unsigned long long x = strtoull(v, &end, 10);
    if (*v == '\0' || *end != '\0')
        goto bad;
    return x;
bad:
    fprintf(stderr, "sim: %s needs a number\n", flag);
    exit(2);
}

/* Soak mode: every seed runs in a child, so a failure ends only its seed. */
static int run_forked(uint64_t first, uint64_t seeds, uint32_t members, uint64_t steps)
{
    uint64_t failed = 0;
    for (uint64_t seed = first; seed < first + seeds; seed++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            perror("sim: fork");
            return 2;
        }
        if (pid == 0) {
            struct sim *s = calloc(1, sizeof(*s));
            if (!s)
                abort();
            s->seed = seed;
            s->members = members;
            s->steps_max = steps;
            s->brief = true;
            run(s);
            free(s);
            _exit(0);
        }
        int status = 0;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failed++;
            if (!WIFEXITED(status))
                fprintf(stderr, "sim: FAIL seed=%llu members=%u: crashed (signal %d)\n",
                        (unsigned long long)seed, members,
                        WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        }
    }
    printf("sim: %llu of %llu seeds failed (from %llu, %u members, %llu steps)\n",
           (unsigned long long)failed, (unsigned long long)seeds, (unsigned long long)first,
           members, (unsigned long long)steps);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    uint64_t seeds = 20, first = 1, steps = 20000, one = 0;
    uint32_t members = 3;
    bool replay = false, keep_going = false;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--keep-going") == 0) {
            keep_going = true;
            continue;
        }
        if (strcmp(argv[i], "--seeds") == 0)
            seeds = arg_u64(argv[i], v);
        else if (strcmp(argv[i], "--first-seed") == 0)
            first = arg_u64(argv[i], v);
        else if (strcmp(argv[i], "--steps") == 0)
            steps = arg_u64(argv[i], v);
        else if (strcmp(argv[i], "--members") == 0)
            members = (uint32_t)arg_u64(argv[i], v);
        else if (strcmp(argv[i], "--seed") == 0) {
            one = arg_u64(argv[i], v);
            replay = true;
        } else {
            fprintf(stderr,
                    "usage: %s [--members 3|5] [--steps K] [--seeds N] "
                    "[--first-seed S] [--seed S]\n",
                    argv[0]);
            return 2;
        }
        i++;
    }
    if (members != 3 && members != 5) {
        fprintf(stderr, "sim: --members must be 3 or 5\n");
        return 2;
    }
    const char *env = getenv("CETCD_SIM_SEEDS");
    if (env && !replay)
        seeds = arg_u64("CETCD_SIM_SEEDS", env);
    if (replay) {
        first = one;
        seeds = 1;
    }
    if (keep_going && !replay)
        return run_forked(first, seeds, members, steps);
    struct stats total;
    memset(&total, 0, sizeof(total));
    for (uint64_t seed = first; seed < first + seeds; seed++) {
        struct sim *s = calloc(1, sizeof(*s));
        if (!s)
            abort();
        s->seed = seed;
        s->members = members;
        s->steps_max = steps;
        s->verbose = replay;
        run(s);
        total.events += s->st.events;
        total.leaders += s->st.leaders;
        total.crashes += s->st.crashes;
        total.torn += s->st.torn;
        total.partitions += s->st.partitions;
        total.msgs_sent += s->st.msgs_sent;
        total.msgs_lost += s->st.msgs_lost;
        total.snaps_sent += s->st.snaps_sent;
        total.snaps_failed += s->st.snaps_failed;
        total.snaps_installed += s->st.snaps_installed;
        total.snaps_taken += s->st.snaps_taken;
        total.proposals += s->st.proposals;
        total.applied += s->st.applied;
        total.conf_applied += s->st.conf_applied;
        total.reads_ok += s->st.reads_ok;
        total.transfers += s->st.transfers;
        total.heavy_phases += s->st.heavy_phases;
        total.qfull_drops += s->st.qfull_drops;
        total.link_resets += s->st.link_resets;
        if (s->st.idle_ticks > total.idle_ticks)
            total.idle_ticks = s->st.idle_ticks;
        if (s->st.final_ticks > total.final_ticks)
            total.final_ticks = s->st.final_ticks;
        free(s);
    }
    printf("sim: ok: %llu seeds from %llu, %u members, %llu steps each: %llu events, %llu "
           "leaders, %llu crashes (%llu torn), %llu partitions, %llu msgs (%llu lost), "
           "snapshots %llu taken %llu sent %llu failed %llu installed, %llu proposals, %llu "
           "entries committed, %llu conf changes, %llu reads, %llu transfers, %llu heavy "
           "phases (%llu queue-full drops, %llu connection resets), slowest idle catch-up %llu "
           "ticks, slowest "
           "recovery %llu ticks\n",
           (unsigned long long)seeds, (unsigned long long)first, members, (unsigned long long)steps,
           (unsigned long long)total.events, (unsigned long long)total.leaders,
           (unsigned long long)total.crashes, (unsigned long long)total.torn,
           (unsigned long long)total.partitions, (unsigned long long)total.msgs_sent,
           (unsigned long long)total.msgs_lost, (unsigned long long)total.snaps_taken,
           (unsigned long long)total.snaps_sent, (unsigned long long)total.snaps_failed,
           (unsigned long long)total.snaps_installed, (unsigned long long)total.proposals,
           (unsigned long long)total.applied, (unsigned long long)total.conf_applied,
           (unsigned long long)total.reads_ok, (unsigned long long)total.transfers,
           (unsigned long long)total.heavy_phases, (unsigned long long)total.qfull_drops,
           (unsigned long long)total.link_resets, (unsigned long long)total.idle_ticks,
           (unsigned long long)total.final_ticks);
    return 0;
}
