// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * connload: loopback TCP connect/accept/close load generator for `make bench`.
 *
 * A server (one epoll loop per thread, SO_REUSEPORT listeners on 127.0.0.1 and
 * several ports) accepts, reads the client's bytes up to EOF and closes, so the
 * server side does an ordinary passive close (CLOSE_WAIT -> LAST_ACK). Client
 * workers connect, send a few bytes and close (active close, FIN_WAIT -> TIME_WAIT),
 * then repeat. No resets are involved anywhere, unless --close says otherwise:
 *   --close fin         the above (default)
 *   --close rst-client  the client sets SO_LINGER {1, 0} before its close(): it
 *                       sends a RST instead of a FIN and leaves no TIME_WAIT; the
 *                       server's read sees ECONNRESET (counted as server_resets,
 *                       not as an error) and closes
 *   --close rst-server  the client closes with a FIN; the server, once it has read
 *                       EOF, closes with SO_LINGER {1, 0}: a RST answers the FIN
 *
 * Clients spread over source addresses 127.0.0.2 .. 127.0.0.(1+N) and over the
 * server ports. IP_BIND_ADDRESS_NO_PORT defers the port choice to connect(), so
 * the kernel picks an ephemeral port free for the whole 4-tuple; lingering
 * TIME_WAIT sockets then do not exhaust the client's ports.
 *
 * Modes:
 *   --closed-loop   every worker connects back to back: maximum rate (conns/s)
 *   --rate R        open loop: connection k of the run is due at t0 + k/R,
 *                   spread round-robin over the workers; late work is done as
 *                   soon as possible, and nothing is attempted after the end.
 * The run always ends by itself: clients stop at --seconds, the server drains for
 * at most --drain-ms, and a watchdog alarm ends a stuck process.
 *
 * Across network namespaces (the bench's DNAT part): --server-netns and
 * --client-netns name namespace files (/run/netns/X); the listeners are made in
 * the first, the client threads run in the second (a socket stays in the namespace
 * it was made in, and new threads inherit the creating thread's). --listen-addr,
 * --connect-addr, --connect-port and --src-base replace 127.0.0.1, the listeners'
 * ports and 127.0.0.2 (a Service VIP and its ports, the client pod's addresses).
 *
 * Output: one JSON object on stdout. Diagnostics on stderr.
 *   gcc -O2 -pthread -o .output/connload tests/bench/connload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_PORTS 64
#define MAX_THREADS 256
#define LISTEN_TAG (1ULL << 63)

enum close_style { CLOSE_FIN, CLOSE_RST_CLIENT, CLOSE_RST_SERVER };
static const char *const close_names[] = { "fin", "rst-client", "rst-server" };

struct cfg {
	bool closed_loop;
	enum close_style close;
	double rate;		/* connections/s, open loop */
	double seconds;
	int workers;
	int server_threads;
	int ports;
	int base_port;
	int src_addrs;		/* 127.0.0.2 .. 127.0.0.(1+src_addrs) */
	int bytes;		/* payload per connection */
	int drain_ms;
	int tick_us;		/* open loop: pacing granularity */
	const char *server_netns;	/* NULL: this process's own */
	const char *client_netns;
	uint32_t listen_addr;	/* host order */
	uint32_t connect_addr;
	int connect_port;	/* first destination port; 0: base_port */
	uint32_t src_base;	/* first client source address */
};

static struct cfg C = {
	.seconds = 4,
	.ports = 8,
	.base_port = 29100,
	.src_addrs = 249,
	.bytes = 16,
	.drain_ms = 3000,
	.tick_us = 1000,
	.listen_addr = 0x7f000001u,
	.connect_addr = 0x7f000001u,
	.src_base = 0x7f000002u,
};

/* Client errors, by the step that failed. */
enum { E_SOCKET, E_BIND, E_CONNECT, E_SEND, E_NR };
static const char *const err_names[E_NR] = { "socket", "bind", "connect", "send" };

struct worker {
	pthread_t tid;
	int id;
	uint64_t attempted;
	uint64_t connected;	/* connect() and send() succeeded */
	uint64_t errs[E_NR];
	int last_errno[E_NR];
	uint64_t late;		/* open loop: started > 10 ms after due */
	uint64_t max_late_ns;
	uint64_t end_ns;
} __attribute__((aligned(64)));

struct server {
	pthread_t tid;
	int id;
	int ep;
	int lfd[MAX_PORTS];
	uint64_t accepted;
	uint64_t closed;
	uint64_t read_errs;
	uint64_t resets;	/* reads that ended in ECONNRESET (expected with rst-client) */
	uint64_t accept_errs;
} __attribute__((aligned(64)));

static struct worker *W;
static struct server *S;
static atomic_int server_stop;
static atomic_int clients_go;
static uint64_t t0_ns, end_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000ULL),
			       .tv_nsec = (long)(t % 1000000000ULL) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "connload: failed to %s: %s\n", what, strerror(err));
	exit(2);
}

static void on_alarm(int sig)
{
	static const char msg[] = "connload: failed to finish: watchdog expired\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing left to do */
	}
	_exit(3);
}

/* ---- server ---------------------------------------------------------------- */

static int listen_on(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("create listening socket", errno);
	a.sin_addr.s_addr = htonl(C.listen_addr);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)))
		die("set SO_REUSEPORT", errno);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a))) {
		fprintf(stderr, "connload: failed to bind %s:%d: %s\n",
			inet_ntoa(a.sin_addr), port, strerror(errno));
		exit(2);
	}
	if (listen(fd, 4096))
		die("listen", errno);
	return fd;
}

/* close() that sends a RST instead of a FIN (and skips TIME_WAIT). */
static void close_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* Read until EAGAIN (returns false: keep the socket) or EOF/error (closes it). */
static bool drain_and_maybe_close(struct server *s, int fd)
{
	char buf[2048];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (n < 0 && errno == ECONNRESET)
			s->resets++;
		else if (n < 0)
			s->read_errs++;
		/* close() also leaves the epoll set */
		if (n == 0 && C.close == CLOSE_RST_SERVER)
			close_rst(fd);
		else
			close(fd);
		s->closed++;
		return true;
	}
}

static void accept_all(struct server *s, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				s->accept_errs++;
			return;
		}
		s->accepted++;
		/* The client writes and closes at once, so data and FIN are often here. */
		if (drain_and_maybe_close(s, fd))
			continue;
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)fd };

		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev))
			die("add a connection to epoll", errno);
	}
}

static void *server_main(void *arg)
{
	struct server *s = arg;
	struct epoll_event evs[256];

	while (!atomic_load_explicit(&server_stop, memory_order_relaxed)) {
		int n = epoll_wait(s->ep, evs, 256, 20);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("wait on epoll", errno);
		}
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;

			if (d & LISTEN_TAG)
				accept_all(s, (int)(d & 0xffffffff));
			else
				drain_and_maybe_close(s, (int)d);
		}
	}
	return NULL;
}

/* ---- clients --------------------------------------------------------------- */

static void fail(struct worker *w, int step, int fd)
{
	w->errs[step]++;
	w->last_errno[step] = errno;
	if (fd >= 0)
		close(fd);
}

static void one_connection(struct worker *w, uint64_t seq, const char *payload)
{
	struct sockaddr_in src = { .sin_family = AF_INET };
	struct sockaddr_in dst = { .sin_family = AF_INET };
	int one = 1;
	int fd;

	w->attempted++;
	src.sin_addr.s_addr = htonl(C.src_base + (uint32_t)(seq % (uint64_t)C.src_addrs));
	dst.sin_addr.s_addr = htonl(C.connect_addr);
	dst.sin_port = htons((uint16_t)(C.connect_port + (int)((seq / (uint64_t)C.src_addrs) %
								 (uint64_t)C.ports)));

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(w, E_SOCKET, -1);
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)))
		return fail(w, E_BIND, fd);
	while (connect(fd, (struct sockaddr *)&dst, sizeof(dst))) {
		if (errno != EINTR)
			return fail(w, E_CONNECT, fd);
	}
	if (send(fd, payload, (size_t)C.bytes, MSG_NOSIGNAL) != C.bytes)
		return fail(w, E_SEND, fd);
	if (C.close == CLOSE_RST_CLIENT)
		close_rst(fd);
	else
		close(fd);
	w->connected++;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char payload[1024];
	uint64_t k = 0;

	memset(payload, 'x', sizeof(payload));
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	while (!atomic_load(&clients_go))
		;
	if (C.closed_loop) {
		for (;; k++) {
			if ((k & 15) == 0 && now_ns() >= end_ns)
				break;
			one_connection(w, k * (uint64_t)C.workers + (uint64_t)w->id, payload);
		}
	} else {
		/* Connection number seq (of the whole run) is due at t0 + seq / rate. */
		for (;; k++) {
			uint64_t seq = k * (uint64_t)C.workers + (uint64_t)w->id;
			uint64_t due = t0_ns + (uint64_t)((double)seq * 1e9 / C.rate);
			uint64_t now;

			if (due >= end_ns)
				break;
			now = now_ns();
			if (now >= end_ns)
				break;
			if (now < due) {
				/* Wake on tick boundaries: the connections due within a tick go
				 * out back to back, instead of one wake-up each. */
				uint64_t tick = (uint64_t)C.tick_us * 1000ULL;

				sleep_until(tick ? t0_ns + (due - t0_ns + tick - 1) / tick * tick : due);
			} else {
				uint64_t late = now - due;

				if (late > w->max_late_ns)
					w->max_late_ns = late;
				if (late > 10000000ULL)
					w->late++;
			}
			one_connection(w, seq, payload);
		}
	}
	w->end_ns = now_ns();
	return NULL;
}

/* ---- main ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: connload (--closed-loop | --rate R) [--seconds S] [--workers N]\n"
		"                [--server-threads N] [--ports N] [--base-port P]\n"
		"                [--src-addrs N] [--bytes N] [--drain-ms MS]\n"
		"                [--close fin|rst-client|rst-server]\n"
		"Loopback TCP connect/send/close load. Prints one JSON line.\n"
		"  --closed-loop       connect back to back, report the maximum rate\n"
		"  --rate R            open loop, R connections/s over all workers\n"
		"  --seconds S         duration of the load (default 4)\n"
		"  --workers N         client threads (default: number of CPUs)\n"
		"  --server-threads N  accept threads (default: number of CPUs)\n"
		"  --ports N           server ports base..base+N-1 (default 8)\n"
		"  --base-port P       first server port (default 29100)\n"
		"  --src-addrs N       client sources 127.0.0.2.. (default 249, max 253)\n"
		"  --bytes N           bytes each client sends (default 16, max 1024)\n"
		"  --drain-ms MS       how long the server may drain after the load (3000)\n"
		"  --close STYLE       fin: both sides close normally (default); rst-client:\n"
		"                      the client closes with SO_LINGER 0 (a RST); rst-server:\n"
		"                      the server does, after the client's FIN\n"
		"  --tick-us US        open loop: wake at most every US to send what is due;\n"
		"                      0 wakes for each connection (default 1000)\n"
		"  --server-netns F    make the listeners in the network namespace F\n"
		"  --client-netns F    run the clients in the network namespace F\n"
		"  --listen-addr A     listeners' address (default 127.0.0.1)\n"
		"  --connect-addr A    clients' destination (default 127.0.0.1)\n"
		"  --connect-port P    clients' first destination port (default base-port)\n"
		"  --src-base A        first client source address (default 127.0.0.2)\n");
}

static double parse_num(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "connload: failed to parse %s: '%s' (expected %g..%g)\n", opt, s, lo,
			hi);
		exit(2);
	}
	return v;
}

static uint32_t parse_addr(const char *opt, const char *s)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1) {
		fprintf(stderr, "connload: failed to parse %s: '%s' (an IPv4 address)\n", opt, s);
		exit(2);
	}
	return ntohl(a.s_addr);
}

/* Move the calling thread into the network namespace file PATH. */
static void enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || setns(fd, CLONE_NEWNET)) {
		fprintf(stderr, "connload: failed to enter the network namespace %s: %s\n", path,
			strerror(errno));
		exit(2);
	}
	close(fd);
}

static long cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 64 ? 64 : n;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "closed-loop", no_argument, NULL, 'c' },
		{ "rate", required_argument, NULL, 'r' },
		{ "seconds", required_argument, NULL, 's' },
		{ "workers", required_argument, NULL, 'w' },
		{ "server-threads", required_argument, NULL, 't' },
		{ "ports", required_argument, NULL, 'p' },
		{ "base-port", required_argument, NULL, 'b' },
		{ "src-addrs", required_argument, NULL, 'a' },
		{ "bytes", required_argument, NULL, 'n' },
		{ "drain-ms", required_argument, NULL, 'd' },
		{ "tick-us", required_argument, NULL, 'k' },
		{ "server-netns", required_argument, NULL, 'S' },
		{ "client-netns", required_argument, NULL, 'C' },
		{ "listen-addr", required_argument, NULL, 'L' },
		{ "connect-addr", required_argument, NULL, 'A' },
		{ "connect-port", required_argument, NULL, 'P' },
		{ "src-base", required_argument, NULL, 'B' },
		{ "close", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct rusage ru;
	struct rlimit rl;
	uint64_t attempted = 0, connected = 0, accepted = 0, closed = 0, read_errs = 0, resets = 0;
	uint64_t accept_errs = 0, late = 0, max_late = 0, errs[E_NR] = { 0 }, last_end = 0;
	int last_errno[E_NR] = { 0 };
	uint64_t drain_start, drained_ns;
	double elapsed;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': C.closed_loop = true; break;
		case 'r': C.rate = parse_num("--rate", optarg, 1, 1e7); break;
		case 's': C.seconds = parse_num("--seconds", optarg, 0.1, 3600); break;
		case 'w': C.workers = (int)parse_num("--workers", optarg, 1, MAX_THREADS); break;
		case 't': C.server_threads = (int)parse_num("--server-threads", optarg, 1, MAX_THREADS); break;
		case 'p': C.ports = (int)parse_num("--ports", optarg, 1, MAX_PORTS); break;
		case 'b': C.base_port = (int)parse_num("--base-port", optarg, 1, 65535); break;
		case 'a': C.src_addrs = (int)parse_num("--src-addrs", optarg, 1, 253); break;
		case 'n': C.bytes = (int)parse_num("--bytes", optarg, 1, 1024); break;
		case 'd': C.drain_ms = (int)parse_num("--drain-ms", optarg, 0, 60000); break;
		case 'k': C.tick_us = (int)parse_num("--tick-us", optarg, 0, 100000); break;
		case 'S': C.server_netns = optarg; break;
		case 'C': C.client_netns = optarg; break;
		case 'L': C.listen_addr = parse_addr("--listen-addr", optarg); break;
		case 'A': C.connect_addr = parse_addr("--connect-addr", optarg); break;
		case 'P': C.connect_port = (int)parse_num("--connect-port", optarg, 1, 65535); break;
		case 'B': C.src_base = parse_addr("--src-base", optarg); break;
		case 'x':
			if (!strcmp(optarg, "fin")) {
				C.close = CLOSE_FIN;
			} else if (!strcmp(optarg, "rst-client")) {
				C.close = CLOSE_RST_CLIENT;
			} else if (!strcmp(optarg, "rst-server")) {
				C.close = CLOSE_RST_SERVER;
			} else {
				fprintf(stderr, "connload: failed to parse --close: '%s' (fin, "
					"rst-client or rst-server)\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || C.closed_loop == (C.rate > 0)) {
		usage(stderr);
		return 2;
	}
	if (C.base_port + C.ports - 1 > 65535) {
		fprintf(stderr, "connload: failed to choose ports: base-port + ports exceeds 65535\n");
		return 2;
	}
	if (!C.connect_port)
		C.connect_port = C.base_port;
	if (C.connect_port + C.ports - 1 > 65535) {
		fprintf(stderr, "connload: failed to choose ports: connect-port + ports exceeds 65535\n");
		return 2;
	}
	if (!C.workers)
		C.workers = (int)cpus();
	if (!C.server_threads)
		C.server_threads = (int)cpus();

	/* Watchdog: load + drain + a generous margin. */
	signal(SIGALRM, on_alarm);
	alarm((unsigned)(C.seconds + C.drain_ms / 1000.0 + 30));
	signal(SIGPIPE, SIG_IGN);
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	W = aligned_alloc(64, sizeof(*W) * (size_t)C.workers);
	S = aligned_alloc(64, sizeof(*S) * (size_t)C.server_threads);
	if (!W || !S)
		die("allocate threads", ENOMEM);
	memset(W, 0, sizeof(*W) * (size_t)C.workers);
	memset(S, 0, sizeof(*S) * (size_t)C.server_threads);

	/* Listeners exist before any client starts. */
	if (C.server_netns)
		enter_netns(C.server_netns);
	for (int i = 0; i < C.server_threads; i++) {
		struct server *s = &S[i];

		s->id = i;
		s->ep = epoll_create1(EPOLL_CLOEXEC);
		if (s->ep < 0)
			die("create epoll", errno);
		for (int p = 0; p < C.ports; p++) {
			struct epoll_event ev = { .events = EPOLLIN };

			s->lfd[p] = listen_on(C.base_port + p);
			ev.data.u64 = LISTEN_TAG | (uint64_t)s->lfd[p];
			if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd[p], &ev))
				die("add a listener to epoll", errno);
		}
		errno = pthread_create(&s->tid, NULL, server_main, s);
		if (errno)
			die("start a server thread", errno);
	}
	if (C.client_netns)
		enter_netns(C.client_netns);
	for (int i = 0; i < C.workers; i++) {
		W[i].id = i;
		errno = pthread_create(&W[i].tid, NULL, worker_main, &W[i]);
		if (errno)
			die("start a client thread", errno);
	}

	t0_ns = now_ns() + 20000000ULL;	/* let every thread reach the start line */
	end_ns = t0_ns + (uint64_t)(C.seconds * 1e9);
	sleep_until(t0_ns);
	atomic_store(&clients_go, 1);
	for (int i = 0; i < C.workers; i++) {
		pthread_join(W[i].tid, NULL);
		attempted += W[i].attempted;
		connected += W[i].connected;
		late += W[i].late;
		if (W[i].max_late_ns > max_late)
			max_late = W[i].max_late_ns;
		if (W[i].end_ns > last_end)
			last_end = W[i].end_ns;
		for (int e = 0; e < E_NR; e++) {
			errs[e] += W[i].errs[e];
			if (W[i].last_errno[e])
				last_errno[e] = W[i].last_errno[e];
		}
	}
	elapsed = (double)(last_end - t0_ns) / 1e9;

	/* Drain: wait until the server has accepted and closed every connection. */
	drain_start = now_ns();
	for (;;) {
		uint64_t a = 0, c = 0;

		for (int i = 0; i < C.server_threads; i++) {
			a += __atomic_load_n(&S[i].accepted, __ATOMIC_RELAXED);
			c += __atomic_load_n(&S[i].closed, __ATOMIC_RELAXED);
		}
		if ((a >= connected && c >= a) ||
		    now_ns() - drain_start > (uint64_t)C.drain_ms * 1000000ULL)
			break;
		usleep(2000);
	}
	drained_ns = now_ns() - drain_start;
	atomic_store(&server_stop, 1);
	for (int i = 0; i < C.server_threads; i++) {
		pthread_join(S[i].tid, NULL);
		accepted += S[i].accepted;
		closed += S[i].closed;
		read_errs += S[i].read_errs;
		resets += S[i].resets;
		accept_errs += S[i].accept_errs;
		for (int p = 0; p < C.ports; p++)
			close(S[i].lfd[p]);
		close(S[i].ep);
	}
	getrusage(RUSAGE_SELF, &ru);

	printf("{\"mode\":\"%s\",\"close\":\"%s\",", C.closed_loop ? "closed" : "open",
	       close_names[C.close]);
	if (!C.closed_loop)
		printf("\"target_rate\":%.0f,\"scheduled\":%.0f,", C.rate, C.rate * C.seconds);
	if (!C.closed_loop)
		printf("\"tick_us\":%d,", C.tick_us);
	printf("\"seconds\":%.3f,\"workers\":%d,\"server_threads\":%d,\"ports\":[%d,%d],"
	       "\"src_addrs\":%d,",
	       elapsed, C.workers, C.server_threads, C.base_port, C.base_port + C.ports - 1,
	       C.src_addrs);
	printf("\"attempted\":%llu,\"connections\":%llu,\"failed\":%llu,\"conns_per_s\":%.1f,",
	       (unsigned long long)attempted, (unsigned long long)connected,
	       (unsigned long long)(attempted - connected), elapsed > 0 ? connected / elapsed : 0.0);
	printf("\"errors\":{");
	for (int e = 0; e < E_NR; e++)
		printf("%s\"%s\":%llu", e ? "," : "", err_names[e], (unsigned long long)errs[e]);
	printf("},\"last_errno\":{");
	for (int e = 0, first = 1; e < E_NR; e++) {
		if (!last_errno[e])
			continue;
		printf("%s\"%s\":\"%s\"", first ? "" : ",", err_names[e], strerror(last_errno[e]));
		first = 0;
	}
	printf("},");
	if (!C.closed_loop)
		printf("\"late_10ms\":%llu,\"max_late_ms\":%.3f,", (unsigned long long)late,
		       max_late / 1e6);
	printf("\"accepted\":%llu,\"server_closed\":%llu,\"server_read_errors\":%llu,"
	       "\"server_resets\":%llu,\"accept_errors\":%llu,\"drain_ms\":%.1f,\"cpu_ms\":%.0f}\n",
	       (unsigned long long)accepted, (unsigned long long)closed,
	       (unsigned long long)read_errs, (unsigned long long)resets,
	       (unsigned long long)accept_errs, drained_ns / 1e6,
	       (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
		       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3);
	fflush(stdout);
	return 0;
}
