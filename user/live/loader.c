// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "loader.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "conn.h"
#include "conn.skel.h"
#include "tls.skel.h"
#include "tls_events.h"
#include "percpu.h"
#include "progfb.h"
#include "util.h"



/* The kernel's jiffy in microseconds: the coarse clocks tick once a jiffy, and
 * say so as their resolution. 0 if that does not look like a jiffy (HZ 100..1000). */
static uint32_t jiffy_us(void)
{
	struct timespec r;

	if (clock_getres(CLOCK_MONOTONIC_COARSE, &r) || r.tv_sec || r.tv_nsec < 1000000 ||
	    r.tv_nsec > 10000000)
		return 0;
	return (uint32_t)(r.tv_nsec / 1000);
}
static bool verbose;
static __thread char last_msg[512];  /* per thread: the parts load in parallel */

/* Warnings are kept (the last one explains a failure; progfb learns from them
 * which program the kernel refused), with -v or without; -v also prints all. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char *msg = NULL;
	int n;

	if (level == LIBBPF_DEBUG) {
		if (verbose)
			vfprintf(stderr, fmt, ap);
		return 0;
	}
	n = vasprintf(&msg, fmt, ap);
	if (n < 0)
		return 0;
	if (verbose)
		fputs(msg, stderr);
	progfb_note_libbpf(msg);
	snprintf(last_msg, sizeof(last_msg), "%s", msg);
	last_msg[strcspn(last_msg, "\n")] = 0;
	free(msg);
	return n;
}

void loader_set_verbose(bool v)
{
	verbose = v;
	libbpf_set_print(libbpf_print);
}

const char *loader_last_libbpf_msg(void)
{
	return last_msg[0] ? last_msg : "no detail from libbpf";
}

static bool has_cap(int cap)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = {};

	if (syscall(SYS_capget, &hdr, data))
		return false;
	return data[cap / 32].effective & (1u << (cap % 32));
}

bool loader_may_bpf(void)
{
	return has_cap(CAP_SYS_ADMIN) || (has_cap(CAP_BPF) && has_cap(CAP_PERFMON));
}

int loader_preflight(void)
{
	if (!loader_may_bpf()) {
		cs_fail("load BPF programs",
			"not permitted: CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, are missing "
			"from the effective set (run as root, or grant the capabilities of "
			"deploy/daemonset.yaml; `connscope check` lists what each is for)");
		return -1;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		cs_fail("find kernel BTF",
			"/sys/kernel/btf/vmlinux is missing: this kernel was built without "
			"CONFIG_DEBUG_INFO_BTF, which connscope needs");
		return -1;
	}
	return 0;
}

/* The hooks, in the order of struct loader.hooks. */
static const struct {
	const char *tp;
	const char *purpose;
	bool required;
} hook_defs[LOADER_NHOOKS] = {
	{ "inet_sock_set_state", "every TCP state change", true },
	{ "tcp_receive_reset", "resets received (rst_in, refused)", false },
	{ "tcp_send_reset", "resets sent (rst_out)", false },
	{ "tcp_retransmit_skb", "SYN retransmits (connect timeouts)", false },
};

static struct bpf_program *prog_of(struct conn_bpf *s, int i, bool btf)
{
	struct bpf_program *btf_progs[LOADER_NHOOKS] = {
		s->progs.cs_set_state_btf, s->progs.cs_rst_in_btf, s->progs.cs_rst_out_btf,
		s->progs.cs_retrans_btf,
	};
	struct bpf_program *raw_progs[LOADER_NHOOKS] = {
		s->progs.cs_set_state_raw, s->progs.cs_rst_in_raw, s->progs.cs_rst_out_raw,
		s->progs.cs_retrans_raw,
	};

	return btf ? btf_progs[i] : raw_progs[i];
}

/* The rescue program of hook i (the first LOADER_NRESCUE hooks have one): it
 * runs what the kernel skipped of the hook's program (conn.bpf.c). */
static struct bpf_program *rescue_of(struct conn_bpf *s, int i, bool btf)
{
	struct bpf_program *btf_progs[LOADER_NRESCUE] = {
		s->progs.cs_set_state_rescue_btf, s->progs.cs_rst_in_rescue_btf,
		s->progs.cs_rst_out_rescue_btf, s->progs.cs_retrans_rescue_btf,
	};
	struct bpf_program *raw_progs[LOADER_NRESCUE] = {
		s->progs.cs_set_state_rescue_raw, s->progs.cs_rst_in_rescue_raw,
		s->progs.cs_rst_out_rescue_raw, s->progs.cs_retrans_rescue_raw,
	};

	return btf ? btf_progs[i] : raw_progs[i];
}

static void detach_all(struct loader *L)
{
	for (int i = 0; i < LOADER_NRESCUE; i++) {
		bpf_link__destroy(L->rescue_links[i]);
		L->rescue_links[i] = NULL;
	}
	for (int i = 0; i < LOADER_NHOOKS; i++) {
		bpf_link__destroy(L->links[i]);
		L->links[i] = NULL;
	}
}

/* The state-change programs are the lifecycle; the others each add one thing. */
static const struct progfb_role conn_roles[] = {
	{ "cs_set_state_btf", true, "", "" },
	{ "cs_set_state_raw", true, "", "" },
	{ "cs_rst_in_btf", false, "", "resets received (rst_in, refused)" },
	{ "cs_rst_in_raw", false, "", "resets received (rst_in, refused)" },
	{ "cs_rst_out_btf", false, "", "resets sent (rst_out)" },
	{ "cs_rst_out_raw", false, "", "resets sent (rst_out)" },
	{ "cs_retrans_btf", false, "", "SYN retransmits (connect timeouts)" },
	{ "cs_retrans_raw", false, "", "SYN retransmits (connect timeouts)" },
	/* Without them, a run the kernel skips is a missed run (stats.missed_runs). */
	{ "cs_set_state_rescue_btf", false, "", "runs the kernel skipped are lost, not rescued" },
	{ "cs_set_state_rescue_raw", false, "", "runs the kernel skipped are lost, not rescued" },
	{ "cs_rst_in_rescue_btf", false, "", "runs the kernel skipped are lost, not rescued" },
	{ "cs_rst_in_rescue_raw", false, "", "runs the kernel skipped are lost, not rescued" },
	{ "cs_rst_out_rescue_btf", false, "", "runs the kernel skipped are lost, not rescued" },
	{ "cs_rst_out_rescue_raw", false, "", "runs the kernel skipped are lost, not rescued" },
	{ "cs_retrans_rescue_btf", false, "", "runs the kernel skipped are lost, not rescued" },
	{ "cs_retrans_rescue_raw", false, "", "runs the kernel skipped are lost, not rescued" },
	{ NULL, false, NULL, NULL },
};

#define CW_SLOTS_BYTES (CS_CW_SLOTS * sizeof(struct cs_event))

/* Open and load conn_bpf with the hooks of one attach type; a hook program the
 * kernel refuses is switched off and the load tried again without it. */
static struct conn_bpf *load_mode(struct loader *L, const struct cs_opts *o, bool btf, char *why,
				  size_t len)
{
	for (int attempt = 0; attempt < LOADER_NHOOKS; attempt++) {
		struct conn_bpf *s = conn_bpf__open();
		int err;

		if (!s) {
			snprintf(why, len, "open BPF object: %s", strerror(errno));
			return NULL;
		}
		s->rodata->filter_port = o->port;
		cs_ephemeral_range((uint16_t *)&s->rodata->eph_lo, (uint16_t *)&s->rodata->eph_hi);
		/* Only problems cross when connection records are not all wanted;
		 * but a socket with TLS or HTTP/2 state must still tell its close,
		 * and only the socket storage the TLS programs share can say so. */
		L->problems_only = o->connections != CONNS_ALL && btf && !o->port;
		s->rodata->conn_mode = L->problems_only ? CS_CONN_PROBLEMS : CS_CONN_ALL;
		/* Lean: with only problems crossing, a healthy connection keeps no
		 * socket storage (conn.bpf.c). CONNSCOPE_LEAN=0 keeps it. */
		L->lean = L->problems_only && !o->lean_off;
		s->rodata->lean = L->lean;
		if (o->ringbuf_bytes)
			bpf_map__set_max_entries(s->maps.events, (uint32_t)o->ringbuf_bytes);
		if (o->conn_ringbuf_bytes)
			bpf_map__set_max_entries(s->maps.conn_events, (uint32_t)o->conn_ringbuf_bytes);
		s->rodata->sample_above = bpf_map__max_entries(s->maps.conn_events) / 2;
		if (o->reset_rate_set)
			s->rodata->reset_rate = o->reset_rate;
		s->rodata->cw_threshold_ns = (uint64_t)(o->close_wait_threshold_s * 1e9);
		s->rodata->tick_us = jiffy_us();
		for (int i = 0; i < LOADER_NHOOKS; i++) {
			bpf_program__set_autoload(prog_of(s, i, true), btf);
			bpf_program__set_autoload(prog_of(s, i, false), !btf);
		}
		for (int i = 0; i < LOADER_NRESCUE; i++) {
			bpf_program__set_autoload(rescue_of(s, i, true), btf && !o->rescue_off);
			bpf_program__set_autoload(rescue_of(s, i, false), !btf && !o->rescue_off);
		}
		/* Hooks this kernel lacks are switched off here, and recorded. */
		progfb_prune(s->obj, "conn", conn_roles);
		/* The handlers mark their runs only for a rescue program to read. */
		s->rodata->rescue = bpf_program__autoload(rescue_of(s, 0, btf));
		s->rodata->test_skip_every = s->rodata->rescue ? o->test_skip_runs : 0;
		/* The fallback store is only needed (and sized) in raw_tp mode. */
		if (btf)
			bpf_map__set_max_entries(s->maps.sk_info_hash, 1);
		err = conn_bpf__load(s);
		if (!err)
			return s;
		snprintf(why, len, "%s programs did not load: %s (%s)", btf ? "tp_btf" : "raw_tp",
			 strerror(-err), loader_last_libbpf_msg());
		conn_bpf__destroy(s);
		if (!progfb_blame("conn", conn_roles, err))
			return NULL;
	}
	return NULL;
}

/* One attempt with one attach type for every hook. All hooks must share the
 * socket state store, so the attach type is chosen for all of them together. */
static int try_mode(struct loader *L, const struct cs_opts *o, bool btf, char *why, size_t len)
{
	struct conn_bpf *s = load_mode(L, o, btf, why, len);
	int err;

	if (!s)
		return -1;
	for (int i = 0; i < LOADER_NHOOKS; i++) {
		struct hook_status *h = &L->hooks[i];
		struct bpf_link *link;

		h->variant = NULL;
		if (!h->in_btf) {
			snprintf(h->note, sizeof(h->note), "tracepoint not in this kernel");
			continue;
		}
		if (!bpf_program__autoload(prog_of(s, i, btf))) {
			snprintf(h->note, sizeof(h->note), "program switched off (see \"programs off\")");
			continue;
		}
		link = bpf_program__attach(prog_of(s, i, btf));
		if (!link) {
			err = -errno;
			snprintf(h->note, sizeof(h->note), "attach failed: %s", strerror(-err));
			if (h->required) {
				snprintf(why, len, "%s %s attach failed: %s", btf ? "tp_btf" : "raw_tp",
					 h->tracepoint, strerror(-err));
				detach_all(L);
				conn_bpf__destroy(s);
				return -1;
			}
			continue;
		}
		L->links[i] = link;
		h->variant = btf ? "tp_btf" : "raw_tp";
		h->note[0] = 0;
	}
	/* Each rescue program after its hook's program: on one tracepoint, the
	 * kernel runs them in the order they were attached. */
	struct bpf_map *handler[LOADER_NRESCUE] = {
		s->maps.rescue_set_state, s->maps.rescue_rst_in, s->maps.rescue_rst_out,
		s->maps.rescue_retrans,
	};

	for (int i = 0; i < LOADER_NRESCUE; i++) {
		struct bpf_program *r = rescue_of(s, i, btf);
		int fd = bpf_program__fd(prog_of(s, i, btf));
		__u32 key = 0;

		if (!L->links[i] || !bpf_program__autoload(r))
			continue;
		if (bpf_map_update_elem(bpf_map__fd(handler[i]), &key, &fd, BPF_ANY)) {
			snprintf(L->rescue_note, sizeof(L->rescue_note), "%s: %s", hook_defs[i].tp,
				 strerror(errno));
			continue;
		}
		L->rescue_links[i] = bpf_program__attach(r);
		if (!L->rescue_links[i])
			snprintf(L->rescue_note, sizeof(L->rescue_note), "%s: attach: %s",
				 hook_defs[i].tp, strerror(errno));
	}
	L->skel = s;
	L->mode = btf ? ATTACH_TP_BTF : ATTACH_RAW_TP;
	/* CLOSE_WAIT slots are read in place (loader_cw_socks). */
	L->cw_slots = mmap(NULL, CW_SLOTS_BYTES, PROT_READ, MAP_SHARED,
			   bpf_map__fd(s->maps.cw_slots), 0);
	if (L->cw_slots == MAP_FAILED)
		L->cw_slots = NULL;
	return 0;
}

int loader_open(struct loader *L, const struct cs_opts *o)
{
	char why_btf[256] = "", why_raw[256] = "";

	memset(L, 0, sizeof(*L));
	L->stats_fd = -1;
	for (int i = 0; i < LOADER_NHOOKS; i++) {
		char sec[96], why[160];

		L->hooks[i].tracepoint = hook_defs[i].tp;
		L->hooks[i].purpose = hook_defs[i].purpose;
		L->hooks[i].required = hook_defs[i].required;
		snprintf(sec, sizeof(sec), "tp_btf/%s", hook_defs[i].tp);
		L->hooks[i].in_btf = progfb_hook_exists(sec, why, sizeof(why));
	}
	if (!L->hooks[0].in_btf) {
		cs_fail("find tracepoint inet_sock_set_state", "this kernel does not have it (4.16+ needed)");
		return -1;
	}
	if (o->attach != ATTACH_RAW_TP) {
		if (!try_mode(L, o, true, why_btf, sizeof(why_btf)))
			return 0;
		if (o->attach == ATTACH_TP_BTF) {
			cs_fail("attach tp_btf programs", "%s", why_btf);
			return -1;
		}
		snprintf(L->fallback_why, sizeof(L->fallback_why), "%s", why_btf);
	} else {
		snprintf(L->fallback_why, sizeof(L->fallback_why), "raw_tp forced by --attach");
	}
	if (!try_mode(L, o, false, why_raw, sizeof(why_raw)))
		return 0;
	cs_fail("attach BPF programs", "%s%s%s", why_raw, why_btf[0] ? "; before that, " : "", why_btf);
	return -1;
}

/* Both packet programs or none: a direction alone would desync every stream. */
static const struct progfb_role tls_roles[] = {
	{ "cs_tls_egress", true, "", "TLS handshakes and h2c on the wire" },
	{ "cs_tls_ingress", true, "", "TLS handshakes and h2c on the wire" },
	{ NULL, false, NULL, NULL },
};

int loader_tls_open(struct loader *L, const char *cgroup_dir)
{
	int fd, err;

	snprintf(L->tls_cgroup, sizeof(L->tls_cgroup), "%s", cgroup_dir);
	fd = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(L->tls_note, sizeof(L->tls_note), "cannot open cgroup %s: %s", cgroup_dir,
			 strerror(errno));
		return -1;
	}
	L->tls = tls_bpf__open();
	if (!L->tls) {
		snprintf(L->tls_note, sizeof(L->tls_note), "cannot open the TLS object: %s",
			 strerror(errno));
		close(fd);
		return -1;
	}
	/* With the lifecycle programs' socket storage shared, the packet programs
	 * know a socket older than connscope (no entry there) and say so when one
	 * carries HTTP/2 they cannot follow. The raw_tp fallback keeps no storage. */
	if (L->skel && L->mode == ATTACH_TP_BTF && !L->skel->rodata->filter_port &&
	    !bpf_map__reuse_fd(L->tls->maps.conn_sk_info, bpf_map__fd(L->skel->maps.sk_info_storage)) &&
	    !bpf_map__reuse_fd(L->tls->maps.conn_preexisting, bpf_map__fd(L->skel->maps.preexisting))) {
		L->tls->rodata->midway_check = true;
		L->tls->rodata->lean = L->lean;
	}
	/* The lifecycle programs' per-cgroup counts take the handshakes too: then
	 * a complete handshake need not cross to be counted (quiet). */
	L->tls_kcounts = L->skel &&
		!bpf_map__reuse_fd(L->tls->maps.cg_counts, bpf_map__fd(L->skel->maps.cg_counts)) &&
		!bpf_map__reuse_fd(L->tls->maps.cg_zero, bpf_map__fd(L->skel->maps.cg_zero));
	L->tls->rodata->kcounts = L->tls_kcounts;
	L->tls->rodata->quiet = L->tls_kcounts && L->tls_quiet;
	if (L->tls_ring_bytes)
		bpf_map__set_max_entries(L->tls->maps.tls_events, (uint32_t)L->tls_ring_bytes);
	progfb_reset("tls");
	progfb_prune(L->tls->obj, "tls", tls_roles);
	if (!bpf_program__autoload(L->tls->progs.cs_tls_egress) ||
	    !bpf_program__autoload(L->tls->progs.cs_tls_ingress)) {
		snprintf(L->tls_note, sizeof(L->tls_note), "a cgroup_skb program is switched off "
			 "(CONNSCOPE_PROGS_OFF), and one direction alone cannot follow a stream");
		goto fail;
	}
	err = tls_bpf__load(L->tls);
	if (err)
		progfb_blame("tls", tls_roles, err);
	if (err) {
		snprintf(L->tls_note, sizeof(L->tls_note), "cgroup_skb programs did not load: %s (%s)",
			 strerror(-err), loader_last_libbpf_msg());
		goto fail;
	}
	/* Links attach with BPF_F_ALLOW_MULTI semantics: other programs on the
	 * same cgroup (CNI, systemd) keep running, before or after ours. */
	L->tls_links[0] = bpf_program__attach_cgroup(L->tls->progs.cs_tls_ingress, fd);
	L->tls_links[1] = L->tls_links[0] ? bpf_program__attach_cgroup(L->tls->progs.cs_tls_egress, fd)
					  : NULL;
	if (!L->tls_links[0] || !L->tls_links[1]) {
		snprintf(L->tls_note, sizeof(L->tls_note), "cgroup_skb attach to %s failed: %s%s",
			 cgroup_dir, strerror(errno), errno == EPERM || errno == EACCES ?
			 " (needs CAP_NET_ADMIN, or CAP_SYS_ADMIN)" : "");
		goto fail;
	}
	close(fd);
	L->tls_note[0] = 0;
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		bpf_link__destroy(L->tls_links[i]);
		L->tls_links[i] = NULL;
	}
	tls_bpf__destroy(L->tls);
	L->tls = NULL;
	close(fd);
	return -1;
}

int loader_tls_hello(struct loader *L, uint64_t cookie, struct tls_hello *out)
{
	return L->tls ? bpf_map_lookup_elem(bpf_map__fd(L->tls->maps.tls_hello), &cookie, out) : -1;
}

int loader_tls_hello_del(struct loader *L, uint64_t cookie)
{
	return L->tls ? bpf_map_delete_elem(bpf_map__fd(L->tls->maps.tls_hello), &cookie) : -1;
}

int loader_tls_hello_mark(struct loader *L, uint64_t cookie, struct tls_hello *h, uint8_t flags)
{
	h->flags |= flags;
	/* BPF_EXIST: a handshake that ended meanwhile is not made again. */
	return L->tls ? bpf_map_update_elem(bpf_map__fd(L->tls->maps.tls_hello), &cookie, h,
					    BPF_EXIST) : -1;
}

int loader_tls_hello_next(struct loader *L, const uint64_t *prev, uint64_t *next)
{
	return L->tls ? bpf_map_get_next_key(bpf_map__fd(L->tls->maps.tls_hello), prev, next) : -1;
}

int loader_tls_done(struct loader *L, uint64_t cookie, struct tls_done *out)
{
	int fd = L->tls ? bpf_map__fd(L->tls->maps.tls_done) : -1;

	if (fd < 0 || bpf_map_lookup_elem(fd, &cookie, out))
		return -1;
	bpf_map_delete_elem(fd, &cookie);
	return 0;
}

uint64_t loader_tls_counter(struct loader *L, int idx)
{
	return L->tls ? cs_percpu_sum(bpf_map__fd(L->tls->maps.tls_counters), idx) : 0;
}

void loader_close(struct loader *L)
{
	for (int i = 0; i < 2; i++) {
		bpf_link__destroy(L->tls_links[i]);
		L->tls_links[i] = NULL;
	}
	tls_bpf__destroy(L->tls);
	L->tls = NULL;
	detach_all(L);
	if (L->cw_slots)
		munmap((void *)L->cw_slots, CW_SLOTS_BYTES);
	L->cw_slots = NULL;
	conn_bpf__destroy(L->skel);
	L->skel = NULL;
	if (L->stats_fd >= 0)
		close(L->stats_fd);
}

uint64_t loader_counter(struct loader *L, int idx)
{
	return L->skel ? cs_percpu_sum(bpf_map__fd(L->skel->maps.counters), idx) : 0;
}

/* Sum n_u64 counters of a per-CPU value over the CPUs (the values are arrays of
 * __u64 fields, as every per-CPU counter struct of ours is). */
static void sum_cpus(const void *percpu, int ncpu, size_t size, void *out)
{
	const __u64 *v = percpu;
	__u64 *o = out;
	size_t n = size / sizeof(__u64);

	memset(out, 0, size);
	for (int c = 0; c < ncpu; c++)
		for (size_t i = 0; i < n; i++)
			o[i] += v[(size_t)c * n + i];
}

/* Walk a per-CPU hash: fn(key, summed value, arg) for each entry; an entry for
 * which fn returns true is deleted. */
static int walk_percpu(int fd, size_t ksize, size_t vsize,
		       bool (*fn)(const void *key, const void *sum, void *arg), void *arg)
{
	int ncpu = libbpf_num_possible_cpus(), n = 0;
	uint8_t key[64], next[64];
	void *v, *sum;
	bool first = true;

	if (ncpu <= 0 || ksize > sizeof(key))
		return -1;
	v = calloc((size_t)ncpu, vsize);
	sum = calloc(1, vsize);
	if (!v || !sum) {
		free(v);
		free(sum);
		return -1;
	}
	while (!bpf_map_get_next_key(fd, first ? NULL : key, next)) {
		if (!bpf_map_lookup_elem(fd, next, v)) {
			sum_cpus(v, ncpu, vsize, sum);
			n++;
			/* Deleted: iteration goes on from the key before it. */
			if (fn(next, sum, arg) && !bpf_map_delete_elem(fd, next))
				continue;
		}
		memcpy(key, next, ksize);
		first = false;
	}
	free(v);
	free(sum);
	return n;
}

int loader_for_each_cg_count(struct loader *L,
			     bool (*fn)(const void *cgid, const void *counts, void *arg), void *arg)
{
	return walk_percpu(bpf_map__fd(L->skel->maps.cg_counts), sizeof(__u64),
			   sizeof(struct cs_cg_counts), fn, arg);
}

int loader_for_each_remote(struct loader *L,
			   bool (*fn)(const void *key, const void *counts, void *arg), void *arg)
{
	return walk_percpu(bpf_map__fd(L->skel->maps.remote_counts), sizeof(struct cs_remote_key),
			   sizeof(struct cs_remote_counts), fn, arg);
}

int loader_preexisting(struct loader *L, const uint64_t *cookies, int n)
{
	uint8_t one = 1;
	int fd, added = 0;

	if (!L->skel || !L->lean)
		return 0;
	fd = bpf_map__fd(L->skel->maps.preexisting);
	uint64_t lo = UINT64_MAX, hi = 0;

	for (int i = 0; i < n; i++) {
		if (!cookies[i] || bpf_map_update_elem(fd, &cookies[i], &one, BPF_NOEXIST))
			continue;
		added++;
		lo = cookies[i] < lo ? cookies[i] : lo;
		hi = cookies[i] > hi ? cookies[i] : hi;
	}
	/* Only now do the programs look there, and go lean; none added leaves the
	 * range empty (lo > hi). The packet programs (loaded by now) look there
	 * only inside it too. */
	L->skel->data->preexist_lo = lo;
	L->skel->bss->preexist_hi = hi;
	if (L->tls && L->tls->rodata->lean) {
		L->tls->data->pre_lo = lo;
		L->tls->data->pre_hi = hi;
	}
	L->skel->bss->lean_on = 1;
	return added;
}

bool loader_lean_on(const struct loader *L)
{
	return L->skel && L->lean && L->skel->bss->lean_on;
}

/* Room for one more entry in *arr; false if out of memory. */
static bool cw_room(struct cs_event **arr, int n, int *cap)
{
	struct cs_event *a;

	if (n < *cap)
		return true;
	a = realloc(*arr, (size_t)(*cap ? *cap * 2 : 64) * sizeof(*a));
	if (!a)
		return false;
	*arr = a;
	*cap = *cap ? *cap * 2 : 64;
	return true;
}

int loader_cw_socks(struct loader *L, struct cs_event **out)
{
	int fd = bpf_map__fd(L->skel->maps.cw_socks), n = 0, cap = 0;
	__u64 key, next;
	bool first = true;
	struct cs_event *arr = NULL;

	*out = NULL;
	/* The slots, read while the kernel writes them: a copy counts only if the
	 * slot was complete before and still holds the same socket after. */
	for (int i = 0; L->cw_slots && i < CS_CW_SLOTS; i++) {
		const struct cs_event *e = &L->cw_slots[i];
		__u64 c = __atomic_load_n(&e->cookie, __ATOMIC_ACQUIRE);

		if (!c || __atomic_load_n(&e->type, __ATOMIC_ACQUIRE) != CS_EV_CLOSE_WAIT)
			continue;
		if (!cw_room(&arr, n, &cap))
			break;
		memcpy(&arr[n], e, sizeof(*e));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&e->type, __ATOMIC_ACQUIRE) == CS_EV_CLOSE_WAIT &&
		    __atomic_load_n(&e->cookie, __ATOMIC_ACQUIRE) == c && arr[n].cookie == c &&
		    arr[n].type == CS_EV_CLOSE_WAIT)
			n++;
	}
	while (!bpf_map_get_next_key(fd, first ? NULL : &key, &next)) {
		if (!cw_room(&arr, n, &cap))
			break;
		if (!bpf_map_lookup_elem(fd, &next, &arr[n]))
			n++;
		key = next;
		first = false;
	}
	*out = arr;
	return n;
}

/* Sum bpf_prog_info counters over our programs. A rescue program's own skipped
 * runs are not counted: it is skipped only while it runs on that CPU, when the
 * hook's program is not running there and so was not skipped. */
static void prog_totals(struct loader *L, uint64_t *run_time_ns, uint64_t *misses)
{
	struct bpf_program *p;

	*run_time_ns = *misses = 0;
	if (!L->skel)
		return;
	bpf_object__for_each_program(p, L->skel->obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(p);

		if (fd >= 0 && !bpf_obj_get_info_by_fd(fd, &info, &len)) {
			*run_time_ns += info.run_time_ns;
			if (!strstr(bpf_program__name(p), "_rescue_"))
				*misses += info.recursion_misses;
		}
	}
}

uint64_t loader_prog_misses(struct loader *L)
{
	uint64_t run_time_ns, misses, rescued = loader_rescued(L);

	prog_totals(L, &run_time_ns, &misses);
	return misses > rescued ? misses - rescued : 0;
}

uint64_t loader_rescued(struct loader *L)
{
	return L->skel ? loader_counter(L, CS_CNT_RESCUED) : 0;
}

int loader_rescue_hooks(const struct loader *L)
{
	int n = 0;

	for (int i = 0; i < LOADER_NRESCUE; i++)
		n += L->rescue_links[i] != NULL;
	return n;
}

uint64_t loader_bpf_runtime_ns(struct loader *L)
{
	uint64_t run_time_ns, misses;

	prog_totals(L, &run_time_ns, &misses);
	return run_time_ns;
}

