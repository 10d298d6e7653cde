/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Prometheus text exposition for `connscope daemon --metrics-addr HOST:PORT`.
 *
 * The event loop renders the exposition into a snapshot (metrics_publish, at
 * most once a second) and a thread of its own serves the latest snapshot: a
 * slow or hostile scraper costs the loop nothing, and the server's memory is
 * bounded whatever its clients do (see metrics.c for the limits). */
#ifndef CONNSCOPE_METRICS_H
#define CONNSCOPE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "expo.h"
#include "track.h"

/* The server's bounds; metrics_start(fd, NULL) takes the defaults below. */
struct metrics_limits {
	unsigned max_conns;  /* connections served at once (64); past it, refused */
	size_t head_max;     /* bytes of request head (8 KiB); past it, 431 */
	unsigned head_ms;    /* from accept to the whole request head (5 s) */
	unsigned total_ms;   /* from accept to the whole response written (10 s) */
	int defer_s;         /* TCP_DEFER_ACCEPT: accept once data came, or after (1 s) */
	unsigned stall_ms;   /* /healthz fails when the loop's last heartbeat is older
				(0: METRICS_STALL_MS) */
};

/* Why the server refused a connection, cut it off, or answered with an error:
 * the reason label of connscope_metrics_rejected_total. */
enum metrics_reject {
	MREJ_CONNECTIONS,  /* too_many_connections: accepted and closed at once */
	MREJ_EVICTED,      /* evicted: a silent or slow head dropped to make room */
	MREJ_TIMEOUT,      /* timeout: a deadline passed */
	MREJ_HEAD_LARGE,   /* header_too_large: 431 */
	MREJ_BAD_REQUEST,  /* bad_request: 400 */
	MREJ_NOT_FOUND,    /* not_found: 404 */
	MREJ_METHOD,       /* method_not_allowed: 405 */
	MREJ_NO_SNAPSHOT,  /* no_snapshot: 503, nothing published yet */
	MREJ_UNHEALTHY,    /* unhealthy: /healthz answered 503 */
	MREJ_N
};

struct metrics_server;

/* Listen on HOST:PORT (numeric or a name; [v6]:port accepted; port 0 picks
 * one). -1 with one line on error. */
int metrics_listen(const char *addr);
/* Serve fd (from metrics_listen; the server owns it from now on, even on
 * error) from a thread of its own. NULL with one line on error. */
struct metrics_server *metrics_start(int fd, const struct metrics_limits *lim);
/* The port the listener is bound to (host order), or -1. */
int metrics_port(const struct metrics_server *s);
/* Render the exposition from the tracker and the tool's counters and make it
 * the body every later scrape gets. Called from the event loop; never waits
 * on a client. */
void metrics_publish(struct metrics_server *s, struct expo *x, struct tracker *t,
		     const struct metrics_self *self);
/* /healthz: the loop says it turned (every turn), and what is wrong (NULL: all
 * is well). It answers 200 "ok" unless nothing is published yet, the last
 * heartbeat is older than stall_ms, or a problem is set: then 503 and why. */
#define METRICS_STALL_MS 10000
void metrics_heartbeat(struct metrics_server *s);
void metrics_set_problem(struct metrics_server *s, const char *problem);
/* Publish this text as the body, as is (a copy). 0, or -1 out of memory. */
int metrics_publish_text(struct metrics_server *s, const char *text, size_t len);
uint64_t metrics_rejected(const struct metrics_server *s, enum metrics_reject why);
/* Wake the thread, join it (within a poll round: milliseconds), close every
 * socket, free everything. NULL is fine. */
void metrics_stop(struct metrics_server *s);

#endif
