/* The native front of the thin client: what `clang-llm` runs on every call once
 * `clang-llm-tool front install` has built it (the Python client stays the reference).
 *
 * It does what driver/client.py does on its happy path, in a millisecond instead of a Python
 * start-up: send the call (argv, cwd, environment) to the warm daemon, hand over stdin, stdout,
 * stderr (and make's jobserver pipe) once acknowledged, then exit with the daemon's status or
 * exec the command the daemon hands back (a passthrough). Anything else -- no daemon, a stale
 * socket, another protocol, a timeout, a crash, a setting that keeps calls in-process -- execs
 * the Python client with the reason in CLANG_LLM_FRONT_REASON, which counts it, starts or stops
 * the daemon as needed and compiles in-process: this file decides nothing about compiling.
 *
 * Wire format (driver/client.py): 4-byte big-endian length, then a marshal (version 0) dict.
 * Built with -DCLANG_LLM_PYTHON="…" -DCLANG_LLM_CODE="…" -DCLANG_LLM_PROTOCOL=N.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

#define MAX_FRAME (4u << 20)

typedef struct { unsigned char *p; size_t n, cap; } buf_t;

static void put(buf_t *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) abort();
        b->p = p; b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void put_i32(buf_t *b, uint32_t v) {
    unsigned char le[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};
    put(b, le, 4);
}

/* Whether s[0..n) is UTF-8 (no overlongs, no surrogates: what marshal reads back). The Python
 * client carries other bytes (surrogate-escaped); the front leaves such calls to it. */
static int utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return 0;
        unsigned cp = k == 1 ? c : c & (0x7f >> k);
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff))
            || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

static int g_not_utf8;  /* some string was not UTF-8: the Python client takes the call */

static void m_str(buf_t *b, const char *s, size_t n) {
    if (!utf8((const unsigned char *)s, n)) g_not_utf8 = 1;
    put(b, "u", 1); put_i32(b, (uint32_t)n); put(b, s, n);
}
static void m_cstr(buf_t *b, const char *s) { m_str(b, s, strlen(s)); }
static void m_int(buf_t *b, int v) { put(b, "i", 1); put_i32(b, (uint32_t)v); }

static const char *off_values[] = {"0", "false", "no", "off", NULL};

static int is_off(const char *v) {
    for (int i = 0; off_values[i]; i++)
        if (strcasecmp(v, off_values[i]) == 0) return 1;
    return 0;
}

static char **g_argv;
static int g_argc;

/* Hand the call to the Python client; `reason` (may be NULL) is what went wrong here. */
static void python_client(const char *reason, int cxx) {
    if (reason) setenv("CLANG_LLM_FRONT_REASON", reason, 1);
    char **av = calloc((size_t)g_argc + 4, sizeof(char *));
    if (!av) abort();
    av[0] = CLANG_LLM_PYTHON;
    av[1] = "-c";
    av[2] = cxx ? "from clang_llm.driver.client import main_cxx; main_cxx()"
                : "from clang_llm.driver.client import main_c; main_c()";
    for (int i = 1; i < g_argc; i++) av[i + 2] = g_argv[i];
    execv(CLANG_LLM_PYTHON, av);
    fprintf(stderr, "clang-llm: cannot run %s: %s\n", CLANG_LLM_PYTHON, strerror(errno));
    _exit(127);
}

static int send_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        c += k; n -= (size_t)k;
    }
    return 0;
}

/* -1: closed or garbage; -2: timed out. */
static int recv_all(int fd, void *p, size_t n) {
    unsigned char *c = p;
    while (n) {
        ssize_t k = recv(fd, c, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -2;
        if (k <= 0) return -1;
        c += k; n -= (size_t)k;
    }
    return 0;
}

/* The frame in one send: its length, then `body` (which starts with 4 bytes kept free for it). */
static int send_frame(int fd, buf_t *body) {
    size_t n = body->n - 4;
    body->p[0] = n >> 24; body->p[1] = (n >> 16) & 0xff; body->p[2] = (n >> 8) & 0xff; body->p[3] = n & 0xff;
    return send_all(fd, body->p, body->n);
}

/* A reply, parsed just enough: the fields the protocol has. */
typedef struct {
    int has_ack, has_rc, rc, protocol_error;
    char **exec_argv, **exec_env;  /* NULL-terminated */
} reply_t;

typedef struct { const unsigned char *p, *end; } rd_t;

static int rd_i32(rd_t *r, int32_t *v) {
    if (r->end - r->p < 4) return -1;
    *v = (int32_t)((uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24);
    r->p += 4;
    return 0;
}

static char *rd_str(rd_t *r) {  /* a 'u' string, as a fresh C string */
    int32_t n;
    if (r->p >= r->end || *r->p++ != 'u' || rd_i32(r, &n) || n < 0 || r->end - r->p < n) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) abort();
    memcpy(s, r->p, (size_t)n);
    s[n] = 0;
    r->p += n;
    return memchr(s, 0, (size_t)n) ? NULL : s;
}

static int parse_reply(const unsigned char *p, size_t n, reply_t *out) {
    rd_t r = {p, p + n};
    memset(out, 0, sizeof *out);
    if (r.p >= r.end || *r.p++ != '{') return -1;
    for (;;) {
        if (r.p >= r.end) return -1;
        if (*r.p == '0') return 0;
        char *key = rd_str(&r);
        if (!key || r.p >= r.end) return -1;
        unsigned char t = *r.p;
        if (t == 'i') {
            int32_t v;
            r.p++;
            if (rd_i32(&r, &v)) return -1;
            if (!strcmp(key, "ack")) out->has_ack = 1;
            if (!strcmp(key, "rc")) { out->has_rc = 1; out->rc = v; }
        } else if (t == 'u') {
            char *v = rd_str(&r);
            if (!v) return -1;
            if (!strcmp(key, "error") && !strcmp(v, "protocol")) out->protocol_error = 1;
        } else if (t == '[' && !strcmp(key, "exec")) {
            int32_t k;
            r.p++;
            if (rd_i32(&r, &k) || k <= 0 || k > 1 << 20) return -1;
            out->exec_argv = calloc((size_t)k + 1, sizeof(char *));
            for (int32_t i = 0; i < k; i++)
                if (!(out->exec_argv[i] = rd_str(&r))) return -1;
        } else if (t == '{' && !strcmp(key, "env")) {
            size_t cap = 64, m = 0;
            r.p++;
            out->exec_env = calloc(cap + 1, sizeof(char *));
            while (r.p < r.end && *r.p != '0') {
                char *k = rd_str(&r), *v = k ? rd_str(&r) : NULL;
                if (!v) return -1;
                if (m == cap) {
                    out->exec_env = realloc(out->exec_env, (2 * cap + 1) * sizeof(char *));
                    cap *= 2;
                }
                size_t len = strlen(k) + strlen(v) + 2;
                out->exec_env[m] = malloc(len);
                snprintf(out->exec_env[m++], len, "%s=%s", k, v);
            }
            if (r.p >= r.end) return -1;
            r.p++;
            out->exec_env[m] = NULL;
        } else {
            return -1;  /* a field this front does not know: the Python client reads it */
        }
    }
}

static int recv_reply(int fd, reply_t *out) {  /* 0, -1 (crashed), -2 (timed out) */
    unsigned char be[4];
    int e = recv_all(fd, be, 4);
    if (e) return e;
    uint32_t n = (uint32_t)be[0] << 24 | (uint32_t)be[1] << 16 | (uint32_t)be[2] << 8 | be[3];
    if (n > MAX_FRAME) return -1;
    unsigned char *body = malloc(n ? n : 1);
    if (!body) abort();
    e = recv_all(fd, body, n);
    if (e) return e;
    return parse_reply(body, n, out) ? -1 : 0;
}

static void set_timeout(int fd, double seconds) {
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* make's jobserver pipe when make passed it to us (R,W fds that are open); fifo: the daemon opens it. */
static int jobserver_fds(int fds[2]) {
    const char *flags = getenv("MAKEFLAGS");
    const char *keys[] = {"--jobserver-auth=", "--jobserver-fds="};
    if (!flags) return 0;
    for (int k = 0; k < 2; k++) {
        const char *at = NULL, *s = flags;
        while ((s = strstr(s, keys[k]))) { at = s; s++; }
        if (!at) continue;
        at += strlen(keys[k]);
        if (!strncmp(at, "fifo:", 5)) return 0;
        int r, w;
        struct stat st;
        if (sscanf(at, "%d,%d", &r, &w) != 2 || fstat(r, &st) || fstat(w, &st)) return 0;
        fds[0] = r; fds[1] = w;
        return 2;
    }
    return 0;
}

int main(int argc, char **argv) {
    g_argc = argc; g_argv = argv;
    const char *base = strrchr(argv[0], '/');
    int cxx = strstr(base ? base + 1 : argv[0], "++") != NULL;
    const char *v;
    if (((v = getenv("CLANG_LLM_ACTIVE")) && *v) || ((v = getenv("CLANG_LLM_DISABLE")) && *v && !is_off(v))
        || ((v = getenv("CLANG_LLM_DAEMON")) && is_off(v)) || getenv("CLANG_LLM_FRONT_REASON"))
        python_client(NULL, cxx);
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--llm-daemon=", 13) && is_off(argv[i] + 13)) python_client(NULL, cxx);

    char state[PATH_MAX], sockpath[PATH_MAX + 16];
    if ((v = getenv("CLANG_LLM_DIR")) && *v) {
        snprintf(state, sizeof state, "%s", v);
    } else if ((v = getenv("XDG_CACHE_HOME")) && *v) {
        snprintf(state, sizeof state, "%s/clang-llm", v);
    } else {
        const char *home = getenv("HOME");
        struct passwd *pw = home ? NULL : getpwuid(getuid());
        snprintf(state, sizeof state, "%s/.cache/clang-llm", home ? home : pw ? pw->pw_dir : "/");
    }
    snprintf(sockpath, sizeof sockpath, "%s/daemon/socket", state);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(sockpath) >= sizeof addr.sun_path) python_client("unreachable", cxx);
    strcpy(addr.sun_path, sockpath);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) python_client("unreachable", cxx);
    double timeout = 10.0;
    if ((v = getenv("CLANG_LLM_DAEMON_TIMEOUT"))) {
        char *end;
        double t = strtod(v, &end);
        if (end != v && t > 0) timeout = t;
    }
    set_timeout(fd, timeout);
    /* Only our own daemon: its directory ours with mode 0700, the socket ours, and the process
     * at the other end ours (SO_PEERCRED on the connection itself, so no swap can race it). */
    char ddir[PATH_MAX + 16];
    snprintf(ddir, sizeof ddir, "%s/daemon", state);
    struct stat dst, sst;
    if (!lstat(ddir, &dst) && !lstat(sockpath, &sst)
        && (dst.st_uid != getuid() || !S_ISDIR(dst.st_mode) || (dst.st_mode & 077)
            || sst.st_uid != getuid() || !S_ISSOCK(sst.st_mode)))
        python_client("untrusted", cxx);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
        python_client(errno == ENOENT ? "not-running" : errno == ECONNREFUSED ? "stale-socket"
                      : errno == EAGAIN || errno == ETIMEDOUT ? "timeout" : "unreachable", cxx);
    }
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) || cred.uid != getuid())
        python_client("untrusted", cxx);

    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) python_client(NULL, cxx);
    buf_t h = {0};
    put(&h, "\0\0\0\0{", 5);  /* room for the frame's length */
    m_cstr(&h, "protocol"); m_int(&h, CLANG_LLM_PROTOCOL);
    m_cstr(&h, "code"); m_cstr(&h, CLANG_LLM_CODE);
    m_cstr(&h, "argv"); put(&h, "[", 1); put_i32(&h, (uint32_t)(argc - 1));
    for (int i = 1; i < argc; i++) m_cstr(&h, argv[i]);
    m_cstr(&h, "cxx"); put(&h, cxx ? "T" : "F", 1);
    m_cstr(&h, "cwd"); m_cstr(&h, cwd);
    m_cstr(&h, "env"); put(&h, "{", 1);
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq) continue;
        m_str(&h, *e, (size_t)(eq - *e));
        m_cstr(&h, eq + 1);
    }
    put(&h, "0", 1);
    put(&h, "0", 1);
    if (g_not_utf8) python_client(NULL, cxx);
    if (send_frame(fd, &h)) python_client("crashed", cxx);

    reply_t ack;
    int e = recv_reply(fd, &ack);
    if (e) python_client(e == -2 ? "timeout" : "crashed", cxx);
    if (ack.protocol_error || !ack.has_ack) python_client("protocol-mismatch", cxx);

    /* Only an acknowledged daemon gets our stdio. */
    int fds[5] = {0, 1, 2}, nfds = 3 + jobserver_fds(fds + 3);
    char cbuf[CMSG_SPACE(sizeof fds)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {.iov_base = "F", .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    if (sendmsg(fd, &msg, MSG_NOSIGNAL) != 1) python_client("crashed", cxx);

    set_timeout(fd, 0);  /* acknowledged: the compile itself may take its time */
    reply_t done;
    e = recv_reply(fd, &done);
    if (e) python_client("crashed", cxx);
    close(fd);
    if (done.exec_argv) {
        if (!done.exec_env) python_client("protocol-mismatch", cxx);
        execve(done.exec_argv[0], done.exec_argv, done.exec_env);
        python_client("exec-failed", cxx);
    }
    if (!done.has_rc) python_client("crashed", cxx);
    return done.rc;
}

/* What `clang-llm-tool front status` looks for in an installed binary. */
__attribute__((used)) static const char front_marker[] = "clang-llm-front:" CLANG_LLM_CODE ":end";
