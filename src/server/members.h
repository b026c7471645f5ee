/*
 * members.h — the initial membership of a cluster, as etcd bootstraps it
 * from --initial-cluster, --initial-advertise-peer-urls and
 * --initial-cluster-token (internal to the server module).
 *
 * The member and cluster IDs are etcd's: a member's ID is the first 8 bytes
 * (big-endian) of the SHA-1 of its sorted peer URLs concatenated, then the
 * cluster token (then, for a member added at run time, the Unix time in
 * decimal); the cluster ID is the first 8 bytes of the SHA-1 of the sorted
 * member IDs, each as 8 big-endian bytes. So cetcd and etcd started with the
 * same flags report the same IDs.
 */
#ifndef CETCD_MEMBERS_H
#define CETCD_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#define MEMBERS_MAX      32  /* members in --initial-cluster */
#define MEMBERS_URLS_MAX 8   /* peer (or client) URLs of one member */
#define MEMBERS_URL_MAX  256 /* bytes of one URL, with its NUL */
#define MEMBERS_NAME_MAX 256 /* bytes of one name, with its NUL */

struct members_member {
    char name[MEMBERS_NAME_MAX];
    /* Normalized as etcd prints them (scheme lower-cased), sorted. */
    char peer_urls[MEMBERS_URLS_MAX][MEMBERS_URL_MAX];
    unsigned n_peer_urls;
    /* Known only for this member at bootstrap (members_set_client_urls). */
    char client_urls[MEMBERS_URLS_MAX][MEMBERS_URL_MAX];
    unsigned n_client_urls;
    uint64_t id;
};

struct members {
    struct members_member m[MEMBERS_MAX]; /* in --initial-cluster order */
    unsigned n;
    uint64_t cluster_id;
};

/* What a URL list is used for, which decides etcd's extra host checks. */
enum members_url_use {
    MEMBERS_URL_ANY,       /* syntax only */
    MEMBERS_URL_BIND,      /* listen-*-urls: the host is an IP or "localhost" */
    MEMBERS_URL_ADVERTISE, /* advertise URLs: the host is not empty */
};

/* Checks one URL as etcd's types.NewURLs does (surrounding spaces are
 * trimmed; scheme http, https, unix or unixs; "host:port"; no path) and
 * writes its normalized form to out. 0, or -1 with etcd's message in err. */
int members_url_parse(const char *in, char *out, size_t out_len, char *err, size_t err_len);

/* Checks a comma-separated URL list: every URL parses (etcd's message,
 * without any prefix) and, for BIND and ADVERTISE, the host rule holds
 * (message "expected IP in URL for binding (URL)" or "unexpected empty host
 * (URL)"). The count must be 1 to MEMBERS_URLS_MAX. Returns -1 (syntax) or
 * -2 (host rule) with the message in err, else the count. */
int members_urls_check(const char *list, enum members_url_use use, char *err, size_t err_len);

/* Parses --initial-cluster ("name=url,name=url,..."; a name may appear
 * several times to give several URLs) into ms, without IDs. 0, or -1 with
 * etcd's URL message in err (the caller adds "error setting up initial
 * cluster: "). */
int members_parse(struct members *ms, const char *initial_cluster, char *err, size_t err_len);

/* etcd's bootstrap checks for member `name` advertising `apurls` (a
 * comma-separated list): it is in the cluster, its URLs match, no URL is
 * given twice. With existing set (--initial-cluster-state existing) only
 * the first and last, as etcd does when joining. 0, or -1 with etcd's
 * message in err. */
int members_verify(const struct members *ms, const char *name, const char *apurls, int existing,
                   char *err, size_t err_len);

/* Fills every member's ID from its peer URLs and token, and the cluster ID.
 * 0, or -1 (two members with one ID, or an ID of 0) with a message. */
int members_assign_ids(struct members *ms, const char *token, char *err, size_t err_len);

/* etcd's member ID for peer URLs (any order), token, and unix_time (NULL
 * at bootstrap, the time of the request for a member added later). */
uint64_t members_member_id(const char *const *urls, unsigned n, const char *token,
                           const int64_t *unix_time);

/* etcd's cluster ID for n member IDs (any order). */
uint64_t members_cluster_id(const uint64_t *ids, unsigned n);

/* All of the above, in etcd's order: parse, verify, IDs. 0 or -1 (err). */
int members_bootstrap(struct members *ms, const char *name, const char *initial_cluster,
                      const char *apurls, const char *token, int existing, char *err,
                      size_t err_len);

/* Sets a member's client URLs from a comma-separated list (as given; they
 * were checked by members_urls_check). 0, or -1 if one is too long. */
int members_set_client_urls(struct members_member *m, const char *list);

/* The member called name, or NULL. */
struct members_member *members_find_self(struct members *ms, const char *name);

/* The member with that ID, or NULL. */
struct members_member *members_find_id(struct members *ms, uint64_t id);

#endif
