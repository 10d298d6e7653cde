// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The verifier's cost of each loaded program, for `connscope check -v` and the
 * bench: a program near the 1M-instruction budget fails to load on a kernel
 * whose verifier explores a little more, and its verification is start-up time.
 * The programs are found through this process's own fds (anon_inode:bpf-prog),
 * whichever part loaded them; so are the links, for /metrics and /healthz: how
 * many, whether one was detached, and the programs' run time.
 */
#include "bpfinfo.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct prog_row {
	uint32_t id, type, verified;
	char name[BPF_OBJ_NAME_LEN];
};

static int by_cost(const void *a, const void *b)
{
	const struct prog_row *x = a, *y = b;

	if (x->verified != y->verified)
		return x->verified < y->verified ? 1 : -1;
	return strcmp(x->name, y->name);
}

static const char *type_name(uint32_t t)
{
	switch (t) {
	case BPF_PROG_TYPE_TRACING: return "tracing";
	case BPF_PROG_TYPE_RAW_TRACEPOINT: return "raw_tp";
	case BPF_PROG_TYPE_TRACEPOINT: return "tracepoint";
	case BPF_PROG_TYPE_KPROBE: return "kprobe/uprobe";
	case BPF_PROG_TYPE_CGROUP_SKB: return "cgroup_skb";
	case BPF_PROG_TYPE_SCHED_CLS: return "tc";
	case 32: return "netfilter";  /* BPF_PROG_TYPE_NETFILTER, newer than these headers */
	default: return "other";
	}
}

/* Call fn for each of this process's fds that is a BPF program or link. */
static void each_bpf_fd(void (*fn)(int fd, bool link, void *arg), void *arg)
{
	struct dirent *de;
	char target[64], path[64];
	DIR *d = opendir("/proc/self/fd");

	if (!d)
		return;
	while ((de = readdir(d))) {
		ssize_t k;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		k = readlink(path, target, sizeof(target) - 1);
		if (k <= 0)
			continue;
		target[k] = '\0';
		if (!strcmp(target, "anon_inode:bpf-prog"))
			fn(atoi(de->d_name), false, arg);
		else if (!strcmp(target, "anon_inode:bpf_link"))
			fn(atoi(de->d_name), true, arg);
	}
	closedir(d);
}

struct rows {
	struct prog_row *r;
	size_t n, cap;
};

static void add_row(int fd, bool link, void *arg)
{
	struct rows *rs = arg;
	struct bpf_prog_info info;
	uint32_t len = sizeof(info);

	if (link)
		return;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return;
	for (size_t i = 0; i < rs->n; i++)
		if (rs->r[i].id == info.id)
			return;
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 32;
		struct prog_row *r = realloc(rs->r, cap * sizeof(*r));

		if (!r)
			return;
		rs->r = r;
		rs->cap = cap;
	}
	rs->r[rs->n].id = info.id;
	rs->r[rs->n].type = info.type;
	/* verified_insns came in 5.16; the kernel zeroes what it does not fill. */
	rs->r[rs->n].verified = len >= offsetof(struct bpf_prog_info, verified_insns) +
		sizeof(info.verified_insns) ? info.verified_insns : 0;
	memcpy(rs->r[rs->n].name, info.name, sizeof(rs->r[rs->n].name));
	rs->r[rs->n].name[sizeof(rs->r[rs->n].name) - 1] = '\0';
	rs->n++;
}

int bpfinfo_print_verified(FILE *f)
{
	struct rows rs = { 0 };
	struct prog_row *rows;
	size_t n;

	each_bpf_fd(add_row, &rs);
	rows = rs.r;
	n = rs.n;
	qsort(rows, n, sizeof(*rows), by_cost);
	fprintf(f, "%-18s %-14s %12s %9s\n", "PROGRAM", "TYPE", "VERIFIED", "OF 1M");
	for (size_t i = 0; i < n; i++) {
		if (rows[i].verified)
			fprintf(f, "%-18s %-14s %12u %8.1f%%\n", rows[i].name, type_name(rows[i].type),
				rows[i].verified, 100.0 * rows[i].verified / BPF_VERIFIER_BUDGET);
		else
			fprintf(f, "%-18s %-14s %12s %9s\n", rows[i].name, type_name(rows[i].type),
				"n/a", "");
	}
	free(rows);
	return (int)n;
}

struct sum_walk {
	struct bpfinfo_sum *s;
	uint32_t seen[256];  /* programs counted (one may be behind several fds) */
	size_t nseen;
};

static void add_sum(int fd, bool link, void *arg)
{
	struct sum_walk *w = arg;
	struct bpfinfo_sum *s = w->s;

	if (link) {
		struct bpf_link_info li;
		uint32_t len = sizeof(li);

		memset(&li, 0, sizeof(li));
		if (bpf_obj_get_info_by_fd(fd, &li, &len))
			return;
		s->links++;
		/* A cgroup link that was detached has no cgroup left. */
		if (li.type == BPF_LINK_TYPE_CGROUP && !li.cgroup.cgroup_id && !s->detached++)
			snprintf(s->detached_what, sizeof(s->detached_what),
				 "cgroup link %u (program %u)", li.id, li.prog_id);
	} else {
		struct bpf_prog_info pi;
		uint32_t len = sizeof(pi);

		memset(&pi, 0, sizeof(pi));
		if (bpf_obj_get_info_by_fd(fd, &pi, &len))
			return;
		for (size_t i = 0; i < w->nseen; i++)
			if (w->seen[i] == pi.id)
				return;
		if (w->nseen < sizeof(w->seen) / sizeof(w->seen[0]))
			w->seen[w->nseen++] = pi.id;
		s->run_ns += pi.run_time_ns;
		s->runs += pi.run_cnt;
	}
}

void bpfinfo_sum(struct bpfinfo_sum *s)
{
	struct sum_walk w = { .s = s };

	memset(s, 0, sizeof(*s));
	each_bpf_fd(add_sum, &w);
}
