// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer harness for user/live/ctnl.c and user/live/ctstat.c: hostile bytes into
 * ctnl_parse (one ctnetlink message) and ctstat_parse (the text of
 * /proc/net/stat/nf_conntrack).
 *
 *   scripts/test.sh fuzz    (built against connscope's libraries)
 *   then, longer: .output/tests/fuzz_ctnl tests/fuzz/corpus_ctnl
 *
 * Input: byte 0 picks the parser (even: ctnl_parse, odd: ctstat_parse), the
 * rest is its input, in an exactly-sized heap copy so that a read past it is
 * an ASan report. The seeds in tests/fuzz/corpus_ctnl are messages captured
 * from a 6.18 kernel (see tests/unit/test_ctnl.c) and a stat table. Besides
 * "no crash", the parser's promises are checked: an event is TCP, with an
 * address family, a known type and a TCP state in range; a parse leaves the
 * same result twice.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include "ctnl.h"
#include "ctstat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *q;
	size_t n;

	if (size < 1)
		return 0;
	n = size - 1;
	q = malloc(n ? n : 1);
	if (!q)
		abort();
	memcpy(q, data + 1, n);
	if (!(data[0] & 1)) {
		struct ct_event a, b;
		int r = ctnl_parse(q, n, &a);

		if (r < -1 || r > 1 || ctnl_parse(q, n, &b) != r || memcmp(&a, &b, sizeof(a)))
			abort();
		if (r == 1 && (a.orig.l4 != IPPROTO_TCP || a.source != CT_SRC_NETLINK ||
			       (a.orig.l3 != AF_INET && a.orig.l3 != AF_INET6) ||
			       a.type < CT_EV_NEW || a.type > CT_EV_DESTROY ||
			       a.tcp_state > CT_TCP_SYN_SENT2 || a.old_tcp_state || a.ts_ns))
			abort();
	} else {
		struct ctstat_sums s;

		if (ctstat_parse((const char *)q, n, &s) == 0 && s.have >> CTS_NCOLS)
			abort();
	}
	free(q);
	return 0;
}
