/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Conntrack lifecycle edges, as both conntrack watchers report them: the BPF
 * netfilter-link program (bpf/ct.bpf.c) and the ctnetlink fallback (user/live/ctnl.c).
 * One record per edge: a new entry, a change of its TCP state or status bits, or
 * its end. Addresses are in network byte order, IPv4 in the first 4 bytes.
 */
#ifndef CONNSCOPE_CT_EVENTS_H
#define CONNSCOPE_CT_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

enum ct_ev_type {
	CT_EV_NEW = 1,       /* first seen (BPF: its first packet past the hooks) */
	CT_EV_UPDATE = 2,    /* the TCP state or the status bits changed */
	CT_EV_DESTROY = 3,   /* the entry is gone (netlink), or its TCP state reached CLOSE
				or TIME_WAIT (BPF: it cannot see the entry freed) */
};

/* Conntrack's TCP states (enum tcp_conntrack, include/uapi/linux/netfilter/nf_conntrack_tcp.h). */
enum ct_tcp_state {
	CT_TCP_NONE = 0, CT_TCP_SYN_SENT = 1, CT_TCP_SYN_RECV = 2, CT_TCP_ESTABLISHED = 3,
	CT_TCP_FIN_WAIT = 4, CT_TCP_CLOSE_WAIT = 5, CT_TCP_LAST_ACK = 6, CT_TCP_TIME_WAIT = 7,
	CT_TCP_CLOSE = 8, CT_TCP_SYN_SENT2 = 9,
};

/* Status bits read (enum ip_conntrack_status). */
#define CT_S_EXPECTED (1u << 0)
#define CT_S_SEEN_REPLY (1u << 1)
#define CT_S_ASSURED (1u << 2)
#define CT_S_CONFIRMED (1u << 3)
#define CT_S_SRC_NAT (1u << 4)
#define CT_S_DST_NAT (1u << 5)
#define CT_S_DYING (1u << 9)

enum ct_source {
	CT_SRC_BPF = 1,
	CT_SRC_NETLINK = 2,
};

struct ct_tuple {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;         /* host order */
	__u16 dport;
	__u8 l3;             /* AF_INET / AF_INET6 */
	__u8 l4;             /* IPPROTO_TCP (others are not reported) */
	__u8 _pad[2];
};

/* ct_nat's key: a flow's client end, the original tuple's source, which is also
 * the reply tuple's destination unless a source NAT rewrote it (then the entry is
 * kept under that too). A client's socket has it as its local end, the backend's
 * as its remote one; the entry found is checked against the socket's tuple. */
struct ct_end {
	__u8 addr[16];
	__u16 port;          /* host order */
	__u8 l3;
	__u8 _pad;
};

/* The fingerprint bpf/ct.bpf.c keeps of an entry's original tuple (ct_bpf_state.fp),
 * from the first and last 32-bit words of each address and the ports, all as
 * loaded from the tuple (network order): the program computes it, user space checks
 * it. A false match needs the same ports and addresses at the same nf_conn address,
 * i.e. practically the same connection. */
static inline __u32 ct_fingerprint(__u32 s0, __u32 s3, __u32 d0, __u32 d3, __u32 sport_be,
				   __u32 dport_be)
{
	return ((s3 ^ s0) * 0x9e3779b1u) ^ ((d3 ^ d0) * 0x85ebca6bu) ^
	       (sport_be << 16 | dport_be) ^ 1u;
}

/* bpf/ct.bpf.c's state of an entry it follows (map ct_state, by nf_conn address):
 * user space reads the current TCP state of a kept translated entry there. */
struct ct_bpf_state {
	__u32 status;     /* CT_S_EDGE bits last reported */
	__u32 fp;         /* fingerprint of the original tuple: catches address reuse */
	__u8 tcp_state;   /* last seen (quiet: CLOSE_WAIT, followed; CLOSE, a RST's mark) */
	__u8 _pad[7];
};

struct ct_event {
	__u64 ts_ns;         /* CLOCK_MONOTONIC */
	__u64 id;            /* the entry's identity: BPF the nf_conn address, netlink CTA_ID */
	__u32 netns;         /* network namespace inode the entry lives in */
	__u32 status;        /* CT_S_* bits as conntrack has them */
	__u32 mark;
	__u8 type;           /* enum ct_ev_type */
	__u8 tcp_state;      /* enum ct_tcp_state */
	__u8 old_tcp_state;  /* UPDATE: the state before */
	__u8 source;         /* enum ct_source */
	struct ct_tuple orig;   /* as the first packet had it: client -> VIP:port */
	struct ct_tuple reply;  /* as the reply comes: backend -> client (after NAT) */
};

#endif
