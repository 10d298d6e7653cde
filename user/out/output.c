// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "output.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "jsonw.h"
#include "util.h"

static enum cs_fmt fmt;
static bool header_due;
static char outbuf[1 << 16];

void out_init(enum cs_fmt f, bool text_header)
{
	fmt = f;
	header_due = f == FMT_TEXT && text_header;
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
}

double out_ms(uint64_t ns)
{
	return (double)(ns / 1000) / 1000.0;
}

cJSON *out_record(const char *type, uint64_t ts_real)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "type", type);
	out_add_ts(o, "ts", ts_real);
	return o;
}

void out_add_ts(cJSON *o, const char *name, uint64_t ts_real)
{
	char ts[40];

	if (!ts_real) {
		cJSON_AddNullToObject(o, name);
		return;
	}
	cs_fmt_ts(ts_real, ts, sizeof(ts));
	cJSON_AddStringToObject(o, name, ts);
}

/* ---- the pod and endpoint schema, written once ----
 * Typed records write it through jsonw; records still built as cJSON trees get the
 * same fields through the cJSON side of this small interface. */
struct fields {
	void (*obj)(struct fields *f, const char *k);
	void (*end)(struct fields *f);
	void (*str)(struct fields *f, const char *k, const char *v); /* v NULL: null */
	void (*u64)(struct fields *f, const char *k, uint64_t v);
};

static void put_pod(struct fields *f, const struct pod_info *p)
{
	if (p && p->is_pod) {
		f->obj(f, "pod");
		f->str(f, "namespace", p->known ? p->namespace_ : NULL);
		f->str(f, "name", p->known ? p->name : NULL);
		f->str(f, "uid", p->uid);
		f->str(f, "container", p->container[0] ? p->container : NULL);
		f->end(f);
	} else {
		f->str(f, "pod", NULL);
	}
	if (p && p->ip[0])
		f->str(f, "ip", p->ip);  /* replay: no cgroup */
	else
		f->str(f, "cgroup", p && p->cgroup_path[0] ? p->cgroup_path : NULL);
}

/* "ip" and "port" inside an endpoint's object; addr is 4 or 16 bytes by family. */
static void put_endpoint_fields(struct fields *f, int family, const uint8_t *addr, uint16_t port)
{
	char txt[INET6_ADDRSTRLEN];

	f->str(f, "ip", out_ip(family, addr, txt, sizeof(txt)));
	f->u64(f, "port", port);
}

struct jw_fields {
	struct fields f;
	struct jw *w;
};

static void jf_obj(struct fields *f, const char *k) { jw_obj(((struct jw_fields *)f)->w, k); }
static void jf_end(struct fields *f) { jw_end(((struct jw_fields *)f)->w); }
static void jf_str(struct fields *f, const char *k, const char *v)
{
	jw_str(((struct jw_fields *)f)->w, k, v);
}
static void jf_u64(struct fields *f, const char *k, uint64_t v)
{
	jw_u64(((struct jw_fields *)f)->w, k, v);
}

#define JW_FIELDS(w) { { jf_obj, jf_end, jf_str, jf_u64 }, (w) }

struct cj_fields {
	struct fields f;
	cJSON *at[4];              /* the open objects, innermost last */
	int depth;
};

static void cf_obj(struct fields *f, const char *k)
{
	struct cj_fields *c = (struct cj_fields *)f;

	c->at[c->depth + 1] = cJSON_AddObjectToObject(c->at[c->depth], k);
	c->depth++;
}
static void cf_end(struct fields *f) { ((struct cj_fields *)f)->depth--; }
static void cf_str(struct fields *f, const char *k, const char *v)
{
	struct cj_fields *c = (struct cj_fields *)f;

	if (v)
		cJSON_AddStringToObject(c->at[c->depth], k, v);
	else
		cJSON_AddNullToObject(c->at[c->depth], k);
}
static void cf_u64(struct fields *f, const char *k, uint64_t v)
{
	struct cj_fields *c = (struct cj_fields *)f;

	cJSON_AddNumberToObject(c->at[c->depth], k, (double)v);
}

#define CJ_FIELDS(o) { { cf_obj, cf_end, cf_str, cf_u64 }, { (o) }, 0 }

void out_add_pod(cJSON *o, const struct pod_info *p)
{
	struct cj_fields c = CJ_FIELDS(o);

	put_pod(&c.f, p);
}

const char *out_ip(int family, const uint8_t *addr, char *buf, unsigned len)
{
	if (!inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, addr, buf, len))
		snprintf(buf, len, "?");
	return buf;
}

void out_add_endpoint(cJSON *o, const char *name, int family, const uint8_t *addr,
		      uint16_t port)
{
	struct cj_fields c = CJ_FIELDS(o);

	c.f.obj(&c.f, name);
	put_endpoint_fields(&c.f, family, addr, port);
	c.f.end(&c.f);
}

/* ---- text rendering: read back the fields of the record ---- */

static const char *str(const cJSON *o, const char *k, const char *dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double num(const cJSON *o, const char *k, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const cJSON *obj(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* "12:34:56.789" out of the RFC 3339 stamp. */
static void short_time(const cJSON *o, char *buf, size_t len)
{
	const char *ts = str(o, "ts", "");

	snprintf(buf, len, "%.12s", strlen(ts) > 11 ? ts + 11 : ts);
}

static void pod_text(const cJSON *o, char *buf, size_t len)
{
	const cJSON *pod = obj(o, "pod");

	if (cJSON_IsObject(pod)) {
		const char *ns = str(pod, "namespace", NULL), *name = str(pod, "name", NULL);

		if (ns && name)
			snprintf(buf, len, "%s/%s", ns, name);
		else
			snprintf(buf, len, "pod:%.8s", str(pod, "uid", "?"));
	} else if (str(o, "ip", NULL)) {
		snprintf(buf, len, "%s", str(o, "ip", "-"));
	} else {
		snprintf(buf, len, "%s", str(o, "cgroup", "-"));
	}
}

static void text_summary(const cJSON *o)
{
	const cJSON *tcp = obj(o, "tcp"), *cw = obj(o, "close_wait");
	char t[16], pod[96];

	short_time(o, t, sizeof(t));
	pod_text(o, pod, sizeof(pod));
	printf("%-12s SUMMARY %s: opened=%.0f closed=%.0f active=%.0f refused=%.0f timeouts=%.0f "
	       "resets=%.0f close_wait=%.0f stuck=%.0f max_age_s=%.1f\n",
	       t, pod, num(tcp, "opened", 0), num(tcp, "closed", 0), num(tcp, "active", 0),
	       num(tcp, "refused", 0), num(tcp, "timeouts", 0), num(tcp, "resets", 0),
	       num(cw, "current", 0), num(cw, "stuck", 0), num(cw, "max_age_s", 0));
}

/* A cJSON tree through the one JSON writer. */
static void jw_tree(struct jw *w, const char *k, const cJSON *item)
{
	const cJSON *c;

	if (cJSON_IsObject(item) || cJSON_IsArray(item)) {
		bool obj = cJSON_IsObject(item);

		if (obj)
			jw_obj(w, k);
		else
			jw_arr(w, k);
		cJSON_ArrayForEach(c, item)
			jw_tree(w, obj ? c->string : NULL, c);
		if (obj)
			jw_end(w);
		else
			jw_end_arr(w);
	} else if (cJSON_IsString(item)) {
		jw_str(w, k, item->valuestring);
	} else if (cJSON_IsNumber(item)) {
		jw_num(w, k, item->valuedouble);
	} else if (cJSON_IsBool(item)) {
		jw_bool(w, k, cJSON_IsTrue(item));
	} else {
		jw_null(w, k);
	}
}

/* One JSON line: fill writes the record; a record too big for the stack buffer (a
 * summary with many remotes, stats of many files) is written again in one that fits. */
static void emit_line(void (*fill)(struct jw *w, const void *rec), const void *rec)
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
	fputs(buf, stdout);
	fputc('\n', stdout);
	if (buf != stack_buf)
		free(buf);
}

static void fill_tree(struct jw *w, const void *rec)
{
	jw_tree(w, NULL, rec);
}

void out_emit(cJSON *o)
{
	if (fmt == FMT_JSON) {
		emit_line(fill_tree, o);
	} else {
		const char *type = str(o, "type", "");

		if (!strcmp(type, "summary"))
			text_summary(o);
	}
	cJSON_Delete(o);
}

static void jw_pod(struct jw *w, const struct pod_info *p)
{
	struct jw_fields j = JW_FIELDS(w);

	put_pod(&j.f, p);
}

static void jw_endpoint(struct jw *w, const char *k, int family, const uint8_t *ip, uint16_t port)
{
	struct jw_fields j = JW_FIELDS(w);

	jw_obj(w, k);
	put_endpoint_fields(&j.f, family, ip, port);
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
	struct jw_fields j = JW_FIELDS(w);

	jw_obj(w, "nat");
	jw_endpoint(w, "orig_dst", n->family, n->orig_dst, n->orig_dport);
	jw_obj(w, "reply_src");
	put_endpoint_fields(&j.f, n->family, n->reply_src, n->reply_sport);
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
	} else {
		jw_null(w, "last_stream_id");
		jw_null(w, "error");
		jw_null(w, "by");
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
	fwrite(buf, 1, w.len, stdout);
	fputc('\n', stdout);
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

static void jw_h2_window(struct jw *w, const struct h2_window_rec *win)
{
	jw_obj(w, "window");
	jw_num(w, "seconds", win->seconds);
	jw_num(w, "opened", win->opened);
	jw_num(w, "closed", win->closed);
	jw_num(w, "streams", (double)win->streams);
	if (win->streams_per_conn >= 0)
		jw_num(w, "streams_per_conn", win->streams_per_conn);
	else
		jw_null(w, "streams_per_conn");
	if (win->median_lifetime_ms >= 0)
		jw_num(w, "median_lifetime_ms", win->median_lifetime_ms);
	else
		jw_null(w, "median_lifetime_ms");
	jw_obj(w, "ended_by");
	jw_num(w, "goaway", win->by_goaway);
	jw_num(w, "peer_fin", win->by_peer_fin);
	jw_num(w, "local_fin", win->by_local_fin);
	jw_num(w, "rst", win->by_rst);
	jw_num(w, "other", win->by_other);
	jw_end(w);
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
		jw_h2_window(w, &f->d.h2_churn.window);
		jw_num(w, "threshold_conns", f->d.h2_churn.threshold_conns);
		jw_num(w, "threshold_streams_per_conn", f->d.h2_churn.threshold_streams_per_conn);
		break;
	case FD_H2_GOAWAY:
		jw_str(w, "goaway_by", f->d.h2_goaway.by);
		jw_num(w, "last_stream_id", f->d.h2_goaway.last_stream_id);
		jw_str(w, "error", f->d.h2_goaway.error);
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
		if (f->pid) {
			jw_num(w, "pid", f->pid);
			jw_str(w, "comm", f->comm);
		} else {
			jw_null(w, "pid");
			jw_null(w, "comm");
		}
		jw_num(w, "netns", f->netns);
		jw_num(w, "cookie", (double)f->cookie);
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
	printf("%-12s FINDING %-8s %-22s %s: %s\n", t, f->severity, f->kind, pod, f->message);
	/* The code path that made a leaked socket, a frame a line, innermost first. */
	if (f->detail == FD_CLOSE_WAIT && f->d.close_wait.has_holders && f->d.close_wait.nstack) {
		printf("%-12s   stack of its %s():\n", "", f->d.close_wait.stack_origin);
		for (int i = 0; i < f->d.close_wait.nstack; i++)
			printf("%-12s     %s\n", "", f->d.close_wait.stack[i]);
	}
}

void out_finding(const struct finding_rec *f)
{
	if (fmt == FMT_JSON)
		emit_line(fill_finding, f);
	else
		text_finding(f);
}

static void text_header(void)
{
	if (!header_due)
		return;
	printf("%-12s %-6s %-28s %-22s %-22s %-11s %-9s %8s %9s %8s %9s %9s %s\n", "TIME", "SIDE",
	       "POD", "CLIENT", "SERVER", "OUTCOME", "CLOSE", "CONN_MS", "DUR_MS", "CW_MS", "IN",
	       "OUT", "PID/COMM");
	header_due = false;
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
	printf("%-12.12s %-6s %-28.28s %-22s %-22s %-11s %-9s %8.3f %9.1f %8.0f %9llu %9llu %s%s",
	       strlen(ts) > 11 ? ts + 11 : ts, v->side, pod, cl, sv, v->outcome, v->close,
	       v->connect_known ? v->connect_ns / 1e6 : 0.0, v->duration_ns / 1e6,
	       v->close_wait_ns / 1e6, (unsigned long long)v->bytes_in,
	       (unsigned long long)v->bytes_out, own, v->preexisting ? " (pre-existing)" : "");
	if (v->has_tls)
		printf(" tls=%s %s %.1fms sni=%s", v->tls_outcome, v->tls_version ? v->tls_version : "?",
		       v->tls_ns / 1e6, v->tls_sni ? v->tls_sni : "-");
	if (v->has_h2) {
		printf(" h2 streams=%u", v->h2_streams);
		if (v->h2_goaway)
			printf(" goaway=%u(%s by %s)", v->h2_goaway,
			       v->h2_goaway_error ? v->h2_goaway_error : "?", v->h2_goaway_by);
		if (v->h2_rst_stream)
			printf(" rst_stream=%u", v->h2_rst_stream);
		if (v->h2_desync)
			printf(" desync");
	}
	putchar('\n');
}

void out_connection(const struct conn_rec *v)
{
	if (v->forwarded) {
		/* The text table shows sockets of this node only. */
		if (fmt == FMT_JSON)
			emit_line(fill_forwarded, v);
		return;
	}
	if (fmt == FMT_JSON)
		json_connection(v);
	else
		text_connection(v);
}

void out_flush(void)
{
	fflush(stdout);
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
	jw_cnt(w, "map_full", s->map_full);
	jw_cnt(w, "child_races", s->child_races);
	jw_cnt(w, "parser_desync", s->parser_desync);
	jw_num(w, "cpu_ms", s->cpu_ms);
	jw_cnt(w, "bpf_ms", s->bpf_ms);
	jw_cnt(w, "consumed", s->consumed);
	jw_str(w, "attach", s->attach);
	jw_str(w, "tls_cgroup", s->tls_cgroup);
	jw_obj(w, "conntrack");
	jw_str(w, "watcher", s->ct.watcher);
	jw_cnt(w, "events", s->ct.events);
	jw_cnt(w, "lost", s->ct.lost);
	jw_cnt(w, "map_full", s->ct.map_full);
	jw_cnt(w, "map_evictions", s->ct.map_evictions);
	jw_cnt(w, "evictions", s->ct.evictions);
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
		emit_line(fill_stats, s);
		return;
	}
	if (s->ts_real)
		cs_fmt_ts(s->ts_real, ts, sizeof(ts));
	printf("%-12.12s STATS   phase=%s events=%.0f lost=%.0f map_full=%.0f parser_desync=%.0f "
	       "cpu_ms=%.0f\n",
	       strlen(ts) > 11 ? ts + 11 : ts, s->phase, (double)s->events, (double)s->lost,
	       (double)s->map_full, (double)s->parser_desync, s->cpu_ms);
}
