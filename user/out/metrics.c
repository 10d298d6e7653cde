// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * /metrics for `connscope daemon --metrics-addr`: a deliberately small
 * HTTP/1.x responder (GET /metrics, GET / and GET /healthz only, one request per
 * connection)
 * on a thread of its own, serving a snapshot the event loop renders at most
 * once a second. The loop never touches a client socket, so no scraper, slow or
 * hostile, can hold it up and cost events.
 *
 * The server is one poll() loop over the listener, an eventfd (stop) and at
 * most max_conns non-blocking connections, each with a fixed head buffer
 * allocated at start. A connection has head_ms to send its request head and
 * total_ms to be answered in all; a head longer than head_max gets 431. The
 * listener defers accept until a client has sent data (TCP_DEFER_ACCEPT, 1 s),
 * so a scraper arrives with its head. Past max_conns, a connection whose
 * response the client has acknowledged is closed to make room first; failing
 * that, a new connection takes the place of the oldest one still waiting for its head that has sent nothing
 * or has been at it for GRACE_MS (250 ms), or of any, if the newcomer's head is
 * whole; else it is closed at once. A response body is a reference-counted
 * snapshot: a slow reader pins the snapshot it asked for, and since one is
 * published at most once a second and no connection lives past total_ms, at
 * most total_ms/1000 + 1 snapshots are ever alive.
 */
#include "metrics.h"
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "util.h"

int metrics_listen(const char *addr)
{
	char host[256], *port;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res, *ai;
	int fd = -1, one = 1, err;

	if (snprintf(host, sizeof(host), "%s", addr) >= (int)sizeof(host) ||
	    !(port = strrchr(host, ':'))) {
		cs_fail("serve metrics", "--metrics-addr wants HOST:PORT, got '%s'", addr);
		return -1;
	}
	*port++ = 0;
	if (host[0] == '[' && port[-2] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	err = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (err) {
		cs_fail("serve metrics", "cannot resolve '%s': %s", addr, gai_strerror(err));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, 128))
			break;
		err = errno;
		close(fd);
		fd = -1;
		errno = err;
	}
	freeaddrinfo(res);
	if (fd < 0)
		cs_fail("serve metrics", "cannot listen on %s: %s", addr, strerror(errno));
	return fd;
}

static const char *const reject_names[MREJ_N] = {
	[MREJ_CONNECTIONS] = "too_many_connections",
	[MREJ_EVICTED] = "evicted",
	[MREJ_TIMEOUT] = "timeout",
	[MREJ_HEAD_LARGE] = "header_too_large",
	[MREJ_BAD_REQUEST] = "bad_request",
	[MREJ_NOT_FOUND] = "not_found",
	[MREJ_METHOD] = "method_not_allowed",
	[MREJ_NO_SNAPSHOT] = "no_snapshot",
	[MREJ_UNHEALTHY] = "unhealthy",
};

/* The server's own family, after the exposition. */
static void render_rejected(FILE *f, const uint64_t rejected[MREJ_N])
{
	fputs("# HELP connscope_metrics_rejected_total Connections to this endpoint refused, cut "
	      "off or answered with an error, by reason.\n"
	      "# TYPE connscope_metrics_rejected_total counter\n", f);
	for (int i = 0; i < MREJ_N; i++)
		fprintf(f, "connscope_metrics_rejected_total{reason=\"%s\"} %llu\n", reject_names[i],
			(unsigned long long)rejected[i]);
}

/* ---- the server thread ------------------------------------------------- */

#define GRACE_MS 250       /* a head still incomplete after this may be evicted: a
			    * scraper sends its head with its first packets */
#define LINGER_MS 1000     /* after the response: drain what the client still sends,
			    * then close if it has it all (else wait, up to total_ms) */
#define ACCEPT_BURST 256   /* accepts per poll round: the others get their turn */
#define READ_BURST 65536   /* bytes drained per connection per poll round */
#define PAUSE_MS 100       /* out of descriptors: leave the listener alone this long */

/* A published exposition: the server's current one holds a reference, and so
 * does every connection still writing it. */
struct body {
	unsigned refs;
	size_t len;
	char *data;
};

enum cstate { C_FREE, C_HEAD, C_WRITE, C_LINGER };

struct conn {
	int fd;
	enum cstate st;
	uint64_t t_accept, deadline; /* ms, monotonic */
	char *head;                  /* head_max bytes, the server's, fixed */
	size_t got;
	char hdr[192];               /* the response's status line and headers */
	char msg[224];               /* /healthz: the body */
	size_t hdr_len, sent;        /* sent counts header then body bytes */
	const char *body;
	size_t body_len;
	struct body *ref;            /* the snapshot body points into, if any */
};

struct metrics_server {
	struct metrics_limits lim;
	int lfd, wake, port;
	pthread_t thr;
	pthread_mutex_t mu;
	struct body *cur;            /* under mu */
	char problem[192];           /* under mu: why /healthz fails ("": it need not) */
	uint64_t heartbeat;          /* ms, monotonic: the event loop's last turn (atomic) */
	uint64_t rejected[MREJ_N];   /* written by the thread, read by publish: atomics */
	struct conn *conns;
	char *heads;
	struct pollfd *pfd;
	int *pfd_conn;               /* pfd[i] belongs to conns[pfd_conn[i]] (-1: none) */
	uint64_t paused_until;
	char *spare;                 /* head_max bytes: a newcomer's head, peeked */
	char scratch[4096];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void count(struct metrics_server *s, enum metrics_reject why)
{
	__atomic_add_fetch(&s->rejected[why], 1, __ATOMIC_RELAXED);
}

uint64_t metrics_rejected(const struct metrics_server *s, enum metrics_reject why)
{
	return s && why < MREJ_N ? __atomic_load_n(&s->rejected[why], __ATOMIC_RELAXED) : 0;
}

static void body_put(struct body *b)
{
	if (b && !__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL)) {
		free(b->data);
		free(b);
	}
}

/* The current snapshot with a reference taken, or NULL before the first. */
static struct body *body_get(struct metrics_server *s)
{
	struct body *b;

	pthread_mutex_lock(&s->mu);
	b = s->cur;
	if (b)
		__atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->mu);
	return b;
}

/* Takes data (malloc'ed) whatever happens. */
static int publish(struct metrics_server *s, char *data, size_t len)
{
	struct body *b = malloc(sizeof(*b)), *old;

	if (!b) {
		free(data);
		return -1;
	}
	*b = (struct body){ .refs = 1, .len = len, .data = data };
	pthread_mutex_lock(&s->mu);
	old = s->cur;
	s->cur = b;
	pthread_mutex_unlock(&s->mu);
	body_put(old);
	return 0;
}

int metrics_publish_text(struct metrics_server *s, const char *text, size_t len)
{
	char *data = malloc(len ? len : 1);

	if (!data)
		return -1;
	memcpy(data, text, len);
	return publish(s, data, len);
}

void metrics_publish(struct metrics_server *s, struct expo *x, struct tracker *t,
		     const struct metrics_self *self)
{
	uint64_t rejected[MREJ_N];
	char *data = NULL;
	size_t len = 0;
	FILE *f;

	if (!s)
		return;
	for (int i = 0; i < MREJ_N; i++)
		rejected[i] = metrics_rejected(s, i);
	f = open_memstream(&data, &len);
	if (!f)
		return;  /* out of memory: scrapes keep the previous snapshot */
	if (expo_render(x, f, t, self)) {
		fclose(f);
		free(data);
		return;  /* out of memory: scrapes keep the previous snapshot */
	}
	render_rejected(f, rejected);
	if (fclose(f)) {
		free(data);
		return;
	}
	metrics_heartbeat(s);
	publish(s, data, len);
}

void metrics_heartbeat(struct metrics_server *s)
{
	if (s)
		__atomic_store_n(&s->heartbeat, now_ms(), __ATOMIC_RELAXED);
}

void metrics_set_problem(struct metrics_server *s, const char *problem)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	snprintf(s->problem, sizeof(s->problem), "%s", problem ? problem : "");
	pthread_mutex_unlock(&s->mu);
}

static void conn_close(struct metrics_server *s, struct conn *c)
{
	close(c->fd);
	body_put(c->ref);
	c->ref = NULL;
	c->fd = -1;
	c->st = C_FREE;
}

/* Whether the client has acknowledged the whole response. SIOCOUTQ counts the
 * sequence numbers not yet acknowledged, the FIN of the half-close included;
 * the FIN's acknowledgement is often delayed (the peer in CLOSE_WAIT acks
 * lazily), so one left means every byte of the response is in. From then on a
 * close cannot cost the client its answer, even if it resets. */
static bool delivered(const struct conn *c)
{
	int n = 0;

	return ioctl(c->fd, SIOCOUTQ, &n) || n <= 1;
}

/* Cut off: a reset, so the kernel drops what is still queued for a client that
 * does not read instead of trickling it out long after the deadline. */
static void conn_abort(struct metrics_server *s, struct conn *c)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	conn_close(s, c);
}

/* Write what the socket takes; the rest waits for POLLOUT. Once all is out,
 * half-close and drain: closing with unread request bytes would reset the
 * connection and could destroy the response before the client reads it. */
static void conn_write(struct metrics_server *s, struct conn *c)
{
	while (c->sent < c->hdr_len + c->body_len) {
		struct iovec iov[2];
		struct msghdr mh = { .msg_iov = iov };
		ssize_t w;

		if (c->sent < c->hdr_len) {
			iov[mh.msg_iovlen++] = (struct iovec){ c->hdr + c->sent, c->hdr_len - c->sent };
			if (c->body_len)
				iov[mh.msg_iovlen++] = (struct iovec){ (char *)c->body, c->body_len };
		} else {
			size_t off = c->sent - c->hdr_len;

			iov[mh.msg_iovlen++] = (struct iovec){ (char *)c->body + off, c->body_len - off };
		}
		w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (w <= 0) {
			conn_close(s, c);
			return;
		}
		c->sent += (size_t)w;
	}
	body_put(c->ref);
	c->ref = NULL;
	shutdown(c->fd, SHUT_WR);
	c->st = C_LINGER;
	c->deadline = now_ms() + LINGER_MS;
	if (c->deadline > c->t_accept + s->lim.total_ms)
		c->deadline = c->t_accept + s->lim.total_ms;
}

static void respond(struct metrics_server *s, struct conn *c, int code, const char *reason,
		    const char *type, const char *body, size_t len)
{
	c->hdr_len = (size_t)snprintf(c->hdr, sizeof(c->hdr),
				      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
				      "Connection: close\r\n\r\n",
				      code, reason, type, len);
	c->body = body;
	c->body_len = len;
	c->sent = 0;
	c->st = C_WRITE;
	c->deadline = c->t_accept + s->lim.total_ms;
	conn_write(s, c);
}

static const char ERR_400[] = "bad request\n", ERR_404[] = "see /metrics\n",
		  ERR_405[] = "GET only\n", ERR_431[] = "request head too large\n",
		  ERR_503[] = "no snapshot yet: connscope is starting\n";
#define ERR(s) (s), sizeof(s) - 1

/* 200 "ok" while the loop turns and no program is detached; else 503 and why. */
static void healthz(struct metrics_server *s, struct conn *c)
{
	uint64_t beat = __atomic_load_n(&s->heartbeat, __ATOMIC_RELAXED), now = now_ms();
	bool ready;
	int n;

	pthread_mutex_lock(&s->mu);
	ready = s->cur != NULL;
	n = snprintf(c->msg, sizeof(c->msg), "%s\n", s->problem);
	pthread_mutex_unlock(&s->mu);
	if (!ready)
		n = snprintf(c->msg, sizeof(c->msg), "starting: the programs are not attached yet\n");
	else if (now > beat + s->lim.stall_ms)
		n = snprintf(c->msg, sizeof(c->msg), "event loop stalled: its last turn was %.1f s ago\n",
			     (double)(now - beat) / 1000);
	if (n < 0 || (size_t)n >= sizeof(c->msg))
		n = (int)strlen(c->msg);
	if (n > 1) {
		count(s, MREJ_UNHEALTHY);
		respond(s, c, 503, "Service Unavailable", "text/plain", c->msg, (size_t)n);
		return;
	}
	respond(s, c, 200, "OK", "text/plain", "ok\n", 3);
}

/* The whole head is in (or the client half-closed after part of it). */
static void answer(struct metrics_server *s, struct conn *c)
{
	const char *line = c->head, *eol = memchr(line, '\n', c->got), *sp1, *sp2;
	size_t n = eol ? (size_t)(eol - line) : c->got;

	if (n && line[n - 1] == '\r')
		n--;
	sp1 = memchr(line, ' ', n);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - line)) : NULL;
	if (!sp1 || sp1 == line || !sp2 || sp2 == sp1 + 1 ||
	    (size_t)(line + n - (sp2 + 1)) < 5 || memcmp(sp2 + 1, "HTTP/", 5)) {
		count(s, MREJ_BAD_REQUEST);
		respond(s, c, 400, "Bad Request", "text/plain", ERR(ERR_400));
		return;
	}
	if (sp1 - line != 3 || memcmp(line, "GET", 3)) {
		count(s, MREJ_METHOD);
		respond(s, c, 405, "Method Not Allowed", "text/plain", ERR(ERR_405));
		return;
	}
	const char *p = sp1 + 1;
	size_t plen = (size_t)(sp2 - p);

	if ((plen == 8 && !memcmp(p, "/healthz", 8)) || (plen > 8 && !memcmp(p, "/healthz?", 9))) {
		healthz(s, c);
		return;
	}
	if (!(plen == 1 && *p == '/') && !(plen == 8 && !memcmp(p, "/metrics", 8)) &&
	    !(plen > 8 && !memcmp(p, "/metrics?", 9))) {
		count(s, MREJ_NOT_FOUND);
		respond(s, c, 404, "Not Found", "text/plain", ERR(ERR_404));
		return;
	}
	c->ref = body_get(s);
	if (!c->ref) {
		count(s, MREJ_NO_SNAPSHOT);
		respond(s, c, 503, "Service Unavailable", "text/plain", ERR(ERR_503));
		return;
	}
	respond(s, c, 200, "OK", "text/plain; version=0.0.4", c->ref->data, c->ref->len);
}

static bool head_end(const char *p, size_t n)
{
	return memmem(p, n, "\r\n\r\n", 4) || memmem(p, n, "\n\n", 2);
}

static void conn_read_head(struct metrics_server *s, struct conn *c)
{
	size_t from = c->got;
	ssize_t r;

	if (c->got == s->lim.head_max)
		goto too_large;  /* defensive; a full head is answered below */
	r = recv(c->fd, c->head + c->got, s->lim.head_max - c->got, MSG_DONTWAIT);
	if (r < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_close(s, c);
		return;
	}
	if (r == 0) {
		/* Half-closed: answer what came, if anything did. */
		if (c->got)
			answer(s, c);
		else
			conn_close(s, c);
		return;
	}
	c->got += (size_t)r;
	from = from >= 3 ? from - 3 : 0;
	if (head_end(c->head + from, c->got - from)) {
		answer(s, c);
		return;
	}
	if (c->got < s->lim.head_max)
		return;
too_large:
	count(s, MREJ_HEAD_LARGE);
	respond(s, c, 431, "Request Header Fields Too Large", "text/plain", ERR(ERR_431));
}

static void conn_drain(struct metrics_server *s, struct conn *c)
{
	for (size_t total = 0; total < READ_BURST;) {
		ssize_t r = recv(c->fd, s->scratch, sizeof(s->scratch), MSG_DONTWAIT);

		if (r > 0) {
			total += (size_t)r;
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		conn_close(s, c);  /* end of stream, or the client reset */
		return;
	}
}

/* A free slot, or one made by evicting the oldest connection still waiting for
 * its head that either has sent nothing at all or has been at it for more than
 * GRACE_MS; for a newcomer whose whole head is already in (complete), any
 * connection still waiting for its head. NULL if none. A scraper sends its head
 * with its first packets (and the listener defers accept until data came), so
 * it is rarely either for long, while slowloris connections always are. */
static struct conn *slot_for_new(struct metrics_server *s, uint64_t now, bool complete)
{
	struct conn *oldest = NULL;

	for (unsigned i = 0; i < s->lim.max_conns; i++) {
		struct conn *c = &s->conns[i];

		if (c->st == C_LINGER && delivered(c)) {
			/* Its client has the whole response (acknowledged); only its
			 * close is still to come. When the thread was held up,
			 * a run of scrapes can fill every slot that way in one burst of
			 * accepts: they make room before anyone waiting is evicted. */
			conn_drain(s, c);
			if (c->st != C_FREE)
				conn_close(s, c);
		}
		if (c->st == C_FREE)
			return c;
		if (c->st == C_HEAD && (complete || !c->got || now - c->t_accept >= GRACE_MS) &&
		    (!oldest || c->t_accept < oldest->t_accept))
			oldest = c;
	}
	if (oldest) {
		count(s, MREJ_EVICTED);
		conn_abort(s, oldest);
	}
	return oldest;
}

static void accept_some(struct metrics_server *s)
{
	for (int i = 0; i < ACCEPT_BURST; i++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		uint64_t now = now_ms();
		struct conn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				s->paused_until = now + PAUSE_MS;
			return;
		}
		c = slot_for_new(s, now, false);
		if (!c) {
			/* Full of young heads and answers: a whole request still gets in. */
			ssize_t r = recv(fd, s->spare, s->lim.head_max, MSG_PEEK | MSG_DONTWAIT);

			if (r > 0 && head_end(s->spare, (size_t)r))
				c = slot_for_new(s, now, true);
		}
		if (!c) {
			count(s, MREJ_CONNECTIONS);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->st = C_HEAD;
		c->t_accept = now;
		c->deadline = now + (s->lim.head_ms < s->lim.total_ms ? s->lim.head_ms : s->lim.total_ms);
		c->got = 0;
		c->ref = NULL;
		conn_read_head(s, c);  /* the head is often there already */
	}
}

static void *server_main(void *arg)
{
	struct metrics_server *s = arg;

	/* Under CPU pressure the event loop goes first: a busy scraper may wait,
	 * the ring buffer may not. (Linux: nice is per thread.) */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);

	for (;;) {
		uint64_t now = now_ms(), next = UINT64_MAX;
		nfds_t n = 0;
		int timeout;

		/* Deadlines first: what passed its own is closed, not polled. */
		for (unsigned i = 0; i < s->lim.max_conns; i++) {
			struct conn *c = &s->conns[i];

			if (c->st == C_FREE)
				continue;
			if (now >= c->deadline && c->st == C_LINGER && delivered(c)) {
				conn_close(s, c);  /* all delivered; the client just did not close */
				continue;
			}
			if (now >= c->deadline && c->st == C_LINGER &&
			    now < c->t_accept + s->lim.total_ms) {
				/* Still reading the response: let it, up to the deadline. */
				c->deadline = c->t_accept + s->lim.total_ms;
			} else if (now >= c->deadline) {
				count(s, MREJ_TIMEOUT);
				conn_abort(s, c);
				continue;
			}
			if (c->deadline < next)
				next = c->deadline;
			s->pfd[n] = (struct pollfd){ .fd = c->fd,
						     .events = c->st == C_WRITE ? POLLOUT : POLLIN };
			s->pfd_conn[n++] = (int)i;
		}
		s->pfd[n] = (struct pollfd){ .fd = s->wake, .events = POLLIN };
		s->pfd_conn[n++] = -1;
		if (now >= s->paused_until) {
			s->pfd[n] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };
			s->pfd_conn[n++] = -1;
		} else if (s->paused_until < next) {
			next = s->paused_until;
		}
		timeout = next == UINT64_MAX ? -1 : (int)(next - now + 1);
		if (poll(s->pfd, n, timeout) < 0) {
			if (errno != EINTR)
				usleep(10000);  /* ENOMEM: try again, the stop wake included */
			continue;
		}
		for (nfds_t i = 0; i < n; i++) {
			struct conn *c;

			if (!s->pfd[i].revents)
				continue;
			if (s->pfd_conn[i] < 0) {
				if (s->pfd[i].fd == s->wake)
					goto out;
				accept_some(s);
				continue;
			}
			c = &s->conns[s->pfd_conn[i]];
			if (c->st == C_HEAD)
				conn_read_head(s, c);
			else if (c->st == C_WRITE)
				conn_write(s, c);
			else if (c->st == C_LINGER)
				conn_drain(s, c);
		}
	}
out:
	for (unsigned i = 0; i < s->lim.max_conns; i++)
		if (s->conns[i].st != C_FREE)
			conn_close(s, &s->conns[i]);
	return NULL;
}

static void server_free(struct metrics_server *s)
{
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->wake >= 0)
		close(s->wake);
	body_put(s->cur);
	pthread_mutex_destroy(&s->mu);
	free(s->conns);
	free(s->heads);
	free(s->spare);
	free(s->pfd);
	free(s->pfd_conn);
	free(s);
}

struct metrics_server *metrics_start(int fd, const struct metrics_limits *lim)
{
	struct metrics_server *s;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	sigset_t all, old;
	int err;

	if (fd < 0)
		return NULL;  /* metrics_listen said why */
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		cs_fail("serve metrics", "out of memory");
		return NULL;
	}
	s->lim = lim ? *lim : (struct metrics_limits){ 64, 8192, 5000, 10000, 1, 0 };
	if (!s->lim.stall_ms)
		s->lim.stall_ms = METRICS_STALL_MS;
	if (!s->lim.max_conns)
		s->lim.max_conns = 1;
	if (s->lim.head_max < 16)
		s->lim.head_max = 16;
	s->lfd = fd;
	s->port = -1;
	pthread_mutex_init(&s->mu, NULL);
	s->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->conns = calloc(s->lim.max_conns, sizeof(*s->conns));
	s->heads = malloc(s->lim.max_conns * s->lim.head_max);
	s->spare = malloc(s->lim.head_max);
	s->pfd = calloc(s->lim.max_conns + 2, sizeof(*s->pfd));
	s->pfd_conn = calloc(s->lim.max_conns + 2, sizeof(*s->pfd_conn));
	if (s->wake < 0 || !s->conns || !s->heads || !s->spare || !s->pfd || !s->pfd_conn) {
		cs_fail("serve metrics", "%s", s->wake < 0 ? strerror(errno) : "out of memory");
		server_free(s);
		return NULL;
	}
	/* A connection reaches accept once it has sent data (or after defer_s):
	 * a scraper arrives with its head, a silent client waits in the kernel. */
	if (s->lim.defer_s)
		setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &s->lim.defer_s, sizeof(s->lim.defer_s));
	for (unsigned i = 0; i < s->lim.max_conns; i++) {
		s->conns[i].fd = -1;
		s->conns[i].head = s->heads + (size_t)i * s->lim.head_max;
	}
	if (!getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		if (ss.ss_family == AF_INET)
			s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	/* Signals stay with the threads that handle them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&s->thr, NULL, server_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		cs_fail("serve metrics", "cannot start its thread: %s", strerror(err));
		server_free(s);
		return NULL;
	}
	return s;
}

int metrics_port(const struct metrics_server *s)
{
	return s ? s->port : -1;
}

void metrics_stop(struct metrics_server *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	(void)!write(s->wake, &one, sizeof(one));
	pthread_join(s->thr, NULL);
	server_free(s);
}
