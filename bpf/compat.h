/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Kernel differences that CO-RE alone does not absorb, in one place.
 * Each entry names the kernel change that made it necessary.
 */
#ifndef CONNSCOPE_COMPAT_H
#define CONNSCOPE_COMPAT_H

/*
 * sk_protocol was an 8-bit bitfield until v5.6 (commit bf9765145b85, "sock: Make
 * sk_protocol a 16-bit value"). The probed bitfield read handles both layouts.
 */
static __always_inline __u16 sk_protocol_compat(struct sock *sk)
{
	return BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
}

/*
 * A "sock" handed to a TCP tracepoint may be a time-wait or request mini socket
 * (tcp_send_reset since v4.15 passes them); only full sockets carry storage.
 * Mirrors the kernel's sk_fullsock().
 */
static __always_inline bool sk_fullsock_compat(int state)
{
	return state != CS_TCP_TIME_WAIT && state != CS_TCP_NEW_SYN_RECV;
}

/*
 * kernfs_node::id became a plain u64 in v5.5 (commit 67c0496e87d1, "kernfs:
 * convert kernfs_node->id from union kernfs_node_id to u64"); before that the
 * cgroup id lived in id.id. connscope needs v5.8+ (ring buffer), so the u64 form
 * is the only one read.
 */

#endif
