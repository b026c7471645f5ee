/*
 * config.h — cetcd's settings: etcd's flags, their ETCD_* environment
 * variables, and etcd's YAML configuration file (--config-file), which
 * replaces both when given (internal to the server module).
 */
#ifndef CETCD_CONFIG_H
#define CETCD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_URLS_MAX        8
#define CONFIG_STR_MAX         1024
#define CONFIG_CLUSTER_MAX     8192      /* --initial-cluster, bytes with the NUL */
#define CONFIG_FILE_MAX        (1 << 20) /* a larger --config-file is refused */
#define CONFIG_YAML_DEPTH      32        /* nesting allowed in --config-file */
#define CONFIG_ELECTION_MAX_MS 50000     /* etcd's bound on --election-timeout */

struct config {
    char name[256];
    char data_dir[CONFIG_STR_MAX];
    char listen_client_urls[CONFIG_STR_MAX];
    char advertise_client_urls[CONFIG_STR_MAX];
    char listen_peer_urls[CONFIG_STR_MAX];
    char initial_advertise_peer_urls[CONFIG_STR_MAX];
    char initial_cluster[CONFIG_CLUSTER_MAX]; /* "name=url,..."; see initial_cluster_given */
    char initial_cluster_state[16];           /* "new" or "existing" */
    char initial_cluster_token[256];
    char config_file[CONFIG_STR_MAX]; /* the YAML file the settings came from, or "" */
    char wal_dir[CONFIG_STR_MAX];     /* accepted only empty: the WAL is under data_dir */
    uint64_t heartbeat_interval_ms;
    uint64_t election_timeout_ms;
    uint64_t max_snapshots; /* accepted, not used */
    uint64_t max_wals;      /* accepted, not used */
    bool strict_reconfig_check;
    /* --initial-cluster was given (flag, variable or file). When it was not,
     * cetcd uses <name>=<initial-advertise-peer-urls> (etcd's default is
     * the fixed "default=http://localhost:2380", which makes a start with
     * another --name fail; cetcd lets a lone member start with any name). */
    bool initial_cluster_given;
    uint64_t max_request_bytes;
    uint64_t max_txn_ops;
    int64_t quota_backend_bytes; /* 0: default (2 GiB); < 0: etcd treats as default too */
    uint64_t snapshot_count;
    bool lease_checkpoint;                 /* --experimental-enable-lease-checkpoint */
    uint64_t lease_checkpoint_interval_ms; /* cetcd's --lease-checkpoint-interval-ms */
    char auto_compaction_mode[16];         /* "periodic" or "revision" */
    char auto_compaction_retention[64];    /* periodic: duration or hours; revision: count */
    unsigned shards;
    bool pin_shards;
    bool help;
    bool version;
};

/* config_load() failures, each with the exit status etcd uses for it. */
enum config_err {
    CONFIG_BAD_FLAG = 2,   /* unknown flag, bad or missing value */
    CONFIG_BAD_ENV = 1,    /* an ETCD_* variable with a bad value */
    CONFIG_BAD_ARGS = 1,   /* a positional argument */
    CONFIG_BAD_CONFIG = 1, /* values that do not fit together, the config file,
                            * the initial cluster (etcd's "error verifying flags") */
};

/* Fills cfg from defaults, then argv, then the ETCD_* variables of the
 * flags argv did not set (flags win) — or, when --config-file (or
 * ETCD_CONFIG_FILE) names a file, from defaults and that file only, as
 * etcd does. Then checks the whole, including the initial cluster
 * (members.h). Returns 0, or an enum config_err with a one-line message in
 * err: the caller prints it and exits with that status. */
int config_load(struct config *cfg, int argc, char **argv, char *err, size_t err_len);

/* Prints the flag list (--help). */
void config_usage(void);

/* The auto-compaction retention: in periodic mode *period_ms (0: off), in
 * revision mode *revisions (0: off). 0, or -1 if it does not parse. */
int config_retention(const struct config *cfg, uint64_t *period_ms, uint64_t *revisions);

/* Splits a comma-separated URL list in place; returns the count. */
unsigned config_split_urls(char *list, const char **out, unsigned max);

#endif
