/*
 * ident.c — the member's identity file, data-dir/member/ident.
 *
 * FORMAT (integers little-endian)
 *
 *   OFFSET  SIZE  MEANING
 *        0     8  magic "CETCDID1"
 *        8     8  member ID
 *       16     8  cluster ID
 *       24     4  n: bytes of the membership that follows (<= 1 MiB)
 *       28     n  the membership: an etcdserverpb.MemberListResponse with
 *                 only its members (src/server/roster.c)
 *     28+n     4  CRC32C of bytes [0, 28+n)
 *
 * The file is written once, whole, before anything else of the member is:
 * a temp file, fsync, rename over the name, fsync of the directory, so it
 * exists complete or not at all. A file that fails its checks stops the
 * start (the IDs cannot be guessed again: a joined member's came from the
 * cluster).
 */
#include "ident.h"

#include "crc32c.h"
#include "le.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDENT_MAGIC      "CETCDID1"
#define IDENT_HDR_BYTES  28u
#define IDENT_PATH_BYTES 4096u

static int ident_path(const char *data_dir, const char *suffix, char *buf, size_t len)
{
    return (size_t)snprintf(buf, len, "%s/member/ident%s", data_dir, suffix) < len ? 0 : -1;
}

static uint8_t *read_file(const char *path, size_t *len, bool *missing)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint8_t *buf;

    *missing = fd < 0 && errno == ENOENT;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || st.st_size < IDENT_HDR_BYTES + 4 ||
        st.st_size > (off_t)(IDENT_HDR_BYTES + 4 + IDENT_ROSTER_BYTES_MAX) ||
        (buf = malloc((size_t)st.st_size)) == NULL) {
        close(fd);
        return NULL;
    }
    if (read(fd, buf, (size_t)st.st_size) != st.st_size) {
        free(buf);
        close(fd);
        return NULL;
    }
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

int ident_load(const char *data_dir, struct ident *out, bool *found, char *err, size_t err_len)
{
    char path[IDENT_PATH_BYTES];
    bool missing = false;
    size_t len = 0, n;
    uint8_t *buf;

    *found = false;
    memset(out, 0, sizeof(*out));
    if (ident_path(data_dir, "", path, sizeof(path)) != 0) {
        snprintf(err, err_len, "data dir path too long: %s", data_dir);
        return -1;
    }
    buf = read_file(path, &len, &missing);
    if (buf == NULL) {
        if (missing)
            return 0;
        snprintf(err, err_len, "%s: cannot read it, or its size is wrong", path);
        return -1;
    }
    n = get_le32(buf + 24);
    if (memcmp(buf, IDENT_MAGIC, 8) != 0 || IDENT_HDR_BYTES + n + 4 != len ||
        get_le32(buf + IDENT_HDR_BYTES + n) != crc32c_extend(0, buf, IDENT_HDR_BYTES + n)) {
        free(buf);
        snprintf(err, err_len, "%s: damaged (bad magic, length or checksum)", path);
        return -1;
    }
    out->member_id = get_le64(buf + 8);
    out->cluster_id = get_le64(buf + 16);
    out->roster_len = n;
    out->roster = malloc(n != 0 ? n : 1);
    if (out->roster == NULL) {
        free(buf);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    memcpy(out->roster, buf + IDENT_HDR_BYTES, n);
    free(buf);
    *found = true;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rv;

    if (fd < 0)
        return -1;
    rv = fsync(fd);
    close(fd);
    return rv;
}

int ident_save(const char *data_dir, const struct ident *id, char *err, size_t err_len)
{
    char path[IDENT_PATH_BYTES], tmp[IDENT_PATH_BYTES], dir[IDENT_PATH_BYTES];
    size_t len = IDENT_HDR_BYTES + id->roster_len + 4;
    uint8_t *buf;
    int fd, rv = -1;

    if (id->roster_len > IDENT_ROSTER_BYTES_MAX || ident_path(data_dir, "", path, sizeof(path)) ||
        ident_path(data_dir, ".tmp", tmp, sizeof(tmp)) ||
        (size_t)snprintf(dir, sizeof(dir), "%s/member", data_dir) >= sizeof(dir)) {
        snprintf(err, err_len, "cannot save the member's identity under %s", data_dir);
        return -1;
    }
    if ((mkdir(data_dir, 0700) != 0 && errno != EEXIST) ||
        (mkdir(dir, 0700) != 0 && errno != EEXIST)) {
        snprintf(err, err_len, "cannot create data dir %s: %s", dir, strerror(errno));
        return -1;
    }
    buf = malloc(len);
    if (buf == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    memcpy(buf, IDENT_MAGIC, 8);
    put_le64(buf + 8, id->member_id);
    put_le64(buf + 16, id->cluster_id);
    put_le32(buf + 24, (uint32_t)id->roster_len);
    if (id->roster_len != 0)
        memcpy(buf + IDENT_HDR_BYTES, id->roster, id->roster_len);
    put_le32(buf + IDENT_HDR_BYTES + id->roster_len,
             crc32c_extend(0, buf, IDENT_HDR_BYTES + id->roster_len));
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0 && write_all(fd, buf, len) == 0 && fsync(fd) == 0)
        rv = 0;
    if (fd >= 0)
        close(fd);
    free(buf);
    if (rv == 0 && (rename(tmp, path) != 0 || fsync_dir(dir) != 0))
        rv = -1;
    if (rv != 0) {
        snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    return rv;
}
