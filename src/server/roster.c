/*
 * roster.c — the replicated member list; its encodings are etcd's own
 * protobuf messages (etcdserverpb.Member, MemberListResponse), so a
 * snapshot's CLUSTER section and a published-attributes entry need no
 * format of their own.
 *
 * ENCODING of a whole roster (a snapshot's CLUSTER section, the ident
 * file; integers little-endian):
 *
 *   OFFSET  SIZE  MEANING
 *        0     4  p: bytes of the member list
 *        4     p  etcdserverpb.MemberListResponse, members only
 *      4+p     4  r: removed IDs that follow (<= ROSTER_REMOVED_MAX)
 *      8+p   8*r  the removed IDs, oldest first
 *
 * Invariants: m[0..n) sorted by ID, IDs unique and non-zero, n <=
 * RAFT_MEMBERS_MAX; every string NUL-terminated within its array;
 * removed[0..n_removed) holds no current member.
 * Thread: the core's only.
 */
#include "roster.h"

#include "le.h"
#include "rpc.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);

    if (n >= cap)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

static int copy_urls(char dst[][ROSTER_URL_BYTES], unsigned *n, const char *const *src,
                     unsigned n_src)
{
    if (n_src > ROSTER_URLS_MAX)
        return -1;
    for (unsigned i = 0; i < n_src; i++)
        if (copy_str(dst[i], ROSTER_URL_BYTES, src[i]) != 0)
            return -1;
    *n = n_src;
    return 0;
}

struct roster_member *roster_find(struct roster *r, uint64_t id)
{
    for (unsigned i = 0; i < r->n; i++)
        if (r->m[i].id == id)
            return &r->m[i];
    return NULL;
}

int roster_add(struct roster *r, uint64_t id, const char *name, const char *const *peer_urls,
               unsigned n_peer_urls, bool learner)
{
    struct roster_member *m = roster_find(r, id);
    struct roster_member tmp;
    unsigned i;

    if (id == 0)
        return -1;
    tmp = m != NULL ? *m : (struct roster_member){.id = id};
    if (name != NULL && copy_str(tmp.name, sizeof(tmp.name), name) != 0)
        return -1;
    if (copy_urls(tmp.peer_urls, &tmp.n_peer_urls, peer_urls, n_peer_urls) != 0)
        return -1;
    tmp.learner = learner;
    if (m != NULL) {
        *m = tmp;
        return 0;
    }
    if (r->n == RAFT_MEMBERS_MAX)
        return -1;
    for (i = r->n; i > 0 && r->m[i - 1].id > id; i--)
        r->m[i] = r->m[i - 1];
    r->m[i] = tmp;
    r->n++;
    return 0;
}

void roster_remove(struct roster *r, uint64_t id)
{
    unsigned i, j = 0;

    for (i = 0; i < r->n; i++)
        if (r->m[i].id != id)
            r->m[j++] = r->m[i];
    r->n = j;
    for (i = 0; i < r->n_removed; i++)
        if (r->removed[i] == id)
            return;
    if (r->n_removed == ROSTER_REMOVED_MAX) {
        memmove(r->removed, r->removed + 1, (ROSTER_REMOVED_MAX - 1) * sizeof(r->removed[0]));
        r->n_removed--;
    }
    r->removed[r->n_removed++] = id;
}

void roster_conf(const struct roster *r, struct raft_conf *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < r->n; i++) {
        if (r->m[i].learner)
            out->learners[out->n_learners++] = r->m[i].id;
        else
            out->voters[out->n_voters++] = r->m[i].id;
    }
}

/* Points a protobuf Member at a roster member (no copies). */
static void to_pb(const struct roster_member *m, Etcdserverpb__Member *pb, char **peer,
                  char **client)
{
    etcdserverpb__member__init(pb);
    pb->id = m->id;
    pb->name = (char *)m->name;
    for (unsigned i = 0; i < m->n_peer_urls; i++)
        peer[i] = (char *)m->peer_urls[i];
    for (unsigned i = 0; i < m->n_client_urls; i++)
        client[i] = (char *)m->client_urls[i];
    pb->peerurls = peer;
    pb->n_peerurls = m->n_peer_urls;
    pb->clienturls = client;
    pb->n_clienturls = m->n_client_urls;
    pb->islearner = m->learner;
}

/* Scratch for a whole list of protobuf views. */
struct pb_list {
    Etcdserverpb__Member v[RAFT_MEMBERS_MAX];
    Etcdserverpb__Member *p[RAFT_MEMBERS_MAX];
    char *peer[RAFT_MEMBERS_MAX][ROSTER_URLS_MAX];
    char *client[RAFT_MEMBERS_MAX][ROSTER_URLS_MAX];
};

static void pb_list_fill(const struct roster *r, struct pb_list *l)
{
    for (unsigned i = 0; i < r->n; i++) {
        to_pb(&r->m[i], &l->v[i], l->peer[i], l->client[i]);
        l->p[i] = &l->v[i];
    }
}

static uint8_t *pack_list(const struct roster *r, Etcdserverpb__ResponseHeader *hdr, size_t *len)
{
    Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    struct pb_list *l = malloc(sizeof(*l));
    uint8_t *buf;

    if (l == NULL)
        return NULL;
    pb_list_fill(r, l);
    resp.header = hdr;
    resp.members = l->p;
    resp.n_members = r->n;
    *len = etcdserverpb__member_list_response__get_packed_size(&resp);
    buf = malloc(*len != 0 ? *len : 1);
    if (buf != NULL)
        etcdserverpb__member_list_response__pack(&resp, buf);
    free(l);
    return buf;
}

uint8_t *roster_encode(const struct roster *r, size_t *len)
{
    size_t p = 0;
    uint8_t *pb = pack_list(r, NULL, &p);
    uint8_t *buf;

    if (pb == NULL)
        return NULL;
    *len = 4 + p + 4 + 8 * (size_t)r->n_removed;
    buf = malloc(*len);
    if (buf != NULL) {
        put_le32(buf, (uint32_t)p);
        memcpy(buf + 4, pb, p);
        put_le32(buf + 4 + p, r->n_removed);
        for (unsigned i = 0; i < r->n_removed; i++)
            put_le64(buf + 8 + p + 8 * i, r->removed[i]);
    }
    free(pb);
    return buf;
}

static int from_pb(struct roster_member *m, const Etcdserverpb__Member *pb)
{
    memset(m, 0, sizeof(*m));
    m->id = pb->id;
    m->learner = pb->islearner;
    if (m->id == 0 || copy_str(m->name, sizeof(m->name), pb->name) != 0 ||
        copy_urls(m->peer_urls, &m->n_peer_urls, (const char *const *)pb->peerurls,
                  (unsigned)pb->n_peerurls) != 0 ||
        pb->n_clienturls > ROSTER_URLS_MAX ||
        copy_urls(m->client_urls, &m->n_client_urls, (const char *const *)pb->clienturls,
                  (unsigned)pb->n_clienturls) != 0)
        return -1;
    return 0;
}

static int decode_members(struct roster *r, const uint8_t *buf, size_t len)
{
    Etcdserverpb__MemberListResponse *resp =
        etcdserverpb__member_list_response__unpack(NULL, len, buf);
    int rv = 0;

    if (resp == NULL)
        return -1;
    if (resp->n_members > RAFT_MEMBERS_MAX)
        rv = -1;
    for (size_t i = 0; rv == 0 && i < resp->n_members; i++) {
        struct roster_member m;
        if (from_pb(&m, resp->members[i]) != 0 || roster_find(r, m.id) != NULL ||
            roster_add(r, m.id, m.name, NULL, 0, m.learner) != 0)
            rv = -1;
        else
            *roster_find(r, m.id) = m;
    }
    etcdserverpb__member_list_response__free_unpacked(resp, NULL);
    return rv;
}

int roster_decode(struct roster *r, const uint8_t *buf, size_t len)
{
    struct roster tmp = {0};
    size_t p, n;

    if (len < 8 || (p = get_le32(buf)) > len - 8)
        return -1;
    n = get_le32(buf + 4 + p);
    if (n > ROSTER_REMOVED_MAX || len != 8 + p + 8 * n || decode_members(&tmp, buf + 4, p) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        tmp.removed[i] = get_le64(buf + 8 + p + 8 * i);
    tmp.n_removed = (unsigned)n;
    *r = tmp;
    return 0;
}

uint8_t *roster_attrs_encode(const struct roster_member *self, uint8_t type, size_t *len)
{
    Etcdserverpb__Member pb;
    char *peer[ROSTER_URLS_MAX], *client[ROSTER_URLS_MAX];
    uint8_t *buf;
    size_t n;

    to_pb(self, &pb, peer, client);
    pb.n_peerurls = 0; /* attributes only: peer URLs change by membership entries */
    pb.islearner = 0;
    n = etcdserverpb__member__get_packed_size(&pb);
    buf = malloc(1 + n);
    if (buf == NULL)
        return NULL;
    buf[0] = type;
    etcdserverpb__member__pack(&pb, buf + 1);
    *len = 1 + n;
    return buf;
}

int roster_attrs_apply(struct roster *r, const uint8_t *buf, size_t len)
{
    Etcdserverpb__Member *pb = etcdserverpb__member__unpack(NULL, len, buf);
    struct roster_member *m;
    struct roster_member tmp;
    int rv = 0;

    if (pb == NULL)
        return -1;
    m = roster_find(r, pb->id);
    if (m != NULL) {
        tmp = *m;
        if (copy_str(tmp.name, sizeof(tmp.name), pb->name) != 0 ||
            copy_urls(tmp.client_urls, &tmp.n_client_urls, (const char *const *)pb->clienturls,
                      pb->n_clienturls > ROSTER_URLS_MAX ? ROSTER_URLS_MAX + 1
                                                         : (unsigned)pb->n_clienturls) != 0)
            rv = -1;
        else
            *m = tmp;
    }
    etcdserverpb__member__free_unpacked(pb, NULL);
    return rv;
}

uint8_t *roster_member_list(const struct roster *r, uint64_t cluster_id, uint64_t member_id,
                            uint64_t raft_term, size_t *len)
{
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;

    hdr.cluster_id = cluster_id;
    hdr.member_id = member_id;
    hdr.raft_term = raft_term;
    /* etcd's Cluster service fills no revision in its headers. */
    return pack_list(r, &hdr, len);
}

uint8_t *roster_member_add_reply(const struct roster *r, uint64_t id, uint64_t cluster_id,
                                 uint64_t member_id, uint64_t raft_term, size_t *len)
{
    Etcdserverpb__MemberAddResponse resp = ETCDSERVERPB__MEMBER_ADD_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    Etcdserverpb__Member added;
    char *peer[ROSTER_URLS_MAX];
    const struct roster_member *m = NULL;
    struct pb_list *l;
    uint8_t *buf;

    for (unsigned i = 0; i < r->n; i++)
        if (r->m[i].id == id)
            m = &r->m[i];
    if (m == NULL || (l = malloc(sizeof(*l))) == NULL)
        return NULL;
    pb_list_fill(r, l);
    /* The added member as etcd reports it: ID, peer URLs, learner. */
    etcdserverpb__member__init(&added);
    added.id = m->id;
    for (unsigned i = 0; i < m->n_peer_urls; i++)
        peer[i] = (char *)m->peer_urls[i];
    added.peerurls = peer;
    added.n_peerurls = m->n_peer_urls;
    added.islearner = m->learner;
    hdr.cluster_id = cluster_id;
    hdr.member_id = member_id;
    hdr.raft_term = raft_term;
    resp.header = &hdr;
    resp.member = &added;
    resp.members = l->p;
    resp.n_members = r->n;
    *len = etcdserverpb__member_add_response__get_packed_size(&resp);
    buf = malloc(*len != 0 ? *len : 1);
    if (buf != NULL)
        etcdserverpb__member_add_response__pack(&resp, buf);
    free(l);
    return buf;
}

unsigned roster_started_voters(const struct roster *r, uint64_t except)
{
    unsigned n = 0;

    for (unsigned i = 0; i < r->n; i++)
        if (!r->m[i].learner && r->m[i].id != except && r->m[i].name[0] != '\0')
            n++;
    return n;
}

unsigned roster_voters(const struct roster *r)
{
    unsigned n = 0;

    for (unsigned i = 0; i < r->n; i++)
        n += !r->m[i].learner;
    return n;
}

unsigned roster_learners(const struct roster *r)
{
    return r->n - roster_voters(r);
}

bool roster_peer_url_used(const struct roster *r, const char *const *urls, unsigned n,
                          uint64_t except)
{
    for (unsigned i = 0; i < r->n; i++) {
        if (r->m[i].id == except)
            continue;
        for (unsigned j = 0; j < r->m[i].n_peer_urls; j++)
            for (unsigned k = 0; k < n; k++)
                if (strcmp(r->m[i].peer_urls[j], urls[k]) == 0)
                    return true;
    }
    return false;
}
