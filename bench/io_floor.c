/* io_floor: is io_uring cheaper than epoll per query on this machine? Two minimal servers for the
 * binary protocol that look nothing up (each complete Q frame gets one fixed FOUND reply, as
 * ../shared/tools/floor_server.c answers), alike in everything but their event loop:
 *
 *   epoll : epoll_wait, then per ready connection one read and one write of all its replies
 *           (floor_server.c's loop).
 *   uring : io_uring with SINGLE_ISSUER | DEFER_TASKRUN: a multishot accept, one receive armed
 *           per connection, a send per read's replies, and one io_uring_enter per turn that
 *           submits them all and waits for the next completions.
 *
 * SPIN (default 0) adds a busy loop of that many iterations per query, to make either server as
 * slow per query as this project's server is (about 300 ns here at SPIN=300): a slower server
 * finds more work per wakeup, which is where saving system calls could show.
 *
 * Build and run (liburing from Debian's liburing-dev):
 *   gcc -O2 -o /tmp/io_floor bench/io_floor.c -luring
 *   /tmp/io_floor epoll|uring [SPIN] PORT          (listens on 127.0.0.1)
 * bench/cpu_per_query.ts measures their CPU time per query side by side:
 *   deno run -A bench/cpu_per_query.ts --qrload /tmp/qrload --floor "/tmp/io_floor epoll" \
 *     --floor "/tmp/io_floor uring" */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char REPLY[] = "R\0\0\0\x0d\0Ada Lovelace"; /* status 0 FOUND, 12 bytes of name */
enum { REPLY_LEN = 18, HEADER = 5, MAX_QUERY = 1024, IN_BYTES = 65536 };
enum { OUT_BYTES = IN_BYTES / HEADER * REPLY_LEN + REPLY_LEN };

typedef struct {
  int fd;
  size_t inlen, outlen, outsent;
  int sending; /* uring: a send is in flight */
  char in[IN_BYTES];
  char out[OUT_BYTES];
} conn_t;

static int spin_count;

static void spin(void) {
  for (volatile int i = 0; i < spin_count; i++) {
  }
}

/* Appends a reply for each complete query in c->in to c->out, keeps a partial one. */
static void answer(conn_t *c) {
  size_t off = 0;
  while (c->inlen - off >= HEADER) {
    uint32_t length;
    memcpy(&length, c->in + off + 1, 4);
    length = ntohl(length);
    if (length > MAX_QUERY) { c->inlen = off; break; } /* not a query: drop the rest */
    if (c->inlen - off < HEADER + length) break;
    off += HEADER + length;
    memcpy(c->out + c->outlen, REPLY, REPLY_LEN);
    c->outlen += REPLY_LEN;
    spin();
  }
  memmove(c->in, c->in + off, c->inlen - off);
  c->inlen -= off;
}

static conn_t *new_conn(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  conn_t *c = calloc(1, sizeof *c);
  c->fd = fd;
  return c;
}

static void serve_epoll(int listener) {
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; i++) {
      conn_t *c = events[i].data.ptr;
      if (!c) {
        int fd;
        while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          struct epoll_event e = {.events = EPOLLIN, .data.ptr = new_conn(fd)};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        }
        continue;
      }
      ssize_t r = read(c->fd, c->in + c->inlen, sizeof c->in - c->inlen);
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) { close(c->fd); free(c); continue; }
      c->inlen += r;
      answer(c);
      for (size_t w = 0; w < c->outlen;) {
        ssize_t k = write(c->fd, c->out + w, c->outlen - w);
        if (k <= 0) break; /* the load generator reads every reply: no backpressure here */
        w += k;
      }
      c->outlen = 0;
    }
  }
}

/* user_data: the connection's address, its low bits saying which operation completed. */
enum { OP_RECV = 0, OP_SEND = 1, ACCEPT_TAG = 2 };
static struct io_uring ring;

static struct io_uring_sqe *next_sqe(void) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  if (!sqe) { /* the submission queue is full: hand it over and go on */
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

static void arm_recv(conn_t *c) {
  struct io_uring_sqe *sqe = next_sqe();
  io_uring_prep_recv(sqe, c->fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_RECV);
}

static void arm_send(conn_t *c) {
  struct io_uring_sqe *sqe = next_sqe();
  io_uring_prep_send(sqe, c->fd, c->out + c->outsent, c->outlen - c->outsent, 0);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_SEND);
  c->sending = 1;
}

static void on_send(conn_t *c, int res) {
  c->sending = 0;
  if (res <= 0) return; /* the connection is gone: its receive sees it and frees it */
  c->outsent += res;
  if (c->outsent < c->outlen) arm_send(c);
  else c->outlen = c->outsent = 0;
}

static void on_recv(conn_t *c, int res) {
  if (res <= 0) { /* a send in flight still names c: leak it rather than free it under the ring */
    close(c->fd);
    if (!c->sending) free(c);
    return;
  }
  c->inlen += res;
  /* Replies wait in c->out while a send is in flight; P16 clients never overlap them. */
  if (!c->sending) c->outlen = c->outsent = 0;
  answer(c);
  if (c->outlen > c->outsent && !c->sending) arm_send(c);
  arm_recv(c);
}

static void serve_uring(int listener) {
  struct io_uring_params params = {0};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int error = io_uring_queue_init_params(4096, &ring, &params);
  if (error) { fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-error)); exit(1); }
  struct io_uring_sqe *sqe = next_sqe();
  io_uring_prep_multishot_accept(sqe, listener, NULL, NULL, 0);
  io_uring_sqe_set_data64(sqe, ACCEPT_TAG);
  for (;;) {
    io_uring_submit_and_wait(&ring, 1); /* the one system call of a turn */
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      uint64_t data = cqe->user_data;
      if (data == ACCEPT_TAG) {
        if (cqe->res >= 0) arm_recv(new_conn(cqe->res));
        continue;
      }
      conn_t *c = (conn_t *)(uintptr_t)(data & ~(uint64_t)3);
      if ((data & 3) == OP_SEND) on_send(c, cqe->res);
      else on_recv(c, cqe->res);
    }
    io_uring_cq_advance(&ring, seen);
  }
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4 || (strcmp(argv[1], "epoll") && strcmp(argv[1], "uring"))) {
    fprintf(stderr, "usage: io_floor epoll|uring [SPIN] PORT\n");
    return 2;
  }
  int uring = argv[1][0] == 'u';
  spin_count = argc == 4 ? atoi(argv[2]) : 0;
  /* io_uring waits on a blocking socket itself; epoll's loop needs non-blocking ones. */
  int one = 1, listener = socket(AF_INET, SOCK_STREAM | (uring ? 0 : SOCK_NONBLOCK), 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[argc - 1]))};
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 1024)) {
    perror("bind");
    return 1;
  }
  if (uring) serve_uring(listener);
  else serve_epoll(listener);
}
