// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The floor of make bench's part 1: programs on the hooks connscope's daemon uses
 * for TCP churn, doing nothing. What the kernel charges for running any program
 * there (the tracepoint's dispatch, the cgroup's program array on every packet)
 * is the part of connscope's cost that no change to its programs can remove.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

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
