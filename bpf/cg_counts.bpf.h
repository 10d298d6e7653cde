/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The per-cgroup counts (struct cs_cg_counts, bpf/conn.h), one map in the kernel:
 * made by bpf/conn.bpf.c's object, and declared here for each object that counts
 * in it (the loader shares it with bpf/tls.bpf.c's by reuse_fd).
 */
#ifndef CONNSCOPE_CG_COUNTS_BPF_H
#define CONNSCOPE_CG_COUNTS_BPF_H

/* Per CPU: every connect bumps it, and a shared counter would bounce its
 * cache line between CPUs on every connection. User space sums the CPUs. Not
 * preallocated: a node has a few hundred cgroups with sockets, and an entry is
 * CPUs x 672 bytes (bpf/tls.bpf.c's TLS counts included), so memory follows the
 * cgroups in use (and removed ones are reclaimed by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct cs_cg_counts);
} cg_counts SEC(".maps");

/* A zeroed cs_cg_counts to create entries from: too large for the stack. Never
 * written. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cs_cg_counts);
} cg_zero SEC(".maps");

/* A cgroup's counts, the entry made from cg_zero on first use; NULL when the map
 * cannot take it, counted at index full_idx of the caller's per-CPU counters. */
static __always_inline struct cs_cg_counts *cs_cg_counts_of(__u64 cgroup_id, void *counters,
							    __u32 full_idx)
{
	__u32 zero_key = 0;
	struct cs_cg_counts *c = bpf_map_lookup_elem(&cg_counts, &cgroup_id), *zero;

	if (c)
		return c;
	zero = bpf_map_lookup_elem(&cg_zero, &zero_key);
	c = zero ? cs_insert_lookup(&cg_counts, &cgroup_id, zero) : NULL;
	if (!c)
		cs_count(counters, full_idx);
	return c;
}

#endif
