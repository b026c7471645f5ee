/*
 * config.c — etcd's command-line flags, ETCD_* environment variables and
 * YAML configuration file.
 *
 * Flags follow Go's flag package, as etcd does: "-flag", "--flag",
 * "--flag=value" and "--flag value"; boolean flags take no value (or
 * "=true"/"=false"). Every flag has the environment variable etcd gives
 * it: ETCD_ plus the flag name upper-cased with '-' turned into '_'. A
 * flag on the command line wins over its variable. With --config-file
 * (or ETCD_CONFIG_FILE) the settings come from that YAML file alone, read
 * with libyaml's event API: at most CONFIG_FILE_MAX bytes, nested at most
 * CONFIG_YAML_DEPTH deep, only the first document; top-level keys are the
 * flag names (matched as Go's encoding/json does, case-insensitively as a
 * fallback), unknown keys are ignored, and values are typed as etcd's
 * decoder types them (a quoted "100" is no number). Errors use etcd's
 * wording where etcd has one. Runs once at start-up, on the main thread.
 */
#include "config.h"
#include "members.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

/* snprintf for messages: a message that does not fit is cut, on purpose. */
static void __attribute__((format(printf, 3, 4))) msg(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

enum flag_kind {
    F_STR,
    F_URLS,  /* a comma-separated URL list, checked as etcd's flag does */
    F_STATE, /* "new" or "existing" */
    F_U64,
    F_UINT,
    F_BOOL,
    F_I64,
};

struct flag {
    const char *name;
    enum flag_kind kind;
    size_t off;
    size_t size;        /* F_STR, F_URLS, F_STATE: buffer size */
    const char *def;    /* the default as --help shows it, or NULL */
    const char *gotype; /* the Go type etcd's YAML decoder names in errors; NULL: no key */
    const char *usage;
};

#define FIELD(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)
#define STR(field, name, def, usage)                                                               \
    {                                                                                              \
        name, F_STR, FIELD(field), def, "string", usage                                            \
    }
#define URLS(field, name, def, usage)                                                              \
    {                                                                                              \
        name, F_URLS, FIELD(field), def, "string", usage                                           \
    }
#define NUM(kind, field, name, def, gotype, usage)                                                 \
    {                                                                                              \
        name, kind, FIELD(field), def, gotype, usage                                               \
    }

static const struct flag flags[] = {
    {"config-file", F_STR, FIELD(config_file), NULL, NULL,
     "Path to the server configuration file. Note that if a configuration file is provided, "
     "other command line flags and environment variables will be ignored."},
    STR(name, "name", "default", "Human-readable name for this member."),
    STR(data_dir, "data-dir", "${name}.etcd", "Path to the data directory."),
    STR(wal_dir, "wal-dir", "", "Path to the dedicated wal directory (cetcd: must be empty)."),
    NUM(F_U64, snapshot_count, "snapshot-count", "100000", "uint64",
        "Number of committed transactions to trigger a snapshot to disk."),
    NUM(F_U64, heartbeat_interval_ms, "heartbeat-interval", "100", "uint",
        "Time (in milliseconds) of a heartbeat interval."),
    NUM(F_U64, election_timeout_ms, "election-timeout", "1000", "uint",
        "Time (in milliseconds) for an election to timeout."),
    URLS(listen_peer_urls, "listen-peer-urls", "http://localhost:2380",
         "List of URLs to listen on for peer traffic."),
    URLS(listen_client_urls, "listen-client-urls", "http://localhost:2379",
         "List of URLs to listen on for client traffic."),
    NUM(F_U64, max_snapshots, "max-snapshots", "5", "uint",
        "Maximum number of snapshot files to retain (accepted, not used)."),
    NUM(F_U64, max_wals, "max-wals", "5", "uint",
        "Maximum number of wal files to retain (accepted, not used)."),
    NUM(F_I64, quota_backend_bytes, "quota-backend-bytes", "0", "int64",
        "Raise alarms when the state size exceeds the given quota (0 defaults to 2 GiB)."),
    NUM(F_U64, max_txn_ops, "max-txn-ops", "128", "uint",
        "Maximum number of operations permitted in a transaction."),
    NUM(F_U64, max_request_bytes, "max-request-bytes", "1572864", "uint",
        "Maximum client request size in bytes the server will accept."),
    URLS(initial_advertise_peer_urls, "initial-advertise-peer-urls", "http://localhost:2380",
         "List of this member's peer URLs to advertise to the rest of the cluster."),
    STR(initial_cluster, "initial-cluster", "default=http://localhost:2380",
        "Initial cluster configuration for bootstrapping (cetcd: defaults to "
        "<name>=<initial-advertise-peer-urls>)."),
    {"initial-cluster-state", F_STATE, FIELD(initial_cluster_state), "new", "string",
     "Initial cluster state ('new' or 'existing')."},
    STR(initial_cluster_token, "initial-cluster-token", "etcd-cluster",
        "Initial cluster token for the etcd cluster during bootstrap."),
    URLS(advertise_client_urls, "advertise-client-urls", "http://localhost:2379",
         "List of this member's client URLs to advertise to the public."),
    NUM(F_BOOL, strict_reconfig_check, "strict-reconfig-check", "true", "bool",
        "Reject reconfiguration requests that would cause quorum loss."),
    STR(auto_compaction_mode, "auto-compaction-mode", "periodic",
        "Interpret 'auto-compaction-retention' one of: periodic|revision."),
    STR(auto_compaction_retention, "auto-compaction-retention", "0",
        "Auto compaction retention for mvcc key value store (0 disables it)."),
    NUM(F_BOOL, lease_checkpoint, "experimental-enable-lease-checkpoint", "false", "bool",
        "Enable the leader to send regular checkpoints to other members to prevent reset of "
        "remaining TTL on leader change."),
    NUM(F_U64, lease_checkpoint_interval_ms, "lease-checkpoint-interval-ms", "300000", "uint",
        "Milliseconds between lease checkpoints with experimental-enable-lease-checkpoint "
        "(cetcd; etcd's fixed 5 minutes by default)."),
    NUM(F_UINT, shards, "shards", NULL, "uint",
        "Number of shard threads, one per core (default: online CPUs)."),
    NUM(F_BOOL, pin_shards, "pin-shards", NULL, "bool",
        "Pin shard k to CPU k (for machines whose cores are dedicated to cetcd)."),
    {"help", F_BOOL, FIELD(help), NULL, NULL, "Show this help and exit."},
    {"version", F_BOOL, FIELD(version), NULL, NULL, "Print the version and exit."},
};

#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

/* Where each flag's value came from during one config_load(). */
struct load {
    bool set[N_FLAGS];
};

static void defaults(struct config *cfg)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->name, sizeof(cfg->name), "default");
    snprintf(cfg->listen_client_urls, sizeof(cfg->listen_client_urls), "http://localhost:2379");
    snprintf(cfg->advertise_client_urls, sizeof(cfg->advertise_client_urls),
             "http://localhost:2379");
    snprintf(cfg->listen_peer_urls, sizeof(cfg->listen_peer_urls), "http://localhost:2380");
    snprintf(cfg->initial_advertise_peer_urls, sizeof(cfg->initial_advertise_peer_urls),
             "http://localhost:2380");
    snprintf(cfg->initial_cluster_state, sizeof(cfg->initial_cluster_state), "new");
    snprintf(cfg->initial_cluster_token, sizeof(cfg->initial_cluster_token), "etcd-cluster");
    cfg->heartbeat_interval_ms = 100;
    cfg->election_timeout_ms = 1000;
    cfg->max_snapshots = 5;
    cfg->max_wals = 5;
    cfg->strict_reconfig_check = true;
    cfg->max_request_bytes = 1572864; /* 1.5 MiB, etcd's default */
    cfg->max_txn_ops = 128;
    cfg->snapshot_count = 100000;
    cfg->lease_checkpoint_interval_ms = 300000; /* etcd's defaultLeaseCheckpointInterval */
    snprintf(cfg->auto_compaction_mode, sizeof(cfg->auto_compaction_mode), "periodic");
    snprintf(cfg->auto_compaction_retention, sizeof(cfg->auto_compaction_retention), "0");
    cfg->shards = ncpu > 0 ? (unsigned)ncpu : 1;
}

static int parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "t") == 0 ||
        strcmp(v, "TRUE") == 0 || strcmp(v, "True") == 0 || strcmp(v, "T") == 0)
        *out = true;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "f") == 0 ||
             strcmp(v, "FALSE") == 0 || strcmp(v, "False") == 0 || strcmp(v, "F") == 0)
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

static int parse_i64(const char *v, int64_t *out)
{
    uint64_t x;
    bool neg = *v == '-';

    if (parse_u64(neg ? v + 1 : v, &x) != 0 || x > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? -(int64_t)x : (int64_t)x;
    return 0;
}

/* Stores value into the flag's field. 0, or -1 with why (etcd's reason
 * after "invalid value ... for flag -name: "). */
static int set_flag(struct config *cfg, const struct flag *f, const char *v, char *why,
                    size_t why_len)
{
    char *field = (char *)cfg + f->off;
    uint64_t x;
    int rv = 0;

    msg(why, why_len, "parse error");
    switch (f->kind) {
    case F_URLS:
        if (members_urls_check(v, MEMBERS_URL_ANY, why, why_len) < 0)
            return -1;
        /* fall through */
    case F_STR:
        if (strlen(v) >= f->size) {
            msg(why, why_len, "longer than %zu bytes", f->size - 1);
            return -1;
        }
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case F_STATE:
        if (strcmp(v, "new") != 0 && strcmp(v, "existing") != 0) {
            msg(why, why_len, "invalid value");
            return -1;
        }
        snprintf(field, f->size, "%s", v);
        return 0;
    case F_U64:
        rv = parse_u64(v, &x);
        if (rv == 0)
            *(uint64_t *)field = x;
        return rv;
    case F_UINT:
        if (parse_u64(v, &x) != 0 || x > 0xffffffffu)
            return -1;
        *(unsigned *)field = (unsigned)x;
        return 0;
    case F_BOOL:
        return parse_bool(v, (bool *)field);
    case F_I64:
        return parse_i64(v, (int64_t *)field);
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

/* The variables of the flags argv did not set (etcd's SetFlagsFromEnv). */
static int load_env(struct config *cfg, struct load *ld, char *err, size_t err_len)
{
    char name[64];
    char why[256];
    const char *v;
    size_t i;

    for (i = 0; i < N_FLAGS; i++) {
        if (ld->set[i] || &flags[i] == find_flag("config-file", 11))
            continue;
        env_name(&flags[i], name, sizeof(name));
        v = getenv(name);
        if (v == NULL)
            continue;
        if (set_flag(cfg, &flags[i], v, why, sizeof(why)) != 0) {
            msg(err, err_len,
                "error verifying flags, invalid value \"%s\" for %s: %s. See 'cetcd --help'.", v,
                name, why);
            return CONFIG_BAD_ENV;
        }
        ld->set[i] = true;
    }
    return 0;
}

/* One argv element starting at *i; advances *i past what it consumed. */
static int load_arg(struct config *cfg, struct load *ld, int argc, char **argv, int *i, char *err,
                    size_t err_len)
{
    const char *a = argv[*i];
    const char *name = a + 1;
    const char *eq;
    const char *v;
    const struct flag *f;
    char why[256];

    if (name[0] == '-')
        name++;
    if (strcmp(name, "h") == 0) { /* Go's flag package: -h asks for help */
        cfg->help = true;
        return 0;
    }
    eq = strchr(name, '=');
    f = find_flag(name, eq != NULL ? (size_t)(eq - name) : strlen(name));
    if (f == NULL) {
        msg(err, err_len, "flag provided but not defined: -%.*s",
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
        msg(err, err_len, "flag needs an argument: -%s", f->name);
        return -1;
    }
    if (set_flag(cfg, f, v, why, sizeof(why)) != 0) {
        if (f->kind == F_BOOL)
            msg(err, err_len, "invalid boolean value \"%s\" for -%s: %s", v, f->name, why);
        else
            msg(err, err_len, "invalid value \"%s\" for flag -%s: %s", v, f->name, why);
        return -1;
    }
    ld->set[f - flags] = true;
    return 0;
}

/* ------------------------------------------------------- config file --- */

/* A YAML scalar as etcd's decoder (YAML 1.1 into JSON) types it. */
enum yval { Y_NULL, Y_BOOL, Y_INT, Y_FLOAT, Y_STR };

static bool in_set(const char *v, const char *const *set)
{
    for (; *set != NULL; set++) {
        if (strcmp(v, *set) == 0)
            return true;
    }
    return false;
}

static enum yval yaml_type(const yaml_event_t *ev, bool *b, int64_t *i, bool *neg_big)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const yes[] = {"y",  "Y",  "yes",  "Yes",  "YES",  "on",
                                      "On", "ON", "true", "True", "TRUE", NULL};
    static const char *const no[] = {"n",   "N",   "no",    "No",    "NO",    "off",
                                     "Off", "OFF", "false", "False", "FALSE", NULL};
    const char *v = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    char digits[64];
    char *end;
    size_t k, n = 0;

    *neg_big = false;
    if (tag != NULL && strcmp(tag, YAML_STR_TAG) == 0)
        return Y_STR;
    if (!ev->data.scalar.plain_implicit)
        return Y_STR; /* quoted */
    if (in_set(v, nulls))
        return Y_NULL;
    if (in_set(v, yes) || in_set(v, no)) {
        *b = in_set(v, yes);
        return Y_BOOL;
    }
    for (k = 0; v[k] != '\0' && n + 1 < sizeof(digits); k++) {
        if (v[k] != '_')
            digits[n++] = v[k];
    }
    digits[n] = '\0';
    if (v[k] == '\0' && n > 0 &&
        (isdigit((unsigned char)digits[0]) ||
         ((digits[0] == '-' || digits[0] == '+') && isdigit((unsigned char)digits[1])))) {
        errno = 0;
        *i = strtoll(digits, &end, 0);
        if (*end == '\0' && errno == 0)
            return Y_INT;
        if (*end == '\0' && digits[0] != '-') {
            *neg_big = true; /* too big for int64: a number all the same */
            return Y_INT;
        }
    }
    errno = 0;
    strtod(v, &end);
    if (end != v && *end == '\0' && !isalpha((unsigned char)v[0]))
        return Y_FLOAT;
    if (strcmp(v, ".inf") == 0 || strcmp(v, "-.inf") == 0 || strcmp(v, ".nan") == 0)
        return Y_FLOAT;
    return Y_STR;
}

/* Sets f from a YAML scalar, with etcd's (Go's encoding/json) errors. */
static int set_from_yaml(struct config *cfg, const struct flag *f, const yaml_event_t *ev,
                         char *err, size_t err_len)
{
    const char *v = (const char *)ev->data.scalar.value;
    char *field = (char *)cfg + f->off;
    bool b = false, big = false;
    int64_t i = 0;
    enum yval t = yaml_type(ev, &b, &i, &big);
    const char *what = t == Y_BOOL ? "bool" : t == Y_STR ? "string" : "number";
    bool is_str = f->kind == F_STR || f->kind == F_URLS || f->kind == F_STATE;

    if (t == Y_NULL)
        return 0;
    if (is_str && t == Y_STR) {
        if (strlen(v) >= f->size) {
            msg(err, err_len, "the value of %s is longer than %zu bytes", f->name, f->size - 1);
            return -1;
        }
        memcpy(field, v, strlen(v) + 1);
        return 0;
    }
    if (f->kind == F_BOOL && t == Y_BOOL) {
        *(bool *)field = b;
        return 0;
    }
    if (t == Y_INT && !big && f->kind == F_I64) {
        *(int64_t *)field = i;
        return 0;
    }
    if (t == Y_INT && !big && i >= 0 && f->kind == F_U64) {
        *(uint64_t *)field = (uint64_t)i;
        return 0;
    }
    if (t == Y_INT && !big && i >= 0 && i <= 0xffffffff && f->kind == F_UINT) {
        *(unsigned *)field = (unsigned)i;
        return 0;
    }
    if (t == Y_INT && big && f->kind == F_U64 && parse_u64(v, (uint64_t *)field) == 0)
        return 0;
    /* Go names the number only when it is one the field could hold. */
    if ((t == Y_INT || t == Y_FLOAT) && !is_str && f->kind != F_BOOL)
        msg(err, err_len,
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal number "
            "%s into Go struct field configYAML.%s of type %s",
            v, f->name, f->gotype);
    else
        msg(err, err_len,
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal %s into "
            "Go struct field configYAML.%s of type %s",
            what, f->name, f->gotype);
    return -1;
}

/* The flag a top-level key names: exact, else case-insensitive (Go's
 * encoding/json). NULL: a key etcd ignores (or one cetcd does not know). */
static const struct flag *find_key(const char *key)
{
    size_t i;

    for (i = 0; i < N_FLAGS; i++) {
        if (flags[i].gotype != NULL && strcmp(flags[i].name, key) == 0)
            return &flags[i];
    }
    for (i = 0; i < N_FLAGS; i++) {
        if (flags[i].gotype != NULL && strcasecmp(flags[i].name, key) == 0)
            return &flags[i];
    }
    return NULL;
}

/* go-yaml's message for a libyaml error: "yaml: [line N: ]problem". */
static void yaml_error(const yaml_parser_t *p, char *err, size_t err_len)
{
    size_t line = 0;

    if (p->problem_mark.line != 0)
        line = p->problem_mark.line + (p->error == YAML_SCANNER_ERROR ? 1 : 0);
    else if (p->context_mark.line != 0)
        line = p->context_mark.line;
    if (line != 0)
        msg(err, err_len, "error converting YAML to JSON: yaml: line %zu: %s", line,
            p->problem != NULL ? p->problem : "unknown problem parsing YAML content");
    else
        msg(err, err_len, "error converting YAML to JSON: yaml: %s",
            p->problem != NULL ? p->problem : "unknown problem parsing YAML content");
}

/* Walks the first document's events. State: depth (bounded), and at depth
 * 1 whether the next scalar is a key or a value. */
struct walk {
    int depth;
    bool want_key;
    const struct flag *key;
    bool key_known;
    bool done;
};

static int walk_event(struct config *cfg, struct load *ld, struct walk *w, const yaml_event_t *ev,
                      char *err, size_t err_len)
{
    static const char *const kinds[] = {"array", "object"};
    const char *v;

    switch (ev->type) {
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_START_EVENT:
        return 0;
    case YAML_STREAM_END_EVENT:
    case YAML_DOCUMENT_END_EVENT:
        w->done = true;
        return 0;
    case YAML_ALIAS_EVENT:
        msg(err, err_len, "YAML aliases are not supported in a cetcd configuration file");
        return -1;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (++w->depth > CONFIG_YAML_DEPTH) {
            msg(err, err_len, "configuration file nested deeper than %d levels", CONFIG_YAML_DEPTH);
            return -1;
        }
        if (w->depth == 1 && ev->type == YAML_SEQUENCE_START_EVENT) {
            msg(err, err_len,
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array "
                "into Go value of type embed.configYAML");
            return -1;
        }
        if (w->depth == 2 && w->want_key) {
            msg(err, err_len, "error converting YAML to JSON: a key must be a scalar");
            return -1;
        }
        if (w->depth == 2 && w->key != NULL) {
            msg(err, err_len,
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal %s "
                "into Go struct field configYAML.%s of type %s",
                kinds[ev->type == YAML_MAPPING_START_EVENT], w->key->name, w->key->gotype);
            return -1;
        }
        w->want_key = true;
        return 0;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        w->depth--;
        w->want_key = true;
        return 0;
    case YAML_SCALAR_EVENT:
        break;
    default:
        return 0;
    }
    v = (const char *)ev->data.scalar.value;
    if (w->depth == 0) {
        if (v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0)
            return 0;
        msg(err, err_len,
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string "
            "into Go value of type embed.configYAML");
        return -1;
    }
    if (w->depth != 1)
        return 0;
    if (w->want_key) {
        w->key = find_key(v);
        w->want_key = false;
        return 0;
    }
    w->want_key = true;
    if (w->key == NULL)
        return 0;
    if (set_from_yaml(cfg, w->key, ev, err, err_len) != 0)
        return -1;
    ld->set[w->key - flags] = true;
    return 0;
}

/* Reads path (at most CONFIG_FILE_MAX bytes) into a NUL-terminated
 * buffer the caller frees. NULL with err. */
static char *read_file(const char *path, size_t *len, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (f == NULL) {
        /* Go spells errno messages in lower case. */
        char e[128];
        snprintf(e, sizeof(e), "%s", strerror(errno));
        e[0] = (char)tolower((unsigned char)e[0]);
        msg(err, err_len, "open %s: %s", path, e);
        return NULL;
    }
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        msg(err, err_len, "out of memory");
        return NULL;
    }
    n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f) || n > CONFIG_FILE_MAX) {
        if (ferror(f))
            msg(err, err_len, "read %s: %s", path, strerror(errno));
        else
            msg(err, err_len, "%s: configuration file larger than %d bytes", path, CONFIG_FILE_MAX);
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* One pass over the first document of buf: with cfg NULL only its syntax
 * (etcd reads the whole YAML before it looks at any value), else the
 * values too. 0 or -1 (err). */
static int parse_pass(struct config *cfg, struct load *ld, const char *buf, size_t len, char *err,
                      size_t err_len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct walk w = {.want_key = true};
    int rv = 0;

    if (!yaml_parser_initialize(&parser)) {
        msg(err, err_len, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    while (rv == 0 && !w.done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            yaml_error(&parser, err, err_len);
            rv = -1;
            break;
        }
        if (cfg != NULL)
            rv = walk_event(cfg, ld, &w, &ev, err, err_len);
        else if (ev.type == YAML_DOCUMENT_END_EVENT || ev.type == YAML_STREAM_END_EVENT)
            w.done = true;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return rv;
}

static int load_file(struct config *cfg, struct load *ld, const char *path, char *err,
                     size_t err_len)
{
    size_t len = 0;
    char *buf = read_file(path, &len, err, err_len);
    int rv;

    if (buf == NULL)
        return -1;
    rv = parse_pass(NULL, ld, buf, len, err, err_len);
    if (rv == 0)
        rv = parse_pass(cfg, ld, buf, len, err, err_len);
    free(buf);
    return rv;
}

/* After a file: its URL lists must parse, as etcd checks them there. */
static int check_file_urls(const struct config *cfg, char *err, size_t err_len)
{
    /* etcd names advertise-client-urls "advertise-peer-urls" here. */
    static const struct {
        size_t off;
        const char *what;
    } lists[] = {
        {offsetof(struct config, listen_peer_urls), "listen-peer-urls"},
        {offsetof(struct config, listen_client_urls), "listen-client-urls"},
        {offsetof(struct config, initial_advertise_peer_urls), "initial-advertise-peer-urls"},
        {offsetof(struct config, advertise_client_urls), "advertise-peer-urls"},
    };
    char why[512];
    size_t i;

    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        if (members_urls_check((const char *)cfg + lists[i].off, MEMBERS_URL_ANY, why,
                               sizeof(why)) < 0) {
            msg(err, err_len, "unexpected error setting up %s: %s", lists[i].what, why);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ checks --- */

/* etcd's Validate() for the settings cfg has, in etcd's order. 0, or -1
 * with the reason (the caller wraps it as etcd does). */
static int check_etcd(const struct config *cfg, char *err, size_t err_len)
{
    char why[512];

    if (members_urls_check(cfg->listen_peer_urls, MEMBERS_URL_BIND, err, err_len) < 0 ||
        members_urls_check(cfg->listen_client_urls, MEMBERS_URL_BIND, err, err_len) < 0)
        return -1;
    if (members_urls_check(cfg->initial_advertise_peer_urls, MEMBERS_URL_ADVERTISE, why,
                           sizeof(why)) < 0) {
        msg(err, err_len, "--initial-advertise-peer-urls \"%s\" must be \"host:port\" (%s)",
            cfg->initial_advertise_peer_urls, why);
        return -1;
    }
    if (members_urls_check(cfg->advertise_client_urls, MEMBERS_URL_ADVERTISE, why, sizeof(why)) <
        0) {
        msg(err, err_len, "--advertise-client-urls \"%s\" must be \"host:port\" (%s)",
            cfg->advertise_client_urls, why);
        return -1;
    }
    if (strcmp(cfg->initial_cluster_state, "new") != 0 &&
        strcmp(cfg->initial_cluster_state, "existing") != 0) {
        msg(err, err_len, "unexpected clusterState \"%s\"", cfg->initial_cluster_state);
        return -1;
    }
    if (cfg->heartbeat_interval_ms == 0) {
        msg(err, err_len, "--heartbeat-interval must be >0 (set to 0ms)");
        return -1;
    }
    if (cfg->election_timeout_ms == 0) {
        msg(err, err_len, "--election-timeout must be >0 (set to 0ms)");
        return -1;
    }
    /* Written so it cannot overflow: 5 * heartbeat > election. */
    if (cfg->heartbeat_interval_ms > cfg->election_timeout_ms / 5 ||
        cfg->heartbeat_interval_ms * 5 > cfg->election_timeout_ms) {
        msg(err, err_len,
            "--election-timeout[%llums] should be at least as 5 times as "
            "--heartbeat-interval[%llums]",
            (unsigned long long)cfg->election_timeout_ms,
            (unsigned long long)cfg->heartbeat_interval_ms);
        return -1;
    }
    if (cfg->election_timeout_ms > CONFIG_ELECTION_MAX_MS) {
        msg(err, err_len,
            "--election-timeout[%llums] is too long, and should be set less than %dms",
            (unsigned long long)cfg->election_timeout_ms, CONFIG_ELECTION_MAX_MS);
        return -1;
    }
    if (cfg->wal_dir[0] != '\0') {
        msg(err, err_len,
            "--wal-dir %s: cetcd keeps its WAL under --data-dir (<data-dir>/member/wal) "
            "and does not support a separate WAL directory",
            cfg->wal_dir);
        return -1;
    }
    return 0;
}

/* cetcd's default --initial-cluster: <name>=<url> for each advertised peer
 * URL. 0, or -1 if it does not fit. */
static int default_cluster(struct config *cfg)
{
    char list[CONFIG_STR_MAX];
    const char *urls[CONFIG_URLS_MAX];
    unsigned i, n;
    size_t at = 0;
    int w;

    memcpy(list, cfg->initial_advertise_peer_urls, sizeof(list));
    n = config_split_urls(list, urls, CONFIG_URLS_MAX);
    cfg->initial_cluster[0] = '\0';
    for (i = 0; i < n; i++) {
        w = snprintf(cfg->initial_cluster + at, sizeof(cfg->initial_cluster) - at, "%s%s=%s",
                     i > 0 ? "," : "", cfg->name, urls[i]);
        if (w < 0 || (size_t)w >= sizeof(cfg->initial_cluster) - at)
            return -1;
        at += (size_t)w;
    }
    return 0;
}

/* cetcd's own checks (exit 2, as before), etcd's (exit 1), then the
 * initial cluster (exit 1). 0 or an enum config_err. */
static int check(struct config *cfg, char *err, size_t err_len)
{
    static struct members ms;
    char why[1024];

    if (cfg->data_dir[0] == '\0')
        snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s.etcd", cfg->name);
    if (cfg->shards == 0 || cfg->shards > 64) {
        msg(err, err_len, "invalid value \"%u\" for flag -shards: must be 1 to 64", cfg->shards);
        return CONFIG_BAD_FLAG;
    }
    if (check_etcd(cfg, why, sizeof(why)) != 0) {
        msg(err, err_len, "error verifying flags, %s. See 'cetcd --help'.", why);
        return CONFIG_BAD_CONFIG;
    }
    if (strcmp(cfg->auto_compaction_mode, "periodic") != 0 &&
        strcmp(cfg->auto_compaction_mode, "revision") != 0) {
        msg(err, err_len, "unknown auto-compaction-mode %s", cfg->auto_compaction_mode);
        return CONFIG_BAD_FLAG;
    }
    if (config_retention(cfg, NULL, NULL) != 0) {
        msg(err, err_len, "invalid auto-compaction-retention %s", cfg->auto_compaction_retention);
        return CONFIG_BAD_FLAG;
    }
    if (cfg->max_request_bytes == 0 || cfg->max_request_bytes > (64u << 20)) {
        msg(err, err_len, "invalid value \"%llu\" for flag -max-request-bytes: must be 1 to %u",
            (unsigned long long)cfg->max_request_bytes, 64u << 20);
        return CONFIG_BAD_FLAG;
    }
    if (!cfg->initial_cluster_given && default_cluster(cfg) != 0) {
        msg(err, err_len, "--initial-advertise-peer-urls too long for --initial-cluster");
        return CONFIG_BAD_CONFIG;
    }
    if (members_bootstrap(&ms, cfg->name, cfg->initial_cluster, cfg->initial_advertise_peer_urls,
                          cfg->initial_cluster_token,
                          strcmp(cfg->initial_cluster_state, "existing") == 0, err, err_len) != 0)
        return CONFIG_BAD_CONFIG;
    return 0;
}

static int flag_index(const char *name)
{
    return (int)(find_flag(name, strlen(name)) - flags);
}

/* Settings from the file only: flags and variables are ignored, as etcd
 * does; --help and --version still count. */
static int config_from_file(struct config *cfg, struct load *ld, const char *path, char *err,
                            size_t err_len)
{
    char why[1024];
    char file[CONFIG_STR_MAX];
    bool help = cfg->help, version = cfg->version;

    snprintf(file, sizeof(file), "%s", path);
    defaults(cfg);
    memset(ld, 0, sizeof(*ld));
    cfg->help = help;
    cfg->version = version;
    snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", file);
    if (help || version)
        return 0;
    if (load_file(cfg, ld, file, why, sizeof(why)) != 0) {
        msg(err, err_len, "error verifying flags, %s. See 'cetcd --help'.", why);
        return CONFIG_BAD_CONFIG;
    }
    if (cfg->initial_cluster_state[0] == '\0')
        snprintf(cfg->initial_cluster_state, sizeof(cfg->initial_cluster_state), "new");
    if (check_file_urls(cfg, err, err_len) != 0)
        return CONFIG_BAD_CONFIG;
    return 0;
}

int config_load(struct config *cfg, int argc, char **argv, char *err, size_t err_len)
{
    static struct load ld;
    const char *file;
    int i;
    int rv;

    defaults(cfg);
    memset(&ld, 0, sizeof(ld));
    /* Flags end at the first non-flag argument or after "--", as in Go;
     * etcd takes no positional arguments, so anything left is an error. */
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (load_arg(cfg, &ld, argc, argv, &i, err, err_len) != 0)
            return CONFIG_BAD_FLAG;
    }
    if (i < argc) {
        msg(err, err_len, "error verifying flags, '%s' is not a valid flag. See 'cetcd --help'.",
            argv[i]);
        return CONFIG_BAD_ARGS;
    }
    file = cfg->config_file[0] != '\0' ? cfg->config_file : getenv("ETCD_CONFIG_FILE");
    if (file != NULL && file[0] != '\0')
        rv = config_from_file(cfg, &ld, file, err, err_len);
    else
        rv = load_env(cfg, &ld, err, err_len);
    if (rv != 0 || cfg->help || cfg->version)
        return rv;
    cfg->initial_cluster_given = ld.set[flag_index("initial-cluster")];
    rv = check(cfg, err, err_len);
    if (rv == 0 && cfg->config_file[0] != '\0')
        fprintf(stderr,
                "cetcd: loading server configuration from \"%s\"; other configuration command "
                "line flags and environment variables are ignored\n",
                cfg->config_file);
    return rv;
}

void config_usage(void)
{
    char env[64];
    size_t i;

    printf("Usage:\n\n  cetcd [flags]\n\n"
           "  An etcd-compatible key-value store; flags and ETCD_* variables as etcd's.\n\n"
           "  cetcd --config-file\n"
           "    Path to the server configuration file (YAML, etcd's keys). Note that if a\n"
           "    configuration file is provided, other command line flags and environment\n"
           "    variables will be ignored.\n\n");
    for (i = 0; i < N_FLAGS; i++) {
        env_name(&flags[i], env, sizeof(env));
        if (flags[i].def != NULL)
            printf("  --%s '%s'\n", flags[i].name, flags[i].def);
        else
            printf("  --%s%s\n", flags[i].name, flags[i].kind == F_BOOL ? "" : " value");
        printf("      %s (env %s)\n", flags[i].usage, env);
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
