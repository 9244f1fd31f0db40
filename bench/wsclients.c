/* Many SignalR-over-WebSocket clients in one process, in C: for the hub benchmarks, where the
 * clients must read far more messages per second than the server under test writes, or the
 * benchmark measures the clients.
 *
 *   wsclients PORT PATHS_FILE OUT_FILE [AT_ONCE] [PROBE_EVERY]
 *
 * Opens one connection per line of PATHS_FILE (a request path with its token) on 127.0.0.1:PORT,
 * AT_ONCE (100) at a time: WebSocket upgrade, then the SignalR MessagePack handshake. Prints
 * "ready <seconds>" once all are through it (or "failed <n>" for those that were not), then
 * reads until its standard input closes: answers WebSocket pings, counts binary messages of 16
 * bytes or more (SignalR pings are shorter), and on one connection in PROBE_EVERY (20; the
 * probes) notes for each message its RevisionDate (a MessagePack timestamp: when the benchmark published the event)
 * and how long after it the message arrived. Then writes OUT_FILE:
 *   C <time> <messages so far>     every 50 ms
 *   L <publication time> <ms>      for each message a probe received
 *   X <connections closed by the server>
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LEFT 1024
#define SCRATCH (1 << 20)
#define MESSAGE_MIN 16

enum { CONNECTING, UPGRADING, HANDSHAKING, OPEN, CLOSED };

typedef struct {
    int fd, state, probe, nleft;
    unsigned char left[LEFT];
} client_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static client_t *clients;
static char **paths;
static int port, total, opened, failed, started, closed_by_server, probe_every = 20;
static long messages;
static double *lat; /* pairs: origin, ms */
static size_t nlat, caplat;
static unsigned char scratch[SCRATCH + LEFT];

static void send_masked(int fd, int opcode, const unsigned char *payload, size_t n) {
    unsigned char frame[256];
    unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    if (n > 125) return;
    frame[0] = 0x80 | opcode;
    frame[1] = 0x80 | n;
    memcpy(frame + 2, mask, 4);
    for (size_t i = 0; i < n; i++) frame[6 + i] = payload[i] ^ mask[i % 4];
    if (write(fd, frame, 6 + n) < 0) { /* the read side sees the end */ }
}

static void note(const unsigned char *p, size_t n, double at) {
    static const unsigned char key[] = "\xacRevisionDate\xd7\xff";
    unsigned char *found = memmem(p, n, key, sizeof key - 1);
    if (!found || found + sizeof key - 1 + 8 > p + n) return;
    const unsigned char *t = found + sizeof key - 1;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | t[i];
    double origin = (double)(v & 0x3ffffffffULL) + (double)(v >> 34) / 1e9;
    if (nlat + 2 > caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof *lat);
    }
    lat[nlat++] = origin;
    lat[nlat++] = (at - origin) * 1000.0;
}

static int start_one(int epfd) {
    if (started >= total) return 0;
    client_t *c = &clients[started];
    c->probe = started % probe_every == 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connect(fd, (struct sockaddr *)&addr, sizeof addr);
    c->fd = fd;
    c->state = CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = started};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    started++;
    return 1;
}

static void fail(int epfd, client_t *c) {
    if (c->state < OPEN) { failed++; start_one(epfd); }
    else if (c->state == OPEN) closed_by_server++;
    c->state = CLOSED;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

static void readable(int epfd, client_t *c, double at) {
    memcpy(scratch, c->left, c->nleft);
    ssize_t r = read(c->fd, scratch + c->nleft, SCRATCH);
    if (r <= 0) {
        if (r < 0 && errno == EAGAIN) return;
        fail(epfd, c);
        return;
    }
    size_t size = c->nleft + r, pos = 0;
    if (c->state == UPGRADING) {
        unsigned char *end = memmem(scratch, size, "\r\n\r\n", 4);
        if (!end) goto keep;
        if (memcmp(scratch, "HTTP/1.1 101", 12) != 0) { fail(epfd, c); return; }
        pos = end + 4 - scratch;
        c->state = HANDSHAKING;
        static const unsigned char hs[] = "{\"protocol\":\"messagepack\",\"version\":1}\x1e";
        send_masked(c->fd, 1, hs, sizeof hs - 1);
    }
    while (size - pos >= 2) {
        unsigned char first = scratch[pos];
        uint64_t len = scratch[pos + 1] & 0x7f;
        size_t start = pos + 2;
        if (len == 126) {
            if (size - start < 2) break;
            len = (scratch[start] << 8) | scratch[start + 1];
            start += 2;
        } else if (len == 127) {
            if (size - start < 8) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | scratch[start + i];
            start += 8;
        }
        if (start + len > size) break;
        int opcode = first & 0x0f;
        if (opcode == 2) {
            if (len >= MESSAGE_MIN) messages++;
            if (c->probe) note(scratch + start, len, at);
        } else if (opcode == 1 && c->state == HANDSHAKING) {
            c->state = OPEN;
            opened++;
            start_one(epfd);
        } else if (opcode == 9) {
            send_masked(c->fd, 10, scratch + start, len);
        } else if (opcode == 8) {
            fail(epfd, c);
            return;
        }
        pos = start + len;
    }
keep:
    if (size - pos > LEFT) { fail(epfd, c); return; }
    memmove(c->left, scratch + pos, size - pos);
    c->nleft = size - pos;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: wsclients PORT PATHS_FILE OUT_FILE [AT_ONCE] [PROBE_EVERY]\n"); return 2; }
    port = atoi(argv[1]);
    int at_once = argc > 4 ? atoi(argv[4]) : 100;
    if (argc > 5 && atoi(argv[5]) > 0) probe_every = atoi(argv[5]);
    FILE *f = fopen(argv[2], "r");
    if (!f) { perror("paths"); return 2; }
    char line[4096];
    int cap = 1024;
    paths = malloc(cap * sizeof *paths);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        if (total == cap) paths = realloc(paths, (cap *= 2) * sizeof *paths);
        paths[total++] = strdup(line);
    }
    fclose(f);
    clients = calloc(total, sizeof *clients);
    int epfd = epoll_create1(0);
    struct epoll_event in = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &in);
    double t0 = now();
    for (int i = 0; i < at_once; i++) start_one(epfd);
    int ready = 0, running = 1;
    FILE *out = fopen(argv[3], "w");
    double next_count = 0;
    struct epoll_event events[512];
    while (running) {
        int n = epoll_wait(epfd, events, 512, 20);
        double at = now();
        for (int i = 0; i < n; i++) {
            uint32_t k = events[i].data.u32;
            if (k == UINT32_MAX) { running = 0; continue; }
            client_t *c = &clients[k];
            if (c->state == CLOSED) continue;
            if (c->state == CONNECTING && (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int err = 0; socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err) { fail(epfd, c); continue; }
                char req[4096];
                int m = snprintf(req, sizeof req,
                    "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", paths[k], port);
                if (write(c->fd, req, m) != m) { fail(epfd, c); continue; }
                c->state = UPGRADING;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = k};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(epfd, c, at);
        }
        if (!ready && opened + failed >= total) {
            ready = 1;
            if (failed) printf("failed %d\n", failed);
            printf("ready %.3f\n", now() - t0);
            fflush(stdout);
        }
        if (ready && at >= next_count) {
            fprintf(out, "C %.6f %ld\n", at, messages);
            next_count = at + 0.05;
        }
    }
    fprintf(out, "C %.6f %ld\n", now(), messages);
    for (size_t i = 0; i < nlat; i += 2) fprintf(out, "L %.6f %.3f\n", lat[i], lat[i + 1]);
    fprintf(out, "X %d\n", closed_by_server);
    fclose(out);
    return 0;
}
