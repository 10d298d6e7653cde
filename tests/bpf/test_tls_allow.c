// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The packet programs must never drop: feed the loaded cgroup_skb programs real
 * handshake bytes (tests/unit/tls_vectors.h) wrapped in IPv4/TCP and IPv6/TCP,
 * every truncation of them, and garbage, through BPF_PROG_TEST_RUN, and require
 * "allow" (1) every time. Needs root.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tls.skel.h"
#include "../unit/tls_vectors.h"

static int pass, fail;

static const struct vec_session *sessions[] = {
	&tls13, &tls12, &tls12_resume, &tls13_resume, &reject13, &reject12, &nocipher12,
};

static int run(int prog_fd, const unsigned char *pkt, size_t len)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = len, .repeat = 1);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);

	if (err)
		return -1000 + err;
	return (int)opts.retval;
}

/* BPF_PROG_TEST_RUN takes an Ethernet frame (it sets skb->protocol from it and
 * hands the program the network header on). */
#define ETH 14

/* Ethernet + IPv4 + TCP header (no options) in front of payload. */
static size_t build_v4(unsigned char *out, const unsigned char *payload, size_t plen)
{
	unsigned char *ip = out + ETH, *tcp = ip + 20;
	size_t tot = 40 + plen;

	memset(out, 0, ETH + 40);
	out[12] = 0x08; /* ETH_P_IP */
	ip[0] = 0x45;
	ip[2] = tot >> 8;
	ip[3] = tot & 0xff;
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, "\x7f\x00\x00\x01\x7f\x00\x00\x02", 8);
	tcp[0] = 0x9c; tcp[1] = 0x40; tcp[2] = 0x01; tcp[3] = 0xbb; /* 40000 -> 443 */
	tcp[4] = 0x10;                                               /* seq */
	tcp[12] = 5 << 4;
	tcp[13] = 0x18;                                              /* PSH ACK */
	memcpy(tcp + 20, payload, plen);
	return ETH + tot;
}

static void expect_allow(const char *what, int prog_fd, const unsigned char *pkt, size_t len)
{
	int r = run(prog_fd, pkt, len);

	if (r == 1) {
		pass++;
	} else {
		fail++;
		printf("FAIL: %s (%zu bytes): returned %d\n", what, len, r);
	}
}

int main(void)
{
	static unsigned char pkt[70000];
	struct tls_bpf *s = tls_bpf__open_and_load();
	int fds[2];
	size_t n;

	if (!s) {
		printf("FAIL: cannot load the TLS programs (root needed)\n0 passed, 1 failed\n");
		return 1;
	}
	fds[0] = bpf_program__fd(s->progs.cs_tls_ingress);
	fds[1] = bpf_program__fd(s->progs.cs_tls_egress);
	for (int p = 0; p < 2; p++) {
		int before = fail;

		for (size_t v = 0; v < sizeof(sessions) / sizeof(sessions[0]); v++) {
			const struct vec_session *vs = sessions[v];

			for (int d = 0; d < 2; d++) {
				n = build_v4(pkt, d ? vs->s2c : vs->c2s, d ? vs->s2c_len : vs->c2s_len);
				expect_allow(vs->name, fds[p], pkt, n);
				/* Every truncation of the packet, headers included. */
				for (size_t cut = ETH + 20; cut < n; cut += 3)
					expect_allow("truncated", fds[p], pkt, cut);
			}
		}
		/* Garbage after an IPv4 or IPv6 Ethernet header, of every small size
		 * and one of the largest a test run takes. */
		srand(7);
		/* (BPF_PROG_TEST_RUN itself refuses frames shorter than their IP header.) */
		for (size_t len = ETH + 40; len < 400; len++) {
			for (size_t i = 0; i < len; i++)
				pkt[i] = (unsigned char)rand();
			pkt[12] = len & 1 ? 0x86 : 0x08;
			pkt[13] = len & 1 ? 0xdd : 0x00;
			expect_allow("garbage", fds[p], pkt, len);
		}
		for (size_t i = 0; i < 3000; i++)
			pkt[i] = (unsigned char)rand();
		pkt[12] = 0x08;
		pkt[13] = 0x00;
		pkt[ETH] = 0x45;
		expect_allow("large garbage", fds[p], pkt, 3000);
		printf("%s: %s program allows every packet\n", fail == before ? "ok" : "FAIL",
		       p ? "egress" : "ingress");
	}
	tls_bpf__destroy(s);
	printf("%d passed, %d failed\n", pass, fail);
	return fail != 0;
}
