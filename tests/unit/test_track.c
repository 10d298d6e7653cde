// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The tracker's TCP timers on an injected clock: edges go in, time is moved by
 * hand, and the findings come out exactly when their thresholds are crossed. */
#include <arpa/inet.h>
#include <sys/socket.h>
#include "check.h"
#include "record.h"
#include "track.h"
#include "track_clock.h"



/* The records the tracker sent, by type and kind. */
static int nfindings, nsummaries;
static char last_kind[64];
static double last_count;
static uint64_t last_ts, last_summary_ts;

static void sink_finding(const struct finding_rec *f, void *arg)
{
	(void)arg;
	nfindings++;
	snprintf(last_kind, sizeof(last_kind), "%s", f->kind);
	last_count = f->detail == FD_FOLD ? (double)f->d.fold.count : -1;
	last_ts = f->ts_real;
}

/* Connection records, and those that closed by a RST sent. */
static int nconns, nconns_rst_out;

static void sink_connection(const struct conn_rec *c, void *arg)
{
	(void)arg;
	nconns++;
	nconns_rst_out += c->close && !strcmp(c->close, "rst_out");
}

static void sink_summary(const struct summary_rec *s, void *arg)
{
	(void)arg;
	nsummaries++;
	last_summary_ts = s->ts_real;
}

static const struct track_sink sink = { sink_finding, sink_connection, sink_summary };

static struct cs_event edge(uint8_t type, uint64_t cookie, uint64_t ts)
{
	struct cs_event e;

	memset(&e, 0, sizeof(e));
	e.type = type;
	e.cookie = cookie;
	e.ts_ns = ts;
	e.start_ns = ts;
	e.cgroup_id = 7;
	e.family = AF_INET;
	e.side = CS_SIDE_CLIENT;
	e.sport = 40000;
	e.dport = 8080;
	inet_pton(AF_INET, "10.0.0.1", e.saddr);
	inet_pton(AF_INET, "10.0.0.2", e.daddr);
	return e;
}

static struct tracker *fresh(const struct cs_opts *o)
{
	struct tracker *t = test_tracker(o, false, &sink);

	nfindings = nsummaries = 0;
	last_kind[0] = 0;
	return t;
}

static void connect_timeout(const struct cs_opts *o)
{
	struct tracker *t;
	struct cs_event e;

	now_ns = 100 * SEC;
	t = fresh(o);
	e = edge(CS_EV_SYN_RETRANS, 1, now_ns);
	track_event(t, &e);
	now_ns += (uint64_t)(o->connect_timeout_s * SEC) - 1;
	track_tick(t);
	check(nfindings == 0, "connect timeout: nothing 1 ns before the timeout (%d findings)",
	      nfindings);
	now_ns += 1;
	track_tick(t);
	check(nfindings == 1 && !strcmp(last_kind, "tcp_connect_timeout"),
	      "connect timeout: one tcp_connect_timeout finding at the timeout (%d, %s)", nfindings,
	      last_kind);
	check(last_ts == now_ns + REAL_OFFSET,
	      "connect timeout: stamped with the tracker's clock (%llu, want %llu)",
	      (unsigned long long)last_ts, (unsigned long long)(now_ns + REAL_OFFSET));
	now_ns += 60 * SEC;
	track_tick(t);
	check(nfindings == 1, "connect timeout: reported once (%d findings)", nfindings);
	track_free(t);
}

static void close_wait(const struct cs_opts *o)
{
	struct tracker *t;
	struct cs_event e;

	now_ns = 5000 * SEC;
	t = fresh(o);
	e = edge(CS_EV_CLOSE_WAIT, 2, now_ns);
	e.close_wait_ns = now_ns;
	track_event(t, &e);
	now_ns += (uint64_t)(o->close_wait_threshold_s * SEC) - SEC;
	track_tick(t);
	check(nfindings == 0, "CLOSE_WAIT: not stuck a second before the threshold (%d findings)",
	      nfindings);
	now_ns += SEC;
	track_tick(t);
	check(nfindings == 1 && !strcmp(last_kind, "close_wait_stuck"),
	      "CLOSE_WAIT: close_wait_stuck at the threshold, on the injected clock (%d, %s)",
	      nfindings, last_kind);
	track_summaries(t, true);
	check(nsummaries == 1, "CLOSE_WAIT: one summary for the pod (%d)", nsummaries);
	check(last_summary_ts == now_ns + REAL_OFFSET, "CLOSE_WAIT: the summary is stamped with "
	      "the tracker's clock (%llu)", (unsigned long long)last_summary_ts);
	track_free(t);
}

/* Refused connects to one remote fold: one finding at once, the repeats counted
 * and reported when the window ends. */
static void fold(const struct cs_opts *o)
{
	struct tracker *t;

	now_ns = 9000 * SEC;
	t = fresh(o);
	for (int i = 0; i < 3; i++) {
		struct cs_event e = edge(CS_EV_CLOSE, 10 + i, now_ns);

		e.sk_err = 111;  /* ECONNREFUSED */
		e.oldstate = 2;  /* SYN_SENT */
		e.newstate = 7;  /* CLOSE */
		track_event(t, &e);
		now_ns += SEC / 10;
		track_tick(t);
	}
	check(nfindings == 1 && !strcmp(last_kind, "tcp_connect_refused"),
	      "fold: the first refused connect is a finding at once (%d, %s)", nfindings, last_kind);
	now_ns += (uint64_t)(o->finding_window_s * SEC);
	track_tick(t);
	check(nfindings == 2 && last_count == 2,
	      "fold: the two repeats come as one finding when the window ends (%d, count %g)",
	      nfindings, last_count);
	track_free(t);
}

/* Abortive closes: the close comes first and its RST after it, through another
 * ring, so a batch of closes may be read before their RSTs, and a RST before its
 * own close. Each close must end as rst_out, whatever the order. */
static void rst_after_close(const struct cs_opts *o)
{
	enum { N = 5000 };
	struct tracker *t;
	struct cs_event e;

	now_ns = 20000 * SEC;
	t = test_tracker(o, true, &sink);
	nconns = nconns_rst_out = 0;
	for (int i = 0; i < N; i++) {
		e = edge(CS_EV_CLOSE, 1000 + i, now_ns);
		e.flags = CS_F_WAS_EST;
		e.oldstate = 1;  /* ESTABLISHED */
		e.newstate = 7;  /* CLOSE */
		track_event(t, &e);
	}
	for (int i = N; i-- > 0;) {  /* newest first: the slowest order for a scan */
		e = edge(CS_EV_RST_OUT, 1000 + i, now_ns);
		track_event(t, &e);
	}
	e = edge(CS_EV_RST_OUT, 1000 + N, now_ns);  /* before its close */
	track_event(t, &e);
	e = edge(CS_EV_CLOSE, 1000 + N, now_ns);
	e.flags = CS_F_WAS_EST;
	e.oldstate = 1;
	e.newstate = 7;
	track_event(t, &e);
	e = edge(CS_EV_CLOSE, 1000 + N + 1, now_ns);  /* an orderly close: no RST */
	e.flags = CS_F_WAS_EST;
	e.oldstate = 1;
	e.newstate = 7;
	track_event(t, &e);
	now_ns += SEC;
	track_tick(t);
	check(nconns == N + 2 && nconns_rst_out == N + 1,
	      "rst after close: %d records, %d closed by rst_out (want %d and %d)", nconns,
	      nconns_rst_out, N + 2, N + 1);
	track_free(t);
}

int main(void)
{
	struct cs_opts o = {
		.close_wait_threshold_s = 30,
		.connect_timeout_s = 5,
		.finding_window_s = 10,
		.tls_timeout_s = 10,
		.h2_window_s = 30,
	};

	connect_timeout(&o);
	close_wait(&o);
	fold(&o);
	rst_after_close(&o);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
