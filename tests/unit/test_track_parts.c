// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The tracker's other parts (TLS, HTTP/2, conntrack) on an injected clock: their
 * events go in through the public API, time is moved by hand, and the typed
 * records that reach the sink are checked field by field: kinds, counts, and time
 * stamps that can only come from the test's clock. test_track.c does the same for
 * the TCP part. */
#include <arpa/inet.h>
#include <sys/socket.h>
#include "check.h"
#include "ct_events.h"
#include "h2_events.h"
#include "record.h"
#include "tls_events.h"
#include "track.h"
#include "track_clock.h"

#define MS 1000000ull
/* The TCP part holds a close back 20 ms for the RST of an abortive close: a tick
 * this long after a close reports it. */
#define PAST_HOLD (20 * MS + 1)


/* ---- what reached the sink: copies, since a record's pointers die with it ---- */

#define MAX_RECS 32

struct got_finding {
	struct finding_rec f;
	uint8_t nat_dst[16], nat_src[16];
};

struct got_conn {
	struct conn_rec c;
	uint8_t nat_dst[16], nat_src[16];
};

static struct got_finding findings[MAX_RECS];
static struct got_conn conns[MAX_RECS];
static struct summary_rec summary;
static int nfindings, nconns, nsummaries;

static void sink_finding(const struct finding_rec *f, void *arg)
{
	struct got_finding *g = &findings[nfindings < MAX_RECS ? nfindings : MAX_RECS - 1];

	(void)arg;
	nfindings++;
	g->f = *f;
	/* Pointers into the tracker's state that may not outlive the call. */
	if (f->detail == FD_TLS_TIMEOUT || f->detail == FD_TLS_FAILED)
		g->f.d.tls.sni = NULL;  /* (d is a union: only then is this the sni) */
	g->f.client.addr = g->f.server.addr = NULL;
	if (f->has_nat) {
		memcpy(g->nat_dst, f->nat.orig_dst, 16);
		memcpy(g->nat_src, f->nat.reply_src, 16);
	}
	g->f.nat.orig_dst = g->nat_dst;
	g->f.nat.reply_src = g->nat_src;
}

static void sink_connection(const struct conn_rec *c, void *arg)
{
	struct got_conn *g = &conns[nconns < MAX_RECS ? nconns : MAX_RECS - 1];

	(void)arg;
	nconns++;
	g->c = *c;
	g->c.tls_sni = g->c.tls_alpn = g->c.tls_alpn_offered = NULL;
	g->c.client_ip = g->c.server_ip = NULL;
	if (c->has_nat) {
		memcpy(g->nat_dst, c->nat.orig_dst, 16);
		memcpy(g->nat_src, c->nat.reply_src, 16);
	}
	g->c.nat.orig_dst = g->nat_dst;
	g->c.nat.reply_src = g->nat_src;
}

static void sink_summary(const struct summary_rec *s, void *arg)
{
	(void)arg;
	nsummaries++;
	summary = *s;
}

static const struct track_sink sink = { sink_finding, sink_connection, sink_summary };

static const struct finding_rec *last_finding(void)
{
	return nfindings ? &findings[(nfindings < MAX_RECS ? nfindings : MAX_RECS) - 1].f : NULL;
}

static const struct conn_rec *last_conn(void)
{
	return nconns ? &conns[(nconns < MAX_RECS ? nconns : MAX_RECS) - 1].c : NULL;
}

static bool streq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static const char *str(const char *s)
{
	return s ? s : "(null)";
}

static void ip4(const char *txt, uint8_t out[16])
{
	memset(out, 0, 16);
	if (inet_pton(AF_INET, txt, out) != 1)
		abort();
}

static bool ip4_is(const uint8_t *a, const char *txt)
{
	uint8_t b[16];

	ip4(txt, b);
	return a && !memcmp(a, b, 4);
}

static struct tracker *fresh(const struct cs_opts *o)
{
	struct tracker *t = test_tracker(o, true, &sink);

	nfindings = nconns = nsummaries = 0;
	memset(&summary, 0, sizeof(summary));
	return t;
}

/* One summary for the one pod, now. */
static void take_summary(struct tracker *t)
{
	nsummaries = 0;
	track_summaries(t, true);
}

/* A TCP connection's close edge (established, closed by us), its start a second
 * before it. */
static struct cs_event tcp_close(uint64_t cookie, int side, const char *local, uint16_t lport,
				 const char *remote, uint16_t rport)
{
	struct cs_event e;

	memset(&e, 0, sizeof(e));
	e.type = CS_EV_CLOSE;
	e.cookie = cookie;
	e.ts_ns = now_ns;
	e.start_ns = now_ns - SEC;
	e.cgroup_id = 7;
	e.family = AF_INET;
	e.side = side;
	e.sport = lport;
	e.dport = rport;
	e.flags = CS_F_WAS_EST;
	e.close_cause = CS_CLOSE_LOCAL_FIN;
	e.oldstate = 1;  /* ESTABLISHED */
	e.newstate = 7;  /* CLOSE */
	ip4(local, e.saddr);
	ip4(remote, e.daddr);
	return e;
}

/* Close a connection now and tick past the close hold: its record is out. */
static void close_now(struct tracker *t, uint64_t cookie)
{
	struct cs_event e = tcp_close(cookie, CS_SIDE_CLIENT, "10.0.0.1", 40000, "10.0.0.2", 443);

	track_event(t, &e);
	now_ns += PAST_HOLD;
	track_tick(t);
}

/* ---- TLS ---- */

static struct tls_event tls_ev(uint8_t type, uint64_t cookie)
{
	struct tls_event e;

	memset(&e, 0, sizeof(e));
	e.type = type;
	e.ts_ns = now_ns;
	e.cookie = cookie;
	e.cgroup_id = 7;
	e.family = AF_INET;
	e.sport = 40000;
	e.dport = 443;
	e.we_are_client = 1;
	ip4("10.0.0.1", e.saddr);
	ip4("10.0.0.2", e.daddr);
	return e;
}

/* A handshake that starts and never completes: one timeout finding at exactly
 * --tls-timeout, counted once; its connection's record says "timeout". */
static void tls_timeout(const struct cs_opts *o)
{
	struct tracker *t;
	struct tls_event e;
	const struct finding_rec *f;
	uint64_t start;

	now_ns = 100 * SEC;
	t = fresh(o);
	start = now_ns;
	e = tls_ev(TLS_EV_START, 101);
	track_tls_event(t, &e);
	now_ns = start + (uint64_t)(o->tls_timeout_s * SEC) - 1;
	track_tick(t);
	check(nfindings == 0, "tls timeout: nothing 1 ns before --tls-timeout (%d findings)",
	      nfindings);
	now_ns += 1;
	track_tick(t);
	f = last_finding();
	check(nfindings == 1 && streq(f->kind, "tls_handshake_timeout") &&
	      streq(f->severity, "error") && f->detail == FD_TLS_TIMEOUT,
	      "tls timeout: one tls_handshake_timeout error at exactly --tls-timeout (%d, %s)",
	      nfindings, f ? str(f->kind) : "-");
	check(f && f->ts_real == now_ns + REAL_OFFSET,
	      "tls timeout: stamped with the tracker's clock (%llu, want %llu)",
	      f ? (unsigned long long)f->ts_real : 0ull,
	      (unsigned long long)(now_ns + REAL_OFFSET));
	check(f && f->d.tls.elapsed_s == o->tls_timeout_s && f->d.tls.threshold_s == o->tls_timeout_s &&
	      f->cookie == 101 && f->about == FINDING_SOCKET && streq(f->side, "client") &&
	      f->replay,
	      "tls timeout: elapsed_s %g = threshold_s %g, cookie 101, client socket, replay",
	      f ? f->d.tls.elapsed_s : -1, f ? f->d.tls.threshold_s : -1);
	now_ns += 60 * SEC;
	track_tick(t);
	check(nfindings == 1, "tls timeout: reported once (%d findings a minute later)", nfindings);
	take_summary(t);
	check(nsummaries == 1 && summary.has_tls && summary.tls.all.handshakes == 1 &&
	      summary.tls.all.timeouts == 1 && summary.tls.all.ok == 0 &&
	      summary.tls.all.failed == 0 && summary.tls.all.p50_ms == -1 && summary.findings == 1,
	      "tls timeout: summary counts 1 handshake, 1 timeout, no time (%d summaries, "
	      "handshakes %llu timeouts %llu ok %llu failed %llu p50 %g findings %llu)",
	      nsummaries, (unsigned long long)summary.tls.all.handshakes,
	      (unsigned long long)summary.tls.all.timeouts, (unsigned long long)summary.tls.all.ok,
	      (unsigned long long)summary.tls.all.failed, summary.tls.all.p50_ms,
	      (unsigned long long)summary.findings);
	check(summary.tls.ndests == 1 && streq(summary.tls.dests[0].destination, "10.0.0.2:443") &&
	      summary.tls.dests[0].st.timeouts == 1,
	      "tls timeout: one destination, 10.0.0.2:443, with the timeout (%d, %s)",
	      summary.tls.ndests, summary.tls.ndests ? str(summary.tls.dests[0].destination) : "-");
	close_now(t, 101);
	check(nconns == 1 && last_conn()->has_tls && streq(last_conn()->tls_outcome, "timeout") &&
	      !last_conn()->tls_ms_known,
	      "tls timeout: the connection's record has tls, outcome timeout, no time (%d, %s)",
	      nconns, nconns ? str(last_conn()->tls_outcome) : "-");
	check(nfindings == 1, "tls timeout: its close is no second (failed) finding (%d)",
	      nfindings);
	track_free(t);
}

/* A handshake that completes: counted ok with its time; the connection's close
 * (after the close hold) gives a record with its tls object. */
static void tls_ok(const struct cs_opts *o)
{
	struct tracker *t;
	struct tls_event e;
	struct cs_event ce;
	const struct conn_rec *c;
	uint64_t close_ts;

	now_ns = 2000 * SEC;
	t = fresh(o);
	e = tls_ev(TLS_EV_START, 102);
	track_tls_event(t, &e);
	now_ns += 50 * MS;
	e = tls_ev(TLS_EV_DONE, 102);
	e.version = 0x0304;
	track_tls_event(t, &e);
	now_ns += (uint64_t)(o->tls_timeout_s * SEC) * 2;
	track_tick(t);
	check(nfindings == 0, "tls ok: a completed handshake never times out (%d findings)",
	      nfindings);
	take_summary(t);
	check(nsummaries == 1 && summary.has_tls && summary.tls.all.handshakes == 1 &&
	      summary.tls.all.ok == 1 && summary.tls.all.failed == 0 &&
	      summary.tls.all.timeouts == 0 && summary.tls.all.p50_ms == 50 &&
	      summary.tls.all.p99_ms == 50,
	      "tls ok: summary tls.all 1 handshake, 1 ok, p50 = p99 = 50 ms (handshakes %llu ok "
	      "%llu p50 %g p99 %g)", (unsigned long long)summary.tls.all.handshakes,
	      (unsigned long long)summary.tls.all.ok, summary.tls.all.p50_ms,
	      summary.tls.all.p99_ms);
	check(summary.ts_real == now_ns + REAL_OFFSET, "tls ok: the summary is stamped with the "
	      "tracker's clock (%llu)", (unsigned long long)summary.ts_real);

	/* Another connection's close: no tls object. */
	ce = tcp_close(999, CS_SIDE_CLIENT, "10.0.0.1", 40001, "10.0.0.2", 443);
	track_event(t, &ce);
	close_ts = now_ns;
	ce = tcp_close(102, CS_SIDE_CLIENT, "10.0.0.1", 40000, "10.0.0.2", 443);
	track_event(t, &ce);
	now_ns += 20 * MS;
	track_tick(t);
	check(nconns == 0, "tls ok: no record while the close is held (20 ms) (%d)", nconns);
	now_ns += 1;
	track_tick(t);
	check(nconns == 2, "tls ok: both records once the hold is over (%d)", nconns);
	check(nconns == 2 && conns[0].c.cookie == 999 && !conns[0].c.has_tls,
	      "tls ok: a connection without a handshake has no tls (cookie %llu has_tls %d)",
	      (unsigned long long)conns[0].c.cookie, conns[0].c.has_tls);
	c = &conns[1].c;
	check(nconns == 2 && c->cookie == 102 && c->has_tls && streq(c->tls_outcome, "ok") &&
	      streq(c->tls_version, "TLS1.3") && c->tls_ms_known && c->tls_ns == 50 * MS,
	      "tls ok: the record has tls: ok, TLS1.3, 50 ms (cookie %llu has_tls %d %s %s %llu)",
	      (unsigned long long)c->cookie, c->has_tls, str(c->tls_outcome), str(c->tls_version),
	      (unsigned long long)c->tls_ns);
	check(c->ts_real == close_ts + REAL_OFFSET && c->start_real == close_ts - SEC + REAL_OFFSET,
	      "tls ok: the record is stamped at its close, on the tracker's clock (%llu, want %llu)",
	      (unsigned long long)c->ts_real, (unsigned long long)(close_ts + REAL_OFFSET));
	check(nfindings == 0, "tls ok: no finding at all (%d)", nfindings);
	track_free(t);
}

/* A handshake still on when its connection closes failed: a finding stamped at the
 * close, the summary's failed count, the record's outcome; and no timeout later. */
static void tls_closed_midway(const struct cs_opts *o)
{
	struct tracker *t;
	struct tls_event e;
	const struct finding_rec *f;
	uint64_t close_ts;

	now_ns = 3000 * SEC;
	t = fresh(o);
	e = tls_ev(TLS_EV_START, 103);
	track_tls_event(t, &e);
	now_ns += 2 * SEC;
	close_ts = now_ns;
	close_now(t, 103);
	f = last_finding();
	check(nfindings == 1 && streq(f->kind, "tls_handshake_failed") && f->detail == FD_TLS_FAILED &&
	      streq(f->d.tls.reason, "connection closed before the handshake completed") &&
	      streq(f->d.tls.failed_by, "client") && !f->d.tls.alert,
	      "tls closed midway: one tls_handshake_failed, closed before completion, by the "
	      "client that closed (%d, %s, %s, by %s)", nfindings, f ? str(f->kind) : "-",
	      f ? str(f->d.tls.reason) : "-", f ? str(f->d.tls.failed_by) : "-");
	check(f && f->ts_real == close_ts + REAL_OFFSET,
	      "tls closed midway: stamped at the close edge (%llu, want %llu)",
	      f ? (unsigned long long)f->ts_real : 0ull,
	      (unsigned long long)(close_ts + REAL_OFFSET));
	check(nconns == 1 && last_conn()->has_tls && streq(last_conn()->tls_outcome, "failed") &&
	      !last_conn()->tls_ms_known,
	      "tls closed midway: the record's tls outcome is failed (%d, %s)", nconns,
	      nconns ? str(last_conn()->tls_outcome) : "-");
	now_ns += (uint64_t)(o->tls_timeout_s * SEC) * 2;
	track_tick(t);
	check(nfindings == 1, "tls closed midway: no timeout for a closed connection (%d)",
	      nfindings);
	take_summary(t);
	check(summary.has_tls && summary.tls.all.handshakes == 1 && summary.tls.all.failed == 1 &&
	      summary.tls.all.ok == 0 && summary.tls.all.timeouts == 0,
	      "tls closed midway: summary 1 handshake, 1 failed (handshakes %llu failed %llu)",
	      (unsigned long long)summary.tls.all.handshakes,
	      (unsigned long long)summary.tls.all.failed);
	track_free(t);
}

/* An alert in clear from the server: a failed finding at the alert's time, by the
 * server, named. */
static void tls_alert(const struct cs_opts *o)
{
	struct tracker *t;
	struct tls_event e;
	const struct finding_rec *f;

	now_ns = 4000 * SEC;
	t = fresh(o);
	e = tls_ev(TLS_EV_START, 104);
	track_tls_event(t, &e);
	now_ns += 30 * MS;
	e = tls_ev(TLS_EV_ALERT, 104);
	e.dir = TLS_DIR_S2C;
	e.alert_level = 2;
	e.alert_desc = 42;
	e.alert_clear = 1;
	track_tls_event(t, &e);
	f = last_finding();
	check(nfindings == 1 && streq(f->kind, "tls_handshake_failed") &&
	      streq(f->d.tls.failed_by, "server") && streq(f->d.tls.alert, "bad_certificate") &&
	      f->ts_real == now_ns + REAL_OFFSET,
	      "tls alert: tls_handshake_failed at once, by the server, bad_certificate (%d, by %s, "
	      "alert %s)", nfindings, f ? str(f->d.tls.failed_by) : "-",
	      f ? str(f->d.tls.alert) : "-");
	now_ns += (uint64_t)(o->tls_timeout_s * SEC);
	track_tick(t);
	check(nfindings == 1, "tls alert: an ended handshake does not time out (%d)", nfindings);
	take_summary(t);
	check(summary.tls.all.handshakes == 1 && summary.tls.all.failed == 1,
	      "tls alert: summary 1 handshake, 1 failed (%llu, %llu)",
	      (unsigned long long)summary.tls.all.handshakes,
	      (unsigned long long)summary.tls.all.failed);
	track_free(t);
}

/* ---- HTTP/2 ---- */

static struct h2_event h2_ev(uint8_t type, uint64_t cookie, uint16_t sport, uint32_t streams,
			     uint32_t frames)
{
	struct h2_event e;

	memset(&e, 0, sizeof(e));
	e.type = type;
	e.ts_ns = now_ns;
	e.cookie = cookie;
	e.cgroup_id = 7;
	e.family = AF_INET;
	e.sport = sport;
	e.dport = 8443;
	e.source = H2_SRC_WIRE;
	ip4("10.0.0.1", e.saddr);
	ip4("10.0.0.3", e.daddr);
	h2_conn_init(&e.c);
	e.c.flags = H2_C_H2;
	e.c.client_dir = H2_LOCAL_OUT;  /* we sent the preface: the pod is the client */
	e.c.streams = streams;
	e.c.frames = frames;
	return e;
}

/* One client connection to 10.0.0.3:8443 carrying one stream: starts now, closes
 * life_ns later (its close edge at that time); the tick reports the close. */
static void h2_one(struct tracker *t, uint64_t cookie, uint64_t life_ns)
{
	uint16_t sport = (uint16_t)(41000 + cookie % 1000);
	struct h2_event e = h2_ev(H2_EV_START, cookie, sport, 0, 3);
	struct cs_event ce;

	track_h2_event(t, &e);
	e = h2_ev(H2_EV_UPDATE, cookie, sport, 1, 6);
	track_h2_event(t, &e);
	now_ns += life_ns;
	e = h2_ev(H2_EV_END, cookie, sport, 1, 8);
	track_h2_event(t, &e);
	ce = tcp_close(cookie, CS_SIDE_CLIENT, "10.0.0.1", sport, "10.0.0.3", 8443);
	track_event(t, &ce);
	now_ns += PAST_HOLD;
	track_tick(t);
}

/* Connections that each carry one stream and close: h2_reuse_churn when the
 * --h2-churn-conns-th closes in the window, not before, and once per window. */
static void h2_churn(const struct cs_opts *o)
{
	struct tracker *t;
	const struct finding_rec *f;
	unsigned n = o->h2_churn_conns;
	uint64_t close_ts = 0;

	now_ns = 5000 * SEC;
	t = fresh(o);
	for (unsigned i = 0; i < n; i++) {
		if (i == n - 1) {
			check(nfindings == 0, "h2 churn: nothing after %u closes (%d findings)", i,
			      nfindings);
			close_ts = now_ns + 100 * MS;
		}
		h2_one(t, 200 + i, 100 * MS);
		now_ns += SEC;
	}
	f = last_finding();
	check(nfindings == 1 && streq(f->kind, "h2_reuse_churn") && streq(f->severity, "warning") &&
	      f->detail == FD_H2_CHURN,
	      "h2 churn: one h2_reuse_churn at the %u-th close (%d, %s)", n, nfindings,
	      f ? str(f->kind) : "-");
	check(f && f->ts_real == close_ts + REAL_OFFSET,
	      "h2 churn: stamped at the close that crossed the threshold (%llu, want %llu)",
	      f ? (unsigned long long)f->ts_real : 0ull,
	      (unsigned long long)(close_ts + REAL_OFFSET));
	check(f && f->d.h2_churn.window.closed == n && f->d.h2_churn.window.opened == n &&
	      f->d.h2_churn.window.streams == n && f->d.h2_churn.window.streams_per_conn == 1 &&
	      f->d.h2_churn.window.median_lifetime_ms == 100 &&
	      f->d.h2_churn.window.by_local_fin == n && f->d.h2_churn.window.by_goaway == 0 &&
	      f->d.h2_churn.threshold_conns == n &&
	      f->d.h2_churn.threshold_streams_per_conn == o->h2_churn_streams &&
	      f->d.h2_churn.window.seconds == o->h2_window_s,
	      "h2 churn: window %u opened, %u closed, %llu streams, %g per conn, median %g ms, "
	      "%u by local FIN", f ? f->d.h2_churn.window.opened : 0,
	      f ? f->d.h2_churn.window.closed : 0,
	      f ? (unsigned long long)f->d.h2_churn.window.streams : 0ull,
	      f ? f->d.h2_churn.window.streams_per_conn : -1,
	      f ? f->d.h2_churn.window.median_lifetime_ms : -1,
	      f ? f->d.h2_churn.window.by_local_fin : 0);
	check(f && f->cookie == 200 + n - 1 && streq(f->side, "client") &&
	      f->server.port == 8443,
	      "h2 churn: about the last connection, the client's, to port 8443 (cookie %llu)",
	      f ? (unsigned long long)f->cookie : 0ull);
	h2_one(t, 200 + n, 100 * MS);
	check(nfindings == 1, "h2 churn: once per window (%d findings after one more close)",
	      nfindings);
	take_summary(t);
	check(summary.has_h2 && summary.h2.connections == n + 1 && summary.h2.closed == n + 1 &&
	      summary.h2.streams == n + 1 && summary.h2.goaway == 0 &&
	      summary.h2.streams_per_conn == 1,
	      "h2 churn: summary h2 connections %llu, closed %llu, streams %llu (want %u each)",
	      (unsigned long long)summary.h2.connections, (unsigned long long)summary.h2.closed,
	      (unsigned long long)summary.h2.streams, n + 1);
	check(summary.h2.nremotes == 1 && summary.h2.remotes[0].client &&
	      summary.h2.remotes[0].ep.port == 8443 && summary.h2.remotes[0].window.closed == n + 1,
	      "h2 churn: one remote, the pod its client, %u closed in its window (%d, %u)", n + 1,
	      summary.h2.nremotes, summary.h2.nremotes ? summary.h2.remotes[0].window.closed : 0);
	check(nconns == (int)n + 1 && last_conn()->has_h2 && last_conn()->h2_streams == 1 &&
	      streq(last_conn()->h2_source, "wire") && !last_conn()->h2_goaway_by,
	      "h2 churn: every connection's record has h2 with its 1 stream (%d records)", nconns);
	/* The window moves on: one more window later, a new run is reported again. */
	now_ns += (uint64_t)(o->h2_window_s * SEC);
	for (unsigned i = 0; i < n; i++)
		h2_one(t, 300 + i, 100 * MS);
	check(nfindings == 2, "h2 churn: a new window, a new finding (%d)", nfindings);
	track_free(t);
}

/* The window's edge: a close exactly h2_window_s before the latest is still in it;
 * one ns more and it is not. */
static void h2_churn_window(const struct cs_opts *o, uint64_t extra, int want)
{
	struct tracker *t;
	unsigned n = o->h2_churn_conns;
	uint64_t first_close;

	now_ns = 7000 * SEC;
	t = fresh(o);
	h2_one(t, 400, 100 * MS);
	first_close = now_ns - PAST_HOLD;
	/* The others, the last one closing h2_window_s (+ extra) after the first. */
	for (unsigned i = 1; i < n; i++) {
		if (i == n - 1)
			now_ns = first_close + (uint64_t)(o->h2_window_s * SEC) + extra - 100 * MS;
		h2_one(t, 400 + i, 100 * MS);
	}
	check(nfindings == want,
	      "h2 churn window: the first close %s ns before the %u-th: %d finding(s) (want %d)",
	      extra ? "window + 1" : "exactly window", n, nfindings, want);
	track_free(t);
}

/* A GOAWAY with an error code is a finding at once; graceful ones from the server
 * make a run finding at --h2-goaway-runs. */
static void h2_goaway(const struct cs_opts *o)
{
	struct tracker *t;
	struct h2_event e;
	const struct finding_rec *f;
	const struct conn_rec *c;

	now_ns = 9000 * SEC;
	t = fresh(o);
	e = h2_ev(H2_EV_START, 500, 42000, 0, 3);
	track_h2_event(t, &e);
	now_ns += SEC;
	e = h2_ev(H2_EV_GOAWAY, 500, 42000, 3, 20);
	e.c.goaway[H2_LOCAL_IN] = 1;       /* received: the server sent it */
	e.c.goaway_dir = H2_LOCAL_IN;
	e.c.goaway_error = 0x2;            /* INTERNAL_ERROR */
	e.c.goaway_last_id = 5;
	track_h2_event(t, &e);
	f = last_finding();
	check(nfindings == 1 && streq(f->kind, "h2_goaway") && streq(f->severity, "error") &&
	      f->detail == FD_H2_GOAWAY && !f->d.h2_goaway.run,
	      "h2 goaway: an error GOAWAY is an h2_goaway error at once, no tick (%d, %s %s)",
	      nfindings, f ? str(f->kind) : "-", f ? str(f->severity) : "-");
	check(f && !strcmp(f->d.h2_goaway.error, "INTERNAL_ERROR") &&
	      streq(f->d.h2_goaway.by, "server") && f->d.h2_goaway.last_stream_id == 5 &&
	      f->d.h2_goaway.streams == 3 && f->ts_real == now_ns + REAL_OFFSET,
	      "h2 goaway: INTERNAL_ERROR by the server, last id 5, 3 streams, at the event's time "
	      "(%s, %s, %u, %u)", f ? f->d.h2_goaway.error : "-", f ? str(f->d.h2_goaway.by) : "-",
	      f ? f->d.h2_goaway.last_stream_id : 0, f ? f->d.h2_goaway.streams : 0);
	/* The same totals again (its END): no second finding. */
	now_ns += 10 * MS;
	e.ts_ns = now_ns;
	e.type = H2_EV_END;
	e.c.frames = 22;
	track_h2_event(t, &e);
	check(nfindings == 1, "h2 goaway: reported once per connection (%d)", nfindings);
	{
		struct cs_event ce = tcp_close(500, CS_SIDE_CLIENT, "10.0.0.1", 42000, "10.0.0.3", 8443);

		ce.close_cause = CS_CLOSE_PEER_FIN;
		track_event(t, &ce);
		now_ns += PAST_HOLD;
		track_tick(t);
	}
	c = last_conn();
	check(nconns == 1 && c->has_h2 && c->h2_goaway == 1 && streq(c->h2_goaway_by, "server") &&
	      streq(c->h2_goaway_error, "INTERNAL_ERROR") && c->h2_goaway_error_code == 2 &&
	      c->h2_goaway_last_id == 5 && c->h2_streams == 3,
	      "h2 goaway: the record's h2 has the GOAWAY (%d, goaway %u by %s error %s)", nconns,
	      c ? c->h2_goaway : 0, c ? str(c->h2_goaway_by) : "-",
	      c ? str(c->h2_goaway_error) : "-");

	/* Graceful GOAWAYs from the server on two more connections: the third in the
	 * window (the error one counts) is a run. */
	for (unsigned i = 1; i < o->h2_goaway_runs; i++) {
		check(nfindings == 1, "h2 goaway: no run after %u GOAWAY connection(s) (%d)", i,
		      nfindings);
		now_ns += SEC;
		e = h2_ev(H2_EV_START, 500 + i, (uint16_t)(42000 + i), 0, 3);
		track_h2_event(t, &e);
		e = h2_ev(H2_EV_GOAWAY, 500 + i, (uint16_t)(42000 + i), 2, 10);
		e.c.goaway[H2_LOCAL_IN] = 1;
		e.c.goaway_dir = H2_LOCAL_IN;
		e.c.goaway_error = H2_NO_ERROR;
		e.c.goaway_last_id = 3;
		track_h2_event(t, &e);
	}
	f = last_finding();
	check(nfindings == 2 && streq(f->kind, "h2_goaway") && streq(f->severity, "warning") &&
	      f->d.h2_goaway.run && f->d.h2_goaway.goaway_connections == o->h2_goaway_runs &&
	      !strcmp(f->d.h2_goaway.error, "NO_ERROR") && f->ts_real == now_ns + REAL_OFFSET,
	      "h2 goaway: a run of %u server GOAWAYs is an h2_goaway warning (%d, %s, run %d, %u)",
	      o->h2_goaway_runs, nfindings, f ? str(f->severity) : "-", f ? f->d.h2_goaway.run : 0,
	      f ? f->d.h2_goaway.goaway_connections : 0);
	take_summary(t);
	check(summary.has_h2 && summary.h2.connections == o->h2_goaway_runs &&
	      summary.h2.closed == 1 && summary.h2.goaway == o->h2_goaway_runs &&
	      summary.h2.streams == 3 + 2 * (o->h2_goaway_runs - 1) && summary.findings == 2,
	      "h2 goaway: summary connections %llu, closed %llu, goaway %llu, streams %llu, "
	      "findings %llu", (unsigned long long)summary.h2.connections,
	      (unsigned long long)summary.h2.closed, (unsigned long long)summary.h2.goaway,
	      (unsigned long long)summary.h2.streams, (unsigned long long)summary.findings);
	track_free(t);
}

/* ---- conntrack ---- */

/* An entry: client:cport dialled the VIP 10.96.0.10:80, the backend
 * 10.0.1.5:8080 answers. */
static struct ct_event ct_ev(uint8_t type, uint8_t state, const char *client, uint16_t cport)
{
	struct ct_event e;

	memset(&e, 0, sizeof(e));
	e.type = type;
	e.ts_ns = now_ns;
	e.id = 0xc0ffee00 + cport;
	e.status = CT_S_DST_NAT | CT_S_SEEN_REPLY | CT_S_ASSURED | CT_S_CONFIRMED;
	e.tcp_state = state;
	e.source = CT_SRC_BPF;
	e.orig.l3 = e.reply.l3 = AF_INET;
	e.orig.l4 = e.reply.l4 = 6;
	ip4(client, e.orig.src);
	e.orig.sport = cport;
	ip4("10.96.0.10", e.orig.dst);
	e.orig.dport = 80;
	ip4("10.0.1.5", e.reply.src);
	e.reply.sport = 8080;
	ip4(client, e.reply.dst);
	e.reply.dport = cport;
	return e;
}

static bool nat_is_vip(const struct nat_rec *n)
{
	return n->family == AF_INET && ip4_is(n->orig_dst, "10.96.0.10") && n->orig_dport == 80 &&
	       ip4_is(n->reply_src, "10.0.1.5") && n->reply_sport == 8080;
}

static void ct_join(const struct cs_opts *o)
{
	struct tracker *t;
	struct ct_event ce;
	struct cs_event e;
	const struct conn_rec *c;
	const struct finding_rec *f;

	now_ns = 11000 * SEC;
	t = fresh(o);
	ce = ct_ev(CT_EV_NEW, CT_TCP_ESTABLISHED, "10.0.0.1", 40000);
	track_ct_event(t, &ce);

	/* The client's socket: what it dialled is the orig tuple. */
	e = tcp_close(600, CS_SIDE_CLIENT, "10.0.0.1", 40000, "10.96.0.10", 80);
	track_event(t, &e);
	now_ns += PAST_HOLD;
	track_tick(t);
	c = last_conn();
	check(nconns == 1 && c->has_nat && nat_is_vip(&c->nat),
	      "ct join: the client socket's record has nat 10.96.0.10:80 -> 10.0.1.5:8080 (%d, "
	      "has_nat %d, ports %u -> %u)", nconns, c ? c->has_nat : 0, c ? c->nat.orig_dport : 0,
	      c ? c->nat.reply_sport : 0);
	check(c && streq(c->nat.source, "bpf") && streq(c->nat.state, "ESTABLISHED") &&
	      !c->nat.reply_pod,
	      "ct join: nat source bpf, state ESTABLISHED, no backend pod in replay (%s, %s, %s)",
	      c ? str(c->nat.source) : "-", c ? str(c->nat.state) : "-",
	      c ? str(c->nat.reply_pod) : "-");

	/* The backend's socket on this node: the reply tuple turned around. */
	e = tcp_close(601, CS_SIDE_SERVER, "10.0.1.5", 8080, "10.0.0.1", 40000);
	track_event(t, &e);
	now_ns += PAST_HOLD;
	track_tick(t);
	c = last_conn();
	check(nconns == 2 && c->has_nat && nat_is_vip(&c->nat) && streq(c->side, "server"),
	      "ct join: the backend socket's record has the same nat (%d, has_nat %d)", nconns,
	      c ? c->has_nat : 0);

	/* Another source port: another flow, no nat. */
	e = tcp_close(602, CS_SIDE_CLIENT, "10.0.0.1", 40001, "10.96.0.10", 80);
	track_event(t, &e);
	now_ns += PAST_HOLD;
	track_tick(t);
	check(nconns == 3 && !last_conn()->has_nat,
	      "ct join: a socket no entry matches has no nat (%d, has_nat %d)", nconns,
	      nconns ? last_conn()->has_nat : -1);

	/* A finding about a socket carries the nat, and says it. */
	ce = ct_ev(CT_EV_NEW, CT_TCP_SYN_SENT, "10.0.0.1", 40002);
	track_ct_event(t, &ce);
	e = tcp_close(603, CS_SIDE_CLIENT, "10.0.0.1", 40002, "10.96.0.10", 80);
	e.flags = CS_F_RST_IN;
	e.sk_err = 111;  /* ECONNREFUSED */
	e.oldstate = 2;  /* SYN_SENT */
	e.close_cause = CS_CLOSE_NONE;
	track_event(t, &e);
	now_ns += PAST_HOLD;
	track_tick(t);
	f = last_finding();
	check(nfindings == 1 && streq(f->kind, "tcp_connect_refused") && f->has_nat &&
	      nat_is_vip(&f->nat) && streq(f->nat.state, "SYN_SENT") &&
	      strstr(f->message, "(Conntrack: 10.96.0.10:80 was translated to the backend "
			 "10.0.1.5:8080.)"),
	      "ct join: a refused connect's finding carries the nat and names the backend (%d, %s: "
	      "%s)", nfindings, f ? str(f->kind) : "-", f ? f->message : "-");
	check(nconns == 4 && last_conn()->has_nat && streq(last_conn()->outcome, "refused"),
	      "ct join: ... and so does its record (%d, %s)", nconns,
	      nconns ? str(last_conn()->outcome) : "-");
	track_free(t);
}

/* An ended entry stays joinable CT_KEEP_NS (5 s), then goes; in replay it is never
 * a forwarded record. */
static void ct_ended(const struct cs_opts *o)
{
	struct tracker *t;
	struct ct_event ce;
	struct cs_event e;
	uint64_t end;

	now_ns = 13000 * SEC;
	t = fresh(o);
	ce = ct_ev(CT_EV_NEW, CT_TCP_ESTABLISHED, "10.0.0.1", 40010);
	track_ct_event(t, &ce);
	ce = ct_ev(CT_EV_NEW, CT_TCP_ESTABLISHED, "10.0.0.1", 40011);
	track_ct_event(t, &ce);
	ce = ct_ev(CT_EV_NEW, CT_TCP_ESTABLISHED, "10.0.0.9", 50000);
	track_ct_event(t, &ce);
	now_ns += SEC;
	end = now_ns;
	ce = ct_ev(CT_EV_DESTROY, CT_TCP_CLOSE, "10.0.0.1", 40010);
	track_ct_event(t, &ce);
	ce = ct_ev(CT_EV_DESTROY, CT_TCP_CLOSE, "10.0.0.1", 40011);
	track_ct_event(t, &ce);
	ce = ct_ev(CT_EV_DESTROY, CT_TCP_TIME_WAIT, "10.0.0.9", 50000);
	track_ct_event(t, &ce);

	/* The socket's close comes after conntrack's end, within the keep time. */
	now_ns = end + 4 * SEC;
	e = tcp_close(700, CS_SIDE_CLIENT, "10.0.0.1", 40010, "10.96.0.10", 80);
	track_event(t, &e);
	now_ns += PAST_HOLD;
	track_tick(t);
	check(nconns == 1 && last_conn()->has_nat && nat_is_vip(&last_conn()->nat) &&
	      streq(last_conn()->nat.state, "CLOSE"),
	      "ct ended: an entry ended 4 s before the socket's close still joins (%d, has_nat %d)",
	      nconns, nconns ? last_conn()->has_nat : -1);
	now_ns = end + 5 * SEC;
	track_tick(t);
	check(nconns == 1 && nfindings == 0,
	      "ct ended: the entry no socket took is no forwarded record in replay (%d records, "
	      "%d findings)", nconns, nfindings);
	e = tcp_close(701, CS_SIDE_CLIENT, "10.0.0.1", 40011, "10.96.0.10", 80);
	track_event(t, &e);
	now_ns += PAST_HOLD;
	track_tick(t);
	check(nconns == 2 && !last_conn()->has_nat,
	      "ct ended: 5 s after its end the entry is gone: no nat (%d, has_nat %d)", nconns,
	      nconns ? last_conn()->has_nat : -1);
	track_free(t);
}

/* conntrack_pressure: at --conntrack-pressure percent of max, once per finding
 * window unless drops come. */
static void ct_pressure(const struct cs_opts *o)
{
	struct tracker *t;
	const struct finding_rec *f;
	uint64_t max = 1000, at = (uint64_t)(o->ct_pressure_pct * 10);  /* count at the threshold */
	uint64_t first;

	now_ns = 15000 * SEC;
	t = fresh(o);
	track_ct_pressure(t, at - 1, max, 0, 0, 0);
	check(nfindings == 0, "ct pressure: nothing at %llu of %llu (%d)",
	      (unsigned long long)(at - 1), (unsigned long long)max, nfindings);
	now_ns += SEC;
	track_ct_pressure(t, at, max, 0, 0, 0);
	f = last_finding();
	check(nfindings == 1 && streq(f->kind, "conntrack_pressure") && streq(f->severity, "warning") &&
	      f->about == FINDING_NODE && f->detail == FD_CT_PRESSURE,
	      "ct pressure: a conntrack_pressure warning about the node at %llu of %llu (%d, %s)",
	      (unsigned long long)at, (unsigned long long)max, nfindings, f ? str(f->kind) : "-");
	check(f && f->d.ct_pressure.count == at && f->d.ct_pressure.max == max &&
	      f->d.ct_pressure.percent == o->ct_pressure_pct && f->d.ct_pressure.growth_per_s == 1 &&
	      f->d.ct_pressure.threshold_percent == o->ct_pressure_pct &&
	      f->d.ct_pressure.drops == 0 && f->ts_real == now_ns + REAL_OFFSET,
	      "ct pressure: count %llu, max %llu, %g%%, +%g/s, threshold %g, stamped now",
	      f ? (unsigned long long)f->d.ct_pressure.count : 0ull,
	      f ? (unsigned long long)f->d.ct_pressure.max : 0ull,
	      f ? f->d.ct_pressure.percent : -1, f ? f->d.ct_pressure.growth_per_s : -1,
	      f ? f->d.ct_pressure.threshold_percent : -1);
	first = now_ns;
	now_ns += SEC;
	track_ct_pressure(t, at + 50, max, 0, 0, 0);
	check(nfindings == 1, "ct pressure: once per finding window (%d)", nfindings);
	now_ns += SEC;
	track_ct_pressure(t, at + 50, max, 4, 0, 0);
	f = last_finding();
	check(nfindings == 2 && streq(f->severity, "error") && f->d.ct_pressure.drops == 4,
	      "ct pressure: new drops are an error at once, inside the window (%d, %s, drops %llu)",
	      nfindings, f ? str(f->severity) : "-",
	      f ? (unsigned long long)f->d.ct_pressure.drops : 0ull);
	first = now_ns;
	now_ns = first + (uint64_t)(o->finding_window_s * SEC) - 1;
	track_ct_pressure(t, at + 60, max, 4, 0, 0);
	check(nfindings == 2, "ct pressure: still high, 1 ns before the window ends: nothing (%d)",
	      nfindings);
	now_ns += 1;
	track_ct_pressure(t, at + 60, max, 4, 0, 0);
	check(nfindings == 3 && streq(last_finding()->severity, "warning") &&
	      last_finding()->d.ct_pressure.drops == 0,
	      "ct pressure: still high when the window ends: a warning again (%d)", nfindings);
	now_ns += 60 * SEC;
	track_ct_pressure(t, at - 100, max, 4, 0, 0);
	check(nfindings == 3, "ct pressure: below the threshold, no drops: nothing (%d)",
	      nfindings);
	/* When the kernel's counters restart (drops, insert_failed, early_drops all
	 * lower than last read), nothing is new: no finding with a wrapped count. */
	track_ct_pressure(t, 100, max, 4, 3, 2);   /* new insert failures and early drops */
	check(nfindings == 4 && last_finding()->d.ct_pressure.insert_failed == 3 &&
	      last_finding()->d.ct_pressure.early_drops == 2,
	      "ct pressure: new insert failures and early drops are an error (%d)", nfindings);
	now_ns += (uint64_t)(o->finding_window_s * SEC);
	track_ct_pressure(t, 100, max, 0, 0, 0);   /* restarted */
	check(nfindings == 4, "ct pressure: restarted counters are no new failures (%d)",
	      nfindings);
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
		.h2_churn_conns = 5,
		.h2_churn_streams = 1.5,
		.h2_goaway_runs = 3,
		.conntrack = CT_AUTO,
		.ct_pressure_pct = 90,
	};

	tls_timeout(&o);
	tls_ok(&o);
	tls_closed_midway(&o);
	tls_alert(&o);
	h2_churn(&o);
	h2_churn_window(&o, 0, 1);
	h2_churn_window(&o, 1, 0);
	h2_goaway(&o);
	ct_join(&o);
	ct_ended(&o);
	ct_pressure(&o);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
