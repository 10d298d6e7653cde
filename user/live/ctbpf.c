// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Load bpf/ct.bpf.c as a BPF_PROG_TYPE_NETFILTER program and attach it with
 * netfilter links in one network namespace.
 *
 * Debian 12's libbpf 1.1 predates netfilter programs (kernel 6.4): it has no
 * SEC("netfilter") and no attach helper, and its UAPI header lacks the
 * link_create.netfilter fields. So the program is declared SEC("?tc"), its type
 * is set here before load, and the links are made with a raw BPF_LINK_CREATE.
 */
#include "ctbpf.h"
#include "progfb.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "ct.skel.h"
#include "percpu.h"

/* UAPI values from kernel 6.4 on (include/uapi/linux/bpf.h, netfilter.h);
 * spelled out because Debian's headers may be older than the kernel. */
#define CT_PROG_TYPE_NETFILTER 32 /* BPF_PROG_TYPE_NETFILTER */
#define CT_ATTACH_NETFILTER 45    /* BPF_NETFILTER */
#define CT_NFPROTO_IPV4 2
#define CT_NFPROTO_IPV6 10
#define CT_NF_PRE_ROUTING 0
#define CT_NF_LOCAL_OUT 3
#define CT_NF_POST_ROUTING 4

/* Mirrors the counter slots of bpf/ct.bpf.c. */
enum ctbpf_counter { CTC_EVENTS, CTC_LOST, CTC_MAP_FULL, CTC_EVICTIONS };

/* The BPF_LINK_CREATE part of union bpf_attr for a netfilter link. Each
 * command's struct starts at offset 0 of the union, and the kernel accepts a
 * shorter attr (it zero-fills the rest). */
struct nf_link_attr {
	uint32_t prog_fd;
	uint32_t target_fd;   /* unused: the link goes to the caller's netns */
	uint32_t attach_type;
	uint32_t flags;
	uint32_t pf;
	uint32_t hooknum;
	int32_t priority;
	uint32_t nf_flags;
};

/*
 * Where the program goes. Priorities: conntrack runs at -200 (NF_IP_PRI_CONNTRACK)
 * and DNAT at -100 (NF_IP_PRI_NAT_DST) on PRE_ROUTING and LOCAL_OUT, SNAT at
 * +100 (NF_IP_PRI_NAT_SRC) on POST_ROUTING; the same values hold for IPv6. One
 * step later sees the entry with the NAT bits of this packet already set. The
 * kernel refuses only INT_MIN and INT_MAX (NF_IP_PRI_FIRST/LAST).
 */
static const struct {
	unsigned mask;
	uint32_t pf, hook;
	int32_t prio;
	const char *name;
} hook_defs[] = {
	{ CTBPF_PRE_ROUTING, CT_NFPROTO_IPV4, CT_NF_PRE_ROUTING, -99, "ipv4/prerouting" },
	{ CTBPF_LOCAL_OUT, CT_NFPROTO_IPV4, CT_NF_LOCAL_OUT, -99, "ipv4/output" },
	{ CTBPF_POST_ROUTING, CT_NFPROTO_IPV4, CT_NF_POST_ROUTING, 101, "ipv4/postrouting" },
	{ CTBPF_PRE_ROUTING, CT_NFPROTO_IPV6, CT_NF_PRE_ROUTING, -99, "ipv6/prerouting" },
	{ CTBPF_LOCAL_OUT, CT_NFPROTO_IPV6, CT_NF_LOCAL_OUT, -99, "ipv6/output" },
	{ CTBPF_POST_ROUTING, CT_NFPROTO_IPV6, CT_NF_POST_ROUTING, 101, "ipv6/postrouting" },
};
#define NHOOKS (sizeof(hook_defs) / sizeof(hook_defs[0]))

struct ctbpf {
	struct ct_bpf *skel;
	struct bpf_program *prog; /* the variant loaded */
	bool fast;                /* bpf_rdonly_cast variant, not probe reads */
	struct ring_buffer *rb;
	ctbpf_cb cb;          /* set for the duration of one ctbpf_poll */
	void *cb_arg;
	int link_fd[NHOOKS];  /* -1: not attached */
	int link_err[NHOOKS]; /* errno of the failed attach, 0 if not tried */
	unsigned hooks;
	char where[160];      /* the netns, for describe */
};

static int nf_link_create(int prog_fd, uint32_t pf, uint32_t hook, int32_t prio)
{
	struct nf_link_attr attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_fd = prog_fd;
	attr.attach_type = CT_ATTACH_NETFILTER;
	attr.pf = pf;
	attr.hooknum = hook;
	attr.priority = prio;
	fd = syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
	return fd < 0 ? -errno : fd;
}

/* Why a load or attach failed, in words an operator can act on. */
static const char *explain(int err)
{
	switch (err) {
	case EINVAL:
		return "the kernel has no BPF netfilter programs (needs >= 6.4)";
	case EPERM:
	case EACCES:
		return "not permitted (needs CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN)";
	case EAFNOSUPPORT:
		return "address family not available";
	case EEXIST:
		return "the hook slot is taken";
	case ERANGE:
		return "priority refused";
	default:
		return strerror(err);
	}
}

static void describe_netns(struct ctbpf *c, const char *path)
{
	struct stat st;
	const char *p = path ? path : "/proc/self/ns/net";

	if (stat(p, &st))
		snprintf(c->where, sizeof(c->where), "netns %s", p);
	else if (path)
		snprintf(c->where, sizeof(c->where), "netns %s (inode %lu)", path,
			 (unsigned long)st.st_ino);
	else
		snprintf(c->where, sizeof(c->where), "own netns (inode %lu)",
			 (unsigned long)st.st_ino);
}

/* Create the links in the netns at path: a netfilter link binds to the netns
 * of the calling thread, so this thread visits it and comes back. */
static int attach_all(struct ctbpf *c, const char *path, char *why, size_t whylen)
{
	int prog_fd = bpf_program__fd(c->prog);
	int home = -1, target = -1, ok = 0, first_err = 0;

	if (path) {
		home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		target = open(path, O_RDONLY | O_CLOEXEC);
		if (home < 0 || target < 0) {
			snprintf(why, whylen, "cannot open network namespace %s: %s",
				 home < 0 ? "/proc/thread-self/ns/net" : path, strerror(errno));
			goto out;
		}
		if (setns(target, CLONE_NEWNET)) {
			snprintf(why, whylen, "cannot enter network namespace %s: %s%s", path,
				 strerror(errno), errno == EPERM ? " (needs CAP_SYS_ADMIN)" : "");
			goto out;
		}
	}
	for (size_t i = 0; i < NHOOKS; i++) {
		int fd;

		if (!(c->hooks & hook_defs[i].mask))
			continue;
		fd = nf_link_create(prog_fd, hook_defs[i].pf, hook_defs[i].hook, hook_defs[i].prio);
		if (fd < 0) {
			c->link_err[i] = -fd;
			if (!first_err)
				first_err = -fd;
			continue;
		}
		c->link_fd[i] = fd;
		ok++;
	}
	if (path && setns(home, CLONE_NEWNET)) {
		/* Staying in the wrong netns would silently skew everything
		 * this thread does next; there is no sane way to go on. */
		fprintf(stderr, "connscope: failed to return to own network namespace: %s\n",
			strerror(errno));
		abort();
	}
	if (!ok)
		snprintf(why, whylen, "no netfilter hook attached in %s: %s (%s)", c->where,
			 explain(first_err), strerror(first_err));
out:
	if (home >= 0)
		close(home);
	if (target >= 0)
		close(target);
	return ok ? 0 : -1;
}

static int on_sample(void *ctx, void *data, size_t size)
{
	struct ctbpf *c = ctx;

	if (size < sizeof(struct ct_event) || !c->cb)
		return 0;
	c->cb(c->cb_arg, data);
	return 0;
}

static const struct progfb_role ct_roles[] = {
	{ "ct_hook", true, "ctnetlink events, subscribed in each watched network namespace", "" },
	{ "ct_hook_probe", true, "ctnetlink events, subscribed in each watched network namespace", "" },
	{ NULL, false, NULL, NULL },
};

struct ctbpf *ctbpf_open_hooks(const char *netns_path, unsigned hooks, char *why, size_t whylen)
{
	struct ctbpf *c = calloc(1, sizeof(*c));
	struct btf *vmlinux;
	bool nf_known;
	int err, id;

	if (!c) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < NHOOKS; i++)
		c->link_fd[i] = -1;
	c->hooks = hooks;
	describe_netns(c, netns_path);
	c->skel = ct_bpf__open();
	if (!c->skel) {
		snprintf(why, whylen, "cannot open the conntrack BPF object: %s", strerror(errno));
		goto fail;
	}
	/* The fast variant needs struct nf_conn in vmlinux BTF (its id goes to
	 * bpf_rdonly_cast); with conntrack as a module it is elsewhere. */
	vmlinux = btf__load_vmlinux_btf();
	id = vmlinux ? btf__find_by_name_kind(vmlinux, "nf_conn", BTF_KIND_STRUCT) : -1;
	/* The program context type came with netfilter programs (6.4). */
	nf_known = vmlinux && btf__find_by_name_kind(vmlinux, "bpf_nf_ctx", BTF_KIND_STRUCT) > 0;
	btf__free(vmlinux);
	c->skel->rodata->nf_conn_btf_id = id > 0 ? id : 0;
	c->skel->rodata->quiet = hooks & CTBPF_QUIET;
	/* Its map of translated entries is used only then (preallocated: ~10 MiB). */
	if (!(hooks & CTBPF_QUIET))
		bpf_map__set_max_entries(c->skel->maps.ct_nat, 1);
	c->fast = id > 0 && !(hooks & CTBPF_PROBE_READ);
	c->prog = c->fast ? c->skel->progs.ct_hook : c->skel->progs.ct_hook_probe;
	if (!nf_known) {
		/* Not even tried: the verifier would only say so, slowly. */
		snprintf(why, whylen, "the conntrack BPF program did not load: "
			 "the kernel has no BPF netfilter programs (needs >= 6.4)");
		progfb_record("ct", bpf_program__name(c->prog), ct_roles,
			      "no BPF netfilter programs in this kernel (6.4+)");
		goto fail;
	}
	bpf_program__set_autoload(c->prog, true);
	bpf_program__set_type(c->prog, CT_PROG_TYPE_NETFILTER);
	bpf_program__set_expected_attach_type(c->prog, CT_ATTACH_NETFILTER);
	err = ct_bpf__load(c->skel);
	if (err) {
		snprintf(why, whylen, "the conntrack BPF program did not load: %s", err == -EPERM ||
			 err == -EACCES ? explain(-err) : strerror(-err));
		progfb_blame("ct", ct_roles, err);
		goto fail;
	}
	if (attach_all(c, netns_path, why, whylen))
		goto fail;
	c->rb = ring_buffer__new(bpf_map__fd(c->skel->maps.ct_events), on_sample, c, NULL);
	if (!c->rb) {
		snprintf(why, whylen, "cannot set up the conntrack ring buffer: %s", strerror(errno));
		goto fail;
	}
	return c;
fail:
	ctbpf_close(c);
	return NULL;
}

struct ctbpf *ctbpf_open(const char *netns_path, char *why, size_t whylen)
{
	return ctbpf_open_hooks(netns_path, CTBPF_DEFAULT_HOOKS, why, whylen);
}

int ctbpf_poll(struct ctbpf *c, int timeout_ms, ctbpf_cb cb, void *arg)
{
	int n;

	c->cb = cb;
	c->cb_arg = arg;
	/* The program wakes no one (a backlog aside): wait as asked, then read
	 * what is there, which epoll does not report. */
	n = timeout_ms ? ring_buffer__poll(c->rb, timeout_ms) : 0;
	if (n >= 0) {
		int m = ring_buffer__consume(c->rb);

		n = m < 0 ? m : n + m;
	}
	c->cb = NULL;
	c->cb_arg = NULL;
	return n;
}

/* The program's fingerprint of an original tuple, from the event's copy of it
 * (ports in host order there). */
static uint32_t fingerprint(const struct ct_tuple *o)
{
	uint32_t s0, s3, d0, d3;

	memcpy(&s0, o->src, 4);
	memcpy(&s3, o->src + 12, 4);
	memcpy(&d0, o->dst, 4);
	memcpy(&d3, o->dst + 12, 4);
	return ct_fingerprint(s0, s3, d0, d3, htons(o->sport), htons(o->dport));
}

static bool same_tuple(const struct ct_tuple *a, const struct ct_tuple *b)
{
	return a->sport == b->sport && a->dport == b->dport && !memcmp(a->src, b->src, 16) &&
	       !memcmp(a->dst, b->dst, 16);
}

/* The kept entry under one end of the socket's tuple, if it is that socket's:
 * the client's socket is its original tuple, the backend's its reply tuple (a
 * client end may serve flows to several destinations at once). */
static int nat_at(const struct ctbpf *c, const struct ct_tuple *sock, const uint8_t *addr,
		  uint16_t port, struct ct_event *out)
{
	struct ct_end k;

	memset(&k, 0, sizeof(k));
	memcpy(k.addr, addr, sizeof(k.addr));
	k.port = port;
	k.l3 = sock->l3;
	if (bpf_map_lookup_elem(bpf_map__fd(c->skel->maps.ct_nat), &k, out))
		return -1;
	return same_tuple(&out->orig, sock) || same_tuple(&out->reply, sock) ? 0 : -1;
}

int ctbpf_nat(const struct ctbpf *c, const struct ct_tuple *key, struct ct_event *out)
{
	struct ct_bpf_state st;

	if (!c || (nat_at(c, key, key->src, key->sport, out) &&
		   nat_at(c, key, key->dst, key->dport, out)))
		return -1;
	/* Its state now, if the program still follows that entry (the address
	 * may hold another one by now: the fingerprint tells). */
	if (bpf_map_lookup_elem(bpf_map__fd(c->skel->maps.ct_state), &out->id, &st) ||
	    st.fp != fingerprint(&out->orig))
		out->tcp_state = CT_TCP_NONE;
	else
		out->tcp_state = st.tcp_state;
	return 0;
}

int ctbpf_fd(const struct ctbpf *c)
{
	return ring_buffer__epoll_fd(c->rb);
}

int ctbpf_add_ring(struct ctbpf *c, struct ring_buffer *rb,
		   int (*fn)(void *ctx, void *data, size_t size), void *ctx)
{
	return ring_buffer__add(rb, bpf_map__fd(c->skel->maps.ct_events), fn, ctx);
}


void ctbpf_counters(const struct ctbpf *c, uint64_t *events, uint64_t *lost, uint64_t *map_full)
{
	int fd = bpf_map__fd(c->skel->maps.ct_counters);

	if (events)
		*events = cs_percpu_sum(fd, CTC_EVENTS);
	if (lost)
		*lost = cs_percpu_sum(fd, CTC_LOST);
	if (map_full)
		*map_full = cs_percpu_sum(fd, CTC_MAP_FULL);
}

uint64_t ctbpf_evictions(const struct ctbpf *c)
{
	return cs_percpu_sum(bpf_map__fd(c->skel->maps.ct_counters), CTC_EVICTIONS);
}

uint32_t ctbpf_prog_id(const struct ctbpf *c)
{
	struct bpf_prog_info info;
	uint32_t len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(bpf_program__fd(c->prog), &info, &len))
		return 0;
	return info.id;
}

void ctbpf_describe(const struct ctbpf *c, char *buf, size_t len)
{
	size_t off;
	const char *sep = "";

	if (!len)
		return;
	off = snprintf(buf, len, "BPF netfilter link in %s (nf_conn read by %s):", c->where,
		       c->fast ? "direct loads" : "probe reads");
	for (size_t i = 0; i < NHOOKS && off < len; i++) {
		if (c->link_fd[i] >= 0)
			off += snprintf(buf + off, len - off, "%s %s@%d attached", sep,
					hook_defs[i].name, hook_defs[i].prio);
		else if (c->link_err[i])
			off += snprintf(buf + off, len - off, "%s %s not attached (%s)", sep,
					hook_defs[i].name, explain(c->link_err[i]));
		else
			continue;
		sep = ";";
	}
}

void ctbpf_close(struct ctbpf *c)
{
	if (!c)
		return;
	ring_buffer__free(c->rb);
	/* Closing the last fd of a netfilter link unregisters its hook. */
	for (size_t i = 0; i < NHOOKS; i++)
		if (c->link_fd[i] >= 0)
			close(c->link_fd[i]);
	ct_bpf__destroy(c->skel);
	free(c);
}
