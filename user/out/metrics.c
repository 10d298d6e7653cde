// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * A deliberately small HTTP/1.x responder: GET /metrics only, one request per
 * connection, served from the main loop between ring buffer polls (a scrape
 * waits at most one tick). Slow or silent clients are cut off by a receive
 * timeout so they cannot stall the event loop.
 */
#include "metrics.h"
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
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
		if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, 16))
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

/* Label values: backslash, double quote and newline are escaped. */
static void label(FILE *f, const char *name, const char *val, bool last)
{
	fprintf(f, "%s=\"", name);
	for (const char *p = val; *p; p++) {
		if (*p == '\\' || *p == '"')
			fputc('\\', f);
		if (*p == '\n')
			fputs("\\n", f);
		else
			fputc(*p, f);
	}
	fputs(last ? "\"" : "\",", f);
}

static void pod_labels(FILE *f, const struct summary_rec *a)
{
	fputc('{', f);
	if (a->pod->known) {
		label(f, "namespace", a->pod->namespace_, false);
		label(f, "pod", a->pod->name, true);
	} else if (a->pod->is_pod) {
		label(f, "pod_uid", a->pod->uid, true);
	} else {
		label(f, "cgroup", a->pod->cgroup_path[0] ? a->pod->cgroup_path : a->key, true);
	}
	fputc('}', f);
}

struct family {
	const char *name, *type, *help;
	double (*get)(const struct summary_rec *);
};

static double g_opened(const struct summary_rec *a) { return (double)a->tcp.opened; }
static double g_closed(const struct summary_rec *a) { return (double)a->tcp.closed; }
static double g_active(const struct summary_rec *a) { return (double)a->tcp.active; }
static double g_refused(const struct summary_rec *a) { return (double)a->tcp.refused; }
static double g_timeouts(const struct summary_rec *a) { return (double)a->tcp.timeouts; }
static double g_resets(const struct summary_rec *a) { return (double)a->tcp.resets; }
static double g_cw(const struct summary_rec *a) { return (double)a->close_wait.current; }
static double g_stuck(const struct summary_rec *a) { return (double)a->close_wait.stuck; }
static double g_cw_age(const struct summary_rec *a) { return a->close_wait.max_age_s; }
static double g_findings(const struct summary_rec *a) { return (double)a->findings; }

static const struct family families[] = {
	{ "connscope_tcp_opened_total", "counter", "TCP connections established.", g_opened },
	{ "connscope_tcp_closed_total", "counter", "Established TCP connections closed.", g_closed },
	{ "connscope_tcp_active", "gauge", "TCP connections established now.", g_active },
	{ "connscope_tcp_refused_total", "counter", "Connects answered by RST.", g_refused },
	{ "connscope_tcp_timeouts_total", "counter", "Connects that timed out.", g_timeouts },
	{ "connscope_tcp_resets_total", "counter", "Established connections ended by RST.", g_resets },
	{ "connscope_close_wait_sockets", "gauge", "Sockets in CLOSE_WAIT now.", g_cw },
	{ "connscope_close_wait_stuck_sockets", "gauge",
	  "Sockets in CLOSE_WAIT longer than the threshold.", g_stuck },
	{ "connscope_close_wait_max_age_seconds", "gauge", "Age of the oldest CLOSE_WAIT socket.",
	  g_cw_age },
	{ "connscope_findings_total", "counter", "Findings reported.", g_findings },
};

static void render(FILE *f, struct tracker *t, const struct metrics_self *self)
{
	struct summary_rec *pods;
	int n = track_views(t, &pods);

	for (size_t i = 0; n >= 0 && i < sizeof(families) / sizeof(families[0]); i++) {
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", families[i].name, families[i].help,
			families[i].name, families[i].type);
		for (int j = 0; j < n; j++) {
			fputs(families[i].name, f);
			pod_labels(f, &pods[j]);
			fprintf(f, " %.17g\n", families[i].get(&pods[j]));
		}
	}
	if (n >= 0)
		track_views_free(pods, n);
	fprintf(f, "# HELP connscope_events_total Lifecycle edges the kernel side sent.\n"
		   "# TYPE connscope_events_total counter\nconnscope_events_total %llu\n"
		   "# HELP connscope_lost_total Edges that never reached user space (stats.lost: "
		   "ring buffers full and missed program runs, every program).\n"
		   "# TYPE connscope_lost_total counter\nconnscope_lost_total %llu\n"
		   "# HELP connscope_map_full_total Sockets whose state could not be stored "
		   "(stats.map_full: every program's bounded maps).\n"
		   "# TYPE connscope_map_full_total counter\nconnscope_map_full_total %llu\n"
		   "# HELP connscope_parser_desync_total TLS handshakes and HTTP/2 directions whose "
		   "boundaries were lost (stats.parser_desync).\n"
		   "# TYPE connscope_parser_desync_total counter\nconnscope_parser_desync_total %llu\n"
		   "# HELP connscope_cpu_seconds_total CPU time connscope itself used.\n"
		   "# TYPE connscope_cpu_seconds_total counter\nconnscope_cpu_seconds_total %.3f\n",
		(unsigned long long)self->events, (unsigned long long)self->lost,
		(unsigned long long)self->map_full, (unsigned long long)self->parser_desync,
		self->cpu_ms / 1000);
	fprintf(f, "# HELP connscope_output_dropped_total Records not written to stdout: it did "
		   "not keep up and its queue was full, or it failed (stats.output_dropped).\n"
		   "# TYPE connscope_output_dropped_total counter\n");
	for (int i = 0; i < 4; i++)
		fprintf(f, "connscope_output_dropped_total{type=\"%s\"} %llu\n",
			(const char *[]){ "connection", "finding", "summary", "stats" }[i],
			(unsigned long long)self->output_dropped[i]);
}

static void respond(int c, int code, const char *reason, const char *type, const char *body,
		    size_t len)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 code, reason, type, len);

	if (write(c, hdr, n) == n && len)
		(void)!write(c, body, len);
}

static void serve_one(int c, struct tracker *t, const struct metrics_self *self)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	char req[2048];
	size_t got = 0;
	ssize_t r;

	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* Read until the end of the request head, a full buffer or the timeout. */
	while (got < sizeof(req) - 1 && (r = read(c, req + got, sizeof(req) - 1 - got)) > 0) {
		got += (size_t)r;
		req[got] = 0;
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = 0;
	if (strncmp(req, "GET ", 4)) {
		respond(c, 405, "Method Not Allowed", "text/plain", "GET only\n", 9);
		return;
	}
	if (strncmp(req + 4, "/metrics ", 9) && strncmp(req + 4, "/metrics?", 9) &&
	    strncmp(req + 4, "/ ", 2)) {
		respond(c, 404, "Not Found", "text/plain", "see /metrics\n", 13);
		return;
	}
	char *body = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&body, &len);

	if (!f) {
		respond(c, 500, "Internal Server Error", "text/plain", "", 0);
		return;
	}
	render(f, t, self);
	fclose(f);
	respond(c, 200, "OK", "text/plain; version=0.0.4", body, len);
	free(body);
}

void metrics_serve(int fd, struct tracker *t, const struct metrics_self *self)
{
	/* A bounded number per tick: a flood of connects cannot starve the events. */
	for (int i = 0; i < 8; i++) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0)
			return;
		/* accept4 does not inherit O_NONBLOCK; the timeouts bound the reads. */
		serve_one(c, t, self);
		close(c);
	}
}
