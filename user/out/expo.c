// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The Prometheus exposition (expo.h). Names follow Prometheus's naming guide:
 * base units (seconds, bytes), _total on counters, one family per meaning.
 *
 * Labels. Every per-pod series has namespace and pod (a pod whose name is not
 * known: namespace "" and pod its uid; a cgroup that is no pod: both "" and
 * cgroup its path). The per-remote families add remote: at most `remotes`
 * remotes of a pod get a label of their own, the rest count under "other", so a
 * pod has at most remotes + 1 series per family whatever it talks to.
 *
 * Which remotes. A pod's remotes are ranked by trouble (refused, timed out,
 * reset), then by connections. The first `remotes` ranked get labels; later, an
 * unlabelled remote takes the label of the weakest labelled one once it ranks
 * at least twice as high (the factor keeps two close remotes from taking turns).
 * Counters stay counters through all of it: each label counts from the moment
 * it was given, what a remote did without one went to "other", and a remote
 * that loses its label ends its series (Prometheus marks it stale) and counts
 * under "other" from then on.
 */
#include "expo.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "kmap.h"
#include "output.h"
#include "pods.h"
#include "util.h"

#define LABELS_MAX 720    /* a pod's label text, zero-padded: the state's key */
#define MAX_KINDS 24      /* finding kinds counted per pod (there are fewer) */
#define XREMOTES_MAX (4 * SUMMARY_ALL_REMOTES)  /* remotes remembered per pod */

enum { R_CONNS, R_REFUSED, R_TIMEOUTS, R_RESETS, R_N };

struct xremote {
	uint8_t family, addr[16];
	uint16_t port;
	bool labelled, present;
	uint64_t cur[R_N];        /* the tracker's counts now (present) */
	uint64_t last[R_N];       /* ... at the last render */
	uint64_t val[R_N];        /* labelled: counted since the label was given */
};

struct xpod {
	struct xremote *r;        /* the remotes seen in the pod's table (XREMOTES_MAX) */
	int n, cap;
	unsigned nlabelled;
	uint64_t other[R_N];
	uint64_t kother_last[R_N];
	struct {
		char kind[32];
		uint64_t n;
	} findings[MAX_KINDS];
	int nkinds;
	bool seen;                /* in this render's views */
};

struct expo {
	unsigned remotes;
	struct kmap pods;         /* label text -> struct xpod */
};

struct expo *expo_new(unsigned remotes)
{
	struct expo *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->remotes = remotes ? remotes : EXPO_REMOTES_DEFAULT;
	kmap_init(&x->pods, LABELS_MAX, NULL);
	return x;
}

static void xpod_free(struct xpod *p)
{
	if (p)
		free(p->r);
	free(p);
}

void expo_free(struct expo *x)
{
	const void *k;
	void *v;

	if (!x)
		return;
	for (size_t i = 0; kmap_next(&x->pods, &i, &k, &v);)
		xpod_free(v);
	kmap_free(&x->pods);
	free(x);
}

/* ---- labels ---- */

/* name="value", with backslash, double quote and newline escaped; the buffer
 * always ends in a NUL, a value cut at its end. */
static void label_put(char *buf, size_t cap, size_t *len, const char *name, const char *val)
{
	size_t n = *len;

	if (n && n < cap - 1)
		buf[n++] = ',';
	for (const char *p = name; *p && n < cap - 1; p++)
		buf[n++] = *p;
	if (n < cap - 1)
		buf[n++] = '=';
	if (n < cap - 1)
		buf[n++] = '"';
	for (const char *p = val; *p && n < cap - 3; p++) {
		if (*p == '\\' || *p == '"' || *p == '\n')
			buf[n++] = '\\';
		buf[n++] = *p == '\n' ? 'n' : *p;
	}
	if (n < cap - 1)
		buf[n++] = '"';
	buf[n < cap ? n : cap - 1] = '\0';
	*len = n;
}

/* The labels of a pod's series, zero-padded to LABELS_MAX (the state's key). */
static void pod_labels(char out[LABELS_MAX], const struct pod_info *pod, const char *key)
{
	size_t n = 0;

	memset(out, 0, LABELS_MAX);
	if (!pod) {
		return;  /* the node */
	} else if (pod->known) {
		label_put(out, LABELS_MAX, &n, "namespace", pod->namespace_);
		label_put(out, LABELS_MAX, &n, "pod", pod->name);
	} else if (pod->is_pod) {
		label_put(out, LABELS_MAX, &n, "namespace", "");
		label_put(out, LABELS_MAX, &n, "pod", pod->uid);
	} else {
		label_put(out, LABELS_MAX, &n, "namespace", "");
		label_put(out, LABELS_MAX, &n, "pod", "");
		label_put(out, LABELS_MAX, &n, "cgroup",
			  pod->cgroup_path[0] ? pod->cgroup_path : key ? key : "");
	}
}

/* " value\n": a whole number (most are counts) without printf's float path,
 * which was a third of a render's time. */
static void put_value(FILE *f, double v)
{
	char buf[24], *p = buf + sizeof(buf);

	if (v >= 0 && v < 9007199254740992.0 && v == (double)(uint64_t)v) {
		uint64_t u = (uint64_t)v;

		*--p = '\n';
		do
			*--p = (char)('0' + u % 10);
		while ((u /= 10));
		*--p = ' ';
		fwrite(p, 1, (size_t)(buf + sizeof(buf) - p), f);
		return;
	}
	fprintf(f, " %.16g\n", v);
}

/* A series: name{labels[,extra="val"]} value. */
static void series(FILE *f, const char *name, const char *labels, const char *extra,
		   const char *extra_val, double v)
{
	fputs(name, f);
	if (labels[0] || extra) {
		char buf[LABELS_MAX + 320];
		size_t n = strlen(labels);

		memcpy(buf, labels, n + 1);
		if (extra)
			label_put(buf, sizeof(buf), &n, extra, extra_val);
		fprintf(f, "{%s}", buf);
	}
	put_value(f, v);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- per-pod state ---- */

static struct xpod *xpod_of(struct expo *x, const char labels[LABELS_MAX])
{
	struct xpod *p = kmap_get(&x->pods, labels);

	if (p)
		return p;
	p = calloc(1, sizeof(*p));
	if (p && kmap_put(&x->pods, labels, p)) {
		free(p);
		p = NULL;
	}
	return p;
}

void expo_finding(struct expo *x, const struct finding_rec *f)
{
	char labels[LABELS_MAX];
	struct xpod *p;
	int i;

	if (!x || !f->kind)
		return;
	pod_labels(labels, f->about == FINDING_SOCKET ? f->pod : NULL, NULL);
	p = xpod_of(x, labels);
	if (!p)
		return;
	for (i = 0; i < p->nkinds; i++)
		if (!strcmp(p->findings[i].kind, f->kind))
			break;
	if (i == p->nkinds) {
		if (p->nkinds == MAX_KINDS)
			return;
		snprintf(p->findings[p->nkinds++].kind, sizeof(p->findings[0].kind), "%s", f->kind);
	}
	p->findings[i].n++;
}

static void counts_of(const struct remote_rec *r, uint64_t c[R_N])
{
	c[R_CONNS] = r->connections;
	c[R_REFUSED] = r->refused;
	c[R_TIMEOUTS] = r->timeouts;
	c[R_RESETS] = r->resets;
}

static bool same_remote(const struct xremote *a, const struct rec_endpoint *ep)
{
	size_t alen = ep->family == AF_INET6 ? 16 : 4;

	return a->family == ep->family && a->port == ep->port && !memcmp(a->addr, ep->addr, alen);
}

/* How much a remote matters: its trouble, then its connections, as the tracker
 * counts them (labelled ones no longer in its table: as counted here; others:
 * as last seen). */
static void rank_of(const struct xremote *r, uint64_t *trouble, uint64_t *conns)
{
	const uint64_t *c = r->present ? r->cur : r->labelled ? r->val : r->last;

	*trouble = c[R_REFUSED] + c[R_TIMEOUTS] + c[R_RESETS];
	*conns = c[R_CONNS];
}

/* a ranks above b by factor or more: trouble decides, then connections. */
static bool ranks_above(const struct xremote *a, const struct xremote *b, uint64_t factor)
{
	uint64_t ta, ca, tb, cb;

	rank_of(a, &ta, &ca);
	rank_of(b, &tb, &cb);
	return ta != tb ? ta > tb * factor : ca > cb * factor;
}

/* Bring a pod's remotes up to the summary's: labels first, by rank, then each
 * remote's delta since the last render goes to its label, or to "other". */
static void remotes_update(struct expo *x, struct xpod *p, const struct summary_rec *s)
{
	uint64_t c[R_N];
	int i, j;

	for (i = 0; i < p->n; i++)
		p->r[i].present = false;
	for (j = 0; j < s->nall_remotes; j++) {
		const struct remote_rec *rr = &s->all_remotes[j];
		struct xremote *r = NULL;

		for (i = 0; i < p->n && !r; i++)
			if (same_remote(&p->r[i], &rr->ep))
				r = &p->r[i];
		if (!r) {
			if (p->n == p->cap) {
				int cap = p->cap ? p->cap * 2 : 8;
				struct xremote *nr = realloc(p->r, (size_t)cap * sizeof(*nr));

				if (!nr)
					continue;
				p->r = nr;
				p->cap = cap;
			}
			r = &p->r[p->n++];
			memset(r, 0, sizeof(*r));
			r->family = (uint8_t)rr->ep.family;
			r->port = rr->ep.port;
			memcpy(r->addr, rr->ep.addr, rr->ep.family == AF_INET6 ? 16 : 4);
		}
		counts_of(rr, r->cur);
		r->present = true;
	}
	/* Remotes the table let go of are remembered with their last counts: live,
	 * the kernel's counts go on growing, and one that comes back must add only
	 * what it did since. Past XREMOTES_MAX, the lowest ranked unlabelled one
	 * that is gone is forgotten (should it come back, its delta is its count). */
	while (p->n > XREMOTES_MAX) {
		int low = -1;

		for (i = 0; i < p->n; i++)
			if (!p->r[i].present && !p->r[i].labelled &&
			    (low < 0 || ranks_above(&p->r[low], &p->r[i], 1)))
				low = i;
		if (low < 0)
			break;
		p->r[low] = p->r[--p->n];
	}
	/* Labels: the highest ranked unlabelled remote takes a free one, or the
	 * weakest labelled one's when it ranks twice as high; until neither. */
	for (int round = 0; round <= p->n; round++) {
		struct xremote *best = NULL, *weakest = NULL;

		for (i = 0; i < p->n; i++) {
			struct xremote *r = &p->r[i];

			if (!r->labelled && r->present && (!best || ranks_above(r, best, 1)))
				best = r;
			if (r->labelled && (!weakest || ranks_above(weakest, r, 1)))
				weakest = r;
		}
		if (!best)
			break;
		if (p->nlabelled < x->remotes) {
			p->nlabelled++;
		} else if (weakest && ranks_above(best, weakest, 2)) {
			weakest->labelled = false;
			memset(weakest->val, 0, sizeof(weakest->val));
		} else {
			break;
		}
		best->labelled = true;
	}
	for (i = 0; i < p->n; i++) {
		struct xremote *r = &p->r[i];

		if (!r->present)
			continue;
		for (int k = 0; k < R_N; k++) {
			/* Fewer than last time: the tracker made the entry anew. */
			uint64_t d = r->cur[k] >= r->last[k] ? r->cur[k] - r->last[k] : r->cur[k];

			if (r->labelled)
				r->val[k] += d;
			else
				p->other[k] += d;
			r->last[k] = r->cur[k];
		}
	}
	counts_of(&s->remotes_other, c);
	for (int k = 0; k < R_N; k++) {
		p->other[k] += c[k] >= p->kother_last[k] ? c[k] - p->kother_last[k] : c[k];
		p->kother_last[k] = c[k];
	}
}

/* The remote label: IP:PORT for a server the pod dialled, IP for clients. */
static const char *remote_label(const struct xremote *r, char *buf, size_t len)
{
	char ip[64];

	out_ip(r->family, r->addr, ip, sizeof(ip));
	if (!r->port)
		snprintf(buf, len, "%s", ip);
	else if (r->family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", ip, r->port);
	else
		snprintf(buf, len, "%s:%u", ip, r->port);
	return buf;
}

/* ---- the families ---- */

struct view {
	const struct summary_rec *s;
	struct xpod *p;
	char labels[LABELS_MAX];
};

typedef bool (*getter)(const struct summary_rec *s, double *v);

#define GET(fn, cond, expr) \
	static bool fn(const struct summary_rec *s, double *v) { *v = (double)(expr); return (cond); }
GET(g_opened, true, s->tcp.opened)
GET(g_closed, true, s->tcp.closed)
GET(g_active, true, s->tcp.active)
GET(g_refused, true, s->tcp.refused)
GET(g_timeouts, true, s->tcp.timeouts)
GET(g_resets, true, s->tcp.resets)
GET(g_failed, true, s->tcp.failed)
GET(g_bytes_in, true, s->tcp.bytes_in)
GET(g_bytes_out, true, s->tcp.bytes_out)
GET(g_cw, true, s->close_wait.current)
GET(g_stuck, true, s->close_wait.stuck)
GET(g_cw_age, true, s->close_wait.max_age_s)
GET(g_h2_opened, s->has_h2, s->h2.connections)
GET(g_h2_closed, s->has_h2, s->h2.closed)
GET(g_h2_streams, s->has_h2, s->h2.streams)
GET(g_h2_goaway, s->has_h2, s->h2.goaway)
GET(g_h2_rst, s->has_h2, s->h2.rst_stream)
GET(g_h2_tls, s->has_h2, s->h2.tls_alpn)
#undef GET

static const struct {
	const char *name, *type, *help;
	getter get;
} pod_families[] = {
	{ "connscope_tcp_opened_total", "counter", "TCP connections established.", g_opened },
	{ "connscope_tcp_closed_total", "counter", "Established TCP connections closed.", g_closed },
	{ "connscope_tcp_active", "gauge", "TCP connections established now.", g_active },
	{ "connscope_tcp_refused_total", "counter", "Connects answered by a RST.", g_refused },
	{ "connscope_tcp_timeouts_total", "counter", "Connects that timed out.", g_timeouts },
	{ "connscope_tcp_resets_total", "counter", "Established connections ended by a RST.",
	  g_resets },
	{ "connscope_tcp_failed_total", "counter",
	  "Connects and accepted handshakes that never established, for another reason.",
	  g_failed },
	{ "connscope_tcp_received_bytes_total", "counter",
	  "Payload bytes received on the connections that closed.", g_bytes_in },
	{ "connscope_tcp_sent_bytes_total", "counter",
	  "Payload bytes sent on the connections that closed.", g_bytes_out },
	{ "connscope_close_wait_sockets", "gauge", "Sockets in CLOSE_WAIT now.", g_cw },
	{ "connscope_close_wait_stuck_sockets", "gauge",
	  "Sockets in CLOSE_WAIT longer than --close-wait-threshold.", g_stuck },
	{ "connscope_close_wait_max_age_seconds", "gauge", "Age of the oldest CLOSE_WAIT socket.",
	  g_cw_age },
	{ "connscope_h2_connections_opened_total", "counter",
	  "HTTP/2 connections seen to start (h2c, or TLS offering h2).", g_h2_opened },
	{ "connscope_h2_connections_closed_total", "counter", "HTTP/2 connections closed.",
	  g_h2_closed },
	{ "connscope_h2_streams_total", "counter",
	  "HTTP/2 streams opened on connections whose frames are read.", g_h2_streams },
	{ "connscope_h2_goaway_total", "counter", "HTTP/2 connections that got a GOAWAY.",
	  g_h2_goaway },
	{ "connscope_h2_rst_stream_total", "counter", "HTTP/2 RST_STREAM frames.", g_h2_rst },
	{ "connscope_h2_tls_alpn_connections_total", "counter",
	  "HTTP/2 connections over TLS known from ALPN only (streams not counted).", g_h2_tls },
};

/* Histogram buckets: every other log2 slot, so le is a power of 4 microseconds,
 * from 256 us to about 16.8 s; slot r holds [2^(r-1), 2^r) us, all under 2^r. */
#define LE_FIRST 8
#define LE_LAST 24

static void histogram(FILE *f, const char *name, const char *labels, const uint64_t *h,
		      uint64_t sum_us)
{
	char bname[96], le[32];
	uint64_t cum = 0;
	int r = 0;

	snprintf(bname, sizeof(bname), "%s_bucket", name);
	for (int top = LE_FIRST; top <= LE_LAST; top += 2) {
		for (; r <= top; r++)
			cum += h[r];
		snprintf(le, sizeof(le), "%.9g", (double)(1ull << top) / 1e6);
		series(f, bname, labels, "le", le, (double)cum);
	}
	for (; r < CS_HIST_SLOTS; r++)
		cum += h[r];
	series(f, bname, labels, "le", "+Inf", (double)cum);
	snprintf(bname, sizeof(bname), "%s_sum", name);
	series(f, bname, labels, NULL, NULL, (double)sum_us / 1e6);
	snprintf(bname, sizeof(bname), "%s_count", name);
	series(f, bname, labels, NULL, NULL, (double)cum);
}

static void pods_render(FILE *f, struct view *v, int n)
{
	static const char *const rnames[R_N][2] = {
		{ "connscope_tcp_remote_connections_total", "Connections with the remote." },
		{ "connscope_tcp_remote_refused_total", "Connects to the remote answered by a RST." },
		{ "connscope_tcp_remote_timeouts_total", "Connects to the remote that timed out." },
		{ "connscope_tcp_remote_resets_total", "Connections with the remote ended by a RST." },
	};
	char rl[80];
	double d;

	for (size_t i = 0; i < sizeof(pod_families) / sizeof(pod_families[0]); i++) {
		family(f, pod_families[i].name, pod_families[i].type, pod_families[i].help);
		for (int j = 0; j < n; j++)
			if (pod_families[i].get(v[j].s, &d))
				series(f, pod_families[i].name, v[j].labels, NULL, NULL, d);
	}
	family(f, "connscope_tcp_connect_duration_seconds", "histogram",
	       "Connect time of established connections (client: SYN to ESTABLISHED; server: "
	       "the SYN-ACK's round trip).");
	for (int j = 0; j < n; j++)
		histogram(f, "connscope_tcp_connect_duration_seconds", v[j].labels,
			  v[j].s->tcp.connect_hist, v[j].s->tcp.connect_sum_us);
	family(f, "connscope_tls_handshakes_total", "counter",
	       "TLS handshakes seen on the wire, by outcome (ok, failed, timeout).");
	for (int j = 0; j < n; j++) {
		const struct tls_stats_rec *t = &v[j].s->tls.all;

		if (!v[j].s->has_tls)
			continue;
		series(f, "connscope_tls_handshakes_total", v[j].labels, "outcome", "ok", (double)t->ok);
		series(f, "connscope_tls_handshakes_total", v[j].labels, "outcome", "failed",
		       (double)t->failed);
		series(f, "connscope_tls_handshakes_total", v[j].labels, "outcome", "timeout",
		       (double)t->timeouts);
	}
	family(f, "connscope_tls_handshake_duration_seconds", "histogram",
	       "Time of complete TLS handshakes, ClientHello to the end.");
	for (int j = 0; j < n; j++)
		if (v[j].s->has_tls)
			histogram(f, "connscope_tls_handshake_duration_seconds", v[j].labels,
				  v[j].s->tls.hist, v[j].s->tls.sum_us);
	for (int k = 0; k < R_N; k++) {
		family(f, rnames[k][0], "counter", rnames[k][1]);
		for (int j = 0; j < n; j++) {
			struct xpod *p = v[j].p;

			if (!p)
				continue;
			for (int i = 0; i < p->n; i++)
				if (p->r[i].labelled)
					series(f, rnames[k][0], v[j].labels, "remote",
					       remote_label(&p->r[i], rl, sizeof(rl)),
					       (double)p->r[i].val[k]);
			if (p->n || p->other[k])
				series(f, rnames[k][0], v[j].labels, "remote", "other",
				       (double)p->other[k]);
		}
	}
}

/* The kinds a pod's findings can have, by what was seen of it: each is written
 * from 0, so that rate() and increase() see a pod's first finding too. */
static const char *const tcp_kinds[] = { "close_wait_stuck", "tcp_connect_refused",
					 "tcp_connect_timeout", "peer_reset" };
static const char *const tls_kinds[] = { "tls_handshake_timeout", "tls_handshake_failed" };
static const char *const h2_kinds[] = { "h2_reuse_churn", "h2_goaway", "h2_stream_cancels" };
static const char *const node_kinds[] = { "conntrack_pressure" };

static uint64_t kind_count(const struct xpod *p, const char *kind)
{
	for (int i = 0; p && i < p->nkinds; i++)
		if (!strcmp(p->findings[i].kind, kind))
			return p->findings[i].n;
	return 0;
}

static bool in(const char *const *list, size_t n, const char *kind)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i], kind))
			return true;
	return false;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* One series per applicable kind, then those counted beyond them. */
static void kinds_render(FILE *f, const char *labels, const struct xpod *p,
			 const char *const *lists[3], const size_t sizes[3])
{
	for (int l = 0; l < 3; l++)
		for (size_t i = 0; lists[l] && i < sizes[l]; i++)
			series(f, "connscope_findings_total", labels, "kind", lists[l][i],
			       (double)kind_count(p, lists[l][i]));
	for (int j = 0; p && j < p->nkinds; j++) {
		bool listed = false;

		for (int l = 0; l < 3; l++)
			listed |= lists[l] && in(lists[l], sizes[l], p->findings[j].kind);
		if (!listed)
			series(f, "connscope_findings_total", labels, "kind", p->findings[j].kind,
			       (double)p->findings[j].n);
	}
}

static void findings_render(struct expo *x, FILE *f, const struct view *v, int n)
{
	char node[LABELS_MAX];

	family(f, "connscope_findings_total", "counter", "Findings reported, by kind.");
	for (int j = 0; j < n; j++) {
		const char *const *lists[3] = { tcp_kinds, v[j].s->has_tls ? tls_kinds : NULL,
						v[j].s->has_h2 ? h2_kinds : NULL };
		const size_t sizes[3] = { N(tcp_kinds), N(tls_kinds), N(h2_kinds) };

		kinds_render(f, v[j].labels, v[j].p, lists, sizes);
	}
	{
		const char *const *lists[3] = { node_kinds, NULL, NULL };
		const size_t sizes[3] = { N(node_kinds), 0, 0 };

		pod_labels(node, NULL, NULL);
		kinds_render(f, node, kmap_get(&x->pods, node), lists, sizes);
	}
}

#undef N

static void self_render(FILE *f, const struct metrics_self *m)
{
	static const char *const types[4] = { "connection", "finding", "summary", "stats" };
	char labels[160];
	size_t n = 0;

	labels[0] = '\0';
	label_put(labels, sizeof(labels), &n, "version", CONNSCOPE_VERSION);
	label_put(labels, sizeof(labels), &n, "attach", m->attach ? m->attach : "");
	family(f, "connscope_build_info", "gauge", "1, labelled with the version and the attach type.");
	series(f, "connscope_build_info", labels, NULL, NULL, 1);
#define SELF(name, type, help, val) \
	do { family(f, name, type, help); series(f, name, "", NULL, NULL, (double)(val)); } while (0)
	SELF("connscope_events_total", "counter", "Lifecycle edges the kernel side sent.", m->events);
	SELF("connscope_lost_total", "counter",
	     "Edges that never reached user space (ring buffers full, missed program runs).",
	     m->lost);
	SELF("connscope_map_full_total", "counter",
	     "Sockets whose state could not be stored (bounded maps full).", m->map_full);
	SELF("connscope_parser_desync_total", "counter",
	     "TLS handshakes and HTTP/2 directions whose boundaries were lost.", m->parser_desync);
	SELF("connscope_sampled_out_total", "counter",
	     "Healthy connections whose record was not sent (backlog); still counted.",
	     m->sampled_out);
	SELF("connscope_cpu_seconds_total", "counter", "CPU time connscope itself used.",
	     m->cpu_ms / 1000);
	SELF("connscope_programs_attached", "gauge", "BPF links connscope holds, attached.",
	     m->links_attached);
	SELF("connscope_programs_detached", "gauge",
	     "BPF links connscope holds that something detached (bpftool link detach).",
	     m->links_detached);
	SELF("connscope_bpf_run_seconds_total", "counter",
	     "Time connscope's BPF programs ran (0 unless sysctl kernel.bpf_stats_enabled=1).",
	     m->bpf_run_ns / 1e9);
	SELF("connscope_bpf_runs_total", "counter",
	     "Runs of connscope's BPF programs (0 unless sysctl kernel.bpf_stats_enabled=1).",
	     m->bpf_runs);
	SELF("connscope_conntrack_events_total", "counter",
	     "Conntrack events the watcher received.", m->ct_events);
	SELF("connscope_conntrack_lost_total", "counter",
	     "Conntrack events the watcher lost.", m->ct_lost);
	if (m->has_ct_table) {
		SELF("connscope_conntrack_entries", "gauge", "Conntrack entries now.", m->ct_entries);
		SELF("connscope_conntrack_entries_limit", "gauge", "The conntrack table's limit.",
		     m->ct_limit);
		SELF("connscope_conntrack_drops_total", "counter",
		     "Packets conntrack dropped: table full, nothing evictable.", m->ct_drops);
		SELF("connscope_conntrack_insert_failed_total", "counter",
		     "Conntrack entries that could not be inserted (clashes).", m->ct_insert_failed);
		SELF("connscope_conntrack_early_drops_total", "counter",
		     "Conntrack entries evicted to make room.", m->ct_early_drops);
	}
	SELF("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
	     m->rss_bytes);
	SELF("process_start_time_seconds", "gauge",
	     "Start time of the process since the epoch, in seconds.", m->start_time_s);
#undef SELF
	family(f, "connscope_output_dropped_total", "counter",
	       "Records not written to stdout (its queue was full, or it failed), by type.");
	for (int i = 0; i < 4; i++)
		series(f, "connscope_output_dropped_total", "", "type", types[i],
		       (double)m->output_dropped[i]);
}

int expo_render_views(struct expo *x, FILE *f, const struct summary_rec *pods, int n,
		      const struct metrics_self *self)
{
	struct view *v = calloc((size_t)n + 1, sizeof(*v));
	const void *k;
	void *pv;

	if (!v)
		return -1;
	for (size_t i = 0; kmap_next(&x->pods, &i, &k, &pv);)
		((struct xpod *)pv)->seen = false;
	for (int j = 0; j < n; j++) {
		v[j].s = &pods[j];
		pod_labels(v[j].labels, pods[j].pod, pods[j].key);
		v[j].p = xpod_of(x, v[j].labels);
		if (v[j].p) {
			v[j].p->seen = true;
			remotes_update(x, v[j].p, &pods[j]);
		}
	}
	/* A pod the tracker dropped takes its series with it (not the node's). */
	for (size_t i = 0; kmap_next(&x->pods, &i, &k, &pv);)
		if (!((struct xpod *)pv)->seen && ((const char *)k)[0])
			xpod_free(kmap_del(&x->pods, k));
	pods_render(f, v, n);
	findings_render(x, f, v, n);
	self_render(f, self);
	free(v);
	return 0;
}

int expo_render(struct expo *x, FILE *f, struct tracker *t, const struct metrics_self *self)
{
	struct summary_rec *pods;
	int n = track_views(t, &pods), rc;

	if (n < 0)
		return -1;
	rc = expo_render_views(x, f, pods, n, self);
	track_views_free(pods, n);
	return rc;
}
