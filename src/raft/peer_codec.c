/*
 * peer_codec.c — struct raft_msg (and the members exchange, and Removed) <->
 * cetcdpeer.Frame (proto/raftpb.proto), with the 4-byte length prefix of
 * the peer wire format (peer.c). Pure functions, any thread.
 *
 * Encoding packs straight into the frame buffer: entry payloads are copied
 * once, from raft's memory into the frame. Decoding validates everything
 * raft relies on (message type, membership sizes, entry types) so a bad
 * frame is refused here and never reaches raft_step.
 */
#include "peer_int.h"

#include <stdlib.h>
#include <string.h>

#include "le.h"

static struct peer_frame *frame_pack(const Cetcdpeer__Frame *f, uint8_t kind,
                                     size_t frame_bytes_max)
{
    size_t size = cetcdpeer__frame__get_packed_size(f);
    struct peer_frame *fr;

    if (size > UINT32_MAX - PEER_LEN_BYTES || size > frame_bytes_max)
        return NULL;
    fr = malloc(sizeof(*fr) + PEER_LEN_BYTES + size);
    if (fr == NULL)
        return NULL;
    fr->next = NULL;
    fr->kind = kind;
    fr->len = PEER_LEN_BYTES + size;
    put_le32(fr->data, (uint32_t)size);
    cetcdpeer__frame__pack(f, fr->data + PEER_LEN_BYTES);
    return fr;
}

struct peer_frame *peer_encode_hello(uint64_t cluster_id, uint64_t from, uint64_t to)
{
    Cetcdpeer__Frame f = CETCDPEER__FRAME__INIT;
    Cetcdpeer__Hello h = CETCDPEER__HELLO__INIT;

    h.cluster_id = cluster_id;
    h.from = from;
    h.to = to;
    f.body_case = CETCDPEER__FRAME__BODY_HELLO;
    f.hello = &h;
    return frame_pack(&f, PEER_FRAME_HELLO, SIZE_MAX);
}

static void fill_entry(Cetcdpeer__Entry *pe, const struct raft_entry *e)
{
    cetcdpeer__entry__init(pe);
    pe->term = e->term;
    pe->index = e->index;
    pe->type = e->type;
    pe->data.len = e->len;
    /* protobuf-c only reads it when packing */
    pe->data.data = (uint8_t *)(uintptr_t)e->data;
}

struct peer_frame *peer_encode_msg(const struct raft_msg *m, size_t frame_bytes_max)
{
    Cetcdpeer__Frame f = CETCDPEER__FRAME__INIT;
    Cetcdpeer__Message pm = CETCDPEER__MESSAGE__INIT;
    Cetcdpeer__SnapMeta sm = CETCDPEER__SNAP_META__INIT;
    Cetcdpeer__Entry *ents = NULL;
    Cetcdpeer__Entry **ptrs = NULL;
    struct peer_frame *fr;
    uint64_t voters[RAFT_MEMBERS_MAX];
    uint64_t learners[RAFT_MEMBERS_MAX];
    uint32_t i;

    if (m->snap.conf.n_voters > RAFT_MEMBERS_MAX || m->snap.conf.n_learners > RAFT_MEMBERS_MAX)
        return NULL;
    if (m->n_entries > 0) {
        ents = malloc(m->n_entries * (sizeof(*ents) + sizeof(*ptrs)));
        if (ents == NULL)
            return NULL;
        ptrs = (Cetcdpeer__Entry **)(ents + m->n_entries);
        for (i = 0; i < m->n_entries; i++) {
            fill_entry(&ents[i], &m->entries[i]);
            ptrs[i] = &ents[i];
        }
    }
    pm.type = m->type;
    pm.reject = m->reject;
    pm.from = m->from;
    pm.to = m->to;
    pm.term = m->term;
    pm.log_term = m->log_term;
    pm.index = m->index;
    pm.commit = m->commit;
    pm.reject_hint = m->reject_hint;
    pm.ctx = m->ctx;
    pm.n_entries = m->n_entries;
    pm.entries = ptrs;
    if (m->type == RAFT_MSG_SNAP) {
        memcpy(voters, m->snap.conf.voters, sizeof(voters));
        memcpy(learners, m->snap.conf.learners, sizeof(learners));
        sm.index = m->snap.index;
        sm.term = m->snap.term;
        sm.n_voters = m->snap.conf.n_voters;
        sm.voters = voters;
        sm.n_learners = m->snap.conf.n_learners;
        sm.learners = learners;
        pm.snap = &sm;
    }
    f.body_case = CETCDPEER__FRAME__BODY_MESSAGE;
    f.message = &pm;
    fr = frame_pack(&f, m->type == RAFT_MSG_SNAP ? PEER_FRAME_SNAP_MSG : PEER_FRAME_MSG,
                    frame_bytes_max);
    free(ents);
    return fr;
}

struct peer_frame *peer_encode_chunk(uint64_t offset, const uint8_t *data, size_t len, bool last,
                                     size_t frame_bytes_max)
{
    Cetcdpeer__Frame f = CETCDPEER__FRAME__INIT;
    Cetcdpeer__SnapChunk c = CETCDPEER__SNAP_CHUNK__INIT;

    c.offset = offset;
    c.data.len = len;
    c.data.data = (uint8_t *)(uintptr_t)data;
    c.last = last;
    f.body_case = CETCDPEER__FRAME__BODY_SNAP_CHUNK;
    f.snap_chunk = &c;
    return frame_pack(&f, PEER_FRAME_CHUNK, frame_bytes_max);
}

struct peer_frame *peer_encode_members_request(void)
{
    Cetcdpeer__Frame f = CETCDPEER__FRAME__INIT;
    Cetcdpeer__MembersRequest r = CETCDPEER__MEMBERS_REQUEST__INIT;

    f.body_case = CETCDPEER__FRAME__BODY_MEMBERS_REQUEST;
    f.members_request = &r;
    return frame_pack(&f, PEER_FRAME_MEMBERS_REQUEST, SIZE_MAX);
}

struct peer_frame *peer_encode_members_response(uint64_t cluster_id, const uint8_t *blob,
                                                size_t len)
{
    Cetcdpeer__Frame f = CETCDPEER__FRAME__INIT;
    Cetcdpeer__MembersResponse r = CETCDPEER__MEMBERS_RESPONSE__INIT;

    if (len > PEER_MEMBERS_BYTES_MAX)
        return NULL;
    r.cluster_id = cluster_id;
    r.members.len = len;
    r.members.data = (uint8_t *)(uintptr_t)blob;
    f.body_case = CETCDPEER__FRAME__BODY_MEMBERS_RESPONSE;
    f.members_response = &r;
    return frame_pack(&f, PEER_FRAME_MEMBERS_RESPONSE, PEER_MEMBERS_FRAME_MAX);
}

struct peer_frame *peer_encode_removed(void)
{
    Cetcdpeer__Frame f = CETCDPEER__FRAME__INIT;
    Cetcdpeer__Removed r = CETCDPEER__REMOVED__INIT;

    f.body_case = CETCDPEER__FRAME__BODY_REMOVED;
    f.removed = &r;
    return frame_pack(&f, PEER_FRAME_REMOVED, PEER_WATCH_FRAME_MAX);
}

Cetcdpeer__Frame *peer_decode(const uint8_t *p, size_t len)
{
    Cetcdpeer__Frame *f = cetcdpeer__frame__unpack(NULL, len, p);

    if (f == NULL)
        return NULL;
    if ((f->body_case == CETCDPEER__FRAME__BODY_HELLO && f->hello != NULL) ||
        (f->body_case == CETCDPEER__FRAME__BODY_MESSAGE && f->message != NULL) ||
        (f->body_case == CETCDPEER__FRAME__BODY_SNAP_CHUNK && f->snap_chunk != NULL) ||
        (f->body_case == CETCDPEER__FRAME__BODY_MEMBERS_REQUEST && f->members_request != NULL) ||
        (f->body_case == CETCDPEER__FRAME__BODY_MEMBERS_RESPONSE && f->members_response != NULL) ||
        (f->body_case == CETCDPEER__FRAME__BODY_REMOVED && f->removed != NULL))
        return f;
    cetcdpeer__frame__free_unpacked(f, NULL);
    return NULL;
}

static int snap_from_pb(const Cetcdpeer__SnapMeta *sm, struct raft_snap_meta *s)
{
    if (sm == NULL)
        return 0;
    if (sm->n_voters > RAFT_MEMBERS_MAX || sm->n_learners > RAFT_MEMBERS_MAX)
        return -1;
    s->index = sm->index;
    s->term = sm->term;
    s->conf.n_voters = (uint32_t)sm->n_voters;
    s->conf.n_learners = (uint32_t)sm->n_learners;
    if (sm->n_voters > 0)
        memcpy(s->conf.voters, sm->voters, sm->n_voters * sizeof(uint64_t));
    if (sm->n_learners > 0)
        memcpy(s->conf.learners, sm->learners, sm->n_learners * sizeof(uint64_t));
    return 0;
}

int peer_msg_from_pb(const Cetcdpeer__Message *pm, struct raft_msg *m, struct raft_entry *ents)
{
    size_t i;

    memset(m, 0, sizeof(*m));
    if (pm->type < RAFT_MSG_APP || pm->type > RAFT_MSG_TRANSFER || pm->n_entries > UINT32_MAX)
        return -1;
    for (i = 0; i < pm->n_entries; i++) {
        const Cetcdpeer__Entry *pe = pm->entries[i];
        if (pe->type > UINT8_MAX || pe->data.len > RAFT_PROPOSAL_BYTES)
            return -1;
        ents[i].term = pe->term;
        ents[i].index = pe->index;
        ents[i].type = (uint8_t)pe->type;
        ents[i].len = (uint32_t)pe->data.len;
        ents[i].data = pe->data.data;
    }
    m->type = (uint8_t)pm->type;
    m->reject = pm->reject;
    m->from = pm->from;
    m->to = pm->to;
    m->term = pm->term;
    m->log_term = pm->log_term;
    m->index = pm->index;
    m->commit = pm->commit;
    m->reject_hint = pm->reject_hint;
    m->ctx = pm->ctx;
    m->entries = pm->n_entries > 0 ? ents : NULL;
    m->n_entries = (uint32_t)pm->n_entries;
    return snap_from_pb(pm->snap, &m->snap);
}
