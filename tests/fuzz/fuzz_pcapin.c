// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer harness for user/replay/pcapin.c and user/replay/reasm.c: the input is a capture
 * file (pcap, pcapng, gzip or not), read in memory with pcapin_open_mem, and every
 * TCP segment goes into a reassembler per direction of a small flow table, with
 * the other direction's ack, and a flush on FIN or RST and at the end.
 *
 *   scripts/test.sh fuzz    (built against connscope's libraries)
 *   then, longer: .output/tests/fuzz_pcapin tests/fuzz/corpus_pcapin
 *
 * Seeds (tests/fuzz/corpus_pcapin): small real h2c connections over loopback as
 * Ethernet, Linux cooked v2, raw IP, BSD loopback, pcapng and gzip files.
 *
 * Besides memory safety, the harness aborts on a broken promise: a segment whose
 * captured length passes its wire length, stats that do not add up, reassembly
 * callbacks that skip or repeat stream positions, or a buffer past its bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "pcapin.h"
#include "reasm.h"

#define require(ok) do { \
		if (!(ok)) { \
			fprintf(stderr, "fuzz_pcapin.c:%d: broken: %s\n", __LINE__, #ok); \
			abort(); \
		} \
	} while (0)

#define NFLOWS 8

struct dir {
	struct reasm r;
	uint32_t pos;      /* where the next callback must start */
	bool pos_set;
	uint64_t sum;      /* touches every byte handed on */
};

struct flow {
	bool used;
	int family;
	uint8_t a[16], b[16];  /* a: the first packet's source */
	uint16_t pa, pb;
	struct dir d[2];       /* 0: a -> b, 1: b -> a */
};

static struct flow flows[NFLOWS];

static void on_data(void *ctx, uint32_t seq, const uint8_t *data, uint32_t len)
{
	struct dir *d = ctx;

	require(len > 0);
	require(!d->pos_set || seq == d->pos);
	for (uint32_t i = 0; i < len; i++)
		d->sum += data[i];
	d->pos = seq + len;
	d->pos_set = true;
}

static void on_gap(void *ctx, uint32_t from, uint32_t to)
{
	struct dir *d = ctx;

	require((int32_t)(to - from) > 0);
	require(!d->pos_set || from == d->pos);
	d->pos = to;
	d->pos_set = true;
}

static void check_dir(const struct dir *d)
{
	require(d->r.nsegs <= REASM_MAX_SEGS && d->r.bytes <= REASM_MAX_BYTES);
	require((d->r.nsegs == 0) == (d->r.segs == NULL));
	require(!d->pos_set || !d->r.started || d->pos == d->r.next);
}

static void flow_end(struct flow *f)
{
	for (int i = 0; i < 2; i++) {
		reasm_flush(&f->d[i].r, on_data, on_gap, &f->d[i]);
		require(f->d[i].r.nsegs == 0 && f->d[i].r.bytes == 0);
		check_dir(&f->d[i]);
		reasm_free(&f->d[i].r);
	}
	f->used = false;
}

/* The flow and direction of a segment; a full table gives way to slot 0. */
static struct flow *lookup(const struct pcap_seg *s, int *dir)
{
	struct flow *f;
	int alen = s->family == AF_INET ? 4 : 16;

	for (int i = 0; i < NFLOWS; i++) {
		f = &flows[i];
		if (!f->used || f->family != s->family)
			continue;
		if (f->pa == s->sport && f->pb == s->dport && !memcmp(f->a, s->saddr, alen) &&
		    !memcmp(f->b, s->daddr, alen)) {
			*dir = 0;
			return f;
		}
		if (f->pb == s->sport && f->pa == s->dport && !memcmp(f->b, s->saddr, alen) &&
		    !memcmp(f->a, s->daddr, alen)) {
			*dir = 1;
			return f;
		}
	}
	f = &flows[0];
	for (int i = 0; i < NFLOWS; i++)
		if (!flows[i].used) {
			f = &flows[i];
			break;
		}
	if (f->used)
		flow_end(f);
	memset(f, 0, sizeof(*f));
	f->used = true;
	f->family = s->family;
	memcpy(f->a, s->saddr, 16);
	memcpy(f->b, s->daddr, 16);
	f->pa = s->sport;
	f->pb = s->dport;
	reasm_init_unstarted(&f->d[0].r);
	reasm_init_unstarted(&f->d[1].r);
	*dir = 0;
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct pcapin_stats *st;
	uint64_t segs = 0, prev_num = 0;
	struct pcap_seg s;
	struct pcapin *p;
	char err[512];
	uint8_t *copy;
	int dir;

	/* An exactly-sized copy: a read past the input is an ASan report. */
	copy = malloc(size ? size : 1);
	require(copy != NULL);
	if (size)
		memcpy(copy, data, size);
	p = pcapin_open_mem(copy, size, "fuzz", err, sizeof(err));
	if (!p) {
		require(memchr(err, 0, sizeof(err)) != NULL && err[0] != 0);
		free(copy);
		return 0;
	}
	pcapin_quiet(p, true);
	require(pcapin_linktype(p) != NULL);
	while (pcapin_next(p, &s) == PCAPIN_TCP) {
		segs++;
		require(s.num > prev_num);
		prev_num = s.num;
		require(s.family == AF_INET || s.family == AF_INET6);
		require(s.len <= s.wire_len);
		require(s.len == 0 || s.payload != NULL);
		struct flow *f = lookup(&s, &dir);
		struct dir *d = &f->d[dir], *o = &f->d[!dir];

		if ((s.flags & PCAP_TH_SYN) && !d->r.started && !d->r.segs)
			reasm_init(&d->r, s.seq + 1);
		reasm_segment(&d->r, (s.flags & PCAP_TH_SYN) ? s.seq + 1 : s.seq, s.payload, s.len,
			      on_data, on_gap, d);
		check_dir(d);
		if (s.flags & PCAP_TH_ACK) {
			reasm_ack(&o->r, s.ack, on_data, on_gap, o);
			check_dir(o);
		}
		if (s.flags & (PCAP_TH_FIN | PCAP_TH_RST))
			flow_end(f);
	}
	require(pcapin_next(p, &s) == PCAPIN_END);
	st = pcapin_stats(p);
	require(st->tcp == segs);
	require(st->tcp + st->not_tcp + st->fragments + st->decode_errors == st->packets);
	require(st->snap_cut <= st->tcp);
	pcapin_close(p);
	for (int i = 0; i < NFLOWS; i++)
		if (flows[i].used)
			flow_end(&flows[i]);
	free(copy);
	return 0;
}
