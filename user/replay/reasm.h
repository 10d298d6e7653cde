/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * One direction of one TCP connection, put back in order for the parsers (replay).
 *
 * Bytes are handed on in sequence order, each byte once: a segment that starts
 * where the stream is goes straight through (no copy); retransmitted and
 * overlapping bytes are cut off (the first copy seen wins); a segment from beyond
 * the next byte wanted waits in a bounded out-of-order buffer until the hole is
 * filled. A hole that is not filled (the capture missed the bytes) becomes a gap:
 * it is reported, never papered over, and the stream goes on after it. A hole
 * turns into a gap when the buffer would pass its bound, when the caller flushes
 * (FIN, RST, end of capture), or when the peer has acknowledged past the hole and
 * REASM_GAP_PACKETS more segments of this direction came without filling it.
 *
 * Memory: at most REASM_MAX_BYTES of waiting bytes and REASM_MAX_SEGS segments per
 * direction, so at most twice that per open flow, whatever the file size.
 */
#ifndef CONNSCOPE_REASM_H
#define CONNSCOPE_REASM_H

#include <stdbool.h>
#include <stdint.h>

#define REASM_MAX_BYTES (256 * 1024)
#define REASM_MAX_SEGS 512
#define REASM_GAP_PACKETS 64

/* In-order bytes: seq is the sequence number of data[0]. */
typedef void (*reasm_data_fn)(void *ctx, uint32_t seq, const uint8_t *data, uint32_t len);
/* A gap: the bytes [from, to) were never seen; the stream goes on at `to`. */
typedef void (*reasm_gap_fn)(void *ctx, uint32_t from, uint32_t to);

struct reasm_seg;

struct reasm {
	uint32_t next;            /* sequence number of the next byte to hand on */
	bool started;
	uint32_t nsegs, bytes;    /* waiting out of order */
	uint32_t since_acked;     /* segments since the peer acknowledged past `next` */
	bool acked_past;
	struct reasm_seg *segs;   /* sorted by seq, non-overlapping */
	/* counters */
	uint64_t delivered, retrans_bytes, overlap_bytes, ooo_segs, gaps, gap_bytes, dropped;
};

/* Start at sequence number `isn_plus_1` (the first payload byte). */
void reasm_init(struct reasm *r, uint32_t isn_plus_1);
/* Start at the first segment seen (the connection began before the capture). */
void reasm_init_unstarted(struct reasm *r);
/* A segment's payload. Calls data (and gap) zero or more times. */
void reasm_segment(struct reasm *r, uint32_t seq, const uint8_t *data, uint32_t len,
		   reasm_data_fn data_fn, reasm_gap_fn gap_fn, void *ctx);
/* The other direction acknowledged everything before `ack`. */
void reasm_ack(struct reasm *r, uint32_t ack, reasm_data_fn data_fn, reasm_gap_fn gap_fn,
	       void *ctx);
/* Hand on everything that waits, reporting the holes before it as gaps. */
void reasm_flush(struct reasm *r, reasm_data_fn data_fn, reasm_gap_fn gap_fn, void *ctx);
/* Free what waits (no callbacks). */
void reasm_free(struct reasm *r);

#endif
