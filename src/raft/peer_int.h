/*
 * peer_int.h — what peer.c and peer_codec.c share: the frame type and the
 * codec between struct raft_msg and the wire frames. Not part of the
 * module's interface.
 */
#ifndef CETCD_PEER_INT_H
#define CETCD_PEER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer.h"
#include "raft.h"
#include "raftpb.pb-c.h"

#define PEER_LEN_BYTES 4 /* the little-endian length before each frame */

enum peer_frame_kind {
    PEER_FRAME_HELLO = 0,
    PEER_FRAME_MSG = 1,
    PEER_FRAME_CHUNK = 2,
    PEER_FRAME_SNAP_MSG = 3, /* the SNAP message ending a snapshot stream */
    PEER_FRAME_MEMBERS_REQUEST = 4,
    PEER_FRAME_MEMBERS_RESPONSE = 5,
    PEER_FRAME_REMOVED = 6,
};

/* The largest MembersResponse Frame: the blob plus its cluster ID, tags
 * and lengths (well under 32 bytes). */
#define PEER_MEMBERS_FRAME_MAX (PEER_MEMBERS_BYTES_MAX + 32)

/* The largest frame (N, without the length prefix) a dialer reads on a
 * Raft connection: room for a Removed Frame (2 bytes) and no more, so an
 * acceptor cannot make a dialer buffer anything. */
#define PEER_WATCH_FRAME_MAX 12

/* One encoded frame, length prefix included, in a member's send queue. */
struct peer_frame {
    struct peer_frame *next;
    size_t len;   /* bytes in data: PEER_LEN_BYTES + the Frame */
    uint8_t kind; /* enum peer_frame_kind */
    uint8_t data[];
};

/* Each returns a malloc'd frame, or NULL (out of memory, or the frame
 * would exceed frame_bytes_max). */
struct peer_frame *peer_encode_hello(uint64_t cluster_id, uint64_t from, uint64_t to);
struct peer_frame *peer_encode_msg(const struct raft_msg *m, size_t frame_bytes_max);
struct peer_frame *peer_encode_chunk(uint64_t offset, const uint8_t *data, size_t len, bool last,
                                     size_t frame_bytes_max);
struct peer_frame *peer_encode_members_request(void);
/* NULL also when len > PEER_MEMBERS_BYTES_MAX. */
struct peer_frame *peer_encode_members_response(uint64_t cluster_id, const uint8_t *blob,
                                                size_t len);
struct peer_frame *peer_encode_removed(void);

/* Unpacks one Frame (free with cetcdpeer__frame__free_unpacked), NULL if
 * it does not parse or carries no body. */
Cetcdpeer__Frame *peer_decode(const uint8_t *p, size_t len);

/* Fills m from pm, entries pointing into pm, using ents (room for
 * pm->n_entries). 0, or -1 if pm is not a valid raft message. */
int peer_msg_from_pb(const Cetcdpeer__Message *pm, struct raft_msg *m, struct raft_entry *ents);

#endif
