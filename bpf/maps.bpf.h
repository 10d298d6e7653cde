/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Map helpers the BPF programs share (BPF side only). */
#ifndef CONNSCOPE_MAPS_BPF_H
#define CONNSCOPE_MAPS_BPF_H

/* Bump entry idx of a per-CPU array of u64 counters, which user space sums over
 * the CPUs. Per CPU, so that counting never bounces a cache line between them. */
static __always_inline void cs_count(void *percpu_array, __u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(percpu_array, &idx);

	if (v)
		(*v)++;
}

#endif
