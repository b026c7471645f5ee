/*
 * fileio.h — small file and message helpers the raft module's on-disk
 * formats (wal.c, snap.c) share (internal header).
 */
#ifndef CETCD_RAFT_FILEIO_H
#define CETCD_RAFT_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/* Formats a one-line message into err (nothing if err is NULL). */
void fio_seterr(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes all of buf at off, looping over short writes and EINTR. 0, or -1
 * with errno set (EIO for a write that made no progress). */
int fio_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/* Parses exactly 16 lower-case hex digits. 0, or -1. */
int fio_hex16(const char *s, uint64_t *out);

#endif
