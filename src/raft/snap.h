/*
 * snap — snapshot files under data-dir/member/snap (internal to the raft
 * module's users: the server writes and reads them through this API).
 *
 * A snapshot file covers the Raft log up to (term, index) and holds typed
 * sections of opaque bytes, each with a CRC32C, closed by a trailer that
 * counts them and checks the whole: a file cut short, extended or damaged
 * anywhere is detected. What the sections mean is the caller's business
 * (src/server/snapshot.c); the exact byte layout is documented at the top
 * of snap.c, where it is implemented.
 *
 * Names are <16 hex term>-<16 hex index>.snap, so they sort oldest to
 * newest. A file is written as <name>.tmp, fsynced, renamed to <name>, and
 * the directory fsynced: a snapshot either exists whole or not at all.
 * Directories are created 0700, files 0600.
 *
 * Both directions stream through one buffer of SNAP_BUF_BYTES, so the
 * memory used does not depend on the size of the state: a writer takes the
 * section's bytes in pieces of any size, a reader hands them out in pieces
 * no larger than the caller's buffer.
 *
 * Threading: all I/O is synchronous, meant for a background thread. A
 * writer or reader is used by one thread at a time; the functions on
 * directories may run on any thread, but snap_purge() and
 * snap_dir_prepare() must not run while a writer is open on the same
 * directory (they remove *.tmp files).
 *
 * Errors: functions return 0 (or a count) on success and -1 on failure.
 * Those taking `err` put a one-line message there; a writer or reader
 * keeps its own, read with snap_write_error() / snap_read_error(). A
 * writer's failure is sticky: every later call fails too.
 */
#ifndef CETCD_SNAP_H
#define CETCD_SNAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* I/O buffer of a writer or reader. */
#define SNAP_BUF_BYTES (1u << 20)
/* Most sections one file may hold. */
#define SNAP_SECTIONS_MAX 4096u
/* 16 hex + '-' + 16 hex + ".snap" */
#define SNAP_NAME_BYTES 38
/* How many snapshot files a purge keeps by default. */
#define SNAP_KEEP_DEFAULT 5u

struct snap_writer;
struct snap_reader;

/* One snapshot file in a directory listing. */
struct snap_file {
    uint64_t term;
    uint64_t index;
    char name[SNAP_NAME_BYTES + 1];
};

/* The file name of a snapshot at (term, index). */
void snap_file_name(char out[SNAP_NAME_BYTES + 1], uint64_t term, uint64_t index);

/* Creates `dir` and its missing parents (0700; each one made is fsynced in
 * its parent) and removes leftover *.snap.tmp files of an interrupted
 * write. */
int snap_dir_prepare(const char *dir, char *err, size_t err_len);

/* Lists the snapshot files of `dir`, newest first (by term, then index,
 * as the names sort), ignoring every other name (*.tmp included). Sets
 * *out to a malloc'ed array (NULL if none) the caller frees, and *n. */
int snap_list(const char *dir, struct snap_file **out, size_t *n, char *err, size_t err_len);

/* Removes every snapshot file but the newest `keep`, and leftover *.tmp
 * files; fsyncs the directory if it removed anything. Returns the number
 * of files removed. Does not look inside the files. */
int snap_purge(const char *dir, size_t keep, char *err, size_t err_len);

/* Reads a whole file and checks every part of it; sets the point it
 * covers. */
int snap_validate(const char *path, uint64_t *term, uint64_t *index, char *err, size_t err_len);

/* ---- writing ---------------------------------------------------------- */

/* Creates <dir>/<name>.tmp (0600) for a snapshot at (term, index). */
int snap_write_begin(struct snap_writer **out, const char *dir, uint64_t term, uint64_t index,
                     char *err, size_t err_len);

/* Opens section `type` (any value but 0); its length is whatever the
 * snap_write() calls until snap_write_section_end() add up to. */
int snap_write_section_begin(struct snap_writer *w, uint32_t type);
int snap_write(struct snap_writer *w, const void *buf, size_t len);
int snap_write_section_end(struct snap_writer *w);

/* Writes the trailer, fsyncs the file, renames it to its final name and
 * fsyncs the directory. Frees w in every case (on failure the temporary
 * file is removed). *bytes (may be NULL) gets the file's size. */
int snap_write_commit(struct snap_writer *w, uint64_t *bytes, char *err, size_t err_len);

/* Gives up: removes the temporary file and frees w. */
void snap_write_abort(struct snap_writer *w);

const char *snap_write_error(const struct snap_writer *w);

/* ---- reading ---------------------------------------------------------- */

/* Opens a snapshot file and checks its header (and, if the file is named
 * like a snapshot, that the name matches it). */
int snap_read_open(struct snap_reader **out, const char *path, char *err, size_t err_len);
void snap_read_close(struct snap_reader *r);

/* The point the file covers, from its header. */
void snap_read_point(const struct snap_reader *r, uint64_t *term, uint64_t *index);

/* Moves to the next section (skipping, but still checking, what is left
 * of the current one). Returns 1 and sets *type and *len, or 0 once the
 * trailer has been read and the whole file checked, or -1. */
int snap_read_section(struct snap_reader *r, uint32_t *type, uint64_t *len);

/* Reads up to `cap` (> 0) bytes of the current section's payload. Returns
 * the count (> 0), 0 at the end of the section once its CRC has checked,
 * or -1. Bytes handed out are not known to be intact until the section's
 * end has been reached (and the file's, for the file as a whole). */
ssize_t snap_read(struct snap_reader *r, void *buf, size_t cap);

/* Reads exactly `len` bytes of the current section's payload, or fails
 * ("section ends early"). */
int snap_read_full(struct snap_reader *r, void *buf, size_t len);

const char *snap_read_error(const struct snap_reader *r);

#endif
