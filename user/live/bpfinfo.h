/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* What the kernel says of the BPF programs this process has loaded. */
#ifndef CONNSCOPE_BPFINFO_H
#define CONNSCOPE_BPFINFO_H

#include <stdint.h>
#include <stdio.h>

/* The verifier's budget: instructions it may process for one program. */
#define BPF_VERIFIER_BUDGET 1000000u

/* One line per BPF program behind this process's file descriptors: its name,
 * type and the instructions the verifier processed to load it (kernel 5.16+;
 * "n/a" before), as a share of the budget, the largest first. Returns the
 * number of programs. */
int bpfinfo_print_verified(FILE *f);

/* What the kernel says of the programs and links behind this process's fds. */
struct bpfinfo_sum {
	unsigned links;           /* BPF links held */
	unsigned detached;        /* ... that something detached (cgroup links can be) */
	char detached_what[128];  /* the first of those: "cgroup_skb link 42" */
	uint64_t run_ns, runs;    /* every program's (the kernel counts with bpf_stats on) */
};
void bpfinfo_sum(struct bpfinfo_sum *s);

#endif
