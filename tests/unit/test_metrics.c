// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The /metrics server on its own thread, over real loopback sockets: 503 before
 * the first snapshot, 200 with the snapshot after, the error answers, the head
 * cap, the deadlines, the connection cap and eviction, a slow reader's partial
 * writes, and a stop that joins at once. Short limits keep it quick. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "check.h"
#include "metrics.h"
#include "record.h"
#include "track.h"

static double ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		perror("connect");
		abort();
	}
	return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Read to end of stream (or error, or timeout_ms): a malloc'ed, NUL-terminated
 * copy; *len its length, *eof whether the server closed (cleanly or by reset)
 * rather than the time running out. */
static char *read_all(int fd, int timeout_ms, size_t *len, bool *eof)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	double end = ms_now() + timeout_ms;

	*eof = false;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(end - ms_now());
		ssize_t r;

		if (left <= 0 || poll(&p, 1, left) <= 0)
			break;
		if (n + 4096 + 1 > cap)
			buf = realloc(buf, cap *= 2);
		r = recv(fd, buf + n, cap - n - 1, 0);
		if (r <= 0) {
			*eof = true;
			break;
		}
		n += (size_t)r;
	}
	buf[n] = 0;
	*len = n;
	return buf;
}

struct resp {
	int status;
	char *raw;
	const char *body;
	size_t len, body_len;
	bool eof;
};

static struct resp request(int port, const char *req, size_t n)
{
	struct resp r = {0};
	int fd = dial(port);
	const char *hend;

	send_all(fd, req, n);
	r.raw = read_all(fd, 3000, &r.len, &r.eof);
	close(fd);
	sscanf(r.raw, "HTTP/1.1 %d", &r.status);
	hend = strstr(r.raw, "\r\n\r\n");
	r.body = hend ? hend + 4 : "";
	r.body_len = hend ? r.len - (size_t)(r.body - r.raw) : 0;
	return r;
}

static struct resp get(int port, const char *path)
{
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);

	return request(port, req, (size_t)n);
}

static size_t content_length(const struct resp *r)
{
	const char *p = strstr(r->raw, "Content-Length: ");

	return p ? strtoul(p + 16, NULL, 10) : (size_t)-1;
}

/* Whether the server closed fd within ms (end of stream, or a reset). */
static bool closed_within(int fd, int ms)
{
	size_t len;
	bool eof;
	free(read_all(fd, ms, &len, &eof));
	return eof;
}

static void no_finding(const struct finding_rec *f, void *arg) { (void)f; (void)arg; }
static void no_conn(const struct conn_rec *c, void *arg) { (void)c; (void)arg; }
static void no_summary(const struct summary_rec *s, void *arg) { (void)s; (void)arg; }
static const struct track_sink sink = { no_finding, no_conn, no_summary };

static void answers(void)
{
	struct metrics_limits lim = { .max_conns = 4, .head_max = 1024, .head_ms = 300,
				      .total_ms = 2000 };
	struct metrics_server *s = metrics_start(metrics_listen("127.0.0.1:0"), &lim);
	int port = metrics_port(s);
	struct resp r;

	check(s && port > 0, "server started on 127.0.0.1:0, bound to port %d", port);

	r = get(port, "/metrics");
	check(r.status == 503, "before the first snapshot: 503 (got %d)", r.status);
	check(r.body_len > 0 && r.body_len == content_length(&r),
	      "503 carries a short text body (%zu bytes, Content-Length agrees)", r.body_len);
	check(r.eof, "503: the server closes the connection");
	free(r.raw);
	check(metrics_rejected(s, MREJ_NO_SNAPSHOT) == 1, "no_snapshot counted");

	metrics_publish_text(s, "a_metric 1\n", 11);
	r = get(port, "/metrics");
	check(r.status == 200 && r.body_len == 11 && !memcmp(r.body, "a_metric 1\n", 11),
	      "after publish: 200 with the body (%d, %zu bytes)", r.status, r.body_len);
	check(strstr(r.raw, "Content-Type: text/plain; version=0.0.4\r\n") != NULL,
	      "200: Prometheus text content type");
	check(content_length(&r) == 11, "200: Content-Length is the body's");
	free(r.raw);
	r = get(port, "/");
	check(r.status == 200 && r.body_len == 11, "GET /: 200");
	free(r.raw);
	r = get(port, "/metrics?name[]=x");
	check(r.status == 200 && r.body_len == 11, "GET /metrics?query: 200");
	free(r.raw);
	r = request(port, "GET /metrics HTTP/1.0\n\n", 23);
	check(r.status == 200 && r.body_len == 11, "bare LF line ends: 200");
	free(r.raw);

	r = get(port, "/nope");
	check(r.status == 404, "GET /nope: 404 (got %d)", r.status);
	free(r.raw);
	r = get(port, "/metricsx");
	check(r.status == 404, "GET /metricsx: 404 (got %d)", r.status);
	free(r.raw);
	r = request(port, "POST /metrics HTTP/1.1\r\n\r\n", 26);
	check(r.status == 405, "POST: 405 (got %d)", r.status);
	free(r.raw);
	r = request(port, "garbage\r\n\r\n", 11);
	check(r.status == 400, "a request line without method, path, version: 400 (got %d)",
	      r.status);
	free(r.raw);
	r = request(port, "\0\0\0\r\n\r\n", 7);
	check(r.status == 400, "NUL bytes: 400 (got %d)", r.status);
	free(r.raw);
	check(metrics_rejected(s, MREJ_NOT_FOUND) == 2 && metrics_rejected(s, MREJ_METHOD) == 1 &&
	      metrics_rejected(s, MREJ_BAD_REQUEST) == 2, "404, 405 and 400 counted");

	/* A head past the cap, with no end: 431, and the answer arrives whole. */
	{
		char big[2000];

		memset(big, 'A', sizeof(big));
		r = request(port, big, sizeof(big));
		check(r.status == 431, "a 2000-byte head over a 1024 cap: 431 (got %d)", r.status);
		free(r.raw);
	}
	/* A megabyte of garbage: the server reads the cap, answers, drains the rest. */
	{
		size_t n = 1 << 20;
		char *junk = malloc(n);

		for (size_t i = 0; i < n; i++)
			junk[i] = (char)(i * 7 + 1);
		r = request(port, junk, n);
		check(r.status == 431 || r.status == 400 || r.status == 405,
		      "1 MB of garbage: an error answer (got %d)", r.status);
		free(r.raw);
		free(junk);
	}
	check(metrics_rejected(s, MREJ_HEAD_LARGE) >= 1, "431 counted");

	/* Silent and trickling clients are cut off at the head deadline (300 ms). */
	{
		uint64_t before = metrics_rejected(s, MREJ_TIMEOUT);
		int fd = dial(port), fd2 = dial(port);
		double t0 = ms_now(), dt;

		send_all(fd2, "GET /met", 8);
		check(closed_within(fd, 3000), "a silent client is closed");
		dt = ms_now() - t0;
		check(dt > 200 && dt < 1500, "... at its head deadline (%.0f ms, want ~300)", dt);
		check(closed_within(fd2, 3000), "a client that sent half a head is closed too");
		close(fd);
		close(fd2);
		check(metrics_rejected(s, MREJ_TIMEOUT) == before + 2, "timeouts counted (%llu)",
		      (unsigned long long)(metrics_rejected(s, MREJ_TIMEOUT) - before));
	}

	/* Past max_conns (4), a new connection is closed at once while the others
	 * are sending their heads and young; they are served or cut off as usual. */
	{
		int fds[4], extra;
		uint64_t before = metrics_rejected(s, MREJ_CONNECTIONS);
		double t0;

		for (int i = 0; i < 4; i++) {
			fds[i] = dial(port);
			send_all(fds[i], "GET /", 5);
		}
		usleep(50000);
		t0 = ms_now();
		extra = dial(port);
		check(closed_within(extra, 1000) && ms_now() - t0 < 200,
		      "the 5th connection is closed at once (%.0f ms)", ms_now() - t0);
		close(extra);
		check(metrics_rejected(s, MREJ_CONNECTIONS) == before + 1,
		      "too_many_connections counted");
		for (int i = 0; i < 4; i++)
			close(fds[i]);
		usleep(100000);
		r = get(port, "/metrics");
		check(r.status == 200, "once they are gone, scrapes are served again");
		free(r.raw);
	}

	/* A slow reader of a 4 MB body: partial writes, the body intact at the
	 * reader's pace, while another scrape is served meanwhile; a publish in
	 * between leaves the body being written alone. */
	{
		size_t n = 4 << 20, got = 0;
		char *big = malloc(n), *buf = malloc(n + 4096);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rcv = 65536;
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		double t0;
		bool ok;

		for (size_t i = 0; i < n; i++)
			big[i] = (char)('a' + i % 26);
		metrics_publish_text(s, big, n);
		/* A small window, set before connect: the server's writes must stop short. */
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
			abort();
		send_all(fd, "GET /metrics HTTP/1.1\r\n\r\n", 25);
		usleep(200000);
		metrics_publish_text(s, "b 2\n", 4);
		t0 = ms_now();
		r = get(port, "/metrics");
		check(r.status == 200 && r.body_len == 4 && ms_now() - t0 < 100,
		      "another scrape is served at once while a slow reader holds a 4 MB body "
		      "(%.1f ms)", ms_now() - t0);
		free(r.raw);
		for (;;) {
			ssize_t k = recv(fd, buf + got, (n + 4096 - got) < 16384 ? n + 4096 - got : 16384, 0);

			if (k <= 0)
				break;
			got += (size_t)k;
			usleep(1000);
		}
		{
			char *b = memmem(buf, got, "\r\n\r\n", 4);

			ok = b && got - (size_t)(b + 4 - buf) == n && !memcmp(b + 4, big, n);
		}
		check(ok, "the slow reader got the whole 4 MB snapshot it asked for (%zu bytes in "
		      "%.0f ms)", got, ms_now() - t0);
		close(fd);
		free(big);
		free(buf);
	}

	/* A reader that never reads is cut off at the total deadline (2 s), with a
	 * reset: nothing is left queued for it. */
	{
		size_t n = 8 << 20, got = 0;
		char *big = calloc(1, n), *buf = malloc(65536);
		uint64_t before = metrics_rejected(s, MREJ_TIMEOUT);
		int fd = dial(port);
		double t0 = ms_now(), dt;
		ssize_t k;

		metrics_publish_text(s, big, n);
		send_all(fd, "GET /metrics HTTP/1.1\r\n\r\n", 25);
		usleep(2300000);
		while ((k = recv(fd, buf, 65536, 0)) > 0)
			got += (size_t)k;
		dt = ms_now() - t0;
		check(k < 0 && got < n && dt < 3000,
		      "a client that does not read is reset at the total deadline (%zu of %zu bytes, "
		      "%.0f ms)", got, n, dt);
		check(metrics_rejected(s, MREJ_TIMEOUT) == before + 1, "that timeout counted");
		close(fd);
		free(big);
		free(buf);
	}

	/* The exposition names the server's counters. */
	{
		struct cs_opts o = { .close_wait_threshold_s = 30 };
		struct tracker *t = track_new(&o, NULL, false, &sink, NULL);
		struct metrics_self self = { .events = 5, .lost = 0, .cpu_ms = 1500 };
		struct expo *x = expo_new(0);

		metrics_publish(s, x, t, &self);
		r = get(port, "/metrics");
		check(r.status == 200 && strstr(r.body, "\nconnscope_events_total 5\n") &&
		      strstr(r.body, "# TYPE connscope_metrics_rejected_total counter\n") &&
		      strstr(r.body, "connscope_metrics_rejected_total{reason=\"no_snapshot\"} 1\n") &&
		      strstr(r.body, "connscope_metrics_rejected_total{reason=\"too_many_connections\"} "
				     "1\n") &&
		      strstr(r.body, "connscope_metrics_rejected_total{reason=\"evicted\"} 0\n"),
		      "the exposition has connscope_metrics_rejected_total by reason");
		free(r.raw);
		expo_free(x);
		track_free(t);
	}

	/* Stop, with connections open in every state: joined at once. */
	{
		int a = dial(port), b = dial(port);
		double t0;

		send_all(b, "GET /me", 7);
		usleep(50000);
		t0 = ms_now();
		metrics_stop(s);
		check(ms_now() - t0 < 100, "metrics_stop joins within 100 ms (%.1f ms)", ms_now() - t0);
		check(closed_within(a, 500) && closed_within(b, 500), "and closes its clients");
		close(a);
		close(b);
	}
}

/* Room for a new connection is made by evicting a silent one at once, or one
 * still sending its head after 250 ms, or any head for a whole request;
 * otherwise the newcomer is closed. */
static void eviction(void)
{
	struct metrics_limits lim = { .max_conns = 2, .head_max = 1024, .head_ms = 5000,
				      .total_ms = 10000 };
	struct metrics_server *s = metrics_start(metrics_listen("127.0.0.1:0"), &lim);
	int port = metrics_port(s), a, b, c, d;
	struct resp r;
	double t0;

	metrics_publish_text(s, "x 1\n", 4);
	a = dial(port);
	b = dial(port);
	send_all(b, "G", 1);
	usleep(20000);
	t0 = ms_now();
	r = get(port, "/metrics");
	check(r.status == 200 && ms_now() - t0 < 500,
	      "slots full, one silent: a scrape is served at once (%d, %.0f ms)", r.status,
	      ms_now() - t0);
	free(r.raw);
	check(metrics_rejected(s, MREJ_EVICTED) == 1, "evicted counted");
	check(closed_within(a, 500), "the silent one was the one evicted");
	close(a);

	close(b);
	metrics_stop(s);

	/* A server of one slot, so that each case starts from known ages. */
	lim.max_conns = 1;
	s = metrics_start(metrics_listen("127.0.0.1:0"), &lim);
	port = metrics_port(s);
	metrics_publish_text(s, "x 1\n", 4);
	c = dial(port);
	send_all(c, "G", 1);   /* (the listener defers accept until a client speaks) */
	usleep(20000);
	d = dial(port);
	send_all(d, "G", 1);
	check(closed_within(d, 1000) && metrics_rejected(s, MREJ_CONNECTIONS) == 1,
	      "the slot holds a young partial head: a newcomer's partial head is closed at once");
	close(d);
	t0 = ms_now();
	r = get(port, "/metrics");
	check(r.status == 200 && ms_now() - t0 < 500,
	      "but a whole request takes the place of the partial head (%d)", r.status);
	free(r.raw);
	check(metrics_rejected(s, MREJ_EVICTED) == 1 && closed_within(c, 500),
	      "the partial head was evicted");
	/* (A partial head past 250 ms giving way to a newcomer depends on when the
	 * server's thread, at nice 10, gets to run: the live scraper test covers
	 * it under a real attack, where it is counted, not timed.) */
	close(c);
	metrics_stop(s);
	metrics_stop(NULL);
}

/* Connections whose response was delivered make room before anyone else: a run
 * of scrapes accepted in one burst (the thread was held up) fills every slot
 * with answered connections whose clients have not closed yet, and the next
 * scrape must still be served, not refused. */
static void answered(void)
{
	struct metrics_limits lim = { .max_conns = 2, .head_max = 1024, .head_ms = 5000,
				      .total_ms = 10000 };
	struct metrics_server *s = metrics_start(metrics_listen("127.0.0.1:0"), &lim);
	int port = metrics_port(s), kept[2];
	uint64_t refused = 0;
	struct resp r;
	size_t len;
	bool eof;

	metrics_publish_text(s, "x 1\n", 4);
	for (int i = 0; i < 2; i++) {
		char *got;

		kept[i] = dial(port);
		send_all(kept[i], "GET /metrics HTTP/1.1\r\n\r\n", 25);
		got = read_all(kept[i], 3000, &len, &eof);
		check(eof && !strncmp(got, "HTTP/1.1 200", 12),
		      "client %d has its whole answer and keeps its socket open", i);
		free(got);
	}
	usleep(20000);  /* (their kernels acknowledge the server's FIN) */
	r = get(port, "/metrics");
	check(r.status == 200, "both slots answered, clients still there: a scrape is served (%d)",
	      r.status);
	free(r.raw);
	for (int i = 0; i < MREJ_N; i++)
		refused += metrics_rejected(s, i);
	check(refused == 0, "no one refused, evicted or timed out (%llu)",
	      (unsigned long long)refused);
	for (int i = 0; i < 2; i++)
		close(kept[i]);
	metrics_stop(s);
}

/* With TCP_DEFER_ACCEPT, silent clients wait in the kernel: even one slot serves. */
static void deferred(void)
{
	struct metrics_limits lim = { .max_conns = 1, .head_max = 1024, .head_ms = 5000,
				      .total_ms = 10000, .defer_s = 2 };
	struct metrics_server *s = metrics_start(metrics_listen("127.0.0.1:0"), &lim);
	int port = metrics_port(s), silent[3];
	struct resp r;
	uint64_t refused = 0;

	metrics_publish_text(s, "x 1\n", 4);
	for (int i = 0; i < 3; i++)
		silent[i] = dial(port);
	usleep(100000);
	r = get(port, "/metrics");
	check(r.status == 200, "3 silent clients, 1 slot, deferred accept: a scrape is served");
	free(r.raw);
	for (int i = 0; i < MREJ_N; i++)
		refused += metrics_rejected(s, i);
	check(refused == 0, "and no one was refused or evicted (%llu)", (unsigned long long)refused);
	for (int i = 0; i < 3; i++)
		close(silent[i]);
	metrics_stop(s);
}

/* /healthz: 503 while starting, 200 "ok" once published and turning, 503 with
 * the problem the loop set, and 503 once its heartbeat is older than stall_ms. */
static void healthz(void)
{
	struct metrics_limits lim = { .max_conns = 4, .head_max = 1024, .head_ms = 2000,
				      .total_ms = 3000, .stall_ms = 300 };
	struct metrics_server *s = metrics_start(metrics_listen("127.0.0.1:0"), &lim);
	int port = metrics_port(s);
	struct resp r;

	r = get(port, "/healthz");
	check(r.status == 503 && strstr(r.body, "starting"), "starting: 503 (%d %s)", r.status,
	      r.body ? r.body : "");
	free(r.raw);
	metrics_publish_text(s, "x 1\n", 4);
	metrics_heartbeat(s);
	r = get(port, "/healthz");
	check(r.status == 200 && !strcmp(r.body, "ok\n"), "published, turning: 200 ok (%d)",
	      r.status);
	free(r.raw);
	metrics_set_problem(s, "1 BPF link detached");
	r = get(port, "/healthz");
	check(r.status == 503 && strstr(r.body, "1 BPF link detached"),
	      "a problem set: 503 naming it (%d %s)", r.status, r.body ? r.body : "");
	free(r.raw);
	metrics_set_problem(s, NULL);
	metrics_heartbeat(s);
	r = get(port, "/healthz?verbose");
	check(r.status == 200, "cleared: 200 again (%d)", r.status);
	free(r.raw);
	usleep(450000);
	r = get(port, "/healthz");
	check(r.status == 503 && strstr(r.body, "event loop stalled"),
	      "no heartbeat for 450 ms of a 300 ms bound: 503 stalled (%d %s)", r.status,
	      r.body ? r.body : "");
	free(r.raw);
	r = get(port, "/metrics");
	check(r.status == 200, "/metrics still answers while /healthz fails (%d)", r.status);
	free(r.raw);
	check(metrics_rejected(s, MREJ_UNHEALTHY) == 3, "unhealthy answers counted (%llu)",
	      (unsigned long long)metrics_rejected(s, MREJ_UNHEALTHY));
	metrics_stop(s);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	healthz();
	answers();
	eviction();
	answered();
	deferred();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
