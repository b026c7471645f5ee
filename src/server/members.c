/*
 * members.c — the initial membership: etcd's --initial-cluster syntax, its
 * URL rules, its bootstrap checks and its member and cluster IDs.
 *
 * Runs once at start-up on the main thread; every structure is bounded
 * (MEMBERS_MAX members of MEMBERS_URLS_MAX URLs of MEMBERS_URL_MAX bytes)
 * and anything larger is refused with a message, never truncated. Messages
 * are etcd 3.4's, word for word, so a wrong flag reads the same in both.
 * Invariant after members_parse: every member has 1..MEMBERS_URLS_MAX
 * normalized peer URLs, sorted by byte order, and a distinct name.
 *
 * The one blocking call is getaddrinfo(), used only when the advertised
 * peer URLs and the --initial-cluster entry differ as strings and name a
 * host that is neither an IP nor "localhost" (etcd resolves them then too).
 */
#include "members.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* snprintf for messages: a message that does not fit is cut, on purpose. */
static void __attribute__((format(printf, 3, 4))) msg(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* One URL list, split and normalized. */
struct url_list {
    char u[MEMBERS_URLS_MAX][MEMBERS_URL_MAX];
    unsigned n;
};

/* ------------------------------------------------------------ URLs --- */

/* Go's net.SplitHostPort: host and port of "host:port" or "[v6]:port" into
 * the buffers (MEMBERS_URL_MAX each). 0 or -1. */
static int split_host_port(const char *hp, char *host, char *port)
{
    const char *colon;
    const char *hs = hp;
    size_t hl;

    if (hp[0] == '[') {
        const char *end = strchr(hp, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        hs = hp + 1;
        hl = (size_t)(end - hs);
        colon = end + 1;
        if (memchr(hs, '[', hl) != NULL || strchr(colon + 1, ']') != NULL)
            return -1;
    } else {
        colon = strrchr(hp, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - hp);
        if (memchr(hp, ':', hl) != NULL || memchr(hp, '[', hl) != NULL ||
            memchr(hp, ']', hl) != NULL)
            return -1;
    }
    if (strchr(colon + 1, '[') != NULL || strchr(colon + 1, ']') != NULL)
        return -1;
    if (hl >= MEMBERS_URL_MAX || strlen(colon + 1) >= MEMBERS_URL_MAX)
        return -1;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    snprintf(port, MEMBERS_URL_MAX, "%s", colon + 1);
    return 0;
}

/* The scheme of s (Go's url.getscheme): its length before ':', or 0. */
static size_t scheme_len(const char *s)
{
    size_t i;

    if (!isalpha((unsigned char)s[0]))
        return 0;
    for (i = 1; s[i] != '\0' && s[i] != ':'; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '-' && s[i] != '.')
            return 0;
    }
    return s[i] == ':' ? i : 0;
}

static bool scheme_ok(const char *s, size_t n)
{
    static const char *const ok[] = {"http", "https", "unix", "unixs"};
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strlen(ok[i]) == n && strncasecmp(s, ok[i], n) == 0)
            return true;
    }
    return false;
}

/* The authority of a normalized URL ("scheme://host:port..."): its
 * host:port part (after any user info) into hp. */
static void url_host_port(const char *url, char *hp)
{
    const char *a = strstr(url, "://");
    const char *at;
    size_t n;

    a = a != NULL ? a + 3 : url + strlen(url);
    n = strcspn(a, "/?#");
    at = memrchr(a, '@', n);
    if (at != NULL) {
        n -= (size_t)(at + 1 - a);
        a = at + 1;
    }
    if (n >= MEMBERS_URL_MAX)
        n = MEMBERS_URL_MAX - 1;
    memcpy(hp, a, n);
    hp[n] = '\0';
}

int members_url_parse(const char *in, char *out, size_t out_len, char *err, size_t err_len)
{
    char t[MEMBERS_URL_MAX];
    char hp[MEMBERS_URL_MAX], host[MEMBERS_URL_MAX], port[MEMBERS_URL_MAX];
    const char *rest;
    size_t sl, n, i;

    while (isspace((unsigned char)*in))
        in++;
    n = strlen(in);
    while (n > 0 && isspace((unsigned char)in[n - 1]))
        n--;
    if (n >= sizeof(t) || n >= out_len) {
        msg(err, err_len, "URL longer than %d bytes: %.*s", MEMBERS_URL_MAX - 1, 64, in);
        return -1;
    }
    memcpy(t, in, n);
    t[n] = '\0';
    sl = scheme_len(t);
    if (!scheme_ok(t, sl)) {
        msg(err, err_len, "URL scheme must be http, https, unix, or unixs: %s", t);
        return -1;
    }
    for (i = 0; i < sl; i++)
        t[i] = (char)tolower((unsigned char)t[i]);
    rest = t + sl + 1;
    if (strncmp(rest, "//", 2) == 0) {
        rest += 2;
        rest += strcspn(rest, "/?#");
    }
    url_host_port(t, hp);
    if (strncmp(t + sl + 1, "//", 2) != 0 || split_host_port(hp, host, port) != 0) {
        msg(err, err_len, "URL address does not have the form \"host:port\": %s", t);
        return -1;
    }
    if (rest[0] == '/') {
        msg(err, err_len, "URL must not contain a path: %s", t);
        return -1;
    }
    memcpy(out, t, n + 1);
    return 0;
}

/* Splits list at every ',' (an empty piece is an empty URL, as in Go) and
 * normalizes each URL into ul. 0 or -1 (err). */
static int url_list_parse(const char *list, struct url_list *ul, char *err, size_t err_len)
{
    char piece[MEMBERS_URL_MAX];
    const char *p = list;

    ul->n = 0;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (ul->n == MEMBERS_URLS_MAX) {
            msg(err, err_len, "more than %d URLs in %.*s", MEMBERS_URLS_MAX, 200, list);
            return -1;
        }
        if (n >= sizeof(piece)) {
            msg(err, err_len, "URL longer than %d bytes: %.*s", MEMBERS_URL_MAX - 1, 64, p);
            return -1;
        }
        memcpy(piece, p, n);
        piece[n] = '\0';
        if (members_url_parse(piece, ul->u[ul->n], MEMBERS_URL_MAX, err, err_len) != 0)
            return -1;
        ul->n++;
        if (p[n] == '\0')
            return 0;
        p += n + 1;
    }
}

static bool is_ip(const char *host)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static bool is_unix(const char *url)
{
    return strncmp(url, "unix://", 7) == 0 || strncmp(url, "unixs://", 8) == 0;
}

int members_urls_check(const char *list, enum members_url_use use, char *err, size_t err_len)
{
    static struct url_list ul;
    char hp[MEMBERS_URL_MAX], host[MEMBERS_URL_MAX], port[MEMBERS_URL_MAX];
    unsigned i;

    if (url_list_parse(list, &ul, err, err_len) != 0)
        return -1;
    for (i = 0; i < ul.n; i++) {
        url_host_port(ul.u[i], hp);
        if (split_host_port(hp, host, port) != 0)
            return -1; /* url_list_parse checked it */
        if (use == MEMBERS_URL_BIND && !is_unix(ul.u[i]) && strcmp(host, "localhost") != 0 &&
            !is_ip(host)) {
            msg(err, err_len, "expected IP in URL for binding (%s)", ul.u[i]);
            return -2;
        }
        if (use == MEMBERS_URL_ADVERTISE && host[0] == '\0') {
            msg(err, err_len, "unexpected empty host (%s)", ul.u[i]);
            return -2;
        }
    }
    return (int)ul.n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* ---------------------------------------------------- --initial-cluster --- */

static struct members_member *find_or_add(struct members *ms, const char *name, size_t len,
                                          char *err, size_t err_len)
{
    unsigned i;

    for (i = 0; i < ms->n; i++) {
        if (strlen(ms->m[i].name) == len && memcmp(ms->m[i].name, name, len) == 0)
            return &ms->m[i];
    }
    if (len >= MEMBERS_NAME_MAX) {
        msg(err, err_len, "member name longer than %d bytes: %.*s", MEMBERS_NAME_MAX - 1, 64, name);
        return NULL;
    }
    if (ms->n == MEMBERS_MAX) {
        msg(err, err_len, "more than %d members in the initial cluster", MEMBERS_MAX);
        return NULL;
    }
    memset(&ms->m[ms->n], 0, sizeof(ms->m[0]));
    memcpy(ms->m[ms->n].name, name, len);
    return &ms->m[ms->n++];
}

int members_parse(struct members *ms, const char *initial_cluster, char *err, size_t err_len)
{
    char url[MEMBERS_URL_MAX];
    const char *p = initial_cluster;
    unsigned i;

    ms->n = 0;
    ms->cluster_id = 0;
    /* etcd's URLsMap: "name=url" pieces; a piece without '=' is a name with
     * an empty URL; empty pieces are skipped. */
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        size_t name_len = eq != NULL ? (size_t)(eq - p) : n;
        size_t url_len = eq != NULL ? n - name_len - 1 : 0;
        struct members_member *m;

        if (n > 0) {
            m = find_or_add(ms, p, name_len, err, err_len);
            if (m == NULL)
                return -1;
            if (m->n_peer_urls == MEMBERS_URLS_MAX) {
                msg(err, err_len, "more than %d URLs for member %s", MEMBERS_URLS_MAX, m->name);
                return -1;
            }
            if (url_len >= sizeof(url)) {
                msg(err, err_len, "URL longer than %d bytes: %.*s", MEMBERS_URL_MAX - 1, 64,
                    eq + 1);
                return -1;
            }
            if (url_len > 0)
                memcpy(url, eq + 1, url_len);
            url[url_len] = '\0';
            if (members_url_parse(url, m->peer_urls[m->n_peer_urls], MEMBERS_URL_MAX, err,
                                  err_len) != 0)
                return -1;
            m->n_peer_urls++;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    for (i = 0; i < ms->n; i++)
        qsort(ms->m[i].peer_urls, ms->m[i].n_peer_urls, MEMBERS_URL_MAX, cmp_str);
    return 0;
}

/* ------------------------------------------------------------ checks --- */

/* Appends s to buf (size len) at *at; silently stops at the end. */
static void append(char *buf, size_t len, size_t *at, const char *s)
{
    int w;

    if (*at >= len)
        return;
    w = snprintf(buf + *at, len - *at, "%s", s);
    *at += w > 0 ? (size_t)w : 0;
}

/* Go's %q of a []string: ["a" "b"]. */
static void go_quote_list(char *buf, size_t len, char (*u)[MEMBERS_URL_MAX], unsigned n)
{
    size_t at = 0;
    unsigned i;

    append(buf, len, &at, "[");
    for (i = 0; i < n; i++) {
        append(buf, len, &at, i > 0 ? " \"" : "\"");
        append(buf, len, &at, u[i]);
        append(buf, len, &at, "\"");
    }
    append(buf, len, &at, "]");
}

/* A resolved form of a URL as etcd compares them: a host that is neither
 * an IP nor "localhost" is replaced by its first address. 0 or -1. */
static int resolve_url(const char *url, char *out, char *err, size_t err_len)
{
    char hp[MEMBERS_URL_MAX], host[MEMBERS_URL_MAX], port[MEMBERS_URL_MAX];
    char ip[INET6_ADDRSTRLEN];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    const char *a = strstr(url, "://") + 3;
    const void *addr;
    int rv;

    snprintf(out, MEMBERS_URL_MAX, "%s", url);
    url_host_port(url, hp);
    if (is_unix(url) || split_host_port(hp, host, port) != 0 || strcmp(host, "localhost") == 0 ||
        is_ip(host))
        return 0;
    rv = getaddrinfo(host, port, &hints, &ai);
    if (rv != 0 || ai == NULL) {
        msg(err, err_len, "failed to resolve \"%s\" (lookup %s: %s)", url, host, gai_strerror(rv));
        return -1;
    }
    if (ai->ai_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    else
        addr = &((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
    inet_ntop(ai->ai_family, addr, ip, sizeof(ip));
    msg(out, MEMBERS_URL_MAX, "%.*s%s%s%s:%s%s", (int)(a - url), url,
        ai->ai_family == AF_INET6 ? "[" : "", ip, ai->ai_family == AF_INET6 ? "]" : "", port,
        a + strcspn(a, "/?#"));
    freeaddrinfo(ai);
    return 0;
}

/* etcd's netutil.URLStringsEqual on two sorted lists: true if equal, else
 * false with the reason in why. */
static bool urls_equal(const struct url_list *a, const struct url_list *b, char *why,
                       size_t why_len)
{
    static struct url_list ra, rb;
    char qa[2048], qb[2048];
    unsigned i;

    if (a->n != b->n) {
        go_quote_list(qa, sizeof(qa), (char(*)[MEMBERS_URL_MAX])a->u, a->n);
        go_quote_list(qb, sizeof(qb), (char(*)[MEMBERS_URL_MAX])b->u, b->n);
        msg(why, why_len, "len(%s) != len(%s)", qa, qb);
        return false;
    }
    for (i = 0; i < a->n && strcmp(a->u[i], b->u[i]) == 0; i++)
        ;
    if (i == a->n)
        return true;
    ra.n = a->n;
    rb.n = b->n;
    for (i = 0; i < a->n; i++) {
        if (resolve_url(a->u[i], ra.u[i], why, why_len) != 0 ||
            resolve_url(b->u[i], rb.u[i], why, why_len) != 0)
            return false;
    }
    qsort(ra.u, ra.n, MEMBERS_URL_MAX, cmp_str);
    qsort(rb.u, rb.n, MEMBERS_URL_MAX, cmp_str);
    for (i = 0; i < ra.n; i++) {
        if (strcmp(ra.u[i], rb.u[i]) != 0) {
            msg(why, why_len, "resolved urls: \"%s\" != \"%s\"", ra.u[i], rb.u[i]);
            return false;
        }
    }
    return true;
}

static bool in_list(char (*u)[MEMBERS_URL_MAX], unsigned n, const char *s)
{
    unsigned i;

    for (i = 0; i < n; i++) {
        if (strcmp(u[i], s) == 0)
            return true;
    }
    return false;
}

/* etcd's advertiseMatchesCluster: self's --initial-cluster URLs against
 * its --initial-advertise-peer-urls (ap, sorted). */
static int advertise_matches(const struct members_member *self, struct url_list *ap, char *err,
                             size_t err_len)
{
    static struct url_list cl;
    char why[1024], miss[4096], ap_str[4096] = "", ap_plain[4096];
    size_t at = 0, ap_at = 0;
    unsigned i;

    memcpy(cl.u, self->peer_urls, sizeof(cl.u));
    cl.n = self->n_peer_urls;
    if (urls_equal(ap, &cl, why, sizeof(why)))
        return 0;
    for (i = 0; i < ap->n; i++) {
        append(ap_str, sizeof(ap_str), &ap_at, i > 0 ? "," : "");
        append(ap_str, sizeof(ap_str), &ap_at, ap->u[i]);
    }
    memcpy(ap_plain, ap_str, sizeof(ap_plain));
    miss[0] = '\0';
    for (i = 0; i < cl.n; i++) {
        if (in_list(ap->u, ap->n, cl.u[i]) || (i > 0 && strcmp(cl.u[i], cl.u[i - 1]) == 0))
            continue;
        append(miss, sizeof(miss), &at, at > 0 ? "," : "");
        append(miss, sizeof(miss), &at, self->name);
        append(miss, sizeof(miss), &at, "=");
        append(miss, sizeof(miss), &at, cl.u[i]);
    }
    if (at > 0) {
        msg(err, err_len,
            "--initial-cluster has %s but missing from --initial-advertise-peer-urls=%s (%s)", miss,
            ap_str, why);
        return -1;
    }
    for (i = 0; i < ap->n; i++) {
        if (in_list(cl.u, cl.n, ap->u[i]) || (i > 0 && strcmp(ap->u[i], ap->u[i - 1]) == 0))
            continue;
        append(miss, sizeof(miss), &at, at > 0 ? "," : "");
        append(miss, sizeof(miss), &at, ap->u[i]);
    }
    /* etcd prints the advertised URLs as a URLsMap here: name=url,... */
    ap_at = 0;
    for (i = 0; i < ap->n; i++) {
        append(ap_str, sizeof(ap_str), &ap_at, i > 0 ? "," : "");
        append(ap_str, sizeof(ap_str), &ap_at, self->name);
        append(ap_str, sizeof(ap_str), &ap_at, "=");
        append(ap_str, sizeof(ap_str), &ap_at, ap->u[i]);
    }
    if (at > 0) {
        msg(err, err_len,
            "--initial-advertise-peer-urls has %s but missing from --initial-cluster=%s", miss,
            ap_str);
        return -1;
    }
    msg(err, err_len, "failed to resolve %s to match --initial-cluster=%s (%s)", ap_plain, ap_str,
        why);
    return -1;
}

/* etcd's URLsMap.String(): every "name=url", sorted, joined by ','. */
static void members_string(const struct members *ms, char *buf, size_t len)
{
    static char pairs[MEMBERS_MAX * MEMBERS_URLS_MAX][MEMBERS_NAME_MAX + MEMBERS_URL_MAX];
    unsigned i, j, n = 0;
    size_t at = 0;

    for (i = 0; i < ms->n; i++) {
        for (j = 0; j < ms->m[i].n_peer_urls; j++)
            msg(pairs[n++], sizeof(pairs[0]), "%s=%s", ms->m[i].name, ms->m[i].peer_urls[j]);
    }
    qsort(pairs, n, sizeof(pairs[0]), cmp_str);
    buf[0] = '\0';
    for (i = 0; i < n; i++) {
        append(buf, len, &at, i > 0 ? "," : "");
        append(buf, len, &at, pairs[i]);
    }
}

static bool has_duplicate_url(const struct members *ms)
{
    unsigned i, j, k, l;

    for (i = 0; i < ms->n; i++) {
        for (j = 0; j < ms->m[i].n_peer_urls; j++) {
            for (k = i; k < ms->n; k++) {
                for (l = k == i ? j + 1 : 0; l < ms->m[k].n_peer_urls; l++) {
                    if (strcmp(ms->m[i].peer_urls[j], ms->m[k].peer_urls[l]) == 0)
                        return true;
                }
            }
        }
    }
    return false;
}

int members_verify(const struct members *ms, const char *name, const char *apurls, int existing,
                   char *err, size_t err_len)
{
    static struct url_list ap;
    static char str[MEMBERS_MAX * MEMBERS_URLS_MAX * (MEMBERS_NAME_MAX + MEMBERS_URL_MAX)];
    const struct members_member *self = members_find_self((struct members *)ms, name);

    if (self == NULL) {
        msg(err, err_len, "couldn't find local name \"%s\" in the initial cluster configuration",
            name);
        return -1;
    }
    if (!existing) {
        if (url_list_parse(apurls, &ap, err, err_len) != 0)
            return -1;
        qsort(ap.u, ap.n, MEMBERS_URL_MAX, cmp_str);
        if (advertise_matches(self, &ap, err, err_len) != 0)
            return -1;
    }
    members_string(ms, str, sizeof(str));
    if (has_duplicate_url(ms)) {
        msg(err, err_len, "initial cluster %s has duplicate url", str);
        return -1;
    }
    if (str[0] == '\0') {
        msg(err, err_len, "initial cluster unset and no discovery URL found");
        return -1;
    }
    return 0;
}

/* --------------------------------------------------------------- IDs --- */

static uint64_t be64(const unsigned char *b)
{
    uint64_t x = 0;
    int i;

    for (i = 0; i < 8; i++)
        x = (x << 8) | b[i];
    return x;
}

uint64_t members_member_id(const char *const *urls, unsigned n, const char *token,
                           const int64_t *unix_time)
{
    const char *sorted[MEMBERS_URLS_MAX];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    char t[32];
    EVP_MD_CTX *ctx;
    unsigned i, j;

    if (n > MEMBERS_URLS_MAX)
        n = MEMBERS_URLS_MAX;
    /* Insertion sort of at most MEMBERS_URLS_MAX pointers. */
    for (i = 0; i < n; i++) {
        for (j = i; j > 0 && strcmp(sorted[j - 1], urls[i]) > 0; j--)
            sorted[j] = sorted[j - 1];
        sorted[j] = urls[i];
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1)
        abort();
    for (i = 0; i < n; i++)
        EVP_DigestUpdate(ctx, sorted[i], strlen(sorted[i]));
    EVP_DigestUpdate(ctx, token, strlen(token));
    if (unix_time != NULL) {
        snprintf(t, sizeof(t), "%lld", (long long)*unix_time);
        EVP_DigestUpdate(ctx, t, strlen(t));
    }
    if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len < 8)
        abort();
    EVP_MD_CTX_free(ctx);
    return be64(md);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

uint64_t members_cluster_id(const uint64_t *ids, unsigned n)
{
    uint64_t sorted[MEMBERS_MAX];
    unsigned char buf[8 * MEMBERS_MAX];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    unsigned i;
    int b;

    if (n > MEMBERS_MAX)
        n = MEMBERS_MAX;
    memcpy(sorted, ids, n * sizeof(ids[0]));
    qsort(sorted, n, sizeof(sorted[0]), cmp_u64);
    for (i = 0; i < n; i++) {
        for (b = 0; b < 8; b++)
            buf[8 * i + (unsigned)b] = (unsigned char)(sorted[i] >> (56 - 8 * b));
    }
    if (EVP_Digest(buf, 8 * n, md, &md_len, EVP_sha1(), NULL) != 1 || md_len < 8)
        abort();
    return be64(md);
}

int members_assign_ids(struct members *ms, const char *token, char *err, size_t err_len)
{
    uint64_t ids[MEMBERS_MAX];
    const char *urls[MEMBERS_URLS_MAX];
    unsigned i, j;

    for (i = 0; i < ms->n; i++) {
        for (j = 0; j < ms->m[i].n_peer_urls; j++)
            urls[j] = ms->m[i].peer_urls[j];
        ms->m[i].id = members_member_id(urls, ms->m[i].n_peer_urls, token, NULL);
        if (ms->m[i].id == 0) {
            msg(err, err_len, "cannot use 0 as member id");
            return -1;
        }
        for (j = 0; j < i; j++) {
            if (ids[j] == ms->m[i].id) {
                msg(err, err_len, "member exists with identical ID %016llx (%s, %s)",
                    (unsigned long long)ids[j], ms->m[j].name, ms->m[i].name);
                return -1;
            }
        }
        ids[i] = ms->m[i].id;
    }
    ms->cluster_id = members_cluster_id(ids, ms->n);
    return 0;
}

int members_bootstrap(struct members *ms, const char *name, const char *initial_cluster,
                      const char *apurls, const char *token, int existing, char *err,
                      size_t err_len)
{
    char why[1024];

    if (members_parse(ms, initial_cluster, why, sizeof(why)) != 0) {
        msg(err, err_len, "error setting up initial cluster: %s", why);
        return -1;
    }
    if (members_verify(ms, name, apurls, existing, err, err_len) != 0)
        return -1;
    return members_assign_ids(ms, token, err, err_len);
}

/* ----------------------------------------------------------- look-ups --- */

int members_set_client_urls(struct members_member *m, const char *list)
{
    const char *p = list;

    m->n_client_urls = 0;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        if (n > 0) {
            if (n >= MEMBERS_URL_MAX || m->n_client_urls == MEMBERS_URLS_MAX)
                return -1;
            memcpy(m->client_urls[m->n_client_urls], p, n);
            m->client_urls[m->n_client_urls++][n] = '\0';
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

struct members_member *members_find_self(struct members *ms, const char *name)
{
    unsigned i;

    for (i = 0; i < ms->n; i++) {
        if (strcmp(ms->m[i].name, name) == 0)
            return &ms->m[i];
    }
    return NULL;
}

struct members_member *members_find_id(struct members *ms, uint64_t id)
{
    unsigned i;

    for (i = 0; i < ms->n; i++) {
        if (ms->m[i].id == id)
            return &ms->m[i];
    }
    return NULL;
}
