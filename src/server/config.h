/*
 * config.h — cetcd's settings: etcd's flags and their ETCD_* environment
 * variables (internal to the server module).
 */
#ifndef CETCD_CONFIG_H
#define CETCD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_URLS_MAX 8
#define CONFIG_STR_MAX  1024

struct config {
    char name[256];
    char data_dir[CONFIG_STR_MAX];
    char listen_client_urls[CONFIG_STR_MAX];
    char advertise_client_urls[CONFIG_STR_MAX];
    char initial_advertise_peer_urls[CONFIG_STR_MAX];
    char initial_cluster_token[256];
    uint64_t max_request_bytes;
    uint64_t max_txn_ops;
    int64_t quota_backend_bytes; /* 0: default (2 GiB); < 0: etcd treats as default too */
    uint64_t snapshot_count;
    char auto_compaction_mode[16];      /* "periodic" or "revision" */
    char auto_compaction_retention[64]; /* periodic: duration or hours; revision: count */
    unsigned shards;
    bool pin_shards;
    bool help;
    bool version;
};

/* config_load() failures, each with the exit status etcd uses for it. */
enum config_err {
    CONFIG_BAD_FLAG = 2, /* unknown flag, bad or missing value */
    CONFIG_BAD_ENV = 1,  /* an ETCD_* variable with a bad value */
    CONFIG_BAD_ARGS = 1, /* a positional argument */
};

/* Fills cfg from defaults, then ETCD_* variables, then argv (flags win).
 * Returns 0, or an enum config_err with a one-line message in err: the
 * caller prints it and exits with that status. */
int config_load(struct config *cfg, int argc, char **argv, char *err, size_t err_len);

/* Prints the flag list (--help). */
void config_usage(void);

/* The auto-compaction retention: in periodic mode *period_ms (0: off), in
 * revision mode *revisions (0: off). 0, or -1 if it does not parse. */
int config_retention(const struct config *cfg, uint64_t *period_ms, uint64_t *revisions);

/* Splits a comma-separated URL list in place; returns the count. */
unsigned config_split_urls(char *list, const char **out, unsigned max);

#endif
