/*
 * config.c — etcd's command-line flags and ETCD_* environment variables.
 *
 * Flags follow Go's flag package, as etcd does: "-flag", "--flag",
 * "--flag=value" and "--flag value"; boolean flags take no value (or
 * "=true"/"=false"). Every flag has the environment variable etcd gives
 * it: ETCD_ plus the flag name upper-cased with '-' turned into '_'. A
 * flag on the command line wins over its variable. Errors use etcd's
 * wording where etcd has one. Runs once at start-up, on the main thread.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum flag_kind { F_STR, F_U64, F_UINT, F_BOOL, F_I64 };

struct flag {
    const char *name;
    enum flag_kind kind;
    size_t off;
    size_t size; /* F_STR: buffer size */
    const char *usage;
};

#define STR(field, name, usage)                                                                    \
    {                                                                                              \
        name, F_STR, offsetof(struct config, field), sizeof(((struct config *)0)->field), usage    \
    }

static const struct flag flags[] = {
    STR(name, "name", "Human-readable name for this member."),
    STR(data_dir, "data-dir", "Path to the data directory."),
    STR(listen_client_urls, "listen-client-urls", "List of URLs to listen on for client traffic."),
    STR(advertise_client_urls, "advertise-client-urls",
        "List of this member's client URLs to advertise to the public."),
    STR(initial_advertise_peer_urls, "initial-advertise-peer-urls",
        "List of this member's peer URLs to advertise to the rest of the cluster."),
    STR(initial_cluster_token, "initial-cluster-token",
        "Initial cluster token for the etcd cluster during bootstrap."),
    {"max-request-bytes", F_U64, offsetof(struct config, max_request_bytes), 0,
     "Maximum client request size in bytes the server will accept."},
    {"max-txn-ops", F_U64, offsetof(struct config, max_txn_ops), 0,
     "Maximum number of operations permitted in a transaction."},
    {"quota-backend-bytes", F_I64, offsetof(struct config, quota_backend_bytes), 0,
     "Raise alarms when the state size exceeds the given quota (0 defaults to 2 GiB)."},
    {"snapshot-count", F_U64, offsetof(struct config, snapshot_count), 0,
     "Number of committed transactions to trigger a snapshot to disk."},
    STR(auto_compaction_mode, "auto-compaction-mode",
        "Interpret 'auto-compaction-retention' one of: periodic|revision."),
    STR(auto_compaction_retention, "auto-compaction-retention",
        "Auto compaction retention for mvcc key value store (0 disables it)."),
    {"shards", F_UINT, offsetof(struct config, shards), 0,
     "Number of shard threads, one per core (default: online CPUs)."},
    {"pin-shards", F_BOOL, offsetof(struct config, pin_shards), 0,
     "Pin shard k to CPU k (for machines whose cores are dedicated to cetcd)."},
    {"help", F_BOOL, offsetof(struct config, help), 0, "Show this help and exit."},
    {"version", F_BOOL, offsetof(struct config, version), 0, "Print the version and exit."},
};

#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

static void defaults(struct config *cfg)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->name, sizeof(cfg->name), "default");
    snprintf(cfg->listen_client_urls, sizeof(cfg->listen_client_urls), "http://localhost:2379");
    snprintf(cfg->advertise_client_urls, sizeof(cfg->advertise_client_urls),
             "http://localhost:2379");
    snprintf(cfg->initial_advertise_peer_urls, sizeof(cfg->initial_advertise_peer_urls),
             "http://localhost:2380");
    snprintf(cfg->initial_cluster_token, sizeof(cfg->initial_cluster_token), "etcd-cluster");
    cfg->max_request_bytes = 1572864; /* 1.5 MiB, etcd's default */
    cfg->max_txn_ops = 128;
    cfg->snapshot_count = 100000;
    snprintf(cfg->auto_compaction_mode, sizeof(cfg->auto_compaction_mode), "periodic");
    snprintf(cfg->auto_compaction_retention, sizeof(cfg->auto_compaction_retention), "0");
    cfg->shards = ncpu > 0 ? (unsigned)ncpu : 1;
}

static int parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "t") == 0 ||
        strcmp(v, "TRUE") == 0 || strcmp(v, "True") == 0)
        *out = true;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "f") == 0 ||
             strcmp(v, "FALSE") == 0 || strcmp(v, "False") == 0)
        *out = false;
    else
        return -1;
    return 0;
}

static int parse_u64(const char *v, uint64_t *out)
{
    char *end;
    unsigned long long x;

    if (*v == '\0' || *v == '-' || *v == '+')
        return -1;
    errno = 0;
    x = strtoull(v, &end, 0);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = x;
    return 0;
}

/* Stores value into the flag's field. 0 or -1 (bad value). */
static int set_flag(struct config *cfg, const struct flag *f, const char *v)
{
    char *field = (char *)cfg + f->off;
    uint64_t x;

    switch (f->kind) {
    case F_STR:
        if (strlen(v) >= f->size)
            return -1;
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case F_U64:
        if (parse_u64(v, &x) != 0)
            return -1;
        *(uint64_t *)field = x;
        return 0;
    case F_UINT:
        if (parse_u64(v, &x) != 0 || x > 0xffffffffu)
            return -1;
        *(unsigned *)field = (unsigned)x;
        return 0;
    case F_BOOL:
        return parse_bool(v, (bool *)field);
    case F_I64:
        if (*v == '-' ? parse_u64(v + 1, &x) != 0 || x > (uint64_t)INT64_MAX
                      : parse_u64(v, &x) != 0 || x > (uint64_t)INT64_MAX)
            return -1;
        *(int64_t *)field = *v == '-' ? -(int64_t)x : (int64_t)x;
        return 0;
    }
    return -1;
}

static const struct flag *find_flag(const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < N_FLAGS; i++) {
        if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
            return &flags[i];
    }
    return NULL;
}

static void env_name(const struct flag *f, char *buf, size_t len)
{
    size_t i;
    size_t j = (size_t)snprintf(buf, len, "ETCD_");

    for (i = 0; f->name[i] != '\0' && j + 1 < len; i++, j++)
        buf[j] = f->name[i] == '-' ? '_' : (char)toupper((unsigned char)f->name[i]);
    buf[j] = '\0';
}

static int load_env(struct config *cfg, char *err, size_t err_len)
{
    char name[64];
    const char *v;
    size_t i;

    for (i = 0; i < N_FLAGS; i++) {
        env_name(&flags[i], name, sizeof(name));
        v = getenv(name);
        if (v == NULL)
            continue;
        if (set_flag(cfg, &flags[i], v) != 0) {
            snprintf(err, err_len, "invalid value \"%s\" for %s: parse error", v, name);
            return CONFIG_BAD_ENV;
        }
    }
    return 0;
}

/* One argv element starting at *i; advances *i past what it consumed. */
static int load_arg(struct config *cfg, int argc, char **argv, int *i, char *err, size_t err_len)
{
    const char *a = argv[*i];
    const char *name = a + 1;
    const char *eq;
    const char *v;
    const struct flag *f;

    if (name[0] == '-')
        name++;
    if (strcmp(name, "h") == 0) { /* Go's flag package: -h asks for help */
        cfg->help = true;
        return 0;
    }
    eq = strchr(name, '=');
    f = find_flag(name, eq != NULL ? (size_t)(eq - name) : strlen(name));
    if (f == NULL) {
        snprintf(err, err_len, "flag provided but not defined: -%.*s",
                 (int)(eq != NULL ? (size_t)(eq - name) : strlen(name)), name);
        return -1;
    }
    if (eq != NULL) {
        v = eq + 1;
    } else if (f->kind == F_BOOL) {
        v = "true";
    } else if (*i + 1 < argc) {
        v = argv[++*i];
    } else {
        snprintf(err, err_len, "flag needs an argument: -%s", f->name);
        return -1;
    }
    if (set_flag(cfg, f, v) != 0) {
        snprintf(err, err_len, "invalid value \"%s\" for flag -%s: parse error", v, f->name);
        return -1;
    }
    return 0;
}

static int check(struct config *cfg, char *err, size_t err_len)
{
    if (cfg->data_dir[0] == '\0')
        snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s.etcd", cfg->name);
    if (cfg->shards == 0 || cfg->shards > 64) {
        snprintf(err, err_len, "invalid value \"%u\" for flag -shards: must be 1 to 64",
                 cfg->shards);
        return -1;
    }
    if (strcmp(cfg->auto_compaction_mode, "periodic") != 0 &&
        strcmp(cfg->auto_compaction_mode, "revision") != 0) {
        snprintf(err, err_len, "unknown auto-compaction-mode %s", cfg->auto_compaction_mode);
        return -1;
    }
    if (config_retention(cfg, NULL, NULL) != 0) {
        snprintf(err, err_len, "invalid auto-compaction-retention %s",
                 cfg->auto_compaction_retention);
        return -1;
    }
    if (cfg->max_request_bytes == 0 || cfg->max_request_bytes > (64u << 20)) {
        snprintf(err, err_len,
                 "invalid value \"%llu\" for flag -max-request-bytes: must be 1 to %u",
                 (unsigned long long)cfg->max_request_bytes, 64u << 20);
        return -1;
    }
    return 0;
}

int config_load(struct config *cfg, int argc, char **argv, char *err, size_t err_len)
{
    int i;
    int rv;

    defaults(cfg);
    rv = load_env(cfg, err, err_len);
    if (rv != 0)
        return rv;
    /* Flags end at the first non-flag argument or after "--", as in Go;
     * etcd takes no positional arguments, so anything left is an error. */
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (load_arg(cfg, argc, argv, &i, err, err_len) != 0)
            return CONFIG_BAD_FLAG;
    }
    if (i < argc) {
        snprintf(err, err_len,
                 "error verifying flags, '%s' is not a valid flag. See 'cetcd --help'.", argv[i]);
        return CONFIG_BAD_ARGS;
    }
    return check(cfg, err, err_len) != 0 ? CONFIG_BAD_FLAG : 0;
}

void config_usage(void)
{
    char env[64];
    size_t i;

    printf("Usage:\n\n  cetcd [flags]\n\n"
           "  An etcd-compatible key-value store; flags and ETCD_* variables as etcd's.\n\n");
    for (i = 0; i < N_FLAGS; i++) {
        env_name(&flags[i], env, sizeof(env));
        printf("  --%s%s\n      %s (env %s)\n", flags[i].name,
               flags[i].kind == F_BOOL ? "" : " value", flags[i].usage, env);
    }
}

/* etcd's retention: revision mode takes a count; periodic mode takes a Go
 * duration ("1h30m", "10m", "90s") or a bare number of hours. */
static int parse_duration_ms(const char *v, uint64_t *ms)
{
    uint64_t total = 0;
    char *end;

    if (*v == '\0')
        return -1;
    while (*v != '\0') {
        double x = strtod(v, &end);
        uint64_t unit;
        if (end == v || x < 0)
            return -1;
        if (strncmp(end, "ms", 2) == 0) {
            unit = 1;
            end += 2;
        } else if (*end == 'h') {
            unit = 3600000;
            end++;
        } else if (*end == 'm') {
            unit = 60000;
            end++;
        } else if (*end == 's') {
            unit = 1000;
            end++;
        } else {
            return -1;
        }
        total += (uint64_t)(x * (double)unit);
        v = end;
    }
    *ms = total;
    return 0;
}

int config_retention(const struct config *cfg, uint64_t *period_ms, uint64_t *revisions)
{
    const char *v = cfg->auto_compaction_retention;
    uint64_t x = 0;
    uint64_t ms = 0;

    if (strcmp(cfg->auto_compaction_mode, "revision") == 0) {
        if (parse_u64(v, &x) != 0)
            return -1;
    } else if (parse_u64(v, &x) == 0) {
        ms = x * 3600000u;
        x = 0;
    } else if (parse_duration_ms(v, &ms) != 0) {
        return -1;
    }
    if (period_ms != NULL)
        *period_ms = ms;
    if (revisions != NULL)
        *revisions = x;
    return 0;
}

unsigned config_split_urls(char *list, const char **out, unsigned max)
{
    unsigned n = 0;
    char *save = NULL;
    char *tok;

    for (tok = strtok_r(list, ",", &save); tok != NULL && n < max;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (*tok != '\0')
            out[n++] = tok;
    }
    return n;
}
