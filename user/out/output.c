// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "output.h"
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "jsonw.h"
#include "outq.h"
#include "util.h"

static enum cs_fmt fmt;
static bool header_due;
/* Every record goes through the stdout writer (outq.h); NULL only if it could not
 * start, and then records are written here, as they come. */
static struct outq *q;
static int sync_err;
static bool closed;
/* Held while the queue is reported on or freed: the end guard reports from its thread. */
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t sync_dropped[OUTQ_NTYPES];

/* Replay: the lossless writer. A record waits for room rather than being dropped:
 * replay has no kernel to protect, and its output is whole or it is nothing. */
#define REPLAY_QUEUE_BYTES (1u << 20)

static void start(enum cs_fmt f, bool text_header, size_t queue_bytes, bool lossless)
{
	/* Stats records have 64 KiB of their own: a queue full of connections still
	 * takes the end record. */
	struct outq_conf c = { .fd = STDOUT_FILENO, .cap = queue_bytes, .reserve = 64 * 1024,
			       .lossless = lossless };

	fmt = f;
	header_due = f == FMT_TEXT && text_header;
	q = outq_new(&c);
	if (!q)
		cs_warn("stdout is written without its own writer: %s", strerror(errno));
}

void out_init(enum cs_fmt f, bool text_header)
{
	start(f, text_header, REPLAY_QUEUE_BYTES, true);
}

void out_init_live(enum cs_fmt f, bool text_header, size_t queue_bytes)
{
	start(f, text_header, queue_bytes, false);
}

/* No writer thread: blocking writes, as stdio did. */
static void write_sync(enum outq_type t, const struct iovec *iov, int n)
{
	for (int i = 0; i < n && !sync_err; i++) {
		const char *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		while (left) {
			ssize_t k = write(STDOUT_FILENO, p, left);

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				sync_err = k < 0 ? errno : EIO;
				break;
			}
			p += k;
			left -= (size_t)k;
		}
	}
	if (sync_err)
		sync_dropped[t]++;
}

/* One whole record, its bytes in pieces; false if it was not queued (counted). */
static bool emit(enum outq_type t, const struct iovec *iov, int n)
{
	if (q)
		return outq_putv(q, t, iov, n);
	write_sync(t, iov, n);
	return !sync_err;
}

/* A record's bytes and the newline that ends it. */
static bool emit_nl(enum outq_type t, const char *buf, size_t len)
{
	struct iovec iov[2] = { { (void *)buf, len }, { "\n", 1 } };

	return emit(t, iov, 2);
}

/* Text records are printed into one buffer, then emitted whole. */
static char *tbuf;
static size_t tlen, tcap;
static bool tfail;

__attribute__((format(printf, 1, 2)))
static void tprintf(const char *f, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, f);
		n = vsnprintf(tbuf ? tbuf + tlen : NULL, tbuf ? tcap - tlen : 0, f, ap);
		va_end(ap);
		if (n < 0) {
			tfail = true;
			return;
		}
		if (tbuf && tlen + (size_t)n < tcap) {
			tlen += (size_t)n;
			return;
		}
		{
			size_t ncap = tcap ? tcap : 4096;
			char *nb;

			while (ncap <= tlen + (size_t)n)
				ncap *= 2;
			nb = realloc(tbuf, ncap);
			if (!nb) {
				tfail = true;
				return;
			}
			tbuf = nb;
			tcap = ncap;
		}
	}
}

/* The text record printed since the last one. */
static bool temit(enum outq_type t)
{
	bool ok = false;

	if (!tfail && tlen) {
		struct iovec iov = { tbuf, tlen };

		ok = emit(t, &iov, 1);
	}
	tlen = 0;
	tfail = false;
	return ok;
}

double out_ms(uint64_t ns)
{
	return (double)(ns / 1000) / 1000.0;
}

const char *out_ip(int family, const uint8_t *addr, char *buf, unsigned len)
{
	if (!inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, addr, buf, len))
		snprintf(buf, len, "?");
	return buf;
}

/* One JSON line: fill writes the record; a record too big for the stack buffer (a
 * summary with many remotes, stats of many files) is written again in one that fits. */
static void emit_line(enum outq_type t, void (*fill)(struct jw *w, const void *rec),
		      const void *rec)
{
	char stack_buf[8192], *buf = stack_buf;
	size_t cap = sizeof(stack_buf);
	struct jw w;

	for (;;) {
		jw_init(&w, buf, cap);
		fill(&w, rec);
		if (!w.overflow)
			break;
		if (buf != stack_buf)
			free(buf);
		cap *= 4;
		buf = malloc(cap);
		if (!buf)
			return;
	}
	emit_nl(t, buf, w.len);
	if (buf != stack_buf)
		free(buf);
}

/* ---- the pod and endpoint schema, written once ---- */

/* Replay's pods (and address groups) name the address they stand for; live's never
 * do (struct pod_info.ip): jw_pod writes it in place of the cgroup. */
static bool rec_replay_pod(const struct pod_info *p)
{
	return p && p->ip[0];
}

/* "pod": {namespace,name,uid,container} or null, and "cgroup": path or null (replay:
 * "ip", the pod's address). */
static void jw_pod(struct jw *w, const struct pod_info *p)
{
	if (p && p->is_pod) {
		jw_obj(w, "pod");
		jw_str(w, "namespace", p->known ? p->namespace_ : NULL);
		jw_str(w, "name", p->known ? p->name : NULL);
		jw_str(w, "uid", p->uid);
		jw_str(w, "container", p->container[0] ? p->container : NULL);
		jw_end(w);
	} else {
		jw_null(w, "pod");
	}
	if (rec_replay_pod(p))
		jw_str(w, "ip", p->ip);  /* replay: no cgroup */
	else
		jw_str(w, "cgroup", p && p->cgroup_path[0] ? p->cgroup_path : NULL);
}

/* "ip" and "port" inside an endpoint's object; addr is 4 or 16 bytes by family. */
static void jw_endpoint_fields(struct jw *w, int family, const uint8_t *addr, uint16_t port)
{
	char txt[INET6_ADDRSTRLEN];

	jw_str(w, "ip", out_ip(family, addr, txt, sizeof(txt)));
	jw_u64(w, "port", port);
}

static void jw_endpoint(struct jw *w, const char *k, int family, const uint8_t *ip, uint16_t port)
{
	jw_obj(w, k);
	jw_endpoint_fields(w, family, ip, port);
	jw_end(w);
}

static void jw_ts(struct jw *w, const char *k, uint64_t ts_real)
{
	char ts[40];

	if (!ts_real) {
		jw_null(w, k);
		return;
	}
	cs_fmt_ts(ts_real, ts, sizeof(ts));
	jw_str(w, k, ts);
}

static void jw_nat(struct jw *w, const struct nat_rec *n)
{
	jw_obj(w, "nat");
	jw_endpoint(w, "orig_dst", n->family, n->orig_dst, n->orig_dport);
	jw_obj(w, "reply_src");
	jw_endpoint_fields(w, n->family, n->reply_src, n->reply_sport);
	jw_str(w, "pod", n->reply_pod);
	jw_end(w);
	jw_str(w, "state", n->state);
	jw_str(w, "source", n->source);
	jw_end(w);
}

static void jw_tls(struct jw *w, const struct conn_rec *v)
{
	jw_obj(w, "tls");
	jw_str(w, "version", v->tls_version);
	jw_str(w, "sni", v->tls_sni);
	jw_arr(w, "alpn_offered");
	for (const char *p = v->tls_alpn_offered ? v->tls_alpn_offered : ""; *p;) {
		size_t n = strcspn(p, ",");
		char one[64];

		snprintf(one, sizeof(one), "%.*s", (int)(n < sizeof(one) ? n : sizeof(one) - 1), p);
		jw_str(w, NULL, one);
		p += n + (p[n] == ',');
	}
	jw_end_arr(w);
	jw_str(w, "alpn", v->tls_alpn);
	if (v->tls_ms_known)
		jw_ms(w, "handshake_ms", v->tls_ns);
	else
		jw_null(w, "handshake_ms");
	jw_str(w, "outcome", v->tls_outcome);
	jw_end(w);
}

static void jw_h2(struct jw *w, const struct conn_rec *v)
{
	char code[16];

	jw_obj(w, "h2");
	jw_str(w, "source", v->h2_source);
	if (v->h2_wire_only) {
		/* TLS seen on the wire: HTTP/2 by its ALPN, no frame seen. Every
		 * field is there, null: the shape stays the contract's. */
		static const char *const unseen[] = { "count", "last_stream_id", "error", "by",
						      "debug" };
		static const char *const unseen2[] = { "rst_stream", "max_concurrent_streams",
						       "pings", "desync" };

		jw_null(w, "streams");
		jw_obj(w, "goaway");
		for (size_t i = 0; i < sizeof(unseen) / sizeof(unseen[0]); i++)
			jw_null(w, unseen[i]);
		jw_end(w);
		for (size_t i = 0; i < sizeof(unseen2) / sizeof(unseen2[0]); i++)
			jw_null(w, unseen2[i]);
		jw_bool(w, "joined_midway", false);
		jw_end(w);
		return;
	}
	if (v->h2_midway)
		jw_null(w, "streams");
	else
		jw_u64(w, "streams", v->h2_streams);
	jw_obj(w, "goaway");
	jw_u64(w, "count", v->h2_goaway);
	if (v->h2_goaway) {
		jw_u64(w, "last_stream_id", v->h2_goaway_last_id);
		if (!v->h2_goaway_error)
			snprintf(code, sizeof(code), "0x%x", v->h2_goaway_error_code);
		jw_str(w, "error", v->h2_goaway_error ? v->h2_goaway_error : code);
		jw_str(w, "by", v->h2_goaway_by);
		jw_str(w, "debug", v->h2_goaway_has_debug ? v->h2_goaway_debug : NULL);
	} else {
		jw_null(w, "last_stream_id");
		jw_null(w, "error");
		jw_null(w, "by");
		jw_null(w, "debug");
	}
	jw_end(w);
	jw_u64(w, "rst_stream", v->h2_rst_stream);
	if (v->h2_max_concurrent == H2_UNSET_VALUE)
		jw_null(w, "max_concurrent_streams");
	else
		jw_u64(w, "max_concurrent_streams", v->h2_max_concurrent);
	jw_u64(w, "pings", v->h2_pings);
	jw_u64(w, "desync", v->h2_desync);
	jw_bool(w, "joined_midway", v->h2_midway || v->h2_joined);
	jw_end(w);
}

/* A flow this node only forwarded: what conntrack held of it. */
static void fill_forwarded(struct jw *w, const void *rec)
{
	const struct conn_rec *v = rec;

	jw_obj(w, NULL);
	jw_str(w, "type", "connection");
	jw_ts(w, "ts", v->ts_real);
	jw_null(w, "pod");
	jw_str(w, "side", v->side);
	jw_endpoint(w, "client", v->family, v->client_ip, v->client_port);
	jw_endpoint(w, "server", v->family, v->server_ip, v->server_port);
	jw_ts(w, "start", v->start_real);
	jw_num(w, "duration_ms", out_ms(v->duration_ns));
	jw_obj(w, "conntrack");
	jw_str(w, "state", v->ct_state);
	jw_bool(w, "seen_reply", v->ct_seen_reply);
	jw_bool(w, "assured", v->ct_assured);
	jw_num(w, "netns", v->ct_netns);
	jw_num(w, "mark", v->ct_mark);
	if (v->ct_close_wait_known)
		jw_num(w, "close_wait_ms", out_ms(v->ct_close_wait_ns));
	jw_end(w);
	if (v->has_nat)
		jw_nat(w, &v->nat);
	jw_end(w);
}

static void json_connection(const struct conn_rec *v)
{
	char buf[4096], ts[40];
	struct jw w;

	jw_init(&w, buf, sizeof(buf));
	jw_obj(&w, NULL);
	jw_str(&w, "type", "connection");
	cs_fmt_ts(v->ts_real, ts, sizeof(ts));
	jw_str(&w, "ts", ts);
	jw_pod(&w, v->pod);
	if (v->replay) {
		jw_bool(&w, "open", v->open);
		jw_obj(&w, "capture");
		jw_str(&w, "file", v->capture_file);
		jw_u64(&w, "packet", v->capture_packet);
		jw_end(&w);
	} else {
		if (v->pid) {
			jw_u64(&w, "pid", v->pid);
			jw_str(&w, "comm", v->comm);
		} else {
			jw_null(&w, "pid");
			jw_null(&w, "comm");
		}
		jw_u64(&w, "netns", v->netns);
		jw_u64(&w, "cookie", v->cookie);
	}
	jw_str(&w, "side", v->side);
	jw_endpoint(&w, "client", v->family, v->client_ip, v->client_port);
	jw_endpoint(&w, "server", v->family, v->server_ip, v->server_port);
	if (v->start_real) {
		cs_fmt_ts(v->start_real, ts, sizeof(ts));
		jw_str(&w, "start", ts);
		jw_ms(&w, "duration_ms", v->duration_ns);
	} else {
		jw_null(&w, "start");
		jw_null(&w, "duration_ms");
	}
	jw_bool(&w, "preexisting", v->preexisting);
	jw_obj(&w, "tcp");
	jw_str(&w, "outcome", v->outcome);
	if (v->connect_known)
		jw_ms(&w, "connect_ms", v->connect_ns);
	else
		jw_null(&w, "connect_ms");
	jw_u64(&w, "syn_retrans", v->syn_retrans);
	jw_str(&w, "close", v->close);
	jw_ms(&w, "close_wait_ms", v->close_wait_ns);
	jw_u64(&w, "bytes_in", v->bytes_in);
	jw_u64(&w, "bytes_out", v->bytes_out);
	jw_u64(&w, "retrans", v->retrans);
	if (v->error)
		jw_str(&w, "error", v->error);
	jw_end(&w);
	if (v->has_tls)
		jw_tls(&w, v);
	if (v->has_h2)
		jw_h2(&w, v);
	if (v->has_nat)
		jw_nat(&w, &v->nat);
	jw_end(&w);
	if (w.overflow) {
		/* Cannot happen with bounded fields; never print half a record. */
		cs_warn("a connection record did not fit its buffer and was dropped");
		return;
	}
	emit_nl(OUTQ_CONNECTION, buf, w.len);
}

/* ---- findings ---- */

static void jw_rec_endpoint(struct jw *w, const char *k, const struct rec_endpoint *e)
{
	jw_endpoint(w, k, e->family, e->addr, e->port);
}

static void jw_close_wait(struct jw *w, const struct finding_rec *f)
{
	const typeof(f->d.close_wait) *cw = &f->d.close_wait;

	jw_num(w, "age_s", cw->age_s);
	jw_num(w, "threshold_s", cw->threshold_s);
	if (f->about == FINDING_SOCKET) {
		jw_bool(w, "preexisting", cw->preexisting);
		jw_bool(w, "age_estimated", cw->age_estimated);
	}
	if (!cw->has_holders)
		return;
	jw_arr(w, "holders");
	for (int i = 0; i < cw->nholders; i++) {
		jw_obj(w, NULL);
		jw_num(w, "pid", cw->holders[i].pid);
		jw_str(w, "comm", cw->holders[i].comm);
		jw_num(w, "fd", cw->holders[i].fd);
		jw_end(w);
	}
	jw_end_arr(w);
	if (cw->holders_total > cw->nholders)
		jw_num(w, "holders_total", cw->holders_total);
	if (cw->holders_note)
		jw_str(w, "holders_note", cw->holders_note);
	if (cw->nstack) {
		jw_arr(w, "stack");
		for (int i = 0; i < cw->nstack; i++)
			jw_str(w, NULL, cw->stack[i]);
		jw_end_arr(w);
		jw_str(w, "stack_origin", cw->stack_origin);
	} else {
		jw_null(w, "stack");
		jw_str(w, "stack_note", cw->stack_note);
	}
}

/* An HTTP/2 window's figures, inside an open object. */
static void jw_h2_window_fields(struct jw *w, const struct h2_window_rec *win, bool median)
{
	jw_num(w, "opened", win->opened);
	jw_num(w, "closed", win->closed);
	/* Null when every closed connection was TLS seen on the wire. */
	if (win->closed > win->tls_alpn || !win->closed)
		jw_num(w, "streams", (double)win->streams);
	else
		jw_null(w, "streams");
	jw_num(w, "tls_alpn", win->tls_alpn);
	jw_num(w, "http1_chosen", win->http1);
	if (win->streams_per_conn >= 0)
		jw_num(w, "streams_per_conn", win->streams_per_conn);
	else
		jw_null(w, "streams_per_conn");
	if (median && win->median_lifetime_ms >= 0)
		jw_num(w, "median_lifetime_ms", win->median_lifetime_ms);
	else if (median)
		jw_null(w, "median_lifetime_ms");
	jw_obj(w, "ended_by");
	jw_num(w, "goaway", win->by_goaway);
	jw_num(w, "peer_fin", win->by_peer_fin);
	jw_num(w, "local_fin", win->by_local_fin);
	jw_num(w, "rst", win->by_rst);
	jw_num(w, "other", win->by_other);
	jw_end(w);
}

/* "window": {"seconds", figures}; median false: a pod's window over all its remotes,
 * whose median lifetime is not the median of theirs. */
static void jw_h2_window(struct jw *w, const struct h2_window_rec *win, bool median)
{
	jw_obj(w, "window");
	jw_num(w, "seconds", win->seconds);
	jw_h2_window_fields(w, win, median);
	jw_end(w);
}

static void jw_finding_detail(struct jw *w, const struct finding_rec *f)
{
	switch (f->detail) {
	case FD_FOLD:
		jw_num(w, "count", (double)f->d.fold.count);
		jw_num(w, "window_s", f->d.fold.window_s);
		break;
	case FD_CONNECT_TIMEOUT:
		jw_num(w, "elapsed_s", f->d.connect_timeout.elapsed_s);
		jw_num(w, "threshold_s", f->d.connect_timeout.threshold_s);
		jw_num(w, "syn_retrans", f->d.connect_timeout.syn_retrans);
		break;
	case FD_CLOSE_WAIT:
		jw_close_wait(w, f);
		break;
	case FD_TLS_TIMEOUT:
		jw_str(w, "sni", f->d.tls.sni);
		jw_num(w, "elapsed_s", f->d.tls.elapsed_s);
		jw_num(w, "threshold_s", f->d.tls.threshold_s);
		break;
	case FD_TLS_FAILED:
		jw_str(w, "sni", f->d.tls.sni);
		jw_str(w, "failed_by", f->d.tls.failed_by);
		jw_str(w, "alert", f->d.tls.alert);
		jw_str(w, "reason", f->d.tls.reason);
		break;
	case FD_H2_CHURN:
		jw_h2_window(w, &f->d.h2_churn.window, true);
		jw_num(w, "threshold_conns", f->d.h2_churn.threshold_conns);
		jw_num(w, "threshold_streams_per_conn", f->d.h2_churn.threshold_streams_per_conn);
		jw_str(w, "source", f->d.h2_churn.source);
		break;
	case FD_H2_CANCELS:
		jw_num(w, "cancels", f->d.h2_cancels.cancels);
		jw_num(w, "window_s", f->d.h2_cancels.window_s);
		jw_num(w, "threshold", f->d.h2_cancels.threshold);
		break;
	case FD_H2_GOAWAY:
		jw_str(w, "goaway_by", f->d.h2_goaway.by);
		jw_num(w, "last_stream_id", f->d.h2_goaway.last_stream_id);
		jw_str(w, "error", f->d.h2_goaway.error);
		jw_str(w, "debug", f->d.h2_goaway.has_debug ? f->d.h2_goaway.debug : NULL);
		jw_num(w, "streams", f->d.h2_goaway.streams);
		if (f->d.h2_goaway.run) {
			jw_num(w, "goaway_connections", f->d.h2_goaway.goaway_connections);
			jw_num(w, "window_s", f->d.h2_goaway.window_s);
		}
		break;
	case FD_CT_PRESSURE:
		jw_num(w, "count", (double)f->d.ct_pressure.count);
		jw_num(w, "max", (double)f->d.ct_pressure.max);
		jw_num(w, "percent", f->d.ct_pressure.percent);
		jw_num(w, "growth_per_s", f->d.ct_pressure.growth_per_s);
		jw_num(w, "threshold_percent", f->d.ct_pressure.threshold_percent);
		jw_num(w, "drops", (double)f->d.ct_pressure.drops);
		jw_num(w, "insert_failed", (double)f->d.ct_pressure.insert_failed);
		jw_num(w, "early_drops", (double)f->d.ct_pressure.early_drops);
		break;
	}
}

static void fill_finding(struct jw *w, const void *rec)
{
	const struct finding_rec *f = rec;

	jw_obj(w, NULL);
	jw_str(w, "type", "finding");
	jw_ts(w, "ts", f->ts_real);
	jw_str(w, "kind", f->kind);
	jw_str(w, "severity", f->severity);
	switch (f->about) {
	case FINDING_SOCKET:
		jw_pod(w, f->pod);
		/* Replay has no process, namespace or socket: left out, as in its
		 * connection records (connscope(8)); its cookie is replay's own flow
		 * number. */
		if (!f->replay) {
			if (f->pid) {
				jw_num(w, "pid", f->pid);
				jw_str(w, "comm", f->comm);
			} else {
				jw_null(w, "pid");
				jw_null(w, "comm");
			}
			jw_num(w, "netns", f->netns);
			jw_num(w, "cookie", (double)f->cookie);
		}
		jw_str(w, "side", f->side);
		jw_rec_endpoint(w, "client", &f->client);
		jw_rec_endpoint(w, "server", &f->server);
		if (f->has_nat)
			jw_nat(w, &f->nat);
		jw_finding_detail(w, f);
		break;
	case FINDING_FORWARDED:
		jw_null(w, "pod");
		jw_str(w, "side", f->side);
		jw_str(w, "source", f->source);
		jw_rec_endpoint(w, "client", &f->client);
		jw_rec_endpoint(w, "server", &f->server);
		jw_finding_detail(w, f);
		if (f->has_nat)
			jw_nat(w, &f->nat);
		break;
	case FINDING_NODE:
		jw_null(w, "pod");
		jw_finding_detail(w, f);
		break;
	}
	if (f->has_cause) {
		jw_str(w, "cause", f->cause);
		jw_obj(w, "evidence");
		for (int i = 0; i < f->nevidence && i < FINDING_MAX_EVIDENCE; i++) {
			if (f->evidence[i].is_str)
				jw_str(w, f->evidence[i].name, f->evidence[i].str);
			else
				jw_num(w, f->evidence[i].name, f->evidence[i].num);
		}
		jw_end(w);
	}
	jw_str(w, "message", f->message);
	jw_end(w);
}

/* The pod a finding or summary is about, in a text column. */
static void pod_label(const struct pod_info *p, char *buf, size_t len)
{
	if (p && p->is_pod) {
		if (p->known)
			snprintf(buf, len, "%s/%s", p->namespace_, p->name);
		else
			snprintf(buf, len, "pod:%.8s", p->uid);
	} else if (p && p->ip[0]) {
		snprintf(buf, len, "%s", p->ip);
	} else {
		snprintf(buf, len, "%s", p && p->cgroup_path[0] ? p->cgroup_path : "-");
	}
}

/* "12:34:56.789" of a wall-clock time. */
static void short_ts(uint64_t ts_real, char *buf, size_t len)
{
	char ts[40] = "";

	if (ts_real)
		cs_fmt_ts(ts_real, ts, sizeof(ts));
	snprintf(buf, len, "%.12s", strlen(ts) > 11 ? ts + 11 : ts);
}

static void text_finding(const struct finding_rec *f)
{
	char t[16], pod[96];

	short_ts(f->ts_real, t, sizeof(t));
	pod_label(f->about == FINDING_SOCKET ? f->pod : NULL, pod, sizeof(pod));
	tprintf("%-12s FINDING %-8s %-22s %s: %s\n", t, f->severity, f->kind, pod, f->message);
	/* The code path that made a leaked socket, a frame a line, innermost first. */
	if (f->detail == FD_CLOSE_WAIT && f->d.close_wait.has_holders && f->d.close_wait.nstack) {
		tprintf("%-12s   stack of its %s():\n", "", f->d.close_wait.stack_origin);
		for (int i = 0; i < f->d.close_wait.nstack; i++)
			tprintf("%-12s     %s\n", "", f->d.close_wait.stack[i]);
	}
	temit(OUTQ_FINDING);
}

void out_finding(const struct finding_rec *f)
{
	if (fmt == FMT_JSON)
		emit_line(OUTQ_FINDING, fill_finding, f);
	else
		text_finding(f);
}

/* ---- summaries ---- */

static void jw_tls_stats(struct jw *w, const struct tls_stats_rec *st)
{
	jw_num(w, "handshakes", (double)st->handshakes);
	jw_num(w, "ok", (double)st->ok);
	jw_num(w, "failed", (double)st->failed);
	jw_num(w, "timeouts", (double)st->timeouts);
	if (st->p50_ms >= 0) {
		jw_num(w, "p50_ms", st->p50_ms);
		jw_num(w, "p99_ms", st->p99_ms);
	} else {
		jw_null(w, "p50_ms");
		jw_null(w, "p99_ms");
	}
}

static void jw_summary_tls(struct jw *w, const struct summary_rec *s)
{
	if (!s->has_tls) {
		jw_null(w, "tls");
		return;
	}
	jw_obj(w, "tls");
	jw_tls_stats(w, &s->tls.all);
	jw_arr(w, "destinations");
	for (int i = 0; i < s->tls.ndests; i++) {
		jw_obj(w, NULL);
		jw_str(w, "destination", s->tls.dests[i].destination);
		jw_tls_stats(w, &s->tls.dests[i].st);
		jw_end(w);
	}
	jw_end_arr(w);
	jw_num(w, "destination_evictions", (double)s->tls.dest_evictions);
	jw_end(w);
}

/* A remote of a summary: "ip", and "port" or null when the remote is a client. */
static void jw_remote_ep(struct jw *w, const struct rec_endpoint *ep)
{
	char txt[INET6_ADDRSTRLEN];

	jw_str(w, "ip", out_ip(ep->family, ep->addr, txt, sizeof(txt)));
	if (ep->port)
		jw_num(w, "port", ep->port);
	else
		jw_null(w, "port");
}

static void jw_summary_h2(struct jw *w, const struct summary_rec *s)
{
	if (!s->has_h2) {
		jw_null(w, "h2");
		return;
	}
	jw_obj(w, "h2");
	jw_num(w, "connections", (double)s->h2.connections);
	jw_num(w, "closed", (double)s->h2.closed);
	jw_num(w, "tls_alpn", (double)s->h2.tls_alpn);
	if (s->h2.connections > s->h2.tls_alpn)
		jw_num(w, "streams", (double)s->h2.streams);
	else
		jw_null(w, "streams");
	if (s->h2.streams_per_conn >= 0)
		jw_num(w, "streams_per_conn", s->h2.streams_per_conn);
	else
		jw_null(w, "streams_per_conn");
	jw_num(w, "goaway", (double)s->h2.goaway);
	jw_num(w, "rst_stream", (double)s->h2.rst_stream);
	jw_num(w, "desync", (double)s->h2.desync);
	jw_h2_window(w, &s->h2.window, false);
	jw_arr(w, "remotes");
	for (int i = 0; i < s->h2.nremotes; i++) {
		jw_obj(w, NULL);
		jw_remote_ep(w, &s->h2.remotes[i].ep);
		jw_str(w, "side", s->h2.remotes[i].client ? "client" : "server");
		jw_h2_window_fields(w, &s->h2.remotes[i].window, true);
		jw_end(w);
	}
	jw_end_arr(w);
	jw_num(w, "remote_evictions", (double)s->h2.remote_evictions);
	jw_end(w);
}

static void fill_summary(struct jw *w, const void *rec)
{
	const struct summary_rec *s = rec;

	jw_obj(w, NULL);
	jw_str(w, "type", "summary");
	jw_ts(w, "ts", s->ts_real);
	jw_pod(w, s->pod);
	jw_obj(w, "tcp");
	jw_num(w, "opened", (double)s->tcp.opened);
	jw_num(w, "closed", (double)s->tcp.closed);
	jw_num(w, "active", (double)s->tcp.active);
	jw_num(w, "refused", (double)s->tcp.refused);
	jw_num(w, "timeouts", (double)s->tcp.timeouts);
	jw_num(w, "resets", (double)s->tcp.resets);
	jw_num(w, "failed", (double)s->tcp.failed);
	jw_obj(w, "closed_by");
	jw_num(w, "local_fin", (double)s->tcp.closed_by[CS_CLOSE_LOCAL_FIN]);
	jw_num(w, "peer_fin", (double)s->tcp.closed_by[CS_CLOSE_PEER_FIN]);
	jw_num(w, "rst_in", (double)s->tcp.closed_by[CS_CLOSE_RST_IN]);
	jw_num(w, "rst_out", (double)s->tcp.closed_by[CS_CLOSE_RST_OUT]);
	jw_num(w, "none", (double)s->tcp.closed_by[CS_CLOSE_NONE]);
	jw_end(w);
	jw_num(w, "bytes_in", (double)s->tcp.bytes_in);
	jw_num(w, "bytes_out", (double)s->tcp.bytes_out);
	if (s->tcp.connect_p50_ms >= 0) {
		jw_num(w, "connect_p50_ms", s->tcp.connect_p50_ms);
		jw_num(w, "connect_p99_ms", s->tcp.connect_p99_ms);
	} else {
		jw_null(w, "connect_p50_ms");
		jw_null(w, "connect_p99_ms");
	}
	jw_end(w);
	jw_obj(w, "close_wait");
	jw_num(w, "current", (double)s->close_wait.current);
	jw_num(w, "stuck", (double)s->close_wait.stuck);
	jw_num(w, "max_age_s", s->close_wait.max_age_s);
	jw_end(w);
	jw_summary_tls(w, s);
	jw_summary_h2(w, s);
	jw_num(w, "findings", (double)s->findings);
	jw_arr(w, "remotes");
	for (int i = 0; i < s->nremotes; i++) {
		jw_obj(w, NULL);
		jw_remote_ep(w, &s->remotes[i].ep);
		jw_num(w, "connections", (double)s->remotes[i].connections);
		jw_num(w, "refused", (double)s->remotes[i].refused);
		jw_num(w, "timeouts", (double)s->remotes[i].timeouts);
		jw_num(w, "resets", (double)s->remotes[i].resets);
		jw_end(w);
	}
	jw_end_arr(w);
	jw_num(w, "remote_evictions", (double)s->remote_evictions);
	jw_end(w);
}

static void text_summary(const struct summary_rec *s)
{
	char t[16], pod[96];

	short_ts(s->ts_real, t, sizeof(t));
	pod_label(s->pod, pod, sizeof(pod));
	tprintf("%-12s SUMMARY %s: opened=%.0f closed=%.0f active=%.0f refused=%.0f timeouts=%.0f "
	       "resets=%.0f close_wait=%.0f stuck=%.0f max_age_s=%.1f\n",
	       t, pod, (double)s->tcp.opened, (double)s->tcp.closed, (double)s->tcp.active,
	       (double)s->tcp.refused, (double)s->tcp.timeouts, (double)s->tcp.resets,
	       (double)s->close_wait.current, (double)s->close_wait.stuck, s->close_wait.max_age_s);
	temit(OUTQ_SUMMARY);
}

void out_summary(const struct summary_rec *s)
{
	if (fmt == FMT_JSON)
		emit_line(OUTQ_SUMMARY, fill_summary, s);
	else
		text_summary(s);
}

/* The column header, printed as part of the first connection record. */
static void text_header(void)
{
	if (!header_due)
		return;
	tprintf("%-12s %-6s %-28s %-22s %-22s %-11s %-9s %8s %9s %8s %9s %9s %s\n", "TIME", "SIDE",
	       "POD", "CLIENT", "SERVER", "OUTCOME", "CLOSE", "CONN_MS", "DUR_MS", "CW_MS", "IN",
	       "OUT", "PID/COMM");
}

static void ep_text_raw(int family, const uint8_t *ip, uint16_t port, char *buf, size_t len)
{
	char txt[INET6_ADDRSTRLEN];

	out_ip(family, ip, txt, sizeof(txt));
	snprintf(buf, len, family == AF_INET6 ? "[%s]:%u" : "%s:%u", txt, port);
}

static void text_connection(const struct conn_rec *v)
{
	char ts[40], pod[96], cl[64], sv[64], own[48];
	bool header = header_due;

	text_header();
	cs_fmt_ts(v->ts_real, ts, sizeof(ts));
	if (v->pod && v->pod->known)
		snprintf(pod, sizeof(pod), "%s/%s", v->pod->namespace_, v->pod->name);
	else if (v->pod && v->pod->is_pod)
		snprintf(pod, sizeof(pod), "pod:%.8s", v->pod->uid);
	else if (v->pod && v->pod->ip[0])
		snprintf(pod, sizeof(pod), "%s", v->pod->ip);
	else
		snprintf(pod, sizeof(pod), "%s", v->pod && v->pod->cgroup_path[0] ? v->pod->cgroup_path : "-");
	ep_text_raw(v->family, v->client_ip, v->client_port, cl, sizeof(cl));
	ep_text_raw(v->family, v->server_ip, v->server_port, sv, sizeof(sv));
	if (v->pid)
		snprintf(own, sizeof(own), "%u/%s", v->pid, v->comm);
	else
		snprintf(own, sizeof(own), "-");
	tprintf("%-12.12s %-6s %-28.28s %-22s %-22s %-11s %-9s %8.3f %9.1f %8.0f %9llu %9llu %s%s",
	       strlen(ts) > 11 ? ts + 11 : ts, v->side, pod, cl, sv, v->outcome, v->close,
	       v->connect_known ? v->connect_ns / 1e6 : 0.0, v->duration_ns / 1e6,
	       v->close_wait_ns / 1e6, (unsigned long long)v->bytes_in,
	       (unsigned long long)v->bytes_out, own, v->preexisting ? " (pre-existing)" : "");
	if (v->has_tls)
		tprintf(" tls=%s %s %.1fms sni=%s", v->tls_outcome, v->tls_version ? v->tls_version : "?",
		       v->tls_ns / 1e6, v->tls_sni ? v->tls_sni : "-");
	if (v->has_h2) {
		tprintf(" h2 streams=%u", v->h2_streams);
		if (v->h2_goaway)
			tprintf(" goaway=%u(%s by %s)", v->h2_goaway,
			       v->h2_goaway_error ? v->h2_goaway_error : "?", v->h2_goaway_by);
		if (v->h2_rst_stream)
			tprintf(" rst_stream=%u", v->h2_rst_stream);
		if (v->h2_desync)
			tprintf(" desync");
	}
	tprintf("\n");
	if (temit(OUTQ_CONNECTION) && header)
		header_due = false;
}

void out_connection(const struct conn_rec *v)
{
	if (v->forwarded) {
		/* The text table shows sockets of this node only. */
		if (fmt == FMT_JSON)
			emit_line(OUTQ_CONNECTION, fill_forwarded, v);
		return;
	}
	if (fmt == FMT_JSON)
		json_connection(v);
	else
		text_connection(v);
}

void out_flush(void)
{
	if (!q)
		return;
	/* Lossless (replay): written before this returns, as fflush did. Live: the writer
	 * is woken and the caller goes on. */
	if (outq_lossless(q))
		outq_drain(q, UINT64_MAX);
	else
		outq_kick(q);
}

bool out_failed(void)
{
	return q ? outq_error(q) != 0 : sync_err != 0;
}

static void counts(struct outq_counts *c)
{
	if (q) {
		outq_counts(q, c);
		return;
	}
	memset(c, 0, sizeof(*c));
	memcpy(c->dropped, sync_dropped, sizeof(sync_dropped));
}

void out_dropped(struct stats_rec *s)
{
	struct outq_counts c;

	counts(&c);
	s->output_dropped.connection = c.dropped[OUTQ_CONNECTION];
	s->output_dropped.finding = c.dropped[OUTQ_FINDING];
	s->output_dropped.summary = c.dropped[OUTQ_SUMMARY];
	s->output_dropped.stats = c.dropped[OUTQ_STATS];
}

/* "N records (connection=a finding=b summary=c stats=d)" of per-type counts; the total. */
static uint64_t fmt_counts(const uint64_t *n, char *buf, size_t len)
{
	uint64_t total = 0;
	size_t off;

	for (int i = 0; i < OUTQ_NTYPES; i++)
		total += n[i];
	off = (size_t)snprintf(buf, len, "%llu record%s (", (unsigned long long)total,
			       total == 1 ? "" : "s");
	for (int i = 0; i < OUTQ_NTYPES && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s=%llu", i ? " " : "",
					outq_type_names[i], (unsigned long long)n[i]);
	if (off < len)
		snprintf(buf + off, len - off, ")");
	return total;
}

static int report(int fd, const char *why)
{
	struct outq_counts c;
	uint64_t unwritten[OUTQ_NTYPES];
	char a[160], b[160], line[512];
	uint64_t nd, nu;
	int err = out_failed() ? (q ? outq_error(q) : sync_err) : 0;

	counts(&c);
	for (int i = 0; i < OUTQ_NTYPES; i++)
		unwritten[i] = c.queued[i] - c.written[i];
	nd = fmt_counts(c.dropped, a, sizeof(a));
	nu = fmt_counts(unwritten, b, sizeof(b));
	if (!nd && !nu)
		return 0;
	line[0] = 0;
	if (nd)
		snprintf(line, sizeof(line), "connscope: stdout: %s dropped: %s\n", a,
			 err ? strerror(err) : "stdout did not keep up and the queue was full");
	if (nu)
		snprintf(line + strlen(line), sizeof(line) - strlen(line),
			 "connscope: stdout: %s queued but not written: %s\n", b,
			 err ? strerror(err) : why);
	if (write(fd, line, strlen(line)) < 0)
		return -1;  /* stderr gone too: nothing more to do */
	return -1;
}

int out_report(int fd, const char *why)
{
	int rc;

	pthread_mutex_lock(&qlock);
	rc = report(fd, why);
	pthread_mutex_unlock(&qlock);
	return rc;
}

int out_close(uint64_t deadline_ns, uint64_t idle_ns, volatile const sig_atomic_t *cut,
	      uint64_t cut_ns)
{
	struct outq_counts c;
	uint64_t last = 0, moved_ns = cs_mono_ns();
	bool was_cut = cut && *cut;
	int rc;

	if (closed)
		return 0;
	closed = true;
	/* A writer that keeps writing is waited for (a slow reader still gets all); one
	 * that wrote nothing for idle_ns, or past the deadline, is not. A cut (a signal)
	 * while waiting leaves cut_ns more. */
	while (q) {
		uint64_t now = cs_mono_ns(), until = now + 50 * 1000000ull;

		if (!was_cut && cut && *cut) {
			was_cut = true;
			if (now + cut_ns < deadline_ns)
				deadline_ns = now + cut_ns;
		}
		if (until > deadline_ns)
			until = deadline_ns;
		if (!outq_drain(q, until) || outq_error(q))
			break;
		now = cs_mono_ns();
		outq_counts(q, &c);
		if (c.bytes_written != last) {
			last = c.bytes_written;
			moved_ns = now;
		}
		if (now >= deadline_ns || now - moved_ns >= idle_ns)
			break;
	}
	pthread_mutex_lock(&qlock);
	rc = report(STDERR_FILENO, "stdout did not take them in time");
	outq_free(q);
	q = NULL;
	pthread_mutex_unlock(&qlock);
	return rc;
}

/* ---- stats ---- */

/* Counters go out as JSON numbers printed from doubles, as they always have. */
static void jw_cnt(struct jw *w, const char *k, uint64_t v)
{
	jw_num(w, k, (double)v);
}

static void jw_stats_live(struct jw *w, const struct stats_rec *s)
{
	jw_cnt(w, "events", s->events);
	jw_cnt(w, "lost", s->lost);
	jw_cnt(w, "ringbuf_full", s->ringbuf_full);
	jw_cnt(w, "missed_runs", s->missed_runs);
	jw_cnt(w, "rescued_runs", s->rescued_runs);
	jw_cnt(w, "map_full", s->map_full);
	jw_cnt(w, "child_races", s->child_races);
	jw_cnt(w, "sampled_out", s->sampled_out);
	jw_cnt(w, "parser_desync", s->parser_desync);
	jw_num(w, "cpu_ms", s->cpu_ms);
	jw_cnt(w, "bpf_ms", s->bpf_ms);
	jw_cnt(w, "consumed", s->consumed);
	jw_cnt(w, "unread", s->unread);
	jw_obj(w, "output_dropped");
	jw_cnt(w, "connection", s->output_dropped.connection);
	jw_cnt(w, "finding", s->output_dropped.finding);
	jw_cnt(w, "summary", s->output_dropped.summary);
	jw_cnt(w, "stats", s->output_dropped.stats);
	jw_end(w);
	jw_str(w, "attach", s->attach);
	if (s->socket_state)
		jw_str(w, "socket_state", s->socket_state);
	jw_str(w, "tls_cgroup", s->tls_cgroup);
	if (s->tls_handshakes) {
		jw_str(w, "tls_handshakes", s->tls_handshakes);
		jw_cnt(w, "tls_events", s->tls_events);
	}
	if (s->h2_plaintext)
		jw_str(w, "h2_plaintext", s->h2_plaintext);
	if (s->h2_probes.on) {
		jw_obj(w, "h2_probes");
		jw_cnt(w, "pods", s->h2_probes.pods);
		jw_arr(w, "names");
		for (int i = 0; i < s->h2_probes.nnames; i++)
			jw_str(w, NULL, s->h2_probes.names[i]);
		jw_end_arr(w);
		jw_cnt(w, "processes", s->h2_probes.processes);
		jw_cnt(w, "links", s->h2_probes.links);
		jw_cnt(w, "over_cap", s->h2_probes.over_cap);
		jw_end(w);
	}
	jw_obj(w, "conntrack");
	jw_str(w, "watcher", s->ct.watcher);
	jw_cnt(w, "events", s->ct.events);
	jw_cnt(w, "lost", s->ct.lost);
	jw_cnt(w, "map_full", s->ct.map_full);
	jw_cnt(w, "map_evictions", s->ct.map_evictions);
	jw_cnt(w, "evictions", s->ct.evictions);
	jw_cnt(w, "nat_gets", s->ct.nat_gets);
	jw_cnt(w, "nat_gets_skipped", s->ct.nat_gets_skipped);
	jw_end(w);
	jw_obj(w, "stacks");
	jw_str(w, "mode", s->stacks.mode);
	jw_cnt(w, "captured", s->stacks.captured);
	jw_cnt(w, "dropped", s->stacks.dropped);
	jw_end(w);
	jw_str(w, "holders", s->holders);
	jw_num(w, "uptime_s", s->uptime_s);
}

static void jw_stats_replay(struct jw *w, const struct stats_rec *s)
{
	jw_arr(w, "files");
	for (int i = 0; i < s->nfiles; i++) {
		const struct stats_file *f = &s->files[i];

		jw_obj(w, NULL);
		jw_str(w, "file", f->file);
		jw_bool(w, "read", f->read);
		if (f->read) {
			jw_str(w, "link", f->link);
			jw_cnt(w, "packets", f->packets);
			jw_bool(w, "truncated", f->truncated);
		}
		jw_end(w);
	}
	jw_end_arr(w);
	jw_cnt(w, "packets", s->packets);
	jw_cnt(w, "bytes", s->bytes);
	jw_cnt(w, "tcp_segments", s->tcp_segments);
	jw_cnt(w, "not_tcp", s->not_tcp);
	jw_cnt(w, "ip_fragments", s->ip_fragments);
	jw_cnt(w, "decode_errors", s->decode_errors);
	jw_cnt(w, "snap_cut", s->snap_cut);
	jw_cnt(w, "truncated_files", s->truncated_files);
	jw_cnt(w, "flows", s->flows);
	jw_cnt(w, "evictions", s->evictions);
	jw_cnt(w, "ignored", s->ignored);
	jw_cnt(w, "duplicates", s->duplicates);
	jw_cnt(w, "gaps", s->gaps);
	jw_cnt(w, "desyncs", s->desyncs);
	jw_cnt(w, "parser_desync", s->parser_desync);
	jw_cnt(w, "tls_decrypted", s->tls_decrypted);
	jw_cnt(w, "tls_no_keys", s->tls_no_keys);
	jw_cnt(w, "tls_bad_keys", s->tls_bad_keys);
	jw_cnt(w, "tls_unsupported", s->tls_unsupported);
	jw_cnt(w, "tls_decrypt_errors", s->tls_decrypt_errors);
	jw_cnt(w, "tls_early_data_records", s->tls_early_data_records);
	jw_cnt(w, "events", s->events);
	jw_cnt(w, "lost", s->lost);
	jw_cnt(w, "map_full", s->map_full);
	jw_num(w, "cpu_ms", s->cpu_ms);
}

static void fill_stats(struct jw *w, const void *rec)
{
	const struct stats_rec *s = rec;
	char ts[40];

	jw_obj(w, NULL);
	jw_str(w, "type", "stats");
	if (s->ts_real) {
		cs_fmt_ts(s->ts_real, ts, sizeof(ts));
		jw_str(w, "ts", ts);
	} else {
		jw_null(w, "ts");
	}
	jw_str(w, "phase", s->phase);
	jw_str(w, "version", CONNSCOPE_VERSION);
	if (s->replay)
		jw_stats_replay(w, s);
	else
		jw_stats_live(w, s);
	jw_end(w);
}

void out_stats(const struct stats_rec *s)
{
	char ts[40] = "";

	if (fmt == FMT_JSON) {
		emit_line(OUTQ_STATS, fill_stats, s);
		return;
	}
	if (s->ts_real)
		cs_fmt_ts(s->ts_real, ts, sizeof(ts));
	tprintf("%-12.12s STATS   phase=%s events=%.0f lost=%.0f map_full=%.0f parser_desync=%.0f "
	       "cpu_ms=%.0f",
	       strlen(ts) > 11 ? ts + 11 : ts, s->phase, (double)s->events, (double)s->lost,
	       (double)s->map_full, (double)s->parser_desync, s->cpu_ms);
	if (!s->replay) {
		uint64_t d = s->output_dropped.connection + s->output_dropped.finding +
			     s->output_dropped.summary + s->output_dropped.stats;

		/* Said only when records were dropped: the line is as before otherwise. */
		if (d)
			tprintf(" output_dropped=%.0f", (double)d);
	}
	tprintf("\n");
	temit(OUTQ_STATS);
}
