/*
 * roster.h — the cluster's members as the replicated state knows them:
 * ID, name, peer and client URLs, learner or voter (internal to the server
 * module).
 *
 * The roster starts from the initial cluster (names and peer URLs from
 * --initial-cluster; client URLs of the others unknown), changes when a
 * membership entry is applied, and when a member publishes its name and
 * client URLs through the log after it starts (as etcd members do): until
 * then etcd lists a member with an empty name and no client URLs. It is
 * saved in every snapshot (the CLUSTER section) as an
 * etcdserverpb.MemberListResponse protobuf with only its members set.
 *
 * Thread: the core's only.
 */
#ifndef CETCD_ROSTER_H
#define CETCD_ROSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"

#define ROSTER_URLS_MAX   8
#define ROSTER_URL_BYTES  256
#define ROSTER_NAME_BYTES 256

struct roster_member {
    uint64_t id;
    char name[ROSTER_NAME_BYTES];
    char peer_urls[ROSTER_URLS_MAX][ROSTER_URL_BYTES];
    unsigned n_peer_urls;
    char client_urls[ROSTER_URLS_MAX][ROSTER_URL_BYTES];
    unsigned n_client_urls;
    bool learner;
};

#define ROSTER_REMOVED_MAX 64 /* removed IDs remembered (the newest) */

struct roster {
    struct roster_member m[RAFT_MEMBERS_MAX]; /* sorted by ID */
    unsigned n;
    /* Members removed from the cluster, oldest first: told so if they
     * come back (as etcd answers them 410 Gone). */
    uint64_t removed[ROSTER_REMOVED_MAX];
    unsigned n_removed;
};

/* Adds a member (or replaces the peer URLs and role of one with that ID).
 * 0, or -1 (full, or a URL/name too long). */
int roster_add(struct roster *r, uint64_t id, const char *name, const char *const *peer_urls,
               unsigned n_peer_urls, bool learner);
/* Removes member id and remembers it as removed. */
void roster_remove(struct roster *r, uint64_t id);
struct roster_member *roster_find(struct roster *r, uint64_t id);

/* The Raft membership the roster describes. */
void roster_conf(const struct roster *r, struct raft_conf *out);

/* Encodes the roster; malloc'd, NULL if out of memory. decode: 0, or -1
 * if malformed or too many members. The format is at the top of
 * roster.c. */
uint8_t *roster_encode(const struct roster *r, size_t *len);
int roster_decode(struct roster *r, const uint8_t *buf, size_t len);

/* A member's published attributes (entry data after the type byte): an
 * etcdserverpb.Member with ID, name and clientURLs. encode: malloc'd with
 * one byte of headroom at the front for the entry type (*len counts it),
 * NULL if out of memory. apply: 0, or -1 if malformed (unknown IDs are
 * ignored: the member may have been removed since). */
uint8_t *roster_attrs_encode(const struct roster_member *self, uint8_t type, size_t *len);
int roster_attrs_apply(struct roster *r, const uint8_t *buf, size_t len);

/* The MemberAdd answer body: the member added (ID, peer URLs, learner)
 * and the list after the change. NULL if out of memory or id unknown. */
uint8_t *roster_member_add_reply(const struct roster *r, uint64_t id, uint64_t cluster_id,
                                 uint64_t member_id, uint64_t raft_term, size_t *len);

/* Voters that have published their attributes (etcd's "started"),
 * leaving out `except` (0: none). */
unsigned roster_started_voters(const struct roster *r, uint64_t except);
unsigned roster_voters(const struct roster *r);
unsigned roster_learners(const struct roster *r);

/* Does any member other than `except` use one of these peer URLs? */
bool roster_peer_url_used(const struct roster *r, const char *const *urls, unsigned n,
                          uint64_t except);

/* The MemberList answer body (header filled by the caller's values). Its
 * encoding is also MemberRemove's, MemberUpdate's and MemberPromote's
 * (the same fields under the same numbers). */
uint8_t *roster_member_list(const struct roster *r, uint64_t cluster_id, uint64_t member_id,
                            uint64_t raft_term, size_t *len);

#endif
