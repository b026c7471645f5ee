/*
 * autocompact.c — etcd's two auto-compaction policies, driven by the
 * core's timer (core thread only; no I/O, no clock of its own):
 *
 *  periodic: the retention is a period P. Every P/10 (at most 6 min) the
 *            current revision is sampled, keeping the last P/(P/10) + 1
 *            samples, so the oldest is the revision of about P ago. Once P
 *            has passed since the start (later: min(P, 1h) since the last
 *            compaction), compact at that oldest sample.
 *  revision: every 5 minutes, compact at current - retention if that is
 *            positive and not what was compacted last time.
 */
#include "autocompact.h"

#include <string.h>

#define HOUR_MS (3600u * 1000u)

void autoc_init(struct core_auto *a, uint64_t period_ms, uint64_t revisions, uint64_t now_ms,
                int64_t current_rev)
{
    uint64_t compact_ms = period_ms > HOUR_MS ? HOUR_MS : period_ms;

    memset(a, 0, sizeof(*a));
    a->period_ms = period_ms;
    a->revisions = revisions;
    if (revisions != 0) {
        a->interval_ms = AUTOC_REVISION_INTERVAL_MS;
    } else if (period_ms != 0) {
        a->interval_ms = compact_ms / 10 != 0 ? compact_ms / 10 : 1;
        a->max_samples = (unsigned)(period_ms / a->interval_ms) + 1;
        if (a->max_samples > AUTOC_SAMPLES_MAX)
            a->max_samples = AUTOC_SAMPLES_MAX;
        a->base_ms = period_ms;
    }
    a->last_success_ms = now_ms;
    a->next_ms = now_ms + a->interval_ms;
    if (a->max_samples != 0)
        a->samples[a->n_samples++] = current_rev;
}

bool autoc_enabled(const struct core_auto *a)
{
    return a->interval_ms != 0;
}

uint64_t autoc_wait_ms(const struct core_auto *a, uint64_t now_ms)
{
    return a->next_ms > now_ms ? a->next_ms - now_ms : 0;
}

static void sample(struct core_auto *a, int64_t rev)
{
    if (a->n_samples == a->max_samples) {
        memmove(a->samples, a->samples + 1, (a->n_samples - 1) * sizeof(a->samples[0]));
        a->n_samples--;
    }
    a->samples[a->n_samples++] = rev;
}

static int64_t tick_periodic(struct core_auto *a, uint64_t now_ms, int64_t rev)
{
    int64_t target;

    if (now_ms - a->last_success_ms < a->base_ms || a->n_samples == 0)
        return 0;
    a->base_ms = a->period_ms > HOUR_MS ? HOUR_MS : a->period_ms;
    target = a->samples[0];
    a->last_success_ms = now_ms;
    (void)rev;
    return target;
}

static int64_t tick_revision(struct core_auto *a, int64_t rev)
{
    int64_t target = rev - (int64_t)a->revisions;

    if (target <= 0 || target == a->prev)
        return 0;
    a->prev = target;
    return target;
}

int64_t autoc_tick(struct core_auto *a, uint64_t now_ms, int64_t current_rev)
{
    int64_t target;

    if (!autoc_enabled(a) || now_ms < a->next_ms)
        return 0;
    a->next_ms = now_ms + a->interval_ms;
    if (a->revisions != 0)
        return tick_revision(a, current_rev);
    target = tick_periodic(a, now_ms, current_rev);
    sample(a, current_rev);
    return target;
}
