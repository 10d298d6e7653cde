// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The verifier's cost of each loaded program, for `connscope check -v` and the
 * bench: a program near the 1M-instruction budget fails to load on a kernel
 * whose verifier explores a little more, and its verification is start-up time.
 * The programs are found through this process's own fds (anon_inode:bpf-prog),
 * whichever part loaded them.
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

int bpfinfo_print_verified(FILE *f)
{
	struct prog_row *rows = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	char link[64], path[64];
	DIR *d = opendir("/proc/self/fd");

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct bpf_prog_info info;
		uint32_t len = sizeof(info);
		ssize_t k;
		bool seen = false;
		int fd = atoi(de->d_name);

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		k = readlink(path, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = '\0';
		if (strcmp(link, "anon_inode:bpf-prog"))
			continue;
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(fd, &info, &len))
			continue;
		for (size_t i = 0; i < n; i++)
			seen |= rows[i].id == info.id;
		if (seen)
			continue;
		if (n == cap) {
			struct prog_row *r = realloc(rows, (cap ? cap * 2 : 32) * sizeof(*r));

			if (!r)
				break;
			rows = r;
			cap = cap ? cap * 2 : 32;
		}
		rows[n].id = info.id;
		rows[n].type = info.type;
		/* verified_insns came in 5.16; the kernel zeroes what it does not fill. */
		rows[n].verified = len >= offsetof(struct bpf_prog_info, verified_insns) +
			sizeof(info.verified_insns) ? info.verified_insns : 0;
		memcpy(rows[n].name, info.name, sizeof(rows[n].name));
		rows[n].name[sizeof(rows[n].name) - 1] = '\0';
		n++;
	}
	closedir(d);
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

void bpfinfo_sum(struct bpfinfo_sum *s)
{
	uint32_t seen[256];
	size_t nseen = 0;
	struct dirent *de;
	char link[64], path[64];
	DIR *d = opendir("/proc/self/fd");

	memset(s, 0, sizeof(*s));
	if (!d)
		return;
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);
		ssize_t k;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		k = readlink(path, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = '\0';
		if (!strcmp(link, "anon_inode:bpf_link")) {
			struct bpf_link_info li;
			uint32_t len = sizeof(li);

			memset(&li, 0, sizeof(li));
			if (bpf_obj_get_info_by_fd(fd, &li, &len))
				continue;
			s->links++;
			/* A cgroup link that was detached has no cgroup left. */
			if (li.type == BPF_LINK_TYPE_CGROUP && !li.cgroup.cgroup_id) {
				if (!s->detached++)
					snprintf(s->detached_what, sizeof(s->detached_what),
						 "cgroup link %u (program %u)", li.id, li.prog_id);
			}
		} else if (!strcmp(link, "anon_inode:bpf-prog")) {
			struct bpf_prog_info pi;
			uint32_t len = sizeof(pi);
			bool dup = false;

			memset(&pi, 0, sizeof(pi));
			if (bpf_obj_get_info_by_fd(fd, &pi, &len))
				continue;
			for (size_t i = 0; i < nseen && !dup; i++)
				dup = seen[i] == pi.id;
			if (dup)
				continue;
			if (nseen < sizeof(seen) / sizeof(seen[0]))
				seen[nseen++] = pi.id;
			s->run_ns += pi.run_time_ns;
			s->runs += pi.run_cnt;
		}
	}
	closedir(d);
}
