/*
 * ident.h — who this member is, kept in the data dir from its first start
 * on: its member ID, its cluster's ID and the membership it started with
 * (internal to the server module).
 *
 * etcd decides the IDs once, when a member bootstraps (from
 * --initial-cluster and the token for a new cluster; from the running
 * cluster, which assigned the ID at `member add`, for one that joins) and
 * ignores those flags on later starts. cetcd does the same by saving them
 * here before the first entry is written; the membership saved is the
 * starting point until a snapshot carries a newer one.
 */
#ifndef CETCD_IDENT_H
#define CETCD_IDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDENT_ROSTER_BYTES_MAX (1u << 20)

struct ident {
    uint64_t member_id;
    uint64_t cluster_id;
    uint8_t *roster; /* a roster_encode() blob, malloc'd */
    size_t roster_len;
};

/* Reads data_dir/member/ident. 0 with *found false if there is none, 0
 * with *found true and *out filled (free out->roster), or -1 with err if
 * it is damaged. */
int ident_load(const char *data_dir, struct ident *out, bool *found, char *err, size_t err_len);

/* Writes it (creating data_dir/member 0700 if needed): temp file, fsync,
 * rename, fsync of the directory. 0 or -1 with err. */
int ident_save(const char *data_dir, const struct ident *id, char *err, size_t err_len);

#endif
