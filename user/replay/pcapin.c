// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Capture files in, down to TCP segments (see pcapin.h).
 *
 * libpcap reads the records (pcap and pcapng, either byte order, micro or nano
 * seconds); a gzip file is inflated on the fly through a stdio cookie, so libpcap
 * still sees a FILE *. Everything above the record is decoded here with plain byte
 * reads on a cursor that knows how many captured bytes remain: packet bytes are
 * never cast to structs (no alignment assumptions), and nothing is read past the
 * record's caplen. No allocation and no system call per packet beyond libpcap's
 * buffered reads.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* fopencookie */
#endif
#include "pcapin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pcap/pcap.h>
#include <zlib.h>

#include "util.h"

/* The messages per kind and file before we only count. */
#define PCAPIN_MAX_WARN 5
/* stdio buffer for plain files: fewer read(2) calls than the default 4 KiB. */
#define PCAPIN_BUFSZ (256 * 1024)
/* 802.1Q / 802.1ad tags we step over, and IPv6 extension headers we walk. */
#define MAX_VLAN_TAGS 8
#define MAX_IP6_EXT 8

enum link_kind {
	LK_ETHER,      /* 14-byte Ethernet header, ethertype at 12 */
	LK_SLL,        /* Linux cooked v1: 16 bytes, protocol at 14 */
	LK_SLL2,       /* Linux cooked v2: 20 bytes, protocol at 0 */
	LK_RAW,        /* IPv4 or IPv6 by the version nibble */
	LK_IPV4,
	LK_IPV6,
	LK_NULL,       /* 4-byte address family in the capturing host's byte order */
	LK_LOOP,       /* 4-byte address family in network byte order */
};

/* Kinds of bad packets: each gets its own few messages. */
enum bad_kind {
	BAD_LINK,      /* link-layer header cut short or unknown encapsulation */
	BAD_IP4,
	BAD_IP6,
	BAD_TCP,
	BAD_NKINDS,
};

/* gzip input: a gzFile (files) or an inflate stream over memory (the fuzzer). */
struct gzsrc {
	gzFile gz;
	z_stream zs;
	bool zs_init;
	bool zs_done;
	const uint8_t *mem;
	size_t memlen;
};

struct pcapin {
	pcap_t *pc;
	char *name;
	enum link_kind lk;
	const char *ltname;
	bool quiet;
	unsigned nwarn[BAD_NKINDS];
	struct pcapin_stats st;
	char *iobuf;           /* stdio buffer of a plain file, freed after pcap_close */
};

/* ---- byte reads ------------------------------------------------------------------ */

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint32_t get32le(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* ---- messages -------------------------------------------------------------------- */

/* A record that claims IP/TCP but does not decode: counted, and named on stderr
 * the first few times per kind. Returns 0 so decoders can `return bad(...)`. */
__attribute__((format(printf, 3, 4)))
static int bad(struct pcapin *p, enum bad_kind k, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	p->st.decode_errors++;
	if (p->quiet || p->nwarn[k] >= PCAPIN_MAX_WARN)
		return 0;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cs_warn("%s: packet %" PRIu64 ": %s%s", p->name, p->st.packets, msg,
		++p->nwarn[k] == PCAPIN_MAX_WARN ?
		" (more errors of this kind are only counted)" : "");
	return 0;
}

/* ---- decoding -------------------------------------------------------------------- */

/*
 * TCP (RFC 9293 section 3.1), at p with `cap` captured bytes of the `wire` bytes
 * the IP header says the segment has:
 *
 *    0               1               2               3
 *   | source port                   | destination port              |
 *   | sequence number                                               |
 *   | acknowledgment number                                         |
 *   | doff  | rsvd  | flags         | window                        |
 *   | checksum                      | urgent pointer                |
 *   | options (doff * 4 - 20 bytes) ...                             |
 */
static int dec_tcp(struct pcapin *p, const uint8_t *b, uint32_t cap, uint32_t wire,
		   struct pcap_seg *seg)
{
	uint32_t hl;

	if (wire < 20)
		return bad(p, BAD_TCP, "TCP segment of %u bytes is shorter than its 20-byte header",
			   wire);
	if (cap < 20)
		return bad(p, BAD_TCP, "TCP header cut short by the snap length (%u of 20 bytes)",
			   cap);
	hl = (uint32_t)(b[12] >> 4) * 4;
	if (hl < 20)
		return bad(p, BAD_TCP, "TCP data offset %u is less than 5", hl / 4);
	if (hl > wire)
		return bad(p, BAD_TCP, "TCP header length %u is more than the segment's %u bytes",
			   hl, wire);
	if (hl > cap)
		return bad(p, BAD_TCP, "TCP options cut short by the snap length (%u of %u bytes)",
			   cap, hl);
	seg->sport = get16(b);
	seg->dport = get16(b + 2);
	seg->seq = get32(b + 4);
	seg->ack = get32(b + 8);
	seg->flags = b[13];
	seg->win = get16(b + 14);
	seg->payload = b + hl;
	seg->len = cap - hl;
	seg->wire_len = wire - hl;
	if (seg->len < seg->wire_len)
		p->st.snap_cut++;
	p->st.tcp++;
	return 1;
}

/*
 * IPv4 (RFC 791 section 3.1):
 *
 *   | ver | ihl | tos          | total length                  |
 *   | identification            | flags | fragment offset      |
 *   | ttl        | protocol     | header checksum               |
 *   | source address                                            |
 *   | destination address                                       |
 *   | options (ihl * 4 - 20 bytes) ...                          |
 *
 * The total length trims Ethernet padding; more than was captured is the snap
 * length's doing, not an error. A total length of 0 is what Linux puts in GSO
 * ("BIG TCP") packets over 64 KiB as seen by a capture: the captured length stands.
 */
static int dec_ip4(struct pcapin *p, const uint8_t *b, uint32_t cap, struct pcap_seg *seg)
{
	uint32_t hl, tot, frag;

	if (cap < 20)
		return bad(p, BAD_IP4, "IPv4 header cut short (%u of 20 bytes)", cap);
	if (b[0] >> 4 != 4)
		return bad(p, BAD_IP4, "IP version %u where IPv4 was expected", b[0] >> 4);
	hl = (uint32_t)(b[0] & 0x0f) * 4;
	if (hl < 20)
		return bad(p, BAD_IP4, "IPv4 header length %u is less than 5", hl / 4);
	tot = get16(b + 2);
	if (tot == 0)
		tot = cap;
	if (tot < hl)
		return bad(p, BAD_IP4, "IPv4 total length %u is less than its header length %u",
			   tot, hl);
	if (hl > cap)
		return bad(p, BAD_IP4, "IPv4 options cut short (%u of %u bytes)", cap, hl);
	if (cap > tot)
		cap = tot;
	frag = get16(b + 6);
	if (frag & 0x3fff) {    /* MF, or an offset: a piece of a datagram */
		p->st.fragments++;
		return 0;
	}
	if (b[9] != IPPROTO_TCP) {
		p->st.not_tcp++;
		return 0;
	}
	seg->family = AF_INET;
	memcpy(seg->saddr, b + 12, 4);
	memset(seg->saddr + 4, 0, 12);
	memcpy(seg->daddr, b + 16, 4);
	memset(seg->daddr + 4, 0, 12);
	return dec_tcp(p, b + hl, cap - hl, tot - hl, seg);
}

/*
 * IPv6 (RFC 8200 section 3): a fixed 40-byte header, then extension headers
 * chained by their next-header byte:
 *
 *   | ver | traffic class | flow label                            |
 *   | payload length              | next header | hop limit       |
 *   | source address (16 bytes)                                   |
 *   | destination address (16 bytes)                              |
 *
 * Hop-by-hop (0), routing (43) and destination options (60) are (len + 1) * 8
 * bytes; fragment (44) is 8 bytes; AH (51, RFC 4302) is (len + 2) * 4 bytes. A
 * payload length of 0 (a jumbogram, or Linux BIG TCP with the jumbo option taken
 * off) leaves the captured length standing.
 */
static int dec_ip6(struct pcapin *p, const uint8_t *b, uint32_t cap, struct pcap_seg *seg)
{
	uint32_t wire, off = 40, hl;
	uint8_t nh;

	if (cap < 40)
		return bad(p, BAD_IP6, "IPv6 header cut short (%u of 40 bytes)", cap);
	if (b[0] >> 4 != 6)
		return bad(p, BAD_IP6, "IP version %u where IPv6 was expected", b[0] >> 4);
	wire = get16(b + 4);
	wire = wire ? wire + 40 : cap;
	if (cap > wire)
		cap = wire;
	nh = b[6];
	for (int i = 0;; i++) {
		if (nh == IPPROTO_TCP)
			break;
		if (nh != 0 && nh != 43 && nh != 44 && nh != 51 && nh != 60) {
			p->st.not_tcp++;  /* UDP, ICMPv6, ESP, no next header ... */
			return 0;
		}
		if (i == MAX_IP6_EXT)
			return bad(p, BAD_IP6, "more than %d IPv6 extension headers", MAX_IP6_EXT);
		if (off + 8 > wire)
			return bad(p, BAD_IP6, "IPv6 extension header %u runs past the payload",
				   nh);
		if (off + 8 > cap)
			return bad(p, BAD_IP6, "IPv6 extension header %u cut short", nh);
		if (nh == 44) {
			/* Offset and M flag: a piece. Both zero: an atomic fragment
			 * (RFC 6946), whole after all. */
			if (get16(b + off + 2) & 0xfff9) {
				p->st.fragments++;
				return 0;
			}
			hl = 8;
		} else if (nh == 51) {
			hl = ((uint32_t)b[off + 1] + 2) * 4;
		} else {
			hl = ((uint32_t)b[off + 1] + 1) * 8;
		}
		if (off + hl > wire)
			return bad(p, BAD_IP6, "IPv6 extension header %u runs past the payload",
				   nh);
		if (off + hl > cap)
			return bad(p, BAD_IP6, "IPv6 extension header %u cut short", nh);
		nh = b[off];
		off += hl;
	}
	seg->family = AF_INET6;
	memcpy(seg->saddr, b + 8, 16);
	memcpy(seg->daddr, b + 24, 16);
	return dec_tcp(p, b + off, cap - off, wire - off, seg);
}

/* What an ethertype holds: IP, or (not an error) something else. */
static int dec_ethertype(struct pcapin *p, uint16_t type, const uint8_t *b, uint32_t cap,
			 struct pcap_seg *seg)
{
	/* 802.1Q (0x8100), 802.1ad (0x88a8) and the old QinQ 0x9100: a 4-byte tag
	 * (TCI, then the next ethertype), stacked any number of times. */
	for (int i = 0; type == 0x8100 || type == 0x88a8 || type == 0x9100; i++) {
		if (i == MAX_VLAN_TAGS)
			return bad(p, BAD_LINK, "more than %d VLAN tags", MAX_VLAN_TAGS);
		if (cap < 4)
			return bad(p, BAD_LINK, "VLAN tag cut short (%u of 4 bytes)", cap);
		type = get16(b + 2);
		b += 4;
		cap -= 4;
	}
	if (type == 0x0800)
		return dec_ip4(p, b, cap, seg);
	if (type == 0x86dd)
		return dec_ip6(p, b, cap, seg);
	p->st.not_tcp++;
	return 0;
}

static int dec_ipver(struct pcapin *p, const uint8_t *b, uint32_t cap, struct pcap_seg *seg)
{
	if (cap < 1)
		return bad(p, BAD_LINK, "empty raw IP packet");
	if (b[0] >> 4 == 4)
		return dec_ip4(p, b, cap, seg);
	if (b[0] >> 4 == 6)
		return dec_ip6(p, b, cap, seg);
	return bad(p, BAD_LINK, "raw IP packet of version %u", b[0] >> 4);
}

/* BSD loopback address families: AF_INET is 2 everywhere; AF_INET6 is 24
 * (NetBSD, OpenBSD), 28 (FreeBSD, DragonFly) or 30 (macOS). */
static int dec_af(struct pcapin *p, uint32_t af, const uint8_t *b, uint32_t cap,
		  struct pcap_seg *seg)
{
	if (af == 2)
		return dec_ip4(p, b, cap, seg);
	if (af == 24 || af == 28 || af == 30)
		return dec_ip6(p, b, cap, seg);
	p->st.not_tcp++;
	return 0;
}

static int dec_link(struct pcapin *p, const uint8_t *b, uint32_t cap, struct pcap_seg *seg)
{
	uint32_t af;

	switch (p->lk) {
	case LK_ETHER:
		if (cap < 14)
			return bad(p, BAD_LINK, "Ethernet header cut short (%u of 14 bytes)", cap);
		return dec_ethertype(p, get16(b + 12), b + 14, cap - 14, seg);
	case LK_SLL:
		if (cap < 16)
			return bad(p, BAD_LINK, "Linux cooked header cut short (%u of 16 bytes)",
				   cap);
		return dec_ethertype(p, get16(b + 14), b + 16, cap - 16, seg);
	case LK_SLL2:
		if (cap < 20)
			return bad(p, BAD_LINK, "Linux cooked v2 header cut short (%u of 20 bytes)",
				   cap);
		return dec_ethertype(p, get16(b), b + 20, cap - 20, seg);
	case LK_RAW:
		return dec_ipver(p, b, cap, seg);
	case LK_IPV4:
		return dec_ip4(p, b, cap, seg);
	case LK_IPV6:
		return dec_ip6(p, b, cap, seg);
	case LK_NULL:
		if (cap < 4)
			return bad(p, BAD_LINK, "loopback header cut short (%u of 4 bytes)", cap);
		/* The capturing host's byte order, which we do not know: families are
		 * small, so a value with high bits set was written big-endian. */
		af = get32le(b);
		if (af > 0xffff)
			af = get32(b);
		return dec_af(p, af, b + 4, cap - 4, seg);
	case LK_LOOP:
		if (cap < 4)
			return bad(p, BAD_LINK, "loopback header cut short (%u of 4 bytes)", cap);
		return dec_af(p, get32(b), b + 4, cap - 4, seg);
	}
	return 0;
}

int pcapin_next(struct pcapin *p, struct pcap_seg *seg)
{
	struct pcap_pkthdr *h;
	const u_char *data;
	uint64_t sec;
	int rc;

	if (!p->pc)
		return PCAPIN_END;
	for (;;) {
		rc = pcap_next_ex(p->pc, &h, &data);
		if (rc != 1) {
			if (rc == PCAP_ERROR) {
				/* libpcap gives up on the rest: the record was cut
				 * (a file that ends early) or its header is corrupt. */
				p->st.truncated = true;
				p->st.read_error = true;
				if (!p->quiet)
					cs_warn("%s: packet %" PRIu64 ": %s; the rest of the file is skipped",
						p->name, p->st.packets + 1, pcap_geterr(p->pc));
			}
			/* Close now: a second call must not read on. */
			pcap_close(p->pc);
			p->pc = NULL;
			return PCAPIN_END;
		}
		p->st.packets++;
		p->st.bytes += h->caplen;
		/* The nanosecond open makes tv_usec hold nanoseconds for every file.
		 * libpcap reads a pcap record's 32-bit seconds as signed; captures are
		 * not from before 1970, so a negative value is a time past 2038. */
		sec = h->ts.tv_sec < 0 ? (uint32_t)h->ts.tv_sec : (uint64_t)h->ts.tv_sec;
		seg->ts_ns = sec * 1000000000u + (uint64_t)h->ts.tv_usec;
		seg->num = p->st.packets;
		if (dec_link(p, data, h->caplen, seg))
			return PCAPIN_TCP;
	}
}

/* ---- opening --------------------------------------------------------------------- */

static ssize_t gz_read(void *cookie, char *buf, size_t size)
{
	struct gzsrc *g = cookie;
	int rc;

	if (g->gz) {
		if (size > (1u << 30))
			size = 1u << 30;
		rc = gzread(g->gz, buf, (unsigned)size);
		return rc < 0 ? -1 : rc;
	}
	/* Memory: inflate straight into the caller's buffer; members one after the
	 * other (as gzip -c a b > ab makes) are read on. */
	g->zs.next_out = (Bytef *)buf;
	g->zs.avail_out = size > (1u << 30) ? 1u << 30 : (uInt)size;
	while (g->zs.avail_out && !g->zs_done) {
		rc = inflate(&g->zs, Z_NO_FLUSH);
		if (rc == Z_STREAM_END) {
			if (g->zs.avail_in >= 2 && g->zs.next_in[0] == 0x1f &&
			    g->zs.next_in[1] == 0x8b)
				inflateReset(&g->zs);
			else
				g->zs_done = true;
		} else if (rc != Z_OK) {
			/* A corrupt or cut stream: what came before stands, then EOF;
			 * libpcap reports the record it could not finish. */
			g->zs_done = true;
		}
	}
	return (ssize_t)((char *)g->zs.next_out - buf);
}

static int gz_close(void *cookie)
{
	struct gzsrc *g = cookie;

	if (g->gz)
		gzclose(g->gz);
	if (g->zs_init)
		inflateEnd(&g->zs);
	free(g);
	return 0;
}

static FILE *gz_wrap(struct gzsrc *g)
{
	static const cookie_io_functions_t io = { .read = gz_read, .close = gz_close };
	FILE *f = fopencookie(g, "rb", io);

	if (!f)
		gz_close(g);
	return f;
}

static bool lk_of(int dlt, enum link_kind *lk, const char **name)
{
	switch (dlt) {
	case DLT_EN10MB:     *lk = LK_ETHER; *name = "EN10MB"; return true;
	case DLT_LINUX_SLL:  *lk = LK_SLL;   *name = "LINUX_SLL"; return true;
	case DLT_LINUX_SLL2: *lk = LK_SLL2;  *name = "LINUX_SLL2"; return true;
	/* LINKTYPE_RAW (101) comes to us as DLT_RAW (12 here); 12 and 14 are raw IP
	 * in files from systems where DLT_RAW has those values. */
	case 12: case 14: case 101:
			     *lk = LK_RAW;   *name = "RAW"; return true;
	case DLT_IPV4:       *lk = LK_IPV4;  *name = "IPV4"; return true;
	case DLT_IPV6:       *lk = LK_IPV6;  *name = "IPV6"; return true;
	case DLT_NULL:       *lk = LK_NULL;  *name = "NULL"; return true;
	case DLT_LOOP:       *lk = LK_LOOP;  *name = "LOOP"; return true;
	}
	return false;
}

/* Hand f to libpcap (which then owns it) and check the link type. */
static struct pcapin *open_file(FILE *f, const char *name, char *iobuf, char *err,
				size_t errlen)
{
	char ebuf[PCAP_ERRBUF_SIZE] = "";
	struct pcapin *p;
	const char *ltn;
	pcap_t *pc;
	int dlt;

	pc = pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_NANO, ebuf);
	if (!pc) {
		/* Not closed by libpcap on failure. */
		fclose(f);
		free(iobuf);
		snprintf(err, errlen, "%s: not a capture file (%s)", name, ebuf);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p)
		p->name = strdup(name);
	if (!p || !p->name) {
		pcap_close(pc);
		free(iobuf);
		free(p);
		snprintf(err, errlen, "%s: %s", name, strerror(ENOMEM));
		return NULL;
	}
	p->pc = pc;
	p->iobuf = iobuf;
	dlt = pcap_datalink(pc);
	if (!lk_of(dlt, &p->lk, &p->ltname)) {
		ltn = pcap_datalink_val_to_name(dlt);
		snprintf(err, errlen,
			 "%s: link type %d (%s) is not supported (EN10MB, LINUX_SLL, LINUX_SLL2, "
			 "RAW, IPV4, IPV6, NULL and LOOP are)", name, dlt, ltn ? ltn : "unknown");
		pcapin_close(p);
		return NULL;
	}
	return p;
}

struct pcapin *pcapin_open(const char *path, char *err, size_t errlen)
{
	unsigned char magic[2];
	struct gzsrc *g;
	struct stat sb;
	char *iobuf;
	FILE *f;
	int fd;

	f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
		fclose(f);
		snprintf(err, errlen, "%s: %s", path, strerror(EISDIR));
		return NULL;
	}
	if (fread(magic, 1, 2, f) == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
		/* gzip: zlib reads the descriptor from here; our FILE goes. */
		g = calloc(1, sizeof(*g));
		fd = dup(fileno(f));
		fclose(f);
		if (g && fd >= 0 && lseek(fd, 0, SEEK_SET) == 0)
			g->gz = gzdopen(fd, "rb");
		if (!g || !g->gz) {
			snprintf(err, errlen, "%s: cannot read gzip data", path);
			if (fd >= 0)
				close(fd);
			free(g);
			return NULL;
		}
		gzbuffer(g->gz, PCAPIN_BUFSZ);
		f = gz_wrap(g);
		if (!f) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			return NULL;
		}
		return open_file(f, path, NULL, err, errlen);
	}
	rewind(f);
	iobuf = malloc(PCAPIN_BUFSZ);
	if (iobuf)
		setvbuf(f, iobuf, _IOFBF, PCAPIN_BUFSZ);
	return open_file(f, path, iobuf, err, errlen);
}

struct pcapin *pcapin_open_mem(const void *buf, size_t len, const char *name, char *err,
			       size_t errlen)
{
	const uint8_t *b = buf;
	struct gzsrc *g;
	FILE *f;

	if (len == 0) {
		snprintf(err, errlen, "%s: not a capture file (empty)", name);
		return NULL;
	}
	if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
		g = calloc(1, sizeof(*g));
		if (!g) {
			snprintf(err, errlen, "%s: %s", name, strerror(ENOMEM));
			return NULL;
		}
		g->mem = b;
		g->memlen = len;
		g->zs.next_in = (Bytef *)b;
		g->zs.avail_in = len > UINT32_MAX ? UINT32_MAX : (uInt)len;
		/* 16 + 15: gzip wrapper, the largest window. */
		if (inflateInit2(&g->zs, 16 + 15) != Z_OK) {
			free(g);
			snprintf(err, errlen, "%s: cannot read gzip data", name);
			return NULL;
		}
		g->zs_init = true;
		f = gz_wrap(g);
	} else {
		f = fmemopen((void *)buf, len, "rb");
	}
	if (!f) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		return NULL;
	}
	return open_file(f, name, NULL, err, errlen);
}

const struct pcapin_stats *pcapin_stats(const struct pcapin *p)
{
	return &p->st;
}

const char *pcapin_linktype(const struct pcapin *p)
{
	return p->ltname;
}

void pcapin_quiet(struct pcapin *p, bool quiet)
{
	p->quiet = quiet;
}

void pcapin_close(struct pcapin *p)
{
	if (!p)
		return;
	if (p->pc)
		pcap_close(p->pc);  /* closes the FILE, and with it any gzip state */
	free(p->iobuf);
	free(p->name);
	free(p);
}
