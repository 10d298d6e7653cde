// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * TCP reassembly of one direction (see reasm.h).
 *
 * State: `next`, the first byte not yet handed on, and a list of waiting copies
 * sorted by sequence number. Invariant: every waiting copy starts strictly after
 * `next` (a hole lies before the first one), and no two overlap or touch out of
 * order. Sequence numbers are compared only through signed 32-bit differences,
 * so the stream may cross 2^32 anywhere; a segment is assumed shorter than 2^31.
 *
 * Which copy wins: the first one seen. Bytes behind `next` were handed on (or
 * given up as a gap) and a later copy of them is dropped (retrans_bytes). Bytes
 * that wait out of order keep their first copy: a later segment that covers them
 * is handed on around them, piece by piece, without copying (overlap_bytes).
 *
 * Counters: delivered (bytes handed on), retrans_bytes, overlap_bytes, ooo_segs
 * (segments that had to wait), gaps and gap_bytes, dropped (bytes that could not
 * wait because malloc failed: they end up inside a gap).
 */
#include "reasm.h"

#include <stdlib.h>
#include <string.h>

struct reasm_seg {
	struct reasm_seg *next;
	uint32_t seq, len;
	uint8_t data[];
};

/* a - b as a signed distance: > 0 when a is after b, across 2^32. */
static inline int32_t sdiff(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b);
}

static void emit(struct reasm *r, const uint8_t *data, uint32_t len, reasm_data_fn data_fn,
		 void *ctx)
{
	if (!len)
		return;
	r->delivered += len;
	if (data_fn)
		data_fn(ctx, r->next, data, len);
	r->next += len;
}

static void gap_to(struct reasm *r, uint32_t to, reasm_gap_fn gap_fn, void *ctx)
{
	uint32_t from = r->next;

	if (sdiff(to, from) <= 0)
		return;
	r->gaps++;
	r->gap_bytes += to - from;
	r->next = to;
	if (gap_fn)
		gap_fn(ctx, from, to);
}

static void pop(struct reasm *r)
{
	struct reasm_seg *h = r->segs;

	r->segs = h->next;
	r->nsegs--;
	r->bytes -= h->len;
	free(h);
}

/* Hand on the waiting copies that now start at `next`. */
static void drain(struct reasm *r, reasm_data_fn data_fn, void *ctx)
{
	struct reasm_seg *h;
	int32_t behind;

	while ((h = r->segs) && (behind = sdiff(r->next, h->seq)) >= 0) {
		/* Never behind by the invariant; trimmed all the same. */
		if ((uint32_t)behind < h->len)
			emit(r, h->data + behind, h->len - (uint32_t)behind, data_fn, ctx);
		pop(r);
	}
}

/* The first hole becomes a gap; what waited behind it goes on. */
static void gap_first(struct reasm *r, reasm_data_fn data_fn, reasm_gap_fn gap_fn, void *ctx)
{
	if (!r->segs)
		return;
	gap_to(r, r->segs->seq, gap_fn, ctx);
	drain(r, data_fn, ctx);
}

/* A segment that reaches `next` from at or before it: cut the old front off,
 * then hand on the rest, giving way to any waiting copy it runs into. */
static void in_order(struct reasm *r, uint32_t seq, const uint8_t *data, uint32_t len,
		     reasm_data_fn data_fn, void *ctx)
{
	uint32_t skip = r->next - seq, n, ov;
	struct reasm_seg *h;

	r->retrans_bytes += skip;
	data += skip;
	len -= skip;
	seq = r->next;
	while (len) {
		h = r->segs;
		if (!h || sdiff(h->seq, seq + len) >= 0) {
			emit(r, data, len, data_fn, ctx);
			break;
		}
		/* Ours up to the waiting copy, then the waiting copy instead of ours. */
		n = h->seq - seq;
		emit(r, data, n, data_fn, ctx);
		data += n;
		len -= n;
		ov = len < h->len ? len : h->len;
		r->overlap_bytes += ov;
		data += ov;
		len -= ov;
		seq = h->seq + h->len;
		emit(r, h->data, h->len, data_fn, ctx);
		pop(r);
	}
	drain(r, data_fn, ctx);
}

/*
 * Copy the bytes of [seq, seq + len) that no waiting copy holds into the list,
 * one piece per uncovered stretch. With insert false, only count what that
 * would take; true if it fits the bounds.
 */
static bool wait_copy(struct reasm *r, uint32_t seq, const uint8_t *data, uint32_t len,
		      bool insert)
{
	struct reasm_seg **pp = &r->segs, *h, *s;
	uint32_t cur = seq, end = seq + len, pe, ov;
	uint64_t nbytes = 0, npieces = 0;

	while (sdiff(end, cur) > 0) {
		h = *pp;
		if (h && sdiff(h->seq + h->len, cur) <= 0) {
			pp = &h->next;  /* wholly before us */
			continue;
		}
		if (h && sdiff(h->seq, cur) <= 0) {
			/* Already waiting: the first copy stays. */
			ov = h->seq + h->len - cur;
			if (ov > end - cur)
				ov = end - cur;
			if (insert)
				r->overlap_bytes += ov;
			cur += ov;
			pp = &h->next;
			continue;
		}
		pe = h && sdiff(h->seq, end) < 0 ? h->seq : end;
		npieces++;
		nbytes += pe - cur;
		if (insert) {
			s = malloc(sizeof(*s) + (pe - cur));
			if (s) {
				s->seq = cur;
				s->len = pe - cur;
				memcpy(s->data, data + (cur - seq), s->len);
				s->next = h;
				*pp = s;
				pp = &s->next;
				r->nsegs++;
				r->bytes += s->len;
			} else {
				r->dropped += pe - cur;
			}
		}
		cur = pe;
	}
	return r->nsegs + npieces <= REASM_MAX_SEGS && r->bytes + nbytes <= REASM_MAX_BYTES;
}

void reasm_init(struct reasm *r, uint32_t isn_plus_1)
{
	memset(r, 0, sizeof(*r));
	r->next = isn_plus_1;
	r->started = true;
}

void reasm_init_unstarted(struct reasm *r)
{
	memset(r, 0, sizeof(*r));
}

void reasm_segment(struct reasm *r, uint32_t seq, const uint8_t *data, uint32_t len,
		   reasm_data_fn data_fn, reasm_gap_fn gap_fn, void *ctx)
{
	uint32_t before;

	if (!len)
		return;
	if (len > 1u << 30)
		len = 1u << 30;  /* keeps the signed comparisons sound; never on the wire */
	if (!r->started) {
		r->next = seq;
		r->started = true;
	}
	before = r->next;
	for (;;) {
		if (sdiff(seq + len, r->next) <= 0) {
			r->retrans_bytes += len;  /* all old */
			break;
		}
		if (sdiff(seq, r->next) <= 0) {
			in_order(r, seq, data, len, data_fn, ctx);
			break;
		}
		if (wait_copy(r, seq, data, len, false)) {
			wait_copy(r, seq, data, len, true);
			r->ooo_segs++;
			break;
		}
		/* It would pass the bound: the first hole gives way, then try again
		 * (the segment may now be in order). A segment larger than the whole
		 * buffer goes on alone after a gap. */
		if (r->segs)
			gap_first(r, data_fn, gap_fn, ctx);
		else
			gap_to(r, seq, gap_fn, ctx);
	}
	if (r->next != before) {
		/* The hole moved: wait for an ack past the new one. */
		r->acked_past = false;
		r->since_acked = 0;
	} else if (r->acked_past && r->segs && ++r->since_acked >= REASM_GAP_PACKETS) {
		/* The peer got bytes we never saw, and they are not coming. */
		gap_first(r, data_fn, gap_fn, ctx);
		r->acked_past = false;
		r->since_acked = 0;
	}
}

void reasm_ack(struct reasm *r, uint32_t ack, reasm_data_fn data_fn, reasm_gap_fn gap_fn,
	       void *ctx)
{
	if (!r->started || sdiff(ack, r->next) <= 0)
		return;
	r->acked_past = true;
	if (r->segs && r->since_acked >= REASM_GAP_PACKETS) {
		gap_first(r, data_fn, gap_fn, ctx);
		r->acked_past = false;
		r->since_acked = 0;
	}
}

void reasm_flush(struct reasm *r, reasm_data_fn data_fn, reasm_gap_fn gap_fn, void *ctx)
{
	while (r->segs)
		gap_first(r, data_fn, gap_fn, ctx);
	r->acked_past = false;
	r->since_acked = 0;
}

void reasm_free(struct reasm *r)
{
	while (r->segs)
		pop(r);
}
