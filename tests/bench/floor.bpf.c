// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The floor of make bench's part 1: programs on the hooks connscope's daemon uses
 * for TCP churn, doing nothing (and the counting and walking floors below). What the kernel charges for running any program
 * there (the tracepoint's dispatch, the cgroup's program array on every packet)
 * is the part of connscope's cost that no change to its programs can remove.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(floor_state, struct sock *sk, int oldstate, int newstate)
{
	return 0;
}

/* cgroup_skb: 1 lets every packet through, as connscope's do. */
SEC("cgroup_skb/egress")
int floor_egress(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup_skb/ingress")
int floor_ingress(struct __sk_buff *skb)
{
	return 1;
}

/* The DNAT part's conntrack hooks: a netfilter program that accepts every packet
 * (NF_ACCEPT), attached by floor --netns where connscope's goes. Declared "?tc"
 * (libbpf 1.1 has no SEC("netfilter")): floor.c sets its type. */
SEC("?tc")
int floor_nf(struct bpf_nf_ctx *ctx)
{
	return 1;
}

/*
 * The counting floor (FLOOR_COUNT=1, in place of floor_state): the least work that
 * keeps what connscope's daemon must count in the kernel with no run lost. Per
 * cgroup: opened, closed, a log2 histogram of connect times; per remote: closes;
 * per socket: its connect's start and its CLOSE_WAIT's, in a slot by cookie; and
 * a second program on the tracepoint that looks for the first one's mark, as a
 * rescue of a skipped run would. No records, no causes, no bytes, no pod
 * details: what connscope does beyond this is its own cost.
 */
#define FL_TCP_ESTABLISHED 1
#define FL_TCP_SYN_SENT 2
#define FL_TCP_CLOSE 7
#define FL_TCP_CLOSE_WAIT 8
#define FL_SLOTS 65536

struct fl_cg {
	__u64 opened, closed;
	__u64 connect_us[32];
};

struct fl_remote_key {
	__u64 cgroup_id;
	__u32 addr[4];
	__u16 port;
	__u16 family;
};

struct fl_slot {
	__u64 cookie, ns;
};

struct fl_mark {
	__u64 sk;
	__u32 state;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct fl_cg);
} fl_cg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192);
	__type(key, struct fl_remote_key);
	__type(value, __u64);
} fl_remote SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FL_SLOTS);
	__type(key, __u32);
	__type(value, struct fl_slot);
} fl_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fl_mark);
} fl_marks SEC(".maps");

static __always_inline __u32 fl_log2(__u64 v)
{
	__u32 r = 0;

	while (v > 1 && r < 31) {
		v >>= 1;
		r++;
	}
	return r;
}

static __always_inline struct fl_slot *fl_slot_of(__u64 cookie)
{
	__u32 i = (__u32)cookie & (FL_SLOTS - 1);

	return bpf_map_lookup_elem(&fl_slots, &i);
}

static __always_inline struct fl_cg *fl_cg_of(struct sock *sk)
{
	__u64 id = sk->sk_cgrp_data.cgroup->kn->id;
	struct fl_cg *c = bpf_map_lookup_elem(&fl_cg, &id), zero = {};

	if (c)
		return c;
	bpf_map_update_elem(&fl_cg, &id, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&fl_cg, &id);
}

SEC("?tp_btf/inet_sock_set_state")
int BPF_PROG(floor_count, struct sock *sk, int oldstate, int newstate)
{
	__u32 zero = 0;
	struct fl_mark *m = bpf_map_lookup_elem(&fl_marks, &zero);
	struct fl_slot *s;
	struct fl_cg *c;
	__u64 cookie;

	if (m) {
		m->sk = (__u64)sk;
		m->state = newstate;
	}
	if (sk->sk_protocol != 6 /* IPPROTO_TCP */)
		return 0;
	switch (newstate) {
	case FL_TCP_SYN_SENT:
	case FL_TCP_CLOSE_WAIT:
		cookie = bpf_get_socket_cookie(sk);
		s = fl_slot_of(cookie);
		if (s) {
			s->cookie = cookie;
			s->ns = bpf_ktime_get_ns();
		}
		return 0;
	case FL_TCP_ESTABLISHED:
		c = fl_cg_of(sk);
		if (!c)
			return 0;
		c->opened++;
		if (oldstate == FL_TCP_SYN_SENT) {
			cookie = bpf_get_socket_cookie(sk);
			s = fl_slot_of(cookie);
			if (s && s->cookie == cookie)
				c->connect_us[fl_log2((bpf_ktime_get_ns() - s->ns) / 1000) & 31]++;
		}
		return 0;
	case FL_TCP_CLOSE: {
		struct fl_remote_key k = {};
		__u64 one = 1, *n;

		if (oldstate == 10 /* LISTEN */)
			return 0;
		c = fl_cg_of(sk);
		if (!c)
			return 0;
		c->closed++;
		k.cgroup_id = sk->sk_cgrp_data.cgroup->kn->id;
		k.family = sk->__sk_common.skc_family;
		k.addr[0] = sk->__sk_common.skc_daddr;
		k.port = sk->__sk_common.skc_dport;
		n = bpf_map_lookup_elem(&fl_remote, &k);
		if (n)
			(*n)++;
		else
			bpf_map_update_elem(&fl_remote, &k, &one, BPF_NOEXIST);
		cookie = bpf_get_socket_cookie(sk);
		s = fl_slot_of(cookie);
		if (s && s->cookie == cookie)
			s->cookie = 0;
		return 0;
	}
	}
	return 0;
}

SEC("?tp_btf/inet_sock_set_state")
int BPF_PROG(floor_count_rescue, struct sock *sk, int oldstate, int newstate)
{
	__u32 zero = 0;
	struct fl_mark *m = bpf_map_lookup_elem(&fl_marks, &zero);

	if (m && m->sk == (__u64)sk && m->state == (__u32)newstate)
		m->sk = 0;
	return 0;
}

/*
 * The walking floor (FLOOR_WALK=1, in place of floor_egress and floor_ingress): the
 * least work that counts HTTP/2 frames exactly on every packet, which connscope's
 * h2c walk must do. Per socket and direction the stream position of the next frame
 * header; per segment with payload, its bytes copied (1 KiB at a time, as
 * connscope's window) and the frame headers in them read for their length. No
 * frame type, stream id, rule, count per stream, event or desync: what connscope
 * does beyond this is its own cost. A direction's first payload starts it (the
 * bench's connections start after the floor attached); the client's skips the
 * 24-byte preface.
 */
#define FL_WIN 1024
#define FL_WINDOWS 64        /* window loads per segment at most */
#define FL_FRAMES 64         /* headers per window at most */
#define FL_ETH_P_IP 0x0800

struct fl_walk {
	__u32 pos[2];        /* next header's TCP sequence number, per direction */
	__u32 started;       /* bit per direction */
	__u32 lost;          /* bit per direction: a header cut by a segment's end */
	__u64 frames;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct fl_walk);
} fl_walks SEC(".maps");

struct fl_buf {
	__u8 b[FL_WIN + 16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fl_buf);
} fl_bufs SEC(".maps");

/* The headers in buf->b[0..n): returns the place past the last frame they tell of
 * (which may be past n), and adds the headers read to *frames. A global function:
 * verified once, not once per window. */
__noinline __u64 fl_frames(struct fl_buf *buf, __u64 n, struct fl_walk *w)
{
	__u64 at = 0, i;

	if (!buf || !w)
		return 0;
	for (i = 0; i < FL_FRAMES && at + 9 <= n; i++) {
		const __u8 *h = buf->b + (at & (FL_WIN - 1));

		at += 9 + ((__u32)h[0] << 16 | (__u32)h[1] << 8 | h[2]);
	}
	w->frames += i;
	return at;
}

static __always_inline int fl_walk(struct __sk_buff *skb, __u32 dir)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct bpf_sock *sk = skb->sk;
	struct fl_walk *w;
	struct fl_buf *buf;
	__u32 zero = 0, hdrs, plen, seq, k;
	__s32 rel;
	__u8 *ip = data, *tcp;

	if (!sk || !(sk = bpf_sk_fullsock(sk)) || sk->protocol != 6 ||
	    skb->protocol != bpf_htons(FL_ETH_P_IP) || ip + 20 > (__u8 *)data_end)
		return 1;
	tcp = ip + ((ip[0] & 0xf) * 4 & 0x3c);
	if (tcp + 20 > (__u8 *)data_end)
		return 1;
	hdrs = (tcp - ip) + (tcp[12] >> 4) * 4;
	if (skb->len <= hdrs)
		return 1;
	plen = skb->len - hdrs;
	seq = (__u32)tcp[4] << 24 | (__u32)tcp[5] << 16 | (__u32)tcp[6] << 8 | tcp[7];
	w = bpf_sk_storage_get(&fl_walks, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	buf = bpf_map_lookup_elem(&fl_bufs, &zero);
	if (!w || !buf || (w->lost & (1 << dir)))
		return 1;
	if (!(w->started & (1 << dir))) {
		__u8 first;

		w->started |= 1 << dir;
		w->pos[dir & 1] = seq;
		if (!bpf_skb_load_bytes(skb, hdrs, &first, 1) && first == 'P')
			w->pos[dir & 1] = seq + 24;
	}
	rel = (__s32)(w->pos[dir & 1] - seq);
	if (rel < 0 || (__u32)rel >= plen)
		return 1;  /* retransmitted, or inside a payload that runs on */
	for (k = 0; k < FL_WINDOWS && (__u32)rel < plen; k++) {
		__u64 n = plen - rel;

		if (n > FL_WIN)
			n = FL_WIN;
		if (n < 9) {
			w->lost |= 1 << dir;
			return 1;
		}
		if (bpf_skb_load_bytes(skb, hdrs + rel, buf->b, n))
			return 1;
		rel += fl_frames(buf, n, w);
	}
	w->pos[dir & 1] = seq + rel;
	return 1;
}

SEC("?cgroup_skb/egress")
int floor_walk_egress(struct __sk_buff *skb)
{
	return fl_walk(skb, 0);
}

SEC("?cgroup_skb/ingress")
int floor_walk_ingress(struct __sk_buff *skb)
{
	return fl_walk(skb, 1);
}
