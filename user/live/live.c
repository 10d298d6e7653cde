// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "live.h"
#include "replay.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <sys/epoll.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>
#include "conn.h"
#include "conn.skel.h"
#include "tls.skel.h"
#include "tls_events.h"
#include "h2_events.h"
#include "ctwatch.h"
#include "bpfinfo.h"
#include "h2pods.h"
#include "h2u.h"
#include "holders.h"
#include "listeners.h"
#include "loader.h"
#include "privs.h"
#include "progfb.h"
#include "sigend.h"
#include "metrics.h"
#include "output.h"
#include "pods.h"
#include "snapshot.h"
#include "top.h"
#include "track.h"
#include "util.h"

#define TICK_MS 100
#define RESCAN_NS 1000000000ull  /* look for new TLS processes every second */
#define CW_SCAN_NS 250000000ull  /* read the sockets in CLOSE_WAIT four times a second */
#define OUT_QUEUE_BYTES (8u << 20)  /* records waiting for stdout; past it, dropped */
#define MS 1000000ull

static double cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 +
	       ru.ru_stime.tv_usec / 1e3;
}

static const char *mode_name(enum cs_attach m)
{
	return m == ATTACH_RAW_TP ? "raw_tp" : "tp_btf";
}

struct live {
	const struct cs_opts *o;
	struct loader L;
	struct tracker *t;
	struct ring_buffer *rb;
	struct h2u *h2u;       /* TLS library uprobes (HTTP/2 in TLS); NULL if unavailable */
	struct h2pods *h2p;    /* --h2-plaintext PODS or auto: the pods probed */
	struct pid_list h2pids; /* their processes, at the last rescan */
	bool h2_resync;        /* a pod was flagged: probe it at the next turn */
	struct ctwatch *ct;    /* conntrack: NAT, forwarded flows, table pressure */
	struct holders *hold;  /* who holds stuck sockets, and their stacks */
	struct listeners *lst; /* the owner of an accepted socket: its listener's */
	uint64_t start_ns;
	struct metrics_server *metrics; /* /metrics, served from its own thread */
	struct expo *expo;     /* ... and what its exposition keeps between snapshots */
	uint64_t next_publish, next_links;
	struct bpfinfo_sum bpf; /* the programs' links and run time, every LINKS_NS */
	double start_real_s;
	uint64_t unread;       /* records left unhandled at the end (past_drain) */
};

/* The tool's own counters, summed over every program that can drop: the stats
 * record, /metrics and top all read them here, so a name means one thing. */
static void self_counters(struct live *lv, struct stats_rec *sc)
{
	sc->events = loader_counter(&lv->L, CS_CNT_EVENTS);
	sc->ringbuf_full = loader_counter(&lv->L, CS_CNT_LOST) + loader_tls_counter(&lv->L, 1) +
			   (lv->h2u ? h2u_counter(lv->h2u, H2U_CNT_LOST) : 0);
	sc->missed_runs = loader_prog_misses(&lv->L);
	sc->rescued_runs = loader_rescued(&lv->L);
	sc->lost = sc->ringbuf_full + sc->missed_runs;
	sc->map_full = loader_counter(&lv->L, CS_CNT_MAP_FULL) + loader_tls_counter(&lv->L, 2) +
		       (lv->h2u ? h2u_counter(lv->h2u, H2U_CNT_MAP_FULL) : 0);
	sc->child_races = loader_counter(&lv->L, CS_CNT_CHILD_RACE);
	sc->sampled_out = loader_counter(&lv->L, CS_CNT_SAMPLED_OUT);
	sc->events += loader_counter(&lv->L, CS_CNT_CONN_EVENTS);
	sc->map_full += loader_counter(&lv->L, CS_CNT_CW_FULL) +
			loader_counter(&lv->L, CS_CNT_REMOTE_FULL);
	sc->parser_desync = loader_tls_counter(&lv->L, 3) + loader_tls_counter(&lv->L, 4) +
			    (lv->h2u ? h2u_counter(lv->h2u, H2U_CNT_DESYNC) : 0);
}

static const char *h2p_name(const struct live *lv)
{
	static const char *const names[] = { "off", "all", "pods", "auto" };

	if (lv->o->h2_plaintext == H2P_OFF)
		return "off";
	return lv->h2u ? names[lv->o->h2_plaintext] : "unavailable";
}

/* --h2-plaintext PODS or auto: what is probed now. */
static void h2_probe_stats(const struct live *lv, struct stats_rec *s)
{
	unsigned procs, links, over;
	size_t n = h2pods_count(lv->h2p);

	if (!lv->h2p)
		return;
	h2u_probe_counts(lv->h2u, &procs, &links, &over);
	s->h2_probes.on = true;
	s->h2_probes.pods = n;
	s->h2_probes.processes = procs;
	s->h2_probes.links = links;
	s->h2_probes.over_cap = over;
	for (size_t i = 0; i < n && s->h2_probes.nnames < 16; i++)
		s->h2_probes.names[s->h2_probes.nnames++] = h2pods_label(lv->h2p, i);
}

/* Probes on the processes of the pods asked for (PODS), or of those a finding
 * flagged in time (auto); off the rest. Once a second, and at once after a flag. */
static void h2_probe_sync(struct live *lv)
{
	h2pods_pids(lv->h2p, &lv->h2pids);
	h2u_sync(lv->h2u, lv->h2pids.pids, lv->h2pids.n);
	lv->h2_resync = false;
}

static void stats_record(struct live *lv, const char *phase)
{
	struct stats_rec s = {
		.ts_real = cs_real_ns(),
		.phase = phase,
		.cpu_ms = (double)(int64_t)cpu_ms(),
		.bpf_ms = loader_bpf_runtime_ns(&lv->L) / 1000000,
		.consumed = lv->t ? track_events(lv->t) : 0,
		.attach = mode_name(lv->L.mode),
		.socket_state = loader_lean_on(&lv->L) ? "on_demand" : "every_socket",
		.h2_plaintext = h2p_name(lv),
		.tls_cgroup = lv->L.tls ? lv->L.tls_cgroup : NULL,
		.tls_handshakes = !lv->L.tls ? NULL : lv->L.tls->rodata->quiet ? "problems" : "all",
		.tls_events = loader_tls_counter(&lv->L, 0),
		.unread = lv->unread,
		.ct.watcher = ctwatch_describe(lv->ct),
		.ct.evictions = lv->t ? track_ct_evictions(lv->t) : 0,
		.stacks.mode = holders_mode_name((enum hs_stack_mode)lv->o->stacks),
		.holders = holders_describe(lv->hold),
		.uptime_s = (double)(int64_t)((cs_mono_ns() - lv->start_ns) / 1000000) / 1000,
	};

	self_counters(lv, &s);
	h2_probe_stats(lv, &s);
	out_dropped(&s);
	ctwatch_counters(lv->ct, &s.ct.events, &s.ct.lost, &s.ct.map_full, &s.ct.map_evictions);
	ctwatch_nat_gets(lv->ct, &s.ct.nat_gets, &s.ct.nat_gets_skipped);
	holders_counters(lv->hold, &s.stacks.captured, &s.stacks.dropped);
	out_stats(&s);
}

/*
 * After a signal the run has a second to end, with its end record. A backlog that
 * the event loop cannot work through in DRAIN_NS (a trace of a reset storm leaves
 * hundreds of thousands of records in the rings) is counted, not handled: the
 * end record says how many (stats.unread).
 */
#define DRAIN_NS (300 * MS)

static bool past_drain(struct live *lv)
{
	uint64_t at = sigend_when_ns();

	if (!at || cs_mono_ns() < at + DRAIN_NS)
		return false;
	lv->unread++;
	return true;
}

/* A server's socket whose owner the kernel did not see (the accept()ing process
 * does nothing the lifecycle programs watch): its listener's. */
static bool listener_owned(struct live *lv, struct cs_event *e)
{
	return !e->pid && e->side == CS_SIDE_SERVER &&
	       listeners_owner(lv->lst, e->netns, e->sport, &e->pid, e->comm);
}

static int on_event(void *ctx, void *data, size_t size)
{
	struct live *lv = ctx;
	const struct cs_event *e = data;
	struct cs_event own;

	if (size < sizeof(struct cs_event) || past_drain(lv))
		return 0;
	if (!e->pid && e->side == CS_SIDE_SERVER) {
		own = *e;  /* the ring's copy is read-only */
		if (listener_owned(lv, &own))
			e = &own;
	}
	track_event(lv->t, e);
	return 0;
}

static int on_tls_event(void *ctx, void *data, size_t size)
{
	struct live *lv = ctx;

	if (size < sizeof(struct tls_event) || past_drain(lv))
		return 0;
	track_tls_event(lv->t, data);
	return 0;
}

static int on_h2_event(void *ctx, void *data, size_t size)
{
	struct live *lv = ctx;

	if (size < sizeof(struct h2_event) || past_drain(lv))
		return 0;
	track_h2_event(lv->t, data);
	return 0;
}

static void on_holders(void *arg, const uint64_t *cookies, const uint64_t *inos, int n,
		       struct sock_holders *out)
{
	struct live *lv = arg;

	holders_lookup(lv->hold, cookies, inos, n, out);
}

static void on_flag(void *arg, uint64_t cgroup_id)
{
	struct live *lv = arg;

	holders_flag_cgroup(lv->hold, cgroup_id);
}

/* --h2-plaintext auto: an HTTP/2 finding about a pod puts its processes under the
 * probes for a while (or keeps them there). */
static void h2_finding(struct live *lv, const struct finding_rec *f)
{
	if (!lv->h2p || f->about != FINDING_SOCKET || !h2pods_flag(lv->h2p, f->kind, f->pod))
		return;
	lv->h2_resync = true;
	cs_warn("HTTP/2 inside TLS: probing the processes of pod %s for %g s (%s)",
		h2pods_label(lv->h2p, h2pods_count(lv->h2p) - 1), lv->o->h2_plaintext_for_s,
		f->kind);
}

static void print_finding(const struct finding_rec *f, void *arg)
{
	struct live *lv = arg;

	h2_finding(lv, f);
	expo_finding(lv->expo, f);
	out_finding(f);
}

static void print_connection(const struct conn_rec *c, void *arg)
{
	(void)arg;
	out_connection(c);
}

static void print_summary(const struct summary_rec *s, void *arg)
{
	(void)arg;
	out_summary(s);
}

static const struct track_sink sink_print = { print_finding, print_connection,
						     print_summary };

/* top shows findings in its panel, and reads the pods' aggregates for the rest. */
static void top_finding(const struct finding_rec *f, void *arg)
{
	h2_finding(arg, f);
	top_note_finding(f);
}

static void top_connection(const struct conn_rec *c, void *arg)
{
	(void)c;
	(void)arg;
}

static void top_summary(const struct summary_rec *s, void *arg)
{
	(void)s;
	(void)arg;
}

static const struct track_sink sink_top = { top_finding, top_connection, top_summary };

#define CG_GC_NS (30 * 1000000000ull)

struct cg_walk {
	struct tracker *t;
	bool gc;
};

static bool on_cg_count(const void *key, const void *counts, void *arg)
{
	struct cg_walk *w = arg;
	uint64_t cgid = *(const uint64_t *)key;

	track_kcounts(w->t, cgid, counts);
	return w->gc && track_cgroup_gone(w->t, cgid);
}

static bool on_remote(const void *key, const void *counts, void *arg)
{
	struct cg_walk *w = arg;
	const struct cs_remote_key *k = key;

	if (w->gc && track_cgroup_gone(w->t, k->cgroup_id))
		return true;
	track_kremote(w->t, k, counts);
	return false;
}

/* Bring the kernel's per-cgroup and per-remote counts into the per-pod
 * aggregates. Every 30 s, drop the entries of cgroups that were removed, so pod
 * churn cannot fill the maps over the weeks a DaemonSet runs. */
static void refresh_counts(struct live *lv)
{
	static uint64_t last_gc;
	struct cg_walk w = { .t = lv->t };
	uint64_t now = cs_mono_ns();

	if (!lv->L.skel)  /* start-up ended by a signal */
		return;
	if (now - last_gc >= CG_GC_NS) {
		w.gc = true;
		last_gc = now;
	}
	loader_for_each_cg_count(&lv->L, on_cg_count, &w);
	track_kremotes_begin(lv->t);
	loader_for_each_remote(&lv->L, on_remote, &w);
}

/* The sockets in CLOSE_WAIT, as the kernel keeps them, for their timers. */
static void scan_close_wait(struct live *lv)
{
	struct cs_event *e;
	int n = loader_cw_socks(&lv->L, &e);

	for (int i = 0; i < n; i++)
		listener_owned(lv, &e[i]);
	if (n >= 0)
		track_cw_sockets(lv->t, e, n);
	free(e);
}

static uint64_t rss_bytes(void)
{
	unsigned long long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%llu %llu", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* At start and then once a second: a new /metrics snapshot, and what /healthz
 * says. The server's thread answers scrapes from it; no client socket is
 * touched here. Every LINKS_NS, the links are checked: one detached (a cgroup
 * link, by `bpftool link detach`) fails /healthz. */
#define LINKS_NS (2 * 1000000000ull)
static void publish_metrics(struct live *lv)
{
	struct metrics_self self = {0};
	struct stats_rec sc = {0};
	uint64_t now = cs_mono_ns();
	char why[192];

	if (!lv->metrics || now < lv->next_publish)
		return;
	lv->next_publish = now + 1000000000ull;
	if (now >= lv->next_links) {
		lv->next_links = now + LINKS_NS;
		bpfinfo_sum(&lv->bpf);
		if (lv->bpf.detached)
			snprintf(why, sizeof(why), "%u BPF link%s detached, the first %s: restart "
				 "connscope", lv->bpf.detached, lv->bpf.detached > 1 ? "s" : "",
				 lv->bpf.detached_what);
		metrics_set_problem(lv->metrics, lv->bpf.detached ? why : NULL);
	}
	refresh_counts(lv);
	self_counters(lv, &sc);
	out_dropped(&sc);
	self = (struct metrics_self){
		.events = sc.events,
		.lost = sc.lost,
		.map_full = sc.map_full,
		.parser_desync = sc.parser_desync,
		.sampled_out = sc.sampled_out,
		.cpu_ms = cpu_ms(),
		.output_dropped = { sc.output_dropped.connection, sc.output_dropped.finding,
				    sc.output_dropped.summary, sc.output_dropped.stats },
		.attach = mode_name(lv->L.mode),
		.links_attached = lv->bpf.links - lv->bpf.detached,
		.links_detached = lv->bpf.detached,
		.bpf_run_ns = lv->bpf.run_ns,
		.bpf_runs = lv->bpf.runs,
		.rss_bytes = rss_bytes(),
		.start_time_s = lv->start_real_s,
	};
	ctwatch_counters(lv->ct, &self.ct_events, &self.ct_lost, &sc.ct.map_full,
			 &sc.ct.map_evictions);
	self.has_ct_table = track_ct_table(lv->t, &self.ct_entries, &self.ct_limit,
					   &self.ct_drops, &self.ct_insert_failed,
					   &self.ct_early_drops);
	metrics_publish(lv->metrics, lv->expo, lv->t, &self);
}

static void render_top(struct live *lv, bool final)
{
	struct stats_rec sc = {0};
	struct top_stats st;

	self_counters(lv, &sc);
	st = (struct top_stats){
		.events = sc.events,
		.lost = sc.lost,
		.map_full = sc.map_full,
		.cpu_ms = cpu_ms(),
		.attach = mode_name(lv->L.mode),
		.elapsed_s = (cs_mono_ns() - lv->start_ns) / 1e9,
	};
	refresh_counts(lv);
	top_render(lv->t, &st, lv->o->interval_s, final);
}

static void take_snapshot(struct live *lv)
{
	struct snap_sock *socks = NULL;
	int n = snapshot_tcp(&socks);

	if (n < 0) {
		cs_warn("sockets that existed before start are not known (sock_diag failed)");
		return;
	}
	track_snapshot(lv->t, socks, n);
	if (lv->L.lean) {
		uint64_t *cookies = malloc((size_t)(n ? n : 1) * sizeof(*cookies));

		for (int i = 0; cookies && i < n; i++)
			cookies[i] = socks[i].cookie;
		if (cookies)
			loader_preexisting(&lv->L, cookies, n);
		free(cookies);
	}
	free(socks);
}

/* The parts that load after the lifecycle programs, in parallel. */
struct part_load {
	struct live *lv;
	const struct cs_opts *o;
	const char *cg;
	int tls_rc;
	char h2u_why[256];
	bool h2u_holds;     /* PODS, auto: probed sockets held in sk_info_fd */
	int sk_info_fd;     /* the lifecycle programs' socket storage */
};

static void *load_tls(void *arg)
{
	struct part_load *pl = arg;

	/* Only problems cross: a complete handshake stays in the kernel. A TLS
	 * socket the probes follow needs its close in user space (its HTTP/2 ends
	 * there): all keeps every handshake's socket held for that; PODS and auto
	 * hold the sockets their probes bind, where they can (h2u_holds_closes). */
	pl->lv->L.tls_quiet = pl->lv->L.problems_only &&
			      (pl->o->h2_plaintext == H2P_OFF || pl->h2u_holds);
	pl->lv->L.tls_ring_bytes = pl->o->tls_ringbuf_bytes;
	pl->tls_rc = loader_tls_open(&pl->lv->L, pl->cg);
	return NULL;
}

/* The tracker's way to the kernel's handshakes in progress (quiet TLS). */
static int hello_get(void *L, uint64_t cookie, struct tls_hello *out)
{
	return loader_tls_hello(L, cookie, out);
}

static int hello_del(void *L, uint64_t cookie)
{
	return loader_tls_hello_del(L, cookie);
}

static int hello_mark(void *L, uint64_t cookie, struct tls_hello *h, uint8_t flags)
{
	return loader_tls_hello_mark(L, cookie, h, flags);
}

static int hello_next(void *L, const uint64_t *prev, uint64_t *next)
{
	return loader_tls_hello_next(L, prev, next);
}

static int hello_done(void *L, uint64_t cookie, struct tls_done *out)
{
	return loader_tls_done(L, cookie, out);
}

static void *load_h2u(void *arg)
{
	struct part_load *pl = arg;

	/* Off by default: a uprobe is a trap on every TLS call of every process
	 * that loads the library (--h2-plaintext all asks for it); PODS and auto
	 * attach per process, where the kernel traps that process alone. */
	if (pl->o->h2_plaintext == H2P_OFF)
		return NULL;
	pl->lv->h2u = h2u_open(pl->o->h2_plaintext != H2P_ALL, pl->h2u_holds ? pl->sk_info_fd : -1,
			       pl->lv->L.lean, pl->h2u_why, sizeof(pl->h2u_why));
	return NULL;
}

static void *load_holders(void *arg)
{
	struct part_load *pl = arg;

	pl->lv->hold = holders_open((enum hs_stack_mode)pl->o->stacks,
				    pl->lv->L.mode == ATTACH_RAW_TP);
	return NULL;
}

static void *load_ct(void *arg)
{
	struct part_load *pl = arg;

	pl->lv->ct = ctwatch_open(pl->o, pl->lv->t);
	return NULL;
}

static void load_parts(struct part_load *pl)
{
	void *(*const jobs[])(void *) = { load_tls, load_h2u, load_holders, load_ct };
	pthread_t tid[sizeof(jobs) / sizeof(jobs[0])];
	bool started[sizeof(jobs) / sizeof(jobs[0])];

	for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++)
		started[i] = !pthread_create(&tid[i], NULL, jobs[i], pl);
	/* A thread that could not start: its part loads here, in turn. */
	for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		else
			jobs[i](pl);
	}
}

static int epoll_add(int efd, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events };

	return epoll_ctl(efd, EPOLL_CTL_ADD, fd, &ev);
}

int live_run(const struct cs_opts *o)
{
	struct live lv = { .o = o, .L.stats_fd = -1 };
	struct pod_resolver *pods = NULL;
	bool is_top = o->cmd == CMD_TOP;
	uint64_t next_interval, deadline = 0, now, next_rescan = 0, next_cw_scan = 0, until;
	int rc = 1, err;
	struct epoll_event ev;
	int wait_fd = -1;

	sigend_install();
	signal(SIGPIPE, SIG_IGN);
	cs_clock_init();
	lv.start_ns = cs_mono_ns();
	if (loader_preflight())
		return 1;

	pods = pods_new(NULL, o->pods_dir);
	if (!pods)
		return 1;
	out_init_live(o->fmt, o->cmd == CMD_TRACE,
		      o->output_queue_mib ? (size_t)o->output_queue_mib << 20 : OUT_QUEUE_BYTES);
	lv.t = track_new(o, pods, !is_top, is_top ? &sink_top : &sink_print, &lv);
	if (!lv.t) {
		cs_fail("start", "out of memory");
		goto out;
	}
	track_set_kernel_counts(lv.t);
	lv.start_real_s = (double)cs_real_ns() / 1e9;
	if (o->metrics_addr && !(lv.expo = expo_new(o->metrics_remotes))) {
		cs_fail("serve metrics", "out of memory");
		goto out;
	}
	if (o->metrics_addr && !(lv.metrics = metrics_start(metrics_listen(o->metrics_addr), NULL)))
		goto out;
	if (sigend_stop || loader_open(&lv.L, o))
		goto signalled;
	if (lv.L.mode == ATTACH_RAW_TP && o->attach == ATTACH_AUTO)
		cs_warn("using raw_tp fallback: %s", lv.L.fallback_why);
	lv.rb = ring_buffer__new(bpf_map__fd(lv.L.skel->maps.events), on_event, &lv, NULL);
	if (!lv.rb || ring_buffer__add(lv.rb, bpf_map__fd(lv.L.skel->maps.conn_events), on_event,
				       &lv)) {
		cs_fail("open the ring buffer", "%s", strerror(errno));
		goto out;
	}
	/* The other parts load at once, each in a thread of its own (their
	 * objects are independent, and most of their time is the verifier's and
	 * the kernel's): start-up takes the slowest part's time, not their sum. */
	{
		struct part_load pl = { .lv = &lv, .o = o,
					.cg = o->cgroup ? o->cgroup : pods_cgroup2_root(pods),
					.sk_info_fd = bpf_map__fd(lv.L.skel->maps.sk_info_storage) };

		/* Per-process probes mark the sockets they bind in the lifecycle
		 * programs' storage (tp_btf, no --port) through the socket
		 * tracepoints: then the TLS programs may stay quiet. */
		pl.h2u_holds = (o->h2_plaintext == H2P_PODS || o->h2_plaintext == H2P_AUTO) &&
			       lv.L.mode == ATTACH_TP_BTF && !lv.L.skel->rodata->filter_port &&
			       h2u_kernel_binds();
		load_parts(&pl);
		if (pl.h2u_holds && lv.h2u && !h2u_holds_closes(lv.h2u) && lv.L.tls &&
		    lv.L.tls->rodata->quiet)
			cs_warn("HTTP/2 inside TLS: the probes' sockets cannot be marked, so the "
				"close of a healthy connection is not seen: its HTTP/2 is counted "
				"as open");
		/* TLS: packet programs at the cgroup2 root (every pod of the node),
		 * or where --cgroup says. Without them the TCP view still stands. */
		if (!pl.tls_rc) {
			struct track_tls_kernel k = { &lv.L, hello_get, hello_del, hello_mark,
						      hello_next, hello_done };

			track_set_tls_kernel(lv.t, lv.L.tls_kcounts, lv.L.tls->rodata->quiet, &k);
		}
		if (pl.tls_rc)
			cs_warn("TLS handshakes are not observed: %s", lv.L.tls_note);
		else if (ring_buffer__add(lv.rb, bpf_map__fd(lv.L.tls->maps.tls_events), on_tls_event, &lv) ||
			 ring_buffer__add(lv.rb, bpf_map__fd(lv.L.tls->maps.h2_events), on_h2_event, &lv))
			cs_warn("TLS handshakes and h2c are not observed: cannot read their ring buffers");
		/* HTTP/2 inside TLS: uprobes on the TLS libraries of every process
		 * (and of those that start later, found by a rescan every second). */
		if (o->h2_plaintext != H2P_OFF && !lv.h2u)
			cs_warn("HTTP/2 inside TLS is not observed: %s", pl.h2u_why);
		else if (lv.h2u && h2u_add_ring(lv.h2u, lv.rb, on_h2_event, &lv))
			cs_warn("HTTP/2 inside TLS is not observed: cannot read its ring buffer");
		else if (lv.h2u && o->h2_plaintext != H2P_ALL) {
			lv.h2p = h2pods_new(pods, o->h2_plaintext == H2P_PODS ? o->h2_pods : NULL,
					    o->h2_plaintext_for_s);
			if (lv.h2p)
				h2_probe_sync(&lv);  /* the named pods' processes, before start */
		}
		/* Holders of stuck sockets, and the stacks of the calls that made them. */
		if (lv.hold)
			track_set_holders(lv.t, on_holders, on_flag, &lv);
		/* Conntrack: which backend a Service connection reached, forwarded
		 * flows, and the table's pressure. */
		if (lv.ct && o->conntrack != CT_OFF && !strncmp(ctwatch_describe(lv.ct), "NOT", 3))
			cs_warn("conntrack is %s", ctwatch_describe(lv.ct));
	}
	if (sigend_stop)  /* a signal during start-up: end now, with the end record */
		goto end;
	/* Attached first, then the snapshot: nothing falls between the two. */
	if (sigend_stop)
		goto end;
	if (!o->no_snapshot)
		take_snapshot(&lv);
	lv.lst = listeners_new(bpf_map__fd(lv.L.skel->maps.listeners));
	publish_metrics(&lv);  /* before the start record: who saw it gets no 503 */
	if (!is_top) {
		stats_record(&lv, "start");
		out_flush();
	}

	now = cs_mono_ns();
	next_interval = o->interval_s > 0 ? now + (uint64_t)(o->interval_s * 1e9) : 0;
	if (o->duration_s > 0)
		deadline = now + (uint64_t)(o->duration_s * 1e9);
	if (is_top)
		render_top(&lv, false);

	/* One wait for every producer: the ring buffers, and conntrack's own (a
	 * backlog there must wake us too, or its ring fills between ticks).
	 * Conntrack's is edge-triggered: its ring reads ready while it holds a
	 * record, so level-triggered it would wake us for every few records of
	 * a steady flow; its producer wakes us past a backlog, the tick does the
	 * rest. */
	wait_fd = epoll_create1(EPOLL_CLOEXEC);
	if (wait_fd < 0 || epoll_add(wait_fd, ring_buffer__epoll_fd(lv.rb), EPOLLIN) ||
	    (ctwatch_fd(lv.ct) >= 0 && epoll_add(wait_fd, ctwatch_fd(lv.ct), EPOLLIN | EPOLLET))) {
		cs_fail("set up the wait for the ring buffers", "%s", strerror(errno));
		goto out;
	}
	while (!sigend_stop) {
		/* Producers only wake us past a backlog: wait for that or the
		 * tick, then drain conntrack first (a connection's record takes its
		 * NAT from what conntrack said), then everything else. */
		if (epoll_wait(wait_fd, &ev, 1, TICK_MS) < 0 && errno != EINTR) {
			cs_fail("wait for the ring buffers", "%s", strerror(errno));
			goto out;
		}
		ctwatch_poll(lv.ct);
		err = ring_buffer__consume(lv.rb);
		if (err < 0 && err != -EINTR) {
			cs_fail("read the ring buffer", "%s", strerror(-err));
			goto out;
		}
		now = cs_mono_ns();
		if (now >= next_cw_scan) {
			scan_close_wait(&lv);
			next_cw_scan = now + CW_SCAN_NS;
		}
		track_tick(lv.t);
		holders_tick(lv.hold);
		publish_metrics(&lv);
		metrics_heartbeat(lv.metrics);
		now = cs_mono_ns();
		/* New processes: their TLS libraries and Go binaries get probes. */
		if (lv.h2u && (now >= next_rescan || lv.h2_resync)) {
			if (lv.h2p)
				h2_probe_sync(&lv);
			h2u_rescan(lv.h2u);
			next_rescan = now + RESCAN_NS;
		}
		if (next_interval && now >= next_interval) {
			next_interval += (uint64_t)(o->interval_s * 1e9);
			if (next_interval < now)
				next_interval = now + (uint64_t)(o->interval_s * 1e9);
			if (is_top) {
				render_top(&lv, false);
			} else {
				refresh_counts(&lv);
				track_summaries(lv.t, false);
				stats_record(&lv, "interval");
			}
		}
		if (!is_top)
			out_flush();
		if (out_failed()) {
			/* The reader went away (a closed pipe): nothing more to say. */
			rc = 0;
			goto out;
		}
		if (deadline && now >= deadline)
			break;
	}
end:
	/* Final flush: what is still in the ring, then the totals. */
	if (lv.rb)
		ring_buffer__consume(lv.rb);
	if (lv.L.skel)
		scan_close_wait(&lv);
	track_flush(lv.t);
	track_tick(lv.t);
	if (is_top) {
		render_top(&lv, true);
	} else {
		if (o->interval_s > 0 || o->cmd == CMD_DAEMON) {
			refresh_counts(&lv);
			track_summaries(lv.t, true);
		}
		stats_record(&lv, "end");
	}
	rc = 0;
out:
	/* After a signal, stdout gets what it takes within 500 ms and the guard's
	 * margin; otherwise as long as it keeps taking. */
	now = cs_mono_ns();
	until = sigend_when_ns() ? now + 500 * MS : UINT64_MAX;
	if (sigend_when_ns() && sigend_when_ns() + 800 * MS < until)
		until = sigend_when_ns() + 800 * MS;
	out_close(until, 1000 * MS, &sigend_stop, 500 * MS);
	sigend_done(rc);
	metrics_stop(lv.metrics);
	expo_free(lv.expo);
	if (sigend_when_ns()) {
		/* Ended by a signal: everything is said; the teardown must not hold the
		 * exit past the second (sigend_exit). */
		sigend_exit(rc);
	}
	if (wait_fd >= 0)
		close(wait_fd);
	ctwatch_close(lv.ct);
	holders_close(lv.hold);
	listeners_free(lv.lst);
	ring_buffer__free(lv.rb);
	h2u_close(lv.h2u);
	h2pods_free(lv.h2p);
	free(lv.h2pids.pids);
	loader_close(&lv.L);
	track_free(lv.t);
	pods_free(pods);
	return rc;
signalled:
	/* Start-up stopped before the programs were loaded: the end record all the same. */
	if (sigend_stop)
		goto end;
	goto out;
}

/* `connscope check`: what --h2-plaintext, as given, would probe. */
static void check_h2_mode(const struct cs_opts *o)
{
	struct pod_resolver *pr;
	struct pid_list l = { 0 };
	struct h2pods *hp;

	switch (o->h2_plaintext) {
	case H2P_OFF:
		printf("  --h2-plaintext:  off (the default): nothing is probed; all would probe "
		       "every process above, NS/POD,... or auto only pods' processes\n");
		return;
	case H2P_ALL:
		printf("  --h2-plaintext:  all: every process that maps these files takes a trap "
		       "per TLS call\n");
		return;
	case H2P_AUTO:
		printf("  --h2-plaintext:  auto: nothing probed at start; a pod an h2_reuse_churn "
		       "or h2_goaway finding names has its processes probed for %g s "
		       "(--h2-plaintext-for; again from each new finding), at most %d pods and "
		       "%d links; no other process takes a trap\n", o->h2_plaintext_for_s,
		       H2PODS_MAX, H2U_MAX_LINKS);
		return;
	case H2P_PODS:
		break;
	}
	pr = pods_new(NULL, o->pods_dir);
	hp = h2pods_new(pr, o->h2_pods, 0);
	h2pods_pids(hp, &l);
	printf("  --h2-plaintext:  %s: %zu pods found now (", o->h2_pods, h2pods_count(hp));
	for (size_t i = 0; i < h2pods_count(hp); i++)
		printf("%s%s", i ? ", " : "", h2pods_label(hp, i));
	printf("), %zu processes in them: probes on those that use libssl.so.3 or Go's "
	       "crypto/tls, and on those that start later, each attached for its pid: no "
	       "other process takes a trap; at most %d links\n", l.n, H2U_MAX_LINKS);
	free(l.pids);
	h2pods_free(hp);
	pods_free(pr);
}

/* "yes", the kernel's no, or that it cannot be asked without the privileges. */
static const char *map_probe(enum bpf_map_type type, const char *no)
{
	if (!loader_may_bpf())
		return "unknown: making a BPF map is not permitted (see privileges)";
	return libbpf_probe_bpf_map_type(type, NULL) == 1 ? "yes" : no;
}

int check_run(const struct cs_opts *o)
{
	char why[256], desc[512];
	struct h2u *hu;
	struct holders *ho;
	struct ctwatch *cw;
	struct loader L;
	struct utsname u;
	struct pod_resolver *pods;
	double load_ms[5] = { 0 };
	uint64_t t0;
	int rc = 0;
	bool ok;

	uname(&u);
	printf("kernel:           %s %s\n", u.release, u.machine);
	ok = !access("/sys/kernel/btf/vmlinux", R_OK);
	printf("BTF:              %s\n", ok ? "yes (/sys/kernel/btf/vmlinux)" : "NO: CO-RE programs cannot load");
	privs_report(stdout);
	printf("ring buffer:      %s\n", map_probe(BPF_MAP_TYPE_RINGBUF, "no (kernel < 5.8)"));
	printf("socket storage:   %s\n", map_probe(BPF_MAP_TYPE_SK_STORAGE, "no"));
	pods = pods_new(NULL, o->pods_dir);
	printf("cgroup2:          %s%s%s%s\n", pods ? pods_cgroup2_root(pods) : "NOT FOUND",
	       pods ? " (" : "", pods ? pods_cgroup2_how() : "", pods ? ")" : "");
	printf("pods dir:         %s%s\n", o->pods_dir ? o->pods_dir : "/var/log/pods",
	       access(o->pods_dir ? o->pods_dir : "/var/log/pods", R_OK) ? " (absent: pods shown by uid/cgroup)" : "");
	pods_free(pods);
	if (loader_preflight())
		return 1;
	t0 = cs_mono_ns();
	if (loader_open(&L, o)) {
		printf("attach:           FAILED (see above)\n");
		return 1;
	}
	load_ms[0] = (cs_mono_ns() - t0) / 1e6;
	printf("attach type:      %s%s%s\n", mode_name(L.mode),
	       L.mode == ATTACH_RAW_TP ? ", fallback because: " : " (preferred)",
	       L.mode == ATTACH_RAW_TP ? L.fallback_why : "");
	printf("state store:      %s\n", L.mode == ATTACH_RAW_TP ?
	       "bounded hash keyed by socket (raw_tp cannot use socket storage); overflow counted as map_full" :
	       "BPF socket storage (dies with the socket)");
	printf("skipped runs:     %d of %d hooks rescued (a second program runs what the kernel "
	       "skipped of the first, nested on its CPU; stats.rescued_runs)%s%s%s\n",
	       loader_rescue_hooks(&L), LOADER_NRESCUE, L.rescue_note[0] ? "; " : "", L.rescue_note,
	       o->rescue_off ? "; switched off by CONNSCOPE_RESCUE=0" : "");
	printf("%-22s %-8s %-8s %s\n", "TRACEPOINT", "KERNEL", "ATTACHED", "PURPOSE / NOTE");
	for (int i = 0; i < LOADER_NHOOKS; i++) {
		const struct hook_status *h = &L.hooks[i];

		printf("%-22s %-8s %-8s %s%s%s\n", h->tracepoint, h->in_btf ? "yes" : "no",
		       h->variant ? h->variant : "no", h->purpose, h->note[0] ? "; " : "", h->note);
		if (h->required && !h->variant)
			rc = 1;
	}
	printf("pre-start sockets: sock_diag snapshot in every network namespace\n");
	{
		struct pod_resolver *pr = pods_new(NULL, o->pods_dir);
		const char *cg = o->cgroup ? o->cgroup : pr ? pods_cgroup2_root(pr) : "/sys/fs/cgroup";

		t0 = cs_mono_ns();
		ok = !loader_tls_open(&L, cg);
		load_ms[1] = (cs_mono_ns() - t0) / 1e6;
		if (ok)
			printf("TLS, h2c (wire):   cgroup_skb ingress+egress attached at %s\n", cg);
		else
			printf("TLS, h2c (wire):   NOT observed: %s\n", L.tls_note);
		pods_free(pr);
	}
	/* Each part stays loaded to the end, so that -v can list every program. */
	t0 = cs_mono_ns();
	hu = h2u_open(o->h2_plaintext == H2P_PODS || o->h2_plaintext == H2P_AUTO, -1, false, why,
		      sizeof(why));
	load_ms[2] = (cs_mono_ns() - t0) / 1e6;
	if (hu) {
		h2u_describe(hu, desc, sizeof(desc));
		printf("HTTP/2 in TLS:     %s\n", desc);
		check_h2_mode(o);
	} else {
		printf("HTTP/2 in TLS:     NOT observed: %s\n", why);
	}
	t0 = cs_mono_ns();
	ho = holders_open((enum hs_stack_mode)o->stacks, L.mode == ATTACH_RAW_TP);
	load_ms[3] = (cs_mono_ns() - t0) / 1e6;
	printf("socket holders:    %s\n", holders_describe(ho));
	printf("stacks:            %s\n", holders_stacks_describe(ho));
	t0 = cs_mono_ns();
	cw = ctwatch_open(o, NULL);
	load_ms[4] = (cs_mono_ns() - t0) / 1e6;
	printf("conntrack:         %s\n", ctwatch_describe(cw));
	replay_describe(desc, sizeof(desc));
	printf("replay:            %s\n", desc);
	printf("load time (ms):    lifecycle %.0f, TLS and h2c %.0f, HTTP/2 in TLS %.0f, "
	       "holders and stacks %.0f, conntrack %.0f (live runs start writing after the "
	       "lifecycle's)\n", load_ms[0], load_ms[1], load_ms[2], load_ms[3], load_ms[4]);
	printf("programs off:      ");
	fflush(stdout);
	if (progfb_count())
		printf("%d (this kernel lacks their hook, its verifier refused them, or "
		       "CONNSCOPE_PROGS_OFF named them)\n", progfb_count());
	else
		printf("none: every program of every part loaded\n");
	progfb_print(stdout);
	if (o->verbose) {
		printf("\nInstructions the verifier processed per program (budget %u):\n",
		       BPF_VERIFIER_BUDGET);
		fflush(stdout);
		bpfinfo_print_verified(stdout);
	}
	ctwatch_close(cw);
	holders_close(ho);
	h2u_close(hu);
	loader_close(&L);
	return rc;
}
