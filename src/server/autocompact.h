/*
 * autocompact.h — when to compact on its own (--auto-compaction-mode and
 * --auto-compaction-retention), as etcd's v3compactor decides (internal to
 * the server module). Pure: the core feeds it the time and the revision
 * and proposes the Compact it asks for.
 */
#ifndef CETCD_AUTOCOMPACT_H
#define CETCD_AUTOCOMPACT_H

#include <stdbool.h>
#include <stdint.h>

#define AUTOC_SAMPLES_MAX          11 /* periodic: samples over one period (etcd: period/10 + 1) */
#define AUTOC_REVISION_INTERVAL_MS (5u * 60u * 1000u) /* revision mode: etcd's check period */

struct core_auto {
    uint64_t period_ms;   /* periodic mode: the retention period (0: off) */
    uint64_t revisions;   /* revision mode: revisions kept (0: off) */
    uint64_t interval_ms; /* how often to look */
    uint64_t next_ms;     /* next look */
    uint64_t last_success_ms;
    uint64_t base_ms; /* periodic: wait since last success (period, then min(period, 1h)) */
    int64_t samples[AUTOC_SAMPLES_MAX];
    unsigned n_samples;
    unsigned max_samples;
    int64_t prev; /* revision mode: last revision compacted */
};

/* Off when both are 0. */
void autoc_init(struct core_auto *a, uint64_t period_ms, uint64_t revisions, uint64_t now_ms,
                int64_t current_rev);
bool autoc_enabled(const struct core_auto *a);

/* Milliseconds until the next look (for the core's timer). */
uint64_t autoc_wait_ms(const struct core_auto *a, uint64_t now_ms);

/* Called when the timer fires: the revision to compact at, or 0. */
int64_t autoc_tick(struct core_auto *a, uint64_t now_ms, int64_t current_rev);

#endif
