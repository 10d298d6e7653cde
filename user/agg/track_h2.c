// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * HTTP/2 connection reuse per connection, pod and remote. The kernel walks the
 * frames (bpf/h2.h, from the wire for h2c and from the TLS libraries' plaintext)
 * and sends running totals per socket; here they join the socket's `connection`
 * record, add up per pod, and feed a sliding window per pod and remote service:
 * connections opened and closed, streams per connection, median connection
 * lifetime, and how connections ended (GOAWAY, peer FIN, local FIN, RST). Two
 * findings come from it:
 *
 *   h2_reuse_churn  a client pod closed >= --h2-churn-conns connections to one
 *                   remote within --h2-window, carrying <= --h2-churn-streams
 *                   streams each on average: it is not reusing connections;
 *   h2_goaway       a GOAWAY with an error code (at once), or >= --h2-goaway-runs
 *                   connections to one remote ended by the server's GOAWAY within
 *                   the window (connections recycled: each forces a reconnect);
 *   h2_stream_cancels  a client pod cancelled >= H2_CANCEL_RUN streams to one
 *                   remote within the window (RST_STREAM CANCEL: calls given up
 *                   before their answers, as a deadline shorter than the server
 *                   takes does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "h2_events.h"
#include "output.h"
#include "track_priv.h"
#include "util.h"

#define MAX_H2_REMOTES 16    /* remotes with an HTTP/2 window per pod */
#define H2_SAMPLES 256       /* events kept per remote and window ring */
#define LIFE_UNKNOWN UINT32_MAX
#define H2_CANCEL_RUN 10     /* h2_stream_cancels: cancelled streams in the window */

/* How an HTTP/2 connection ended. A reset the pod sends is its own close too:
 * the kernel resets instead of a FIN when a socket closes with bytes unread
 * (a client dropped right after its call, with the server's last frames in). */
enum h2_end { H2_END_GOAWAY, H2_END_PEER_FIN, H2_END_LOCAL_FIN, H2_END_RST_IN, H2_END_RST_OUT,
	      H2_END_OTHER, H2_END_MAX };

#define H2_CL_NO_STREAMS 0x01  /* TLS seen on the wire (ALPN): streams unknown */
#define H2_CL_HTTP1 0x02       /* ... h2 offered, and the server chose HTTP/1.1 */

struct h2_closed {
	uint64_t end_ns;
	uint32_t life_ms;          /* LIFE_UNKNOWN: it started before it was seen */
	uint32_t streams;
	uint8_t end;               /* enum h2_end */
	uint8_t flags;             /* H2_CL_* */
};

/* One remote service of a pod, for the HTTP/2 reuse window (rings of the most
 * recent H2_SAMPLES events; the window reads those inside it). */
struct h2_remote {
	uint8_t family;
	uint8_t addr[16];
	uint16_t port;             /* 0: the remote is a client */
	bool client;               /* the pod is the client of this remote */
	uint64_t last_ns;
	uint64_t opened[H2_SAMPLES];
	uint32_t open_pos, nopened;
	uint64_t goaways[H2_SAMPLES];  /* connections' first GOAWAY */
	uint32_t goaway_pos, ngoaways;
	struct h2_closed closed[H2_SAMPLES];
	uint32_t closed_pos, nclosed;
	uint64_t cancels[H2_SAMPLES];  /* RST_STREAM CANCEL the pod sent as a client */
	uint32_t cancel_pos, ncancels;
	uint64_t churn_reported_ns, goaway_reported_ns, cancel_reported_ns;
};

struct h2_agg {
	uint64_t connections, closed, streams, goaway, rst_stream, desync;
	uint64_t tls_alpn;         /* of connections: TLS on the wire only, streams unknown */
};

/* One connection's HTTP/2 totals, as its watcher last sent them. */
struct h2_state {
	struct cs_event ev;       /* endpoints, cgroup, cookie, side */
	struct h2_event last;     /* the latest totals */
	struct h2_conn counted;   /* what the pod's counters hold of it */
	uint64_t start_ns;
	uint32_t pid;
	char comm[16];
	bool match;               /* passes the filters */
	uint8_t wire;             /* H2_CL_*: a TLS connection seen on the wire only */
	bool goaway_counted, goaway_error_reported;
};

/* A pod's HTTP/2 counts and its remotes' windows. */
struct h2_pod {
	struct h2_agg n;
	struct h2_remote **remotes; /* MAX_H2_REMOTES, allocated on first use */
	int nremotes;
	uint64_t remote_evictions;
};

struct h2_part_state {
	struct u64map conns;        /* cookie -> h2_state, until the connection closes */
	struct h2_state *closing;   /* taken at the close, freed once its record is out */
	uint64_t window_ns;
};

static struct h2_part_state *S(const struct tracker *t)
{
	return tr_state(t, &h2_part);
}

static struct h2_pod *P(struct cg_entry *c)
{
	return c->agg ? tr_pod_state(c->agg, &h2_part, true) : NULL;
}

static const char *source_name(uint8_t s)
{
	switch (s) {
	case H2_SRC_WIRE: return "wire";
	case H2_SRC_OPENSSL: return "openssl";
	case H2_SRC_GO: return "go";
	case H2_SRC_KEYLOG: return "keylog";
	case H2_SRC_TLS_ALPN: return "tls_alpn";
	default: return "unknown";
	}
}

/* "NO_ERROR", or "0x1f" for a code without a name; buf >= 12 bytes. */
static const char *error_text(uint32_t code, char *buf, size_t len)
{
	const char *n = h2_error_name(code);

	if (n)
		return n;
	snprintf(buf, len, "0x%x", code);
	return buf;
}

static bool we_are_client(const struct h2_conn *c)
{
	return c->client_dir == H2_LOCAL_OUT;
}

static void h2_init(struct tracker *t, void *st)
{
	((struct h2_part_state *)st)->window_ns = (uint64_t)(t->o->h2_window_s * NS_PER_SEC);
}

static void h2_free_all(struct tracker *t)
{
	struct h2_part_state *s = S(t);
	uint64_t k;
	void *v;

	for (size_t i = 0; u64map_next(&s->conns, &i, &k, &v);)
		free(v);
	u64map_free(&s->conns);
	free(s->closing);
}

static void h2_pod_free(void *st)
{
	struct h2_pod *a = st;

	for (int i = 0; i < a->nremotes; i++)
		free(a->remotes[i]);
	free(a->remotes);
}

/* ---- per pod and remote ---- */

static struct h2_remote *remote_for(struct h2_pod *a, const struct cs_event *e, bool client,
				    uint64_t now)
{
	uint16_t port = client ? e->dport : 0;
	struct h2_remote *r;
	int i, oldest = 0;

	for (i = 0; i < a->nremotes; i++) {
		r = a->remotes[i];
		if (r->port == port && r->family == e->family &&
		    !memcmp(r->addr, e->daddr, sizeof(r->addr)))
			return r;
		if (r->last_ns < a->remotes[oldest]->last_ns)
			oldest = i;
	}
	if (!a->remotes &&
	    !(a->remotes = calloc(MAX_H2_REMOTES, sizeof(*a->remotes))))
		return NULL;
	if (a->nremotes < MAX_H2_REMOTES) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return NULL;
		a->remotes[a->nremotes++] = r;
	} else {
		/* The remote quiet the longest makes room. */
		r = a->remotes[oldest];
		memset(r, 0, sizeof(*r));
		a->remote_evictions++;
	}
	r->family = e->family;
	memcpy(r->addr, e->daddr, sizeof(r->addr));
	r->port = port;
	r->client = client;
	r->last_ns = now;
	return r;
}

static void ring_push(uint64_t *ring, uint32_t *pos, uint32_t *n, uint64_t v)
{
	ring[*pos] = v;
	*pos = (*pos + 1) % H2_SAMPLES;
	if (*n < H2_SAMPLES)
		(*n)++;
}

static uint32_t ring_since(const uint64_t *ring, uint32_t n, uint64_t since)
{
	uint32_t c = 0;

	for (uint32_t i = 0; i < n; i++)
		c += ring[i] >= since;
	return c;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Sort lives[0..n) (n > 0) and return their median. */
static double sorted_median(uint32_t *lives, uint32_t n)
{
	qsort(lives, n, sizeof(lives[0]), cmp_u32);
	return n % 2 ? lives[n / 2] : (lives[n / 2 - 1] + lives[n / 2]) / 2.0;
}

/* What a remote's window holds now. */
struct h2_window {
	uint32_t opened, closed;
	uint32_t no_streams;      /* of closed: TLS on the wire, streams unknown */
	uint32_t http1;           /* ... and of those, HTTP/1.1 chosen over an offered h2 */
	uint64_t streams;         /* of the others */
	double median_life_ms;    /* -1: no closed connection */
	uint32_t by[H2_END_MAX];  /* enum h2_end */
	uint32_t goaway_conns;
};

static void window_of(const struct tracker *t, const struct h2_remote *r, uint64_t now,
		      struct h2_window *w)
{
	uint64_t since = now > S(t)->window_ns ? now - S(t)->window_ns : 0;
	uint32_t lives[H2_SAMPLES], nl = 0;

	memset(w, 0, sizeof(*w));
	w->opened = ring_since(r->opened, r->nopened, since);
	w->goaway_conns = ring_since(r->goaways, r->ngoaways, since);
	for (uint32_t i = 0; i < r->nclosed; i++) {
		const struct h2_closed *s = &r->closed[i];

		if (s->end_ns < since)
			continue;
		w->closed++;
		w->streams += s->streams;
		w->no_streams += !!(s->flags & H2_CL_NO_STREAMS);
		w->http1 += !!(s->flags & H2_CL_HTTP1);
		if (s->life_ms != LIFE_UNKNOWN)
			lives[nl++] = s->life_ms;
		if (s->end < H2_END_MAX)
			w->by[s->end]++;
	}
	w->median_life_ms = nl ? sorted_median(lives, nl) : -1;
}

/* A window as a record shows it. */
static void window_rec(const struct tracker *t, const struct h2_window *w,
		       struct h2_window_rec *r)
{
	r->seconds = t->o->h2_window_s;
	r->opened = w->opened;
	r->closed = w->closed;
	r->streams = w->streams;
	r->streams_per_conn = w->closed > w->no_streams ?
		(double)(int64_t)(100.0 * w->streams / (w->closed - w->no_streams) + 0.5) / 100 : -1;
	r->tls_alpn = w->no_streams;
	r->http1 = w->http1;
	r->median_lifetime_ms = w->median_life_ms;
	r->by_goaway = w->by[H2_END_GOAWAY];
	r->by_peer_fin = w->by[H2_END_PEER_FIN];
	r->by_local_fin = w->by[H2_END_LOCAL_FIN];
	r->by_rst = w->by[H2_END_RST_IN] + w->by[H2_END_RST_OUT];
	r->by_other = w->by[H2_END_OTHER];
}

/* ---- findings ---- */

static void remote_text(const struct h2_remote *r, char *buf, size_t len)
{
	char ip[64];

	out_ip(r->family == AF_INET6 ? AF_INET6 : AF_INET, r->addr, ip, sizeof(ip));
	if (!r->port)
		snprintf(buf, len, "%s", ip);
	else
		snprintf(buf, len, r->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, r->port);
}

static void churn_check(struct tracker *t, struct h2_state *hs, struct cg_entry *c,
			struct h2_remote *r, uint64_t now)
{
	struct h2_window w;
	char who[640], remote[80], msg[1000], life[48], each[64];
	uint32_t own, known;
	double spc;
	struct finding_rec o;

	if (!r->client ||
	    (r->churn_reported_ns && tr_elapsed(now, r->churn_reported_ns) < S(t)->window_ns))
		return;
	window_of(t, r, now, &w);
	if (w.closed < t->o->h2_churn_conns)
		return;
	/* Streams per connection from the connections whose streams are known; TLS
	 * seen on the wire alone (ALPN) tells none, and is judged on the count. */
	known = w.closed - w.no_streams;
	spc = known ? (double)w.streams / known : -1;
	if (spc > t->o->h2_churn_streams)
		return;
	r->churn_reported_ns = now;
	tr_finding_init(t, &o, "h2_reuse_churn", "warning", &hs->ev, c, hs->pid, hs->comm, now);
	o.detail = FD_H2_CHURN;
	window_rec(t, &w, &o.d.h2_churn.window);
	o.d.h2_churn.threshold_conns = t->o->h2_churn_conns;
	o.d.h2_churn.threshold_streams_per_conn = t->o->h2_churn_streams;
	o.d.h2_churn.source = known ? source_name(hs->last.source) : "tls_alpn";
	tr_pod_text(&c->pod, who, sizeof(who));
	remote_text(r, remote, sizeof(remote));
	if (w.median_life_ms >= 0)
		snprintf(life, sizeof(life), "median life %.0f ms", w.median_life_ms);
	else
		snprintf(life, sizeof(life), "lifetimes unknown");
	if (spc >= 0)
		snprintf(each, sizeof(each), "carrying %.2f stream(s) each", spc);
	else
		snprintf(each, sizeof(each), "TLS offering h2, streams not seen");
	own = w.by[H2_END_LOCAL_FIN] + w.by[H2_END_RST_OUT];
	o.has_cause = true;
	tr_evidence_num(&o, "closed", w.closed);
	if (spc >= 0)
		tr_evidence_num(&o, "streams_per_conn", o.d.h2_churn.window.streams_per_conn);
	else
		tr_evidence_str(&o, "streams_per_conn", NULL);
	if (w.median_life_ms >= 0)
		tr_evidence_num(&o, "median_lifetime_ms", w.median_life_ms);
	tr_evidence_num(&o, "ended_by_local_fin", w.by[H2_END_LOCAL_FIN]);
	tr_evidence_num(&o, "ended_by_peer_fin", w.by[H2_END_PEER_FIN]);
	tr_evidence_num(&o, "ended_by_goaway", w.by[H2_END_GOAWAY]);
	tr_evidence_num(&o, "ended_by_rst", w.by[H2_END_RST_IN] + w.by[H2_END_RST_OUT]);
	tr_evidence_num(&o, "ended_by_local_rst", w.by[H2_END_RST_OUT]);
	if (w.no_streams) {
		tr_evidence_num(&o, "tls_alpn_conns", w.no_streams);
		tr_evidence_num(&o, "http1_chosen", w.http1);
	}
	if (w.http1 && w.http1 * 2 >= w.closed) {
		/* The client offered h2 and the server took HTTP/1.1 (in clear in the
		 * ServerHello up to TLS 1.2): one request at a time per connection. */
		o.cause = "alpn_downgrade";
		snprintf(msg, sizeof(msg),
			 "%s opened and closed %u TLS connections to %s in the last %.0fs (%s), "
			 "offering h2 in ALPN, and the server chose HTTP/1.1 on %u of them: "
			 "HTTP/1.1 carries one request at a time, so the client opens a "
			 "connection per concurrent call. Enable HTTP/2 (ALPN h2) on the server, "
			 "or on the proxy or ingress in front of it.",
			 who, w.closed, remote, t->o->h2_window_s, life, w.http1);
	} else if (spc <= 1.5 && own * 5 >= w.closed * 4) {
		/* The pod closes them itself, about one call each (or, streams unseen,
		 * at a rate no reused connection has): a new client (a gRPC ClientConn,
		 * an HTTP client) made and dropped per call. */
		o.cause = "client_per_call";
		snprintf(msg, sizeof(msg),
			 "%s opened and closed %u HTTP/2 connections to %s in the last %.0fs, "
			 "%s (%s), and closed %u of them itself: it makes a new client per "
			 "call (a gRPC ClientConn or HTTP client created and closed for each "
			 "request). Create one per backend at start-up and share it: HTTP/2 "
			 "multiplexes the calls on one connection.",
			 who, w.closed, remote, t->o->h2_window_s, each, life, own);
	} else {
		snprintf(msg, sizeof(msg),
			 "%s opened and closed %u HTTP/2 connections to %s in the last %.0fs, "
			 "%s (%s): it is not reusing connections (a new client or channel per "
			 "call, or a close after each request); keep one connection per backend "
			 "and multiplex requests on it.",
			 who, w.closed, remote, t->o->h2_window_s, each, life);
	}
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

_Static_assert(FINDING_DEBUG_LEN == H2_DEBUG_MAX + 1, "a finding holds all the debug data kept");

/* A GOAWAY's debug data as records show it: opaque bytes (RFC 9113 §6.8), so only
 * printable ASCII goes out, anything else as '?'. False when it had none. */
static bool debug_text(const struct h2_conn *hc, char out[FINDING_DEBUG_LEN])
{
	uint32_t n = hc->goaway_debug_len < H2_DEBUG_MAX ? hc->goaway_debug_len : H2_DEBUG_MAX;

	for (uint32_t i = 0; i < n; i++) {
		uint8_t ch = hc->goaway_debug[i];

		out[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	out[n] = 0;
	return n > 0;
}

static void goaway_rec(struct finding_rec *o, const struct h2_state *hs, bool client)
{
	const struct h2_conn *hc = &hs->last.c;
	char buf[16];

	o->detail = FD_H2_GOAWAY;
	o->d.h2_goaway.by = (hc->goaway_dir == H2_LOCAL_OUT) == client ? "client" : "server";
	o->d.h2_goaway.last_stream_id = hc->goaway_last_id;
	snprintf(o->d.h2_goaway.error, sizeof(o->d.h2_goaway.error), "%s",
		 error_text(hc->goaway_error, buf, sizeof(buf)));
	o->d.h2_goaway.streams = hc->streams;
	o->d.h2_goaway.has_debug = debug_text(hc, o->d.h2_goaway.debug);
	o->has_cause = true;
}

/* The server's keepalive enforcement (grpc-go: GOAWAY ENHANCE_YOUR_CALM with debug
 * data "too_many_pings" once a client pinged more often than its
 * EnforcementPolicy.MinTime allows, or without streams where PermitWithoutStream is
 * off). */
static bool too_many_pings(const struct h2_conn *hc)
{
	static const char tag[] = "too_many_pings";

	return hc->goaway_error == H2_ENHANCE_YOUR_CALM &&
	       hc->goaway_debug_len >= sizeof(tag) - 1 &&
	       !memcmp(hc->goaway_debug, tag, sizeof(tag) - 1);
}

/* Lifetimes of the connections to a remote that its GOAWAYs ended in the window:
 * how many, their median and their 10th and 90th percentiles (ms). */
static uint32_t goaway_lives(const struct tracker *t, const struct h2_remote *r, uint64_t now,
			     double *median, double *p10, double *p90)
{
	uint64_t since = now > S(t)->window_ns ? now - S(t)->window_ns : 0;
	uint32_t lives[H2_SAMPLES], n = 0;

	for (uint32_t i = 0; i < r->nclosed; i++) {
		const struct h2_closed *s = &r->closed[i];

		if (s->end_ns >= since && s->end == H2_END_GOAWAY && s->life_ms != LIFE_UNKNOWN)
			lives[n++] = s->life_ms;
	}
	if (!n)
		return 0;
	*median = sorted_median(lives, n);
	*p10 = lives[n / 10];
	*p90 = lives[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1];
	return n;
}

/* A GOAWAY in this connection: an error code is a finding at once; graceful ones
 * count towards a run per pod and remote. */
static void on_goaway(struct tracker *t, struct h2_state *hs, struct cg_entry *c, uint64_t now)
{
	const struct h2_conn *hc = &hs->last.c;
	bool client = we_are_client(hc);
	bool sent = hc->goaway_dir == H2_LOCAL_OUT;
	char who[640], remote[80], msg[900], err[16];
	struct h2_remote *r;
	struct finding_rec o;

	if (!P(c))
		return;
	tr_pod_text(&c->pod, who, sizeof(who));
	tr_remote_text(&hs->ev, client ? CS_SIDE_CLIENT : CS_SIDE_SERVER, remote, sizeof(remote));
	if (hc->goaway_error != H2_NO_ERROR && !hs->goaway_error_reported) {
		hs->goaway_error_reported = true;
		tr_finding_init(t, &o, "h2_goaway", "error", &hs->ev, c, hs->pid, hs->comm, now);
		goaway_rec(&o, hs, client);
		tr_evidence_str(&o, "error", o.d.h2_goaway.error);
		tr_evidence_str(&o, "debug", o.d.h2_goaway.has_debug ? o.d.h2_goaway.debug : NULL);
		tr_evidence_num(&o, "pings", hc->pings);
		tr_evidence_num(&o, "streams", hc->streams);
		if (too_many_pings(hc)) {
			o.cause = "keepalive_too_frequent";
			snprintf(msg, sizeof(msg),
				 "%s %s GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\" %s %s after %u "
				 "PING(s) and %u stream(s): the client's keepalive pings more often "
				 "than the server's enforcement policy allows, so the server cut the "
				 "connection. Set the client's keepalive Time at or above the server's "
				 "EnforcementPolicy.MinTime (gRPC default 5 min), and PermitWithoutStream "
				 "the same on both sides.",
				 who, sent ? "sent" : "received", sent ? "to" : "from", remote,
				 hc->pings, hc->streams);
		} else {
			snprintf(msg, sizeof(msg),
				 "%s %s a GOAWAY with error %s %s %s after %u stream(s) (last stream "
				 "id %u%s%s%s): the connection was torn down by a protocol error, not "
				 "recycled; streams above that id failed and must be retried.",
				 who, sent ? "sent" : "received",
				 error_text(hc->goaway_error, err, sizeof(err)), sent ? "to" : "from",
				 remote, hc->streams, hc->goaway_last_id,
				 o.d.h2_goaway.has_debug ? ", debug data \"" : "",
				 o.d.h2_goaway.has_debug ? o.d.h2_goaway.debug : "",
				 o.d.h2_goaway.has_debug ? "\"" : "");
		}
		tr_message(&o, msg);
		tr_emit_finding(t, &o);
	}
	/* A client's GOAWAY(NO_ERROR) is its ordinary goodbye (h2load, nghttp and
	 * browsers send one before closing): only the server's recycle connections. */
	if (hs->goaway_counted || sent == client)
		return;
	hs->goaway_counted = true;
	r = remote_for(P(c), &hs->ev, client, now);
	if (!r)
		return;
	r->last_ns = now;
	ring_push(r->goaways, &r->goaway_pos, &r->ngoaways, now);
	if (r->goaway_reported_ns && tr_elapsed(now, r->goaway_reported_ns) < S(t)->window_ns)
		return;
	struct h2_window w;

	window_of(t, r, now, &w);
	if (w.goaway_conns < t->o->h2_goaway_runs)
		return;
	r->goaway_reported_ns = now;
	tr_finding_init(t, &o, "h2_goaway", "warning", &hs->ev, c, hs->pid, hs->comm, now);
	goaway_rec(&o, hs, client);
	o.d.h2_goaway.run = true;
	o.d.h2_goaway.goaway_connections = w.goaway_conns;
	o.d.h2_goaway.window_s = t->o->h2_window_s;
	tr_evidence_str(&o, "error", o.d.h2_goaway.error);
	tr_evidence_num(&o, "goaway_connections", w.goaway_conns);
	double med = 0, p10 = 0, p90 = 0;
	uint32_t nl = goaway_lives(t, r, now, &med, &p10, &p90);

	if (nl) {
		tr_evidence_num(&o, "ended_connections", nl);
		tr_evidence_num(&o, "median_lifetime_ms", med);
		tr_evidence_num(&o, "lifetime_p10_ms", p10);
		tr_evidence_num(&o, "lifetime_p90_ms", p90);
	}
	/* Graceful GOAWAYs at a steady age: a maximum connection age (grpc-go
	 * jitters it by +-10%, and its grace period adds to each). */
	if (hc->goaway_error == H2_NO_ERROR && nl >= 2 && med > 0 && p90 - p10 <= 0.3 * med) {
		o.cause = "max_connection_age";
		snprintf(msg, sizeof(msg),
			 "%u HTTP/2 connections between %s and %s ended by the server's GOAWAY "
			 "(NO_ERROR) in the last %.0fs, at a steady age of %.1fs (%.1f-%.1fs): the "
			 "server recycles connections at a maximum age (gRPC MaxConnectionAge). Each "
			 "one costs a reconnect%s; raise the age if that is too often, and give it "
			 "MaxConnectionAgeGrace so calls in flight finish.",
			 w.goaway_conns, who, remote, t->o->h2_window_s, med / 1000, p10 / 1000,
			 p90 / 1000, hs->last.source == H2_SRC_WIRE ? "" : " and a new TLS handshake");
		tr_message(&o, msg);
		tr_emit_finding(t, &o);
		return;
	}
	snprintf(msg, sizeof(msg),
		 "%u HTTP/2 connections between %s and %s ended by GOAWAY in the last %.0fs "
		 "(latest: %s): the server is recycling connections (e.g. gRPC "
		 "MaxConnectionAge or an idle timeout shorter than the client's keepalive); each "
		 "one costs a reconnect%s.",
		 w.goaway_conns, who, remote, t->o->h2_window_s,
		 error_text(hc->goaway_error, err, sizeof(err)),
		 hs->last.source == H2_SRC_WIRE ? "" : " and a new TLS handshake");
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

/* RST_STREAM CANCEL sent by a client pod: calls it gave up on. A run of them to
 * one remote within the window is a finding. */
static void on_cancels(struct tracker *t, struct h2_state *hs, struct cg_entry *c,
		       uint32_t n, uint64_t now)
{
	const struct h2_conn *hc = &hs->last.c;
	char who[640], remote[80], msg[900];
	struct h2_remote *r = remote_for(P(c), &hs->ev, true, now);
	struct finding_rec o;
	uint32_t in_window;

	if (!r)
		return;
	r->last_ns = now;
	for (uint32_t i = 0; i < n && i < H2_SAMPLES; i++)
		ring_push(r->cancels, &r->cancel_pos, &r->ncancels, now);
	if (r->cancel_reported_ns && tr_elapsed(now, r->cancel_reported_ns) < S(t)->window_ns)
		return;
	in_window = ring_since(r->cancels, r->ncancels,
			       now > S(t)->window_ns ? now - S(t)->window_ns : 0);
	if (in_window < H2_CANCEL_RUN)
		return;
	r->cancel_reported_ns = now;
	tr_finding_init(t, &o, "h2_stream_cancels", "warning", &hs->ev, c, hs->pid, hs->comm,
			now);
	o.detail = FD_H2_CANCELS;
	o.d.h2_cancels.cancels = in_window;
	o.d.h2_cancels.threshold = H2_CANCEL_RUN;
	o.d.h2_cancels.window_s = t->o->h2_window_s;
	o.has_cause = true;
	o.cause = "deadline_cancels";
	tr_evidence_num(&o, "cancels", in_window);
	tr_evidence_num(&o, "window_s", t->o->h2_window_s);
	tr_evidence_num(&o, "connection_streams", hc->streams);
	tr_evidence_num(&o, "connection_cancels", hc->rst_cancel[H2_LOCAL_OUT]);
	tr_pod_text(&c->pod, who, sizeof(who));
	tr_remote_text(&hs->ev, CS_SIDE_CLIENT, remote, sizeof(remote));
	snprintf(msg, sizeof(msg),
		 "%s cancelled %u%s HTTP/2 streams to %s in the last %.0fs (RST_STREAM CANCEL; "
		 "%u of the %u streams of its latest connection): its calls give up before the "
		 "answers come, as a client deadline shorter than the server takes does. Raise "
		 "the call deadline (or the client library's timeout) above the server's "
		 "latency, or find why the server is slow; the server did the work of each "
		 "cancelled call for nothing, and retries add to its load.",
		 who, in_window, in_window >= H2_SAMPLES ? " or more" : "", remote,
		 t->o->h2_window_s, hc->rst_cancel[H2_LOCAL_OUT], hc->streams);
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

/* ---- events ---- */

static void add_deltas(struct h2_pod *a, struct h2_state *hs, const struct h2_conn *n)
{
	uint32_t goaway = n->goaway[0] + n->goaway[1], rst = n->rst_stream[0] + n->rst_stream[1];

	a->n.streams += n->streams - hs->counted.streams;
	a->n.goaway += goaway - (hs->counted.goaway[0] + hs->counted.goaway[1]);
	a->n.rst_stream += rst - (hs->counted.rst_stream[0] + hs->counted.rst_stream[1]);
	a->n.desync += n->desync - hs->counted.desync;
	hs->counted = *n;
}

void track_h2_event(struct tracker *t, const struct h2_event *e)
{
	uint64_t key = e->cookie;
	struct h2_state *hs;
	struct cg_entry *c;

	/* Counters never go back: a stale event (a retransmitted FIN's, from
	 * another CPU) is older than what we hold. */
	if (!e->cookie || !(e->c.flags & (H2_C_H2 | H2_C_MIDWAY)))
		return;
	hs = u64map_get(&S(t)->conns, key);
	if (!hs) {
		hs = calloc(1, sizeof(*hs));
		if (!hs || u64map_put(&S(t)->conns, key, hs)) {
			free(hs);
			return;
		}
		hs->start_ns = e->ts_ns;
		hs->ev.ts_ns = e->ts_ns;
		hs->ev.cookie = e->cookie;
		hs->ev.cgroup_id = e->cgroup_id;
		hs->ev.family = e->family;
		hs->ev.sport = e->sport;
		hs->ev.dport = e->dport;
		hs->ev.side = we_are_client(&e->c) ? CS_SIDE_CLIENT : CS_SIDE_SERVER;
		memcpy(hs->ev.saddr, e->saddr, sizeof(hs->ev.saddr));
		memcpy(hs->ev.daddr, e->daddr, sizeof(hs->ev.daddr));
		hs->pid = e->pid;
		memcpy(hs->comm, e->comm, sizeof(hs->comm));
		hs->comm[sizeof(hs->comm) - 1] = 0;
		h2_conn_init(&hs->counted);
		hs->counted.max_concurrent[0] = hs->counted.max_concurrent[1] = 0;
		hs->last = *e;
		c = tr_cgroup(t, e->cgroup_id);
		hs->match = c && c->match && tr_port_match(t, &hs->ev);
		/* A connection joined midway counts only as a desync: its streams
		 * are unknown, and it would water down streams per connection. */
		if (hs->match && P(c) && !(e->c.flags & H2_C_MIDWAY)) {
			struct h2_remote *r = remote_for(P(c), &hs->ev, we_are_client(&e->c),
							 e->ts_ns);

			P(c)->n.connections++;
			if (r)
				ring_push(r->opened, &r->open_pos, &r->nopened, e->ts_ns);
		}
	} else {
		/* Totals only grow; keep the larger (events of two CPUs may cross). */
		if (e->c.frames < hs->last.c.frames)
			return;
		hs->last = *e;
		c = tr_cgroup(t, e->cgroup_id);
	}
	if (!hs->match || !c || !P(c))
		return;
	uint32_t cancels = (uint32_t)(e->c.rst_cancel[H2_LOCAL_OUT] -
				      hs->counted.rst_cancel[H2_LOCAL_OUT]) & 0xffff;

	add_deltas(P(c), hs, &e->c);
	c->agg->dirty++;
	if (e->c.goaway[0] + e->c.goaway[1])
		on_goaway(t, hs, c, e->ts_ns);
	if (cancels && we_are_client(&e->c) && !(e->c.flags & H2_C_MIDWAY))
		on_cancels(t, hs, c, cancels, e->ts_ns);
}

/* ---- the connection ends ---- */

static uint8_t end_of(const struct h2_state *hs, const struct cs_event *close)
{
	const struct h2_conn *hc = &hs->last.c;
	unsigned server = we_are_client(hc) ? H2_LOCAL_IN : H2_LOCAL_OUT;

	if (hc->goaway[server])
		return H2_END_GOAWAY;
	switch (close->close_cause) {
	case CS_CLOSE_PEER_FIN: return H2_END_PEER_FIN;
	case CS_CLOSE_LOCAL_FIN: return H2_END_LOCAL_FIN;
	case CS_CLOSE_RST_IN: return H2_END_RST_IN;
	case CS_CLOSE_RST_OUT: return H2_END_RST_OUT;
	default: return H2_END_OTHER;
	}
}

static void close_conn(struct tracker *t, struct h2_state *hs, const struct cs_event *close)
{
	struct cg_entry *c = tr_cgroup(t, hs->ev.cgroup_id);
	struct h2_remote *r;
	struct h2_closed *s;

	if (!hs->match || !c || !P(c) || (hs->last.c.flags & H2_C_MIDWAY))
		return;
	if (close->flags & CS_F_OPEN)
		return;  /* replay: the capture ended, the connection did not */
	if (!(hs->wire & H2_CL_HTTP1))
		P(c)->n.closed++;
	r = remote_for(P(c), &hs->ev, we_are_client(&hs->last.c), close->ts_ns);
	if (!r)
		return;
	r->last_ns = close->ts_ns;
	s = &r->closed[r->closed_pos];
	r->closed_pos = (r->closed_pos + 1) % H2_SAMPLES;
	if (r->nclosed < H2_SAMPLES)
		r->nclosed++;
	s->end_ns = close->ts_ns;
	/* A connection older than what was seen of it has no known lifetime: kept out
	 * of the median rather than counted from its first frame seen. */
	s->life_ms = (close->flags & CS_F_MIDWAY) || (hs->last.c.flags & H2_C_JOINED)
			     ? LIFE_UNKNOWN
			     : (uint32_t)(tr_elapsed(close->ts_ns, hs->start_ns) / 1000000);
	s->streams = hs->last.c.streams;
	s->end = end_of(hs, close);
	s->flags = hs->wire;
	churn_check(t, hs, c, r, close->ts_ns);
}

static void view(const struct h2_state *hs, struct conn_rec *v)
{
	const struct h2_conn *hc = &hs->last.c;
	bool client = we_are_client(hc);
	/* The server's announcement limits the client's streams. */
	uint32_t mcs = hc->max_concurrent[client ? H2_LOCAL_IN : H2_LOCAL_OUT];

	if (hs->wire & H2_CL_HTTP1)
		return;  /* HTTP/1.1: the tls object says what was offered and chosen */
	v->has_h2 = true;
	v->h2_wire_only = hs->wire & H2_CL_NO_STREAMS;
	v->h2_midway = hc->flags & H2_C_MIDWAY;
	v->h2_joined = hc->flags & H2_C_JOINED;
	v->h2_source = source_name(hs->last.source);
	v->h2_streams = hc->streams;
	v->h2_goaway = hc->goaway[0] + hc->goaway[1];
	v->h2_goaway_last_id = hc->goaway_last_id;
	v->h2_goaway_error = h2_error_name(hc->goaway_error);
	v->h2_goaway_error_code = hc->goaway_error;
	v->h2_goaway_by = hc->goaway_dir == H2_DIR_NONE ? NULL :
			  (hc->goaway_dir == H2_LOCAL_OUT) == client ? "client" : "server";
	v->h2_goaway_has_debug = debug_text(hc, v->h2_goaway_debug);
	v->h2_rst_stream = hc->rst_stream[0] + hc->rst_stream[1];
	v->h2_max_concurrent = mcs;
	v->h2_pings = hc->pings;
	v->h2_desync = hc->desync;
}

/* name, whole, in a comma-joined list. */
static bool list_has(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; p && *p;) {
		size_t len = strcspn(p, ",");

		if (len == n && !memcmp(p, name, n))
			return true;
		p += len + (p[len] == ',');
	}
	return false;
}

/*
 * A TLS connection that offered h2 in its ClientHello, whose frames nobody saw
 * (no TLS library probe followed it): the wire tells its pod, its remote, its
 * lifetime and how it ended, and, up to TLS 1.2, whether the server chose h2. It
 * joins the pod's reuse window with its streams unknown (never guessed).
 */
static struct h2_state *tls_alpn_conn(struct tracker *t, const struct cs_event *e,
				      const struct conn_rec *v)
{
	struct h2_state *hs;
	struct cg_entry *c;

	if (!v->has_tls || !list_has(v->tls_alpn_offered, "h2") ||
	    (v->tls_outcome && strcmp(v->tls_outcome, "ok")))
		return NULL;
	hs = calloc(1, sizeof(*hs));
	if (!hs)
		return NULL;
	hs->ev = *e;
	hs->start_ns = e->start_ns;
	hs->pid = e->pid;
	memcpy(hs->comm, e->comm, sizeof(hs->comm));
	hs->comm[sizeof(hs->comm) - 1] = 0;
	hs->last.source = H2_SRC_TLS_ALPN;
	h2_conn_init(&hs->last.c);
	hs->last.c.flags = H2_C_H2;
	hs->last.c.client_dir = e->side == CS_SIDE_CLIENT ? H2_LOCAL_OUT : H2_LOCAL_IN;
	hs->wire = H2_CL_NO_STREAMS;
	if (v->tls_alpn_seen && !(v->tls_alpn && !strcmp(v->tls_alpn, "h2")))
		hs->wire |= H2_CL_HTTP1;
	c = tr_cgroup(t, e->cgroup_id);
	hs->match = c && c->match && tr_port_match(t, &hs->ev);
	if (hs->match && P(c) && !(e->flags & CS_F_MIDWAY)) {
		struct h2_remote *r = remote_for(P(c), &hs->ev, we_are_client(&hs->last.c),
						 e->ts_ns);

		/* A downgraded one is HTTP/1.1: in the window (its cause), not in
		 * the pod's HTTP/2 connections. */
		if (!(hs->wire & H2_CL_HTTP1)) {
			P(c)->n.connections++;
			P(c)->n.tls_alpn++;
		}
		if (r && e->start_ns)
			ring_push(r->opened, &r->open_pos, &r->nopened, e->start_ns);
	}
	return hs;
}

/* The connection ended: its pod's window learns how, and the record gets its h2
 * object. The state lives until the record is out (h2_conn_done). */
static void h2_conn_close(struct tracker *t, const struct cs_event *e, struct conn_rec *v)
{
	struct h2_part_state *s = S(t);
	struct h2_state *hs = u64map_del(&s->conns, e->cookie);

	if (!hs && !(hs = tls_alpn_conn(t, e, v)))
		return;
	close_conn(t, hs, e);
	view(hs, v);
	free(s->closing);
	s->closing = hs;
}

static void h2_conn_done(struct tracker *t, const struct cs_event *e)
{
	(void)e;
	free(S(t)->closing);
	S(t)->closing = NULL;
}

/* ---- summaries ---- */

static void h2_summary(struct tracker *t, struct summary_rec *s, const struct pod_agg *pa)
{
	const struct h2_pod *a = tr_pod_state_c(pa, &h2_part);
	uint64_t now = tr_now(t);
	struct h2_window w, all = { 0 };

	_Static_assert(MAX_H2_REMOTES <= SUMMARY_MAX_H2_REMOTES, "a summary shows every remote");
	if (!a || !a->n.connections)
		return;
	s->has_h2 = true;
	s->h2.connections = a->n.connections;
	s->h2.closed = a->n.closed;
	s->h2.streams = a->n.streams;
	s->h2.tls_alpn = a->n.tls_alpn;
	/* Over the connections whose streams are known. */
	s->h2.streams_per_conn = a->n.connections > a->n.tls_alpn ?
		(double)(int64_t)(100.0 * a->n.streams / (a->n.connections - a->n.tls_alpn) + 0.5) /
			100 : -1;
	s->h2.goaway = a->n.goaway;
	s->h2.rst_stream = a->n.rst_stream;
	s->h2.desync = a->n.desync;
	all.median_life_ms = -1;
	for (int i = 0; i < a->nremotes; i++) {
		const struct h2_remote *r = a->remotes[i];
		typeof(s->h2.remotes[0]) *ro;

		window_of(t, r, now, &w);
		all.opened += w.opened;
		all.closed += w.closed;
		all.streams += w.streams;
		for (int j = 0; j < H2_END_MAX; j++)
			all.by[j] += w.by[j];
		if (!w.opened && !w.closed)
			continue;
		ro = &s->h2.remotes[s->h2.nremotes++];
		ro->ep = (struct rec_endpoint){ r->family == AF_INET6 ? AF_INET6 : AF_INET, r->addr,
						r->port };
		ro->client = r->client;
		window_rec(t, &w, &ro->window);
	}
	/* The pod-wide median is not the median of medians: the writer leaves it out. */
	window_rec(t, &all, &s->h2.window);
	s->h2.remote_evictions = a->remote_evictions;
}

const struct track_part h2_part = {
	.name = "h2",
	.state_size = sizeof(struct h2_part_state),
	.pod_size = sizeof(struct h2_pod),
	.init = h2_init,
	.conn_close = h2_conn_close,
	.conn_done = h2_conn_done,
	.summary = h2_summary,
	.pod_free = h2_pod_free,
	.free_all = h2_free_all,
};
