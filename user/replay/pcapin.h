/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Capture files in: pcap and pcapng through libpcap, gzip-compressed or not, down
 * to one TCP segment per call. Link types: Ethernet (with 802.1Q / 802.1ad tags),
 * Linux cooked v1 and v2, raw IP (LINKTYPE_RAW, IPV4, IPV6) and BSD loopback
 * (NULL, LOOP). IPv4 and IPv6 (extension headers walked; fragments are not
 * reassembled: counted and skipped).
 *
 * Bad input never stops the caller: a packet that does not decode is counted and
 * named on stderr (file and packet number; the first few of each kind per file,
 * then only counted), and a file that cannot be read further ends early with one
 * line saying where.
 */
#ifndef CONNSCOPE_PCAPIN_H
#define CONNSCOPE_PCAPIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCAP_TH_FIN 0x01
#define PCAP_TH_SYN 0x02
#define PCAP_TH_RST 0x04
#define PCAP_TH_PSH 0x08
#define PCAP_TH_ACK 0x10

/* One TCP segment. Pointers are valid until the next pcapin_next call. */
struct pcap_seg {
	uint64_t ts_ns;          /* packet time, ns since the epoch */
	uint64_t num;            /* 1-based packet number in its file */
	int family;              /* AF_INET or AF_INET6 */
	uint8_t saddr[16];       /* IPv4 in the first 4 bytes, rest zero */
	uint8_t daddr[16];
	uint16_t sport, dport;   /* host order */
	uint32_t seq, ack;       /* host order */
	uint16_t win;            /* unscaled window */
	uint8_t flags;           /* PCAP_TH_* */
	const uint8_t *payload;  /* the payload bytes the capture holds */
	uint32_t len;            /* ... how many */
	uint32_t wire_len;       /* payload length by the IP header (> len when snaplen cut it) */
};

enum pcapin_rc {
	PCAPIN_END = 0,          /* no more packets (or the file ended early: see stats) */
	PCAPIN_TCP = 1,          /* *seg holds a TCP segment */
};

struct pcapin_stats {
	uint64_t packets;        /* records read */
	uint64_t bytes;          /* captured bytes of those records */
	uint64_t tcp;            /* TCP segments returned */
	uint64_t not_tcp;        /* IP but not TCP, or not IP (ARP, ...): skipped, not an error */
	uint64_t fragments;      /* IP fragments: skipped */
	uint64_t decode_errors;  /* records that claim to be IP/TCP but are malformed or cut short */
	uint64_t snap_cut;       /* TCP segments whose payload the snap length cut */
	bool truncated;          /* the file ended inside a record, or a record was corrupt */
	bool read_error;         /* libpcap gave up on the file */
};

struct pcapin;

/* Open a capture file (pcap or pcapng, optionally gzip). NULL with a message
 * in err ("<path>: not a capture file (...)", "<path>: No such file or directory")
 * on failure. */
struct pcapin *pcapin_open(const char *path, char *err, size_t errlen);
/* The same over bytes in memory (the fuzzer); name is used in messages. The
 * buffer must outlive the reader. */
struct pcapin *pcapin_open_mem(const void *buf, size_t len, const char *name, char *err,
			       size_t errlen);
/* The next TCP segment; other packets are counted and skipped. */
int pcapin_next(struct pcapin *p, struct pcap_seg *seg);
const struct pcapin_stats *pcapin_stats(const struct pcapin *p);
/* The link type's name ("EN10MB", "LINUX_SLL2", ...). */
const char *pcapin_linktype(const struct pcapin *p);
/* Messages to stderr: on (default) or off (the fuzzer, benchmarks). */
void pcapin_quiet(struct pcapin *p, bool quiet);
void pcapin_close(struct pcapin *p);

#endif
