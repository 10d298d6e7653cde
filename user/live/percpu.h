/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Reading the programs' per-CPU counters: shared by the loader and the conntrack
 * watcher (which its BPF test builds without the loader, hence inline here). */
#ifndef CONNSCOPE_PERCPU_H
#define CONNSCOPE_PERCPU_H

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdint.h>
#include <stdlib.h>

/* Entry key of a per-CPU array of u64, summed over the CPUs; 0 if unreadable. */
static inline uint64_t cs_percpu_sum(int map_fd, uint32_t key)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t sum = 0, *vals;

	if (map_fd < 0 || ncpu <= 0 || !(vals = calloc(ncpu, sizeof(*vals))))
		return 0;
	if (!bpf_map_lookup_elem(map_fd, &key, vals))
		for (int i = 0; i < ncpu; i++)
			sum += vals[i];
	free(vals);
	return sum;
}

#endif
