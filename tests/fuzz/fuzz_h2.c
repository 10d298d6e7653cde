// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer harness for bpf/h2.h: the frame walker over both directions of a
 * connection, through h2_walk_mem, cut into segments the fuzzer picks.
 *
 *   scripts/test.sh fuzz    (built against connscope's libraries)
 *   then, longer: .output/tests/fuzz_h2 tests/fuzz/corpus_h2
 *
 * Input: byte 0 seeds the segmentation, byte 1 picks the initial sequence numbers
 * (near 2^32 and near 2^31, so walks cross both), bytes 2-3 (little-endian) say
 * where direction 0's bytes end and direction 1's begin, then the bytes. The seeds
 * in tests/fuzz/corpus_h2 are the real connections of tests/unit/h2_vectors.h
 * (client, then server) behind such a prefix, and a few made by hand.
 *
 * Three walks of the same bytes:
 *   A. each direction in one piece, direction 0 first;
 *   B. the same order, each direction in random segments, some starting before
 *      what was walked (overlaps), some entirely old (retransmissions): the
 *      walker's state must end byte for byte as in A (a stopped direction's
 *      position aside);
 *   C. the two directions interleaved at random, in small segments, then a gap.
 * After every call the walker's promises are checked: streams <= frames, 9 bytes
 * per frame at least, desync <= 2 and one per desynced direction, a stopped
 * direction never restarts, a walk it could use ends at the segment's end, counts
 * only grow. Every buffer is an exactly-sized heap copy, so a read past it is an
 * ASan report; a broken promise aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2.h"

/* A broken promise: say which, then abort (libFuzzer saves the input). */
#define require(ok) do { \
		if (!(ok)) { \
			fprintf(stderr, "fuzz_h2.c:%d: broken: %s\n", __LINE__, #ok); \
			abort(); \
		} \
	} while (0)

struct walk {
	struct h2_conn c;
	struct h2_dir d[2];
	int stopped[2];
	__u32 fed;        /* bytes of both directions handed over, new ones only */
};

static __u32 rng;

static __u32 rnd(__u32 n)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return n ? rng % n : 0;
}

static void w_init(struct walk *w, __u32 seq0, __u32 seq1)
{
	memset(w, 0, sizeof(*w));
	h2_conn_init(&w->c);
	h2_dir_init(&w->d[0], seq0);
	h2_dir_init(&w->d[1], seq1);
}

/* The unit's size, for the bytes collected in buf. */
static __u32 unit_need(__u8 unit)
{
	switch (unit) {
	case H2_U_PREFACE: return H2_PREFACE_LEN;
	case H2_U_HDR: return H2_FRAME_HDR_LEN;
	case H2_U_GOAWAY: return 8;
	case H2_U_RST: return 4;
	case H2_U_SETTING: return 6;
	case H2_U_DEBUG: return H2_DEBUG_PIECE;
	default: return 1;
	}
}

static void walk(struct walk *w, __u32 dir, __u32 seq, const uint8_t *p, __u32 len)
{
	struct h2_conn before = w->c;
	struct h2_dir dbefore = w->d[dir];
	unsigned char *b = malloc(len ? len : 1);
	__u32 skip, notes;
	int at = h2_at(&w->d[dir], seq, len, &skip);
	const struct h2_conn *c = &w->c;

	require(b != NULL);
	if (len)
		memcpy(b, p, len);
	notes = h2_walk_mem(&w->c, w->d, dir, seq, b, len);
	free(b);
	if (at == H2_AT_OK)
		w->fed += len - skip;

	require(c->streams <= c->frames);
	require((__u64)c->frames * H2_FRAME_HDR_LEN <= w->fed);
	require(c->desync <= 2);
	require(c->desync == !!(w->d[0].flags & H2_D_DESYNC) + !!(w->d[1].flags & H2_D_DESYNC));
	require(c->streams == 0 || ((c->flags & H2_C_H2) && c->client_dir <= 1 &&
				    (c->max_stream_id & 1)));
	require(c->client_dir <= 1 || c->client_dir == H2_DIR_NONE);
	require(c->goaway_dir <= 1 || c->goaway_dir == H2_DIR_NONE);
	require((c->goaway[0] + c->goaway[1] == 0) == (c->goaway_dir == H2_DIR_NONE));
	require(c->goaway_debug_len <= H2_DEBUG_MAX);
	require(!c->goaway_debug_len || c->goaway[0] + c->goaway[1]);
	require(c->streams >= before.streams && c->frames >= before.frames &&
		c->pings >= before.pings && c->desync >= before.desync);
	require(c->max_stream_id >= before.max_stream_id);
	(void)h2_error_name(c->goaway_error);
	(void)h2_error_name(c->rst_error);
	for (int i = 0; i < 2; i++) {
		const struct h2_dir *d = &w->d[i];
		int st = h2_dir_stopped(d);

		require(d->unit <= H2_U_DEBUG);
		/* Debug data is read only inside a GOAWAY, and no further than kept. */
		require(d->unit != H2_U_DEBUG || (d->ftype == H2_GOAWAY && d->left > 0));
		require(!w->stopped[i] || st);
		require(st == !!(d->flags & (H2_D_DESYNC | H2_D_NOT_H2)));
		require(d->max_frame >= H2_DEFAULT_MAX_FRAME && d->max_frame <= H2_MAX_MAX_FRAME);
		require(d->left <= H2_MAX_MAX_FRAME);
		require(st || d->unit == H2_U_START || d->unit == H2_U_SKIP ||
			d->have < unit_need(d->unit));
		w->stopped[i] = st;
	}
	/* A walk it could use ends at the segment's end, unless it stopped there. */
	if (at == H2_AT_OK && !h2_dir_stopped(&w->d[dir]))
		require(w->d[dir].pos == seq + len);
	/* A walk it could not use changes nothing, except a gap that desyncs. */
	if (at == H2_AT_OLD || at == H2_AT_IDLE) {
		require(!notes && !memcmp(&before, c, sizeof(before)) &&
			!memcmp(&dbefore, &w->d[dir], sizeof(dbefore)));
	}
	if (at == H2_AT_GAP)
		require(notes == H2_N_DESYNC && (w->d[dir].flags & H2_D_DESYNC));
	if (notes & H2_N_STREAM)
		require(c->streams > before.streams);
	if (notes & H2_N_PREFACE)
		require((c->flags & H2_C_H2) && c->client_dir == dir);
	if (notes & (H2_N_DESYNC | H2_N_NOT_H2))
		require(h2_dir_stopped(&w->d[dir]));
}

/* One direction's bytes in random segments with overlaps and retransmissions. */
static void walk_segments(struct walk *w, __u32 dir, __u32 seq, const uint8_t *p, __u32 len,
			  __u32 maxseg)
{
	__u32 next = 0;

	while (next < len) {
		__u32 back = rnd(4) ? 0 : rnd(next + 1);
		__u32 start = next - back;
		__u32 n = 1 + rnd(maxseg);

		if (n > len - start)
			n = len - start;
		walk(w, dir, seq + start, p + start, n);
		if (start + n > next)
			next = start + n;
	}
}

/* Two walks of the same bytes agree on a direction: every field, ftype while a
 * payload is under way (at a header it is the last frame's, which a run of frames
 * taken whole does not keep), and of buf the bytes of the unit under way (the rest
 * is scratch: a frame taken whole is read where it is, never copied there). */
static int dir_same(const struct h2_dir *a, const struct h2_dir *b)
{
	int payload = a->unit != H2_U_START && a->unit != H2_U_PREFACE && a->unit != H2_U_HDR &&
		      a->unit != H2_U_STOP;

	return a->pos == b->pos && a->left == b->left && a->max_frame == b->max_frame &&
	       a->unit == b->unit && a->have == b->have && a->flags == b->flags &&
	       (!payload || a->ftype == b->ftype) && a->frames == b->frames &&
	       a->streams == b->streams && a->max_stream_id == b->max_stream_id &&
	       !memcmp(a->buf, b->buf, a->have < H2_BUF_SIZE ? a->have : H2_BUF_SIZE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct walk a, b, c;
	const uint8_t *p, *q[2];
	__u32 n, split, len[2], seq[2], next[2] = { 0, 0 };

	if (size < 4 || size > (1u << 20))
		return 0;
	p = data + 4;
	n = (__u32)size - 4;
	split = (__u32)data[2] | (__u32)data[3] << 8;
	if (split > n)
		split = n;
	q[0] = p;
	len[0] = split;
	q[1] = p + split;
	len[1] = n - split;
	seq[0] = 0u - 16u * (data[1] & 0x3f) - 1;
	seq[1] = 0x80000000u - 8u * (data[1] >> 6) - (__u32)(data[1] & 7);

	/* A: in one piece each. */
	w_init(&a, seq[0], seq[1]);
	walk(&a, 0, seq[0], q[0], len[0]);
	walk(&a, 1, seq[1], q[1], len[1]);

	/* B: the same order, in segments: the same end state. */
	rng = 0x9e3779b9u ^ ((__u32)data[0] * 0x01000193u);
	w_init(&b, seq[0], seq[1]);
	walk_segments(&b, 0, seq[0], q[0], len[0], 1 + (data[0] & 0x1f) * (data[0] & 0x80 ? 97 : 1));
	walk_segments(&b, 1, seq[1], q[1], len[1], 1 + (data[0] & 0x1f));
	require(!memcmp(&a.c, &b.c, sizeof(a.c)));
	for (int i = 0; i < 2; i++) {
		/* A direction stopped inside the preface stops where the segment that
		 * broke it ends: its position no longer means anything. */
		if (h2_dir_stopped(&a.d[i]))
			require(a.d[i].flags == b.d[i].flags && h2_dir_stopped(&b.d[i]));
		else
			require(dir_same(&a.d[i], &b.d[i]));
	}

	/* C: interleaved at random, then a gap in each direction. */
	w_init(&c, seq[0], seq[1]);
	while (next[0] < len[0] || next[1] < len[1]) {
		__u32 dir = next[0] >= len[0] ? 1 : next[1] >= len[1] ? 0 : rnd(2);
		__u32 k = 1 + rnd(1 + (data[0] & 0x0f));

		if (k > len[dir] - next[dir])
			k = len[dir] - next[dir];
		walk(&c, dir, seq[dir] + next[dir], q[dir] + next[dir], k);
		next[dir] += k;
	}
	for (__u32 dir = 0; dir < 2; dir++) {
		static const uint8_t one = 0;
		int was_stopped = h2_dir_stopped(&c.d[dir]);
		__u16 desync = c.c.desync;

		walk(&c, dir, seq[dir] + len[dir] + 1, &one, 1);
		require(h2_dir_stopped(&c.d[dir]));
		require(c.c.desync == desync + !was_stopped);
	}
	return 0;
}
