// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The tracker's core: the cgroup -> pod cache and the pods' aggregates, the
 * finding builder and folding windows, the clock, and where records go. What
 * each protocol makes of the events is in its part (track_tcp.c, track_tls.c,
 * track_h2.c, track_ct.c); the core walks the parts of track_parts.c through
 * their hooks and names none of them.
 */
#include "track_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include "output.h"
#include "procfd.h"
#include "u64map.h"
#include "util.h"

#define for_each_part(p) for (const struct track_part *const *p = track_parts; *p; p++)

/* A folded finding's identity: its kind, the pod's cgroup and the remote. */
struct fold_key {
	char kind[48];
	uint64_t cgroup_id;
	uint8_t daddr[16];
	uint16_t port;
};

/* Repeats of one finding about one pod and remote, folded into a count. */
struct fold {
	struct cs_event ev;
	const char *kind;
	tr_fold_msg_fn msg_fn;
	uint64_t window_start_ns;
	uint64_t count;        /* occurrences since the last emitted finding */
};

static uint64_t mono_clock(void *arg)
{
	(void)arg;
	return cs_mono_ns();
}

static uint64_t mono_to_real(void *arg, uint64_t mono)
{
	(void)arg;
	return cs_mono_to_real(mono);
}

void track_set_clock(struct tracker *t, const struct track_clock *c)
{
	if (c && c->now && c->real)
		t->clock = *c;
	else
		t->clock = (struct track_clock){ mono_clock, mono_to_real, NULL };
}

uint64_t tr_now(const struct tracker *t)
{
	return t->clock.now(t->clock.arg);
}

uint64_t tr_real(const struct tracker *t, uint64_t mono)
{
	return t->clock.real(t->clock.arg, mono);
}

static int part_index(const struct track_part *p)
{
	for (int i = 0; track_parts[i]; i++)
		if (track_parts[i] == p)
			return i;
	return -1;
}

void *tr_state(const struct tracker *t, const struct track_part *p)
{
	int i = part_index(p);

	return i < 0 ? NULL : t->part[i];
}

void *tr_pod_state(struct pod_agg *a, const struct track_part *p, bool create)
{
	int i = part_index(p);

	if (i < 0)
		return NULL;
	if (!a->part[i] && create && p->pod_size)
		a->part[i] = calloc(1, p->pod_size);
	return a->part[i];
}

const void *tr_pod_state_c(const struct pod_agg *a, const struct track_part *p)
{
	int i = part_index(p);

	return i < 0 ? NULL : a->part[i];
}

struct tracker *track_new(const struct cs_opts *o, struct pod_resolver *pods,
			  bool want_connections, const struct track_sink *sink,
			  void *sink_arg)
{
	struct tracker *t = calloc(1, sizeof(*t));
	int i = 0;

	if (!t)
		return NULL;
	t->o = o;
	t->pods = pods;
	t->want_conns = want_connections;
	t->sink = *sink;
	t->sink_arg = sink_arg;
	track_set_clock(t, NULL);
	t->fold_window_ns = (uint64_t)(o->finding_window_s * NS_PER_SEC);
	kmap_init(&t->aggs, sizeof(((struct pod_agg *)0)->key), NULL);
	kmap_init(&t->folds, sizeof(struct fold_key), NULL);
	_Static_assert(TRACK_MAX_PARTS >= 4, "room for every part");
	for_each_part(p) {
		if ((*p)->state_size && !(t->part[i] = calloc(1, (*p)->state_size))) {
			track_free(t);
			return NULL;
		}
		if ((*p)->init)
			(*p)->init(t, t->part[i]);
		i++;
	}
	cs_ephemeral_range(&t->eph_lo, &t->eph_hi);
	return t;
}

void track_set_holders(struct tracker *t, track_holders_fn lookup, track_flag_fn flag,
		       void *arg)
{
	t->holders_fn = lookup;
	t->flag_fn = flag;
	t->holders_arg = arg;
}

void track_set_replay(struct tracker *t, track_pod_fn pod_fn, void *arg, char *const *files,
		      int nfiles)
{
	t->replay = true;
	t->pod_fn = pod_fn;
	t->pod_arg = arg;
	t->files = files;
	t->nfiles = nfiles;
}

static void free_all(struct u64map *m)
{
	uint64_t k;
	void *v;

	for (size_t i = 0; u64map_next(m, &i, &k, &v);)
		free(v);
	u64map_free(m);
}

static void free_all_k(struct kmap *m)
{
	const void *k;
	void *v;

	for (size_t i = 0; kmap_next(m, &i, &k, &v);)
		free(v);
	kmap_free(m);
}

void track_free(struct tracker *t)
{
	const void *k;
	void *v;

	if (!t)
		return;
	for_each_part(p)
		if ((*p)->free_all)
			(*p)->free_all(t);
	free_all(&t->cgroups);
	for (size_t i = 0; kmap_next(&t->aggs, &i, &k, &v);) {
		struct pod_agg *a = v;

		for (int j = 0; track_parts[j]; j++) {
			if (a->part[j] && track_parts[j]->pod_free)
				track_parts[j]->pod_free(a->part[j]);
			free(a->part[j]);
		}
	}
	free_all_k(&t->aggs);
	free_all_k(&t->folds);
	for (int j = 0; j < TRACK_MAX_PARTS; j++)
		free(t->part[j]);
	free(t);
}

uint64_t track_events(const struct tracker *t)
{
	return t->events;
}

uint64_t track_dropped(const struct tracker *t)
{
	return t->dropped;
}

/* ---- pods ---- */

static struct pod_agg *agg_for(struct tracker *t, const struct pod_info *p, uint64_t cgid)
{
	char key[sizeof(((struct pod_agg *)0)->key)] = {0};
	struct pod_agg *a;

	pods_key(p, cgid, key, sizeof(key));
	a = kmap_get(&t->aggs, key);
	if (a) {
		/* One pod, several containers: the pod row names none of them. */
		if (strcmp(a->pod.container, p->container))
			a->pod.container[0] = 0;
		return a;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	memcpy(a->key, key, sizeof(a->key));
	a->pod = *p;
	if (kmap_put(&t->aggs, key, a)) {
		free(a);
		return NULL;
	}
	return a;
}

struct cg_entry *tr_cgroup(struct tracker *t, uint64_t cgid)
{
	uint64_t key = cgid, now;
	struct cg_entry *c = u64map_get(&t->cgroups, key);

	/* The hot path: a known cgroup. A pod whose log directory was not
	 * there yet gets another look now and then. */
	if (c && !(c->pod.is_pod && !c->pod.known))
		return c;
	now = tr_now(t);
	if (c && now - c->resolved_ns <= UNKNOWN_POD_RETRY_NS)
		return c;
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c || u64map_put(&t->cgroups, key, c)) {
			free(c);
			return NULL;
		}
	}
	c->pod = t->pod_fn ? *t->pod_fn(t->pod_arg, cgid) : *pods_lookup(t->pods, cgid);
	c->resolved_ns = now;
	c->match = pods_match(&c->pod, t->o->pod, t->o->ns);
	c->agg = c->match ? agg_for(t, &c->pod, cgid) : NULL;
	return c;
}

/* ---- small helpers ---- */

/* Seconds, to the millisecond. */
double tr_secs3(double s)
{
	return (double)(int64_t)(s * 1000 + 0.5) / 1000;
}

int tr_family(const struct cs_event *e)
{
	return e->family == AF_INET6 ? AF_INET6 : AF_INET;
}

/* now - since, never negative (an edge may carry a later stamp than a tick's now). */
uint64_t tr_elapsed(uint64_t now, uint64_t since)
{
	return now > since ? now - since : 0;
}

static bool in_eph(const struct tracker *t, uint16_t port)
{
	return port >= t->eph_lo && port <= t->eph_hi;
}

/* Who dialled? Known for sockets we saw being born; guessed from the ephemeral
 * port range for those that existed before us. */
int tr_side_of(const struct tracker *t, const struct cs_event *e)
{
	if (e->side != CS_SIDE_UNKNOWN)
		return e->side;
	if (in_eph(t, e->sport) != in_eph(t, e->dport))
		return in_eph(t, e->sport) ? CS_SIDE_CLIENT : CS_SIDE_SERVER;
	return e->sport < e->dport ? CS_SIDE_SERVER : CS_SIDE_CLIENT;
}

bool tr_port_match(const struct tracker *t, const struct cs_event *e)
{
	return !t->o->port || e->sport == t->o->port || e->dport == t->o->port;
}

const char *tr_side_name(int side)
{
	return side == CS_SIDE_CLIENT ? "client" : "server";
}

static void finding_ends(struct finding_rec *f, const struct cs_event *e, int side)
{
	struct rec_endpoint local = { tr_family(e), e->saddr, e->sport };
	struct rec_endpoint peer = { tr_family(e), e->daddr, e->dport };

	f->client = side == CS_SIDE_CLIENT ? local : peer;
	f->server = side == CS_SIDE_CLIENT ? peer : local;
}

void tr_remote_text(const struct cs_event *e, int side, char *buf, size_t len)
{
	char ip[64];
	const uint8_t *addr = e->daddr;

	out_ip(tr_family(e), addr, ip, sizeof(ip));
	if (side == CS_SIDE_CLIENT)
		snprintf(buf, len, tr_family(e) == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, e->dport);
	else
		snprintf(buf, len, "%s", ip);
}

void tr_pod_text(const struct pod_info *p, char *buf, size_t len)
{
	if (p->known)
		snprintf(buf, len, "pod %s/%s", p->namespace_, p->name);
	else if (p->is_pod)
		snprintf(buf, len, "pod uid %s", p->uid);
	else if (p->cgroup_path[0])
		snprintf(buf, len, "cgroup %s", p->cgroup_path);
	else if (p->ip[0])
		snprintf(buf, len, "the workload at %s", p->ip);
	else
		snprintf(buf, len, "an unknown cgroup");
}

/* ---- findings ---- */

/* Stamped when it was seen: the edge's time, or now for timers (ts_mono 0). */
void tr_finding_init(struct tracker *t, struct finding_rec *f, const char *kind,
		     const char *severity, const struct cs_event *e, const struct cg_entry *c,
		     uint32_t pid, const char *comm, uint64_t ts_mono)
{
	int side = tr_side_of(t, e);

	memset(f, 0, sizeof(*f));
	f->ts_real = tr_real(t, ts_mono ? ts_mono : tr_now(t));
	f->kind = kind;
	f->severity = severity;
	f->about = FINDING_SOCKET;
	f->replay = t->replay;
	f->pod = &c->pod;
	f->pid = pid;
	f->comm = comm;
	f->netns = e->netns;
	f->cookie = e->cookie;
	f->side = tr_side_name(side);
	finding_ends(f, e, side);
	for_each_part(p)
		if ((*p)->finding)
			(*p)->finding(t, f, e);
	if (c->agg)
		c->agg->findings++;
}

void tr_emit_finding(struct tracker *t, const struct finding_rec *f)
{
	t->sink.finding(f, t->sink_arg);
}

void tr_emit_connection(struct tracker *t, const struct conn_rec *c)
{
	t->sink.connection(c, t->sink_arg);
}

/* --connections problems: what makes a connection record worth writing. */
static bool problem_record(const struct tracker *t, const struct conn_rec *v)
{
	if (v->outcome && strcmp(v->outcome, "established") && strcmp(v->outcome, "connecting"))
		return true;   /* failed, refused, timed out, reset */
	if (v->close && (!strcmp(v->close, "rst_in") || !strcmp(v->close, "rst_out") ||
			 (!strcmp(v->close, "none") && !v->open)))
		return true;   /* resets and aborts */
	if (v->close_wait_ns >= (uint64_t)(t->o->close_wait_threshold_s * NS_PER_SEC))
		return true;   /* stuck in CLOSE_WAIT */
	if (v->has_tls && v->tls_outcome && strcmp(v->tls_outcome, "ok"))
		return true;   /* TLS failures and timeouts */
	return v->has_h2 && ((v->h2_goaway && v->h2_goaway_error_code) || v->h2_desync);
}

void tr_connection_end(struct tracker *t, const struct cs_event *e, struct conn_rec *v)
{
	for_each_part(p)
		if ((*p)->conn_close)
			(*p)->conn_close(t, e, v);
	if (t->want_conns && t->o->connections != CONNS_NONE &&
	    (t->o->connections != CONNS_PROBLEMS || problem_record(t, v)))
		tr_emit_connection(t, v);
	for_each_part(p)
		if ((*p)->conn_done)
			(*p)->conn_done(t, e);
}

void tr_evidence_num(struct finding_rec *f, const char *name, double v)
{
	if (f->nevidence < FINDING_MAX_EVIDENCE)
		f->evidence[f->nevidence++] = (struct finding_evidence){ name, NULL, v, false };
}

void tr_evidence_str(struct finding_rec *f, const char *name, const char *v)
{
	if (f->nevidence < FINDING_MAX_EVIDENCE)
		f->evidence[f->nevidence++] = (struct finding_evidence){ name, v, 0, true };
}

void tr_message(struct finding_rec *f, const char *msg)
{
	char pod[320] = "", vip[INET6_ADDRSTRLEN], be[INET6_ADDRSTRLEN];
	const struct nat_rec *n = &f->nat;

	/* Which backend a Service address led to is the first question: say it. */
	if (!f->has_nat) {
		snprintf(f->message, sizeof(f->message), "%s", msg);
		return;
	}
	if (n->reply_pod)
		snprintf(pod, sizeof(pod), " (pod %s)", n->reply_pod);
	snprintf(f->message, sizeof(f->message), "%s (Conntrack: %s:%u was translated to the "
		 "backend %s:%u%s.)", msg, out_ip(n->family, n->orig_dst, vip, sizeof(vip)),
		 n->orig_dport, out_ip(n->family, n->reply_src, be, sizeof(be)), n->reply_sport,
		 pod);
}

/* ---- folding windows ---- */

static void emit_fold(struct tracker *t, struct fold *f, uint64_t count, uint64_t ts_mono)
{
	struct cg_entry *c = tr_cgroup(t, f->ev.cgroup_id);
	const struct cs_event *e = &f->ev;
	struct sock_owner own = { .pid = e->pid };
	char msg[768];
	struct finding_rec o;

	if (!c)
		return;
	/* Accepted sockets that never read or wrote have no owner yet; the
	 * application usually still holds the descriptor when a RST comes in. */
	if (own.pid)
		memcpy(own.comm, e->comm, sizeof(own.comm));
	else if (!t->replay && e->ino && procfd_lookup(e->ino, &own, 1) != 1)
		own.pid = 0;
	tr_finding_init(t, &o, f->kind, "warning", e, c, own.pid, own.comm, ts_mono);
	o.detail = FD_FOLD;
	o.d.fold.count = count;
	o.d.fold.window_s = t->o->finding_window_s;
	f->msg_fn(t, &o, e, tr_side_of(t, e), msg, sizeof(msg));
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

/* First occurrence: a finding at once. Repeats within the window: counted,
 * and one finding with the count when the window ends (track_tick). */
void tr_fold_hit(struct tracker *t, const char *kind, const struct cs_event *e, int side,
		 tr_fold_msg_fn msg_fn)
{
	uint64_t now = tr_now(t);
	struct fold_key k;
	struct fold *f;

	memset(&k, 0, sizeof(k));  /* padding takes part in compares */
	snprintf(k.kind, sizeof(k.kind), "%s", kind);
	k.cgroup_id = e->cgroup_id;
	memcpy(k.daddr, e->daddr, sizeof(k.daddr));
	k.port = side == CS_SIDE_CLIENT ? e->dport : 0;
	f = kmap_get(&t->folds, &k);
	if (f) {
		f->ev = *e;
		f->count++;
		return;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return;
	f->ev = *e;
	f->kind = kind;
	f->msg_fn = msg_fn;
	f->window_start_ns = now;
	if (kmap_put(&t->folds, &k, f)) {
		free(f);
		return;
	}
	emit_fold(t, f, 1, e->ts_ns);
}

/* Folded findings whose window ended. */
static void fold_tick(struct tracker *t, uint64_t now)
{
	const void *fk;
	void *v;

	for (size_t i = 0; kmap_next(&t->folds, &i, &fk, &v);) {
		struct fold *f = v;

		if (tr_elapsed(now, f->window_start_ns) < t->fold_window_ns)
			continue;
		if (f->count) {
			emit_fold(t, f, f->count, 0);
			f->count = 0;
			f->window_start_ns = now;
		} else {
			free(kmap_del(&t->folds, fk));
		}
	}
}

/* ---- events and timers ---- */

void tr_edge(struct tracker *t, const struct cs_event *e)
{
	for_each_part(p)
		if ((*p)->edge)
			(*p)->edge(t, e);
}

void track_event(struct tracker *t, const struct cs_event *e)
{
	t->events++;
	tr_edge(t, e);
}

bool track_cgroup_gone(struct tracker *t, uint64_t cgroup_id)
{
	struct cg_entry *c = u64map_get(&t->cgroups, cgroup_id);
	char path[1024];
	struct stat st;

	/* Only a cgroup we resolved to a path can be seen to go away. */
	if (!c || !c->pod.cgroup_path[0])
		return false;
	snprintf(path, sizeof(path), "%s%s", pods_cgroup2_root(t->pods), c->pod.cgroup_path);
	if (stat(path, &st) == 0 || errno != ENOENT)
		return false;
	/* Its kernel counter is about to be deleted: a new one starts at 0. */
	c->established = 0;
	memset(&c->k, 0, sizeof(c->k));
	return true;
}

void track_tick(struct tracker *t)
{
	uint64_t now = tr_now(t);

	for_each_part(p)
		if ((*p)->tick)
			(*p)->tick(t, now);
	fold_tick(t, now);
}

void track_flush(struct tracker *t)
{
	const void *k;
	void *v;

	for_each_part(p)
		if ((*p)->flush)
			(*p)->flush(t);
	/* Repeats still folded in an open window are reported, not dropped. */
	for (size_t i = 0; kmap_next(&t->folds, &i, &k, &v);) {
		struct fold *f = v;

		if (f->count)
			emit_fold(t, f, f->count, 0);
		f->count = 0;
	}
}

/* ---- summaries and views ---- */

static void summary_of(struct tracker *t, struct pod_agg *a, struct summary_rec *s)
{
	memset(s, 0, sizeof(*s));
	s->ts_real = tr_real(t, tr_now(t));
	s->pod = &a->pod;
	s->key = a->key;
	for_each_part(p)
		if ((*p)->summary)
			(*p)->summary(t, s, a);
	s->findings = a->findings;
}

static bool pod_live(const struct tracker *t, const struct pod_agg *a)
{
	for_each_part(p)
		if ((*p)->pod_live && (*p)->pod_live(t, a))
			return true;
	return false;
}

void track_summaries(struct tracker *t, bool all)
{
	struct summary_rec s;
	const void *k;
	void *v;

	for (size_t i = 0; kmap_next(&t->aggs, &i, &k, &v);) {
		struct pod_agg *a = v;

		if (!all && !a->dirty && !pod_live(t, a))
			continue;
		summary_of(t, a, &s);
		t->sink.summary(&s, t->sink_arg);
		a->dirty = 0;
	}
}

int track_views(struct tracker *t, struct summary_rec **out)
{
	struct summary_rec *arr = calloc(t->aggs.len + 1, sizeof(*arr));
	const void *k;
	void *v;
	int n = 0;

	*out = NULL;
	if (!arr)
		return -1;
	for (size_t i = 0; kmap_next(&t->aggs, &i, &k, &v);)
		summary_of(t, v, &arr[n++]);
	*out = arr;
	return n;
}

void track_views_free(struct summary_rec *v, int n)
{
	(void)n;
	free(v);
}

/* p-th percentile (0..100) of a log2 histogram of microseconds, in ms: the upper
 * bound of the slot the rank falls in (within a factor of 2); -1 when empty. */
double tr_hist_pct_ms(const uint64_t *h, double p)
{
	uint64_t n = 0, rank, seen = 0;

	for (int i = 0; i < CS_HIST_SLOTS; i++)
		n += h[i];
	if (!n)
		return -1;
	rank = (uint64_t)(p / 100.0 * (double)n + 0.999999);
	if (!rank)
		rank = 1;
	for (int i = 0; i < CS_HIST_SLOTS; i++) {
		seen += h[i];
		if (seen >= rank)
			return i ? (double)(1ull << i) / 1000.0 : 0.001;
	}
	return (double)(1ull << (CS_HIST_SLOTS - 1)) / 1000.0;
}
