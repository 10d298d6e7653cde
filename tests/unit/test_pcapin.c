// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit test of user/replay/pcapin.c, the capture reader of replay.
 *
 *   scripts/test.sh unit    (built against connscope's libraries)
 *
 * The captures are made here, byte by byte (pcap in both byte orders, micro and
 * nanosecond, pcapng with and without if_tsresol, gzip), plus one written by
 * libpcap's own pcap_dump and, when editcap is installed, one converted by it, in
 * a temporary directory that is removed at the end. Every link type replay
 * accepts is covered with IPv4 and IPv6 (extension headers, VLAN and QinQ tags,
 * cooked headers, both loopback byte orders), and every field of every segment is
 * compared with what was put in. Then the bad cases: fragments, malformed and
 * snap-cut headers, a file cut at every offset (what came before must come out,
 * and `truncated` must say so), a corrupt record length, files that are not
 * captures, a missing file, an unsupported link type, and the five-message limit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pcap/pcap.h>
#include <zlib.h>

#include "pcapin.h"

#include "check.h"

/* ---- byte buffers ------------------------------------------------------------------ */

struct buf {
	uint8_t *b;
	size_t n, cap;
};

static void put(struct buf *c, const void *p, size_t n)
{
	if (c->n + n > c->cap) {
		c->cap = (c->n + n) * 2 + 256;
		c->b = realloc(c->b, c->cap);
		if (!c->b)
			abort();
	}
	if (n)
		memcpy(c->b + c->n, p, n);
	c->n += n;
}

static void put8(struct buf *c, uint8_t v)
{
	put(c, &v, 1);
}

static void put16be(struct buf *c, uint16_t v)
{
	uint8_t b[2] = { v >> 8, v & 0xff };

	put(c, b, 2);
}

static void put32be(struct buf *c, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

	put(c, b, 4);
}

/* Host order (the test runs little-endian, like the captures it imitates). */
static void put16h(struct buf *c, uint16_t v)
{
	put(c, &v, 2);
}

static void put32h(struct buf *c, uint32_t v)
{
	put(c, &v, 4);
}

static void put32x(struct buf *c, uint32_t v, bool be)
{
	if (be)
		put32be(c, v);
	else
		put32h(c, v);
}

static void put16x(struct buf *c, uint16_t v, bool be)
{
	if (be)
		put16be(c, v);
	else
		put16h(c, v);
}

/* ---- packets ----------------------------------------------------------------------- */

/* What a segment should decode to. */
struct want {
	int family;
	uint8_t saddr[16], daddr[16];
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint16_t win;
	uint8_t flags;
	uint8_t payload[256];
	uint32_t len, wire_len;
	uint64_t ts_ns;
};

static void want_default(struct want *w, int family, uint32_t plen)
{
	memset(w, 0, sizeof(*w));
	w->family = family;
	if (family == AF_INET) {
		memcpy(w->saddr, "\x0a\x01\x02\x03", 4);
		memcpy(w->daddr, "\xc0\xa8\xff\x01", 4);
	} else {
		memcpy(w->saddr, "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01", 16);
		memcpy(w->daddr, "\xfe\x80\x00\x00\x00\x00\x00\x00\x12\x34\x56\x78\x9a\xbc\xde\xf0", 16);
	}
	w->sport = 43210;
	w->dport = 443;
	w->seq = 0xfffffff0u;
	w->ack = 0x80000001u;
	w->win = 0xfedc;
	w->flags = PCAP_TH_ACK | PCAP_TH_PSH;
	for (uint32_t i = 0; i < plen && i < sizeof(w->payload); i++)
		w->payload[i] = (uint8_t)(0x41 + i * 3);
	w->len = w->wire_len = plen;
}

/* TCP header (optlen bytes of NOP options) and payload. */
static void put_tcp(struct buf *c, const struct want *w, unsigned optlen)
{
	put16be(c, w->sport);
	put16be(c, w->dport);
	put32be(c, w->seq);
	put32be(c, w->ack);
	put8(c, (uint8_t)(((20 + optlen) / 4) << 4));
	put8(c, w->flags);
	put16be(c, w->win);
	put16be(c, 0x1234);  /* checksum: not checked */
	put16be(c, 0);
	for (unsigned i = 0; i < optlen; i++)
		put8(c, 1);
	put(c, w->payload, w->wire_len);
}

/* IPv4 with optlen bytes of options around the TCP segment. */
static void put_ip4(struct buf *c, const struct want *w, unsigned optlen, unsigned tcpopt,
		    uint16_t frag, uint8_t proto)
{
	uint16_t tot = (uint16_t)(20 + optlen + 20 + tcpopt + w->wire_len);

	put8(c, (uint8_t)(0x40 | (20 + optlen) / 4));
	put8(c, 0);
	put16be(c, tot);
	put16be(c, 0x4242);
	put16be(c, frag);
	put8(c, 64);
	put8(c, proto);
	put16be(c, 0);
	put(c, w->saddr, 4);
	put(c, w->daddr, 4);
	for (unsigned i = 0; i < optlen; i++)
		put8(c, 1);
	put_tcp(c, w, tcpopt);
}

/* IPv6 with extension headers ext (ext[0] is the first one's type; the chain in
 * it is already linked), ending in TCP. */
static void put_ip6(struct buf *c, const struct want *w, uint8_t nh, const uint8_t *ext,
		    unsigned extlen, unsigned tcpopt)
{
	put32be(c, 0x60012345);
	put16be(c, (uint16_t)(extlen + 20 + tcpopt + w->wire_len));
	put8(c, nh);
	put8(c, 64);
	put(c, w->saddr, 16);
	put(c, w->daddr, 16);
	put(c, ext, extlen);
	put_tcp(c, w, tcpopt);
}

static void put_ip(struct buf *c, const struct want *w)
{
	if (w->family == AF_INET)
		put_ip4(c, w, 0, 0, 0x4000 /* DF */, 6);
	else
		put_ip6(c, w, 6, NULL, 0, 0);
}

enum lk {
	ETH, ETH_VLAN, ETH_QINQ, ETH_9100, SLL, SLL_VLAN, SLL2, RAW12, RAW14, RAW101,
	IPV4, IPV6, NULL_LE, NULL_BE, LOOP, NLK,
};

static const struct lkinfo {
	const char *what;
	uint32_t linktype;
	const char *name;   /* pcapin_linktype */
	bool v4, v6;
} lks[NLK] = {
	[ETH]      = { "Ethernet", 1, "EN10MB", true, true },
	[ETH_VLAN] = { "Ethernet + 802.1Q", 1, "EN10MB", true, true },
	[ETH_QINQ] = { "Ethernet + 802.1ad + 802.1Q", 1, "EN10MB", true, true },
	[ETH_9100] = { "Ethernet + 0x9100 + 802.1Q + 802.1Q", 1, "EN10MB", true, true },
	[SLL]      = { "Linux cooked", 113, "LINUX_SLL", true, true },
	[SLL_VLAN] = { "Linux cooked + 802.1Q", 113, "LINUX_SLL", true, true },
	[SLL2]     = { "Linux cooked v2", 276, "LINUX_SLL2", true, true },
	[RAW12]    = { "raw IP (12)", 12, "RAW", true, true },
	[RAW14]    = { "raw IP (14)", 14, "RAW", true, true },
	[RAW101]   = { "LINKTYPE_RAW (101)", 101, "RAW", true, true },
	[IPV4]     = { "IPV4 (228)", 228, "IPV4", true, false },
	[IPV6]     = { "IPV6 (229)", 229, "IPV6", false, true },
	[NULL_LE]  = { "BSD loopback, little-endian", 0, "NULL", true, true },
	[NULL_BE]  = { "BSD loopback, big-endian", 0, "NULL", true, true },
	[LOOP]     = { "OpenBSD loopback", 108, "LOOP", true, true },
};

/* The link header for an IP packet of the family; af6 picks AF_INET6's value on
 * loopback (24, 28 or 30). */
static void put_link(struct buf *c, enum lk lk, int family, uint32_t af6)
{
	uint16_t et = family == AF_INET ? 0x0800 : 0x86dd;
	uint32_t af = family == AF_INET ? 2 : af6;
	static const uint8_t macs[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };

	switch (lk) {
	case ETH:
	case ETH_VLAN:
	case ETH_QINQ:
	case ETH_9100:
		put(c, macs, 12);
		if (lk == ETH_9100) {
			put16be(c, 0x9100);
			put16be(c, 7);
		}
		if (lk == ETH_QINQ) {
			put16be(c, 0x88a8);
			put16be(c, 100);
		}
		if (lk != ETH) {
			put16be(c, 0x8100);
			put16be(c, 0x2005);
		}
		if (lk == ETH_9100) {
			put16be(c, 0x8100);
			put16be(c, 0x0006);
		}
		put16be(c, et);
		break;
	case SLL:
	case SLL_VLAN:
		put16be(c, 0);       /* packet type: to us */
		put16be(c, 1);       /* ARPHRD_ETHER */
		put16be(c, 6);
		put(c, macs, 8);
		if (lk == SLL_VLAN) {
			put16be(c, 0x8100);
			put16be(c, 0x0064);
		}
		put16be(c, et);
		break;
	case SLL2:
		put16be(c, et);
		put16be(c, 0);       /* reserved */
		put32be(c, 3);       /* interface index */
		put16be(c, 1);       /* ARPHRD_ETHER */
		put8(c, 4);          /* outgoing */
		put8(c, 6);
		put(c, macs, 8);
		break;
	case NULL_LE:
		put32h(c, af);
		break;
	case NULL_BE:
	case LOOP:
		put32be(c, af);
		break;
	default:
		break;
	}
}

/* ---- capture files ----------------------------------------------------------------- */

static void pcap_hdr(struct buf *c, uint32_t linktype, bool nano, bool be, uint32_t snap)
{
	put32x(c, nano ? 0xa1b23c4d : 0xa1b2c3d4, be);
	put16x(c, 2, be);
	put16x(c, 4, be);
	put32x(c, 0, be);
	put32x(c, 0, be);
	put32x(c, snap, be);
	put32x(c, linktype, be);
}

static void pcap_rec(struct buf *c, uint32_t sec, uint32_t frac, const uint8_t *d,
		     uint32_t caplen, uint32_t origlen, bool be)
{
	put32x(c, sec, be);
	put32x(c, frac, be);
	put32x(c, caplen, be);
	put32x(c, origlen, be);
	put(c, d, caplen);
}

/* pcapng (draft-ietf-opsawg-pcapng): a section header, one interface, then
 * enhanced packet blocks. tsresol 0: no option (microseconds). */
static void ng_shb(struct buf *c)
{
	put32h(c, 0x0a0d0d0a);
	put32h(c, 28);
	put32h(c, 0x1a2b3c4d);
	put16h(c, 1);
	put16h(c, 0);
	put32h(c, 0xffffffff);  /* section length unknown */
	put32h(c, 0xffffffff);
	put32h(c, 28);
}

static void ng_idb(struct buf *c, uint16_t linktype, uint8_t tsresol)
{
	uint32_t len = 20 + (tsresol ? 12 : 0);

	put32h(c, 1);
	put32h(c, len);
	put16h(c, linktype);
	put16h(c, 0);
	put32h(c, 262144);
	if (tsresol) {
		put16h(c, 9);   /* if_tsresol */
		put16h(c, 1);
		put8(c, tsresol);
		put8(c, 0);
		put16h(c, 0);
		put32h(c, 0);   /* opt_endofopt */
	}
	put32h(c, len);
}

static void ng_epb(struct buf *c, uint64_t ts, const uint8_t *d, uint32_t caplen,
		   uint32_t origlen)
{
	uint32_t pad = (4 - caplen % 4) % 4, len = 32 + caplen + pad;
	uint8_t z[4] = { 0 };

	put32h(c, 6);
	put32h(c, len);
	put32h(c, 0);
	put32h(c, (uint32_t)(ts >> 32));
	put32h(c, (uint32_t)ts);
	put32h(c, caplen);
	put32h(c, origlen);
	put(c, d, caplen);
	put(c, z, pad);
	put32h(c, len);
}

static char tmpdir[64];
static char made[64][128];
static int nmade;

static const char *tpath(const char *name)
{
	if (nmade == 64)
		abort();
	snprintf(made[nmade], sizeof(made[0]), "%s/%s", tmpdir, name);
	return made[nmade++];
}

static const char *write_file(const char *name, const void *p, size_t n)
{
	const char *path = tpath(name);
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(p, 1, n, f) != n || fclose(f))
		abort();
	return path;
}

static const char *write_gz(const char *name, const void *p, size_t n)
{
	const char *path = tpath(name);
	gzFile g = gzopen(path, "wb");

	if (!g || gzwrite(g, p, (unsigned)n) != (int)n || gzclose(g) != Z_OK)
		abort();
	return path;
}

static struct buf read_all(const char *path)
{
	struct buf c = { 0 };
	uint8_t tmp[4096];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f)
		abort();
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		put(&c, tmp, n);
	fclose(f);
	return c;
}

/* ---- comparing --------------------------------------------------------------------- */

static bool seg_is(const struct pcap_seg *g, const struct want *w, uint64_t num, char *why,
		   size_t whylen)
{
#define DIFF(cond, ...) do { if (cond) { snprintf(why, whylen, __VA_ARGS__); return false; } } while (0)
	DIFF(g->num != num, "num %lu, want %lu", (unsigned long)g->num, (unsigned long)num);
	DIFF(g->ts_ns != w->ts_ns, "ts_ns %lu, want %lu", (unsigned long)g->ts_ns,
	     (unsigned long)w->ts_ns);
	DIFF(g->family != w->family, "family %d", g->family);
	DIFF(memcmp(g->saddr, w->saddr, 16), "saddr");
	DIFF(memcmp(g->daddr, w->daddr, 16), "daddr");
	DIFF(g->sport != w->sport || g->dport != w->dport, "ports %u %u", g->sport, g->dport);
	DIFF(g->seq != w->seq || g->ack != w->ack, "seq/ack 0x%x 0x%x", g->seq, g->ack);
	DIFF(g->win != w->win, "win %u", g->win);
	DIFF(g->flags != w->flags, "flags 0x%x", g->flags);
	DIFF(g->len != w->len || g->wire_len != w->wire_len, "len %u wire_len %u, want %u %u",
	     g->len, g->wire_len, w->len, w->wire_len);
	DIFF(g->len && memcmp(g->payload, w->payload, g->len), "payload bytes");
	return true;
#undef DIFF
}

/* Read a whole capture into segs; returns how many (-1: open failed, err says). */
static int read_capture(struct pcapin *p, struct pcap_seg *segs, uint8_t (*pl)[256], int max)
{
	struct pcap_seg s;
	int n = 0;

	while (pcapin_next(p, &s) == PCAPIN_TCP) {
		if (n < max) {
			segs[n] = s;
			memcpy(pl[n], s.payload, s.len < 256 ? s.len : 256);
			segs[n].payload = pl[n];
		}
		n++;
	}
	/* After the end, still the end. */
	if (pcapin_next(p, &s) != PCAPIN_END)
		return -2;
	return n;
}

/* ---- stderr capture ---------------------------------------------------------------- */

static int saved_fd = -1;
static char errfile[128];

static void stderr_to_file(void)
{
	int fd;

	snprintf(errfile, sizeof(errfile), "%s/stderr.txt", tmpdir);
	fflush(stderr);
	saved_fd = dup(2);
	fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || saved_fd < 0)
		abort();
	dup2(fd, 2);
	close(fd);
}

/* Restore stderr; the captured text (caller frees). */
static char *stderr_back(void)
{
	struct buf c;

	fflush(stderr);
	dup2(saved_fd, 2);
	close(saved_fd);
	c = read_all(errfile);
	put8(&c, 0);
	unlink(errfile);
	return (char *)c.b;
}

static int count_lines(const char *s, const char *needle)
{
	int n = 0;

	for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* ---- the tests --------------------------------------------------------------------- */

/* A packet of link lk and family with the want's fields; the record bytes. */
static void make_pkt(struct buf *pkt, enum lk lk, const struct want *w, uint32_t af6)
{
	pkt->n = 0;
	put_link(pkt, lk, w->family, af6);
	put_ip(pkt, w);
}

/* Every link type, both families, three packets each with different fields. */
static void test_link_types(void)
{
	static const uint32_t af6s[] = { 24, 28, 30 };
	char why[128];

	for (int lk = 0; lk < NLK; lk++) {
		for (int fam = 0; fam < 2; fam++) {
			int family = fam ? AF_INET6 : AF_INET;
			struct want w[3];
			struct buf cap = { 0 }, pkt = { 0 };
			struct pcap_seg segs[4];
			uint8_t pl[4][256];
			char err[256] = "", name[64];
			struct pcapin *p;
			bool ok = true;
			int n;

			if ((family == AF_INET && !lks[lk].v4) || (family == AF_INET6 && !lks[lk].v6))
				continue;
			pcap_hdr(&cap, lks[lk].linktype, false, false, 65535);
			for (int i = 0; i < 3; i++) {
				want_default(&w[i], family, i == 1 ? 0 : 17 + i * 50);
				w[i].sport += i;
				w[i].seq += i * 1000;
				w[i].ack -= i;
				w[i].win = (uint16_t)(w[i].win + i);
				w[i].flags = i == 1 ? (PCAP_TH_SYN | PCAP_TH_ACK) :
					     i == 2 ? (PCAP_TH_FIN | PCAP_TH_RST | PCAP_TH_ACK) :
					     w[i].flags;
				w[i].ts_ns = (1700000000ull + i) * 1000000000ull + (123456 + i) * 1000ull;
				make_pkt(&pkt, lk, &w[i], af6s[i]);
				pcap_rec(&cap, 1700000000 + i, 123456 + i, pkt.b, (uint32_t)pkt.n,
					 (uint32_t)pkt.n, false);
			}
			snprintf(name, sizeof(name), "lk%d_%d.pcap", lk, fam);
			p = pcapin_open(write_file(name, cap.b, cap.n), err, sizeof(err));
			if (!p) {
				check(false, "%s, %s: open: %s", lks[lk].what, fam ? "IPv6" : "IPv4",
				      err);
				free(cap.b);
				free(pkt.b);
				continue;
			}
			n = read_capture(p, segs, pl, 4);
			ok = n == 3 && strcmp(pcapin_linktype(p), lks[lk].name) == 0;
			snprintf(why, sizeof(why), "%d segments, link type %s", n, pcapin_linktype(p));
			for (int i = 0; ok && i < 3; i++)
				ok = seg_is(&segs[i], &w[i], i + 1, why, sizeof(why));
			const struct pcapin_stats *st = pcapin_stats(p);

			if (ok && (st->packets != 3 || st->tcp != 3 || st->decode_errors ||
				   st->not_tcp || st->truncated || st->bytes != cap.n - 24 - 48)) {
				ok = false;
				snprintf(why, sizeof(why), "stats");
			}
			check(ok, "%s (%s), %s: every field of 3 segments%s%s", lks[lk].what,
			      lks[lk].name, fam ? "IPv6" : "IPv4", ok ? "" : ": ", ok ? "" : why);
			pcapin_close(p);
			free(cap.b);
			free(pkt.b);
		}
	}
}

/* Open a one-packet-per-record capture in memory and read it: stats out. */
static struct pcapin_stats run_mem(const struct buf *cap, struct pcap_seg *segs,
				   uint8_t (*pl)[256], int max, int *n, bool quiet)
{
	struct pcapin_stats st = { 0 };
	char err[256];
	struct pcapin *p = pcapin_open_mem(cap->b, cap->n, "mem.pcap", err, sizeof(err));

	*n = -1;
	if (!p)
		return st;
	pcapin_quiet(p, quiet);
	*n = read_capture(p, segs, pl, max);
	st = *pcapin_stats(p);
	pcapin_close(p);
	return st;
}

static void test_ip_variants(void)
{
	struct buf cap = { 0 }, pkt = { 0 };
	struct pcap_seg segs[16];
	uint8_t pl[16][256];
	struct want w4, w6, wpad, wcut;
	struct pcapin_stats st;
	char why[128] = "";
	bool ok;
	int n;

	want_default(&w4, AF_INET, 40);
	want_default(&w6, AF_INET6, 40);
	pcap_hdr(&cap, 1, true, false, 65535);

	/* 1: IPv4 with 8 bytes of options and 12 of TCP options. */
	pkt.n = 0;
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip4(&pkt, &w4, 8, 12, 0, 6);
	pcap_rec(&cap, 10, 1, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	/* 2: IPv6 through hop-by-hop, routing, an atomic fragment, destination
	 * options and AH. */
	static const uint8_t ext[] = {
		43, 0, 1, 4, 0, 0, 0, 0,                              /* HBH (8) -> routing */
		44, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,      /* routing (16) -> frag */
		60, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef,                  /* frag, offset 0, M 0 */
		51, 0, 1, 0, 0, 0, 0, 0,                              /* dest opts (8) -> AH */
		6, 4, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,    /* AH (24) -> TCP */
		13, 14, 15, 16, 17, 18, 19, 20,
	};
	pkt.n = 0;
	put_link(&pkt, ETH, AF_INET6, 0);
	put_ip6(&pkt, &w6, 0, ext, sizeof(ext), 0);
	pcap_rec(&cap, 10, 2, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	/* 3: Ethernet padding: 6 payload bytes, frame padded to 60. */
	want_default(&wpad, AF_INET, 6);
	pkt.n = 0;
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip4(&pkt, &wpad, 0, 0, 0, 6);
	while (pkt.n < 60)
		put8(&pkt, 0xee);
	pcap_rec(&cap, 10, 3, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	/* 4: payload cut by the snap length: 10 of 100 bytes. */
	want_default(&wcut, AF_INET6, 100);
	pkt.n = 0;
	put_link(&pkt, ETH_VLAN, AF_INET6, 0);
	put_ip6(&pkt, &wcut, 6, NULL, 0, 0);
	pcap_rec(&cap, 10, 4, pkt.b, (uint32_t)pkt.n - 90, (uint32_t)pkt.n, false);
	wcut.len = 10;
	/* 5-7: fragments: IPv4 MF, IPv4 offset, IPv6 fragment header with an offset. */
	pkt.n = 0;
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip4(&pkt, &w4, 0, 0, 0x2000, 6);
	pcap_rec(&cap, 10, 5, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	pkt.n = 0;
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip4(&pkt, &w4, 0, 0, 0x0010, 6);
	pcap_rec(&cap, 10, 6, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	static const uint8_t fragext[] = { 6, 0, 0x01, 0x00, 0, 0, 0, 1 };
	pkt.n = 0;
	put_link(&pkt, ETH, AF_INET6, 0);
	put_ip6(&pkt, &w6, 44, fragext, sizeof(fragext), 0);
	pcap_rec(&cap, 10, 7, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	/* 8-10: not TCP: UDP over IPv4, ARP, IPv6 no-next-header. */
	pkt.n = 0;
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip4(&pkt, &w4, 0, 0, 0, 17);
	pcap_rec(&cap, 10, 8, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	pkt.n = 0;
	put(&pkt, "\xff\xff\xff\xff\xff\xff\x00\x01\x02\x03\x04\x05\x08\x06", 14);
	for (int i = 0; i < 28; i++)
		put8(&pkt, 0);
	pcap_rec(&cap, 10, 9, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	pkt.n = 0;
	put_link(&pkt, ETH, AF_INET6, 0);
	put_ip6(&pkt, &w6, 59, NULL, 0, 0);
	pcap_rec(&cap, 10, 10, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	/* 11: an IPv4 segment after all that, nanosecond time. */
	pkt.n = 0;
	put_link(&pkt, ETH_QINQ, AF_INET, 0);
	put_ip(&pkt, &w4);
	pcap_rec(&cap, 4000000000u, 999999999, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);

	w4.ts_ns = 10ull * 1000000000 + 1;
	w6.ts_ns = 10ull * 1000000000 + 2;
	wpad.ts_ns = 10ull * 1000000000 + 3;
	wcut.ts_ns = 10ull * 1000000000 + 4;
	st = run_mem(&cap, segs, pl, 16, &n, false);
	ok = n == 5;
	if (!ok)
		snprintf(why, sizeof(why), "%d segments", n);
	ok = ok && seg_is(&segs[0], &w4, 1, why, sizeof(why));
	check(ok, "IPv4 with IP and TCP options%s%s", ok ? "" : ": ", ok ? "" : why);
	ok = n == 5 && seg_is(&segs[1], &w6, 2, why, sizeof(why));
	check(ok, "IPv6 through hop-by-hop, routing, atomic fragment, dest options, AH%s%s",
	      ok ? "" : ": ", ok ? "" : why);
	ok = n == 5 && seg_is(&segs[2], &wpad, 3, why, sizeof(why));
	check(ok, "Ethernet padding trimmed by the IPv4 total length%s%s", ok ? "" : ": ",
	      ok ? "" : why);
	ok = n == 5 && seg_is(&segs[3], &wcut, 4, why, sizeof(why));
	check(ok, "snap-cut payload: len 10, wire_len 100%s%s", ok ? "" : ": ", ok ? "" : why);
	w4.ts_ns = 4000000000ull * 1000000000 + 999999999;
	ok = n == 5 && seg_is(&segs[4], &w4, 11, why, sizeof(why));
	check(ok, "nanosecond pcap, time past 2038, QinQ: ts_ns exact%s%s", ok ? "" : ": ",
	      ok ? "" : why);
	check(st.packets == 11 && st.tcp == 5 && st.fragments == 3 && st.not_tcp == 3 &&
	      st.snap_cut == 1 && st.decode_errors == 0 && !st.truncated,
	      "stats: 11 packets, 5 TCP, 3 fragments, 3 not TCP, 1 snap cut (got %lu %lu %lu %lu %lu)",
	      (unsigned long)st.packets, (unsigned long)st.tcp, (unsigned long)st.fragments,
	      (unsigned long)st.not_tcp, (unsigned long)st.snap_cut);
	free(cap.b);
	free(pkt.b);
}

/* Malformed packets: each counted once, the stream goes on, at most five
 * messages per kind, naming file and packet. */
static void test_malformed(void)
{
	struct buf cap = { 0 }, pkt = { 0 };
	struct pcap_seg segs[4];
	uint8_t pl[4][256];
	struct pcapin_stats st;
	struct want w;
	char *msgs;
	int n, bad = 0;

	want_default(&w, AF_INET, 20);
	pcap_hdr(&cap, 1, false, false, 65535);
	/* Ten IPv4 headers with IHL 3. */
	for (int i = 0; i < 10; i++) {
		pkt.n = 0;
		put_link(&pkt, ETH, AF_INET, 0);
		put_ip(&pkt, &w);
		pkt.b[14] = 0x43;
		pcap_rec(&cap, 1, 0, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
		bad++;
	}
	/* One each of other kinds. */
	pkt.n = 0;                                    /* TCP data offset 4 */
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip(&pkt, &w);
	pkt.b[14 + 20 + 12] = 0x40;
	pcap_rec(&cap, 1, 0, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	bad++;
	pkt.n = 0;                                    /* TCP header cut by the snap length */
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip(&pkt, &w);
	pcap_rec(&cap, 1, 0, pkt.b, 14 + 20 + 10, (uint32_t)pkt.n, false);
	bad++;
	pkt.n = 0;                                    /* TCP data offset past the segment */
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip(&pkt, &w);
	pkt.b[14 + 20 + 12] = 0xf0;
	pcap_rec(&cap, 1, 0, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	bad++;
	pkt.n = 0;                                    /* IPv4 total length < header */
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip(&pkt, &w);
	pkt.b[14 + 2] = 0;
	pkt.b[14 + 3] = 10;
	pcap_rec(&cap, 1, 0, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	bad++;
	pkt.n = 0;                                    /* version 6 behind ethertype IPv4 */
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip(&pkt, &w);
	pkt.b[14] = 0x65;
	pcap_rec(&cap, 1, 0, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	bad++;
	pkt.n = 0;                                    /* Ethernet header cut short */
	put_link(&pkt, ETH, AF_INET, 0);
	pcap_rec(&cap, 1, 0, pkt.b, 9, 60, false);
	bad++;
	pkt.n = 0;                                    /* a VLAN tag cut short */
	put_link(&pkt, ETH_VLAN, AF_INET, 0);
	pcap_rec(&cap, 1, 0, pkt.b, 16, 60, false);
	bad++;
	{
		struct want w6;
		/* IPv6: an extension header running past the payload, and nine in a row */
		static const uint8_t longext[] = { 6, 200, 0, 0, 0, 0, 0, 0 };
		uint8_t many[9 * 8] = { 0 };

		want_default(&w6, AF_INET6, 10);
		pkt.n = 0;
		put_link(&pkt, ETH, AF_INET6, 0);
		put_ip6(&pkt, &w6, 0, longext, sizeof(longext), 0);
		pcap_rec(&cap, 1, 0, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
		bad++;
		for (int i = 0; i < 9; i++)
			many[i * 8] = i == 8 ? 6 : 60;
		pkt.n = 0;
		put_link(&pkt, ETH, AF_INET6, 0);
		put_ip6(&pkt, &w6, 60, many, sizeof(many), 0);
		pcap_rec(&cap, 1, 0, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
		bad++;
		pkt.n = 0;   /* cut inside the IPv6 header */
		put_link(&pkt, ETH, AF_INET6, 0);
		put_ip6(&pkt, &w6, 6, NULL, 0, 0);
		pcap_rec(&cap, 1, 0, pkt.b, 14 + 30, (uint32_t)pkt.n, false);
		bad++;
	}
	/* And a good one at the end. */
	pkt.n = 0;
	put_link(&pkt, ETH, AF_INET, 0);
	put_ip(&pkt, &w);
	pcap_rec(&cap, 1, 0, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);

	stderr_to_file();
	st = run_mem(&cap, segs, pl, 4, &n, false);
	msgs = stderr_back();
	check(n == 1 && st.decode_errors == (uint64_t)bad && st.packets == (uint64_t)bad + 1 &&
	      !st.truncated, "%d malformed packets counted, the good one after them read "
	      "(%d segments, %lu errors)", bad, n, (unsigned long)st.decode_errors);
	check(strstr(msgs, "connscope: mem.pcap: packet 1: IPv4 header length 3 is less than 5\n") &&
	      count_lines(msgs, "IPv4 header length 3") == 5 &&
	      count_lines(msgs, "only counted") == 1,
	      "messages name file and packet; five of a kind, then only counted");
	check(strstr(msgs, "packet 11: TCP data offset 4 is less than 5") &&
	      strstr(msgs, "packet 12: TCP header cut short") &&
	      strstr(msgs, "packet 16: Ethernet header cut short") &&
	      strstr(msgs, "packet 20: IPv6 header cut short"),
	      "each kind has its message");
	if (failed)
		fputs(msgs, stdout);
	free(msgs);

	stderr_to_file();
	st = run_mem(&cap, segs, pl, 4, &n, true);
	msgs = stderr_back();
	check(msgs[0] == 0 && st.decode_errors == (uint64_t)bad, "pcapin_quiet: no messages, same counts");
	free(msgs);
	free(cap.b);
	free(pkt.b);
}

/* The same segments through pcap (LE, BE), pcapng (us, ns), gzip on disk and in
 * memory, libpcap's own writer and editcap. */
static void test_formats(void)
{
	struct buf pkt = { 0 }, le = { 0 }, be = { 0 }, ngu = { 0 }, ngn = { 0 }, cap2;
	struct want w[3];
	struct pcap_seg segs[4];
	uint8_t pl[4][256];
	char err[256], why[300];
	struct pcapin *p;
	bool ok;
	int n;

	pcap_hdr(&le, 276, false, false, 262144);
	pcap_hdr(&be, 276, true, true, 262144);
	ng_shb(&ngu);
	ng_idb(&ngu, 276, 0);
	ng_shb(&ngn);
	ng_idb(&ngn, 276, 9);
	for (int i = 0; i < 3; i++) {
		want_default(&w[i], i == 1 ? AF_INET6 : AF_INET, 30 + i);
		w[i].seq += i;
		w[i].ts_ns = 1600000000ull * 1000000000 + 654321000ull + i * 1000;
		make_pkt(&pkt, SLL2, &w[i], 0);
		pcap_rec(&le, 1600000000, 654321 + i, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
		pcap_rec(&be, 1600000000, 654321000 + i * 1000, pkt.b, (uint32_t)pkt.n,
			 (uint32_t)pkt.n, true);
		ng_epb(&ngu, 1600000000ull * 1000000 + 654321 + i, pkt.b, (uint32_t)pkt.n,
		       (uint32_t)pkt.n);
		ng_epb(&ngn, w[i].ts_ns, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n);
	}
	const struct {
		const char *what, *file;
		struct buf *c;
		bool gz;
	} fm[] = {
		{ "pcap, little-endian, microseconds", "f.pcap", &le, false },
		{ "pcap, big-endian, nanoseconds", "f_be.pcap", &be, false },
		{ "pcapng, microseconds", "f.pcapng", &ngu, false },
		{ "pcapng, if_tsresol 9", "f_ns.pcapng", &ngn, false },
		{ "pcap.gz", "f.pcap.gz", &le, true },
		{ "pcapng.gz", "f.pcapng.gz", &ngn, true },
	};
	for (unsigned k = 0; k < sizeof(fm) / sizeof(fm[0]); k++) {
		const char *path = fm[k].gz ? write_gz(fm[k].file, fm[k].c->b, fm[k].c->n) :
					      write_file(fm[k].file, fm[k].c->b, fm[k].c->n);

		for (int mem = 0; mem < 2; mem++) {
			if (mem) {
				cap2 = read_all(path);
				p = pcapin_open_mem(cap2.b, cap2.n, fm[k].file, err, sizeof(err));
			} else {
				cap2.b = NULL;
				p = pcapin_open(path, err, sizeof(err));
			}
			ok = p != NULL;
			snprintf(why, sizeof(why), "%s", err);
			if (p) {
				n = read_capture(p, segs, pl, 4);
				ok = n == 3 && !pcapin_stats(p)->truncated;
				snprintf(why, sizeof(why), "%d segments", n);
				for (int i = 0; ok && i < 3; i++)
					ok = seg_is(&segs[i], &w[i], i + 1, why, sizeof(why));
				pcapin_close(p);
			}
			check(ok, "%s%s: every field%s%s", fm[k].what, mem ? ", in memory" : "",
			      ok ? "" : ": ", ok ? "" : why);
			free(cap2.b);
		}
	}

	/* libpcap's writer. */
	{
		pcap_t *dead = pcap_open_dead(DLT_EN10MB, 65535);
		const char *path = tpath("libpcap.pcap");
		pcap_dumper_t *d = dead ? pcap_dump_open(dead, path) : NULL;
		struct pcap_pkthdr h = { 0 };

		if (!d)
			abort();
		for (int i = 0; i < 3; i++) {
			make_pkt(&pkt, ETH_VLAN, &w[i], 0);
			h.ts.tv_sec = 1600000000;
			h.ts.tv_usec = 654321 + i;
			h.caplen = h.len = (uint32_t)pkt.n;
			pcap_dump((u_char *)d, &h, pkt.b);
		}
		pcap_dump_close(d);
		pcap_close(dead);
		p = pcapin_open(path, err, sizeof(err));
		ok = p != NULL;
		if (p) {
			n = read_capture(p, segs, pl, 4);
			ok = n == 3;
			for (int i = 0; ok && i < 3; i++)
				ok = seg_is(&segs[i], &w[i], i + 1, why, sizeof(why));
			pcapin_close(p);
		}
		check(ok, "a file written by libpcap's pcap_dump");

		/* editcap's pcapng, when wireshark-common is installed. */
		if (access("/usr/bin/editcap", X_OK) == 0) {
			const char *ng = tpath("editcap.pcapng");
			char cmd[512];

			snprintf(cmd, sizeof(cmd), "/usr/bin/editcap -F pcapng '%s' '%s' 2>/dev/null",
				 path, ng);
			ok = system(cmd) == 0;
			p = ok ? pcapin_open(ng, err, sizeof(err)) : NULL;
			ok = p != NULL;
			if (p) {
				n = read_capture(p, segs, pl, 4);
				ok = n == 3;
				for (int i = 0; ok && i < 3; i++)
					ok = seg_is(&segs[i], &w[i], i + 1, why, sizeof(why));
				pcapin_close(p);
			}
			check(ok, "the same converted to pcapng by editcap");
		} else {
			printf("skip: editcap not installed\n");
		}
	}
	free(pkt.b);
	free(le.b);
	free(be.b);
	free(ngu.b);
	free(ngn.b);
}

/* Cut a capture at every offset: never a crash, what came before comes out,
 * `truncated` says whether the cut fell inside a record. */
static void cut_everywhere(const char *what, const struct buf *cap, const size_t *bounds,
			   int nrec, size_t hdrlen, bool ng)
{
	struct pcap_seg segs[8], full[8];
	uint8_t pl[8][256], fpl[8][256];
	unsigned bad = 0, cuts = 0;
	char first_bad[160] = "";
	struct pcapin_stats st;
	struct buf c;
	int nfull, n;

	st = run_mem(cap, full, fpl, 8, &nfull, true);
	if (nfull != nrec || st.truncated) {
		check(false, "%s: the whole file reads (%d of %d)", what, nfull, nrec);
		return;
	}
	for (size_t cut = 0; cut < cap->n; cut++) {
		int whole = 0;
		bool at_bound = cut == hdrlen;

		for (int i = 0; i < nrec; i++) {
			if (bounds[i] <= cut)
				whole = i + 1;
			if (bounds[i] == cut)
				at_bound = true;
		}
		c.b = dup_n(cap->b, cut);
		c.n = cut;
		cuts++;
		st = run_mem(&c, segs, pl, 8, &n, true);
		if (cut < hdrlen) {
			/* Cut in the file header: pcap cannot open; pcapng may open and
			 * then find nothing. */
			if (n > 0)
				bad++;
		} else if (n != whole || st.truncated == at_bound || st.read_error == at_bound) {
			if (!bad++)
				snprintf(first_bad, sizeof(first_bad),
					 "cut %zu: %d segments (want %d), truncated %d", cut, n,
					 whole, st.truncated);
		} else {
			for (int i = 0; i < n; i++)
				if (segs[i].len != full[i].len || segs[i].seq != full[i].seq ||
				    memcmp(pl[i], fpl[i], segs[i].len))
					bad++;
		}
		free(c.b);
	}
	(void)ng;
	check(bad == 0, "%s cut at each of %u offsets: the records before the cut come out, "
	      "truncated iff inside a record%s%s", what, cuts, bad ? ": " : "", first_bad);
}

static void test_truncated(void)
{
	struct buf cap = { 0 }, ng = { 0 }, pkt = { 0 };
	size_t bounds[4], nbounds[4];
	struct want w;

	pcap_hdr(&cap, 1, false, false, 65535);
	ng_shb(&ng);
	ng_idb(&ng, 1, 9);
	for (int i = 0; i < 4; i++) {
		want_default(&w, i % 2 ? AF_INET6 : AF_INET, 50 + i);
		make_pkt(&pkt, ETH, &w, 0);
		pcap_rec(&cap, 5, (uint32_t)i, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
		ng_epb(&ng, 5000000000ull + i, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n);
		bounds[i] = cap.n;
		nbounds[i] = ng.n;
	}
	cut_everywhere("pcap", &cap, bounds, 4, 24, false);
	cut_everywhere("pcapng", &ng, nbounds, 4, 28 + 32, true);

	/* The message for a file that ends early. */
	{
		char err[256], *msgs;
		struct pcapin *p;
		struct pcap_seg s;
		int n = 0;

		stderr_to_file();
		p = pcapin_open(write_file("cut.pcap", cap.b, bounds[1] + 30), err, sizeof(err));
		if (p) {
			while (pcapin_next(p, &s) == PCAPIN_TCP)
				n++;
		}
		msgs = stderr_back();
		check(p && n == 2 && pcapin_stats(p)->truncated && pcapin_stats(p)->read_error &&
		      count_lines(msgs, "connscope: ") == 1 &&
		      strstr(msgs, "/cut.pcap: packet 3: ") &&
		      strstr(msgs, "; the rest of the file is skipped\n"),
		      "a file cut inside record 3: 2 segments, one line naming packet 3: %s", msgs);
		free(msgs);
		pcapin_close(p);
	}
	/* gzip cut at a few offsets, from a file. */
	{
		const char *gz = write_gz("full.pcap.gz", cap.b, cap.n);
		struct buf g = read_all(gz);
		unsigned bad = 0;

		for (size_t cut = 0; cut < g.n; cut += g.n / 13 + 1) {
			char err[256], name[32];
			struct pcapin *p;
			struct pcap_seg s;
			int n = 0;

			snprintf(name, sizeof(name), "cut%zu.pcap.gz", cut);
			p = pcapin_open(write_file(name, g.b, cut), err, sizeof(err));
			if (p) {
				pcapin_quiet(p, true);
				while (pcapin_next(p, &s) == PCAPIN_TCP)
					n++;
				if (n > 4 || (cut + 8 < g.n && n == 4 && !pcapin_stats(p)->truncated))
					bad++;
				pcapin_close(p);
			}
		}
		check(bad == 0, "gzip files cut short: no crash, a prefix, truncated");
		free(g.b);
	}
	free(cap.b);
	free(ng.b);
	free(pkt.b);
}

static void test_bad_files(void)
{
	struct buf cap = { 0 }, pkt = { 0 };
	char err[256] = "", *msgs;
	struct pcapin *p;
	struct pcap_seg s;
	struct want w;
	int n = 0;

	p = pcapin_open("/nonexistent/connscope-test.pcap", err, sizeof(err));
	check(!p && strcmp(err, "/nonexistent/connscope-test.pcap: No such file or directory") == 0,
	      "a missing file: \"%s\"", err);
	p = pcapin_open(tmpdir, err, sizeof(err));
	check(!p && strstr(err, "Is a directory"), "a directory: \"%s\"", err);
	p = pcapin_open(write_file("text.txt", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), err,
			sizeof(err));
	check(!p && strstr(err, "/text.txt: not a capture file ("), "a text file: \"%s\"", err);
	p = pcapin_open(write_file("empty.pcap", "", 0), err, sizeof(err));
	check(!p && strstr(err, "not a capture file"), "an empty file: \"%s\"", err);
	p = pcapin_open(write_gz("text.gz", "hello, world, not a capture\n", 28), err, sizeof(err));
	check(!p && strstr(err, "not a capture file"), "gzip of a text file: \"%s\"", err);
	p = pcapin_open_mem("\x1f\x8b\x08\x00garbage", 11, "garbage.gz", err, sizeof(err));
	check(!p && strstr(err, "garbage.gz: not a capture file"), "corrupt gzip in memory: \"%s\"",
	      err);
	p = pcapin_open_mem("", 0, "nothing", err, sizeof(err));
	check(!p && strstr(err, "nothing: not a capture file"), "empty memory: \"%s\"", err);

	pcap_hdr(&cap, 105, false, false, 65535);
	p = pcapin_open(write_file("wifi.pcap", cap.b, cap.n), err, sizeof(err));
	check(!p && strstr(err, "/wifi.pcap: link type 105 (IEEE802_11) is not supported"),
	      "an unsupported link type is named: \"%s\"", err);

	/* A corrupt record length after one good record. */
	cap.n = 0;
	pcap_hdr(&cap, 1, false, false, 65535);
	want_default(&w, AF_INET, 10);
	make_pkt(&pkt, ETH, &w, 0);
	pcap_rec(&cap, 1, 0, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	pcap_rec(&cap, 1, 0, pkt.b, (uint32_t)pkt.n, (uint32_t)pkt.n, false);
	memcpy(cap.b + cap.n - pkt.n - 8, "\xff\xff\xff\x7f", 4);  /* caplen 2^31 - 1 */
	stderr_to_file();
	p = pcapin_open_mem(cap.b, cap.n, "corrupt.pcap", err, sizeof(err));
	if (p)
		while (pcapin_next(p, &s) == PCAPIN_TCP)
			n++;
	msgs = stderr_back();
	check(p && n == 1 && pcapin_stats(p)->read_error && pcapin_stats(p)->packets == 1 &&
	      strstr(msgs, "connscope: corrupt.pcap: packet 2: ") &&
	      strstr(msgs, "the rest of the file is skipped"),
	      "a corrupt record length: the record before it, then one line: %s", msgs);
	free(msgs);
	pcapin_close(p);
	free(cap.b);
	free(pkt.b);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_pcapin.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_link_types();
	test_ip_variants();
	test_malformed();
	test_formats();
	test_truncated();
	test_bad_files();
	for (int i = 0; i < nmade; i++)
		unlink(made[i]);
	if (rmdir(tmpdir))
		printf("FAIL: %s not removed: %s\n", tmpdir, strerror(errno));
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
