// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * TCP connection lifecycle, per socket.
 *
 * inet_sock_set_state tells every state change of every TCP socket. Per-socket
 * state (start, connect latency, owner, CLOSE_WAIT entry, close cause) lives in
 * BPF socket storage and dies with the socket. Every connection is counted here,
 * per cgroup (cg_counts: opened, closed by cause, refused, timeouts, resets, bytes,
 * a histogram of connect times) and per remote (remote_counts, bounded): healthy
 * traffic needs no event, and no lost event can make a count wrong. Sockets in
 * CLOSE_WAIT sit in cw_socks while they are there, for user space to time.
 *
 * Only edges leave the kernel, on two ring buffers: problems (`events`: connects
 * that failed, resets, aborts, SYN retransmits, sockets older than us, sockets user
 * space keeps state for) and, with --connections all, the closes of healthy
 * connections (`conn_events`), sampled when user space falls behind, so that a
 * flood of those can never crowd a problem out.
 *
 * Each hook has one handler and two thin wrappers: tp_btf (preferred, socket
 * storage) and raw_tp (fallback where tp_btf cannot attach; raw_tp programs may
 * not use socket storage, so state goes to a bounded hash keyed by the socket
 * address and a full map is counted). The loader picks one set at run time.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "conn.h"
#include "compat.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Load-time options (rodata): the verifier prunes what they switch off. */
const volatile __u16 filter_port = 0;    /* 0: every port */
const volatile __u8 conn_mode = CS_CONN_ALL;     /* enum cs_conn_mode */
const volatile __u64 sample_above = 4 * 1024 * 1024; /* conn_events backlog that starts sampling */
/* Problems only: reset records per second per CPU (CONNSCOPE_RESET_RATE; 0: no
 * limit). A storm of resets is counted exactly in the maps; its records are a
 * sample, the rest counted in sampled_out. */
const volatile __u64 reset_rate = 1000;
const volatile __u16 eph_lo = 32768, eph_hi = 60999; /* ip_local_port_range: guesses the side */
const volatile __u64 cw_threshold_ns = 5000000000ull; /* --close-wait-threshold */
/* A jiffy in microseconds (the loader reads it from CLOCK_MONOTONIC_COARSE's
 * resolution); 0: unknown, and no idle time is given. */
const volatile __u32 tick_us = 0;
/* Lean mode (problems only, tp_btf): a healthy connection keeps no socket storage.
 * Its counts come from the socket itself at ESTABLISHED and CLOSE, its connect's
 * owner and start from the `births` slot; storage is made only for a socket with
 * something to tell (a SYN retransmit, a RST sent while open, TLS or HTTP/2). */
const volatile bool lean = false;

/* Set by user space once `preexisting` holds the start-up snapshot's cookies:
 * only then can a socket without storage be told from one older than connscope,
 * so until then every socket gets storage as without lean. */
__u32 lean_on = 0;
/* The snapshot's lowest and highest cookie (empty: lo > hi, no lookup at all). */
__u64 preexist_lo = 1, preexist_hi = 0;

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sk_info);
} sk_info_storage SEC(".maps");

/* raw_tp fallback only: keyed by the socket's kernel address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct sk_info);
} sk_info_hash SEC(".maps");

/* Problems: findings are made of these, and they are never sampled. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

/* Healthy closes, for connection records (--connections all). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} conn_events SEC(".maps");

#include "cg_counts.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192);
	__type(key, struct cs_remote_key);
	__type(value, struct cs_remote_counts);
} remote_counts SEC(".maps");

/* Sockets in CLOSE_WAIT now, by cookie: their edge as it was when they entered
 * it (owner updated when learnt). User space reads it to time them. */
/* Preallocated (3.4 MB): an entry comes and goes with every passive close, and
 * the allocator of a non-preallocated map refills itself from an irq_work whose
 * interrupt lets the network softirq run inside this program, whose nested run
 * the kernel then skips (a missed run, a lost count). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct cs_event);
} cw_socks SEC(".maps");

/* CLOSE_WAIT sockets, the common case (see CS_CW_SLOTS): an array slot costs no
 * lock, no allocation and no free list, where the hash below costs all three at
 * entry and again at the close, on every passive close of the node. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, CS_CW_SLOTS);
	__type(key, __u32);
	__type(value, struct cs_event);
} cw_slots SEC(".maps");

/* Established connections that closed without a FIN (an abort): the RST that
 * follows their CLOSE moves them from cause "none" to rst_out. By socket address;
 * LRU, so an abort with no RST after it cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct cs_remote_key);
} aborts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Listening sockets and their owners (struct cs_listener in conn.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CS_LISTENERS);
	__type(key, struct cs_listen_key);
	__type(value, struct cs_listener);
} listeners SEC(".maps");

/* Lean mode: see struct cs_birth. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CS_BIRTHS);
	__type(key, __u32);
	__type(value, struct cs_birth);
} births SEC(".maps");

/* Lean mode: cookies of the sockets open before connscope attached (user space
 * fills it from its sock_diag snapshot): what socket storage made at birth tells
 * otherwise. An entry goes at the socket's close. bpf/tls.bpf.c reads it too. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, __u8);
} preexisting SEC(".maps");

/* The reset records' token bucket, per CPU (see reset_rate). */
struct reset_bucket {
	__u64 last_ns;
	__u64 tokens;
	/* The last closes whose records crossed: an abort's RST amends its record
	 * only if it did. Several, since the RST goes out after the close and, on
	 * loopback, the peer's own close may run on this CPU in between. */
	__u64 crossed[4];
	__u32 next;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct reset_bucket);
} reset_buckets SEC(".maps");

/* Which store a wrapper uses; a compile-time constant in each wrapper, so the
 * other store's helper calls never reach that program. */
enum store { STORE_SK, STORE_HASH };

/*
 * Reading kernel fields. tp_btf hands the program BTF-typed pointers: plain
 * loads (CO-RE relocated, faults read as zero) cost a few nanoseconds. raw_tp
 * hands bare addresses, which only bpf_probe_read_kernel may follow. `st` is a
 * constant in each wrapper, so the compiler keeps only one of the two.
 */
#define RD(st, ptr, field) ((st) == STORE_SK ? (ptr)->field : BPF_CORE_READ(ptr, field))

static __always_inline struct tcp_sock *tcp_of(struct sock *sk, enum store st)
{
	/* A BTF pointer to struct sock may not be read past sizeof(struct sock). */
	if (st == STORE_SK)
		return bpf_skc_to_tcp_sock(sk);
	return (struct tcp_sock *)sk;
}

static __always_inline struct cs_cg_counts *cg_counts_of(__u64 cgroup_id)
{
	return cs_cg_counts_of(cgroup_id, &counters, CS_CNT_MAP_FULL);
}

static __always_inline void count_established(__u64 cgroup_id, __u32 connect_us)
{
	struct cs_cg_counts *c = cg_counts_of(cgroup_id);

	if (!c)
		return;
	c->opened++;
	c->connect_us[cs_log2_slot(connect_us, CS_HIST_SLOTS) & (CS_HIST_SLOTS - 1)]++;
	c->connect_us_sum += connect_us;
}

static __always_inline struct sk_info *info_get(struct sock *sk, enum store st, bool create)
{
	struct sk_info *info;

	if (st == STORE_SK) {
		info = bpf_sk_storage_get(&sk_info_storage, sk, NULL,
					  create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
		if (!info && create)
			cs_count(&counters, CS_CNT_MAP_FULL);
		return info;
	}

	__u64 key = (__u64)sk;
	struct sk_info zero = {};

	if (!create)
		return bpf_map_lookup_elem(&sk_info_hash, &key);
	info = cs_lookup_or_init(&sk_info_hash, &key, &zero);
	if (!info)
		cs_count(&counters, CS_CNT_MAP_FULL);
	return info;
}

static __always_inline void info_delete(struct sock *sk, enum store st)
{
	if (st == STORE_SK) {
		/* Nothing to do: socket storage is freed with the socket, in
		 * one go with the rest of it. Deleting here would unlink and
		 * RCU-free it separately, for no gain (a reconnect on the same
		 * socket starts from a cleared record at SYN_SENT). */
	} else {
		__u64 key = (__u64)sk;

		bpf_map_delete_elem(&sk_info_hash, &key);
	}
}

static __always_inline __u64 sk_cookie(struct sock *sk, enum store st)
{
	if (st == STORE_SK)
		return bpf_get_socket_cookie(sk);
	/* raw_tp cannot call the helper; the cookie is set once sock_diag or
	 * anything else asked for it, otherwise the address stands in. */
	__u64 c = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);

	return c ? c : (__u64)sk;
}

static __always_inline __u64 sk_cgroup_id(struct sock *sk, enum store st)
{
	if (st == STORE_SK)
		return sk->sk_cgrp_data.cgroup->kn->id;
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

static __always_inline __u64 sk_ino(struct sock *sk, enum store st)
{
	if (st == STORE_SK)
		return sk->sk_socket->file->f_inode->i_ino;
	return BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
}

static __always_inline bool port_filtered(struct sock *sk, enum store st)
{
	if (!filter_port)
		return false;
	__u16 sport = RD(st, sk, __sk_common.skc_num);
	__u16 dport = bpf_ntohs(RD(st, sk, __sk_common.skc_dport));

	return sport != filter_port && dport != filter_port;
}

/*
 * Payload bytes, as an application counts them. tcp_sock's RFC 4898 counters
 * count sequence space, which includes the SYN (a client's, once acked) and the
 * FINs: take those out. SOCK_DONE is set when the peer's FIN arrives (tcp_fin);
 * our FIN is out once we are past ESTABLISHED/CLOSE_WAIT, and acked when
 * snd_una reached write_seq.
 */
static __always_inline void payload_bytes(struct sock *sk, struct tcp_sock *tp,
					  struct sk_info *info, int oldstate, __u64 *in,
					  __u64 *out, enum store st)
{
	__u64 rx = RD(st, tp, bytes_received);
	__u64 tx = RD(st, tp, bytes_acked);
	unsigned long flags = RD(st, sk, __sk_common.skc_flags);
	bool fin_out = oldstate == CS_TCP_FIN_WAIT1 || oldstate == CS_TCP_FIN_WAIT2 ||
		       oldstate == CS_TCP_CLOSING || oldstate == CS_TCP_LAST_ACK;

	if ((flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE))) && rx)
		rx--;
	if (info->side == CS_SIDE_CLIENT && (info->flags & CS_F_WAS_EST) && tx)
		tx--;
	if (fin_out && tx && RD(st, tp, snd_una) == RD(st, tp, write_seq))
		tx--;
	*in = rx;
	*out = tx;
}

/* The kernel zeroes the local port while it tears a socket down; keep it. */
static __always_inline void remember_port(struct sock *sk, struct sk_info *info, enum store st)
{
	__u16 p = RD(st, sk, __sk_common.skc_num);

	if (p)
		info->sport = p;
}

static __always_inline void read_addrs(struct sock *sk, __u16 family, __u8 *saddr,
					__u8 *daddr, enum store st)
{
	if (family == AF_INET6) {
		if (st == STORE_SK) {
			__builtin_memcpy(saddr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
			__builtin_memcpy(daddr, &sk->__sk_common.skc_v6_daddr, 16);
		} else {
			BPF_CORE_READ_INTO((__u8(*)[16])saddr, sk,
					   __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
			BPF_CORE_READ_INTO((__u8(*)[16])daddr, sk,
					   __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		}
	} else {
		__builtin_memset(saddr, 0, 16);
		__builtin_memset(daddr, 0, 16);
		*(__u32 *)saddr = RD(st, sk, __sk_common.skc_rcv_saddr);
		*(__u32 *)daddr = RD(st, sk, __sk_common.skc_daddr);
	}
}

/*
 * How long the connection had received nothing, data or ACK, when it ended: the
 * last data segment's time (icsk_ack.lrcvtime) or the last ACK's (rcv_tstamp),
 * whichever is later, in jiffies. A reset in answer to a write on a connection a
 * middlebox forgot arrives after its idle time (the reset itself moves neither).
 */
static __always_inline __u32 idle_ms(struct tcp_sock *tp, enum store st)
{
	__u32 now = (__u32)bpf_jiffies64(), last, ack;

	if (!tick_us)
		return CS_IDLE_UNKNOWN;
	last = RD(st, tp, inet_conn.icsk_ack.lrcvtime);
	ack = RD(st, tp, rcv_tstamp);
	if ((__s32)(ack - last) > 0)
		last = ack;
	if ((__s32)(now - last) <= 0)
		return 0;
	return (__u32)(((__u64)(now - last) * tick_us) / 1000) & 0x7fffffff;
}

/* An edge, as it crosses to user space (or sits in cw_socks). */
static __always_inline void fill_event(struct sock *sk, struct tcp_sock *tp, struct sk_info *info,
				       struct cs_event *e, __u8 type, int oldstate, int newstate,
				       enum store st)
{
	e->ts_ns = bpf_ktime_get_ns();
	e->cookie = sk_cookie(sk, st);
	e->start_ns = info->start_ns;
	e->est_ns = info->est_ns;
	e->close_wait_ns = info->close_wait_ns;
	e->cgroup_id = info->cgroup_id;
	e->ino = info->ino ? info->ino : sk_ino(sk, st);
	payload_bytes(sk, tp, info, oldstate, &e->bytes_in, &e->bytes_out, st);
	if (st == STORE_SK)
		e->netns = sk->__sk_common.skc_net.net->ns.inum;
	else
		e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	e->pid = info->pid;
	e->connect_us = info->connect_us;
	e->retrans = RD(st, tp, total_retrans);
	e->idle_ms = newstate == CS_TCP_CLOSE ? idle_ms(tp, st) : 0;
	e->_pad = 0;
	e->family = RD(st, sk, __sk_common.skc_family);
	e->sport = info->sport ? info->sport : RD(st, sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(RD(st, sk, __sk_common.skc_dport));
	e->syn_retrans = info->syn_retrans;
	e->sk_err = (__u16)RD(st, sk, sk_err);
	e->type = type;
	e->side = info->side;
	e->oldstate = oldstate;
	e->newstate = newstate;
	e->close_cause = info->close_cause;
	e->flags = info->flags;
	read_addrs(sk, e->family, e->saddr, e->daddr, st);
	__builtin_memcpy(e->comm, info->comm, sizeof(e->comm));
}

/* Send an edge on ring (events or conn_events); false if the ring was full. */
static __always_inline bool emit_on(void *ring, struct sock *sk, struct sk_info *info, __u8 type,
				    int oldstate, int newstate, enum store st)
{
	struct tcp_sock *tp = tcp_of(sk, st);
	struct cs_event *e;

	if (!tp)
		return true;
	e = bpf_ringbuf_reserve(ring, sizeof(*e), 0);
	if (!e)
		return false;
	fill_event(sk, tp, info, e, type, oldstate, newstate, st);
	/* Never a wake-up: user space drains every 100 ms by itself, and a wake-up
	 * is an irq_work whose interrupt, taken inside this program, lets the
	 * network softirq run a nested state change here, which the kernel skips
	 * (a missed run: a lost edge, and a lost count). */
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return true;
}

/* A problem edge: never sampled; a full ring is a lost event. */
static __always_inline void emit(struct sock *sk, struct sk_info *info, __u8 type,
				 int oldstate, int newstate, enum store st)
{
	if (emit_on(&events, sk, info, type, oldstate, newstate, st))
		cs_count(&counters, CS_CNT_EVENTS);
	else
		cs_count(&counters, CS_CNT_LOST);
}

static __always_inline struct reset_bucket *reset_bucket(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&reset_buckets, &zero);
}

/* Whether a reset record may cross now (problems only): one token each, refilled
 * at reset_rate a second up to a second's worth. */
static __always_inline bool reset_take(__u64 cookie)
{
	struct reset_bucket *b;
	__u64 now, dt;

	if (conn_mode != CS_CONN_PROBLEMS || !reset_rate)
		return true;
	b = reset_bucket();
	if (!b)
		return true;
	now = bpf_ktime_get_ns();
	dt = now - b->last_ns;
	if (dt > 1000000000ull)
		dt = 1000000000ull;
	if (dt * reset_rate >= 1000000000ull) {
		b->tokens += dt * reset_rate / 1000000000ull;
		if (b->tokens > reset_rate)
			b->tokens = reset_rate;
		b->last_ns = now;
	}
	if (!b->tokens)
		return false;
	b->tokens--;
	b->crossed[b->next & 3] = cookie;
	b->next++;
	return true;
}

/* Whether the record of the abort with this cookie crossed (problems only), so
 * that its RST has a record to amend. */
static __always_inline bool reset_crossed(__u64 cookie)
{
	struct reset_bucket *b = reset_bucket();

	return !b || b->crossed[0] == cookie || b->crossed[1] == cookie ||
	       b->crossed[2] == cookie || b->crossed[3] == cookie;
}

/* A healthy close (or a reset, reset_only), for its connection record: past a
 * backlog of sample_above bytes, one in eight is sent and the rest counted as
 * sampled out (their counts are in the maps already). */
static __always_inline void emit_healthy(struct sock *sk, struct sk_info *info, int oldstate,
					 int newstate, enum store st)
{
	/* A reset in problems mode (a healthy close does not get here then). */
	if (conn_mode == CS_CONN_PROBLEMS && !reset_take(sk_cookie(sk, st))) {
		cs_count(&counters, CS_CNT_SAMPLED_OUT);
		return;
	}
	if (bpf_ringbuf_query(&conn_events, BPF_RB_AVAIL_DATA) >= sample_above &&
	    (bpf_get_prandom_u32() & 7)) {
		cs_count(&counters, CS_CNT_SAMPLED_OUT);
		return;
	}
	if (emit_on(&conn_events, sk, info, CS_EV_CLOSE, oldstate, newstate, st))
		cs_count(&counters, CS_CNT_CONN_EVENTS);
	else
		cs_count(&counters, CS_CNT_SAMPLED_OUT);
}

static __always_inline bool in_eph(__u16 port)
{
	return port >= eph_lo && port <= eph_hi;
}

/* The side of a socket not seen being born: as user space guesses it. */
static __always_inline __u8 side_of(struct sk_info *info, __u16 sport, __u16 dport)
{
	if (info->side != CS_SIDE_UNKNOWN)
		return info->side;
	if (in_eph(sport) != in_eph(dport))
		return in_eph(sport) ? CS_SIDE_CLIENT : CS_SIDE_SERVER;
	return sport < dport ? CS_SIDE_SERVER : CS_SIDE_CLIENT;
}

/* A connection ended: its counts, in its cgroup and under its remote. */
static __always_inline void count_close(struct sock *sk, struct sk_info *info, int oldstate,
					enum store st)
{
	struct cs_cg_counts *c = cg_counts_of(info->cgroup_id);
	struct cs_remote_key k = {};
	struct cs_remote_counts *r, zero = {};
	__u8 saddr[16];
	__u16 sport = info->sport ? info->sport : RD(st, sk, __sk_common.skc_num);
	__u16 dport = bpf_ntohs(RD(st, sk, __sk_common.skc_dport));
	bool client = side_of(info, sport, dport) == CS_SIDE_CLIENT;
	bool est = info->flags & CS_F_WAS_EST;
	bool reset = est && (info->close_cause == CS_CLOSE_RST_IN ||
			     info->close_cause == CS_CLOSE_RST_OUT);
	__u8 outcome = 0;  /* 0 established, 1 refused, 2 timeout, 3 failed */
	__u16 err = (__u16)RD(st, sk, sk_err);

	if (!est) {
		if (client && (err == 111 /* ECONNREFUSED */ || (info->flags & CS_F_RST_IN)))
			outcome = 1;
		else if (client && (err == 110 /* ETIMEDOUT */ || info->syn_retrans))
			outcome = 2;
		else
			outcome = 3;
	}
	if (c) {
		if (est) {
			struct tcp_sock *tp = tcp_of(sk, st);
			__u64 in = 0, out = 0;

			c->closed++;
			if (info->flags & CS_F_MIDWAY)
				c->closed_midway++;
			c->close_cause[info->close_cause < 5 ? info->close_cause : 0]++;
			if (tp) {
				payload_bytes(sk, tp, info, oldstate, &in, &out, st);
				c->bytes_in += in;
				c->bytes_out += out;
			}
		} else if (outcome == 1) {
			c->refused++;
		} else if (outcome == 2) {
			c->timeouts++;
		} else {
			c->failed++;
		}
		if (reset)
			c->resets++;
	}
	k.cgroup_id = info->cgroup_id;
	k.family = RD(st, sk, __sk_common.skc_family);
	k.port = client ? dport : 0;
	read_addrs(sk, k.family, saddr, k.addr, st);
	r = cs_lookup_or_init(&remote_counts, &k, &zero);
	if (!r) {
		/* Full: the cgroup's "other" entry takes it. */
		__builtin_memset(&k, 0, sizeof(k));
		k.cgroup_id = info->cgroup_id;
		r = cs_lookup_or_init(&remote_counts, &k, &zero);
		if (!r) {
			cs_count(&counters, CS_CNT_REMOTE_FULL);
			return;
		}
	}
	r->conns++;
	if (outcome == 1)
		r->refused++;
	else if (outcome == 2)
		r->timeouts++;
	if (reset)
		r->resets++;
}

/* A reset (either way) or an abort of an established connection, and nothing
 * else: its record is a problem's, but a storm of them is sampled like healthy
 * closes (counted in sampled_out): the pod's exact reset counts are in cg_counts
 * and remote_counts, and the problem ring stays for what must not be lost. */
static __always_inline bool reset_only(struct sk_info *info, __u64 now)
{
	if (!(info->flags & CS_F_WAS_EST) || (info->flags & (CS_F_MIDWAY | CS_F_HELD)) ||
	    info->syn_retrans)
		return false;
	if (info->close_wait_ns && now - info->close_wait_ns >= cw_threshold_ns)
		return false;
	return true;
}

/* What user space must hear of at the close: anything it would report, or that it
 * keeps state for. A healthy close is counted, and crosses only for its record. */
static __always_inline bool is_problem(struct sk_info *info, __u64 now)
{
	if (info->close_wait_ns && now - info->close_wait_ns >= cw_threshold_ns)
		return true;   /* it was stuck in CLOSE_WAIT */
	if (!(info->flags & CS_F_WAS_EST))
		return true;   /* a connect or handshake that failed */
	if (info->flags & (CS_F_RST_IN | CS_F_RST_OUT | CS_F_MIDWAY | CS_F_HELD))
		return true;   /* resets; sockets older than us; sockets with TLS/HTTP/2 state */
	if (info->close_cause == CS_CLOSE_NONE)
		return true;   /* an abort: its RST comes after the close */
	return info->syn_retrans != 0;  /* user space watched its connect */
}

static __always_inline __u16 sk_protocol_of(struct sock *sk, enum store st)
{
	if (st == STORE_SK)
		return sk->sk_protocol;
	return sk_protocol_compat(sk);
}

static __always_inline void set_cause(struct sk_info *info, __u8 cause)
{
	if (info->close_cause == CS_CLOSE_NONE)
		info->close_cause = cause;
}

static __always_inline void own_by_current(struct sk_info *info)
{
	info->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(info->comm, sizeof(info->comm));
}

static __always_inline struct cs_event *cw_slot(__u64 cookie)
{
	__u32 i = (__u32)cookie & (CS_CW_SLOTS - 1);

	return bpf_map_lookup_elem(&cw_slots, &i);
}

/* A CLOSE_WAIT socket's entry: in its slot, or in the hash. */
static __always_inline struct cs_event *cw_find(__u64 cookie)
{
	struct cs_event *e = cw_slot(cookie);

	if (e && e->cookie == cookie && e->type)
		return e;
	return bpf_map_lookup_elem(&cw_socks, &cookie);
}

/* The socket left CLOSE_WAIT (its close; the same socket's entry and exit are
 * serialized by the socket's lock). */
static __always_inline void cw_remove(__u64 cookie)
{
	struct cs_event *e = cw_slot(cookie);

	if (e && e->cookie == cookie) {
		e->type = 0;
		asm volatile("" ::: "memory");
		e->cookie = 0;
		return;
	}
	bpf_map_delete_elem(&cw_socks, &cookie);
}

/* The peer's FIN came: the socket waits in its cw_slots slot (or, that taken,
 * in cw_socks) for its close; user space times it there. If both are full, an
 * edge tells user space instead. */
static __always_inline void cw_enter(struct sock *sk, struct sk_info *info, int oldstate,
				     enum store st)
{
	struct tcp_sock *tp = tcp_of(sk, st);
	struct cs_event e, *slot;
	__u64 cookie;

	if (!tp)
		return;
	cookie = sk_cookie(sk, st);
	slot = cw_slot(cookie);
	if (slot && __sync_val_compare_and_swap(&slot->cookie, 0, cookie) == 0) {
		fill_event(sk, tp, info, slot, 0, oldstate, CS_TCP_CLOSE_WAIT, st);
		asm volatile("" ::: "memory");
		slot->type = CS_EV_CLOSE_WAIT;  /* complete: user space may take it */
		return;
	}
	fill_event(sk, tp, info, &e, CS_EV_CLOSE_WAIT, oldstate, CS_TCP_CLOSE_WAIT, st);
	if (bpf_map_update_elem(&cw_socks, &e.cookie, &e, BPF_ANY)) {
		cs_count(&counters, CS_CNT_CW_FULL);
		emit(sk, info, CS_EV_CLOSE_WAIT, oldstate, CS_TCP_CLOSE_WAIT, st);
	}
}

/* An established connection closed without a FIN: the RST it sends next (an
 * abort) is counted against its cgroup and remote then. */
static __always_inline void abort_note(struct sock *sk, struct sk_info *info, enum store st)
{
	struct cs_remote_key k = {};
	__u8 saddr[16];
	__u16 sport = info->sport ? info->sport : RD(st, sk, __sk_common.skc_num);
	__u16 dport = bpf_ntohs(RD(st, sk, __sk_common.skc_dport));
	__u64 key = (__u64)sk;

	k.cgroup_id = info->cgroup_id;
	k.family = RD(st, sk, __sk_common.skc_family);
	k.port = side_of(info, sport, dport) == CS_SIDE_CLIENT ? dport : 0;
	read_addrs(sk, k.family, saddr, k.addr, st);
	bpf_map_update_elem(&aborts, &key, &k, BPF_ANY);
}

/* The RST of an abort went out: it was counted closed with cause "none". */
static __always_inline void abort_counted(struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct cs_remote_key *k = bpf_map_lookup_elem(&aborts, &key), kk;
	struct cs_cg_counts *c;
	struct cs_remote_counts *r;

	if (!k)
		return;
	kk = *k;
	bpf_map_delete_elem(&aborts, &key);
	c = bpf_map_lookup_elem(&cg_counts, &kk.cgroup_id);
	if (c) {
		c->close_cause[CS_CLOSE_NONE]--;
		c->close_cause[CS_CLOSE_RST_OUT]++;
		c->resets++;
	}
	r = bpf_map_lookup_elem(&remote_counts, &kk);
	if (r)
		r->resets++;
}

/* ---- lean mode -------------------------------------------------------------- */

/* A socket's births slot, by its cookie: cookies are handed out in sequence
 * (per CPU, in batches), so a slot is taken again only CS_BIRTHS cookies later. */
static __always_inline struct cs_birth *birth_of(__u64 cookie)
{
	__u32 i = (__u32)cookie & (CS_BIRTHS - 1);

	return bpf_map_lookup_elem(&births, &i);
}

/* The births slot, if it still holds this socket's birth. */
static __always_inline struct cs_birth *birth_mine(__u64 cookie)
{
	struct cs_birth *b = cookie ? birth_of(cookie) : NULL;

	return b && b->tag == cookie ? b : NULL;
}

/* The local port: the kernel clears inet_num at CLOSE, inet_sport stays. */
static __always_inline __u16 lean_sport(struct sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u16 p = sk->__sk_common.skc_num;

	if (!p && tp)
		p = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	return p;
}

static __always_inline bool was_established(int state)
{
	return state == CS_TCP_ESTABLISHED || state == CS_TCP_CLOSE_WAIT ||
	       state == CS_TCP_FIN_WAIT1 || state == CS_TCP_FIN_WAIT2 ||
	       state == CS_TCP_LAST_ACK || state == CS_TCP_CLOSING || state == CS_TCP_TIME_WAIT;
}

/*
 * What socket storage would hold for a socket leaving `oldstate`, from the
 * socket itself: the first step out of ESTABLISHED gave the cause, and the state
 * before this change says which it was; a RST received sets sk_err just before
 * the CLOSE (ECONNRESET, or EPIPE in CLOSE_WAIT, ECONNREFUSED in SYN_SENT). The
 * side is the births slot's (a connect) or told by the ports. At the close, a
 * socket of the start-up snapshot is taken out of `preexisting` (MIDWAY).
 */
static __noinline void lean_fill(struct sock *sk, struct sk_info *info, int oldstate,
				      bool closing)
{
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	struct cs_birth *b = birth_mine(cookie);
	__u16 err = (__u16)sk->sk_err;
	__u16 dport = bpf_ntohs(sk->__sk_common.skc_dport);

	__builtin_memset(info, 0, sizeof(*info));
	/* (No inode: a record's fill_event reads it, and counts do not need it.) */
	info->cgroup_id = sk_cgroup_id(sk, STORE_SK);
	info->sport = lean_sport(sk);
	if (b) {
		info->side = b->side;
		info->start_ns = b->start_ns;
		info->connect_us = b->connect_us;
		if (b->connect_us)
			info->est_ns = b->start_ns + b->connect_us * 1000ull;
		info->pid = b->pid;
		__builtin_memcpy(info->comm, b->comm, sizeof(info->comm));
	} else {
		info->side = side_of(info, info->sport, dport);
	}
	if (was_established(oldstate))
		info->flags |= CS_F_WAS_EST;
	if (oldstate == CS_TCP_CLOSE_WAIT || oldstate == CS_TCP_LAST_ACK)
		info->close_cause = CS_CLOSE_PEER_FIN;
	else if (oldstate == CS_TCP_FIN_WAIT1 || oldstate == CS_TCP_FIN_WAIT2 ||
		 oldstate == CS_TCP_CLOSING || oldstate == CS_TCP_TIME_WAIT)
		info->close_cause = CS_CLOSE_LOCAL_FIN;
	if (closing && (err == 104 /* ECONNRESET */ || err == 32 /* EPIPE */ ||
			(err == 111 /* ECONNREFUSED */ && oldstate == CS_TCP_SYN_SENT))) {
		info->flags |= CS_F_RST_IN;
		if (oldstate == CS_TCP_ESTABLISHED)
			info->close_cause = CS_CLOSE_RST_IN;
	}
	/* Cookies are handed out in rising batches: one outside the snapshot's
	 * range is no snapshot socket's, and needs no lookup. */
	if (cookie >= preexist_lo && cookie <= preexist_hi) {
		if (bpf_map_lookup_elem(&preexisting, &cookie)) {
			info->flags |= CS_F_MIDWAY;
			info->start_ns = 0;
			if (closing)
				bpf_map_delete_elem(&preexisting, &cookie);
		}
	}
}

/* Storage made after the birth (CS_F_LATE, or made here): fill in what the
 * socket itself tells, keeping what was set already. */
static __always_inline void lean_complete(struct sock *sk, struct sk_info *info, int oldstate,
					  bool closing)
{
	struct sk_info d;

	lean_fill(sk, &d, oldstate, closing);
	info->flags = (info->flags & ~CS_F_LATE) | d.flags;
	if (!info->cgroup_id)
		info->cgroup_id = d.cgroup_id;
	if (info->side == CS_SIDE_UNKNOWN)
		info->side = d.side;
	if (!info->start_ns)
		info->start_ns = d.start_ns;
	if (!info->est_ns)
		info->est_ns = d.est_ns;
	if (!info->connect_us)
		info->connect_us = d.connect_us;
	if (!info->ino)
		info->ino = d.ino;
	if (!info->sport)
		info->sport = d.sport;
	if (!info->pid) {
		info->pid = d.pid;
		__builtin_memcpy(info->comm, d.comm, sizeof(info->comm));
	}
	set_cause(info, d.close_cause);
}

/* Storage for a socket with something to tell (lean mode): made now, completed. */
static __always_inline struct sk_info *lean_adopt(struct sock *sk, int state)
{
	struct sk_info *info = bpf_sk_storage_get(&sk_info_storage, sk, NULL,
						  BPF_SK_STORAGE_GET_F_CREATE);

	if (!info) {
		cs_count(&counters, CS_CNT_MAP_FULL);
		return NULL;
	}
	if (!info->cgroup_id || (info->flags & CS_F_LATE))
		lean_complete(sk, info, state, false);
	return info;
}

/* A listener's child that dies in SYN_RECV lost the race for its request: two
 * CPUs took the handshake's last ACK (or the ACK and the first data) at once,
 * each made a child, and the loser is closed while the winner goes on as the
 * connection. No connection failed: counted, not reported. (A TCP Fast Open
 * child is the one child that lives in SYN_RECV, and may really fail.) */
static __always_inline bool child_lost_race(struct sock *sk, enum store st)
{
	struct tcp_sock *tp = tcp_of(sk, st);

	if (!tp || RD(st, tp, fastopen_rsk))
		return false;
	cs_count(&counters, CS_CNT_CHILD_RACE);
	return true;
}

/* A connection ended: its counts, the abort its RST will amend, and its record
 * if it is a problem (or every record, with --connections all). */
static __always_inline void close_report(struct sock *sk, struct sk_info *info, int oldstate,
					 __u64 now, enum store st)
{
	bool problem;

	count_close(sk, info, oldstate, st);
	if ((info->flags & CS_F_WAS_EST) && info->close_cause == CS_CLOSE_NONE)
		abort_note(sk, info, st);
	problem = is_problem(info, now);
	if (problem && !reset_only(info, now))
		emit(sk, info, CS_EV_CLOSE, oldstate, CS_TCP_CLOSE, st);
	else if (problem || conn_mode == CS_CONN_ALL)
		emit_healthy(sk, info, oldstate, CS_TCP_CLOSE, st);
}

/* The close of a socket without storage (lean mode). */
static __always_inline int lean_close(struct sock *sk, int oldstate)
{
	struct sk_info info;

	if (oldstate == CS_TCP_CLOSE)
		return 0;  /* never got anywhere */
	if (oldstate == CS_TCP_SYN_RECV && child_lost_race(sk, STORE_SK))
		return 0;
	lean_fill(sk, &info, oldstate, true);
	if (oldstate == CS_TCP_CLOSE_WAIT || oldstate == CS_TCP_LAST_ACK) {
		__u64 cookie = sk_cookie(sk, STORE_SK);
		struct cs_event *e = cw_find(cookie);

		if (e) {
			info.close_wait_ns = e->close_wait_ns;
			if (!info.pid) {
				info.pid = e->pid;
				__builtin_memcpy(info.comm, e->comm, sizeof(info.comm));
			}
			cw_remove(cookie);
		}
	}
	/* The clock only where a time is compared: CLOSE_WAIT's age. */
	close_report(sk, &info, oldstate, info.close_wait_ns ? bpf_ktime_get_ns() : 0,
		     STORE_SK);
	return 0;
}

/* A state change of a socket without storage (lean mode): counts, the births
 * slot, CLOSE_WAIT, and the close. */
static __always_inline int lean_state(struct sock *sk, int oldstate, int newstate)
{
	switch (newstate) {
	case CS_TCP_SYN_SENT: {
		/* connect(), in the caller's context. */
		__u64 cookie = bpf_get_socket_cookie(sk);
		struct cs_birth *b = birth_of(cookie);

		if (!b)
			return 0;
		b->tag = cookie;
		b->start_ns = bpf_ktime_get_ns();
		b->pid = bpf_get_current_pid_tgid() >> 32;
		b->connect_us = 0;
		b->side = CS_SIDE_CLIENT;
		bpf_get_current_comm(b->comm, sizeof(b->comm));
		return 0;
	}
	case CS_TCP_ESTABLISHED: {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		/* The first RTT sample is the handshake's: the SYN's (client) or
		 * the SYN-ACK's (server). */
		__u32 connect_us = tp ? tp->srtt_us >> 3 : 0;

		if (oldstate == CS_TCP_SYN_SENT) {
			struct cs_birth *b = birth_mine(sk->__sk_common.skc_cookie.counter);

			if (b && b->start_ns) {
				connect_us = (bpf_ktime_get_ns() - b->start_ns) / 1000;
				b->connect_us = connect_us ? connect_us : 1;
			}
		} else if (oldstate == CS_TCP_SYN_RECV) {
			/* A listener's child: its birth, for the record of a close
			 * that crosses (its start, and its handshake time). */
			__u64 cookie = bpf_get_socket_cookie(sk);
			struct cs_birth *b = birth_of(cookie);

			if (b) {
				b->tag = cookie;
				b->start_ns = bpf_ktime_get_ns() - connect_us * 1000ull;
				b->pid = 0;
				b->connect_us = connect_us ? connect_us : 1;
				b->side = CS_SIDE_SERVER;
				__builtin_memset(b->comm, 0, sizeof(b->comm));
			}
		}
		count_established(sk_cgroup_id(sk, STORE_SK), connect_us);
		return 0;
	}
	case CS_TCP_CLOSE_WAIT: {
		struct sk_info info;

		lean_fill(sk, &info, oldstate, false);
		info.close_wait_ns = bpf_ktime_get_ns();
		set_cause(&info, CS_CLOSE_PEER_FIN);
		cw_enter(sk, &info, oldstate, STORE_SK);
		return 0;
	}
	case CS_TCP_CLOSE:
		return lean_close(sk, oldstate);
	default:
		return 0;
	}
}

/* A listen() failed when its socket leaves LISTEN this soon, in the same process:
 * the port is in use (EADDRINUSE: the state is set before the port is taken). */
#define LISTEN_FAIL_NS 5000000ull

/* A socket starts listening (listen(), in its caller's context), or stops. The
 * entry stays when a listener closes (its connections may outlive it), unless the
 * listen() itself failed: then the port is given back to its owner before. */
static __always_inline int listener_note(struct sock *sk, enum store st, bool on)
{
	struct cs_listen_key k = { .port = RD(st, sk, __sk_common.skc_num) };
	struct cs_listener l = {}, *had;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 now = bpf_ktime_get_ns();

	if (st == STORE_SK)
		k.netns = sk->__sk_common.skc_net.net->ns.inum;
	else
		k.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	had = bpf_map_lookup_elem(&listeners, &k);
	if (!on) {
		if (had && had->pid == pid && had->prev_pid && now - had->at_ns < LISTEN_FAIL_NS) {
			had->pid = had->prev_pid;
			__builtin_memcpy(had->comm, had->prev_comm, sizeof(had->comm));
			had->prev_pid = 0;
		}
		return 0;
	}
	if (had && had->pid != pid) {
		l.prev_pid = had->pid;
		__builtin_memcpy(l.prev_comm, had->comm, sizeof(l.prev_comm));
	}
	l.pid = pid;
	l.at_ns = now;
	bpf_get_current_comm(l.comm, sizeof(l.comm));
	bpf_map_update_elem(&listeners, &k, &l, BPF_ANY);
	return 0;
}

/* One handler for every state change. */
static __always_inline int handle_set_state(struct sock *sk, int oldstate, int newstate,
					    enum store st)
{
	struct sk_info *info;
	__u64 now;

	if (sk_protocol_of(sk, st) != IPPROTO_TCP)
		return 0;
	/* Listeners are not connections: only who listens is kept. */
	if (oldstate == CS_TCP_LISTEN && newstate == CS_TCP_CLOSE)
		return listener_note(sk, st, false);
	if (newstate == CS_TCP_LISTEN)
		return listener_note(sk, st, true);
	if (port_filtered(sk, st))
		return 0;
	if (st == STORE_SK && lean) {
		info = bpf_sk_storage_get(&sk_info_storage, sk, NULL, 0);
		if (info && (info->flags & CS_F_LATE))
			lean_complete(sk, info, oldstate, newstate == CS_TCP_CLOSE);
		else if (!info && lean_on)
			return lean_state(sk, oldstate, newstate);
		/* A socket with storage (a connect may reuse one that has some),
		 * or the start-up window: the full path. */
	}
	/* Later steps of a close tell nothing new: the first step out of
	 * ESTABLISHED gave the cause, and CLOSE reports the end. Only a socket
	 * older than us, seen here first, goes on to get its state here: by
	 * CLOSE, the kernel has let go of its local port. */
	if (newstate == CS_TCP_FIN_WAIT2 || newstate == CS_TCP_CLOSING ||
	    newstate == CS_TCP_TIME_WAIT || newstate == CS_TCP_LAST_ACK) {
		info = info_get(sk, st, false);
		if (info) {
			/* LAST_ACK: close() after the peer's FIN, in the owner's
			 * context; name the owner of a socket that never read. */
			if (newstate == CS_TCP_LAST_ACK && !info->pid)
				own_by_current(info);
			return 0;
		}
	}

	/* The clock only where a time is kept (it is not free in a VM). */
	now = newstate == CS_TCP_FIN_WAIT1 ? 0 : bpf_ktime_get_ns();

	if (newstate == CS_TCP_SYN_SENT) {
		/* connect(): we run in the caller's context, so it owns the socket. */
		info = info_get(sk, st, true);
		if (!info)
			return 0;
		__builtin_memset(info, 0, sizeof(*info));
		info->start_ns = now;
		info->side = CS_SIDE_CLIENT;
		info->cgroup_id = sk_cgroup_id(sk, st);
		own_by_current(info);
		return 0;
	}
	if (newstate == CS_TCP_SYN_RECV) {
		/* A child of a listener, born in softirq: the owner is learnt later. */
		info = info_get(sk, st, true);
		if (!info)
			return 0;
		__builtin_memset(info, 0, sizeof(*info));
		info->start_ns = now;
		info->side = CS_SIDE_SERVER;
		info->cgroup_id = sk_cgroup_id(sk, st);
		return 0;
	}

	info = info_get(sk, st, false);
	if (!info) {
		/* Not seen being born: it existed before we attached. Leave a
		 * socket that never got anywhere (CLOSE -> CLOSE) alone. */
		if (oldstate == CS_TCP_CLOSE)
			return 0;
		info = info_get(sk, st, true);
		if (!info)
			return 0;
		__builtin_memset(info, 0, sizeof(*info));
		info->flags = CS_F_MIDWAY;
		info->cgroup_id = sk_cgroup_id(sk, st);
		if (oldstate == CS_TCP_ESTABLISHED || oldstate == CS_TCP_CLOSE_WAIT ||
		    oldstate == CS_TCP_FIN_WAIT1 || oldstate == CS_TCP_FIN_WAIT2 ||
		    oldstate == CS_TCP_LAST_ACK || oldstate == CS_TCP_CLOSING)
			info->flags |= CS_F_WAS_EST;
		/* Already closing when first seen: the state says who began. */
		if (oldstate == CS_TCP_CLOSE_WAIT || oldstate == CS_TCP_LAST_ACK)
			info->close_cause = CS_CLOSE_PEER_FIN;
		else if (oldstate == CS_TCP_FIN_WAIT1 || oldstate == CS_TCP_FIN_WAIT2 ||
			 oldstate == CS_TCP_CLOSING)
			info->close_cause = CS_CLOSE_LOCAL_FIN;
	}
	if (!info->ino)
		info->ino = sk_ino(sk, st);
	remember_port(sk, info, st);

	switch (newstate) {
	case CS_TCP_ESTABLISHED:
		info->est_ns = now;
		info->flags |= CS_F_WAS_EST;
		if (info->side == CS_SIDE_CLIENT && info->start_ns) {
			info->connect_us = (now - info->start_ns) / 1000;
		} else if (info->side == CS_SIDE_SERVER) {
			/* The child exists only once the handshake's last ACK is in;
			 * its smoothed RTT is the SYN-ACK round trip. */
			struct tcp_sock *tp = tcp_of(sk, st);
			__u32 srtt = tp ? RD(st, tp, srtt_us) >> 3 : 0;

			info->connect_us = srtt;
			if (info->start_ns > srtt * 1000ull)
				info->start_ns -= srtt * 1000ull;
		}
		count_established(info->cgroup_id, info->connect_us);
		/* Healthy connects are counted in the map, not sent: only a connect
		 * that user space watches (it retransmitted its SYN) needs the edge. */
		if (info->syn_retrans)
			emit(sk, info, CS_EV_ESTABLISHED, oldstate, newstate, st);
		return 0;
	case CS_TCP_CLOSE_WAIT:
		info->close_wait_ns = now;
		set_cause(info, CS_CLOSE_PEER_FIN);
		cw_enter(sk, info, oldstate, st);
		return 0;
	case CS_TCP_FIN_WAIT1:
		/* close() or shutdown(), in the owner's context. */
		set_cause(info, CS_CLOSE_LOCAL_FIN);
		if (!info->pid)
			own_by_current(info);
		return 0;
	case CS_TCP_CLOSE:
		/* A child that lost the race for its request (child_lost_race). */
		if (oldstate == CS_TCP_SYN_RECV && info->side == CS_SIDE_SERVER &&
		    !(info->flags & (CS_F_WAS_EST | CS_F_MIDWAY)) && child_lost_race(sk, st)) {
			info_delete(sk, st);
			return 0;
		}
		/* Only established connections have a close cause. */
		if (!(info->flags & CS_F_WAS_EST))
			info->close_cause = CS_CLOSE_NONE;
		if (info->close_wait_ns)
			cw_remove(sk_cookie(sk, st));
		close_report(sk, info, oldstate, now, st);
		info_delete(sk, st);
		return 0;
	default:
		return 0;
	}
}

/* A RST arrived on sk (tcp_reset). */
static __always_inline int handle_rst_in(struct sock *sk, enum store st)
{
	struct sk_info *info = info_get(sk, st, false);

	if (!info)
		return 0;
	info->flags |= CS_F_RST_IN;
	remember_port(sk, info, st);
	if (info->flags & CS_F_WAS_EST)
		set_cause(info, CS_CLOSE_RST_IN);
	return 0;
}

/*
 * We sent a RST on sk. sk may be NULL, a listener, a time-wait or request
 * socket: only full TCP sockets we follow are touched. An abortive close
 * (SO_LINGER 0, or close() with unread data) moves the socket to CLOSE first
 * and sends the RST after, when its state is gone: then a bare edge with the
 * cookie tells user space to amend the close it just got.
 */
static __always_inline int handle_rst_out(struct sock *sk, enum store st)
{
	struct sk_info *info;
	struct cs_event *e;

	if (!sk)
		return 0;
	if (!sk_fullsock_compat(RD(st, sk, __sk_common.skc_state)))
		return 0;
	if (RD(st, sk, __sk_common.skc_state) == CS_TCP_CLOSE) {
		/* No port filter: the local port is already gone; user space
		 * matches the cookie against closes it kept. On the ring the
		 * abort's close took (reset_only), so that it is read after it;
		 * it only amends a record, and the counts are fixed below.
		 * Problems only, the close's record may have been left out (a
		 * reset storm): then there is nothing to amend. */
		if (conn_mode == CS_CONN_PROBLEMS && reset_rate &&
		    !reset_crossed(sk_cookie(sk, st))) {
			abort_counted(sk);
			return 0;
		}
		e = bpf_ringbuf_reserve(&conn_events, sizeof(*e), 0);
		if (!e) {
			cs_count(&counters, CS_CNT_SAMPLED_OUT);
			abort_counted(sk);
			return 0;
		}
		__builtin_memset(e, 0, sizeof(*e));
		e->ts_ns = bpf_ktime_get_ns();
		e->cookie = sk_cookie(sk, st);
		e->type = CS_EV_RST_OUT;
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
		cs_count(&counters, CS_CNT_CONN_EVENTS);
		abort_counted(sk);
		return 0;
	}
	info = info_get(sk, st, false);
	if (!info && st == STORE_SK && lean && lean_on)
		info = lean_adopt(sk, RD(st, sk, __sk_common.skc_state));
	if (!info)
		return 0;
	info->flags |= CS_F_RST_OUT;
	remember_port(sk, info, st);
	if (info->flags & CS_F_WAS_EST)
		set_cause(info, CS_CLOSE_RST_OUT);
	return 0;
}

static __always_inline int handle_retransmit(struct sock *sk, enum store st)
{
	struct sk_info *info;

	if (RD(st, sk, __sk_common.skc_state) != CS_TCP_SYN_SENT)
		return 0;
	info = info_get(sk, st, false);
	if (!info && st == STORE_SK && lean && lean_on)
		info = lean_adopt(sk, CS_TCP_SYN_SENT);
	if (!info)
		return 0;
	info->syn_retrans++;
	remember_port(sk, info, st);
	emit(sk, info, CS_EV_SYN_RETRANS, CS_TCP_SYN_SENT, CS_TCP_SYN_SENT, st);
	return 0;
}

/*
 * Rescued runs. The kernel skips a run of a program that starts while the same
 * program is running on that CPU (bpf_prog_info.recursion_misses): an interrupt
 * in the middle of a run, a timer's or the self-interrupt of an allocator's
 * refill, runs the network softirq on its way out, and every state change in
 * that softirq is skipped, in bursts of a packet backlog. A skipped close is a
 * count lost. So each hook's program marks the event it runs for (its socket
 * and what happened) in a per-CPU table, and a second program on the same
 * hook, attached after it, runs for every event too: it finds the mark and
 * takes it out, or, finding none, knows the first was skipped and tail-calls
 * it (a tail call is not a new run, so nothing skips it). The second one is a
 * few loads; the whole handler is verified once.
 */
const volatile bool rescue = false; /* the rescue programs are attached */
/* Tests only (CONNSCOPE_TEST_SKIP_RUNS): every Nth run returns at once, before
 * its mark, as a run the kernel skipped would; its rescue must run it. */
const volatile __u32 test_skip_every = 0;

#define RUN_MARKS 8

/* An event: the socket and what happened to it (a new state, or WHAT_* for the
 * other hooks). The socket's address is stored and compared, never computed
 * with (the verifier lets a privileged program do only that with a pointer). */
struct run_marks {
	__u64 sk[RUN_MARKS];  /* events whose run started and whose rescue has not looked */
	__u32 seq[RUN_MARKS]; /* ... and the run's number on this CPU */
	__u8 what[RUN_MARKS];
	__u64 rescuing_sk;    /* the event a rescue program tail-calls for */
	__u8 rescuing_what;
	__u32 runs;           /* runs on this CPU so far */
};

/* A mark this many runs old on its CPU is stale: a rescue program skipped in
 * its turn (nested in its own run) left it. Runs in progress at once on a CPU
 * are a handful (a process, its softirq), so a live mark is never that old. */
#define RUN_MARK_STALE 64

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct run_marks);
} run_marks SEC(".maps");

/* Each hook's handler program, for its rescue program to tail-call: one array
 * a hook, as the kernel lets a program tail-call only programs of its hook. */
#define RESCUE_ARRAY(name)                       \
	struct {                                 \
		__uint(type, BPF_MAP_TYPE_PROG_ARRAY); \
		__uint(max_entries, 1);          \
		__type(key, __u32);              \
		__type(value, __u32);            \
	} name SEC(".maps")

RESCUE_ARRAY(rescue_set_state);
RESCUE_ARRAY(rescue_rst_in);
RESCUE_ARRAY(rescue_rst_out);
RESCUE_ARRAY(rescue_retrans);

/* First thing in a handler program: say that this event's run started. True:
 * the run is to end here (tests only, as if the kernel had skipped it). */
static __always_inline bool run_mark(struct sock *sk, __u8 what)
{
	struct run_marks *m;
	__u32 zero = 0, n;

	if (!rescue)
		return false;
	m = bpf_map_lookup_elem(&run_marks, &zero);
	if (!m)
		return false;
	if (m->rescuing_sk == (__u64)sk && m->rescuing_what == what) {
		m->rescuing_sk = 0;
		cs_count(&counters, CS_CNT_RESCUED);
		return false;
	}
	n = ++m->runs;
	if (test_skip_every && n % test_skip_every == 0)
		return true;
	/* Nested runs leave a few marks at once; a stale one's slot is free. */
#pragma unroll
	for (__u32 i = 0; i < RUN_MARKS; i++) {
		if (!m->sk[i] || n - m->seq[i] > RUN_MARK_STALE) {
			m->sk[i] = (__u64)sk;
			m->what[i] = what;
			m->seq[i] = n;
			return false;
		}
	}
	/* Eight live marks: nesting this deep does not happen; the first goes. */
	m->sk[0] = (__u64)sk;
	m->what[0] = what;
	m->seq[0] = n;
	return false;
}

/* The rescue program: the handler ran for this event, or it runs now. */
static __always_inline int run_rescue(void *ctx, struct sock *sk, __u8 what, void *handler)
{
	struct run_marks *m;
	__u32 zero = 0;

	m = bpf_map_lookup_elem(&run_marks, &zero);
	if (!m)
		return 0;
#pragma unroll
	for (__u32 i = 0; i < RUN_MARKS; i++) {
		if (m->sk[i] == (__u64)sk && m->what[i] == what) {
			m->sk[i] = 0;
			return 0;
		}
	}
	m->rescuing_sk = (__u64)sk;
	m->rescuing_what = what;
	bpf_tail_call(ctx, handler, 0);
	m->rescuing_sk = 0;
	return 0;
}

#define WHAT_RST_IN 13
#define WHAT_RST_OUT 14
#define WHAT_RETRANS 15

/* tp_btf wrappers (preferred). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(cs_set_state_btf, struct sock *sk, int oldstate, int newstate)
{
	if (run_mark(sk, newstate))
		return 0;
	return handle_set_state(sk, oldstate, newstate, STORE_SK);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(cs_set_state_rescue_btf, struct sock *sk, int oldstate, int newstate)
{
	return run_rescue(ctx, sk, newstate, &rescue_set_state);
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(cs_rst_in_btf, struct sock *sk)
{
	if (run_mark(sk, WHAT_RST_IN))
		return 0;
	return handle_rst_in(sk, STORE_SK);
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(cs_rst_in_rescue_btf, struct sock *sk)
{
	return run_rescue(ctx, sk, WHAT_RST_IN, &rescue_rst_in);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(cs_rst_out_btf, struct sock *sk)
{
	if (run_mark(sk, WHAT_RST_OUT))
		return 0;
	return handle_rst_out(sk, STORE_SK);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(cs_rst_out_rescue_btf, struct sock *sk)
{
	return run_rescue(ctx, sk, WHAT_RST_OUT, &rescue_rst_out);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(cs_retrans_btf, struct sock *sk)
{
	if (run_mark(sk, WHAT_RETRANS))
		return 0;
	return handle_retransmit(sk, STORE_SK);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(cs_retrans_rescue_btf, struct sock *sk)
{
	return run_rescue(ctx, sk, WHAT_RETRANS, &rescue_retrans);
}

/* raw_tp wrappers (fallback). */
SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(cs_set_state_raw, struct sock *sk, int oldstate, int newstate)
{
	if (run_mark(sk, newstate))
		return 0;
	return handle_set_state(sk, oldstate, newstate, STORE_HASH);
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(cs_set_state_rescue_raw, struct sock *sk, int oldstate, int newstate)
{
	return run_rescue(ctx, sk, newstate, &rescue_set_state);
}

SEC("raw_tp/tcp_receive_reset")
int BPF_PROG(cs_rst_in_raw, struct sock *sk)
{
	if (run_mark(sk, WHAT_RST_IN))
		return 0;
	return handle_rst_in(sk, STORE_HASH);
}

SEC("raw_tp/tcp_receive_reset")
int BPF_PROG(cs_rst_in_rescue_raw, struct sock *sk)
{
	return run_rescue(ctx, sk, WHAT_RST_IN, &rescue_rst_in);
}

SEC("raw_tp/tcp_send_reset")
int BPF_PROG(cs_rst_out_raw, struct sock *sk)
{
	if (run_mark(sk, WHAT_RST_OUT))
		return 0;
	return handle_rst_out(sk, STORE_HASH);
}

SEC("raw_tp/tcp_send_reset")
int BPF_PROG(cs_rst_out_rescue_raw, struct sock *sk)
{
	return run_rescue(ctx, sk, WHAT_RST_OUT, &rescue_rst_out);
}

SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(cs_retrans_raw, struct sock *sk)
{
	if (run_mark(sk, WHAT_RETRANS))
		return 0;
	return handle_retransmit(sk, STORE_HASH);
}

SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(cs_retrans_rescue_raw, struct sock *sk)
{
	return run_rescue(ctx, sk, WHAT_RETRANS, &rescue_retrans);
}

