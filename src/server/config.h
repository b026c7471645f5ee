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

/* Splits a comma-separated URL list in place; returns the count. */
unsigned config_split_urls(char *list, const char **out, unsigned max);

#endif
