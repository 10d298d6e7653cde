// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Conntrack's view, joined to the sockets' (issue 6): which backend a Service
 * connection really reached, forwarded flows without a local socket, and how full
 * the conntrack table is.
 *
 * Entries come as edges (bpf/ct_events.h) from the BPF netfilter program or from
 * ctnetlink. Each translated entry is kept, bounded, under two keys: its original
 * tuple (what the client dialled: client -> VIP:port) and its reply tuple turned
 * around (what the backend's socket sees: backend -> client). A connection record
 * or a finding looks its socket up under both and carries
 * nat {orig_dst, reply_src}. Entries linger CT_KEEP_NS after their end so a
 * socket's close edge, which may come after conntrack's, still finds them.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ct_events.h"
#include "output.h"
#include "track_priv.h"
#include "util.h"

#define CT_MAX_ENTRIES 65536
#define POD_ADDRS_MAX 16384           /* pod addresses remembered */
#define CT_KEEP_NS (5 * NS_PER_SEC)     /* a finished entry stays joinable this long */
#define CT_REAP_SLACK_NS NS_PER_SEC     /* a destroy read this long after a reset is its */

/* A conntrack tuple, as the maps key it: whole, so no two flows can share an entry. */
struct tuple_key {
	uint8_t l3;
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
};

struct ct_entry {
	struct ct_event ev;       /* the latest edge */
	uint64_t first_ns, end_ns, cw_since_ns;
	struct tuple_key korig, kreply;
	bool joined;              /* a local socket's record carried it */
	bool cw_reported;
};

struct ct_state {
	bool on;                  /* an edge came: conntrack is watched */
	struct kmap orig;         /* orig tuple -> ct_entry */
	struct kmap reply;        /* reply tuple (the backend's socket) -> the same */
	struct kmap pod_addrs;    /* a pod's own address -> "ns/name" (malloc'd) */
	uint64_t events, evictions;
	bool have_stat;
	uint64_t count, max, stat_ns, drops, insert_failed, early_drops, pressure_ns;
	uint64_t cw_threshold_ns;
	struct track_ct_kernel k;  /* quiet: translated entries kept in the kernel */
};

static struct ct_state *S(const struct tracker *t)
{
	return tr_state(t, &ct_part);
}

static struct tuple_key tuple_key(const uint8_t *src, uint16_t sport, const uint8_t *dst,
				  uint16_t dport, uint8_t l3)
{
	struct tuple_key k;
	size_t n = l3 == AF_INET6 ? 16 : 4;

	memset(&k, 0, sizeof(k));  /* padding and unused address bytes take part in compares */
	k.l3 = l3;
	memcpy(k.src, src, n);
	memcpy(k.dst, dst, n);
	k.sport = sport;
	k.dport = dport;
	return k;
}

static bool translated(const struct ct_event *e)
{
	size_t n = e->orig.l3 == AF_INET6 ? 16 : 4;

	return (e->status & (CT_S_DST_NAT | CT_S_SRC_NAT)) ||
	       memcmp(e->orig.dst, e->reply.src, n) || e->orig.dport != e->reply.sport;
}

static void entry_drop(struct tracker *t, struct ct_entry *c)
{
	if (kmap_get(&S(t)->orig, &c->korig) == c)
		kmap_del(&S(t)->orig, &c->korig);
	if (kmap_get(&S(t)->reply, &c->kreply) == c)
		kmap_del(&S(t)->reply, &c->kreply);
	free(c);
}

static void ep_text(uint8_t l3, const uint8_t *a, uint16_t port, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	out_ip(l3 == AF_INET6 ? AF_INET6 : AF_INET, a, ip, sizeof(ip));
	snprintf(buf, len, l3 == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

static const char *state_name(uint8_t s)
{
	static const char *names[] = { "NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
				       "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2" };

	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "UNKNOWN";
}

struct addr_key {
	uint8_t l3;
	uint8_t a[16];
};

static struct addr_key addr_key(uint8_t l3, const uint8_t *a)
{
	struct addr_key k;

	memset(&k, 0, sizeof(k));
	k.l3 = l3;
	memcpy(k.a, a, l3 == AF_INET6 ? 16 : 4);
	return k;
}

static void ct_init(struct tracker *t, void *st)
{
	((struct ct_state *)st)->cw_threshold_ns =
		(uint64_t)(t->o->close_wait_threshold_s * NS_PER_SEC);
	kmap_init(&S(t)->orig, sizeof(struct tuple_key), NULL);
	kmap_init(&S(t)->reply, sizeof(struct tuple_key), NULL);
	kmap_init(&S(t)->pod_addrs, sizeof(struct addr_key), NULL);
}

/* A pod's socket shows the pod's address: remembered, so a NAT'd backend is named. */
static void learn_pod(struct tracker *t, const struct cs_event *e, const struct pod_info *p)
{
	uint8_t l3 = e->family == AF_INET6 ? AF_INET6 : AF_INET;
	struct addr_key k = addr_key(l3, e->saddr);
	char *name;

	if (t->o->conntrack == CT_OFF || t->replay || kmap_get(&S(t)->pod_addrs, &k) ||
	    S(t)->pod_addrs.len >= POD_ADDRS_MAX)
		return;
	if (asprintf(&name, "%s/%s", p->namespace_, p->name) < 0)
		return;
	if (kmap_put(&S(t)->pod_addrs, &k, name))
		free(name);
}

/* The pod that owns an address, if one of its sockets was seen here. */
static const char *pod_of(struct tracker *t, uint8_t l3, const uint8_t *a)
{
	struct addr_key k = addr_key(l3, a);

	return kmap_get(&S(t)->pod_addrs, &k);
}

/* What conntrack translated, for a record's "nat". */
static void nat_of(struct tracker *t, const struct ct_event *e, struct nat_rec *n)
{
	n->family = e->orig.l3 == AF_INET6 ? AF_INET6 : AF_INET;
	n->orig_dst = e->orig.dst;
	n->orig_dport = e->orig.dport;
	n->reply_src = e->reply.src;
	n->reply_sport = e->reply.sport;
	n->source = e->source == CT_SRC_BPF ? "bpf" : "netlink";
	/* (CT_TCP_NONE: a kept entry that the program no longer follows.) */
	n->state = e->tcp_state != CT_TCP_NONE ? state_name(e->tcp_state) : NULL;
	n->reply_pod = pod_of(t, e->reply.l3, e->reply.src);
}

void track_set_ct_kernel(struct tracker *t, const struct track_ct_kernel *k)
{
	S(t)->k = *k;
	S(t)->on = true;
}

/* Quiet: the kernel's kept entry for a socket, made a user-space one for as long
 * as a finished one lingers (its other side's record may want it too). */
static struct ct_entry *kernel_entry(struct tracker *t, const struct cs_event *e, uint8_t l3)
{
	size_t n = l3 == AF_INET6 ? 16 : 4;
	struct ct_tuple key;
	struct ct_event ev;
	struct tuple_key ko;
	struct ct_entry *c;

	memset(&key, 0, sizeof(key));
	memcpy(key.src, e->saddr, n);
	memcpy(key.dst, e->daddr, n);
	key.sport = e->sport;
	key.dport = e->dport;
	key.l3 = l3;
	key.l4 = IPPROTO_TCP;
	if (!S(t)->k.nat || S(t)->k.nat(S(t)->k.ctx, &key, &ev))
		return NULL;
	track_ct_event(t, &ev);
	ko = tuple_key(ev.orig.src, ev.orig.sport, ev.orig.dst, ev.orig.dport, l3);
	c = kmap_get(&S(t)->orig, &ko);
	if (c && !c->end_ns)
		c->end_ns = tr_now(t);
	return c;
}

/* The entry a socket's traffic went through, seen from either end. */
static struct ct_entry *lookup(struct tracker *t, const struct cs_event *e)
{
	struct ct_entry *c;
	uint8_t l3 = e->family == AF_INET6 ? AF_INET6 : AF_INET;
	struct tuple_key k;

	if (!S(t)->on)
		return NULL;
	k = tuple_key(e->saddr, e->sport, e->daddr, e->dport, l3);
	/* The client: it dialled orig.dst (the VIP). */
	c = kmap_get(&S(t)->orig, &k);
	if (c)
		return c;
	/* The backend: its socket is the reply tuple's source. */
	c = kmap_get(&S(t)->reply, &k);
	return c ? c : kernel_entry(t, e, l3);
}

static void ct_conn_close(struct tracker *t, const struct cs_event *e, struct conn_rec *v)
{
	struct ct_entry *c = lookup(t, e);

	if (!c)
		return;
	c->joined = true;
	/* nat says what conntrack translated: a flow it only followed (routed
	 * between subnets, no Service in front) has none. */
	if (translated(&c->ev)) {
		v->has_nat = true;
		nat_of(t, &c->ev, &v->nat);
	}
}

static void ct_finding(struct tracker *t, struct finding_rec *f, const struct cs_event *e)
{
	struct ct_entry *c = lookup(t, e);

	if (c) {
		c->joined = true;  /* a socket here is part of it: not a forwarded flow */
		if (translated(&c->ev)) {
			f->has_nat = true;
			nat_of(t, &c->ev, &f->nat);
		}
	}
}

/* Every lifecycle edge: a pod's address is learnt; a socket of this node in
 * CLOSE_WAIT took part in its flow, which is then not a forwarded one. */
static void ct_edge(struct tracker *t, const struct cs_event *e)
{
	struct cg_entry *cg;
	struct ct_entry *c;

	if (e->type == CS_EV_RST_OUT || !tr_port_match(t, e) ||
	    !(cg = tr_cgroup(t, e->cgroup_id)))
		return;
	if (cg->pod.known)
		learn_pod(t, e, &cg->pod);
	if (e->type == CS_EV_CLOSE_WAIT && cg->match && (c = lookup(t, e)))
		c->joined = true;
}

/* A flow the node only forwarded (no socket here took part), when it ends. */
static void forwarded_record(struct tracker *t, struct ct_entry *c)
{
	const struct ct_event *e = &c->ev;
	int fam = e->orig.l3 == AF_INET6 ? AF_INET6 : AF_INET;
	struct conn_rec v = {
		.ts_real = tr_real(t, c->end_ns),
		.forwarded = true,
		.side = "forwarded",
		.family = fam,
		.client_ip = e->orig.src,
		.client_port = e->orig.sport,
		.server_ip = e->reply.src,
		.server_port = e->reply.sport,
		.start_real = tr_real(t, c->first_ns),
		.duration_ns = tr_elapsed(c->end_ns, c->first_ns),
		.ct_state = state_name(e->tcp_state),
		.ct_seen_reply = e->status & CT_S_SEEN_REPLY,
		.ct_assured = e->status & CT_S_ASSURED,
		.ct_netns = e->netns,
		.ct_mark = e->mark,
		.ct_close_wait_known = c->cw_since_ns != 0,
		.ct_close_wait_ns = c->cw_since_ns ? tr_elapsed(c->end_ns, c->cw_since_ns) : 0,
	};

	if (translated(e)) {
		v.has_nat = true;
		nat_of(t, e, &v.nat);
	}
	tr_emit_connection(t, &v);
}

void track_ct_event(struct tracker *t, const struct ct_event *e)
{
	uint8_t l3 = e->orig.l3 == AF_INET6 ? AF_INET6 : AF_INET;
	struct tuple_key ko = tuple_key(e->orig.src, e->orig.sport, e->orig.dst, e->orig.dport, l3);
	struct ct_entry *c = kmap_get(&S(t)->orig, &ko);

	S(t)->on = true;
	S(t)->events++;
	if (!c) {
		if (e->type == CT_EV_DESTROY)
			return;  /* never seen alive: nothing to join */
		if (S(t)->orig.len >= CT_MAX_ENTRIES) {
			S(t)->evictions++;
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c)
			return;
		c->first_ns = e->ts_ns;
		c->korig = ko;
		/* The backend's socket: reply.src -> reply.dst. */
		c->kreply = tuple_key(e->reply.src, e->reply.sport, e->reply.dst, e->reply.dport, l3);
		if (kmap_put(&S(t)->orig, &ko, c) || kmap_put(&S(t)->reply, &c->kreply, c)) {
			entry_drop(t, c);
			return;
		}
	}
	if (e->tcp_state == CT_TCP_CLOSE_WAIT && !c->cw_since_ns)
		c->cw_since_ns = e->ts_ns;
	c->ev = *e;
	if (e->type == CT_EV_DESTROY || e->tcp_state == CT_TCP_CLOSE ||
	    e->tcp_state == CT_TCP_TIME_WAIT)
		c->end_ns = c->end_ns ? c->end_ns : e->ts_ns;
}

/* Conntrack CLOSE_WAIT of a flow no local socket showed: the node forwards it, so
 * the stuck side is elsewhere, but conntrack holds its entry. */
static void ct_close_wait_finding(struct tracker *t, struct ct_entry *c, uint64_t now)
{
	const struct ct_event *e = &c->ev;
	struct finding_rec o = {
		.ts_real = tr_real(t, now),
		.kind = "close_wait_stuck",
		.severity = "warning",
		.about = FINDING_FORWARDED,
		.side = "forwarded",
		.source = "conntrack",
		.detail = FD_CLOSE_WAIT,
	};
	typeof(o.d.close_wait) *cw = &o.d.close_wait;
	char cl[80], sv[80], msg[512];
	double age = tr_elapsed(now, c->cw_since_ns) / 1e9;
	int fam = e->orig.l3 == AF_INET6 ? AF_INET6 : AF_INET;

	o.client = (struct rec_endpoint){ fam, e->orig.src, e->orig.sport };
	o.server = (struct rec_endpoint){ fam, e->reply.src, e->reply.sport };
	cw->age_s = tr_secs3(age);
	cw->threshold_s = t->o->close_wait_threshold_s;
	cw->has_holders = true;
	cw->holders_note = "a forwarded flow: the socket is on another host, and no process of "
			   "this node holds it";
	cw->stack_note = "a forwarded flow has no local stack";
	if (translated(e)) {
		o.has_nat = true;
		nat_of(t, e, &o.nat);
	}
	ep_text(e->orig.l3, e->orig.src, e->orig.sport, cl, sizeof(cl));
	ep_text(e->reply.l3, e->reply.src, e->reply.sport, sv, sizeof(sv));
	snprintf(msg, sizeof(msg),
		 "Conntrack has held the forwarded connection %s -> %s in CLOSE_WAIT for %.1fs: "
		 "%s closed its side and %s has not; the application at %s leaks the socket.",
		 cl, sv, age, cl, sv, sv);
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

static void ct_tick(struct tracker *t, uint64_t now)
{
	/* Forwarded flows belong to no pod: not reported under a pod filter. */
	bool unfiltered = !t->o->pod && !t->o->ns;
	const void *k;
	void *v;

	for (size_t i = 0; kmap_next(&S(t)->orig, &i, &k, &v);) {
		struct ct_entry *c = v;

		if (unfiltered && c->cw_since_ns && !c->cw_reported && !c->joined && !c->end_ns &&
		    c->ev.tcp_state == CT_TCP_CLOSE_WAIT &&
		    tr_elapsed(now, c->cw_since_ns) >= S(t)->cw_threshold_ns) {
			c->cw_reported = true;
			ct_close_wait_finding(t, c, now);
		}
		if (!c->end_ns || tr_elapsed(now, c->end_ns) < CT_KEEP_NS)
			continue;
		/* Over, and no socket's record took it: a flow this node forwarded
		 * (with problem records only: one that sat in CLOSE_WAIT or ended by
		 * a RST; a healthy socket's close does not cross to join it). */
		if (!c->joined && t->want_conns && !t->replay && unfiltered &&
		    t->o->connections != CONNS_NONE &&
		    (t->o->connections == CONNS_ALL || c->cw_since_ns ||
		     c->ev.tcp_state == CT_TCP_CLOSE))
			forwarded_record(t, c);
		entry_drop(t, c);
	}
}

static void ct_free_all(struct tracker *t)
{
	const void *k;
	void *v;

	for (size_t i = 0; kmap_next(&S(t)->orig, &i, &k, &v);)
		free(v);
	kmap_free(&S(t)->orig);
	kmap_free(&S(t)->reply);
	for (size_t i = 0; kmap_next(&S(t)->pod_addrs, &i, &k, &v);)
		free(v);
	kmap_free(&S(t)->pod_addrs);
}

/* ---- conntrack_pressure ---- */

void track_ct_pressure(struct tracker *t, uint64_t count, uint64_t max, uint64_t drops,
		       uint64_t insert_failed, uint64_t early_drops)
{
	uint64_t now = tr_now(t);
	double full = max ? (double)count / (double)max : 0, rate = 0;
	uint64_t new_drops = S(t)->have_stat ? drops - S(t)->drops : 0;
	uint64_t new_fail = S(t)->have_stat ? insert_failed - S(t)->insert_failed : 0;
	uint64_t new_early = S(t)->have_stat ? early_drops - S(t)->early_drops : 0;
	bool high = max && full * 100 >= t->o->ct_pressure_pct;

	if (S(t)->have_stat && now > S(t)->stat_ns)
		rate = ((double)count - (double)S(t)->count) / ((now - S(t)->stat_ns) / 1e9);
	S(t)->count = count;
	S(t)->max = max;
	S(t)->stat_ns = now;
	/* A counter that went back restarted (the netns or module was reloaded):
	 * nothing new in it, rather than a difference that wraps around. */
	if (S(t)->have_stat && drops < S(t)->drops)
		new_drops = 0;
	if (S(t)->have_stat && insert_failed < S(t)->insert_failed)
		new_fail = 0;
	if (S(t)->have_stat && early_drops < S(t)->early_drops)
		new_early = 0;
	S(t)->drops = drops;
	S(t)->insert_failed = insert_failed;
	S(t)->early_drops = early_drops;
	if (!S(t)->have_stat) {
		S(t)->have_stat = true;
		if (!high)
			return;
	}
	if (!high && !new_drops && !new_fail && !new_early)
		return;
	/* Once per finding window, unless it gets worse (new drops). */
	if (S(t)->pressure_ns && tr_elapsed(now, S(t)->pressure_ns) < t->fold_window_ns &&
	    !new_drops && !new_fail && !new_early)
		return;
	S(t)->pressure_ns = now;

	struct finding_rec o = {
		.ts_real = tr_real(t, now),
		.kind = "conntrack_pressure",
		.severity = new_drops || new_fail || new_early ? "error" : "warning",
		.about = FINDING_NODE,
		.detail = FD_CT_PRESSURE,
		.d.ct_pressure = {
			.count = count,
			.max = max,
			.percent = tr_secs3(full * 100),
			.growth_per_s = tr_secs3(rate),
			.threshold_percent = t->o->ct_pressure_pct,
			.drops = new_drops,
			.insert_failed = new_fail,
			.early_drops = new_early,
		},
	};
	char msg[512];

	snprintf(msg, sizeof(msg),
		 "The conntrack table is %.0f%% full (%llu of %llu entries) and %s %.0f entries/s%s: "
		 "when it is full the kernel drops new connections; raise nf_conntrack_max or find "
		 "who opens so many connections.",
		 full * 100, (unsigned long long)count, (unsigned long long)max,
		 rate >= 0 ? "growing by" : "shrinking by", rate >= 0 ? rate : -rate,
		 new_drops || new_fail || new_early ? "; it has already dropped or failed to insert "
						      "entries" : "");
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

int track_ct_expired(struct tracker *t, const struct cs_event *e)
{
	struct ct_entry *c = lookup(t, e);

	/* Only ctnetlink tells a timeout: the BPF watcher's DESTROY is a close. */
	if (!c || c->ev.source != CT_SRC_NETLINK)
		return -1;
	/* The destroy comes as the entry is reaped: by the garbage collector after
	 * its timeout, or by the lookup of the very packet the reset answered (then
	 * it is read just after the reset's edge). */
	return c->ev.type == CT_EV_DESTROY && c->ev.tcp_state == CT_TCP_ESTABLISHED &&
	       c->end_ns && c->end_ns <= e->ts_ns + CT_REAP_SLACK_NS;
}

bool track_ct_table(const struct tracker *t, uint64_t *count, uint64_t *max, uint64_t *drops,
		    uint64_t *insert_failed, uint64_t *early_drops)
{
	const struct ct_state *c = S(t);

	*count = c->count;
	*max = c->max;
	*drops = c->drops;
	*insert_failed = c->insert_failed;
	*early_drops = c->early_drops;
	return c->have_stat;
}

uint64_t track_ct_evictions(const struct tracker *t)
{
	return S(t)->evictions;
}

const struct track_part ct_part = {
	.name = "conntrack",
	.state_size = sizeof(struct ct_state),
	.init = ct_init,
	.edge = ct_edge,
	.conn_close = ct_conn_close,
	.finding = ct_finding,
	.tick = ct_tick,
	.free_all = ct_free_all,
};
