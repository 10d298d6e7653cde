// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * floor OBJ --cgroup DIR: load tests/bench/floor.bpf.c's do-nothing programs,
 * attach the tracepoint one and the packet ones to DIR (never the cgroup2 root:
 * refused), print a stats start line as connscope does once attached, and wait for
 * SIGINT or SIGTERM. make bench's part 1 runs it as the "floor" config.
 * FLOOR_ONLY=tp or FLOOR_ONLY=skb attaches only the tracepoint's, or the packets'.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bpf/libbpf.h>

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

	if (argc != 4 || strcmp(argv[2], "--cgroup")) {
		fprintf(stderr, "usage: floor OBJ --cgroup DIR\n");
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
	if (!obj || bpf_object__load(obj)) {
		fprintf(stderr, "floor: load %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(prog, obj) {
		const char *only = getenv("FLOOR_ONLY");
		bool skb = bpf_program__section_name(prog)[0] == 'c';
		struct bpf_link *l;

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
