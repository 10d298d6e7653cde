// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The TCP part of the tracker: lifecycle edges (bpf/conn.bpf.c, or replay's
 * flows) become connection records and the pod's TCP counts; sockets in trouble
 * (CLOSE_WAIT, SYN retransmits) sit in a watch list for their timers
 * (close_wait_stuck, tcp_connect_timeout); refused connects and received resets
 * are folded findings. It keeps no state for a healthy connection.
 */
#include "track_priv.h"
#include "holders.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "output.h"
#include "procfd.h"
#include "u64map.h"
#include "util.h"

#define MAX_REMOTES 32  /* remotes counted per pod; the quietest makes room */
_Static_assert(MAX_REMOTES <= SUMMARY_ALL_REMOTES, "a summary can carry every remote");

/* A socket in trouble, watched for timers. */
struct watch {
	struct cs_event ev;    /* the last edge seen (endpoints, owner, cgroup) */
	uint64_t cw_since_ns;  /* CLOSE_WAIT entered (monotonic) */
	uint64_t connect_start_ns;
	bool in_cw, cw_reported, cw_estimated;
	bool from_map;         /* known from the kernel's cw_socks (track_cw_sockets) */
	uint64_t scan;         /* the last scan that saw it there */
	bool connecting, timeout_reported;
	bool preexisting;
	bool flagged;          /* its cgroup was flagged for stacks (--stacks auto) */
	struct sock_owner owner; /* first holder, found when it got stuck */
};

struct remote_agg {
	uint8_t family;
	uint8_t addr[16];
	uint16_t port;        /* 0: the remote is a client (many source ports) */
	uint64_t conns, refused, timeouts, resets;
};

/* A pod's TCP counts: the kernel's, summed over the pod's cgroups (live), or
 * counted from the edges (replay). */
struct tcp_pod {
	uint64_t opened, closed, closed_midway, refused, timeouts, resets, failed;
	uint64_t closed_by[5];           /* enum cs_close_cause */
	uint64_t bytes_in, bytes_out;
	uint64_t connect_us[CS_HIST_SLOTS];
	uint64_t connect_us_sum;
	int64_t snap_live;               /* counted active by the start-up snapshot, still open */
	/* CLOSE_WAIT gauge, refreshed by the tick */
	uint64_t cw_current, cw_stuck;
	double cw_max_age_s;
	struct remote_agg remotes[MAX_REMOTES];
	struct remote_agg kother;        /* live: the kernel's "other" entries, summed */
	int nremotes;
	uint64_t remote_evictions;
};

struct tcp_state {
	struct u64map watch;    /* cookie -> watch */
	struct u64map snap_est; /* cookies of pre-existing ESTABLISHED sockets counted active */
	/* Closes held back briefly: an abortive close sends its RST after CLOSE. */
	struct cs_event *pending;
	size_t npending, cap_pending;
	/* The RST of an abortive close finds its held close by cookie: a slot per
	 * value of the cookie's low bits holds 1 + the position of the last close
	 * held with them, counted from the first close ever held (pend_base is
	 * pending[0]'s). Cookies are handed out in sequence, so the closes held at
	 * once do not share a slot but by a rare chance, when a scan finds it. (A
	 * scan for every RST was quadratic: healthy closes and RSTs come through
	 * two rings, so a batch of closes is held before their RSTs are read, and
	 * trace spent 60% of its time there in a reset storm.) */
	uint64_t *pend_at;
	uint64_t pend_base;
	/* RSTs read before their close (value: the RST's time), for the close. */
	struct u64map early_rst;
	uint64_t cw_threshold_ns, connect_timeout_ns;
	uint64_t scan;          /* scans of cw_socks so far */
};

/* Established connections open now: those opened while watched, less those of
 * them that closed, and the older ones the snapshot found, still open. */
static int64_t active_of(const struct tcp_pod *a)
{
	return (int64_t)(a->opened - (a->closed - a->closed_midway)) + a->snap_live;
}

static struct tcp_state *S(const struct tracker *t)
{
	return tr_state(t, &tcp_part);
}

/* The pod's TCP counts; NULL for a cgroup outside the filters, or out of memory. */
static struct tcp_pod *P(struct cg_entry *c)
{
	return c->agg ? tr_pod_state(c->agg, &tcp_part, true) : NULL;
}

static void tcp_init(struct tracker *t, void *st)
{
	struct tcp_state *s = st;

	s->cw_threshold_ns = (uint64_t)(t->o->close_wait_threshold_s * NS_PER_SEC);
	s->connect_timeout_ns = (uint64_t)(t->o->connect_timeout_s * NS_PER_SEC);
}

static void tcp_free_all(struct tracker *t)
{
	struct tcp_state *s = S(t);
	uint64_t k;
	void *v;

	for (size_t i = 0; u64map_next(&s->watch, &i, &k, &v);)
		free(v);
	u64map_free(&s->watch);
	u64map_free(&s->snap_est);
	free(s->pend_at);
	u64map_free(&s->early_rst);
	free(s->pending);
}

static const char *outcome_of(const struct tracker *t, const struct cs_event *e, int side)
{
	if (e->flags & CS_F_WAS_EST)
		return "established";
	/* Replay: the capture ended while it was still connecting. */
	if ((e->flags & CS_F_OPEN) && !e->syn_retrans &&
	    tr_elapsed(e->ts_ns, e->start_ns) < S(t)->connect_timeout_ns)
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

static void remote_count(struct tcp_pod *a, const struct cs_event *e, int side,
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
		if (a->nremotes < MAX_REMOTES) {
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

static void fold_text(struct tracker *t, struct finding_rec *f, const struct cs_event *e,
		      int side, char *msg, size_t len)
{
	char who[640], remote[80];
	double win = t->o->finding_window_s, idle_s = e->idle_ms / 1000.0;
	bool idle_known = e->idle_ms != CS_IDLE_UNKNOWN;
	unsigned long long count = f->d.fold.count;

	tr_pod_text(f->pod, who, sizeof(who));
	tr_remote_text(e, side, remote, sizeof(remote));
	if (!strcmp(f->kind, "tcp_connect_refused")) {
		snprintf(msg, len,
			 "Connections from %s to %s were refused %llu time(s) in %.0fs (RST in "
			 "answer to SYN): nothing listens on that port, or the backend is down.",
			 who, remote, count, win);
		return;
	}
	/* peer_reset: a reset that came after the connection had heard nothing for
	 * a long time is an idle timeout's, a middlebox's or an expired conntrack
	 * entry's (the peer's own close of an idle connection is a FIN). Conntrack's
	 * own word, where it is watched over netlink: the flow's entry was destroyed
	 * while established (expired, or flushed) by the time of the reset. */
	int ct_gone = track_ct_expired(t, e);
	char idle_txt[32];

	if (idle_known)
		snprintf(idle_txt, sizeof(idle_txt), "%.1fs", idle_s);
	else
		snprintf(idle_txt, sizeof(idle_txt), "some time");

	f->has_cause = true;
	if (idle_known)
		tr_evidence_num(f, "idle_s", tr_secs3(idle_s));
	else
		tr_evidence_str(f, "idle_s", NULL);  /* not known (no jiffy length) */
	if (e->start_ns && e->ts_ns > e->start_ns)
		tr_evidence_num(f, "lifetime_s", tr_secs3((e->ts_ns - e->start_ns) / 1e9));
	else
		tr_evidence_str(f, "lifetime_s", NULL);
	tr_evidence_num(f, "threshold_s", t->o->idle_cut_s);
	tr_evidence_str(f, "conntrack_entry", ct_gone < 0 ? NULL : ct_gone ? "expired" : "kept");
	if (ct_gone > 0) {
		f->cause = "idle_cut";
		snprintf(msg, len,
			 "%s's connection(s) to %s were reset %llu time(s) in %.0fs; the last one's "
			 "conntrack entry was destroyed while established, after %s without "
			 "traffic (conntrack's nf_conntrack_tcp_timeout_established is shorter than "
			 "the connection stays idle, or the table was flushed), and its next packet "
			 "was answered with a reset. "
			 "Keep the connection alive below that timeout (gRPC keepalive Time, HTTP "
			 "client idle timeout, TCP keepalive), or raise the timeout.",
			 who, remote, count, win, idle_txt);
		return;
	}
	if (idle_known && idle_s >= t->o->idle_cut_s) {
		f->cause = "idle_cut";
		snprintf(msg, len,
			 "%s's connection(s) to %s were reset %llu time(s) in %.0fs, the last "
			 "after %.1fs without a byte or ACK received: an idle timeout cut it (a "
			 "load balancer, NAT or firewall in between, or a conntrack entry that "
			 "expired, answered with a reset). Keep the connection alive below that "
			 "timeout (gRPC keepalive Time, HTTP client idle timeout, TCP keepalive), "
			 "or raise the timeout.",
			 who, remote, count, win, idle_s);
		return;
	}
	snprintf(msg, len,
		 "%s %s reset %llu established connection(s) of %s in %.0fs: check that "
		 "peer's logs for aborts, idle timeouts or a proxy in between.",
		 side == CS_SIDE_CLIENT ? "The server" : "The client", remote, count, who, win);
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
	else if (pid && sh)
		/* Its connect's or listener's process, but no holder found: say why. */
		snprintf(proc, sizeof(proc), "%s (pid %u; no holder found: %s)", comm, pid,
			 sh->why);
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
			 "In the capture, %s (%s) had kept its side open for %.1fs after %s closed "
			 "its side (CLOSE_WAIT): the application had not closed this socket by "
			 "then; if it never does, find the code path that leaks it.",
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

static void connection_end(struct tracker *t, const struct cs_event *e,
			   const struct cg_entry *c, const struct watch *w, int side,
			   const char *outcome)
{
	bool pre = (e->flags & CS_F_MIDWAY) || (w && w->preexisting);
	uint64_t cw_since = e->close_wait_ns ? e->close_wait_ns : (w ? w->cw_since_ns : 0);
	bool client = side == CS_SIDE_CLIENT;
	struct conn_rec v = {
		.ts_real = tr_real(t, e->ts_ns),
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
		v.start_real = tr_real(t, e->start_ns);
		v.duration_ns = tr_elapsed(e->ts_ns, e->start_ns);
	}
	if (e->flags & CS_F_WAS_EST) {
		/* Established: the handshake time; unknown for sockets older than us,
		 * and where the kernel kept no state for the socket (on demand). */
		v.connect_known = !pre && (e->connect_us || e->start_ns);
		v.connect_ns = (uint64_t)e->connect_us * 1000;
	} else {
		/* Never connected: the time it took to fail. */
		v.connect_known = true;
		v.connect_ns = e->start_ns ? tr_elapsed(e->ts_ns, e->start_ns) : 0;
	}
	tr_connection_end(t, e, &v);
}

/* ---- events ---- */

static struct watch *watch_get(struct tracker *t, const struct cs_event *e, bool create)
{
	uint64_t key = e->cookie;
	struct u64map *m = &S(t)->watch;
	struct watch *w = u64map_get(m, key);

	if (w || !create)
		return w;
	w = calloc(1, sizeof(*w));
	if (!w || u64map_put(m, key, w)) {
		free(w);
		return NULL;
	}
	return w;
}

static void watch_drop(struct tracker *t, uint64_t cookie)
{
	free(u64map_del(&S(t)->watch, cookie));
}

static void on_close(struct tracker *t, const struct cs_event *e, struct cg_entry *c)
{
	struct tcp_state *s = S(t);
	struct watch *w = u64map_get(&s->watch, e->cookie);
	int side = tr_side_of(t, e);
	const char *outcome = outcome_of(t, e, side);
	bool reset = e->close_cause == CS_CLOSE_RST_IN || e->close_cause == CS_CLOSE_RST_OUT;
	struct tcp_pod *a = P(c);

	if (c->agg)
		c->agg->dirty++;
	if (a && (e->flags & CS_F_MIDWAY) && u64map_del(&s->snap_est, e->cookie))
		a->snap_live--;
	/* Live, the kernel counted it already (track_kcounts). */
	if (a && !t->kcounts) {
		if ((e->flags & CS_F_WAS_EST) && !(e->flags & CS_F_OPEN)) {
			a->closed++;
			if (e->flags & CS_F_MIDWAY)
				a->closed_midway++;
			a->closed_by[e->close_cause < 5 ? e->close_cause : 0]++;
			a->bytes_in += e->bytes_in;
			a->bytes_out += e->bytes_out;
		}
		if ((e->flags & CS_F_WAS_EST) && !(e->flags & CS_F_MIDWAY)) {
			a->connect_us[tr_hist_slot(e->connect_us)]++;
			a->connect_us_sum += e->connect_us;
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
	connection_end(t, e, c, w, side, outcome);

	if (!strcmp(outcome, "refused")) {
		tr_fold_hit(t, "tcp_connect_refused", e, side, fold_text);
	} else if (!strcmp(outcome, "timeout") && !(w && w->timeout_reported)) {
		connect_timeout_finding(t, e, c,
					e->start_ns ? (e->ts_ns - e->start_ns) / 1e9 : 0, e->ts_ns);
	} else if (e->close_cause == CS_CLOSE_RST_IN) {
		tr_fold_hit(t, "peer_reset", e, side, fold_text);
	}
	if (w)
		watch_drop(t, e->cookie);
}

void track_established(struct tracker *t, uint64_t cgroup_id, uint64_t established)
{
	struct cg_entry *c = tr_cgroup(t, cgroup_id);
	struct tcp_pod *a;
	uint64_t delta;

	if (!c || established <= c->established)
		return;
	delta = established - c->established;
	c->established = established;
	if (c->agg && (a = P(c))) {
		a->opened += delta;
		c->agg->dirty++;
	}
}

void track_set_kernel_counts(struct tracker *t)
{
	t->kcounts = true;
}

void track_kcounts(struct tracker *t, uint64_t cgroup_id, const struct cs_cg_counts *k)
{
	struct cg_entry *c = tr_cgroup(t, cgroup_id);
	struct tcp_pod *a;

	if (!c)
		return;
	/* Counters only grow, but a cgroup's entry may have been deleted and made
	 * again (track_cgroup_gone): then the last read is 0. Add what changed. */
	if (c->agg && (a = P(c)) && memcmp(&c->k, k, sizeof(*k))) {
#define D(f) (k->f - c->k.f)
		a->opened += D(opened);
		a->closed += D(closed);
		a->closed_midway += D(closed_midway);
		for (int i = 0; i < 5; i++)
			a->closed_by[i] += D(close_cause[i]);
		a->refused += D(refused);
		a->timeouts += D(timeouts);
		a->failed += D(failed);
		a->resets += D(resets);
		a->bytes_in += D(bytes_in);
		a->bytes_out += D(bytes_out);
		for (int i = 0; i < CS_HIST_SLOTS; i++)
			a->connect_us[i] += D(connect_us[i]);
		a->connect_us_sum += D(connect_us_sum);
#undef D
		tls_kcounts(c->agg, &c->k, k);
		c->agg->dirty++;
	}
	c->k = *k;
}

/* Live: a pod's remotes are the kernel's, rebuilt at each refresh. */
void track_kremotes_begin(struct tracker *t)
{
	const void *k;
	void *v;

	for (size_t i = 0; kmap_next(&t->aggs, &i, &k, &v);) {
		struct tcp_pod *a = tr_pod_state(v, &tcp_part, false);

		if (a) {
			a->nremotes = 0;
			a->remote_evictions = 0;
			memset(&a->kother, 0, sizeof(a->kother));
		}
	}
}

void track_kremote(struct tracker *t, const struct cs_remote_key *k,
		   const struct cs_remote_counts *rc)
{
	struct cg_entry *c = tr_cgroup(t, k->cgroup_id);
	struct tcp_pod *a;
	struct remote_agg *r = NULL;
	int i;

	if (!c || !c->agg || !(a = P(c)))
		return;
	if (!k->family) {
		/* The kernel's table was full: these went to the cgroup's "other". */
		a->remote_evictions++;
		a->kother.conns += rc->conns;
		a->kother.refused += rc->refused;
		a->kother.timeouts += rc->timeouts;
		a->kother.resets += rc->resets;
		return;
	}
	for (i = 0; i < a->nremotes; i++) {
		r = &a->remotes[i];
		if (r->port == k->port && r->family == k->family &&
		    !memcmp(r->addr, k->addr, sizeof(r->addr)))
			break;
	}
	if (i == a->nremotes) {
		if (a->nremotes == MAX_REMOTES) {
			/* Keep the busiest: the quietest kept makes room. */
			int min = 0;

			for (i = 1; i < a->nremotes; i++)
				if (a->remotes[i].conns < a->remotes[min].conns)
					min = i;
			a->remote_evictions++;
			if (a->remotes[min].conns >= rc->conns)
				return;
			r = &a->remotes[min];
		} else {
			r = &a->remotes[a->nremotes++];
		}
		memset(r, 0, sizeof(*r));
		r->family = (uint8_t)k->family;
		r->port = k->port;
		memcpy(r->addr, k->addr, sizeof(r->addr));
	}
	/* Several cgroups of one pod may share a remote: add them up. */
	r->conns += rc->conns;
	r->refused += rc->refused;
	r->timeouts += rc->timeouts;
	r->resets += rc->resets;
}

void track_cw_sockets(struct tracker *t, const struct cs_event *e, int n)
{
	struct tcp_state *s = S(t);
	uint64_t k;
	void *v;

	s->scan++;
	for (int i = 0; i < n; i++) {
		struct watch *w = u64map_get(&s->watch, e[i].cookie);

		/* New in CLOSE_WAIT, or its owner became known: an edge, as the
		 * kernel used to send it. */
		if (!w || !w->from_map || w->ev.pid != e[i].pid || w->ev.ino != e[i].ino)
			tr_edge(t, &e[i]);
		w = u64map_get(&s->watch, e[i].cookie);
		if (w) {
			w->from_map = true;
			w->scan = s->scan;
		}
	}
	/* Gone from the map: closed (a healthy close sends no edge), so no longer
	 * in CLOSE_WAIT. */
	uint64_t *gone = NULL;
	size_t ngone = 0, cap = 0;

	for (size_t i = 0; u64map_next(&s->watch, &i, &k, &v);) {
		struct watch *w = v;

		if (!w->from_map || w->scan == s->scan)
			continue;
		if (ngone == cap) {
			uint64_t *g = realloc(gone, (cap = cap ? cap * 2 : 64) * sizeof(*g));

			if (!g)
				break;
			gone = g;
		}
		gone[ngone++] = k;
	}
	for (size_t i = 0; i < ngone; i++)
		watch_drop(t, gone[i]);
	free(gone);
}

static void hold_close(struct tracker *t, const struct cs_event *e);
static void amend_rst_out(struct tracker *t, const struct cs_event *e);
static void rst_out_on(struct cs_event *p);

static void tcp_edge(struct tracker *t, const struct cs_event *e)
{
	struct cg_entry *c;
	struct watch *w;

	if (e->type == CS_EV_RST_OUT) {
		amend_rst_out(t, e);
		return;
	}
	if (!tr_port_match(t, e))
		return;
	c = tr_cgroup(t, e->cgroup_id);
	if (!c) {
		t->dropped++;  /* no memory for the cgroup's entry */
		return;
	}
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
#define PEND_SLOTS 65536 /* pend_at: 512 KiB, made at the first close held */

static void hold_close(struct tracker *t, const struct cs_event *e)
{
	struct tcp_state *s = S(t);

	if (s->npending == s->cap_pending) {
		size_t ncap = s->cap_pending ? s->cap_pending * 2 : 256;
		struct cs_event *n = realloc(s->pending, ncap * sizeof(*n));

		if (!n) {
			/* No room to wait: report it as it is. */
			struct cg_entry *c = tr_cgroup(t, e->cgroup_id);

			if (c)
				on_close(t, e, c);
			return;
		}
		s->pending = n;
		s->cap_pending = ncap;
	}
	s->pending[s->npending] = *e;
	if (s->early_rst.len && u64map_del(&s->early_rst, e->cookie))
		rst_out_on(&s->pending[s->npending]);
	if (!s->pend_at)
		s->pend_at = calloc(PEND_SLOTS, sizeof(*s->pend_at));
	if (s->pend_at)
		s->pend_at[e->cookie & (PEND_SLOTS - 1)] = s->pend_base + s->npending + 1;
	s->npending++;
}

static void rst_out_on(struct cs_event *p)
{
	p->flags |= CS_F_RST_OUT;
	if ((p->flags & CS_F_WAS_EST) && p->close_cause == CS_CLOSE_NONE)
		p->close_cause = CS_CLOSE_RST_OUT;
}

static void amend_rst_out(struct tracker *t, const struct cs_event *e)
{
	struct tcp_state *s = S(t);
	uint64_t at = s->pend_at ? s->pend_at[e->cookie & (PEND_SLOTS - 1)] : 0;

	if (at && at - 1 >= s->pend_base && at - 1 - s->pend_base < s->npending) {
		struct cs_event *p = &s->pending[at - 1 - s->pend_base];

		if (p->cookie == e->cookie) {
			rst_out_on(p);
			return;
		}
		/* The slot taken by another close held now (rare): a scan. */
		for (size_t i = s->npending; i-- > 0;) {
			if (s->pending[i].cookie == e->cookie) {
				rst_out_on(&s->pending[i]);
				return;
			}
		}
	}
	/* Its close is not in yet (the other ring), or was never sent (a socket
	 * not followed): kept for a while for the close. */
	u64map_put(&s->early_rst, e->cookie, (void *)(uintptr_t)(e->ts_ns | 1));
}

/* Report held closes older than `before` (monotonic ns); all with UINT64_MAX. */
static void release_closes(struct tracker *t, uint64_t before)
{
	struct tcp_state *s = S(t);
	size_t i;

	for (i = 0; i < s->npending && s->pending[i].ts_ns < before; i++) {
		struct cg_entry *c = tr_cgroup(t, s->pending[i].cgroup_id);

		if (c)
			on_close(t, &s->pending[i], c);
	}
	/* RSTs whose close never came within the hold (a socket not followed). */
	if (s->early_rst.len && before != UINT64_MAX) {
		uint64_t k;
		void *v;

		for (size_t j = 0; u64map_next(&s->early_rst, &j, &k, &v);)
			if ((uintptr_t)v < before)
				u64map_del(&s->early_rst, k);
	}
	if (!i)
		return;
	memmove(s->pending, s->pending + i, (s->npending - i) * sizeof(*s->pending));
	s->npending -= i;
	s->pend_base += i;
}

static void tcp_flush(struct tracker *t)
{
	release_closes(t, UINT64_MAX);
}

void track_snapshot(struct tracker *t, const struct snap_sock *s, int n)
{
	struct tcp_state *st = S(t);
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
		if (!tr_port_match(t, &e))
			continue;
		c = tr_cgroup(t, e.cgroup_id);
		if (!c || !c->match)
			continue;
		/* Counted active once; its close (a MIDWAY edge) takes it back. */
		if (P(c) && !u64map_get(&st->snap_est, e.cookie) &&
		    !u64map_put(&st->snap_est, e.cookie, (void *)1)) {
			P(c)->snap_live++;
			c->agg->dirty++;
		}
		if (s[i].state != CS_TCP_CLOSE_WAIT || u64map_get(&st->watch, e.cookie))
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

static void tcp_tick(struct tracker *t, uint64_t now)
{
	struct tcp_state *s = S(t);
	struct watch *stuck[256];
	uint64_t inos[256], cookies[256], k;
	int nstuck = 0;
	const void *fk;
	void *v;

	release_closes(t, now > HOLD_NS ? now - HOLD_NS : 0);

	/* Reset the gauges; the watch list is their truth. */
	for (size_t i = 0; kmap_next(&t->aggs, &i, &fk, &v);) {
		struct tcp_pod *a = tr_pod_state(v, &tcp_part, false);

		if (a) {
			a->cw_current = a->cw_stuck = 0;
			a->cw_max_age_s = 0;
		}
	}
	for (size_t i = 0; u64map_next(&s->watch, &i, &k, &v);) {
		struct watch *w = v;
		struct cg_entry *c = tr_cgroup(t, w->ev.cgroup_id);

		if (!c)
			continue;
		if (w->connecting && !w->timeout_reported && s->connect_timeout_ns &&
		    tr_elapsed(now, w->connect_start_ns) >= s->connect_timeout_ns) {
			w->timeout_reported = true;
			connect_timeout_finding(t, &w->ev, c, tr_elapsed(now, w->connect_start_ns) / 1e9, 0);
		}
		if (!w->in_cw)
			continue;
		double age = tr_elapsed(now, w->cw_since_ns) / 1e9;

		struct tcp_pod *a = P(c);

		if (a) {
			a->cw_current++;
			if (age > a->cw_max_age_s)
				a->cw_max_age_s = age;
			if (tr_elapsed(now, w->cw_since_ns) >= s->cw_threshold_ns)
				a->cw_stuck++;
		}
		/* Half way to stuck: the pod's next sockets get their stacks. */
		if (!w->flagged && t->flag_fn && tr_elapsed(now, w->cw_since_ns) >= s->cw_threshold_ns / 2) {
			w->flagged = true;
			t->flag_fn(t->holders_arg, w->ev.cgroup_id);
		}
		if (!w->cw_reported && tr_elapsed(now, w->cw_since_ns) >= s->cw_threshold_ns &&
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
}

/* Most troubled first, then busiest (the summary shows the first few). */
static int remote_cmp(const void *pa, const void *pb)
{
	const struct remote_agg *a = *(const struct remote_agg *const *)pa,
				*b = *(const struct remote_agg *const *)pb;
	uint64_t pa_ = a->refused + a->timeouts + a->resets, pb_ = b->refused + b->timeouts + b->resets;

	if (pa_ != pb_)
		return pa_ < pb_ ? 1 : -1;
	return a->conns < b->conns ? 1 : a->conns > b->conns ? -1 : 0;
}

static void remote_rec_of(struct remote_rec *r, const struct remote_agg *ra)
{
	r->ep.family = ra->family == AF_INET6 ? AF_INET6 : AF_INET;
	r->ep.addr = ra->addr;
	r->ep.port = ra->port;
	r->connections = ra->conns;
	r->refused = ra->refused;
	r->timeouts = ra->timeouts;
	r->resets = ra->resets;
}

/* The summary's tcp, close_wait and remotes members. */
static void tcp_summary(struct tracker *t, struct summary_rec *s, const struct pod_agg *pa)
{
	const struct tcp_pod *a = tr_pod_state_c(pa, &tcp_part);
	const struct remote_agg *sorted[MAX_REMOTES];
	int n;

	(void)t;
	if (!a)
		return;
	n = a->nremotes;
	s->tcp.opened = a->opened;
	s->tcp.closed = a->closed;
	s->tcp.active = active_of(a) > 0 ? (uint64_t)active_of(a) : 0;
	for (int i = 0; i < 5; i++)
		s->tcp.closed_by[i] = a->closed_by[i];
	s->tcp.bytes_in = a->bytes_in;
	s->tcp.bytes_out = a->bytes_out;
	s->tcp.connect_p50_ms = tr_hist_pct_ms(a->connect_us, 50);
	s->tcp.connect_p99_ms = tr_hist_pct_ms(a->connect_us, 99);
	memcpy(s->tcp.connect_hist, a->connect_us, sizeof(s->tcp.connect_hist));
	s->tcp.connect_sum_us = a->connect_us_sum;
	s->tcp.refused = a->refused;
	s->tcp.timeouts = a->timeouts;
	s->tcp.resets = a->resets;
	s->tcp.failed = a->failed;
	s->close_wait.current = a->cw_current;
	s->close_wait.stuck = a->cw_stuck;
	s->close_wait.max_age_s = (double)(int64_t)(a->cw_max_age_s * 10) / 10;
	for (int i = 0; i < n; i++)
		sorted[i] = &a->remotes[i];
	qsort(sorted, n, sizeof(sorted[0]), remote_cmp);
	for (int i = 0; i < n && i < SUMMARY_MAX_REMOTES; i++)
		remote_rec_of(&s->remotes[s->nremotes++], sorted[i]);
	s->remote_evictions = a->remote_evictions;
	for (int i = 0; i < n; i++)
		remote_rec_of(&s->all_remotes[s->nall_remotes++], &a->remotes[i]);
	remote_rec_of(&s->remotes_other, &a->kother);
}

/* Open connections and CLOSE_WAIT sockets: the pod's summary is due every interval. */
static bool tcp_pod_live(const struct tracker *t, const struct pod_agg *pa)
{
	const struct tcp_pod *a = tr_pod_state_c(pa, &tcp_part);

	(void)t;
	return a && (a->cw_current || active_of(a) > 0);
}

const struct track_part tcp_part = {
	.name = "tcp",
	.state_size = sizeof(struct tcp_state),
	.pod_size = sizeof(struct tcp_pod),
	.init = tcp_init,
	.edge = tcp_edge,
	.tick = tcp_tick,
	.flush = tcp_flush,
	.summary = tcp_summary,
	.pod_live = tcp_pod_live,
	.free_all = tcp_free_all,
};
