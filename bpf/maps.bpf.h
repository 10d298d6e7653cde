/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Map helpers the BPF programs share, and the slot of their histograms (BPF side only). */
#ifndef CONNSCOPE_MAPS_BPF_H
#define CONNSCOPE_MAPS_BPF_H

/* vmlinux.h has no errno values. */
#ifndef EEXIST
#define EEXIST 17
#endif

/* Bump entry idx of a per-CPU array of u64 counters, which user space sums over
 * the CPUs. Per CPU, so that counting never bounces a cache line between them. */
static __always_inline void cs_count(void *percpu_array, __u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(percpu_array, &idx);

	if (v)
		(*v)++;
}

/*
 * The flags of a ring buffer submit that wakes no one, but the one record that
 * takes the backlog past `backlog` bytes (reserved and not yet read, this
 * record included). A wake-up is an irq_work, a self-interrupt that costs
 * microseconds in a VM: user space drains every 100 ms by itself, and times in
 * records are the kernel's. A record past the mark does not wake either (that
 * was a wake-up for every record of a backlog); a crossing that racing CPUs
 * step over leaves the drain to the timer.
 */
static __always_inline __u64 cs_wake_flags(void *ring, __u64 backlog, __u64 size)
{
	__u64 avail = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);

	return avail >= backlog && avail < backlog + size + 8 ? BPF_RB_FORCE_WAKEUP
							       : BPF_RB_NO_WAKEUP;
}

/*
 * The element at key of a hash map, a copy of *init inserted first if there is
 * none. BPF_NOEXIST: of two CPUs inserting at once, one wins (EEXIST for the
 * other) and both return the winner's element, never one overwritten under the
 * other. NULL when the map cannot take it (E2BIG: full; ENOMEM), or when the
 * element went again before it was looked up: the caller counts it as a map
 * that could not keep the state.
 *
 * For a caller that looked up already and builds *init only on a miss (a large
 * state, built in a scratch map).
 */
static __always_inline void *cs_insert_lookup(void *map, const void *key, const void *init)
{
	long err = bpf_map_update_elem(map, key, init, BPF_NOEXIST);

	if (err && err != -EEXIST)
		return NULL;
	return bpf_map_lookup_elem(map, key);
}

/* The element at key, created from *init where there is none: as cs_insert_lookup,
 * after a plain lookup, the only step the common case takes. */
static __always_inline void *cs_lookup_or_init(void *map, const void *key, const void *init)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	return cs_insert_lookup(map, key, init);
}

/* The slot of v in a log2 histogram of `slots` slots: 0 for 0, floor(log2 v) + 1
 * otherwise, the last slot for everything above. */
static __always_inline __u32 cs_log2_slot(__u64 v, __u32 slots)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	r = v ? r + 1 : 0;
	return r < slots ? r : slots - 1;
}

#endif
