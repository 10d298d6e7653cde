// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * TLS handshakes per connection, pod and destination. The kernel side decides
 * when a handshake starts and ends (bpf/tls.bpf.c, rule in bpf/tls.h); here the
 * captured hello bytes are read with the same parser, timeouts are timed, and
 * the outcome joins the connection record and the pod's summary.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "jsonw.h"
#include "output.h"
#include "tls.h"
#include "tls_events.h"
#include "track_priv.h"
#include "util.h"

#define TLS_SAMPLES 512      /* handshake times kept per pod, for p50/p99 */
#define TLS_DEST_SAMPLES 128 /* ... and per destination */
#define MAX_TLS_DESTS 16

/* One connection's TLS handshake, as the wire showed it. */
enum tls_outcome { TLS_OUT_PROGRESS, TLS_OUT_OK, TLS_OUT_FAILED, TLS_OUT_TIMEOUT,
		   TLS_OUT_INCOMPLETE };

struct tls_conn {
	struct cs_event ev;       /* endpoints, cgroup, cookie (ts: start) */
	uint64_t start_ns, done_ns;
	uint8_t *ch, *sh;         /* captured ClientHello / server flight, freed once read */
	uint32_t ch_have, sh_have;
	char sni[256];
	char alpn_offered[128];   /* comma-joined */
	char alpn[32];
	char alpn_ee[32];         /* replay: TLS 1.3's selected ALPN, from the decrypted
				     EncryptedExtensions (the ServerHello has none) */
	uint16_t version;
	uint8_t outcome;          /* enum tls_outcome */
	uint8_t we_are_client;
	uint8_t failed_by_client; /* valid when failed */
	uint8_t alert_level, alert_desc, alert_clear;
	bool sh_read;             /* the ServerHello was parsed: its ALPN shows (TLS <= 1.2) */
	bool timeout_reported, counted;
	uint64_t ino;
};

struct tls_stats {
	uint64_t handshakes, ok, failed, timeouts;
	uint32_t nsamples, pos;    /* ring of the most recent handshake times */
	float *ms;                 /* TLS_SAMPLES or TLS_DEST_SAMPLES */
};

struct tls_dest {
	char name[272];            /* SNI, or else server ip:port */
	struct tls_stats st;
};

/* A pod's handshakes, in all and per destination. Live, the totals are the
 * kernel's (k) with what only user space can tell: closes before the end, and
 * timeouts. */
struct tls_pod {
	struct tls_stats all;
	struct {
		uint64_t started, ok, alert, desync, us[CS_HIST_SLOTS], us_sum;
	} k;
	uint64_t us[CS_HIST_SLOTS], us_sum; /* not live: complete handshakes' times */
	uint64_t closed_failed;    /* connections closed before their handshake ended */
	uint64_t timeouts;         /* handshakes that passed --tls-timeout */
	struct tls_dest *dests;    /* MAX_TLS_DESTS, allocated on first use */
	int ndests;
	uint64_t dest_evictions;
};

struct tls_state {
	struct u64map conns;       /* cookie -> tls_conn, until the connection closes */
	struct u64map hs;          /* cookie -> tls_conn, while the handshake is on */
	struct tls_conn *closing;  /* taken at the close, freed once its record is out */
	uint64_t timeout_ns;
	bool kcounts;              /* the pods' totals are the kernel's */
	bool quiet;                /* complete handshakes stay in the kernel (k) */
	bool kernel;               /* k reads the kernel's tls_hello */
	struct track_tls_kernel k;
	struct tls_hello *hbuf;    /* one kernel entry, read */
	struct u64map seen;        /* quiet: cookie -> start_ns of the kernel's entries */
	/* quiet: the closing connection's ALPN, until its record is out */
	char done_offered[TLS_DONE_OFFERED_MAX], done_alpn[TLS_DONE_SEL_MAX];
};

static struct tls_state *S(const struct tracker *t)
{
	return tr_state(t, &tls_part);
}

/* The parser masks every offset with TLS_BUF_MAX - 1: it reads from a buffer of
 * that size, whatever the message's length. */
static uint8_t parse_buf[TLS_BUF_MAX];

static const char *outcome_name(uint8_t o)
{
	switch (o) {
	case TLS_OUT_OK: return "ok";
	case TLS_OUT_FAILED: return "failed";
	case TLS_OUT_TIMEOUT: return "timeout";
	default: return "incomplete";
	}
}

static void tls_free(struct tls_conn *tc)
{
	if (!tc)
		return;
	free(tc->ch);
	free(tc->sh);
	free(tc);
}

static void tls_init(struct tracker *t, void *st)
{
	((struct tls_state *)st)->timeout_ns = (uint64_t)(t->o->tls_timeout_s * NS_PER_SEC);
}

static void tls_free_all(struct tracker *t)
{
	struct tls_state *s = S(t);
	uint64_t k;
	void *v;

	for (size_t i = 0; u64map_next(&s->conns, &i, &k, &v);)
		tls_free(v);
	u64map_free(&s->conns);
	u64map_free(&s->hs);
	u64map_free(&s->seen);
	tls_free(s->closing);
	free(s->hbuf);
}

void track_set_tls_kernel(struct tracker *t, bool counts, bool quiet,
			  const struct track_tls_kernel *k)
{
	struct tls_state *s = S(t);

	if (!(s->hbuf = malloc(sizeof(*s->hbuf))))
		return;
	s->kcounts = counts;
	s->quiet = quiet;
	s->kernel = true;
	s->k = *k;
}

/* Is the handshake still on, by the kernel's tls_hello? (Without it: as user space
 * knows it.) */
static bool kernel_on(struct tls_state *s, uint64_t cookie)
{
	return !s->kernel || !s->k.get(s->k.ctx, cookie, s->hbuf);
}

void tls_kcounts(struct pod_agg *pa, const struct cs_cg_counts *was, const struct cs_cg_counts *now)
{
	struct tls_pod *a;

	if (was->tls_started == now->tls_started && was->tls_ok == now->tls_ok &&
	    was->tls_alert == now->tls_alert && was->tls_desync == now->tls_desync)
		return;
	a = tr_pod_state(pa, &tls_part, true);
	if (!a)
		return;
	a->k.started += now->tls_started - was->tls_started;
	a->k.ok += now->tls_ok - was->tls_ok;
	a->k.alert += now->tls_alert - was->tls_alert;
	a->k.desync += now->tls_desync - was->tls_desync;
	for (int i = 0; i < CS_HIST_SLOTS; i++)
		a->k.us[i] += now->tls_us[i] - was->tls_us[i];
	a->k.us_sum += now->tls_us_sum - was->tls_us_sum;
}

static struct tls_pod *pod_of(struct tracker *t, uint64_t cgroup_id)
{
	struct cg_entry *c = tr_cgroup(t, cgroup_id);

	return c && c->agg ? tr_pod_state(c->agg, &tls_part, true) : NULL;
}

/* ---- stats ---- */

static void stats_add(struct tls_stats *s, uint8_t outcome, double ms, uint32_t cap)
{
	s->handshakes++;
	if (outcome == TLS_OUT_OK)
		s->ok++;
	else if (outcome == TLS_OUT_TIMEOUT)
		s->timeouts++;
	else
		s->failed++;
	if (outcome != TLS_OUT_OK)
		return;
	if (!s->ms && !(s->ms = calloc(cap, sizeof(*s->ms))))
		return;
	s->ms[s->pos] = (float)ms;
	s->pos = (s->pos + 1) % cap;
	if (s->nsamples < cap)
		s->nsamples++;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return x < y ? -1 : x > y;
}

/* p-th percentile (0..100) of a stats ring, in ms; -1 when empty. */
static double pct(const struct tls_stats *s, double p)
{
	float sorted[TLS_SAMPLES];
	uint32_t n = s->nsamples, idx;

	if (!n || !s->ms)
		return -1;
	memcpy(sorted, s->ms, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_float);
	/* Nearest rank. */
	idx = (uint32_t)(p / 100.0 * n + 0.999999);
	idx = idx ? idx - 1 : 0;
	return sorted[idx < n ? idx : n - 1];
}

static void destination(const struct tls_conn *tc, char *buf, size_t len)
{
	const struct cs_event *e = &tc->ev;
	const uint8_t *ip = tc->we_are_client ? e->daddr : e->saddr;
	uint16_t port = tc->we_are_client ? e->dport : e->sport;
	char txt[64];

	if (tc->sni[0]) {
		snprintf(buf, len, "%s", tc->sni);
		return;
	}
	out_ip(tr_family(e), ip, txt, sizeof(txt));
	snprintf(buf, len, tr_family(e) == AF_INET6 ? "[%s]:%u" : "%s:%u", txt, port);
}

/* The index of a pod's destination by name, or -1. */
static int dest_index(const struct tls_pod *a, const char *name)
{
	for (int i = 0; i < a->ndests; i++)
		if (!strcmp(a->dests[i].name, name))
			return i;
	return -1;
}

/* Count a handshake once, when its outcome is known. */
static void account(struct tracker *t, struct tls_conn *tc)
{
	struct cg_entry *c = tr_cgroup(t, tc->ev.cgroup_id);
	struct tls_pod *a = c && c->agg ? tr_pod_state(c->agg, &tls_part, true) : NULL;
	double ms = tc->done_ns ? tr_elapsed(tc->done_ns, tc->start_ns) / 1e6 : 0;
	char dest[272];
	int i;

	if (tc->counted || !a)
		return;
	tc->counted = true;
	c->agg->dirty++;
	stats_add(&a->all, tc->outcome, ms, TLS_SAMPLES);
	if (tc->outcome == TLS_OUT_OK) {
		a->us[tr_hist_slot((uint64_t)(ms * 1000))]++;
		a->us_sum += (uint64_t)(ms * 1000);
	}
	if (!a->dests && !(a->dests = calloc(MAX_TLS_DESTS, sizeof(*a->dests))))
		return;
	destination(tc, dest, sizeof(dest));
	i = dest_index(a, dest);
	if (i < 0) {
		i = a->ndests;
		if (a->ndests < MAX_TLS_DESTS) {
			a->ndests++;
		} else {
			/* Full: the destination with the fewest handshakes makes room. */
			int min = 0;

			for (int j = 1; j < a->ndests; j++)
				if (a->dests[j].st.handshakes < a->dests[min].st.handshakes)
					min = j;
			i = min;
			free(a->dests[i].st.ms);
			a->dest_evictions++;
		}
		memset(&a->dests[i], 0, sizeof(a->dests[i]));
		snprintf(a->dests[i].name, sizeof(a->dests[i].name), "%s", dest);
	}
	stats_add(&a->dests[i].st, tc->outcome, ms, TLS_DEST_SAMPLES);
}

/* ---- the captured hellos ---- */

static void parse_hellos(struct tls_conn *tc)
{
	struct tls_rec_hdr rh;

	/* The ClientHello: the first record's body (one record in practice). */
	if (tc->ch && tls_parse_record_header(tc->ch, tc->ch_have, &rh) == TLS_OK &&
	    tc->ch_have >= (uint32_t)TLS_REC_HDR_LEN + rh.len) {
		struct tls_client_hello ch;

		memcpy(parse_buf, tc->ch + TLS_REC_HDR_LEN, rh.len);
		if (tls_parse_client_hello(parse_buf, rh.len, &ch) == TLS_OK) {
			snprintf(tc->sni, sizeof(tc->sni), "%s", ch.sni);
			snprintf(tc->alpn_offered, sizeof(tc->alpn_offered), "%s", ch.alpn);
		}
		free(tc->ch);
		tc->ch = NULL;
	}
	/* The ServerHello opens the server's first handshake record, or a later
	 * one after a HelloRetryRequest (same message type, and a CCS may come
	 * between): look through the captured records for the first real one. */
	for (uint32_t at = 0; tc->sh && at + TLS_REC_HDR_LEN < tc->sh_have;) {
		struct tls_server_hello sh;
		uint32_t body, msg;

		if (tls_parse_record_header(tc->sh + at, tc->sh_have - at, &rh) != TLS_OK)
			break;
		body = tc->sh_have - at - TLS_REC_HDR_LEN;
		if (body > rh.len)
			body = rh.len;
		if (rh.type == TLS_CT_HANDSHAKE && body > TLS_HS_HDR_LEN) {
			memcpy(parse_buf, tc->sh + at + TLS_REC_HDR_LEN, body);
			msg = TLS_HS_HDR_LEN + ((uint32_t)parse_buf[1] << 16 |
						(uint32_t)parse_buf[2] << 8 | parse_buf[3]);
			if (msg > body || tls_parse_server_hello(parse_buf, msg, &sh) != TLS_OK)
				break;
			if (!(sh.flags & TLS_SH_HRR)) {
				tc->version = sh.version;
				tc->sh_read = true;
				snprintf(tc->alpn, sizeof(tc->alpn), "%s",
					 sh.alpn[0] ? sh.alpn : tc->alpn_ee);
				free(tc->sh);
				tc->sh = NULL;
				break;
			}
		}
		at += TLS_REC_HDR_LEN + rh.len;
	}
}

static void add_bytes(uint8_t **buf, uint32_t *have, uint32_t cap, const struct tls_event *e)
{
	uint32_t len = e->len > TLS_CHUNK ? TLS_CHUNK : e->len;

	if (e->off > *have || e->off >= cap)
		return; /* a hole (lost event): the hello is not read */
	if (!*buf && !(*buf = calloc(1, cap)))
		return;
	if (len > cap - e->off)
		len = cap - e->off;
	memcpy(*buf + e->off, e->data, len);
	if (e->off + len > *have)
		*have = e->off + len;
}

/* ---- findings ---- */

static void owner(const struct tls_conn *tc, struct sock_owner *own)
{
	memset(own, 0, sizeof(*own));
	if (tc->ino && procfd_lookup(tc->ino, own, 1) != 1)
		own->pid = 0;
}

/* The other end, as this side knows it: the server by SNI and address, or the
 * client by address (and the name it asked for). */
static void peer_text(const struct tls_conn *tc, char *buf, size_t len)
{
	const struct cs_event *e = &tc->ev;
	char ip[64];

	out_ip(tr_family(e), e->daddr, ip, sizeof(ip));
	if (tc->we_are_client && tc->sni[0])
		snprintf(buf, len, "%s (%s:%u)", tc->sni, ip, e->dport);
	else if (tc->we_are_client)
		snprintf(buf, len, tr_family(e) == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, e->dport);
	else if (tc->sni[0])
		snprintf(buf, len, "client %s:%u (asking for %s)", ip, e->dport, tc->sni);
	else
		snprintf(buf, len, "client %s:%u", ip, e->dport);
}

/* False: not about a pod we report. own keeps the owner's name the finding points at. */
static bool tls_finding(struct tracker *t, struct finding_rec *o, const char *kind,
			const char *sev, struct tls_conn *tc, uint64_t ts_mono,
			struct sock_owner *own, char *who, size_t wlen, char *proc, size_t plen)
{
	struct cg_entry *c = tr_cgroup(t, tc->ev.cgroup_id);

	if (!c || !c->match)
		return false;
	owner(tc, own);
	tr_finding_init(t, o, kind, sev, &tc->ev, c, own->pid, own->comm, ts_mono);
	o->d.tls.sni = tc->sni[0] ? tc->sni : NULL;
	tr_pod_text(&c->pod, who, wlen);
	if (own->pid)
		snprintf(proc, plen, "%s (pid %u)", own->comm, own->pid);
	else
		snprintf(proc, plen, "A process");
	return true;
}

/* Handshakes to tc's destination (its SNI, or the server's address) that failed
 * so far, this one included: a client retrying a rejected handshake shows here. */
static uint64_t dest_failures(struct tracker *t, const struct tls_conn *tc)
{
	struct tls_pod *a = pod_of(t, tc->ev.cgroup_id);
	char dest[272];
	int i;

	if (!a || !a->dests)
		return 0;
	destination(tc, dest, sizeof(dest));
	i = dest_index(a, dest);
	return i < 0 ? 0 : a->dests[i].st.failed;
}

/* Alerts that reject a certificate (RFC 8446 §6.2): the peer's certificate was
 * bad, expired, revoked, of an unknown CA, or missing where one is required. */
static bool certificate_alert(uint8_t desc)
{
	switch (desc) {
	case 42: /* bad_certificate */
	case 43: /* unsupported_certificate */
	case 44: /* certificate_revoked */
	case 45: /* certificate_expired */
	case 46: /* certificate_unknown */
	case 48: /* unknown_ca */
	case 116: /* certificate_required */
		return true;
	default:
		return false;
	}
}

static void timeout_finding(struct tracker *t, struct tls_conn *tc, uint64_t now)
{
	char who[640], proc[64], peer[400], msg[1400];
	double el = tr_elapsed(now, tc->start_ns) / 1e9;
	struct sock_owner own;
	struct finding_rec o;

	if (!tls_finding(t, &o, "tls_handshake_timeout", "error", tc, 0, &own, who, sizeof(who),
			 proc, sizeof(proc)))
		return;
	o.detail = FD_TLS_TIMEOUT;
	o.d.tls.elapsed_s = tr_secs3(el);
	o.d.tls.threshold_s = t->o->tls_timeout_s;
	o.has_cause = true;  /* none that the wire tells */
	tr_evidence_num(&o, "elapsed_s", o.d.tls.elapsed_s);
	tr_evidence_str(&o, "sni", o.d.tls.sni);
	peer_text(tc, peer, sizeof(peer));
	if (tc->we_are_client)
		snprintf(msg, sizeof(msg),
			 "%s in %s has waited %.1fs for its TLS handshake with %s to finish: the "
			 "server took the connection but has not completed TLS; look at that "
			 "server's TLS listener and load, or a proxy in between.",
			 proc, who, el, peer);
	else
		snprintf(msg, sizeof(msg),
			 "A TLS handshake from %s to %s has not finished after %.1fs: the client "
			 "stopped answering, or this server is stuck mid-handshake.",
			 peer, who, el);
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

static void failed_finding(struct tracker *t, struct tls_conn *tc, uint64_t ts_mono,
			   const char *how)
{
	char who[640], proc[64], peer[400], msg[1600], why[160];
	const char *by = tc->failed_by_client ? "client" : "server";
	struct sock_owner own;
	struct finding_rec o;

	if (!tls_finding(t, &o, "tls_handshake_failed", "error", tc, ts_mono, &own, who,
			 sizeof(who), proc, sizeof(proc)))
		return;
	o.detail = FD_TLS_FAILED;
	o.d.tls.failed_by = by;
	o.d.tls.alert = tc->alert_clear ? tls_alert_name(tc->alert_desc) : NULL;
	o.d.tls.reason = how;
	if (tc->alert_clear)
		snprintf(why, sizeof(why), "it sent alert %s", tls_alert_name(tc->alert_desc));
	else
		snprintf(why, sizeof(why), "%s", how);
	peer_text(tc, peer, sizeof(peer));
	uint64_t fails = dest_failures(t, tc);

	o.has_cause = true;
	tr_evidence_str(&o, "failed_by", by);
	tr_evidence_str(&o, "alert", o.d.tls.alert);
	tr_evidence_str(&o, "sni", o.d.tls.sni);
	tr_evidence_num(&o, "failures_to_destination", (double)fails);
	if (tc->alert_clear && certificate_alert(tc->alert_desc)) {
		const char *other = tc->failed_by_client ? "server" : "client";
		char name[300] = "";

		if (o.d.tls.sni)
			snprintf(name, sizeof(name), " (%s)", o.d.tls.sni);
		o.cause = "certificate_rejected";
		snprintf(msg, sizeof(msg),
			 "The TLS handshake between %s and %s failed: the %s rejected the %s's "
			 "certificate (alert %s); %llu handshake(s) to this destination failed so "
			 "far%s. Check that the certificate's SAN covers the name dialled%s, that "
			 "it has not expired, and that the %s trusts the CA that signed it.",
			 who, peer, by, other, o.d.tls.alert, (unsigned long long)fails,
			 fails >= 3 ? ", a client retrying in a loop" : "", name, by);
	} else {
		snprintf(msg, sizeof(msg),
			 "The TLS handshake between %s and %s failed: the %s gave up (%s); check "
			 "certificates (SAN, CA, expiry), TLS versions and ALPN on both sides.",
			 who, peer, by, why);
	}
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

/* ---- events ---- */

static void end_handshake(struct tracker *t, struct tls_conn *tc, uint8_t outcome)
{
	u64map_del(&S(t)->hs, tc->ev.cookie);
	if (tc->outcome == TLS_OUT_PROGRESS || tc->outcome == TLS_OUT_TIMEOUT)
		tc->outcome = outcome;
	parse_hellos(tc);
	account(t, tc);
}

/* A handshake followed from now on, under its cookie in conns (and, while it is
 * on, in hs). NULL without memory. */
static struct tls_conn *tc_new(struct tls_state *s, uint64_t cookie, uint64_t start_ns,
			       uint64_t cgroup_id, uint64_t ino, bool client, bool on)
{
	struct tls_conn *tc = u64map_get(&s->conns, cookie);

	if (tc) {
		/* Out of both maps before it is freed: a failed put below must not
		 * leave a freed entry behind. */
		u64map_del(&s->hs, cookie);
		u64map_del(&s->conns, cookie);
		tls_free(tc);
	}
	tc = calloc(1, sizeof(*tc));
	if (!tc || u64map_put(&s->conns, cookie, tc)) {
		free(tc);
		return NULL;
	}
	if (on)
		u64map_put(&s->hs, cookie, tc);
	tc->ev.ts_ns = start_ns;
	tc->ev.cookie = cookie;
	tc->ev.cgroup_id = cgroup_id;
	tc->ev.side = client ? CS_SIDE_CLIENT : CS_SIDE_SERVER;
	tc->ev.ino = ino;
	tc->start_ns = start_ns;
	tc->we_are_client = client;
	tc->ino = ino;
	return tc;
}

#define TC_ENDS(tc, x) do {                                              \
	(tc)->ev.family = (x)->family;                                   \
	(tc)->ev.sport = (x)->sport;                                     \
	(tc)->ev.dport = (x)->dport;                                     \
	memcpy((tc)->ev.saddr, (x)->saddr, sizeof((tc)->ev.saddr));      \
	memcpy((tc)->ev.daddr, (x)->daddr, sizeof((tc)->ev.daddr));      \
} while (0)

static struct tls_conn *tc_from_event(struct tls_state *s, const struct tls_event *e, bool on)
{
	struct tls_conn *tc = tc_new(s, e->cookie, e->ts_ns, e->cgroup_id, e->ino,
				     e->we_are_client, on);

	if (tc)
		TC_ENDS(tc, e);
	return tc;
}

static void copy_bytes(uint8_t **buf, uint32_t *have, const uint8_t *from, uint32_t n,
		       uint32_t cap)
{
	if (n > cap)
		n = cap;
	if (n && (*buf = malloc(cap))) {
		memcpy(*buf, from, n);
		*have = n;
	}
}

/* Quiet: a handshake user space follows from the kernel's entry of it (start,
 * ends, hello bytes). */
static struct tls_conn *tc_from_hello(struct tls_state *s, uint64_t cookie,
				      const struct tls_hello *h, bool on)
{
	struct tls_conn *tc = tc_new(s, cookie, h->start_ns, h->cgroup_id, h->ino,
				     h->we_are_client, on);

	if (tc) {
		TC_ENDS(tc, h);
		copy_bytes(&tc->ch, &tc->ch_have, h->ch, h->ch_have, TLS_CAPTURE_CLIENT);
		copy_bytes(&tc->sh, &tc->sh_have, h->sh, h->sh_have, TLS_CAPTURE_SERVER);
	}
	return tc;
}

/* Quiet: the kernel's entry of a handshake taken into user space, and out of the
 * kernel's map. NULL if it has none. */
static struct tls_conn *take_hello(struct tls_state *s, uint64_t cookie, bool on)
{
	struct tls_conn *tc;

	if (!s->quiet || s->k.get(s->k.ctx, cookie, s->hbuf))
		return NULL;
	tc = tc_from_hello(s, cookie, s->hbuf, on);
	s->k.del(s->k.ctx, cookie);
	return tc;
}

void track_tls_event(struct tracker *t, const struct tls_event *e)
{
	struct tls_state *s = S(t);
	uint64_t key = e->cookie;
	struct tls_conn *tc = u64map_get(&s->conns, key);

	if (e->type == TLS_EV_START) {
		tc_from_event(s, e, true);
		return;
	}
	if (s->quiet && e->type != TLS_EV_DATA) {
		/* An end that crossed: the start and the hellos are in the kernel
		 * (none for a handshake reported already, or one the map could not
		 * take: then the event's own fields). */
		if (!tc && !(tc = take_hello(s, key, true)))
			tc = tc_from_event(s, e, true);
		else if (tc)
			s->k.del(s->k.ctx, key);
	}
	if (!tc)
		return;
	switch (e->type) {
	case TLS_EV_DATA:
		if (e->dir == TLS_DIR_C2S)
			add_bytes(&tc->ch, &tc->ch_have, TLS_CAPTURE_CLIENT, e);
		else
			add_bytes(&tc->sh, &tc->sh_have, TLS_CAPTURE_SERVER, e);
		break;
	case TLS_EV_DONE:
		tc->done_ns = e->ts_ns;
		if (!tc->version)
			tc->version = e->version;
		end_handshake(t, tc, TLS_OUT_OK);
		break;
	case TLS_EV_ALERT:
		tc->failed_by_client = e->dir == TLS_DIR_C2S;
		tc->alert_level = e->alert_level;
		tc->alert_desc = e->alert_desc;
		tc->alert_clear = e->alert_clear;
		end_handshake(t, tc, TLS_OUT_FAILED);
		failed_finding(t, tc, e->ts_ns, e->alert_clear ? "alert" : "an encrypted alert");
		break;
	case TLS_EV_DESYNC:
		end_handshake(t, tc, TLS_OUT_INCOMPLETE);
		break;
	}
}

void track_tls_alpn(struct tracker *t, uint64_t cookie, const char *alpn)
{
	struct tls_conn *tc = u64map_get(&S(t)->conns, cookie);

	if (!tc)
		return;
	snprintf(tc->alpn_ee, sizeof(tc->alpn_ee), "%s", alpn);
	if (!tc->sh && !tc->alpn[0])  /* the hellos were read already */
		snprintf(tc->alpn, sizeof(tc->alpn), "%s", alpn);
}

static void report_timeout(struct tracker *t, struct tls_conn *tc, uint64_t now)
{
	struct tls_pod *a = pod_of(t, tc->ev.cgroup_id);

	tc->timeout_reported = true;
	tc->outcome = TLS_OUT_TIMEOUT;
	if (a)
		a->timeouts++;
	parse_hellos(tc);
	account(t, tc);
	timeout_finding(t, tc, now);
}

/*
 * Quiet: the handshakes in progress are the kernel's tls_hello entries. Each is
 * read once for its start (kept in seen), then only its key is walked; one past
 * --tls-timeout is taken into user space, and marked in the kernel so that its
 * end crosses.
 */
static void quiet_tick(struct tracker *t, uint64_t now)
{
	struct tls_state *s = S(t);
	struct u64map still = { 0 };
	uint64_t key, prev = 0;
	int n = 0;

	while (n < TLS_HELLO_MAX && !s->k.next(s->k.ctx, n ? &prev : NULL, &key)) {
		void *v = u64map_get(&s->seen, key);
		uint64_t start = (uint64_t)(uintptr_t)v;
		struct tls_conn *tc;

		n++;
		prev = key;
		if (u64map_get(&s->conns, key))
			continue;  /* user space has it already */
		if (!v) {
			if (s->k.get(s->k.ctx, key, s->hbuf))
				continue;
			start = s->hbuf->start_ns ? s->hbuf->start_ns : 1;
		}
		if (tr_elapsed(now, start) < s->timeout_ns) {
			u64map_put(&still, key, (void *)(uintptr_t)start);
			continue;
		}
		/* Its latest bytes; and once marked, a handshake that ends now
		 * crosses (one that ended meanwhile is gone: not a timeout). */
		if (s->k.get(s->k.ctx, key, s->hbuf) ||
		    s->k.mark(s->k.ctx, key, s->hbuf, TLS_HELLO_REPORTED))
			continue;
		if ((tc = tc_from_hello(s, key, s->hbuf, false)))
			report_timeout(t, tc, now);
	}
	u64map_free(&s->seen);
	s->seen = still;
}

/* Handshakes still on past --tls-timeout: a finding now, while they are open. */
static void tls_tick(struct tracker *t, uint64_t now)
{
	struct tls_state *s = S(t);
	uint64_t k;
	void *v;

	if (!s->timeout_ns)
		return;
	if (s->quiet)
		quiet_tick(t, now);
	for (size_t i = 0; u64map_next(&s->hs, &i, &k, &v);) {
		struct tls_conn *tc = v;

		if (tc->timeout_reported || tr_elapsed(now, tc->start_ns) < s->timeout_ns)
			continue;
		if (!kernel_on(s, k)) {
			/* It ended, and its end event was lost: no timeout. */
			tc->timeout_reported = true;
			continue;
		}
		report_timeout(t, tc, now);
	}
}

/* The connection closed: a handshake still on failed, unless it had timed out. */
static void close_handshake(struct tracker *t, struct tls_conn *tc, const struct cs_event *close)
{
	bool we_closed = close->close_cause == CS_CLOSE_LOCAL_FIN ||
			 close->close_cause == CS_CLOSE_RST_OUT;
	struct tls_pod *a;

	if (tc->outcome != TLS_OUT_PROGRESS)
		return;
	tc->failed_by_client = we_closed == (bool)tc->we_are_client;
	tc->outcome = TLS_OUT_FAILED;
	parse_hellos(tc);
	account(t, tc);
	if ((a = pod_of(t, tc->ev.cgroup_id)))
		a->closed_failed++;
	failed_finding(t, tc, close->ts_ns,
		       close->close_cause == CS_CLOSE_RST_IN || close->close_cause == CS_CLOSE_RST_OUT
			       ? "connection reset before the handshake completed"
			       : "connection closed before the handshake completed");
}

/* A complete handshake's ALPN as the kernel kept it (quiet), kept until the
 * record is out: a list cut to fit ends at its last whole name. */
static void done_alpn(struct tls_state *s, const struct tls_done *d)
{
	char *comma;

	snprintf(s->done_alpn, sizeof(s->done_alpn), "%.*s", (int)sizeof(d->alpn) - 1, d->alpn);
	snprintf(s->done_offered, sizeof(s->done_offered), "%.*s",
		 (int)sizeof(d->alpn_offered) - 1, d->alpn_offered);
	if ((d->alpn_flags & TLS_DONE_ALPN_CUT) && (comma = strrchr(s->done_offered, ',')))
		*comma = 0;
	else if (d->alpn_flags & TLS_DONE_ALPN_CUT)
		s->done_offered[0] = 0;
}

/* The connection ended: its handshake is settled, and the record gets its tls
 * object. The state lives until the record is out (tls_conn_done). */
static void tls_conn_close(struct tracker *t, const struct cs_event *e, struct conn_rec *v)
{
	struct tls_state *s = S(t);
	struct tls_conn *tc;

	u64map_del(&s->hs, e->cookie);
	tc = u64map_del(&s->conns, e->cookie);
	/* Quiet: a handshake still on at the close is in the kernel; one taken
	 * already (a timeout) leaves its entry there until now. */
	if (!tc && (tc = take_hello(s, e->cookie, false)))
		u64map_del(&s->conns, e->cookie);
	else if (tc && s->quiet)
		s->k.del(s->k.ctx, e->cookie);
	if (!tc) {
		struct tls_done d;

		/* Quiet: a complete handshake, then a problem of the connection (a
		 * reset, say), or one that offered h2. Its hellos did not cross: no
		 * SNI; the ALPN the kernel read from them. */
		if (s->quiet && !s->k.done(s->k.ctx, e->cookie, &d)) {
			done_alpn(s, &d);
			v->has_tls = true;
			v->tls_version = d.version ? tls_version_name(d.version) : NULL;
			v->tls_alpn_offered = s->done_offered;
			v->tls_alpn = s->done_alpn[0] ? s->done_alpn : NULL;
			v->tls_alpn_seen = d.alpn_flags & TLS_DONE_SEL_SEEN;
			v->tls_ms_known = true;
			v->tls_ns = d.handshake_us * 1000;
			v->tls_outcome = "ok";
		}
		return;
	}
	/* Every event crosses, but one may be lost: a handshake that looks on
	 * here and ended in the kernel lost its end. Not a failure: unknown. */
	if (s->kernel && !s->quiet && tc->outcome == TLS_OUT_PROGRESS) {
		if (kernel_on(s, e->cookie))
			s->k.del(s->k.ctx, e->cookie);
		else
			tc->outcome = TLS_OUT_INCOMPLETE;
	}
	close_handshake(t, tc, e);
	v->has_tls = true;
	v->tls_version = tc->version ? tls_version_name(tc->version) : NULL;
	v->tls_sni = tc->sni[0] ? tc->sni : NULL;
	v->tls_alpn_offered = tc->alpn_offered;
	v->tls_alpn = tc->alpn[0] ? tc->alpn : NULL;
	v->tls_alpn_seen = tc->alpn[0] || (tc->sh_read && tc->version && tc->version <= 0x0303);
	v->tls_ms_known = tc->done_ns != 0;
	v->tls_ns = tc->done_ns ? tr_elapsed(tc->done_ns, tc->start_ns) : 0;
	v->tls_outcome = tc->outcome == TLS_OUT_PROGRESS ? "incomplete" : outcome_name(tc->outcome);
	tls_free(s->closing);
	s->closing = tc;
}

static void tls_conn_done(struct tracker *t, const struct cs_event *e)
{
	struct tls_state *s = S(t);

	(void)e;
	tls_free(s->closing);
	s->closing = NULL;
}

static void stats_rec(struct tls_stats_rec *r, const struct tls_stats *s)
{
	double p50 = pct(s, 50), p99 = pct(s, 99);

	r->handshakes = s->handshakes;
	r->ok = s->ok;
	r->failed = s->failed;
	r->timeouts = s->timeouts;
	r->p50_ms = p50 >= 0 ? (double)(int64_t)(p50 * 1000) / 1000 : -1;
	r->p99_ms = p50 >= 0 ? (double)(int64_t)(p99 * 1000) / 1000 : -1;
}

/* Live totals: the kernel's counts, with the failures only user space tells (a
 * close before the end) and the timeouts. A handshake that timed out and then ended
 * is counted under its end too; handshakes are those that started. */
static void kernel_rec(struct tls_stats_rec *r, const struct tls_pod *a)
{
	double p50 = tr_hist_pct_ms(a->k.us, 50), p99 = tr_hist_pct_ms(a->k.us, 99);

	r->handshakes = a->k.started;
	r->ok = a->k.ok;
	r->failed = a->k.alert + a->k.desync + a->closed_failed;
	r->timeouts = a->timeouts;
	r->p50_ms = p50;
	r->p99_ms = p50 >= 0 ? p99 : -1;
}

/* The summary's tls member: none when the pod has had no TLS handshake. */
static void tls_summary(struct tracker *t, struct summary_rec *s, const struct pod_agg *pa)
{
	const struct tls_pod *a = tr_pod_state_c(pa, &tls_part);
	bool k = S(t)->kcounts;

	_Static_assert(MAX_TLS_DESTS <= SUMMARY_MAX_TLS_DESTS, "a summary shows every destination");
	if (!a || !(k ? a->k.started || a->closed_failed || a->timeouts : a->all.handshakes))
		return;
	s->has_tls = true;
	if (k)
		kernel_rec(&s->tls.all, a);
	else
		stats_rec(&s->tls.all, &a->all);
	memcpy(s->tls.hist, k ? a->k.us : a->us, sizeof(s->tls.hist));
	s->tls.sum_us = k ? a->k.us_sum : a->us_sum;
	for (int i = 0; i < a->ndests; i++) {
		s->tls.dests[i].destination = a->dests[i].name;
		stats_rec(&s->tls.dests[i].st, &a->dests[i].st);
	}
	s->tls.ndests = a->ndests;
	s->tls.dest_evictions = a->dest_evictions;
}

static void tls_pod_free(void *st)
{
	struct tls_pod *a = st;

	free(a->all.ms);
	for (int j = 0; j < a->ndests; j++)
		free(a->dests[j].st.ms);
	free(a->dests);
}

const struct track_part tls_part = {
	.name = "tls",
	.state_size = sizeof(struct tls_state),
	.pod_size = sizeof(struct tls_pod),
	.init = tls_init,
	.conn_close = tls_conn_close,
	.conn_done = tls_conn_done,
	.tick = tls_tick,
	.summary = tls_summary,
	.pod_free = tls_pod_free,
	.free_all = tls_free_all,
};
