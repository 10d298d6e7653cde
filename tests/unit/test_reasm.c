// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit test of user/replay/reasm.c, the TCP reassembler of replay.
 *
 *   scripts/test.sh unit    (built against connscope's libraries)
 *
 * A stream is cut into random segments (overlapping, retransmitted, reordered,
 * some copies carrying different bytes, starting near 2^32 so the sequence space
 * wraps), fed in, and what comes out is compared with an oracle that knows, for
 * every byte, the first copy sent: the output must be exactly those bytes, in
 * order, each once, and every hole that has data after it must come out as a gap
 * with its exact [from, to). Every segment handed to reasm_segment is an
 * exactly-sized heap copy freed right after the call, so ASan catches a read past
 * it or a waiting "copy" that is really a pointer into it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reasm.h"

#include "check.h"

static unsigned rng_state = 0x9e3779b9;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return n ? rng_state % n : 0;
}

/* ---- a sink that checks the callbacks keep to the stream's order ------------------- */

struct gap {
	uint32_t from, to;
};

struct sink {
	uint32_t base;           /* sequence number of out[0] */
	uint32_t pos;            /* where the next callback must start */
	bool pos_set;
	uint8_t *out;            /* bytes handed on, by offset from base */
	uint8_t *got;            /* 1 where a byte was handed on */
	uint32_t cap;
	struct gap gaps[4096];
	unsigned ngaps;
	unsigned broken;         /* callbacks out of order or out of range */
	const uint8_t *last_ptr; /* the data pointer of the last data callback */
};

static void sink_init(struct sink *s, uint32_t base, uint32_t cap)
{
	memset(s, 0, sizeof(*s));
	s->base = base;
	s->pos = base;
	s->pos_set = true;
	s->cap = cap;
	s->out = calloc(cap ? cap : 1, 1);
	s->got = calloc(cap ? cap : 1, 1);
	if (!s->out || !s->got)
		abort();
}

static void sink_free(struct sink *s)
{
	free(s->out);
	free(s->got);
}

static void on_data(void *ctx, uint32_t seq, const uint8_t *data, uint32_t len)
{
	struct sink *s = ctx;
	uint32_t off = seq - s->base;

	s->last_ptr = data;
	if (!s->pos_set) {
		s->pos = seq;
		s->pos_set = true;
	}
	if (seq != s->pos || len == 0 || (uint64_t)off + len > s->cap) {
		s->broken++;
		return;
	}
	for (uint32_t i = 0; i < len; i++) {
		if (s->got[off + i])
			s->broken++;  /* handed on twice */
		s->got[off + i] = 1;
		s->out[off + i] = data[i];
	}
	s->pos = seq + len;
}

static void on_gap(void *ctx, uint32_t from, uint32_t to)
{
	struct sink *s = ctx;

	if (from != s->pos || (int32_t)(to - from) <= 0)
		s->broken++;
	if (s->ngaps < sizeof(s->gaps) / sizeof(s->gaps[0]))
		s->gaps[s->ngaps++] = (struct gap){ from, to };
	s->pos = to;
}

/* Feed one segment from an exactly-sized heap copy that dies right after. */
static void feed(struct reasm *r, struct sink *s, uint32_t seq, const uint8_t *p, uint32_t len)
{
	uint8_t *c = dup_n(p, len);

	reasm_segment(r, seq, c, len, on_data, on_gap, s);
	free(c);
}

static bool bounded(const struct reasm *r)
{
	return r->nsegs <= REASM_MAX_SEGS && r->bytes <= REASM_MAX_BYTES;
}

/* ---- random streams against the first-copy oracle --------------------------------- */

struct segdesc {
	uint32_t off, len;
	uint8_t salt;  /* 0: the true bytes; else the bytes xor salt (a differing copy) */
};

static uint64_t early_gaps;  /* gaps before the flush, in runs with acks */

/*
 * One run: a stream of n bytes from isn, covered by segments except for `holes`
 * random stretches; each segment may be sent again (whole or in part, with the
 * same or different bytes); the sending order is shuffled within a window.
 */
static bool run_random(uint32_t isn, uint32_t n, unsigned holes, unsigned window, bool vary,
		       bool acks, unsigned *nseg_out)
{
	uint8_t *truth = malloc(n), *hole = calloc(n, 1), *first = malloc(n), *seen = calloc(n, 1);
	struct segdesc *sd = NULL;
	unsigned nsd = 0, cap = 0;
	uint8_t *buf = malloc(n);
	struct reasm r;
	struct sink s;
	uint32_t acked = 0;
	bool ok = true;

	if (!truth || !hole || !first || !seen || !buf)
		abort();
	for (uint32_t i = 0; i < n; i++)
		truth[i] = (uint8_t)rnd(256);
	for (unsigned h = 0; h < holes; h++) {
		uint32_t at = rnd(n), l = 1 + rnd(300);

		for (uint32_t i = at; i < n && i < at + l; i++)
			hole[i] = 1;
	}
	/* Segments over the covered stretches, then copies of some of them. */
	for (uint32_t off = 0; off < n;) {
		uint32_t len = 1 + rnd(1500);

		if (off + len > n)
			len = n - off;
		/* Cut at holes so no segment spans one. */
		for (uint32_t i = 0; i < len; i++) {
			if (hole[off + i]) {
				len = i;
				break;
			}
		}
		if (!len) {
			off++;
			continue;
		}
		if (nsd + 4 > cap) {
			cap = cap ? cap * 2 : 256;
			sd = realloc(sd, cap * sizeof(*sd));
			if (!sd)
				abort();
		}
		sd[nsd++] = (struct segdesc){ off, len, 0 };
		if (rnd(4) == 0) {   /* a retransmission, maybe of a part, maybe differing */
			uint32_t a = rnd(len), b = a + 1 + rnd(len - a);

			sd[nsd++] = (struct segdesc){ off + a, b - a,
						      vary ? (uint8_t)(1 + rnd(255)) : 0 };
		}
		if (rnd(6) == 0 && off + len < n) {  /* an overlap reaching into the next */
			uint32_t a = rnd(len), b = off + len + rnd(700);

			if (b > n)
				b = n;
			for (uint32_t i = off + a; i < b; i++)
				if (hole[i]) {
					b = i;
					break;
				}
			if (b > off + a)
				sd[nsd++] = (struct segdesc){ off + a, b - off - a,
							      vary ? (uint8_t)(1 + rnd(255)) : 0 };
		}
		off += len;
	}
	/* Reorder within a window. */
	for (unsigned i = 0; i + 1 < nsd; i++) {
		unsigned j = i + rnd(window < nsd - i ? window : nsd - i);
		struct segdesc t = sd[i];

		sd[i] = sd[j];
		sd[j] = t;
	}
	/* The oracle: the first copy of each byte, in sending order. */
	for (unsigned k = 0; k < nsd; k++)
		for (uint32_t i = sd[k].off; i < sd[k].off + sd[k].len; i++)
			if (!seen[i]) {
				seen[i] = 1;
				first[i] = truth[i] ^ sd[k].salt;
			}

	reasm_init(&r, isn);
	sink_init(&s, isn, n);
	for (unsigned k = 0; k < nsd; k++) {
		for (uint32_t i = 0; i < sd[k].len; i++)
			buf[i] = truth[sd[k].off + i] ^ sd[k].salt;
		feed(&r, &s, isn + sd[k].off, buf, sd[k].len);
		if (!bounded(&r))
			ok = false;
		/* The peer acknowledges up to the highest byte sent so far: past any
		 * hole, so the REASM_GAP_PACKETS rule gives holes up early. */
		if (acks && sd[k].off + sd[k].len > acked)
			acked = sd[k].off + sd[k].len;
		if (acks && rnd(2))
			reasm_ack(&r, isn + acked, on_data, on_gap, &s);
	}
	if (acks)
		early_gaps += r.gaps;
	reasm_flush(&r, on_data, on_gap, &s);
	if (r.nsegs || r.bytes || r.segs)
		ok = false;
	if (acks) {
		/* Holes given up early swallow bytes that came later: only check that
		 * what came out is the first copy, that bytes and gaps tile the
		 * stream without overlap (the sink's order checks), and the sums. */
		uint64_t got = 0, span = 0;

		for (uint32_t i = 0; i < n; i++) {
			if (s.got[i] && (!seen[i] || s.out[i] != first[i]))
				ok = false;
			got += s.got[i];
			if (seen[i])
				span = i + 1;
		}
		if (s.broken || got != r.delivered || r.delivered + r.gap_bytes != span)
			ok = false;
		goto out;
	}

	/* Expected: every seen byte handed on with its first copy; every unseen run
	 * with a seen byte after it a gap, exactly. */
	uint32_t last_seen = 0;
	bool any = false;

	for (uint32_t i = 0; i < n; i++)
		if (seen[i]) {
			last_seen = i;
			any = true;
		}
	for (uint32_t i = 0; i < n; i++)
		if (seen[i] != s.got[i] || (seen[i] && s.out[i] != first[i]))
			ok = false;
	unsigned g = 0;

	for (uint32_t i = 0; any && i < last_seen;) {
		if (seen[i]) {
			i++;
			continue;
		}
		uint32_t j = i;

		while (!seen[j])
			j++;
		if (g >= s.ngaps || s.gaps[g].from != isn + i || s.gaps[g].to != isn + j)
			ok = false;
		g++;
		i = j;
	}
	if (g != s.ngaps || s.broken || r.gaps != g)
		ok = false;
	uint64_t span = any ? last_seen + 1 : 0;

	if (r.delivered + r.gap_bytes != span)
		ok = false;
out:
	*nseg_out = nsd;
	sink_free(&s);
	reasm_free(&r);
	free(sd);
	free(truth);
	free(hole);
	free(first);
	free(seen);
	free(buf);
	return ok;
}

static void test_random(void)
{
	static const uint32_t isns[] = { 0xffffff00u, 0xfffe0000u, 0x7fffff00u, 0, 12345 };
	unsigned runs = 0, bad = 0, ack_bad = 0, segs = 0, gap_early = 0, n;

	for (unsigned i = 0; i < 5; i++) {
		for (unsigned k = 0; k < 40; k++) {
			uint32_t isn = isns[i] - rnd(5000);
			uint32_t len = 1 + rnd(120000);
			unsigned holes = k % 3 == 0 ? 0 : rnd(20);
			unsigned window = 1 + rnd(k % 2 ? 8 : 60);

			runs++;
			if (!run_random(isn, len, holes, window, k % 4 != 0, false, &n))
				bad++;
			segs += n;
			runs++;
			if (!run_random(isn, len, holes + 1, window, true, true, &n))
				ack_bad++;
			gap_early += n;
		}
	}
	check(bad == 0, "random streams (overlaps, retransmissions, reordering, holes, "
	      "across 2^32 and 2^31): %u of %u runs (%u segments) match the first-copy oracle",
	      runs / 2 - bad, runs / 2, segs);
	check(ack_bad == 0, "the same with holes and acks past them: %u of %u runs (%u segments) "
	      "hand on first copies only, bytes and gaps tiling the stream (%lu gaps before "
	      "the flush)", runs / 2 - ack_bad, runs / 2, gap_early, (unsigned long)early_gaps);
}

/* ---- cases by hand ------------------------------------------------------------------ */

static void test_basics(void)
{
	uint8_t d[4000];
	struct reasm r;
	struct sink s;
	uint32_t isn = 0xfffffff0u;

	for (unsigned i = 0; i < sizeof(d); i++)
		d[i] = (uint8_t)(i * 7 + 3);

	/* In order goes straight through: the callback sees the caller's pointer. */
	reasm_init(&r, isn);
	sink_init(&s, isn, sizeof(d));
	reasm_segment(&r, isn, d, 100, on_data, on_gap, &s);
	check(s.last_ptr == d && r.next == isn + 100 && r.delivered == 100,
	      "an in-order segment is handed on without a copy");
	/* Across the wrap: isn + 100 is past 2^32. */
	reasm_segment(&r, isn + 100, d + 100, 100, on_data, on_gap, &s);
	check(r.next == isn + 200 && r.next < 200, "next wraps past 2^32 (0x%x)", r.next);
	/* Zero-length: nothing. */
	reasm_segment(&r, isn + 500, d, 0, on_data, on_gap, &s);
	check(r.nsegs == 0 && r.ooo_segs == 0 && r.delivered == 200,
	      "a zero-length segment does nothing");
	/* A retransmission: counted, not handed on. */
	reasm_segment(&r, isn + 50, d + 50, 100, on_data, on_gap, &s);
	check(r.retrans_bytes == 100 && r.delivered == 200, "an old copy is dropped (retrans %lu)",
	      (unsigned long)r.retrans_bytes);
	/* Partly old: the front is cut, the pointer is the caller's plus the cut. */
	reasm_segment(&r, isn + 150, d + 150, 100, on_data, on_gap, &s);
	check(r.retrans_bytes == 150 && r.next == isn + 250 && s.last_ptr == d + 200,
	      "a partly old segment goes on from next, uncopied");
	/* Out of order waits, then the hole is filled. */
	reasm_segment(&r, isn + 300, d + 300, 100, on_data, on_gap, &s);
	check(r.nsegs == 1 && r.bytes == 100 && r.ooo_segs == 1 && r.next == isn + 250,
	      "a segment after a hole waits");
	reasm_segment(&r, isn + 250, d + 250, 60, on_data, on_gap, &s);
	check(r.nsegs == 0 && r.next == isn + 400 && r.overlap_bytes == 10,
	      "filling the hole hands on the waiting copy (overlap 10: %lu)",
	      (unsigned long)r.overlap_bytes);
	check(s.broken == 0 && s.ngaps == 0 && memcmp(s.out, d, 400) == 0,
	      "bytes 0..400 in order, once each");
	/* A hole the flush turns into a gap. */
	reasm_segment(&r, isn + 500, d + 500, 100, on_data, on_gap, &s);
	reasm_flush(&r, on_data, on_gap, &s);
	check(s.ngaps == 1 && s.gaps[0].from == isn + 400 && s.gaps[0].to == isn + 500 &&
	      r.next == isn + 600 && r.gaps == 1 && r.gap_bytes == 100 && s.broken == 0,
	      "flush: the hole [400, 500) is a gap, then the waiting bytes");
	reasm_free(&r);
	sink_free(&s);

	/* Unstarted: the first segment seen sets next; earlier bytes are old. */
	reasm_init_unstarted(&r);
	sink_init(&s, 1000, 4000);
	s.pos_set = false;
	reasm_ack(&r, 5000, on_data, on_gap, &s);
	check(!r.started && !r.acked_past, "an ack before the first segment is ignored");
	reasm_segment(&r, 0, d, 0, on_data, on_gap, &s);
	check(!r.started, "a zero-length segment does not start the stream");
	reasm_segment(&r, 2000, d + 1000, 100, on_data, on_gap, &s);
	check(r.started && r.next == 2100 && s.pos == 2100, "the first segment sets next");
	reasm_segment(&r, 1900, d + 900, 150, on_data, on_gap, &s);
	check(r.next == 2100 && r.retrans_bytes == 150, "bytes before it are old");
	reasm_free(&r);
	sink_free(&s);
}

/* Waiting copies win over a later segment that spans them, which is handed on
 * around them in pieces. */
static void test_first_copy(void)
{
	uint8_t a[1000], b[1000];
	struct reasm r;
	struct sink s;
	uint32_t isn = 0xffffffffu;
	bool ok = true;

	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	reasm_init(&r, isn);
	sink_init(&s, isn, 1000);
	feed(&r, &s, isn + 100, a, 50);    /* [100,150) a */
	feed(&r, &s, isn + 300, a, 50);    /* [300,350) a */
	feed(&r, &s, isn + 120, b, 300);   /* [120,420): new bytes [150,300) and [350,420) */
	check(r.nsegs == 4 && r.bytes == 50 + 50 + 150 + 70 && r.overlap_bytes == 80,
	      "a waiting segment spanning others copies only the new stretches (%u segs, %u bytes)",
	      r.nsegs, r.bytes);
	feed(&r, &s, isn, b, 1000);        /* everything: b, except where a waits */
	for (unsigned i = 0; i < 1000; i++) {
		char want = (i >= 100 && i < 150) || (i >= 300 && i < 350) ? 'a' : 'b';

		if (!s.got[i] || s.out[i] != want)
			ok = false;
	}
	check(ok && s.broken == 0 && r.nsegs == 0 && r.next == isn + 1000 && r.delivered == 1000,
	      "first copy wins over a later in-order segment covering the waiting ones");
	reasm_free(&r);
	sink_free(&s);
}

/* A huge stream with every other stretch missing: the buffer stays in bounds, the
 * holes become gaps in order, and every byte that comes out is right. */
static void test_bounds(void)
{
	const uint32_t chunk = 1000, nchunks = 60000;  /* 60 MB of sequence space */
	uint32_t isn = 0xfff00000u;
	uint8_t *p = malloc(chunk);
	struct reasm r;
	bool inb = true, ok = true;
	uint32_t maxsegs = 0, maxbytes = 0;
	struct sink s;

	if (!p)
		abort();
	reasm_init(&r, isn);
	/* The sink only tracks order here (cap 0: no byte store): count instead. */
	sink_init(&s, isn, 0);
	for (uint32_t c = 1; c < nchunks; c += 2) {
		for (uint32_t i = 0; i < chunk; i++)
			p[i] = (uint8_t)(c + i);
		uint8_t *q = dup_n(p, chunk);

		reasm_segment(&r, isn + c * chunk, q, chunk, NULL, on_gap, &s);
		free(q);
		if (!bounded(&r))
			inb = false;
		if (r.nsegs > maxsegs)
			maxsegs = r.nsegs;
		if (r.bytes > maxbytes)
			maxbytes = r.bytes;
	}
	reasm_flush(&r, NULL, on_gap, &s);
	check(inb, "60 MB with every other KB missing: at most %u segments (max %u) and %u "
	      "bytes (max %u) wait", REASM_MAX_SEGS, maxsegs, REASM_MAX_BYTES, maxbytes);
	check(r.gaps == nchunks / 2 && r.gap_bytes == (uint64_t)nchunks / 2 * chunk &&
	      r.delivered == (uint64_t)(nchunks / 2) * chunk && r.next == isn + nchunks * chunk,
	      "every hole is a gap (%lu gaps, %lu bytes), every stretch delivered (%lu)",
	      (unsigned long)r.gaps, (unsigned long)r.gap_bytes, (unsigned long)r.delivered);
	for (unsigned g = 0; g < s.ngaps; g++)
		if (s.gaps[g].from != isn + 2 * g * chunk || s.gaps[g].to != isn + (2 * g + 1) * chunk)
			ok = false;
	check(ok, "the first %u gaps have the right [from, to)", s.ngaps);
	reasm_free(&r);
	sink_free(&s);

	/* Many tiny segments: the segment bound bites first. */
	reasm_init(&r, isn);
	sink_init(&s, isn, 0);
	s.pos_set = false;
	inb = true;
	for (uint32_t i = 0; i < 5000; i++) {
		uint8_t x = (uint8_t)i;

		reasm_segment(&r, isn + 2 + 2 * i, &x, 1, NULL, on_gap, &s);
		if (r.nsegs > REASM_MAX_SEGS)
			inb = false;
	}
	check(inb && r.nsegs == REASM_MAX_SEGS && r.gaps == 5000 - REASM_MAX_SEGS,
	      "5000 one-byte waiting segments: %u wait, %lu gaps", r.nsegs,
	      (unsigned long)r.gaps);
	reasm_free(&r);
	check(r.nsegs == 0 && r.bytes == 0 && r.segs == NULL, "reasm_free empties the buffer");
	sink_free(&s);

	/* A segment larger than the whole buffer, after a hole: a gap, then it goes
	 * through uncopied. */
	uint8_t *big = malloc(REASM_MAX_BYTES + 100);

	if (!big)
		abort();
	memset(big, 'x', REASM_MAX_BYTES + 100);
	reasm_init(&r, isn);
	sink_init(&s, isn, 0);
	s.last_ptr = NULL;
	reasm_segment(&r, isn + 10, big, REASM_MAX_BYTES + 100, NULL, on_gap, &s);
	check(r.nsegs == 0 && r.gaps == 1 && r.gap_bytes == 10 &&
	      r.next == isn + 10 + REASM_MAX_BYTES + 100,
	      "an out-of-order segment larger than the buffer: gap, then straight through");
	reasm_free(&r);
	sink_free(&s);
	free(big);
	free(p);
}

/* The ack rule: the peer acknowledged past the hole, and REASM_GAP_PACKETS more
 * segments came without filling it. */
static void test_gap_packets(void)
{
	uint8_t d[100];
	uint32_t isn = 0xfffffc00u;
	struct reasm r;
	struct sink s;
	unsigned i;

	memset(d, 'd', sizeof(d));
	/* Without acks, nothing happens however many segments wait. */
	reasm_init(&r, isn);
	sink_init(&s, isn, 300 * 100);
	for (i = 1; i <= 200; i++)
		feed(&r, &s, isn + i * 100, d, 100);
	check(r.gaps == 0 && r.nsegs == 200, "no ack past the hole: 200 segments wait, no gap");
	/* An ack not past next arms nothing. */
	reasm_ack(&r, isn, on_data, on_gap, &s);
	check(!r.acked_past, "an ack at next arms nothing");
	reasm_ack(&r, isn + 50, on_data, on_gap, &s);
	check(r.acked_past && r.since_acked == 0, "an ack past next arms the rule");
	for (i = 1; i < REASM_GAP_PACKETS; i++) {
		feed(&r, &s, isn + (200 + i) * 100, d, 100);
		/* acks keep coming: they do not restart the count */
		reasm_ack(&r, isn + 60, on_data, on_gap, &s);
	}
	check(r.gaps == 0 && r.since_acked == REASM_GAP_PACKETS - 1,
	      "%u segments after the ack: still waiting", REASM_GAP_PACKETS - 1);
	/* Segment 64 lands inside the hole without filling it: the hole up to the
	 * first waiting byte is given up, and the stream goes on. */
	feed(&r, &s, isn + 50, d, 10);
	check(r.gaps == 1 && s.ngaps == 1 && s.gaps[0].from == isn && s.gaps[0].to == isn + 50 &&
	      r.next == isn + 60 && !r.acked_past && r.since_acked == 0 && s.broken == 0,
	      "segment %u after the ack: the hole [isn, isn+50) is a gap, the rule disarmed",
	      REASM_GAP_PACKETS);
	check(r.nsegs == 200 + REASM_GAP_PACKETS - 1, "the hole [60, 100) still waits (%u segs)",
	      r.nsegs);
	reasm_flush(&r, on_data, on_gap, &s);
	check(r.gaps == 2 && s.gaps[1].from == isn + 60 && s.gaps[1].to == isn + 100 &&
	      r.nsegs == 0 && r.next == isn + (201 + REASM_GAP_PACKETS - 1) * 100 &&
	      r.delivered == 10 + (200 + REASM_GAP_PACKETS - 1) * 100 && r.gap_bytes == 90 &&
	      s.broken == 0, "flush: the second hole is a gap, everything went on");
	reasm_free(&r);
	sink_free(&s);

	/* A hole filled before the count ends resets the rule. */
	reasm_init(&r, isn);
	sink_init(&s, isn, 100000);
	feed(&r, &s, isn + 100, d, 100);
	reasm_ack(&r, isn + 200, on_data, on_gap, &s);
	for (i = 0; i < 10; i++)
		feed(&r, &s, isn + 300 + i * 100, d, 100);
	feed(&r, &s, isn, d, 100);
	check(r.gaps == 0 && !r.acked_past && r.since_acked == 0 && r.next == isn + 200,
	      "the hole filled: no gap, the rule disarmed");
	reasm_free(&r);
	sink_free(&s);
}

int main(void)
{
	test_basics();
	test_first_copy();
	test_gap_packets();
	test_bounds();
	test_random();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
