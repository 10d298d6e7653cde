// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "track_priv.h"
#include "holders.h"

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

/* A folded finding's identity: its kind, the pod's cgroup and the remote. */
struct fold_key {
	char kind[48];
	uint64_t cgroup_id;
	uint8_t daddr[16];
	uint16_t port;
};

static void read_ephemeral_range(struct tracker *t)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	unsigned lo = 32768, hi = 60999;

	if (f) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2 || lo > 65535 || hi > 65535) {
			lo = 32768;
			hi = 60999;
		}
		fclose(f);
	}
	t->eph_lo = lo;
	t->eph_hi = hi;
}

static uint64_t mono_clock(void *arg)
{
	(void)arg;
	return cs_mono_ns();
}

void track_set_clock(struct tracker *t, track_clock_fn now, void *arg)
{
	t->clock = now ? now : mono_clock;
	t->clock_arg = arg;
}

uint64_t tr_now(const struct tracker *t)
{
	return t->clock(t->clock_arg);
}

struct tracker *track_new(const struct cs_opts *o, struct pod_resolver *pods,
			  bool want_connections, const struct track_sink *sink,
			  void *sink_arg)
{
	struct tracker *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->o = o;
	t->pods = pods;
	t->want_conns = want_connections;
	t->sink = *sink;
	t->sink_arg = sink_arg;
	t->clock = mono_clock;
	t->cw_threshold_ns = (uint64_t)(o->close_wait_threshold_s * NS_PER_SEC);
	t->connect_timeout_ns = (uint64_t)(o->connect_timeout_s * NS_PER_SEC);
	t->fold_window_ns = (uint64_t)(o->finding_window_s * NS_PER_SEC);
	t->tls_timeout_ns = (uint64_t)(o->tls_timeout_s * NS_PER_SEC);
	t->h2_window_ns = (uint64_t)(o->h2_window_s * NS_PER_SEC);
	kmap_init(&t->aggs, sizeof(((struct pod_agg *)0)->key), NULL);
	kmap_init(&t->folds, sizeof(struct fold_key), NULL);
	for (const struct track_part *const *p = track_parts; *p; p++)
		if ((*p)->init)
			(*p)->init(t);
	read_ephemeral_range(t);
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
	if (!t)
		return;
	for (const struct track_part *const *p = track_parts; *p; p++)
		if ((*p)->free_all)
			(*p)->free_all(t);
	free_all(&t->cgroups);
	{
		const void *k;
		void *v;

		for (size_t i = 0; kmap_next(&t->aggs, &i, &k, &v);) {
			struct pod_agg *a = v;

			for (const struct track_part *const *p = track_parts; *p; p++)
				if ((*p)->agg_free)
					(*p)->agg_free(a);
		}
	}
	free_all_k(&t->aggs);
	free_all(&t->watch);
	free_all_k(&t->folds);
	u64map_free(&t->snap_est);
	free(t->pending);
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

static bool port_match(const struct tracker *t, const struct cs_event *e)
{
	return !t->o->port || e->sport == t->o->port || e->dport == t->o->port;
}

const char *tr_side_name(int side)
{
	return side == CS_SIDE_CLIENT ? "client" : "server";
}

static const char *outcome_of(const struct tracker *t, const struct cs_event *e, int side)
{
	if (e->flags & CS_F_WAS_EST)
		return "established";
	/* Replay: the capture ended while it was still connecting. */
	if ((e->flags & CS_F_OPEN) && !e->syn_retrans &&
	    tr_elapsed(e->ts_ns, e->start_ns) < t->connect_timeout_ns)
		return "connecting";
	if (side == CS_SIDE_CLIENT) {
		if (e->sk_err == ECONNREFUSED || (e->flags & CS_F_RST_IN))
			return "refused";
		if (e->sk_err == ETIMEDOUT || e->syn_retrans)
			return "timeout";
		return "failed";
	}
	return (e->flags & CS_F_RST_IN) ? "reset" : "failed";
}

static const char *close_name(uint8_t cause)
{
	switch (cause) {
	case CS_CLOSE_LOCAL_FIN: return "local_fin";
	case CS_CLOSE_PEER_FIN: return "peer_fin";
	case CS_CLOSE_RST_IN: return "rst_in";
	case CS_CLOSE_RST_OUT: return "rst_out";
	default: return "none";
	}
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

static void remote_count(struct pod_agg *a, const struct cs_event *e, int side,
			 const char *outcome, bool reset)
{
	uint16_t port = side == CS_SIDE_CLIENT ? e->dport : 0;
	struct remote_agg *r = NULL;
	int i;

	for (i = 0; i < a->nremotes; i++) {
		r = &a->remotes[i];
		if (r->port == port && r->family == e->family &&
		    !memcmp(r->addr, e->daddr, sizeof(r->addr)))
			break;
	}
	if (i == a->nremotes) {
		if (a->nremotes < TRACK_MAX_REMOTES) {
			r = &a->remotes[a->nremotes++];
		} else {
			/* Full: replace the quietest remote, and say so in the summary. */
			int min = 0;

			for (i = 1; i < a->nremotes; i++)
				if (a->remotes[i].conns < a->remotes[min].conns)
					min = i;
			r = &a->remotes[min];
			a->remote_evictions++;
		}
		memset(r, 0, sizeof(*r));
		r->family = e->family;
		r->port = port;
		memcpy(r->addr, e->daddr, sizeof(r->addr));
	}
	r->conns++;
	if (!strcmp(outcome, "refused"))
		r->refused++;
	else if (!strcmp(outcome, "timeout"))
		r->timeouts++;
	if (reset)
		r->resets++;
}

/* ---- findings ---- */

/* Stamped when it was seen: the edge's time, or now for timers (ts_mono 0). */
void tr_finding_init(struct tracker *t, struct finding_rec *f, const char *kind,
		     const char *severity, const struct cs_event *e, const struct cg_entry *c,
		     uint32_t pid, const char *comm, uint64_t ts_mono)
{
	int side = tr_side_of(t, e);

	memset(f, 0, sizeof(*f));
	f->ts_real = ts_mono ? cs_mono_to_real(ts_mono) : cs_real_ns();
	f->kind = kind;
	f->severity = severity;
	f->about = FINDING_SOCKET;
	f->pod = &c->pod;
	f->pid = pid;
	f->comm = comm;
	f->netns = e->netns;
	f->cookie = e->cookie;
	f->side = tr_side_name(side);
	finding_ends(f, e, side);
	ct_finding_nat(t, f, e);
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

static void emit_fold(struct tracker *t, struct fold *f, uint64_t count, uint64_t ts_mono)
{
	struct cg_entry *c = tr_cgroup(t, f->ev.cgroup_id);
	const struct cs_event *e = &f->ev;
	int side = tr_side_of(t, e);
	char who[640], remote[80], msg[768];
	double win = t->o->finding_window_s;
	struct finding_rec o;

	struct sock_owner own = { .pid = e->pid };

	if (!c)
		return;
	/* Accepted sockets that never read or wrote have no owner yet; the
	 * application usually still holds the descriptor when a RST comes in. */
	if (own.pid)
		memcpy(own.comm, e->comm, sizeof(own.comm));
	else if (e->ino && procfd_lookup(e->ino, &own, 1) != 1)
		own.pid = 0;
	tr_finding_init(t, &o, f->kind, "warning", e, c, own.pid, own.comm, ts_mono);
	o.detail = FD_FOLD;
	o.d.fold.count = count;
	o.d.fold.window_s = win;
	tr_pod_text(&c->pod, who, sizeof(who));
	tr_remote_text(e, side, remote, sizeof(remote));
	if (!strcmp(f->kind, "tcp_connect_refused"))
		snprintf(msg, sizeof(msg),
			 "Connections from %s to %s were refused %llu time(s) in %.0fs (RST in "
			 "answer to SYN): nothing listens on that port, or the backend is down.",
			 who, remote, (unsigned long long)count, win);
	else
		snprintf(msg, sizeof(msg),
			 "%s %s reset %llu established connection(s) of %s in %.0fs: check that "
			 "peer's logs for aborts, idle timeouts or a proxy in between.",
			 side == CS_SIDE_CLIENT ? "The server" : "The client", remote,
			 (unsigned long long)count, who, win);
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

/* First occurrence: a finding at once. Repeats within the window: counted,
 * and one finding with the count when the window ends (track_tick). */
static void fold_hit(struct tracker *t, const char *kind, const struct cs_event *e,
		     const struct cg_entry *c, int side)
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
	f->window_start_ns = now;
	if (kmap_put(&t->folds, &k, f)) {
		free(f);
		return;
	}
	(void)c;
	emit_fold(t, f, 1, e->ts_ns);
}

static void connect_timeout_finding(struct tracker *t, const struct cs_event *e,
				    const struct cg_entry *c, double elapsed_s, uint64_t ts_mono)
{
	char who[640], remote[80], msg[768];
	struct finding_rec o;

	tr_finding_init(t, &o, "tcp_connect_timeout", "error", e, c, e->pid, e->comm, ts_mono);
	o.detail = FD_CONNECT_TIMEOUT;
	o.d.connect_timeout.elapsed_s = tr_secs3(elapsed_s);
	o.d.connect_timeout.threshold_s = t->o->connect_timeout_s;
	o.d.connect_timeout.syn_retrans = e->syn_retrans;
	tr_pod_text(&c->pod, who, sizeof(who));
	tr_remote_text(e, CS_SIDE_CLIENT, remote, sizeof(remote));
	char proc[64];

	if (e->pid)
		snprintf(proc, sizeof(proc), "%s (pid %u)", e->comm, e->pid);
	else
		snprintf(proc, sizeof(proc), "A process");
	snprintf(msg, sizeof(msg),
		 "%s in %s has waited %.1fs to connect to %s after %u SYN retransmit(s) with "
		 "no answer: the destination is down or a firewall drops its SYNs.",
		 proc, who, elapsed_s, remote, e->syn_retrans);
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

/* "comm (pid 12)", "comm (pid 12) and 2 other processes: a (pid 3), b (pid 4)". */
static void holders_text(const struct sock_holders *sh, char *buf, size_t len)
{
	int shown = sh->nholders < HOLDERS_MAX ? sh->nholders : HOLDERS_MAX;
	size_t n;

	n = (size_t)snprintf(buf, len, "%s (pid %u)", sh->h[0].comm, sh->h[0].pid);
	if (sh->nholders > 1 && n < len)
		n += (size_t)snprintf(buf + n, len - n, " and %d other process%s:", sh->nholders - 1,
				      sh->nholders > 2 ? "es" : "");
	for (int i = 1; i < shown && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s %s (pid %u)", i > 1 ? "," : "",
				      sh->h[i].comm, sh->h[i].pid);
	if (shown < sh->nholders && n < len)
		snprintf(buf + n, len - n, ", ...");
}

static void close_wait_finding(struct tracker *t, struct watch *w, const struct cg_entry *c,
			       const struct sock_holders *sh, double age_s)
{
	const struct cs_event *e = &w->ev;
	bool named = sh && sh->nholders > 0;
	uint32_t pid = named ? sh->h[0].pid : e->pid;
	const char *comm = named ? sh->h[0].comm : e->comm;
	char who[640], proc[600], local[80], peer[80], ip[64], msg[2048], where[SYM_LEN + 64] = "";
	int fam = tr_family(e);
	struct finding_rec o;
	typeof(o.d.close_wait) *cw = &o.d.close_wait;

	_Static_assert(HOLDERS_MAX <= FINDING_MAX_HOLDERS, "a finding names every holder kept");
	_Static_assert(HOLDERS_MAX_FRAMES <= FINDING_MAX_FRAMES, "a finding shows the whole stack");
	tr_finding_init(t, &o, "close_wait_stuck", "warning", e, c, pid, comm, 0);
	o.detail = FD_CLOSE_WAIT;
	cw->age_s = tr_secs3(age_s);
	cw->threshold_s = t->o->close_wait_threshold_s;
	cw->preexisting = w->preexisting;
	cw->age_estimated = w->cw_estimated;
	if (!sh && t->replay) {
		/* The same fields as live, and why they are empty. */
		cw->has_holders = true;
		cw->holders_note = "a capture does not show which process held the socket";
		cw->stack_note = "a capture has no stacks";
	} else if (sh) {
		int shown = sh->nholders < HOLDERS_MAX ? sh->nholders : HOLDERS_MAX;

		cw->has_holders = true;
		for (int i = 0; i < shown; i++)
			cw->holders[i] = (struct finding_holder){ sh->h[i].pid, sh->h[i].fd,
								  sh->h[i].comm };
		cw->nholders = shown;
		cw->holders_total = sh->nholders;
		if (!named)
			cw->holders_note = sh->why;
		if (sh->nframes) {
			for (int i = 0; i < sh->nframes; i++)
				cw->stack[i] = sh->frames[i];
			cw->nstack = sh->nframes;
			cw->stack_origin = sh->origin ? sh->origin : "unknown";
			/* The innermost frame is the syscall wrapper; name the first
			 * named frame past it, where the application made the call. */
			for (int i = sh->nframes > 1 ? 1 : 0; i < sh->nframes; i++) {
				if (!strncmp(sh->frames[i], "0x", 2))
					continue;
				snprintf(where, sizeof(where), " The socket was made by %s() in %s.",
					 sh->origin ? sh->origin : "a call", sh->frames[i]);
				break;
			}
		} else {
			cw->stack_note = sh->stack_note;
		}
	}
	tr_pod_text(&c->pod, who, sizeof(who));
	if (named)
		holders_text(sh, proc, sizeof(proc));
	else if (pid)
		snprintf(proc, sizeof(proc), "%s (pid %u)", comm, pid);
	else if (sh)
		snprintf(proc, sizeof(proc), "No process (%s)", sh->why);
	else
		snprintf(proc, sizeof(proc), "A process that connscope could not name");
	out_ip(fam, e->saddr, ip, sizeof(ip));
	snprintf(local, sizeof(local), fam == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, e->sport);
	out_ip(fam, e->daddr, ip, sizeof(ip));
	snprintf(peer, sizeof(peer), fam == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, e->dport);
	if (t->replay)
		snprintf(msg, sizeof(msg),
			 "In the capture, %s (%s) kept its side open for %.1fs after %s closed "
			 "its side (CLOSE_WAIT): the application never closes this socket; find "
			 "the code path that leaks it.",
			 local, who, age_s, peer);
	else
		snprintf(msg, sizeof(msg),
			 "%s in %s %s %s in CLOSE_WAIT for %s%.1fs since %s closed its side: "
			 "the application never closes this socket; find the code path that leaks it.%s",
			 proc, who, named && sh->nholders > 1 ? "have held" : "has held", local,
			 w->cw_estimated ? "about " : "", age_s, peer, where);
	tr_message(&o, msg);
	tr_emit_finding(t, &o);
}

/* ---- connection records ---- */

static void connection_record(struct tracker *t, const struct cs_event *e,
			      const struct cg_entry *c, const struct watch *w, int side,
			      const char *outcome, const struct tls_conn *tc,
			      const struct h2_state *hs)
{
	bool pre = (e->flags & CS_F_MIDWAY) || (w && w->preexisting);
	uint64_t cw_since = e->close_wait_ns ? e->close_wait_ns : (w ? w->cw_since_ns : 0);
	bool client = side == CS_SIDE_CLIENT;
	struct conn_rec v = {
		.ts_real = cs_mono_to_real(e->ts_ns),
		.pod = &c->pod,
		.pid = e->pid,
		.comm = e->comm,
		.netns = e->netns,
		.cookie = e->cookie,
		.side = tr_side_name(side),
		.family = tr_family(e),
		.client_ip = client ? e->saddr : e->daddr,
		.server_ip = client ? e->daddr : e->saddr,
		.client_port = client ? e->sport : e->dport,
		.server_port = client ? e->dport : e->sport,
		.preexisting = pre,
		.outcome = outcome,
		.syn_retrans = e->syn_retrans,
		.close = close_name(e->close_cause),
		.close_wait_ns = cw_since ? tr_elapsed(e->ts_ns, cw_since) : 0,
		.bytes_in = e->bytes_in,
		.bytes_out = e->bytes_out,
		.retrans = e->retrans,
		.error = e->sk_err ? strerrorname_np(e->sk_err) : NULL,
	};

	if (!e->pid && w && w->owner.pid) {
		v.pid = w->owner.pid;
		v.comm = w->owner.comm;
	}
	if (t->replay) {
		int fi = TRACK_COOKIE_FILE(e->cookie);

		v.replay = true;
		v.open = e->flags & CS_F_OPEN;
		v.capture_file = fi >= 0 && fi < t->nfiles ? t->files[fi] : NULL;
		v.capture_packet = TRACK_COOKIE_PACKET(e->cookie);
	}
	if (e->start_ns && !pre) {
		v.start_real = cs_mono_to_real(e->start_ns);
		v.duration_ns = tr_elapsed(e->ts_ns, e->start_ns);
	}
	if (e->flags & CS_F_WAS_EST) {
		/* Established: the handshake time; unknown for sockets older than us. */
		v.connect_known = !pre;
		v.connect_ns = (uint64_t)e->connect_us * 1000;
	} else {
		/* Never connected: the time it took to fail. */
		v.connect_known = true;
		v.connect_ns = e->start_ns ? tr_elapsed(e->ts_ns, e->start_ns) : 0;
	}
	if (tc)
		tls_view(tc, &v);
	if (hs)
		h2_view(hs, &v);
	ct_view(t, e, &v);
	tr_emit_connection(t, &v);
}

/* ---- events ---- */

static struct watch *watch_get(struct tracker *t, const struct cs_event *e, bool create)
{
	uint64_t key = e->cookie;
	struct watch *w = u64map_get(&t->watch, key);

	if (w || !create)
		return w;
	w = calloc(1, sizeof(*w));
	if (!w || u64map_put(&t->watch, key, w)) {
		free(w);
		return NULL;
	}
	return w;
}

static void watch_drop(struct tracker *t, uint64_t cookie)
{
	free(u64map_del(&t->watch, cookie));
}

static void on_close(struct tracker *t, const struct cs_event *e, struct cg_entry *c)
{
	struct watch *w = u64map_get(&t->watch, e->cookie);
	int side = tr_side_of(t, e);
	const char *outcome = outcome_of(t, e, side);
	bool reset = e->close_cause == CS_CLOSE_RST_IN || e->close_cause == CS_CLOSE_RST_OUT;
	struct pod_agg *a = c->agg;

	if (a) {
		a->dirty++;
		if ((e->flags & CS_F_WAS_EST) && !(e->flags & CS_F_OPEN)) {
			bool counted = !(e->flags & CS_F_MIDWAY) ||
				       u64map_del(&t->snap_est, e->cookie);

			a->closed++;
			if (counted)
				a->active--;
		}
		if (!strcmp(outcome, "refused"))
			a->refused++;
		else if (!strcmp(outcome, "timeout"))
			a->timeouts++;
		else if (!strcmp(outcome, "failed") || !strcmp(outcome, "reset"))
			a->failed++;
		if (reset)
			a->resets++;
		remote_count(a, e, side, outcome, reset);
	}
	struct tls_conn *tc = tls_take(t, e->cookie);
	struct h2_state *hs = h2_take(t, e->cookie);

	if (tc)
		tls_close(t, tc, e);
	if (hs)
		h2_close(t, hs, e);
	if (t->want_conns)
		connection_record(t, e, c, w, side, outcome, tc, hs);
	tls_free(tc);
	free(hs);

	if (!strcmp(outcome, "refused")) {
		fold_hit(t, "tcp_connect_refused", e, c, side);
	} else if (!strcmp(outcome, "timeout") && !(w && w->timeout_reported)) {
		connect_timeout_finding(t, e, c,
					e->start_ns ? (e->ts_ns - e->start_ns) / 1e9 : 0, e->ts_ns);
	} else if (e->close_cause == CS_CLOSE_RST_IN) {
		fold_hit(t, "peer_reset", e, c, side);
	}
	if (w)
		watch_drop(t, e->cookie);
}

void track_established(struct tracker *t, uint64_t cgroup_id, uint64_t established)
{
	struct cg_entry *c = tr_cgroup(t, cgroup_id);
	uint64_t delta;

	if (!c || established <= c->established)
		return;
	delta = established - c->established;
	c->established = established;
	if (c->agg) {
		c->agg->opened += delta;
		c->agg->active += delta;
		c->agg->dirty++;
	}
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
	return true;
}

static void hold_close(struct tracker *t, const struct cs_event *e);
static void amend_rst_out(struct tracker *t, const struct cs_event *e);

void track_event(struct tracker *t, const struct cs_event *e)
{
	struct cg_entry *c;
	struct watch *w;

	t->events++;
	if (e->type == CS_EV_RST_OUT) {
		amend_rst_out(t, e);
		return;
	}
	if (!port_match(t, e))
		return;
	c = tr_cgroup(t, e->cgroup_id);
	if (!c) {
		t->dropped++;  /* no memory for the cgroup's entry */
		return;
	}
	if (c->pod.known)
		ct_learn_pod(t, e, &c->pod);
	if (!c->match)
		return;

	switch (e->type) {
	case CS_EV_ESTABLISHED:
		/* Counted through track_established; the edge only ends a watch. */
		if ((w = watch_get(t, e, false)) && !w->in_cw)
			watch_drop(t, e->cookie);
		break;
	case CS_EV_SYN_RETRANS:
		w = watch_get(t, e, true);
		if (w) {
			w->ev = *e;
			w->connecting = true;
			w->connect_start_ns = e->start_ns ? e->start_ns : e->ts_ns;
		}
		break;
	case CS_EV_CLOSE_WAIT: /* again when the owner becomes known: same timer */
		ct_socket_seen(t, e);
		w = watch_get(t, e, true);
		if (w) {
			w->ev = *e;
			w->connecting = false;
			w->in_cw = true;
			w->cw_since_ns = e->close_wait_ns;
			w->cw_estimated = false;
			w->preexisting = e->flags & CS_F_MIDWAY;
		}
		if (c->agg)
			c->agg->dirty++;
		break;
	case CS_EV_CLOSE:
		hold_close(t, e);
		break;
	}
}

/* How long a close waits for the RST of an abortive close (same call chain in
 * the kernel, so microseconds in practice). */
#define HOLD_NS (20 * 1000 * 1000ull)

static void hold_close(struct tracker *t, const struct cs_event *e)
{
	if (t->npending == t->cap_pending) {
		size_t ncap = t->cap_pending ? t->cap_pending * 2 : 256;
		struct cs_event *n = realloc(t->pending, ncap * sizeof(*n));

		if (!n) {
			/* No room to wait: report it as it is. */
			struct cg_entry *c = tr_cgroup(t, e->cgroup_id);

			if (c)
				on_close(t, e, c);
			return;
		}
		t->pending = n;
		t->cap_pending = ncap;
	}
	t->pending[t->npending++] = *e;
}

static void amend_rst_out(struct tracker *t, const struct cs_event *e)
{
	for (size_t i = t->npending; i-- > 0;) {
		struct cs_event *p = &t->pending[i];

		if (p->cookie != e->cookie)
			continue;
		p->flags |= CS_F_RST_OUT;
		if ((p->flags & CS_F_WAS_EST) && p->close_cause == CS_CLOSE_NONE)
			p->close_cause = CS_CLOSE_RST_OUT;
		return;
	}
}

/* Report held closes older than `before` (monotonic ns); all with UINT64_MAX. */
static void release_closes(struct tracker *t, uint64_t before)
{
	size_t i;

	for (i = 0; i < t->npending && t->pending[i].ts_ns < before; i++) {
		struct cg_entry *c = tr_cgroup(t, t->pending[i].cgroup_id);

		if (c)
			on_close(t, &t->pending[i], c);
	}
	if (!i)
		return;
	memmove(t->pending, t->pending + i, (t->npending - i) * sizeof(*t->pending));
	t->npending -= i;
}

void track_flush(struct tracker *t)
{
	const void *k;
	void *v;

	release_closes(t, UINT64_MAX);
	/* Repeats still folded in an open window are reported, not dropped. */
	for (size_t i = 0; kmap_next(&t->folds, &i, &k, &v);) {
		struct fold *f = v;

		if (f->count)
			emit_fold(t, f, f->count, 0);
		f->count = 0;
	}
}

void track_snapshot(struct tracker *t, const struct snap_sock *s, int n)
{
	uint64_t now = tr_now(t);

	for (int i = 0; i < n; i++) {
		struct cs_event e = {0};
		struct cg_entry *c;
		struct watch *w;

		if (s[i].state != CS_TCP_ESTABLISHED && s[i].state != CS_TCP_CLOSE_WAIT)
			continue;
		e.ts_ns = now;
		e.cookie = s[i].cookie;
		e.cgroup_id = s[i].cgroup_id;
		e.ino = s[i].ino;
		e.netns = s[i].netns;
		e.family = s[i].family;
		e.sport = s[i].sport;
		e.dport = s[i].dport;
		e.bytes_in = s[i].bytes_received;
		e.bytes_out = s[i].bytes_acked;
		e.flags = CS_F_MIDWAY | CS_F_WAS_EST;
		memcpy(e.saddr, s[i].saddr, sizeof(e.saddr));
		memcpy(e.daddr, s[i].daddr, sizeof(e.daddr));
		if (!port_match(t, &e))
			continue;
		c = tr_cgroup(t, e.cgroup_id);
		if (!c || !c->match)
			continue;
		/* Counted active once; its close (a MIDWAY edge) takes it back. */
		if (c->agg && !u64map_get(&t->snap_est, e.cookie) &&
		    !u64map_put(&t->snap_est, e.cookie, (void *)1)) {
			c->agg->active++;
			c->agg->dirty++;
		}
		if (s[i].state != CS_TCP_CLOSE_WAIT || u64map_get(&t->watch, e.cookie))
			continue;
		w = watch_get(t, &e, true);
		if (!w)
			continue;
		/* When did the peer's FIN come? Not recorded anywhere; the last ACK
		 * received is the FIN itself when the application sends nothing. */
		w->ev = e;
		w->in_cw = true;
		w->preexisting = true;
		w->cw_estimated = true;
		w->cw_since_ns = now - (uint64_t)s[i].last_ack_recv_ms * 1000000ull;
	}
}

void track_tick(struct tracker *t)
{
	uint64_t now = tr_now(t), k;
	struct watch *stuck[256];
	uint64_t inos[256], cookies[256];
	int nstuck = 0;
	const void *fk;
	void *v;

	release_closes(t, now > HOLD_NS ? now - HOLD_NS : 0);
	for (const struct track_part *const *p = track_parts; *p; p++)
		if ((*p)->tick)
			(*p)->tick(t, now);

	/* Reset the gauges; the watch list is their truth. */
	for (size_t i = 0; kmap_next(&t->aggs, &i, &fk, &v);) {
		struct pod_agg *a = v;

		a->cw_current = a->cw_stuck = 0;
		a->cw_max_age_s = 0;
	}
	for (size_t i = 0; u64map_next(&t->watch, &i, &k, &v);) {
		struct watch *w = v;
		struct cg_entry *c = tr_cgroup(t, w->ev.cgroup_id);

		if (!c)
			continue;
		if (w->connecting && !w->timeout_reported && t->connect_timeout_ns &&
		    tr_elapsed(now, w->connect_start_ns) >= t->connect_timeout_ns) {
			w->timeout_reported = true;
			connect_timeout_finding(t, &w->ev, c, tr_elapsed(now, w->connect_start_ns) / 1e9, 0);
		}
		if (!w->in_cw)
			continue;
		double age = tr_elapsed(now, w->cw_since_ns) / 1e9;

		if (c->agg) {
			c->agg->cw_current++;
			if (age > c->agg->cw_max_age_s)
				c->agg->cw_max_age_s = age;
			if (tr_elapsed(now, w->cw_since_ns) >= t->cw_threshold_ns)
				c->agg->cw_stuck++;
		}
		/* Half way to stuck: the pod's next sockets get their stacks. */
		if (!w->flagged && t->flag_fn && tr_elapsed(now, w->cw_since_ns) >= t->cw_threshold_ns / 2) {
			w->flagged = true;
			t->flag_fn(t->holders_arg, w->ev.cgroup_id);
		}
		if (!w->cw_reported && tr_elapsed(now, w->cw_since_ns) >= t->cw_threshold_ns &&
		    nstuck < (int)(sizeof(stuck) / sizeof(stuck[0]))) {
			stuck[nstuck] = w;
			inos[nstuck] = w->ev.ino;
			cookies[nstuck] = w->ev.cookie;
			nstuck++;
		}
	}
	/* Name the holders of the newly stuck sockets in one pass. */
	if (nstuck) {
		struct sock_holders *sh = NULL;
		struct sock_owner owners[256];

		if (t->holders_fn && (sh = calloc((size_t)nstuck, sizeof(*sh))))
			t->holders_fn(t->holders_arg, cookies, inos, nstuck, sh);
		else if (!t->replay)
			procfd_lookup_many(inos, owners, nstuck);
		for (int i = 0; i < nstuck; i++) {
			struct watch *w = stuck[i];
			struct cg_entry *c = tr_cgroup(t, w->ev.cgroup_id);

			w->cw_reported = true;
			if (sh && sh[i].nholders) {
				w->owner.pid = sh[i].h[0].pid;
				w->owner.fd = sh[i].h[0].fd;
				memcpy(w->owner.comm, sh[i].h[0].comm, sizeof(w->owner.comm));
			} else if (!sh && !t->replay && inos[i]) {
				w->owner = owners[i];
			}
			if (c) {
				if (sh) {
					close_wait_finding(t, w, c, &sh[i], tr_elapsed(now, w->cw_since_ns) / 1e9);
				} else {
					struct sock_holders one = { 0 };

					if (w->owner.pid) {
						one.nholders = 1;
						one.h[0].pid = w->owner.pid;
						one.h[0].fd = w->owner.fd;
						memcpy(one.h[0].comm, w->owner.comm, sizeof(one.h[0].comm));
					}
					close_wait_finding(t, w, c, t->replay ? NULL : w->owner.pid ? &one : NULL,
							   tr_elapsed(now, w->cw_since_ns) / 1e9);
				}
			}
		}
		free(sh);
	}
	/* Folded findings whose window ended. */
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

static int remote_cmp(const void *pa, const void *pb)
{
	const struct remote_agg *a = pa, *b = pb;
	uint64_t pa_ = a->refused + a->timeouts + a->resets, pb_ = b->refused + b->timeouts + b->resets;

	if (pa_ != pb_)
		return pa_ < pb_ ? 1 : -1;
	return a->conns < b->conns ? 1 : a->conns > b->conns ? -1 : 0;
}

static void summary_record(struct tracker *t, struct pod_agg *a)
{
	struct remote_agg sorted[TRACK_MAX_REMOTES];
	int n = a->nremotes;
	struct summary_rec s;

	memset(&s, 0, sizeof(s));
	s.ts_real = cs_real_ns();
	s.pod = &a->pod;
	s.tcp.opened = a->opened;
	s.tcp.closed = a->closed;
	s.tcp.active = a->active > 0 ? (uint64_t)a->active : 0;
	s.tcp.refused = a->refused;
	s.tcp.timeouts = a->timeouts;
	s.tcp.resets = a->resets;
	s.tcp.failed = a->failed;
	s.close_wait.current = a->cw_current;
	s.close_wait.stuck = a->cw_stuck;
	s.close_wait.max_age_s = (double)(int64_t)(a->cw_max_age_s * 10) / 10;
	for (const struct track_part *const *p = track_parts; *p; p++)
		if ((*p)->summary)
			(*p)->summary(t, &s, a);
	s.findings = a->findings;
	memcpy(sorted, a->remotes, sizeof(sorted[0]) * n);
	qsort(sorted, n, sizeof(sorted[0]), remote_cmp);
	for (int i = 0; i < n && i < SUMMARY_MAX_REMOTES; i++) {
		typeof(s.remotes[0]) *r = &s.remotes[s.nremotes++];

		r->ep.family = sorted[i].family == AF_INET6 ? AF_INET6 : AF_INET;
		r->ep.addr = sorted[i].addr;
		r->ep.port = sorted[i].port;
		r->connections = sorted[i].conns;
		r->refused = sorted[i].refused;
		r->timeouts = sorted[i].timeouts;
		r->resets = sorted[i].resets;
	}
	s.remote_evictions = a->remote_evictions;
	t->sink.summary(&s, t->sink_arg);
}

void track_summaries(struct tracker *t, bool all)
{
	const void *k;
	void *v;

	for (size_t i = 0; kmap_next(&t->aggs, &i, &k, &v);) {
		struct pod_agg *a = v;

		if (!all && !a->dirty && !a->cw_current && a->active <= 0)
			continue;
		summary_record(t, a);
		a->dirty = 0;
	}
}

int track_pods(struct tracker *t, struct pod_agg ***out)
{
	struct pod_agg **arr = calloc(t->aggs.len + 1, sizeof(*arr));
	const void *k;
	void *v;
	int n = 0;

	if (!arr)
		return -1;
	for (size_t i = 0; kmap_next(&t->aggs, &i, &k, &v);)
		arr[n++] = v;
	*out = arr;
	return n;
}
