// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit test of bpf/h2.h, the HTTP/2 frame walker shared by BPF and replay, on real
 * h2c connections recorded from nghttpd, nghttp and h2load (tests/unit/h2_vectors.h,
 * made by tests/unit/h2_vectors.py, which also derives the expected figures with its
 * own frame parser) and on frames made by hand, one RFC 9113 rule at a time.
 *
 *   scripts/test.sh unit    (built against connscope's libraries)
 *
 * Every buffer the walker reads is an exactly-sized heap copy, so ASan catches a
 * read past the bytes it was given. Every walk also checks the walker's own
 * promises (streams <= frames, desync <= 2, a stopped direction stays stopped, the
 * position moves to the end of what it was given), counted in one check at the end.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2.h"
#include "h2_vectors.h"

#include "check.h"

#define NVEC (sizeof(h2_vecs) / sizeof(h2_vecs[0]))

static void check_u(const char *what, unsigned long got, unsigned long want)
{
	if (got == want)
		check(true, "%s = %lu (0x%lx)", what, want, want);
	else
		check(false, "%s = %lu (0x%lx), want %lu (0x%lx)", what, got, got, want, want);
}


/* A small deterministic PRNG (xorshift32), so a failure reproduces. */
static unsigned rng_state = 0x2545f491;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return n ? rng_state % n : 0;
}

/* ---- a walker with its invariants ------------------------------------------------- */

struct walker {
	struct h2_conn c;
	struct h2_dir d[2];
	__u32 at[2];     /* the stream position of the next byte send() hands over */
	__u32 notes[2];  /* OR of the notes, per direction */
	bool stopped[2];
};

static unsigned long walks, broken;  /* walks done, and those that broke an invariant */
static char broken_why[160];

static void broke(const char *fmt, ...)
{
	va_list ap;

	if (!broken++) {
		va_start(ap, fmt);
		vsnprintf(broken_why, sizeof(broken_why), fmt, ap);
		va_end(ap);
	}
}

static void w_init(struct walker *w, __u32 seq0, __u32 seq1)
{
	memset(w, 0, sizeof(*w));
	h2_conn_init(&w->c);
	h2_dir_init(&w->d[0], seq0);
	h2_dir_init(&w->d[1], seq1);
	w->at[0] = seq0;
	w->at[1] = seq1;
}

/* Walk len bytes at stream position seq in direction dir, and check what the walker
 * promises whatever the bytes. */
static __u32 walk(struct walker *w, __u32 dir, __u32 seq, const unsigned char *p, __u32 len)
{
	unsigned char *b = dup_n(p, len);
	struct h2_dir before = w->d[dir];
	__u32 skip, notes;
	int at = h2_at(&w->d[dir], seq, len, &skip);
	struct h2_dir *d = &w->d[dir];

	notes = h2_walk_mem(&w->c, w->d, dir, seq, b, len);
	free(b);
	walks++;
	w->notes[dir] |= notes;
	if (w->c.streams > w->c.frames)
		broke("streams %u > frames %u", w->c.streams, w->c.frames);
	if (w->c.desync > 2)
		broke("desync %u", w->c.desync);
	if (w->c.desync != !!(w->d[0].flags & H2_D_DESYNC) + !!(w->d[1].flags & H2_D_DESYNC))
		broke("desync %u does not match the directions' flags", w->c.desync);
	for (int i = 0; i < 2; i++) {
		bool st = h2_dir_stopped(&w->d[i]);

		if (w->stopped[i] && !st)
			broke("direction %d restarted", i);
		if (st != !!(w->d[i].flags & (H2_D_DESYNC | H2_D_NOT_H2)))
			broke("direction %d: stopped %d, flags 0x%x", i, st, w->d[i].flags);
		w->stopped[i] = st;
	}
	if (w->c.streams && (w->c.client_dir > 1 || !(w->c.flags & H2_C_H2) ||
			     !(w->c.max_stream_id & 1)))
		broke("streams counted without a client preface");
	/* Where the walk was told to go on, it goes on to the end, unless it stopped. */
	if (at == H2_AT_OK && !h2_dir_stopped(d) && d->pos != seq + len)
		broke("pos 0x%x after a walk of [0x%x, +%u)", d->pos, seq, len);
	if (at != H2_AT_OK && at != H2_AT_GAP && memcmp(&before, d, sizeof(before)))
		broke("a walk the walker had no use for changed it (h2_at %d)", at);
	if (at == H2_AT_GAP && !(notes & H2_N_DESYNC))
		broke("a gap did not desync");
	if ((notes & H2_N_DESYNC) && !(d->flags & H2_D_DESYNC))
		broke("DESYNC noted, not flagged");
	if ((notes & H2_N_NOT_H2) && !(d->flags & H2_D_NOT_H2))
		broke("NOT_H2 noted, not flagged");
	return notes;
}

/* Hand over the next len bytes of direction dir. */
static __u32 send_b(struct walker *w, __u32 dir, const void *p, __u32 len)
{
	__u32 n = walk(w, dir, w->at[dir], p, len);

	w->at[dir] += len;
	return n;
}

/* ---- real connections --------------------------------------------------------------- */

static const unsigned char *stream_of(const struct h2_vec *v, int dir, unsigned *len)
{
	*len = dir ? v->s2c_len : v->c2s_len;
	return dir ? v->s2c : v->c2s;
}

/* Do the totals match what h2_vectors.py counted, with the client on walker
 * direction cd? On the first difference, say which in why and return false.
 * end_c, end_s: where the client's and the server's walks must end. last_goaway:
 * the sender (0 client, 1 server) whose GOAWAY was walked last, or -1 when the
 * order is not known. */
static bool same_cd(const struct walker *w, const struct h2_vec *v, int cd, __u32 end_c,
		    __u32 end_s, int last_goaway, char *why, size_t n)
{
	const struct h2_conn *c = &w->c;
	const struct h2_dir *dc = &w->d[cd], *ds = &w->d[!cd];
	int gs, rs;

#define SAME(got, want) do { \
		if ((unsigned long)(got) != (unsigned long)(want)) { \
			snprintf(why, n, "%s = %lu, want %lu", #got, (unsigned long)(got), \
				 (unsigned long)(want)); \
			return false; \
		} \
	} while (0)
	SAME(c->streams, v->streams);
	SAME(c->max_stream_id, v->max_stream_id);
	SAME(c->frames, v->frames);
	SAME(c->pings, v->pings);
	SAME(c->goaway[cd], v->goaway[0]);
	SAME(c->goaway[!cd], v->goaway[1]);
	SAME(c->rst_stream[cd], v->rst[0]);
	SAME(c->rst_stream[!cd], v->rst[1]);
	SAME(c->max_concurrent[cd], v->max_concurrent[0]);
	SAME(c->max_concurrent[!cd], v->max_concurrent[1]);
	SAME(c->desync, 0);
	SAME(c->flags, H2_C_H2);
	SAME(c->client_dir, cd);
	SAME(dc->flags, H2_D_STARTED);
	SAME(ds->flags, H2_D_STARTED);
	SAME(dc->unit, H2_U_HDR);  /* both end on a frame boundary */
	SAME(ds->unit, H2_U_HDR);
	SAME(dc->pos, end_c);
	SAME(ds->pos, end_s);
	SAME(dc->max_frame, v->max_frame[0]);
	SAME(ds->max_frame, v->max_frame[1]);
	if (v->goaway[0] + v->goaway[1]) {
		gs = last_goaway;
		if (gs < 0 || !v->goaway[gs])
			gs = v->goaway[0] ? (v->goaway[1] ? c->goaway_dir ^ cd : 0) : 1;
		SAME(c->goaway_dir, gs ^ cd);
		SAME(c->goaway_last_id, v->goaway_last_id[gs]);
		SAME(c->goaway_error, v->goaway_error[gs]);
	} else {
		SAME(c->goaway_dir, H2_DIR_NONE);
	}
	if (v->rst[0] + v->rst[1]) {
		rs = v->rst[0] ? 0 : 1;
		if (v->rst[0] && v->rst[1] && c->rst_error != v->rst_error[rs])
			rs ^= 1;
		SAME(c->rst_error, v->rst_error[rs]);
	}
#undef SAME
	return true;
}

/* ": why" when there is a reason, else nothing. */
static const char *colon(const char *why)
{
	return why[0] ? ": " : "";
}

static bool same(const struct walker *w, const struct h2_vec *v, __u32 end0, __u32 end1,
		 int last_goaway, char *why, size_t n)
{
	return same_cd(w, v, 0, end0, end1, last_goaway, why, n);
}

/* The bases the streams start at: each direction crosses 2^32 halfway. */
static void bases(const struct h2_vec *v, __u32 *s0, __u32 *s1)
{
	*s0 = 0u - v->c2s_len / 2;
	*s1 = 0u - v->s2c_len / 3 - 1;
}

/* (a) Each direction in one piece, client first, then server first. */
static void test_vec_whole(const struct h2_vec *v)
{
	struct walker w;
	__u32 s0, s1;
	char why[160] = "";
	char what[120];

	bases(v, &s0, &s1);
	w_init(&w, s0, s1);
	walk(&w, 0, s0, v->c2s, v->c2s_len);
	walk(&w, 1, s1, v->s2c, v->s2c_len);

#define FIG(label, got, want) do { \
		snprintf(what, sizeof(what), "%s: %s", v->name, label); \
		check_u(what, got, want); \
	} while (0)
	FIG("new client streams", w.c.streams, v->streams);
	FIG("highest client stream id", w.c.max_stream_id, v->max_stream_id);
	FIG("frames", w.c.frames, v->frames);
	FIG("PINGs", w.c.pings, v->pings);
	FIG("GOAWAY from the client", w.c.goaway[0], v->goaway[0]);
	FIG("GOAWAY from the server", w.c.goaway[1], v->goaway[1]);
	FIG("RST_STREAM from the client", w.c.rst_stream[0], v->rst[0]);
	FIG("RST_STREAM from the server", w.c.rst_stream[1], v->rst[1]);
	FIG("MAX_CONCURRENT_STREAMS the client announced", w.c.max_concurrent[0],
	    v->max_concurrent[0]);
	FIG("MAX_CONCURRENT_STREAMS the server announced", w.c.max_concurrent[1],
	    v->max_concurrent[1]);
	FIG("largest frame the server may send", w.d[1].max_frame, v->max_frame[1]);
	FIG("desync", w.c.desync, 0);
	FIG("client_dir", w.c.client_dir, 0);
	if (v->goaway[0] + v->goaway[1]) {
		int gd = v->goaway[1] ? 1 : 0;

		FIG("GOAWAY last stream id", w.c.goaway_last_id, v->goaway_last_id[gd]);
		FIG("GOAWAY error", w.c.goaway_error, v->goaway_error[gd]);
		FIG("GOAWAY sender", w.c.goaway_dir, (unsigned)gd);
	}
	if (v->rst[0] + v->rst[1])
		FIG("RST_STREAM error", w.c.rst_error, v->rst_error[v->rst[1] ? 1 : 0]);
#undef FIG
	check(same(&w, v, s0 + v->c2s_len, s1 + v->s2c_len, 1, why, sizeof(why)),
	      "%s: client then server, in one piece each: every figure as expected%s%s",
	      v->name, colon(why), why);
	check((w.notes[0] & (H2_N_PREFACE | H2_N_STREAM)) == (H2_N_PREFACE | H2_N_STREAM) &&
	      !(w.notes[1] & (H2_N_PREFACE | H2_N_STREAM)) &&
	      (w.notes[1] & H2_N_SETTINGS) &&
	      !!(w.notes[0] & H2_N_GOAWAY) == !!v->goaway[0] &&
	      !!(w.notes[1] & H2_N_GOAWAY) == !!v->goaway[1] &&
	      !!(w.notes[1] & H2_N_RST) == !!v->rst[1] &&
	      !((w.notes[0] | w.notes[1]) & (H2_N_DESYNC | H2_N_NOT_H2)),
	      "%s: notes client 0x%x, server 0x%x", v->name, w.notes[0], w.notes[1]);

	/* The server's bytes first: the same figures (the server's HEADERS on the
	 * client's odd streams are answers, not new streams). */
	w_init(&w, s0, s1);
	walk(&w, 1, s1, v->s2c, v->s2c_len);
	walk(&w, 0, s0, v->c2s, v->c2s_len);
	why[0] = 0;
	check(same(&w, v, s0 + v->c2s_len, s1 + v->s2c_len, 0, why, sizeof(why)),
	      "%s: server then client, in one piece each: every figure as expected%s%s",
	      v->name, colon(why), why);

	/* The client on direction 1 (an observer on the server's host: the client's
	 * bytes come in), interleaved by capture order. */
	w_init(&w, s1, s0);
	for (unsigned i = 0; i < v->nsegs; i++) {
		const struct h2_vec_seg *g = &v->segs[i];
		unsigned len;
		const unsigned char *p = stream_of(v, g->dir, &len);

		walk(&w, !g->dir, (g->dir ? s1 : s0) + g->off, p + g->off, g->len);
	}
	why[0] = 0;
	check(same_cd(&w, v, 1, s0 + v->c2s_len, s1 + v->s2c_len, -1, why, sizeof(why)),
	      "%s: the client on direction 1: every figure as expected, client_dir 1%s%s",
	      v->name, colon(why), why);

	/* The same from sequence number 0 and from 2^31 - 1: no wrap, and a signed one. */
	w_init(&w, 0, 0x7fffffff);
	walk(&w, 0, 0, v->c2s, v->c2s_len);
	walk(&w, 1, 0x7fffffff, v->s2c, v->s2c_len);
	why[0] = 0;
	check(same(&w, v, v->c2s_len, 0x7fffffffu + v->s2c_len, 1, why, sizeof(why)),
	      "%s: from sequence numbers 0 and 2^31-1: every figure as expected%s%s",
	      v->name, colon(why), why);
}

/* (b) Byte by byte, the two directions interleaved one byte at a time. */
static void test_vec_bytes(const struct h2_vec *v)
{
	struct walker w;
	__u32 s0, s1, i;
	char why[160] = "";

	bases(v, &s0, &s1);
	w_init(&w, s0, s1);
	for (i = 0; i < v->c2s_len || i < v->s2c_len; i++) {
		if (i < v->c2s_len)
			walk(&w, 0, s0 + i, v->c2s + i, 1);
		if (i < v->s2c_len)
			walk(&w, 1, s1 + i, v->s2c + i, 1);
	}
	check(same(&w, v, s0 + v->c2s_len, s1 + v->s2c_len, -1, why, sizeof(why)),
	      "%s: byte by byte (%u + %u walks, across 2^32): every figure as expected%s%s",
	      v->name, v->c2s_len, v->s2c_len, colon(why), why);
}

/* (c) Each direction cut in two at every offset, the other direction walked between
 * the two pieces. */
static void test_vec_cuts(const struct h2_vec *v)
{
	unsigned bad = 0, first = 0, cuts = 0;
	int first_dir = 0;
	char why[160] = "", w1[160];
	__u32 s0, s1;

	bases(v, &s0, &s1);
	for (int dir = 0; dir < 2; dir++) {
		unsigned len;
		const unsigned char *p = stream_of(v, dir, &len);
		unsigned olen;
		const unsigned char *o = stream_of(v, !dir, &olen);
		__u32 seq = dir ? s1 : s0, oseq = dir ? s0 : s1;

		for (unsigned k = 0; k <= len; k++) {
			struct walker w;

			w_init(&w, s0, s1);
			walk(&w, dir, seq, p, k);
			walk(&w, !dir, oseq, o, olen);
			walk(&w, dir, seq + k, p + k, len - k);
			cuts++;
			if (!same(&w, v, s0 + v->c2s_len, s1 + v->s2c_len, -1, w1, sizeof(w1)) &&
			    !bad++) {
				first = k;
				first_dir = dir;
				memcpy(why, w1, sizeof(why));
			}
		}
	}
	if (bad)
		snprintf(w1, sizeof(w1), "%u wrong, first: direction %d cut at %u: %s", bad,
			 first_dir, first, why);
	else
		w1[0] = 0;
	check(!bad, "%s: each direction cut in two at every offset (%u cuts): every figure as "
	      "expected%s%s", v->name, cuts, colon(w1), w1);
}

/* (d) Random segments, the directions interleaved at random, some starting before
 * what was walked (overlaps), some all old (retransmissions, which must change
 * nothing at all). No gaps. */
static void test_vec_random(const struct h2_vec *v)
{
	unsigned bad = 0, rounds = 200, resent = 0, changed = 0;
	char why[160] = "", w1[160];

	for (unsigned r = 0; r < rounds; r++) {
		struct walker w;
		__u32 base[2], next[2] = { 0, 0 }, len[2] = { v->c2s_len, v->s2c_len };
		const unsigned char *p[2] = { v->c2s, v->s2c };
		unsigned maxseg = 1 + rnd(r & 1 ? 64 : 4000);

		base[0] = r % 3 ? 0u - rnd(3 * v->c2s_len + 1) : rng_state;
		base[1] = r % 3 ? 0u - rnd(3 * v->s2c_len + 1) : rnd(~0u);
		w_init(&w, base[0], base[1]);
		while (next[0] < len[0] || next[1] < len[1]) {
			int dir = next[0] >= len[0] ? 1 : next[1] >= len[1] ? 0 : (int)rnd(2);
			__u32 back = rnd(4) ? 0 : rnd(next[dir] + 1);
			__u32 start = next[dir] - back;
			__u32 n = 1 + rnd(maxseg);

			if (n > len[dir] - start)
				n = len[dir] - start;
			if (start + n <= next[dir]) {
				/* Entirely old: the walker must not change. */
				struct h2_conn c = w.c;
				struct h2_dir d0 = w.d[0], d1 = w.d[1];

				walk(&w, dir, base[dir] + start, p[dir] + start, n);
				resent++;
				if (memcmp(&c, &w.c, sizeof(c)) || memcmp(&d0, &w.d[0], sizeof(d0)) ||
				    memcmp(&d1, &w.d[1], sizeof(d1)))
					changed++;
				continue;
			}
			walk(&w, dir, base[dir] + start, p[dir] + start, n);
			next[dir] = start + n;
		}
		if (!same(&w, v, base[0] + len[0], base[1] + len[1], -1, w1, sizeof(w1)) && !bad++)
			snprintf(why, sizeof(why), "round %u: %s", r, w1);
	}
	check(!bad, "%s: %u rounds of random segments with overlaps: every figure as "
	      "expected%s%s", v->name, rounds, colon(why), why);
	check(resent > 0 && !changed, "%s: %u retransmissions of walked bytes changed nothing "
	      "(%u did)", v->name, resent, changed);
}

/* (e) The segments in the order they crossed lo, retransmissions included. */
static void test_vec_capture_order(const struct h2_vec *v)
{
	struct walker w;
	__u32 s0, s1;
	char why[160] = "";

	bases(v, &s0, &s1);
	w_init(&w, s0, s1);
	for (unsigned i = 0; i < v->nsegs; i++) {
		const struct h2_vec_seg *s = &v->segs[i];
		unsigned len;
		const unsigned char *p = stream_of(v, s->dir, &len);

		walk(&w, s->dir, (s->dir ? s1 : s0) + s->off, p + s->off, s->len);
	}
	check(same(&w, v, s0 + v->c2s_len, s1 + v->s2c_len, -1, why, sizeof(why)),
	      "%s: the %u captured segments in capture order: every figure as expected%s%s",
	      v->name, v->nsegs, colon(why), why);
}

/*
 * Joined mid-connection: the client direction walked from each offset k > 0, alone
 * and with the whole server direction after it. The walker never saw the preface,
 * so it must never count a stream. And it must end as h2_vectors.py says from the
 * frame rules alone: not HTTP/2 almost everywhere; walking on only where every frame
 * header from k to the end keeps the rules (as where the client's SETTINGS frame
 * starts: such bytes cannot be told from a server's side); undecided only where
 * too few bytes are left.
 */
static void test_vec_join(const struct h2_vec *v)
{
	unsigned counted = 0, wrong = 0, first_counted = 0, first_wrong = 0, ji = 0;
	unsigned n_state[4] = { 0 };
	char got_wrong = 0, want_wrong = 0;
	__u32 s0 = 0u - 7, s1 = 1000;

	for (unsigned k = 1; k < v->c2s_len; k++) {
		char want = 'N';

		while (ji < v->njoin && v->join[ji].off < k)
			ji++;
		if (ji < v->njoin && v->join[ji].off == k)
			want = v->join[ji].state;
		for (int with_server = 0; with_server < 2; with_server++) {
			struct walker w;
			const struct h2_dir *d = &w.d[0];
			char got;

			w_init(&w, s0 + k, s1);
			/* The whole buffer from 0: h2_at skips to k. */
			walk(&w, 0, s0, v->c2s, v->c2s_len);
			if (with_server)
				walk(&w, 1, s1, v->s2c, v->s2c_len);
			if (w.c.streams || w.c.max_stream_id || w.c.client_dir != H2_DIR_NONE ||
			    (w.c.flags & H2_C_H2)) {
				if (!counted++)
					first_counted = k;
			}
			if (d->flags & H2_D_NOT_H2)
				got = 'N';
			else if (d->flags & H2_D_DESYNC)
				got = 'D';
			else if (d->unit == H2_U_START || d->unit == H2_U_PREFACE ||
				 (d->flags & H2_D_FIRST_FRAME))
				got = 'U';
			else
				got = 'W';
			if (got != want || (got == 'N') != !!(w.c.flags & H2_C_NOT_H2) ||
			    w.c.desync != (got == 'D') ||
			    (with_server && (h2_dir_stopped(&w.d[1]) ||
					     w.d[1].pos != s1 + v->s2c_len))) {
				if (!wrong++) {
					first_wrong = k;
					got_wrong = got;
					want_wrong = want;
				}
			}
			n_state[got == 'N' ? 0 : got == 'D' ? 1 : got == 'W' ? 2 : 3]++;
		}
	}
	check(!counted, "%s: joined at each of the client's offsets 1..%u, alone and with the "
	      "server: no stream counted, no client seen (%u walks did, the first at %u)",
	      v->name, v->c2s_len - 1, counted, first_counted);
	check(!wrong, "%s: ... each walk ends as the frame rules say: %u not HTTP/2, %u desync, "
	      "%u walking on, %u undecided (%u wrong; the first at %u: %c, want %c)", v->name,
	      n_state[0], n_state[1], n_state[2], n_state[3], wrong, first_wrong,
	      got_wrong ? got_wrong : '-', want_wrong ? want_wrong : '-');
}

static void test_vectors(void)
{
	for (unsigned i = 0; i < NVEC; i++) {
		const struct h2_vec *v = h2_vecs[i];

		test_vec_whole(v);
		test_vec_bytes(v);
		test_vec_cuts(v);
		test_vec_random(v);
		test_vec_capture_order(v);
		test_vec_join(v);
	}
}

/* ---- frames made by hand ------------------------------------------------------------ */

struct bytes {
	unsigned char *p;
	size_t n, cap;
};

/* Room for n more bytes at b->p + b->n. */
static void reserve(struct bytes *b, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
}

static void put(struct bytes *b, const void *p, size_t n)
{
	reserve(b, n);
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put_be(struct bytes *b, __u32 v, int n)
{
	unsigned char x[4];

	for (int i = 0; i < n; i++)
		x[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
	put(b, x, (size_t)n);
}

/* A frame header, then len payload bytes: pl, or (if pl is NULL) zeros. */
static void put_frame(struct bytes *b, __u32 len, __u8 type, __u8 flags, __u32 stream,
		      const void *pl)
{
	put_be(b, len, 3);
	put(b, &type, 1);
	put(b, &flags, 1);
	put_be(b, stream, 4);
	if (pl) {
		put(b, pl, len);
	} else {
		reserve(b, len);
		memset(b->p + b->n, 0, len);
		b->n += len;
	}
}

static void put_setting(struct bytes *b, __u16 id, __u32 v)
{
	put_be(b, id, 2);
	put_be(b, v, 4);
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Send b as the next bytes of dir and empty it. */
static __u32 flush(struct walker *w, __u32 dir, struct bytes *b)
{
	__u32 n = send_b(w, dir, b->p, (__u32)b->n);

	b->n = 0;
	return n;
}

/* A connection that has started well: the client's preface and empty SETTINGS,
 * the server's SETTINGS with MAX_CONCURRENT_STREAMS 100. */
static void start(struct walker *w, __u32 seq0, __u32 seq1)
{
	struct bytes b = { 0 };

	w_init(w, seq0, seq1);
	put(&b, preface, 24);
	put_frame(&b, 0, H2_SETTINGS, 0, 0, NULL);
	flush(w, 0, &b);
	put_frame(&b, 6, H2_SETTINGS, 0, 0, NULL);
	b.n -= 6;
	put_setting(&b, H2_SETTINGS_MAX_CONCURRENT_STREAMS, 100);
	flush(w, 1, &b);
	free(b.p);
}

/* Bad fixed lengths (§6.3, §6.4, §6.5, §6.7, §6.8, §6.9): each desyncs its sender,
 * and the right length passes. */
static void test_lengths(void)
{
	static const struct {
		const char *what;
		__u8 type, flags;
		__u32 stream, bad, good;
	} cases[] = {
		{ "PING length 7", H2_PING, 0, 0, 7, 8 },
		{ "PING ACK length 9", H2_PING, H2_FLAG_ACK, 0, 9, 8 },
		{ "RST_STREAM length 5", H2_RST_STREAM, 0, 1, 5, 4 },
		{ "RST_STREAM length 3", H2_RST_STREAM, 0, 1, 3, 4 },
		{ "SETTINGS length 7", H2_SETTINGS, 0, 0, 7, 12 },
		{ "SETTINGS ACK with a 6-byte payload", H2_SETTINGS, H2_FLAG_ACK, 0, 6, 0 },
		{ "GOAWAY length 7", H2_GOAWAY, 0, 0, 7, 8 },
		{ "PRIORITY length 4", H2_PRIORITY, 0, 1, 4, 5 },
		{ "PRIORITY length 6", H2_PRIORITY, 0, 3, 6, 5 },
		{ "WINDOW_UPDATE length 3", H2_WINDOW_UPDATE, 0, 0, 3, 4 },
		{ "PUSH_PROMISE length 3", H2_PUSH_PROMISE, 0, 2, 3, 4 },
	};

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int dir = 0; dir < 2; dir++) {
			struct walker w;
			struct bytes b = { 0 };
			__u32 frames, n;

			start(&w, 100, 0u - 5);
			frames = w.c.frames;
			put_frame(&b, cases[i].good, cases[i].type, cases[i].flags, cases[i].stream,
				  NULL);
			n = flush(&w, dir, &b);
			check(!h2_dir_stopped(&w.d[dir]) && w.c.frames == frames + 1 && !w.c.desync &&
			      !(n & H2_N_DESYNC), "%s side: %s -- with length %u instead: walked",
			      dir ? "server" : "client", cases[i].what, cases[i].good);
			put_frame(&b, cases[i].bad, cases[i].type, cases[i].flags, cases[i].stream,
				  NULL);
			n = flush(&w, dir, &b);
			check((w.d[dir].flags & H2_D_DESYNC) && h2_dir_stopped(&w.d[dir]) &&
			      w.c.desync == 1 && (n & H2_N_DESYNC) && w.c.frames == frames + 1 &&
			      !h2_dir_stopped(&w.d[!dir]),
			      "%s side: %s: desync (desync %u, frames %u)", dir ? "server" : "client",
			      cases[i].what, w.c.desync, w.c.frames - frames);
			/* Stopped for good: a perfect frame after it is not walked. */
			put_frame(&b, 8, H2_PING, 0, 0, NULL);
			flush(&w, dir, &b);
			check(w.c.pings == (cases[i].type == H2_PING && !cases[i].flags) &&
			      w.c.frames == frames + 1,
			      "%s side: %s: nothing after it is walked", dir ? "server" : "client",
			      cases[i].what);
			free(b.p);
		}
	}
}

/* Stream identifier rules (§6): connection frames on a stream, stream frames on 0. */
static void test_stream_ids(void)
{
	static const struct {
		const char *what;
		__u8 type;
		__u32 len, stream;
		bool ok;
	} cases[] = {
		{ "DATA on stream 0", H2_DATA, 10, 0, false },
		{ "HEADERS on stream 0", H2_HEADERS, 10, 0, false },
		{ "PRIORITY on stream 0", H2_PRIORITY, 5, 0, false },
		{ "RST_STREAM on stream 0", H2_RST_STREAM, 4, 0, false },
		{ "CONTINUATION on stream 0", H2_CONTINUATION, 3, 0, false },
		{ "PUSH_PROMISE on stream 0", H2_PUSH_PROMISE, 4, 0, false },
		{ "SETTINGS on stream 3", H2_SETTINGS, 6, 3, false },
		{ "PING on stream 1", H2_PING, 8, 1, false },
		{ "GOAWAY on stream 1", H2_GOAWAY, 8, 1, false },
		{ "DATA on stream 1", H2_DATA, 10, 1, true },
		{ "WINDOW_UPDATE on stream 0", H2_WINDOW_UPDATE, 4, 0, true },
		{ "WINDOW_UPDATE on stream 7", H2_WINDOW_UPDATE, 4, 7, true },
		{ "CONTINUATION on stream 1", H2_CONTINUATION, 3, 1, true },
		{ "SETTINGS on stream 0 with the R bit set", H2_SETTINGS, 6, 0x80000000u, true },
	};

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct walker w;
		struct bytes b = { 0 };

		start(&w, 0u - 3, 77);
		put_frame(&b, cases[i].len, cases[i].type, 0, cases[i].stream, NULL);
		flush(&w, 0, &b);
		if (cases[i].ok)
			check(!w.c.desync && !h2_dir_stopped(&w.d[0]) && w.c.frames == 3,
			      "%s: walked", cases[i].what);
		else
			check(w.c.desync == 1 && (w.d[0].flags & H2_D_DESYNC) && w.c.frames == 2,
			      "%s: desync", cases[i].what);
		free(b.p);
	}
}

/* SETTINGS_MAX_FRAME_SIZE (§4.2, §6.5.2): a frame longer than the receiver allows. */
static void test_max_frame(void)
{
	struct walker w;
	struct bytes b = { 0 };
	__u32 n;

	/* Before any announcement: 16384 passes, 16385 desyncs. */
	start(&w, 0, 0);
	put_frame(&b, 16384, H2_DATA, 0, 1, NULL);
	flush(&w, 0, &b);
	check(!w.c.desync && w.c.frames == 3, "client DATA of 16384 bytes: walked");
	put_frame(&b, 16385, H2_DATA, 0, 1, NULL);
	n = flush(&w, 0, &b);
	check(w.c.desync == 1 && (n & H2_N_DESYNC) && w.c.frames == 3,
	      "client DATA of 16385 bytes, nothing announced: desync");
	free(b.p);

	/* The server (the receiver of the client's frames) announces 32768 in its
	 * SETTINGS: the client may now send up to 32768. The server may not. */
	b = (struct bytes){ 0 };
	start(&w, 0, 0);
	put_frame(&b, 12, H2_SETTINGS, 0, 0, NULL);
	b.n -= 12;
	put_setting(&b, 0x4, 1 << 20);                          /* INITIAL_WINDOW_SIZE */
	put_setting(&b, H2_SETTINGS_MAX_FRAME_SIZE, 32768);
	flush(&w, 1, &b);
	check_u("server announces MAX_FRAME_SIZE 32768: the client's limit", w.d[0].max_frame,
		32768);
	check_u("... the server's own limit unchanged", w.d[1].max_frame, 16384);
	put_frame(&b, 32768, H2_DATA, 0, 1, NULL);
	put_frame(&b, 16385, H2_HEADERS, 0, 1, NULL);
	flush(&w, 0, &b);
	check(!w.c.desync && w.c.frames == 5 && w.c.streams == 1,
	      "client DATA of 32768 and HEADERS of 16385 bytes after it: walked (frames %u)",
	      w.c.frames);
	put_frame(&b, 16385, H2_DATA, 0, 1, NULL);
	flush(&w, 1, &b);
	check(w.c.desync == 1 && (w.d[1].flags & H2_D_DESYNC) && !h2_dir_stopped(&w.d[0]),
	      "server DATA of 16385 bytes (the client announced nothing): the server desyncs");
	put_frame(&b, 32769, H2_DATA, 0, 1, NULL);
	flush(&w, 0, &b);
	check(w.c.desync == 2 && (w.d[0].flags & H2_D_DESYNC),
	      "client DATA of 32769 bytes: the client desyncs");
	free(b.p);

	/* A sender's own announcement does not raise its own limit. */
	b = (struct bytes){ 0 };
	start(&w, 5, 5);
	put_frame(&b, 6, H2_SETTINGS, 0, 0, NULL);
	b.n -= 6;
	put_setting(&b, H2_SETTINGS_MAX_FRAME_SIZE, H2_MAX_MAX_FRAME);
	put_frame(&b, 16385, H2_DATA, 0, 1, NULL);
	flush(&w, 0, &b);
	check(w.c.desync == 1 && (w.d[0].flags & H2_D_DESYNC) &&
	      w.d[1].max_frame == H2_MAX_MAX_FRAME,
	      "client announces 2^24-1 then sends 16385 bytes itself: desync; the server may");
	put_frame(&b, H2_MAX_MAX_FRAME, H2_DATA, 0, 1, NULL);
	flush(&w, 1, &b);
	check(w.c.desync == 1 && w.c.frames == 4 && w.d[1].pos == 5 + 15 + 9 + H2_MAX_MAX_FRAME,
	      "... the server's DATA of 2^24-1 bytes: walked, skipped in one step");
	free(b.p);

	/* Values outside 16384..2^24-1 are ignored (§6.5.2: a PROTOCOL_ERROR). */
	b = (struct bytes){ 0 };
	start(&w, 5, 5);
	put_frame(&b, 12, H2_SETTINGS, 0, 0, NULL);
	b.n -= 12;
	put_setting(&b, H2_SETTINGS_MAX_FRAME_SIZE, 16383);
	put_setting(&b, H2_SETTINGS_MAX_FRAME_SIZE, 1u << 24);
	flush(&w, 1, &b);
	check_u("MAX_FRAME_SIZE 16383 and 2^24: ignored", w.d[0].max_frame, 16384);
	free(b.p);
}

/* Extension frames (§4.1, §5.5): unknown types are skipped, whatever the stream. */
static void test_extension(void)
{
	struct walker w;
	struct bytes b = { 0 };

	start(&w, 9, 9);
	put_frame(&b, 300, 0x10, 0xff, 0, NULL);
	put_frame(&b, 0, 0x10, 0, 5, NULL);
	put_frame(&b, 20, 0xfa, 0, 0x7fffffff, NULL);
	put_frame(&b, 10, H2_HEADERS, 0x04, 1, NULL);
	flush(&w, 0, &b);
	check(!w.c.desync && w.c.frames == 6 && w.c.streams == 1,
	      "unknown types 0x10 (300 bytes, stream 0; empty, stream 5) and 0xfa: skipped; "
	      "the HEADERS after them counted");
	put_frame(&b, 16385, 0x10, 0, 0, NULL);
	flush(&w, 0, &b);
	check(w.c.desync == 1, "... but an unknown type over MAX_FRAME_SIZE desyncs");
	free(b.p);
}

/* Which HEADERS open a client stream (§5.1.1). */
static void test_streams(void)
{
	struct walker w;
	struct bytes b = { 0 };
	__u32 n;

	start(&w, 0xfffffff0u, 0xfffffff0u);
	put_frame(&b, 10, H2_HEADERS, 0x04, 1, NULL);
	n = flush(&w, 0, &b);
	check(w.c.streams == 1 && (n & H2_N_STREAM), "HEADERS on stream 1: a new stream");
	put_frame(&b, 100, H2_DATA, 0, 1, NULL);
	put_frame(&b, 7, H2_HEADERS, 0x05, 1, NULL);
	n = flush(&w, 0, &b);
	check(w.c.streams == 1 && !(n & H2_N_STREAM), "trailers (a second HEADERS on stream 1): "
	      "not a new stream");
	put_frame(&b, 10, H2_HEADERS, 0x04, 2, NULL);
	n = flush(&w, 0, &b);
	check(w.c.streams == 1 && w.c.max_stream_id == 1 && !(n & H2_N_STREAM),
	      "HEADERS on even stream 2: not counted");
	put_frame(&b, 10, H2_HEADERS, 0x04, 7, NULL);
	put_frame(&b, 10, H2_HEADERS, 0x04, 5, NULL);
	put_frame(&b, 10, H2_HEADERS, 0x04, 0x80000009u, NULL);  /* R bit: ignored */
	flush(&w, 0, &b);
	check(w.c.streams == 3 && w.c.max_stream_id == 9,
	      "HEADERS on 7, then 5 (lower: not new), then 9 with the R bit: 3 streams, "
	      "highest 9 (%u, %u)", w.c.streams, w.c.max_stream_id);
	put_frame(&b, 10, H2_HEADERS, 0x04, 9, NULL);
	put_frame(&b, 10, H2_HEADERS, 0x04, 11, NULL);
	put_frame(&b, 4, H2_PUSH_PROMISE, 0x04, 9, NULL);
	put_frame(&b, 10, H2_HEADERS, 0x04, 4, NULL);
	n = flush(&w, 1, &b);
	check(w.c.streams == 3 && w.c.max_stream_id == 9 && !(n & H2_N_STREAM),
	      "the server's HEADERS (on 9, on 11 before the client opened it, on pushed 4): "
	      "not client streams");
	put_frame(&b, 10, H2_HEADERS, 0x04, 11, NULL);
	flush(&w, 0, &b);
	check(w.c.streams == 4 && w.c.max_stream_id == 11, "the client's HEADERS on 11: counted");
	put_frame(&b, 10, H2_HEADERS, 0x04, 0x7fffffff, NULL);
	flush(&w, 0, &b);
	check(w.c.streams == 5 && w.c.max_stream_id == 0x7fffffff, "HEADERS on 2^31-1: counted");
	check(!w.c.desync && w.c.frames == 2 + 9 + 4, "no desync, all 15 frames walked");
	free(b.p);
}

/* GOAWAY (§6.8) and RST_STREAM (§6.4) fields, PING (§6.7). */
/* GOAWAY debug data (§6.8), cut at every place: the first H2_DEBUG_MAX bytes are kept
 * whole, the rest skipped, the next frame walked, and the GOAWAY noted once, with
 * the piece that ends its debug data (or the part kept). */
static void test_goaway_debug(void)
{
	static const char *debugs[] = { "too_many_pings", "",
		"a debug text longer than what is kept of it" };

	for (unsigned k = 0; k < sizeof(debugs) / sizeof(debugs[0]); k++) {
		const char *dbg = debugs[k];
		__u32 dl = (__u32)strlen(dbg), keep = dl < H2_DEBUG_MAX ? dl : H2_DEBUG_MAX;
		struct bytes b = { 0 };
		bool all_ok = true;

		put_frame(&b, 8 + dl, H2_GOAWAY, 0, 0, NULL);
		b.n -= 8 + dl;
		put_be(&b, 7, 4);
		put_be(&b, 0xb, 4);
		put(&b, dbg, dl);
		put_frame(&b, 8, H2_PING, 0, 0, "12345678");
		for (__u32 cut = 1; cut < b.n; cut++) {
			struct walker w;
			__u32 n1, n2;

			start(&w, 1, 2);
			n1 = send_b(&w, 1, b.p, cut);
			n2 = send_b(&w, 1, b.p + cut, (__u32)b.n - cut);
			if (w.c.goaway_debug_len != keep || memcmp(w.c.goaway_debug, dbg, keep) ||
			    w.c.goaway[1] != 1 || w.c.goaway_error != 0xb || w.c.pings != 1 ||
			    !((n1 | n2) & H2_N_GOAWAY) ||
			    ((n1 & H2_N_GOAWAY) && cut < 9 + 8 + keep)) {
				all_ok = false;
				check(0, "debug \"%s\" cut at %u: kept %u bytes, notes 0x%x/0x%x",
				      dbg, cut, w.c.goaway_debug_len, n1, n2);
				break;
			}
		}
		check(all_ok, "GOAWAY debug data of %u bytes, cut at each of %zu places: %u kept",
		      dl, b.n - 1, keep);
		free(b.p);
	}
}

static void test_goaway_rst_ping(void)
{
	struct walker w;
	struct bytes b = { 0 };
	__u32 n;

	start(&w, 1, 2);
	put_frame(&b, 8 + 9, H2_GOAWAY, 0, 0, NULL);
	b.n -= 17;
	put_be(&b, 0x80000005u, 4);            /* R bit set: not part of the id */
	put_be(&b, 0xb, 4);                    /* ENHANCE_YOUR_CALM */
	put(&b, "calm down", 9);               /* debug data, skipped */
	put_frame(&b, 8, H2_PING, 0, 0, "12345678");
	n = flush(&w, 1, &b);
	check((n & H2_N_GOAWAY) && w.c.goaway[1] == 1 && w.c.goaway[0] == 0 &&
	      w.c.goaway_dir == 1, "server GOAWAY: counted for the server, noted");
	check_u("GOAWAY last stream id (R bit cleared)", w.c.goaway_last_id, 5);
	check_u("GOAWAY error code", w.c.goaway_error, 0xb);
	check(w.c.pings == 1 && w.c.frames == 4, "the PING after its debug data: walked");
	check(w.c.goaway_debug_len == 9 && !memcmp(w.c.goaway_debug, "calm down", 9),
	      "its debug data kept (%u bytes)", w.c.goaway_debug_len);
	check(!strcmp(h2_error_name(w.c.goaway_error), "ENHANCE_YOUR_CALM"), "... named %s",
	      h2_error_name(w.c.goaway_error));

	put_frame(&b, 8, H2_PING, H2_FLAG_ACK, 0, "12345678");
	put_frame(&b, 8, H2_GOAWAY, 0, 0, NULL);
	b.n -= 8;
	put_be(&b, 0, 4);
	put_be(&b, 0x12345678, 4);
	n = flush(&w, 0, &b);
	check(w.c.pings == 1, "a PING ACK is not counted");
	check(!w.c.goaway_debug_len, "a GOAWAY without debug data: none kept from the last");
	check((n & H2_N_GOAWAY) && w.c.goaway[0] == 1 && w.c.goaway_dir == 0 &&
	      w.c.goaway_last_id == 0 && w.c.goaway_error == 0x12345678,
	      "client GOAWAY(0, 0x12345678) after it: the latest (dir %u, last %u, error 0x%x)",
	      w.c.goaway_dir, w.c.goaway_last_id, w.c.goaway_error);
	check(h2_error_name(0x12345678) == NULL, "error 0x12345678 has no name");

	put_frame(&b, 4, H2_RST_STREAM, 0, 1, NULL);
	b.n -= 4;
	put_be(&b, 0x8, 4);                    /* CANCEL */
	n = flush(&w, 0, &b);
	check((n & H2_N_RST) && w.c.rst_stream[0] == 1 && w.c.rst_error == 8,
	      "client RST_STREAM(CANCEL): counted, error 8");
	put_frame(&b, 4, H2_RST_STREAM, 0, 3, NULL);
	b.n -= 4;
	put_be(&b, 0x7, 4);                    /* REFUSED_STREAM */
	put_frame(&b, 4, H2_RST_STREAM, 0, 5, NULL);
	b.n -= 4;
	put_be(&b, 0x2, 4);                    /* INTERNAL_ERROR */
	n = flush(&w, 1, &b);
	check((n & H2_N_RST) && w.c.rst_stream[1] == 2 && w.c.rst_stream[0] == 1 &&
	      w.c.rst_error == 2, "two server RST_STREAMs: counted, the latest error 2");
	check(w.c.rst_cancel[0] == 1 && w.c.rst_cancel[1] == 0,
	      "CANCELs counted apart, per sender: client 1, server 0 (%u, %u)",
	      w.c.rst_cancel[0], w.c.rst_cancel[1]);
	put_frame(&b, 4, H2_RST_STREAM, 0, 7, NULL);
	b.n -= 4;
	put_be(&b, 0xdeadbeefu, 4);            /* no name: kept as it is */
	put_frame(&b, 8, H2_PING, 0xfe, 0, NULL);  /* unknown flags, no ACK: counted */
	put_frame(&b, 8, H2_PING, 0xff, 0, NULL);  /* ACK among others: not */
	flush(&w, 0, &b);
	check(w.c.rst_stream[0] == 2 && w.c.rst_error == 0xdeadbeefu,
	      "client RST_STREAM(0xdeadbeef): error kept whole (0x%x)", w.c.rst_error);
	check_u("PINGs with flags 0xfe (counted) and 0xff (an ACK)", w.c.pings, 2);
	check(!w.c.desync && w.c.frames == 12, "no desync, all 12 frames walked");
	free(b.p);

	for (__u32 e = 0; e <= H2_ERR_MAX_NAMED; e++)
		if (!h2_error_name(e))
			check(false, "error 0x%x has a name", e);
	check(!strcmp(h2_error_name(0), "NO_ERROR") && !strcmp(h2_error_name(0xd),
	      "HTTP_1_1_REQUIRED") && !h2_error_name(0xe), "error names 0..0xd, none for 0xe");
}

/* SETTINGS_MAX_CONCURRENT_STREAMS (§6.5.2), per sender, the latest wins. */
static void test_max_concurrent(void)
{
	struct walker w;
	struct bytes b = { 0 };
	__u32 n;

	w_init(&w, 0, 0);
	check(w.c.max_concurrent[0] == H2_UNSET && w.c.max_concurrent[1] == H2_UNSET,
	      "MAX_CONCURRENT_STREAMS unset at first");
	put(&b, preface, 24);
	put_frame(&b, 18, H2_SETTINGS, 0, 0, NULL);
	b.n -= 18;
	put_setting(&b, 0x1, 4096);
	put_setting(&b, 0x2, 0);
	put_setting(&b, H2_SETTINGS_MAX_CONCURRENT_STREAMS, 10);
	n = flush(&w, 0, &b);
	check((n & H2_N_SETTINGS) && w.c.max_concurrent[0] == 10 &&
	      w.c.max_concurrent[1] == H2_UNSET,
	      "client announces 10 (third entry): the client's, not the server's");
	put_frame(&b, 6, H2_SETTINGS, 0, 0, NULL);
	b.n -= 6;
	put_setting(&b, H2_SETTINGS_MAX_CONCURRENT_STREAMS, 100);
	put_frame(&b, 0, H2_SETTINGS, H2_FLAG_ACK, 0, NULL);
	put_frame(&b, 12, H2_SETTINGS, 0, 0, NULL);
	b.n -= 12;
	put_setting(&b, H2_SETTINGS_MAX_CONCURRENT_STREAMS, 7);
	put_setting(&b, H2_SETTINGS_MAX_CONCURRENT_STREAMS, 0);
	n = flush(&w, 1, &b);
	check((n & H2_N_SETTINGS) && w.c.max_concurrent[1] == 0 && w.c.max_concurrent[0] == 10,
	      "server announces 100, ACKs, then 7 and 0: the server's is 0, the client's 10");
	put_frame(&b, 6, H2_SETTINGS, 0, 0, NULL);
	b.n -= 6;
	put_setting(&b, 0x4, 65535);
	n = flush(&w, 0, &b);
	check(!(n & H2_N_SETTINGS) && w.c.max_concurrent[0] == 10,
	      "SETTINGS without it: no note, the value stays");
	check(!w.c.desync && w.c.frames == 5, "no desync, 5 frames");
	free(b.p);
}

/* Desyncs: counted once per direction; a gap; retransmissions and overlaps. */
static void test_desync_gap(void)
{
	struct walker w;
	struct bytes b = { 0 };
	__u32 n, skip;

	start(&w, 1000, 0u - 2);
	put_frame(&b, 8, H2_PING, 0, 0, NULL);
	/* A gap: the segment starts one byte after where the walk is. */
	n = walk(&w, 0, w.at[0] + 1, b.p + 1, (__u32)b.n - 1);
	check((n & H2_N_DESYNC) && w.c.desync == 1 && (w.d[0].flags & H2_D_DESYNC),
	      "a segment after a gap: desync");
	n = walk(&w, 0, w.at[0], b.p, (__u32)b.n);
	check(!n && w.c.desync == 1 && w.c.pings == 0,
	      "the missing bytes arriving late: ignored, desync still 1");
	check(h2_desync(&w.c, &w.d[0]) == 0 && w.c.desync == 1,
	      "h2_desync on a stopped direction: no note, still 1");
	check(h2_desync(&w.c, &w.d[1]) == H2_N_DESYNC && w.c.desync == 2,
	      "h2_desync on the other: 2");
	check(h2_desync(&w.c, &w.d[1]) == 0 && h2_desync(&w.c, &w.d[0]) == 0 && w.c.desync == 2,
	      "again on both: still 2");
	n = walk(&w, 1, w.at[1] + 5, b.p, (__u32)b.n);
	check(!n && w.c.desync == 2, "a gap in a stopped direction: nothing");
	free(b.p);

	/* Overlaps: a segment that starts before the walk position goes on from it. */
	b = (struct bytes){ 0 };
	start(&w, 0xfffffffau, 0);
	put_frame(&b, 8, H2_PING, 0, 0, "abcdefgh");
	put_frame(&b, 8, H2_PING, 0, 0, "ijklmnop");
	walk(&w, 0, w.at[0], b.p, 20);
	walk(&w, 0, w.at[0], b.p, 12);              /* old: nothing */
	walk(&w, 0, w.at[0] + 3, b.p + 3, 30);      /* overlaps 17 walked bytes */
	walk(&w, 0, w.at[0], b.p, (__u32)b.n);      /* all but the last byte old */
	check(w.c.pings == 2 && !w.c.desync && w.d[0].pos == w.at[0] + b.n,
	      "overlapping and repeated segments across 2^32: 2 PINGs, no desync");
	check(h2_at(&w.d[0], w.at[0], (__u32)b.n, &skip) == H2_AT_OLD &&
	      h2_at(&w.d[0], w.at[0] + (__u32)b.n + 1, 1, &skip) == H2_AT_GAP &&
	      h2_at(&w.d[0], w.at[0] + 5, (__u32)b.n, &skip) == H2_AT_OK && skip == b.n - 5 &&
	      h2_at(&w.d[0], w.at[0] + (__u32)b.n, 1, &skip) == H2_AT_OK && skip == 0,
	      "h2_at: old, gap, overlap (skip %u), at the position", skip);
	free(b.p);

	/* A direction never started has no position: nothing is walked, no desync. */
	{
		struct h2_dir d[2];
		struct h2_conn c;

		h2_conn_init(&c);
		h2_dir_init_unstarted(&d[0]);
		h2_dir_init_unstarted(&d[1]);
		n = h2_walk_mem(&c, d, 0, 0, (const __u8 *)preface, 24);
		check(!n && !c.desync && !c.flags && d[0].unit == H2_U_START &&
		      h2_at(&d[0], 0, 24, &skip) == H2_AT_IDLE,
		      "an unstarted direction: idle, nothing walked");
	}
}

/* A direction whose first bytes are not HTTP/2 (§3.4). */
static void test_not_h2(void)
{
#define S(x) { x, sizeof(x) - 1 }
	static const struct {
		const char *s;
		__u32 len;
	} clients[] = {
		S("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		S("POST /upload HTTP/1.1\r\nHost: x\r\n\r\n"),
		S("PUT /x HTTP/1.1\r\n\r\n"),
		S("PRI * HTTP/1.1\r\n\r\n"),
		S("PRI * HTTP/2.0\r\n\r\nSM\r\n\rX"),
		S("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
		S("HTTP/1.1 200 OK\r\n\r\n"),
		S("SSH-2.0-OpenSSH_9.2\r\n"),
	};
#undef S

	for (unsigned i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
		for (int split = 0; split < 2; split++) {
			struct walker w;
			const char *s = clients[i].s;
			__u32 len = clients[i].len, n = 0;

			w_init(&w, 0u - 1, 0u - 1);
			if (split)
				for (__u32 j = 0; j < len; j++)
					n |= send_b(&w, 0, s + j, 1);
			else
				n = send_b(&w, 0, s, len);
			check((n & H2_N_NOT_H2) && (w.d[0].flags & H2_D_NOT_H2) &&
			      h2_dir_stopped(&w.d[0]) && (w.c.flags & H2_C_NOT_H2) && !w.c.desync &&
			      !(w.c.flags & H2_C_H2) && !w.c.frames,
			      "first bytes \"%.14s...\"%s: NOT_H2, no desync", i == 5 ? "(TLS)" : s,
			      split ? " byte by byte" : "");
		}
	}

	/* The server's first frame must be SETTINGS, not an ACK. */
	{
		static const struct {
			const char *what;
			__u8 type, flags;
			__u32 len, stream;
		} firsts[] = {
			{ "WINDOW_UPDATE", H2_WINDOW_UPDATE, 0, 4, 0 },
			{ "SETTINGS ACK", H2_SETTINGS, H2_FLAG_ACK, 0, 0 },
			{ "HEADERS", H2_HEADERS, 4, 10, 1 },
			{ "SETTINGS of 7 bytes", H2_SETTINGS, 0, 7, 0 },
			{ "PING", H2_PING, 0, 8, 0 },
		};

		for (unsigned i = 0; i < sizeof(firsts) / sizeof(firsts[0]); i++) {
			for (int preface_seen = 0; preface_seen < 2; preface_seen++) {
				struct walker w;
				struct bytes b = { 0 };
				__u32 n;

				w_init(&w, 10, 20);
				if (preface_seen) {
					put(&b, preface, 24);
					flush(&w, 0, &b);
				}
				put_frame(&b, firsts[i].len, firsts[i].type, firsts[i].flags,
					  firsts[i].stream, NULL);
				n = flush(&w, 1, &b);
				if (preface_seen)
					check((n & H2_N_DESYNC) && w.c.desync == 1 &&
					      (w.d[1].flags & H2_D_DESYNC) &&
					      !(w.c.flags & H2_C_NOT_H2) && !w.c.frames,
					      "server's first frame %s after the client preface: "
					      "desync", firsts[i].what);
				else
					check((n & H2_N_NOT_H2) && !w.c.desync &&
					      (w.d[1].flags & H2_D_NOT_H2) &&
					      (w.c.flags & H2_C_NOT_H2) && !w.c.frames,
					      "server's first frame %s, no preface seen: NOT_H2",
					      firsts[i].what);
				free(b.p);
			}
		}
	}

	/* The client's first frame after the preface must be SETTINGS too. */
	{
		struct walker w;
		struct bytes b = { 0 };
		__u32 n;

		w_init(&w, 0, 0);
		put(&b, preface, 24);
		put_frame(&b, 10, H2_HEADERS, 0x04, 1, NULL);
		n = flush(&w, 0, &b);
		check((n & H2_N_PREFACE) && (n & H2_N_DESYNC) && w.c.desync == 1 && !w.c.streams,
		      "client's first frame HEADERS after its preface: desync, no stream");
		free(b.p);
	}
}

/* The building blocks, on their own. */
static void test_api(void)
{
	struct h2_dir d;
	__u32 n;
	int all = 1;

	h2_dir_init(&d, 42);
	check(d.pos == 42 && d.unit == H2_U_START && d.flags == H2_D_STARTED &&
	      d.max_frame == H2_DEFAULT_MAX_FRAME, "h2_dir_init: started at 42, default limit");
	check(h2_want(&d, 100, &n) == 1 && n == 1, "h2_want at the start: 1 byte, to copy");
	d.unit = H2_U_PREFACE;
	check(h2_want(&d, 100, &n) == 1 && n == H2_PIECE_MAX, "... the preface: 9 at a time");
	d.have = 18;
	check(h2_want(&d, 100, &n) == 1 && n == 6 && h2_want(&d, 4, &n) == 1 && n == 4,
	      "... its last 6 bytes (or what there is)");
	d.unit = H2_U_HDR;
	d.have = 2;
	check(h2_want(&d, 100, &n) == 1 && n == 7, "... the rest of a frame header: 7");
	d.unit = H2_U_SKIP;
	d.left = 100000;
	check(h2_want(&d, 3000, &n) == 0 && n == 3000, "... skipped payload: all there is, "
	      "no copy");
	d.left = 5;
	check(h2_want(&d, 3000, &n) == 0 && n == 5, "... but not past the frame");
	d.unit = H2_U_STOP;
	check(h2_want(&d, 3000, &n) == 0 && n == 0, "... a stopped direction: nothing");

	/* h2_frame_ok against the table of §6. */
	for (unsigned t = 0; t < 256; t++) {
		for (__u32 len = 0; len < 20; len++) {
			for (__u32 s = 0; s < 2; s++) {
				int want;

				switch (t) {
				case H2_DATA: case H2_HEADERS: case H2_CONTINUATION:
					want = s != 0; break;
				case H2_PRIORITY: want = s && len == 5; break;
				case H2_RST_STREAM: want = s && len == 4; break;
				case H2_SETTINGS: want = !s && len % 6 == 0; break;
				case H2_PUSH_PROMISE: want = s && len >= 4; break;
				case H2_PING: want = !s && len == 8; break;
				case H2_GOAWAY: want = !s && len >= 8; break;
				case H2_WINDOW_UPDATE: want = len == 4; break;
				default: want = 1;
				}
				if (!!h2_frame_ok(len, (__u8)t, 0, s, 16384) != want) {
					if (all)
						printf("   h2_frame_ok(%u, %u, 0, %u) != %d\n", len, t, s,
						       want);
					all = 0;
				}
				if (h2_frame_ok(16385 + len, (__u8)t, 0, s, 16384))
					all = 0;
			}
		}
	}
	check(all, "h2_frame_ok: every type 0..255, lengths 0..19, streams 0 and 1, as §6 "
	      "says; nothing over the limit");
}

int main(void)
{
	test_api();
	test_vectors();
	test_lengths();
	test_stream_ids();
	test_max_frame();
	test_extension();
	test_streams();
	test_goaway_rst_ping();
	test_goaway_debug();
	test_max_concurrent();
	test_desync_gap();
	test_not_h2();
	check(walks > 0 && !broken, "the walker's invariants held over %lu walks%s%s", walks,
	      broken ? ": " : "", broken_why);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
