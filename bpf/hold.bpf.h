/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Holding a socket's close (BPF side only): see cs_hold. Needs conn.h. */
#ifndef CONNSCOPE_HOLD_BPF_H
#define CONNSCOPE_HOLD_BPF_H

/* The lifecycle programs' per-socket state (bpf/conn.bpf.c), shared by the loader
 * with the programs that hold closes: looked up, and marked CS_F_HELD there. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sk_info);
} conn_sk_info SEC(".maps");

/*
 * User space keeps state for this socket (a TLS handshake, an HTTP/2 walk): mark
 * it CS_F_HELD in conn_sk_info, so that its close crosses even where healthy closes do not. In lean
 * mode a healthy socket has no sk_info: one is made here (CS_F_LATE) and completed
 * by the lifecycle programs at the socket's next state change. sk: a full socket,
 * as cgroup_skb's bpf_sk_fullsock or tp_btf's struct sock gives it.
 */
static __always_inline void cs_hold(void *sk, bool lean_mode)
{
	struct sk_info *ci;

	if (lean_mode) {
		struct sk_info late = { .flags = CS_F_HELD | CS_F_LATE };

		ci = bpf_sk_storage_get(&conn_sk_info, sk, &late, BPF_SK_STORAGE_GET_F_CREATE);
	} else {
		ci = bpf_sk_storage_get(&conn_sk_info, sk, NULL, 0);
	}
	if (ci && !(ci->flags & CS_F_HELD))
		ci->flags |= CS_F_HELD;
}

#endif
