// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Conntrack lifecycle edges, seen from a BPF netfilter link (kernel >= 6.4).
 *
 * Upstream has no conntrack tracepoints, so the program sits on the netfilter
 * hooks right after conntrack and NAT ran (user/live/ctbpf.c picks the hooks and
 * priorities) and looks at the nf_conn that conntrack attached to the packet.
 * Per packet it reads two fields and does one hash lookup; only edges leave
 * the kernel: NEW (first sight), UPDATE (TCP state or an interesting status
 * bit changed) and DESTROY (CLOSE or TIME_WAIT reached). The program never
 * changes a verdict: it always returns NF_ACCEPT.
 *
 * It cannot see an entry freed (timeout, flush, eviction by conntrack), so the
 * per-entry state lives in an LRU hash keyed by the nf_conn address, and a
 * fingerprint of the original tuple catches an address reused by a new entry.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "ct_events.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define NF_ACCEPT 1
#define IPPROTO_TCP 6
#define AF_INET 2
#define AF_INET6 10
/* skb->_nfct keeps enum ip_conntrack_info in its low 3 bits (NFCT_INFOMASK). */
#define NFCT_INFOMASK 7UL
#define IPS_CONFIRMED (1u << 3)
#define IPS_TEMPLATE (1u << 11)
#define IPS_UNTRACKED (1u << 12)

/* The status bits whose change is an edge. CONFIRMED is left out on purpose:
 * it flips on the first packet's way out, which is not news to anyone. */
#define CT_S_EDGE (CT_S_SEEN_REPLY | CT_S_ASSURED | CT_S_SRC_NAT | CT_S_DST_NAT | CT_S_DYING)

/* Counter slots; user/live/ctbpf.c mirrors them (enum ctbpf_counter). */
enum {
	CT_CNT_EVENTS = 0,     /* events submitted */
	CT_CNT_LOST = 1,       /* ring buffer reserve failures */
	CT_CNT_MAP_FULL = 2,   /* state could not be stored (update failed) */
	CT_CNT_EVICTIONS = 3,  /* inserts made while the map was full: LRU evicted one */
	CT_CNT_MAX = 4,
};

#define CT_MAP_ENTRIES 262144
#define CT_RING_BYTES (4 * 1024 * 1024)


/* Quiet (only problem records asked for): what a problem needs, and no more (see
 * handle_quiet). */
const volatile bool quiet = false;

#define CT_S_NAT (CT_S_SRC_NAT | CT_S_DST_NAT)
#define CT_NAT_ENTRIES 65536

/* Quiet: translated entries that turned into problems (handle_quiet), under their
 * client end (struct ct_end: one insert for a flow that only a destination NAT
 * translated, the Service case), as a NEW record would have said them. LRU: an
 * entry outlives conntrack's by as long as the churn of problems allows, for a
 * socket's close that comes after conntrack's end. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_NAT_ENTRIES);
	__type(key, struct ct_end);
	__type(value, struct ct_event);
} ct_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_MAP_ENTRIES);
	__type(key, __u64);
	__type(value, struct ct_bpf_state);
} ct_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, CT_RING_BYTES);
} ct_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ct_counters SEC(".maps");

/* Entries in ct_state as far as this program knows (inserts minus deletes).
 * Shared by all CPUs, but touched only when an entry starts or ends, never on
 * the per-packet path. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} ct_live SEC(".maps");

/*
 * Turns a bare kernel address into a read-only BTF pointer (kernel >= 6.2, a
 * kfunc for every program type): its fields are then plain loads, which the
 * JIT makes fault-safe, instead of a bpf_probe_read_kernel call per field.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

#define RD(fast, ptr, field) ((fast) ? (ptr)->field : BPF_CORE_READ(ptr, field))

/* vmlinux BTF id of struct nf_conn, found by the loader: libbpf 1.1 refuses
 * bpf_core_type_id_kernel(struct nf_conn) as ambiguous, because the kernel
 * also has a struct nf_conn___init, which libbpf takes for a flavour of it. */
const volatile __u32 nf_conn_btf_id = 0;

static __always_inline void live_add(__s64 d)
{
	__u32 zero = 0;
	__s64 *v = bpf_map_lookup_elem(&ct_live, &zero);

	if (v)
		__sync_fetch_and_add(v, d);
}

static __always_inline __s64 live_get(void)
{
	__u32 zero = 0;
	__s64 *v = bpf_map_lookup_elem(&ct_live, &zero);

	return v ? *v : 0;
}

static __always_inline void read_tuple(struct ct_tuple *t, const struct nf_conntrack_tuple *k,
				       bool fast)
{
	/* union nf_inet_addr is 16 bytes; IPv4 sits in the first 4 (ip == all[0]). */
	if (fast) {
		__builtin_memcpy(t->src, &k->src.u3, sizeof(t->src));
		__builtin_memcpy(t->dst, &k->dst.u3, sizeof(t->dst));
	} else {
		bpf_core_read(t->src, sizeof(t->src), &k->src.u3);
		bpf_core_read(t->dst, sizeof(t->dst), &k->dst.u3);
	}
	t->sport = bpf_ntohs(RD(fast, k, src.u.tcp.port));
	t->dport = bpf_ntohs(RD(fast, k, dst.u.tcp.port));
	t->l3 = RD(fast, k, src.l3num);
	t->l4 = RD(fast, k, dst.protonum);
}

/* The original tuple's fingerprint (ct_fingerprint, bpf/ct_events.h). */
static __always_inline __u32 fingerprint(const struct nf_conn *ct, bool fast)
{
	const struct nf_conntrack_tuple *k = &ct->tuplehash[IP_CT_DIR_ORIGINAL].tuple;

	return ct_fingerprint(RD(fast, k, src.u3.all[0]), RD(fast, k, src.u3.all[3]),
			      RD(fast, k, dst.u3.all[0]), RD(fast, k, dst.u3.all[3]),
			      RD(fast, k, src.u.tcp.port), RD(fast, k, dst.u.tcp.port));
}

static __always_inline void fill(struct ct_event *e, const struct bpf_nf_ctx *ctx,
				 const struct nf_conn *ct, __u8 type, __u8 tcp_state,
				 __u8 old_state, __u32 status, bool fast)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->id = (__u64)ct;
	/* The hook state is a trusted pointer: plain (CO-RE relocated) loads. */
	e->netns = BPF_CORE_READ(ctx->state, net, ns.inum);
	e->status = status;
	e->mark = RD(fast, ct, mark);
	e->type = type;
	e->tcp_state = tcp_state;
	e->old_tcp_state = old_state;
	e->source = CT_SRC_BPF;
	read_tuple(&e->orig, &ct->tuplehash[IP_CT_DIR_ORIGINAL].tuple, fast);
	read_tuple(&e->reply, &ct->tuplehash[IP_CT_DIR_REPLY].tuple, fast);
}

static __always_inline void emit(const struct bpf_nf_ctx *ctx, const struct nf_conn *ct,
				 __u8 type, __u8 tcp_state, __u8 old_state, __u32 status, bool fast)
{
	struct ct_event *e = bpf_ringbuf_reserve(&ct_events, sizeof(*e), 0);

	if (!e) {
		cs_count(&ct_counters, CT_CNT_LOST);
		return;
	}
	fill(e, ctx, ct, type, tcp_state, old_state, status, fast);
	/* Records of every connection: none wakes user space (see cs_wake_flags). */
	bpf_ringbuf_submit(e, cs_wake_flags(&ct_events, CT_RING_BYTES / 4, sizeof(*e)));
	cs_count(&ct_counters, CT_CNT_EVENTS);
}

static __always_inline bool same16(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

/* Quiet: a translated entry, kept for the records that will look it up. */
static __always_inline void nat_keep(const struct bpf_nf_ctx *ctx, const struct nf_conn *ct,
				     __u8 tcp_state, __u32 status, bool fast)
{
	struct ct_event e;
	struct ct_end k = {};

	fill(&e, ctx, ct, CT_EV_NEW, tcp_state, CT_TCP_NONE, status, fast);
	__builtin_memcpy(k.addr, e.orig.src, sizeof(k.addr));
	k.port = e.orig.sport;
	k.l3 = e.orig.l3;
	bpf_map_update_elem(&ct_nat, &k, &e, BPF_ANY);
	if (e.reply.dport == e.orig.sport && same16(e.reply.dst, e.orig.src))
		return;
	__builtin_memcpy(k.addr, e.reply.dst, sizeof(k.addr));  /* source NAT */
	k.port = e.reply.dport;
	bpf_map_update_elem(&ct_nat, &k, &e, BPF_ANY);
}

/*
 * Quiet: no state for a healthy flow. Conntrack's own state says what a packet
 * means, so only the flows that cross are followed, from the packet that makes
 * them cross: an entry in CLOSE_WAIT is followed (ct_state) and crosses, as its
 * end does; an end by a RST crosses, once (a mark in ct_state). A translated
 * flow is kept in ct_nat only once it turns into a problem that conntrack sees:
 * a SYN sent again (a connect that may time out) or a RST (CLOSE_WAIT's record
 * carries both tuples to user space already). A record whose problem conntrack
 * cannot see (a TLS failure ended by a FIN) finds its entry over ctnetlink
 * instead (user/live/ctwatch.c). A healthy flow costs the few loads of each
 * packet, and no map at all.
 */
static __always_inline int handle_quiet(struct bpf_nf_ctx *ctx, const struct nf_conn *ct,
					__u64 key, __u32 status, __u8 tcp_state, bool fast)
{
	struct ct_bpf_state *raw, *st, fresh = {};
	bool was_counted;
	__u32 fp;

	switch (tcp_state) {
	case CT_TCP_SYN_SENT:
		/* Conntrack confirms an entry as its first packet leaves the
		 * node, after these hooks: a packet of a confirmed entry still
		 * in SYN_SENT is its SYN sent again. */
		if ((status & CT_S_NAT) && (status & IPS_CONFIRMED))
			nat_keep(ctx, ct, tcp_state, status, fast);
		return NF_ACCEPT;
	case CT_TCP_CLOSE_WAIT:
	case CT_TCP_TIME_WAIT:
	case CT_TCP_CLOSE:
		break;
	default:
		return NF_ACCEPT;  /* the per-packet fast path: no map at all */
	}
	fp = fingerprint(ct, fast);
	raw = bpf_map_lookup_elem(&ct_state, &key);
	/* ct_live counts the followed entries (in CLOSE_WAIT), not the RST marks. */
	was_counted = raw && raw->tcp_state == CT_TCP_CLOSE_WAIT;
	/* Another fingerprint: the address of an entry freed unseen, now another's. */
	st = raw && raw->fp == fp ? raw : NULL;
	fresh.status = status & CT_S_EDGE;
	fresh.fp = fp;
	fresh.tcp_state = tcp_state;
	if (tcp_state == CT_TCP_CLOSE_WAIT) {
		if (st && st->tcp_state == CT_TCP_CLOSE_WAIT)
			return NF_ACCEPT;
		if (bpf_map_update_elem(&ct_state, &key, &fresh, BPF_ANY)) {
			cs_count(&ct_counters, CT_CNT_MAP_FULL);
		} else if (!was_counted) {
			if (live_get() >= CT_MAP_ENTRIES)
				cs_count(&ct_counters, CT_CNT_EVICTIONS);
			else
				live_add(1);
		}
		emit(ctx, ct, CT_EV_UPDATE, tcp_state, CT_TCP_NONE, status, fast);
		return NF_ACCEPT;
	}
	/* TIME_WAIT or CLOSE: the end of a followed entry (delete first: of two
	 * CPUs racing here only one wins, so it is reported once), or a RST's. */
	if (st && st->tcp_state == CT_TCP_CLOSE_WAIT) {
		__u8 old = st->tcp_state;

		if (bpf_map_delete_elem(&ct_state, &key))
			return NF_ACCEPT;
		live_add(-1);
		emit(ctx, ct, CT_EV_DESTROY, tcp_state, old, status, fast);
		return NF_ACCEPT;
	}
	if (tcp_state != CT_TCP_CLOSE || st)
		return NF_ACCEPT;  /* an orderly end, or a RST end already reported */
	/* The mark is left to age out of the LRU. BPF_NOEXIST on a free key: of
	 * two CPUs seeing the RST's packets, one reports it. */
	if (bpf_map_update_elem(&ct_state, &key, &fresh, raw ? BPF_ANY : BPF_NOEXIST))
		return NF_ACCEPT;
	if (was_counted)
		live_add(-1);
	if (status & CT_S_NAT)
		nat_keep(ctx, ct, tcp_state, status, fast);
	emit(ctx, ct, CT_EV_DESTROY, tcp_state, CT_TCP_NONE, status, fast);
	return NF_ACCEPT;
}

/*
 * One handler, two ways to read nf_conn: `fast` (a compile-time constant in
 * each wrapper) casts it with bpf_rdonly_cast and loads fields directly, which
 * halves the per-packet cost; the other uses bpf_probe_read_kernel, for kernels
 * whose vmlinux BTF lacks struct nf_conn (conntrack built as a module).
 */
static __always_inline int handle(struct bpf_nf_ctx *ctx, bool fast)
{
	/* ctx->skb is a trusted pointer: a direct load, no probe read. */
	unsigned long nfct = ctx->skb->_nfct;
	__u64 key = nfct & ~NFCT_INFOMASK;
	const struct nf_conn *ct;
	struct ct_bpf_state *st, fresh = {};
	__u32 status, edge;
	__u8 tcp_state;

	/* NULL: not tracked; an untracked packet carries IP_CT_UNTRACKED and no pointer. */
	if (!key)
		return NF_ACCEPT;
	if (fast)
		ct = bpf_rdonly_cast((void *)key, nf_conn_btf_id);
	else
		ct = (const struct nf_conn *)key;
	if (RD(fast, ct, tuplehash[IP_CT_DIR_ORIGINAL].tuple.dst.protonum) != IPPROTO_TCP)
		return NF_ACCEPT;
	status = (__u32)RD(fast, ct, status);
	/* A template (raw-table CT target) is replaced by conntrack before our
	 * priority; skip one if another hook put it back. */
	if (status & (IPS_TEMPLATE | IPS_UNTRACKED))
		return NF_ACCEPT;
	tcp_state = RD(fast, ct, proto.tcp.state);
	if (quiet)
		return handle_quiet(ctx, ct, key, status, tcp_state, fast);
	edge = status & CT_S_EDGE;

	st = bpf_map_lookup_elem(&ct_state, &key);
	if (st) {
		__u8 old = st->tcp_state;

		/* A new entry at a reused address starts in SYN_SENT; only then
		 * is the fingerprint worth its reads (a freed entry that we saw
		 * in SYN_SENT too, e.g. a dropped SYN, would look unchanged). */
		bool reused = (old != tcp_state || tcp_state == CT_TCP_SYN_SENT) &&
			      st->fp != fingerprint(ct, fast);

		if (!reused && old == tcp_state && st->status == edge)
			return NF_ACCEPT; /* the per-packet fast path */
		if (reused) {
			/* The address now belongs to a new entry: the old one was
			 * freed without our seeing it end. Start over. */
			if (tcp_state == CT_TCP_TIME_WAIT || tcp_state == CT_TCP_CLOSE) {
				if (!bpf_map_delete_elem(&ct_state, &key))
					live_add(-1);
				return NF_ACCEPT;
			}
			st->fp = fingerprint(ct, fast);
			st->tcp_state = tcp_state;
			st->status = edge;
			emit(ctx, ct, CT_EV_NEW, tcp_state, CT_TCP_NONE, status, fast);
			return NF_ACCEPT;
		}
		if (tcp_state == CT_TCP_TIME_WAIT || tcp_state == CT_TCP_CLOSE) {
			/* Delete first: of two CPUs racing here only one wins the
			 * delete, so the end is reported once. */
			if (bpf_map_delete_elem(&ct_state, &key))
				return NF_ACCEPT;
			live_add(-1);
			emit(ctx, ct, CT_EV_DESTROY, tcp_state, old, status, fast);
			return NF_ACCEPT;
		}
		/* Racing CPUs may both report the same change; harmless. */
		st->tcp_state = tcp_state;
		st->status = edge;
		emit(ctx, ct, CT_EV_UPDATE, tcp_state, old, status, fast);
		return NF_ACCEPT;
	}

	/* First sight. An entry already closing is the tail of one we reported
	 * (its DESTROY deleted the state), or one not worth starting to follow. */
	if (tcp_state == CT_TCP_TIME_WAIT || tcp_state == CT_TCP_CLOSE)
		return NF_ACCEPT;
	fresh.tcp_state = tcp_state;
	fresh.status = edge;
	fresh.fp = fingerprint(ct, fast);
	/* BPF_NOEXIST: of two CPUs seeing the first packets, one reports NEW. */
	if (bpf_map_update_elem(&ct_state, &key, &fresh, BPF_NOEXIST)) {
		if (bpf_map_lookup_elem(&ct_state, &key))
			return NF_ACCEPT; /* lost the race: the other CPU reported it */
		/* An LRU hash evicts instead of failing; failure means it could
		 * not even evict (memory pressure). */
		cs_count(&ct_counters, CT_CNT_MAP_FULL);
		emit(ctx, ct, CT_EV_NEW, tcp_state, CT_TCP_NONE, status, fast);
		return NF_ACCEPT;
	}
	/* The LRU evicted an entry to make room iff we were already at
	 * capacity (approximate: the LRU's per-CPU free lists may evict a
	 * little before the map is exactly full, and entries the kernel
	 * evicted are not subtracted, so once full every insert counts). */
	if (live_get() >= CT_MAP_ENTRIES)
		cs_count(&ct_counters, CT_CNT_EVICTIONS);
	else
		live_add(1);
	emit(ctx, ct, CT_EV_NEW, tcp_state, CT_TCP_NONE, status, fast);
	return NF_ACCEPT;
}

/*
 * Declared with `?` (not loaded by default) under a section name libbpf 1.1
 * knows: libbpf 1.1 has no SEC("netfilter"). The loader enables one of the two,
 * and sets the program type (BPF_PROG_TYPE_NETFILTER) and expected attach
 * type (BPF_NETFILTER) itself.
 */
SEC("?tc")
int ct_hook(struct bpf_nf_ctx *ctx)
{
	return handle(ctx, true);
}

SEC("?tc")
int ct_hook_probe(struct bpf_nf_ctx *ctx)
{
	return handle(ctx, false);
}
