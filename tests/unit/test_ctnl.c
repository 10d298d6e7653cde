// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* ctnl_parse on ctnetlink messages captured from a 6.18 kernel (a DNAT'd IPv4
 * connection through NEW, CLOSE_WAIT and its destroy; an IPv6 NEW; a dump
 * datagram), then cut, corrupted and altered; ctstat_parse on stat tables of
 * this kernel and of older ones. Every message is an exactly-sized heap copy,
 * so a read past it is an ASan error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include "check.h"
#include "ctnl.h"
#include "ctstat.h"

/* Captured with a NETLINK_NETFILTER socket bound to groups 1-3 in a scratch
 * namespace: 10.78.1.10:33420 -> 10.96.0.10:80, DNAT to 10.78.2.20:8080. */
static const char v4_new_hex[] =
	"c400000000010006000000000000000002000000340001801400018008000100"
	"0a4e010a080002000a60000a1c000280050001000600000006000200828c0000"
	"06000300005000003400028014000180080001000a4e0214080002000a4e010a"
	"1c0002800500010006000000060002001f90000006000300828c000008000c00"
	"cd31e0ab08000300000001a80800070000000078300004802c00018005000100"
	"01000000050002000a0000000500030000000000060004000300000006000500"
	"00000000";
static const char v4_close_wait_hex[] =
	"c400000000010000000000000000000002000000340001801400018008000100"
	"0a4e010a080002000a60000a1c000280050001000600000006000200828c0000"
	"06000300005000003400028014000180080001000a4e0214080002000a4e010a"
	"1c0002800500010006000000060002001f90000006000300828c000008000c00"
	"cd31e0ab08000300000001ae080007000000003c300004802c00018005000100"
	"05000000050002000a000000050003000a000000060004002700000006000500"
	"23000000";
static const char v6_new_hex[] =
	"f40000000001000600000000000000000a0000004c0001802c00018014000300"
	"0000000000000000000000000000000114000400000000000000000000000000"
	"000000011c000280050001000600000006000200d6d60000060003001f910000"
	"4c0002802c000180140003000000000000000000000000000000000114000400"
	"000000000000000000000000000000011c000280050001000600000006000200"
	"1f91000006000300d6d6000008000c00a6b7da10080003000000000808000700"
	"00000078300004802c0001800500010001000000050002000a00000005000300"
	"0000000006000400030000000600050000000000";
static const char v4_destroy_hex[] =
	"a4000000020100000000000018b8f5bc02000000340001801400018008000100"
	"0a4e010a080002000a60000a1c000280050001000600000006000200828c0000"
	"06000300005000003400028014000180080001000a4e0214080002000a4e010a"
	"1c0002800500010006000000060002001f90000006000300828c000008000c00"
	"cd31e0ab08000300000003ae080007000000003b100004800c00018005000100"
	"05000000";
static const char dump_hex[] =
	"040100000001020007000000b07e47ef0a0000004c0001802c00018014000300"
	"0000000000000000000000000000000114000400000000000000000000000000"
	"000000011c000280050001000600000006000200d6d60000060003001f910000"
	"4c0002802c000180140003000000000000000000000000000000000114000400"
	"000000000000000000000000000000011c000280050001000600000006000200"
	"1f91000006000300d6d60000080003000000000e080008000000000008000c00"
	"a6b7da1008000b0000000001080007000006977f300004802c00018005000100"
	"03000000050002000a000000050003000a000000060004002300000006000500"
	"23000000d40000000001020007000000b07e47ef020000003400018014000180"
	"080001000a4e010a080002000a60000a1c000280050001000600000006000200"
	"828c000006000300005000003400028014000180080001000a4e021408000200"
	"0a4e010a1c0002800500010006000000060002001f90000006000300828c0000"
	"08000300000001ae080008000000000008000c00cd31e0ab08000b0000000001"
	"080007000000003b300004802c0001800500010005000000050002000a000000"
	"050003000a00000006000400270000000600050023000000";

static unsigned char *from_hex(const char *h, size_t *n)
{
	size_t len = strlen(h) / 2;
	unsigned char *b = malloc(len);

	if (!b)
		abort();
	for (size_t i = 0; i < len; i++)
		sscanf(h + 2 * i, "%2hhx", &b[i]);
	*n = len;
	return b;
}

static int parse_copy(const unsigned char *p, size_t n, struct ct_event *e)
{
	unsigned char *q = dup_n(p, n);
	int r = ctnl_parse(q, n, e);

	free(q);
	return r;
}

static bool ip4_is(const uint8_t *a, const char *s)
{
	struct in_addr x;

	inet_pton(AF_INET, s, &x);
	return !memcmp(a, &x, 4);
}

/* The offset of the first attribute header (len, type) followed by value
 * byte v, or 0. */
static size_t find_attr(const unsigned char *p, size_t n, uint16_t len, uint16_t type,
			uint8_t v)
{
	for (size_t i = 20; i + 5 <= n; i += 4) {
		uint16_t l, t;

		memcpy(&l, p + i, 2);
		memcpy(&t, p + i + 2, 2);
		if (l == len && (t & 0x3fff) == type && p[i + 4] == v)
			return i;
	}
	return 0;
}

static void test_captured(void)
{
	struct ct_event e;
	unsigned char *m;
	size_t n;
	int r;

	m = from_hex(v4_new_hex, &n);
	r = parse_copy(m, n, &e);
	check(r == 1 && e.type == CT_EV_NEW && e.source == CT_SRC_NETLINK,
	      "v4 NEW: r=%d type=%u source=%u", r, e.type, e.source);
	check(e.id == 3442598059u && e.tcp_state == CT_TCP_SYN_SENT && e.old_tcp_state == 0,
	      "v4 NEW: id %llu, state %u", (unsigned long long)e.id, e.tcp_state);
	check((e.status & CT_S_DST_NAT) && (e.status & CT_S_CONFIRMED) && !(e.status & CT_S_SRC_NAT),
	      "v4 NEW: status 0x%x has DST_NAT and CONFIRMED", e.status);
	check(e.orig.l3 == AF_INET && e.orig.l4 == IPPROTO_TCP &&
	      ip4_is(e.orig.src, "10.78.1.10") && ip4_is(e.orig.dst, "10.96.0.10") &&
	      e.orig.sport == 33420 && e.orig.dport == 80, "v4 NEW: orig tuple client -> VIP:80");
	check(ip4_is(e.reply.src, "10.78.2.20") && ip4_is(e.reply.dst, "10.78.1.10") &&
	      e.reply.sport == 8080 && e.reply.dport == 33420,
	      "v4 NEW: reply tuple backend:8080 -> client");
	check(e.ts_ns == 0 && e.netns == 0 && e.mark == 0, "v4 NEW: pure, no time, no netns");

	/* Altered copies of the same message. */
	m[6] = 0; /* nlmsg_flags low byte */
	m[7] = 0; /* without NLM_F_CREATE|NLM_F_EXCL: a change */
	check(parse_copy(m, n, &e) == 1 && e.type == CT_EV_UPDATE, "NEW without CREATE|EXCL: UPDATE");
	m[7] = 0x04; /* NLM_F_CREATE alone */
	check(parse_copy(m, n, &e) == 1 && e.type == CT_EV_UPDATE, "NEW with CREATE only: UPDATE");
	m[4] = IPCTNL_MSG_CT_GET_STATS;
	check(parse_copy(m, n, &e) == 0, "a stats message: not an event");
	m[4] = IPCTNL_MSG_CT_DELETE;
	check(parse_copy(m, n, &e) == 1 && e.type == CT_EV_DESTROY, "CT_DELETE: DESTROY");
	m[5] = 2; /* NFNL_SUBSYS_CTNETLINK_EXP */
	check(parse_copy(m, n, &e) == 0, "an expectation message: not an event");
	m[5] = 1;
	{
		size_t at = find_attr(m, n, 5, 1 /* CTA_PROTO_NUM */, IPPROTO_TCP);

		check(at != 0, "found CTA_PROTO_NUM");
		if (at) {
			m[at + 4] = IPPROTO_UDP;
			check(parse_copy(m, n, &e) == 0, "UDP: well formed, not reported");
			m[at + 4] = IPPROTO_TCP;
		}
		at = find_attr(m, n, 5, 1 /* CTA_PROTOINFO_TCP_STATE */, CT_TCP_SYN_SENT);
		check(at != 0, "found CTA_PROTOINFO_TCP_STATE");
		if (at) {
			m[at + 4] = 10; /* TCP_CONNTRACK_MAX */
			check(parse_copy(m, n, &e) == -1, "TCP state 10: malformed");
			m[at + 4] = CT_TCP_SYN_SENT;
		}
	}
	/* nlmsg_len larger than the bytes, and below the header. */
	m[0]++;
	check(parse_copy(m, n, &e) == -1, "nlmsg_len past the end: malformed");
	m[0] = 8;
	check(parse_copy(m, n, &e) == -1, "nlmsg_len below the header: malformed");
	free(m);

	m = from_hex(v4_close_wait_hex, &n);
	r = parse_copy(m, n, &e);
	check(r == 1 && e.type == CT_EV_UPDATE && e.tcp_state == CT_TCP_CLOSE_WAIT &&
	      e.id == 3442598059u, "v4 CLOSE_WAIT update: r=%d type=%u state=%u", r, e.type,
	      e.tcp_state);
	check((e.status & (CT_S_ASSURED | CT_S_SEEN_REPLY)) == (CT_S_ASSURED | CT_S_SEEN_REPLY),
	      "v4 CLOSE_WAIT: ASSURED and SEEN_REPLY");
	free(m);

	m = from_hex(v4_destroy_hex, &n);
	r = parse_copy(m, n, &e);
	check(r == 1 && e.type == CT_EV_DESTROY && e.id == 3442598059u &&
	      (e.status & CT_S_DYING) && e.reply.sport == 8080,
	      "v4 destroy: r=%d type=%u status=0x%x", r, e.type, e.status);
	free(m);

	m = from_hex(v6_new_hex, &n);
	r = parse_copy(m, n, &e);
	{
		static const uint8_t lo6[16] = { [15] = 1 };

		check(r == 1 && e.type == CT_EV_NEW && e.orig.l3 == AF_INET6 &&
		      !memcmp(e.orig.src, lo6, 16) && !memcmp(e.reply.dst, lo6, 16) &&
		      e.orig.dport == 8081 && e.reply.sport == 8081,
		      "v6 NEW: ::1 -> ::1:8081, r=%d", r);
	}
	free(m);

	/* A dump datagram holds several messages: the first is parsed by its
	 * own nlmsg_len, whatever follows. Dump replies carry NLM_F_MULTI only. */
	m = from_hex(dump_hex, &n);
	r = parse_copy(m, n, &e);
	check(r == 1 && e.type == CT_EV_UPDATE && e.tcp_state != CT_TCP_NONE,
	      "dump entry: r=%d type=%u (ctnl_dump makes it NEW)", r, e.type);
	free(m);
}

/* Every prefix, with nlmsg_len left as captured (always malformed), and with
 * nlmsg_len patched to the prefix (attributes cut anywhere): no crash, and a
 * cut message is never a complete event with both tuples unless the cut fell
 * between attributes. */
static void test_cuts(const char *name, const char *hex)
{
	size_t n;
	unsigned char *m = from_hex(hex, &n);
	int bad = 0, events = 0;

	for (size_t cut = 0; cut < n; cut++) {
		struct ct_event e;
		unsigned char *q = dup_n(m, cut);
		uint32_t l = (uint32_t)cut;

		if (ctnl_parse(q, cut, &e) != -1)
			bad++;
		if (cut >= 4) {
			memcpy(q, &l, 4);
			events += ctnl_parse(q, cut, &e) == 1;
		}
		free(q);
	}
	check(bad == 0, "%s: every prefix with the real nlmsg_len is malformed", name);
	check(events < (int)n / 4, "%s: a cut message seldom parses (%d of %zu)", name, events, n);
	free(m);
}

/* Every byte set to a few values: a smoke test under ASan/UBSan. */
static void test_corrupt(const char *name, const char *hex)
{
	static const uint8_t vals[] = { 0x00, 0x01, 0x04, 0x05, 0x7f, 0x80, 0xff };
	size_t n;
	unsigned char *m = from_hex(hex, &n);
	int counts[3] = { 0 };

	for (size_t i = 0; i < n; i++) {
		for (size_t v = 0; v < sizeof(vals); v++) {
			struct ct_event e;
			unsigned char *q = dup_n(m, n);

			q[i] = vals[v];
			counts[ctnl_parse(q, n, &e) + 1]++;
			free(q);
		}
	}
	check(counts[0] + counts[1] + counts[2] == (int)(n * sizeof(vals)),
	      "%s: %d corrupted copies: %d malformed, %d skipped, %d events", name,
	      (int)(n * sizeof(vals)), counts[0], counts[1], counts[2]);
	free(m);
}

static const char stat_618[] =
	"entries  clashres found new invalid ignore delete chainlength insert insert_failed "
	"drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n"
	"00000021  00000001 00000000 00000000 00000002 00000000 00000000 00000000 00000000 "
	"00000003 00000010 00000004 00000000  00000000 00000000 00000000 00000005\n"
	"00000021  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 "
	"0000000a 000000f0 00000001 00000000  00000000 00000000 00000000 00000000\n";

/* 4.x: searched, delete_list, no clashres; no newline at the end. */
static const char stat_old[] =
	"entries  searched found new invalid ignore delete delete_list insert insert_failed "
	"drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n"
	"0000ffff  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 "
	"00000001 00000002 00000003 00000000  00000000 00000000 00000000 00000000";

static int parse_stat(const char *s, struct ctstat_sums *o)
{
	size_t n = strlen(s);
	unsigned char *q = dup_n((const unsigned char *)s, n); /* no NUL: must not need one */
	int r = ctstat_parse((const char *)q, n, o);

	free(q);
	return r;
}

static void test_stat(void)
{
	struct ctstat_sums o;
	int r;

	r = parse_stat(stat_618, &o);
	check(r == 0 && o.cpus == 2, "6.18 table: r=%d, %u CPUs", r, o.cpus);
	check(o.v[CTS_ENTRIES] == 0x21, "entries from one line, not summed: %llu",
	      (unsigned long long)o.v[CTS_ENTRIES]);
	check(o.v[CTS_DROP] == 0x100 && o.v[CTS_EARLY_DROP] == 5 &&
	      o.v[CTS_INSERT_FAILED] == 13 && o.v[CTS_SEARCH_RESTART] == 5 &&
	      o.v[CTS_CLASHRES] == 1 && o.v[CTS_INVALID] == 2,
	      "6.18 table: summed over CPUs by column name");
	check(o.have & (1u << CTS_CLASHRES), "6.18 table has clashres");

	r = parse_stat(stat_old, &o);
	check(r == 0 && o.cpus == 1 && o.v[CTS_ENTRIES] == 0xffff && o.v[CTS_DROP] == 2 &&
	      o.v[CTS_EARLY_DROP] == 3 && o.v[CTS_INSERT_FAILED] == 1,
	      "old table without a final newline: r=%d", r);
	check(!(o.have & (1u << CTS_CLASHRES)), "old table: clashres absent, and said so");

	check(parse_stat("", &o) == -1, "empty: malformed");
	check(parse_stat("\n", &o) == -1, "no header: malformed");
	check(parse_stat("entries drop\n00000001\n", &o) == -1, "short line: malformed");
	check(parse_stat("entries drop\n1 2 3\n", &o) == -1, "long line: malformed");
	check(parse_stat("entries drop\n1 zz\n", &o) == -1, "not hex: malformed");
	check(parse_stat("entries drop\n1 11112222333344445\n", &o) == -1, "17 hex digits: malformed");
	check(parse_stat("entries drop\n1 ffffffffffffffff\n\n", &o) == 0 &&
	      o.v[CTS_DROP] == UINT64_MAX, "16 hex digits and a blank last line: fine");
	check(parse_stat("entries drop\n", &o) == 0 && o.cpus == 0, "header only: zero CPUs");

	/* Every prefix of the real table: no crash. */
	for (size_t cut = 0; cut < sizeof(stat_618) - 1; cut++) {
		unsigned char *q = dup_n((const unsigned char *)stat_618, cut);

		ctstat_parse((const char *)q, cut, &o);
		free(q);
	}
	check(true, "every prefix of the stat table parsed without a crash");
}

int main(void)
{
	test_captured();
	test_cuts("v4 NEW", v4_new_hex);
	test_cuts("v6 NEW", v6_new_hex);
	test_cuts("v4 destroy", v4_destroy_hex);
	test_corrupt("v4 NEW", v4_new_hex);
	test_corrupt("v6 NEW", v6_new_hex);
	test_stat();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
