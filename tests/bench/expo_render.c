// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The cost of one /metrics snapshot: the exposition of N synthetic pods (each
 * with 32 remotes, TLS and HTTP/2, so every family is written), rendered 5 times
 * with the remotes' counts growing between renders. Prints each render's time
 * and size; compare the minimum across builds, interleaved, on a quiet machine.
 *
 *   make libs && cc -std=gnu11 -D_GNU_SOURCE -O2 -Ibpf -I.output -Iuser/agg -Iuser/lib \
 *     -Iuser/live -Iuser/out tests/bench/expo_render.c \
 *     -Wl,--start-group .output/user/libcs_*.a -Wl,--end-group \
 *     -lbpf -lelf -lz -lcjson -lpcap -lcrypto -lcapstone -lm -lpthread -o .output/expo_render
 *   .output/expo_render 500
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include "expo.h"
#include "pods.h"
#include "record.h"

#define REMOTES 32

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 500;
	struct pod_info *pods = calloc((size_t)n, sizeof(*pods));
	struct summary_rec *s = calloc((size_t)n, sizeof(*s));
	static uint8_t addr[REMOTES][16];
	struct metrics_self self = { .attach = "tp_btf" };
	struct expo *x = expo_new(0);

	if (n <= 0 || !pods || !s || !x)
		return 1;
	for (int r = 0; r < REMOTES; r++) {
		addr[r][0] = 10;
		addr[r][3] = (uint8_t)r;
	}
	for (int i = 0; i < n; i++) {
		pods[i].is_pod = pods[i].known = true;
		snprintf(pods[i].namespace_, sizeof(pods[i].namespace_), "ns%d", i % 20);
		snprintf(pods[i].name, sizeof(pods[i].name), "deployment-%d-7f9c8d6b5-x%05d", i, i);
		s[i].pod = &pods[i];
		s[i].key = pods[i].name;
		s[i].has_tls = s[i].has_h2 = true;
		for (int r = 0; r < REMOTES; r++) {
			s[i].all_remotes[r].ep.family = AF_INET;
			s[i].all_remotes[r].ep.addr = addr[r];
			s[i].all_remotes[r].ep.port = 80;
			s[i].all_remotes[r].connections = 100 + (uint64_t)r;
		}
		s[i].nall_remotes = REMOTES;
		for (int k = 0; k < 20; k++)
			s[i].tcp.connect_hist[k] = (uint64_t)k;
	}
	for (int round = 0; round < 5; round++) {
		struct timespec a, b;
		char *buf = NULL;
		size_t len = 0;
		FILE *f;

		clock_gettime(CLOCK_MONOTONIC, &a);
		f = open_memstream(&buf, &len);
		if (!f || expo_render_views(x, f, s, n, &self))
			return 1;
		fclose(f);
		clock_gettime(CLOCK_MONOTONIC, &b);
		printf("%d pods: %.2f ms, %zu bytes\n", n,
		       (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6, len);
		free(buf);
		for (int i = 0; i < n; i++)
			for (int r = 0; r < REMOTES; r++)
				s[i].all_remotes[r].connections += (uint64_t)r;
	}
	expo_free(x);
	free(s);
	free(pods);
	return 0;
}
