// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The floor for replay's speed: a bare libpcap read loop over a capture file,
 * nothing decoded. scripts/bench.sh compares `connscope replay` with it.
 *
 *   gcc -O2 -Wall -Wextra tests/bench/pcapread.c -lpcap -o /tmp/pcapread
 *   /tmp/pcapread big.pcap    ->    packets=N bytes=M
 */
#include <stdint.h>
#include <stdio.h>

#include <pcap/pcap.h>

int main(int argc, char **argv)
{
	char err[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *data;
	uint64_t packets = 0, bytes = 0;
	pcap_t *p;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s FILE\n", argv[0]);
		return 2;
	}
	p = pcap_open_offline(argv[1], err);
	if (!p) {
		fprintf(stderr, "pcapread: %s\n", err);
		return 1;
	}
	while ((rc = pcap_next_ex(p, &h, &data)) == 1) {
		packets++;
		bytes += h->caplen;
	}
	if (rc == PCAP_ERROR)
		fprintf(stderr, "pcapread: %s\n", pcap_geterr(p));
	pcap_close(p);
	printf("packets=%llu bytes=%llu\n", (unsigned long long)packets,
	       (unsigned long long)bytes);
	return rc == PCAP_ERROR;
}
