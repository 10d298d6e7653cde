// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * floor OBJ --cgroup DIR: load tests/bench/floor.bpf.c's do-nothing programs,
 * attach the tracepoint one and the packet ones to DIR (never the cgroup2 root:
 * refused), print a stats start line as connscope does once attached, and wait for
 * SIGINT or SIGTERM. make bench's part 1 runs it as the "floor" config.
 * FLOOR_ONLY=tp or FLOOR_ONLY=skb attaches only the tracepoint's, or the packets'.
 * FLOOR_COUNT=1 puts the counting floor on the tracepoint instead (floor.bpf.c: the
 * least work that exact counts in the kernel take); make bench's "counting" config.
 * FLOOR_WALK=1 puts the walking floor on the packet hooks instead (the least work an
 * exact HTTP/2 frame count takes on every packet); make bench's h2c "walking" config.
 * floor OBJ --cgroup DIR --netns PATH also attaches a do-nothing netfilter program
 * where connscope's conntrack program goes in the network namespace at PATH (the
 * DNAT part's node): IPv4 and IPv6, prerouting and output, priority -99.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sched.h>
#include <sys/syscall.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* Debian 12's UAPI headers predate netfilter programs (6.4). */
#define FLOOR_PROG_TYPE_NETFILTER 32
#define FLOOR_ATTACH_NETFILTER 45

struct nf_link_attr {
	unsigned prog_fd, target_fd, attach_type, flags, pf, hooknum;
	int priority;
	unsigned nf_flags;
};

/* The four netfilter links, made inside the namespace at path. */
static int attach_nf(struct bpf_program *prog, const char *path)
{
	static const struct { unsigned pf, hook; } where[] = {
		{ 2, 0 }, { 2, 3 }, { 10, 0 }, { 10, 3 }, /* ipv4/ipv6 prerouting, output */
	};
	int home = open("/proc/self/ns/net", O_RDONLY), target = open(path, O_RDONLY), rc = 0;

	if (home < 0 || target < 0 || setns(target, CLONE_NEWNET)) {
		fprintf(stderr, "floor: enter %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		struct nf_link_attr a = { .prog_fd = (unsigned)bpf_program__fd(prog),
					  .attach_type = FLOOR_ATTACH_NETFILTER,
					  .pf = where[i].pf, .hooknum = where[i].hook,
					  .priority = -99 };

		if (syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a)) < 0) {
			fprintf(stderr, "floor: netfilter link %u/%u: %s\n", where[i].pf,
				where[i].hook, strerror(errno));
			rc = -1;
		}
	}
	if (setns(home, CLONE_NEWNET)) {
		fprintf(stderr, "floor: back to own netns: %s\n", strerror(errno));
		rc = -1;
	}
	close(home);
	close(target);
	return rc;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* A cgroup2 root has no cgroup.type file; every child has one. */
static int is_cgroup_child(const char *dir)
{
	char p[4096];
	struct stat st;

	snprintf(p, sizeof(p), "%s/cgroup.type", dir);
	return stat(p, &st) == 0;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	int cg;

	const char *netns = NULL;

	if (argc == 6 && !strcmp(argv[4], "--netns"))
		netns = argv[5];
	if ((argc != 4 && !netns) || strcmp(argv[2], "--cgroup")) {
		fprintf(stderr, "usage: floor OBJ --cgroup DIR [--netns PATH]\n");
		return 2;
	}
	if (!is_cgroup_child(argv[3])) {
		fprintf(stderr, "floor: %s is not a child cgroup (the root is never used)\n", argv[3]);
		return 2;
	}
	cg = open(argv[3], O_RDONLY | O_DIRECTORY);
	if (cg < 0) {
		fprintf(stderr, "floor: open %s: %s\n", argv[3], strerror(errno));
		return 1;
	}
	obj = bpf_object__open_file(argv[1], NULL);
	prog = obj ? bpf_object__find_program_by_name(obj, "floor_nf") : NULL;
	/* FLOOR_COUNT=1: the counting floor's two programs instead of floor_state. */
	if (obj && getenv("FLOOR_COUNT") && atoi(getenv("FLOOR_COUNT"))) {
		bpf_program__set_autoload(bpf_object__find_program_by_name(obj, "floor_state"), false);
		bpf_program__set_autoload(bpf_object__find_program_by_name(obj, "floor_count"), true);
		bpf_program__set_autoload(bpf_object__find_program_by_name(obj, "floor_count_rescue"),
					  true);
	}
	/* FLOOR_WALK=1: the walking floor's packet programs instead of the empty ones. */
	if (obj && getenv("FLOOR_WALK") && atoi(getenv("FLOOR_WALK"))) {
		static const char *const off[] = { "floor_egress", "floor_ingress" };
		static const char *const on[] = { "floor_walk_egress", "floor_walk_ingress" };

		for (int i = 0; i < 2; i++) {
			bpf_program__set_autoload(bpf_object__find_program_by_name(obj, off[i]), false);
			bpf_program__set_autoload(bpf_object__find_program_by_name(obj, on[i]), true);
		}
	}
	if (prog && netns) {
		bpf_program__set_type(prog, FLOOR_PROG_TYPE_NETFILTER);
		bpf_program__set_expected_attach_type(prog, FLOOR_ATTACH_NETFILTER);
		bpf_program__set_autoload(prog, true);
	}
	if (!obj || bpf_object__load(obj)) {
		fprintf(stderr, "floor: load %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(prog, obj) {
		const char *only = getenv("FLOOR_ONLY");
		bool skb = bpf_program__section_name(prog)[0] == 'c';
		struct bpf_link *l;

		if (!bpf_program__autoload(prog))
			continue;
		if (!strcmp(bpf_program__name(prog), "floor_nf")) {
			if (attach_nf(prog, netns))
				return 1;
			continue;
		}
		if (only && strcmp(only, skb ? "skb" : "tp"))
			continue;
		l = skb ? bpf_program__attach_cgroup(prog, cg) : bpf_program__attach(prog);

		if (!l) {
			fprintf(stderr, "floor: attach %s: %s\n", bpf_program__name(prog),
				strerror(errno));
			return 1;
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	printf("{\"type\":\"stats\",\"phase\":\"start\",\"tool\":\"floor\"}\n");
	fflush(stdout);
	while (!stop)
		pause();
	printf("{\"type\":\"stats\",\"phase\":\"end\",\"tool\":\"floor\"}\n");
	return 0;
}
