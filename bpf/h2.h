/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The HTTP/2 frame walker, written once for three runtimes: the cgroup_skb
 * programs (h2c on the wire, bpf/tls.bpf.c), the TLS library uprobes (plaintext,
 * bpf/h2u.bpf.c) and ordinary C (pcap replay, tests, the fuzzer). Nothing here
 * needs libc.
 *
 * It follows one TCP connection, each direction on its own, as a byte stream
 * (RFC 9113 §3.4, §4.1):
 *
 *   client -> server: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (24 bytes), then frames
 *   server -> client: frames, the first of which is SETTINGS
 *
 *   frame: +-----------------------------------------------+
 *          |                 Length (24)                   |
 *          +---------------+---------------+---------------+
 *          |   Type (8)    |   Flags (8)   |
 *          +-+-------------+---------------+-------------------------------+
 *          |R|                 Stream Identifier (31)                      |
 *          +=+=============================================================+
 *          |                   Frame Payload (Length bytes)               ...
 *
 * and reads only the frame headers and the few payloads an observer of connection
 * reuse needs: GOAWAY (last stream id, error code; §6.8), RST_STREAM (error code;
 * §6.4), SETTINGS (MAX_CONCURRENT_STREAMS, MAX_FRAME_SIZE; §6.5.2) and PING (§6.7).
 * A new client stream is a HEADERS frame from the client (the side that sent the
 * preface) on an odd stream id above every one seen so far (§5.1.1: client streams
 * are odd and only ever increase; the server's HEADERS on them are responses).
 *
 * How bytes get in: the caller owns the loop over a buffer (a segment, a plaintext
 * buffer, a packet). At each step it asks h2_want how many of the bytes that remain
 * the walker takes next and whether it must see them; it copies that many (at most
 * H2_PIECE_MAX) to a small buffer when it must, and hands them to h2_feed. Skipped
 * payload bytes are never read, so a DATA frame costs one step whatever its size.
 * Positions are TCP sequence numbers (or stream offsets): h2_at says where in a
 * buffer that starts at `seq` the walker wants to go on, and tells retransmitted
 * bytes (already walked) from a gap (bytes never seen).
 *
 * What it never does: guess. A frame header that breaks the protocol's rules (a
 * length over the receiver's SETTINGS_MAX_FRAME_SIZE, a fixed-size frame of the
 * wrong size, a connection-level frame on a stream, a stream frame on stream 0), a
 * gap, or a walk that starts in the middle of a connection, stops that direction
 * for good and counts a desync. A direction whose first bytes are neither the
 * client preface nor a SETTINGS frame is not HTTP/2: it stops without a desync.
 *
 * In BPF: struct h2_dir and struct h2_conn live in socket storage or map values;
 * call h2_feed from a bpf_loop callback or a global function. Indexes into the
 * small buffers are masked (H2_BUF_MASK) so the verifier sees them in bounds.
 */
#ifndef CONNSCOPE_H2_H
#define CONNSCOPE_H2_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* ---- the protocol (RFC 9113) ------------------------------------------------------ */

#define H2_PREFACE_LEN 24            /* §3.4 */
#define H2_FRAME_HDR_LEN 9           /* §4.1 */
#define H2_DEFAULT_MAX_FRAME 16384   /* §6.5.2: SETTINGS_MAX_FRAME_SIZE initial value */
#define H2_MAX_MAX_FRAME 16777215    /* ... and its largest allowed value, 2^24 - 1 */

enum h2_frame_type {                 /* §6 */
	H2_DATA = 0,
	H2_HEADERS = 1,
	H2_PRIORITY = 2,
	H2_RST_STREAM = 3,
	H2_SETTINGS = 4,
	H2_PUSH_PROMISE = 5,
	H2_PING = 6,
	H2_GOAWAY = 7,
	H2_WINDOW_UPDATE = 8,
	H2_CONTINUATION = 9,
};

#define H2_FLAG_ACK 0x01             /* SETTINGS, PING */
#define H2_SETTINGS_MAX_CONCURRENT_STREAMS 0x3
#define H2_SETTINGS_MAX_FRAME_SIZE 0x5

/* Error codes (§7) that have names; others print as numbers. */
#define H2_NO_ERROR 0x0
#define H2_CANCEL 0x8
#define H2_ENHANCE_YOUR_CALM 0xb
#define H2_ERR_MAX_NAMED 0xd

/* ---- state -------------------------------------------------------------------------- */

#define H2_PIECE_MAX 9               /* bytes h2_feed takes per call at most */
#define H2_BUF_SIZE 16               /* h2_dir.buf: a power of two >= 2 * H2_PIECE_MAX - 1 */
#define H2_BUF_MASK (H2_BUF_SIZE - 1)
#define H2_UNSET 0xffffffffu         /* a SETTINGS value never announced */

/* What the next bytes of a direction are. */
enum h2_unit {
	H2_U_START = 0,    /* the direction's first byte: preface or a SETTINGS frame */
	H2_U_PREFACE = 1,  /* the client preface, compared byte by byte */
	H2_U_HDR = 2,      /* a frame header */
	H2_U_GOAWAY = 3,   /* GOAWAY's first 8 payload bytes */
	H2_U_RST = 4,      /* RST_STREAM's 4 payload bytes */
	H2_U_SETTING = 5,  /* one 6-byte SETTINGS entry */
	H2_U_SKIP = 6,     /* payload bytes nobody reads */
	H2_U_STOP = 7,     /* not followed any more (desync, or not HTTP/2) */
	H2_U_DEBUG = 8,    /* GOAWAY's debug data, up to H2_DEBUG_MAX bytes kept */
};

/* GOAWAY debug data kept (§6.8: opaque, "for diagnostic purposes only"); the rest of
 * a longer one is skipped. grpc-go's "too_many_pings" fits. */
#define H2_DEBUG_MAX 32
#define H2_DEBUG_PIECE 8             /* bytes of it taken per unit */

/* h2_dir.flags */
#define H2_D_FIRST_FRAME 0x01  /* the next header is the direction's first frame */
#define H2_D_DESYNC 0x02       /* stopped: a boundary was lost */
#define H2_D_NOT_H2 0x04       /* stopped: these bytes are not HTTP/2 */
#define H2_D_STARTED 0x08      /* pos is set: the walk has a place in the stream */

/* One direction of a connection: where its next unit starts and what it is. */
struct h2_dir {
	__u32 pos;        /* stream position of the next byte wanted (TCP sequence number) */
	__u32 left;       /* payload bytes of the current frame not yet consumed */
	__u32 max_frame;  /* the largest frame this direction may send (receiver's setting) */
	__u8 unit;        /* enum h2_unit */
	__u8 have;        /* bytes of the unit collected in buf */
	__u8 flags;       /* H2_D_* */
	__u8 ftype;       /* the type of the frame whose payload is under way */
	__u8 buf[H2_BUF_SIZE];
	/* Counted here, per direction, and summed into h2_conn by h2_conn_totals: the
	 * two directions of a socket are walked on two CPUs, and a count both wrote
	 * would move its cache line between them at every frame. */
	__u32 frames;        /* frame headers this direction sent */
	__u32 streams;       /* client streams it opened (the client's direction) */
	__u32 max_stream_id; /* the highest of them */
	__u32 _pad;
};
_Static_assert(sizeof(struct h2_dir) == 48, "h2_dir layout");

/* Directions are indexed by who sends: 0 and 1 are the caller's (egress/ingress,
 * write/read, client/server in replay); client_dir says which one is the client's. */
#define H2_DIR_NONE 0xff

/* h2_conn.flags */
#define H2_C_H2 0x01           /* a client preface was seen: this is HTTP/2 */
#define H2_C_NOT_H2 0x02       /* a direction's first bytes were not HTTP/2 */
#define H2_C_MIDWAY 0x04       /* joined mid-connection: frames look like HTTP/2, but the
				  boundaries (and every count) are unknown */
#define H2_C_JOINED 0x08       /* replay: joined mid-connection at a frame boundary; the
				  counts are of what the capture shows from there on */

/* What one connection did, counted by the walker. 64 bytes. */
struct h2_conn {
	/* streams, max_stream_id and frames: the directions' counts, summed by
	 * h2_conn_totals for a report (the walker counts in struct h2_dir). */
	__u32 streams;            /* client streams opened: HEADERS on a new odd stream id */
	__u32 max_stream_id;      /* the highest of them */
	__u32 goaway[2];          /* GOAWAY frames sent, per direction */
	__u32 goaway_last_id;     /* of the latest GOAWAY */
	__u32 goaway_error;       /* of the latest GOAWAY */
	__u32 rst_stream[2];      /* RST_STREAM frames sent, per direction */
	__u32 rst_error;          /* of the latest RST_STREAM */
	__u32 max_concurrent[2];  /* SETTINGS_MAX_CONCURRENT_STREAMS each sender announced
				     last (H2_UNSET: never) */
	__u32 pings;              /* PING frames that are not acknowledgements */
	__u32 frames;             /* frame headers walked, both directions */
	__u16 desync;             /* directions stopped by a lost boundary (0..2) */
	__u8 client_dir;          /* 0 or 1: the direction that sent the preface; H2_DIR_NONE */
	__u8 goaway_dir;          /* who sent the latest GOAWAY; H2_DIR_NONE */
	__u8 flags;               /* H2_C_* */
	__u8 goaway_debug_len;    /* bytes of the latest GOAWAY's debug data kept */
	__u8 goaway_debug[H2_DEBUG_MAX]; /* ... and those bytes, as sent (not checked) */
	__u8 _pad;
	__u16 rst_cancel[2];      /* RST_STREAM frames with CANCEL sent, per direction (a
				     call given up: a deadline, or the caller gone) */
};
_Static_assert(sizeof(struct h2_conn) == 96, "h2_conn layout");

/* What h2_feed saw, for the caller to report (a bit set; OR them over a buffer). */
#define H2_N_PREFACE 0x01     /* the client preface completed: the connection is HTTP/2 */
#define H2_N_STREAM 0x02      /* a new client stream */
#define H2_N_GOAWAY 0x04
#define H2_N_RST 0x08
#define H2_N_DESYNC 0x10      /* this direction lost its boundary now */
#define H2_N_NOT_H2 0x20      /* this direction turned out not to be HTTP/2 */
#define H2_N_SETTINGS 0x40    /* MAX_CONCURRENT_STREAMS announced */

/* The directions' counts into c, as a report carries them. */
static __always_inline void h2_conn_totals(struct h2_conn *c, const struct h2_dir *d0,
					   const struct h2_dir *d1)
{
	c->frames = d0->frames + d1->frames;
	c->streams = d0->streams + d1->streams;
	c->max_stream_id = d0->max_stream_id > d1->max_stream_id ? d0->max_stream_id
								  : d1->max_stream_id;
}

static __always_inline void h2_conn_init(struct h2_conn *c)
{
	__builtin_memset(c, 0, sizeof(*c));
	c->max_concurrent[0] = c->max_concurrent[1] = H2_UNSET;
	c->client_dir = H2_DIR_NONE;
	c->goaway_dir = H2_DIR_NONE;
}

/* A direction whose first byte has stream position pos. */
static __always_inline void h2_dir_init(struct h2_dir *d, __u32 pos)
{
	__builtin_memset(d, 0, sizeof(*d));
	d->pos = pos;
	d->max_frame = H2_DEFAULT_MAX_FRAME;
	d->unit = H2_U_START;
	d->flags = H2_D_STARTED;
}

/* A direction not seen from its first byte: nothing is known, nothing is walked. */
static __always_inline void h2_dir_init_unstarted(struct h2_dir *d)
{
	__builtin_memset(d, 0, sizeof(*d));
	d->max_frame = H2_DEFAULT_MAX_FRAME;
	d->unit = H2_U_START;
}

static __always_inline int h2_dir_stopped(const struct h2_dir *d)
{
	return d->unit == H2_U_STOP;
}

/* Stop a direction because its boundary is lost (joined mid-stream, a gap, a bad
 * header). Counted once per direction. */
static __always_inline __u32 h2_desync(struct h2_conn *c, struct h2_dir *d)
{
	if (d->unit == H2_U_STOP)
		return 0;
	d->unit = H2_U_STOP;
	d->flags |= H2_D_DESYNC;
	c->desync++;
	return H2_N_DESYNC;
}

static __always_inline __u32 h2__not_h2(struct h2_conn *c, struct h2_dir *d)
{
	d->unit = H2_U_STOP;
	d->flags |= H2_D_NOT_H2;
	c->flags |= H2_C_NOT_H2;
	return H2_N_NOT_H2;
}

/* ---- positions ---------------------------------------------------------------------- */

/* TCP sequence arithmetic (RFC 9293 §3.4): compare by signed 32-bit difference. */
static __always_inline __s32 h2_seq_diff(__u32 a, __u32 b)
{
	return (__s32)(a - b);
}

enum h2_at_status {
	H2_AT_OK = 0,    /* *skip: bytes of the buffer to pass over (already walked) */
	H2_AT_OLD = 1,   /* the whole buffer was walked before (a retransmission) */
	H2_AT_GAP = 2,   /* the buffer starts after bytes never seen */
	H2_AT_IDLE = 3,  /* the direction is stopped, or has no position yet */
};

/* Where, in a buffer of len bytes starting at stream position seq, the walk goes on. */
static __always_inline int h2_at(const struct h2_dir *d, __u32 seq, __u32 len, __u32 *skip)
{
	__s32 delta;

	*skip = 0;
	if (d->unit == H2_U_STOP || !(d->flags & H2_D_STARTED))
		return H2_AT_IDLE;
	delta = h2_seq_diff(d->pos, seq);
	if (delta < 0)
		return H2_AT_GAP;
	if ((__u32)delta >= len)
		return H2_AT_OLD;
	*skip = (__u32)delta;
	return H2_AT_OK;
}

/*
 * The next step over `avail` (> 0) bytes at the walk position: how many bytes it
 * takes (1 .. min(avail, H2_PIECE_MAX) for a unit, up to avail for skipped
 * payload). Returns 1 if the caller must copy those bytes for h2_feed, 0 if
 * h2_feed only needs the count. A stopped direction takes nothing (*n = 0).
 */
static __always_inline int h2_want(const struct h2_dir *d, __u32 avail, __u32 *n)
{
	__u32 need;

	*n = 0;
	switch (d->unit) {
	case H2_U_STOP:
		return 0;
	case H2_U_SKIP:
		*n = d->left < avail ? d->left : avail;
		return 0;
	case H2_U_START:
		need = 1;  /* one byte decides: 'P' starts the client preface */
		break;
	case H2_U_PREFACE:
		need = H2_PREFACE_LEN - d->have;
		break;
	case H2_U_HDR:
		need = H2_FRAME_HDR_LEN - d->have;
		break;
	case H2_U_GOAWAY:
		need = 8 - d->have;
		break;
	case H2_U_RST:
		need = 4 - d->have;
		break;
	case H2_U_DEBUG:
		need = (d->left < H2_DEBUG_PIECE ? d->left : H2_DEBUG_PIECE) - d->have;
		break;
	default: /* H2_U_SETTING */
		need = 6 - d->have;
		break;
	}
	if (need > H2_PIECE_MAX)
		need = H2_PIECE_MAX;
	*n = need < avail ? need : avail;
	return 1;
}

static __always_inline __u32 h2__be24(const __u8 *b)
{
	return (__u32)b[0] << 16 | (__u32)b[1] << 8 | b[2];
}

static __always_inline __u32 h2__be32(const __u8 *b)
{
	return (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
}

/* 4 bytes at b, big-endian, read as one word where the target allows it (b is map
 * memory in BPF: never the stack, whose accesses must be aligned). */
static __always_inline __u32 h2__load_be32(const __u8 *b)
{
	__u32 v;

#ifdef __bpf__
	v = *(const __u32 *)b;
#else
	__builtin_memcpy(&v, b, sizeof(v));
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

/* The byte of the client preface at i (0 <= i < 24). */
static __always_inline __u8 h2__preface_at(__u32 i)
{
	/* "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": a switch, not a string, so BPF needs
	 * no read-only data for it. */
	switch (i) {
	case 0: return 'P';
	case 1: return 'R';
	case 2: return 'I';
	case 3: return ' ';
	case 4: return '*';
	case 5: return ' ';
	case 6: return 'H';
	case 7: return 'T';
	case 8: return 'T';
	case 9: return 'P';
	case 10: return '/';
	case 11: return '2';
	case 12: return '.';
	case 13: return '0';
	case 14: case 16: case 20: case 22: return '\r';
	case 15: case 17: case 21: case 23: return '\n';
	case 18: return 'S';
	default: return 'M'; /* 19 */
	}
}

/*
 * Is this frame header possible here? (§4.2 sizes, §6 per-type rules.) A header
 * that is not can only mean the walk lost its place.
 */
static __always_inline int h2_frame_ok(__u32 len, __u8 type, __u8 flags, __u32 stream,
				       __u32 max_frame)
{
	if (len > max_frame)
		return 0;
	switch (type) {
	case H2_DATA:
	case H2_HEADERS:
	case H2_CONTINUATION:
		return stream != 0;
	case H2_PRIORITY:
		return stream != 0 && len == 5;
	case H2_RST_STREAM:
		return stream != 0 && len == 4;
	case H2_SETTINGS:
		return stream == 0 && len % 6 == 0 && (!(flags & H2_FLAG_ACK) || len == 0);
	case H2_PUSH_PROMISE:
		return stream != 0 && len >= 4;
	case H2_PING:
		return stream == 0 && len == 8;
	case H2_GOAWAY:
		return stream == 0 && len >= 8;
	case H2_WINDOW_UPDATE:
		return len == 4;
	default:
		return 1; /* extension frames are ignored, not errors (§4.1, §5.5) */
	}
}

/* Is this the start of an HTTP/2 direction? The client preface's first 6 bytes,
 * or a SETTINGS frame header that is not an ACK (§3.4: the server's preface). The
 * live programs and replay decide with it which connections to walk. */
static __always_inline int h2_looks_like_start(const __u8 *h, __u32 avail)
{
	if (avail >= 6 && h[0] == 'P' && h[1] == 'R' && h[2] == 'I' && h[3] == ' ' &&
	    h[4] == '*' && h[5] == ' ')
		return 1;
	return avail >= H2_FRAME_HDR_LEN && h[3] == H2_SETTINGS && !(h[4] & H2_FLAG_ACK) &&
	       !h[5] && !h[6] && !h[7] && !h[8] &&
	       ((__u32)h[0] << 16 | (__u32)h[1] << 8 | h[2]) % 6 == 0 &&
	       ((__u32)h[0] << 16 | (__u32)h[1] << 8 | h[2]) <= H2_DEFAULT_MAX_FRAME;
}

/* Decide what follows a frame header: the unit that reads its payload. */
static __always_inline void h2__after_header(struct h2_dir *d, __u32 len)
{
	d->have = 0;
	d->left = len;
	if (len == 0) {
		d->unit = H2_U_HDR;
		return;
	}
	switch (d->ftype) {
	case H2_GOAWAY:
		d->unit = H2_U_GOAWAY;
		break;
	case H2_RST_STREAM:
		d->unit = H2_U_RST;
		break;
	case H2_SETTINGS:
		d->unit = H2_U_SETTING;
		break;
	default:
		d->unit = H2_U_SKIP;
	}
}

/* A complete frame header in b[0..9), sent by direction dir. */
static __always_inline __u32 h2__header(struct h2_conn *c, struct h2_dir *d, __u32 dir,
					const __u8 *b)
{
	__u32 len = h2__be24(b);
	__u8 type = b[3], flags = b[4];
	__u32 stream = h2__be32(b + 5) & 0x7fffffff;
	__u32 notes = 0;

	if (d->flags & H2_D_FIRST_FRAME) {
		d->flags &= ~H2_D_FIRST_FRAME;
		/* The server's preface is a SETTINGS frame (§3.4). Anything else
		 * first: not HTTP/2 — unless the other side already proved it is,
		 * then this side lost its place. */
		if (type != H2_SETTINGS || (flags & H2_FLAG_ACK) ||
		    !h2_frame_ok(len, type, flags, stream, d->max_frame)) {
			if (c->flags & H2_C_H2)
				return h2_desync(c, d);
			return h2__not_h2(c, d);
		}
	} else if (!h2_frame_ok(len, type, flags, stream, d->max_frame)) {
		return h2_desync(c, d);
	}
	d->frames++;
	d->ftype = type;
	if (type == H2_HEADERS && dir == c->client_dir && (stream & 1) &&
	    stream > d->max_stream_id) {
		d->max_stream_id = stream;
		d->streams++;
		notes |= H2_N_STREAM;
	} else if (type == H2_PING && !(flags & H2_FLAG_ACK)) {
		c->pings++;
	}
	h2__after_header(d, len);
	return notes;
}

/* A complete payload unit in d->buf; d->left counts its bytes still. */
static __always_inline __u32 h2__payload(struct h2_conn *c, struct h2_dir *d,
					 struct h2_dir *other, __u32 dir)
{
	const __u8 *b = d->buf;
	__u32 notes = 0, n = d->have;

	d->left -= n;
	switch (d->unit) {
	case H2_U_GOAWAY:
		c->goaway[dir & 1]++;
		c->goaway_last_id = h2__be32(b) & 0x7fffffff;
		c->goaway_error = h2__be32(b + 4);
		c->goaway_dir = (__u8)dir;
		c->goaway_debug_len = 0;
		if (d->left) {
			/* Its debug data first: the note goes with it. */
			d->have = 0;
			d->unit = H2_U_DEBUG;
			return 0;
		}
		notes = H2_N_GOAWAY;
		break;
	case H2_U_DEBUG: {
		__u32 i, at = c->goaway_debug_len;

		for (i = 0; i < H2_DEBUG_PIECE; i++) {
			__u32 k = at + i;

			if (i >= n || k >= H2_DEBUG_MAX)
				break;
			c->goaway_debug[k] = b[i];
		}
		c->goaway_debug_len = (__u8)(at + i);
		if (d->left && c->goaway_debug_len < H2_DEBUG_MAX) {
			d->have = 0;
			return 0;  /* the next piece */
		}
		notes = H2_N_GOAWAY;
		break;
	}
	case H2_U_RST:
		c->rst_stream[dir & 1]++;
		c->rst_error = h2__be32(b);
		if (c->rst_error == H2_CANCEL)
			c->rst_cancel[dir & 1]++;
		notes = H2_N_RST;
		break;
	case H2_U_SETTING: {
		__u16 id = (__u16)((__u16)b[0] << 8 | b[1]);
		__u32 v = h2__be32(b + 2);

		if (id == H2_SETTINGS_MAX_CONCURRENT_STREAMS) {
			c->max_concurrent[dir & 1] = v;
			notes = H2_N_SETTINGS;
		} else if (id == H2_SETTINGS_MAX_FRAME_SIZE && v >= H2_DEFAULT_MAX_FRAME &&
			   v <= H2_MAX_MAX_FRAME && other) {
			/* The sender will receive frames this large: the other
			 * direction may send them. */
			other->max_frame = v;
		}
		if (d->left >= 6) {
			d->have = 0;
			return notes;  /* the next entry */
		}
		break;
	}
	default:
		break;
	}
	d->have = 0;
	d->unit = d->left ? H2_U_SKIP : H2_U_HDR;
	return notes;
}

/*
 * A whole frame header at hand where one is due (unit H2_U_HDR, nothing of it
 * collected yet): what h2_feed does with its 9 bytes, and then with the payload
 * bytes that follow it, avail of them, when nobody reads them. One call per frame
 * instead of two steps. Returns the bytes taken (9, plus those skipped); the
 * header's notes are ORed into *notes. A payload that is read (GOAWAY,
 * RST_STREAM, SETTINGS) is left to h2_feed, unit by unit.
 */
static __always_inline __u32 h2_take_frame(struct h2_conn *c, struct h2_dir *d, __u32 dir,
					   const __u8 *hdr, __u32 avail, __u32 *notes)
{
	__u32 n;

	d->pos += H2_FRAME_HDR_LEN;
	*notes |= h2__header(c, d, dir, hdr);
	if (d->unit != H2_U_SKIP)
		return H2_FRAME_HDR_LEN;
	n = d->left < avail ? d->left : avail;
	d->left -= n;
	d->pos += n;
	if (!d->left)
		d->unit = H2_U_HDR;
	return H2_FRAME_HDR_LEN + n;
}

/*
 * The common case at once: a run of frames whose payload nobody reads (DATA,
 * HEADERS, CONTINUATION, WINDOW_UPDATE, PRIORITY) where a header is due. What
 * h2_take_frame does for each of them, with the walk's state in registers and
 * written back once. win[rel..) is the walk position, win_len the bytes win holds
 * (indexes masked with mask: the caller's window size - 1, or ~0), avail the
 * buffer's bytes from the position, max the frames at most (a bound for the
 * verifier). A payload that runs past win's end or the buffer's is skipped from
 * there (unit H2_U_SKIP). Stops before any other frame, a header not whole in win,
 * or one that breaks a rule: h2_take_frame or h2_feed takes those. Returns the
 * bytes taken; a new client stream ORs H2_N_STREAM into *notes.
 */
static __always_inline __u32 h2_take_frames(struct h2_conn *c, struct h2_dir *d, __u32 dir,
					    const __u8 *win, __u32 rel, __u32 win_len,
					    __u32 avail, __u32 mask, __u32 max, __u32 *notes)
{
	/* Few live values, all 64-bit: BPF has ten registers, and a 32-bit value used
	 * as an index costs a zero-extension. at and end are places in win (which
	 * never wrap); i is also the frames taken; max_id is above every stream id
	 * unless this is the client's direction, whose HEADERS alone open streams. */
	__u64 at = rel, end = (__u64)rel + avail, i, w0 = 0, streams = 0;
	__u64 max_frame = d->max_frame, max_id = ~0ull;

	if (d->unit != H2_U_HDR || d->have || (d->flags & H2_D_FIRST_FRAME))
		return 0;
	if (end > win_len)
		end = win_len;
	if (dir == c->client_dir)
		max_id = d->max_stream_id;
	for (i = 0; i < max; i++) {
		const __u8 *b;
		__u64 len, stream;

		if (at + H2_FRAME_HDR_LEN > end)
			break;
		b = win + (at & mask);
		w0 = h2__load_be32(b);  /* length (24 bits), type */
		stream = h2__load_be32(b + 5) & 0x7fffffff;
		len = w0 >> 8;
		if (len > max_frame)
			break;
		switch (w0 & 0xff) {
		case H2_HEADERS:
			if (!stream)
				goto out;
			if ((stream & 1) && stream > max_id) {
				max_id = stream;
				streams++;
			}
			break;
		case H2_DATA:
		case H2_CONTINUATION:
			if (!stream)
				goto out;
			break;
		case H2_WINDOW_UPDATE:
			if (len != 4)
				goto out;
			break;
		case H2_PRIORITY:
			if (!stream || len != 5)
				goto out;
			break;
		default:
			goto out;
		}
		at += H2_FRAME_HDR_LEN + len;
		if (at > end) {
			/* Its payload goes on past what is at hand: skipped from there. */
			d->ftype = w0 & 0xff;
			d->left = at - end;
			d->unit = H2_U_SKIP;
			at = end;
			i++;
			break;
		}
	}
out:
	if (!i)
		return 0;
	d->pos += at - rel;
	d->frames += i;
	if (streams) {
		d->streams += streams;
		d->max_stream_id = max_id;
		*notes |= H2_N_STREAM;
	}
	return at - rel;
}

/*
 * Hand the walker the n bytes h2_want asked for (in[0..n), or only the count when
 * it said it needs no copy). dir (0 or 1) is this direction's index; other is the
 * opposite direction's state (may be NULL: SETTINGS_MAX_FRAME_SIZE is then not
 * applied). Returns H2_N_* notes.
 */
static __always_inline __u32 h2_feed(struct h2_conn *c, struct h2_dir *d, struct h2_dir *other,
				     __u32 dir, const __u8 *in, __u32 n)
{
	__u32 i, need;

	if (d->unit == H2_U_STOP || n == 0)
		return 0;
	d->pos += n;
	if (d->unit == H2_U_SKIP) {
		d->left -= n <= d->left ? n : d->left;
		if (!d->left)
			d->unit = H2_U_HDR;
		return 0;
	}
	if (n > H2_PIECE_MAX)
		n = H2_PIECE_MAX;
	if (d->unit == H2_U_START) {
		if (in[0] == 'P') {
			d->unit = H2_U_PREFACE;
		} else {
			/* Frames from the first byte: the server side. */
			d->unit = H2_U_HDR;
			d->flags |= H2_D_FIRST_FRAME;
		}
		d->have = 0;
	}
	if (d->unit == H2_U_PREFACE) {
		for (i = 0; i < H2_PIECE_MAX; i++) {
			if (i >= n)
				break;
			if (in[i] != h2__preface_at((d->have + i) & 31))
				return h2__not_h2(c, d);
		}
		d->have += (__u8)n;
		if (d->have < H2_PREFACE_LEN)
			return 0;
		d->have = 0;
		d->unit = H2_U_HDR;
		d->flags |= H2_D_FIRST_FRAME;  /* the client's SETTINGS follows (§3.4) */
		c->flags |= H2_C_H2;
		c->client_dir = (__u8)dir;
		return H2_N_PREFACE;
	}
	for (i = 0; i < H2_PIECE_MAX; i++) {
		if (i >= n)
			break;
		d->buf[(d->have + i) & H2_BUF_MASK] = in[i];
	}
	d->have += (__u8)n;
	switch (d->unit) {
	case H2_U_HDR:
		need = H2_FRAME_HDR_LEN;
		break;
	case H2_U_GOAWAY:
		need = 8;
		break;
	case H2_U_RST:
		need = 4;
		break;
	case H2_U_DEBUG:
		need = d->left < H2_DEBUG_PIECE ? d->left : H2_DEBUG_PIECE;
		break;
	default:
		need = 6;
		break;
	}
	if (d->have < need)
		return 0;
	if (d->unit == H2_U_HDR)
		return h2__header(c, d, dir, d->buf);
	return h2__payload(c, d, other, dir);
}

/*
 * The plain-memory driver (user space; BPF has its own loops over skbs and user
 * memory): walk buf[0..len), which starts at stream position seq, for direction
 * dir. Returns the OR of the notes; a gap or a position never set desyncs (a gap)
 * or does nothing (not started). c's counts are the directions' totals after it.
 */
static inline __u32 h2_walk_mem(struct h2_conn *c, struct h2_dir *dirs, __u32 dir, __u32 seq,
				const __u8 *buf, __u32 len)
{
	struct h2_dir *d = &dirs[dir & 1], *other = &dirs[(dir & 1) ^ 1];
	__u32 off, n, notes = 0;
	int st = h2_at(d, seq, len, &off);

	if (st == H2_AT_GAP)
		notes = h2_desync(c, d);
	if (st != H2_AT_OK)
		len = 0;
	while (off < len && !h2_dir_stopped(d)) {
		/* A whole frame header at hand: the frame in one go (replay walks
		 * millions of small frames). */
		if (d->unit == H2_U_HDR && !d->have && len - off >= H2_FRAME_HDR_LEN) {
			__u32 n2 = h2_take_frames(c, d, dir, buf, off, len, len - off, ~0u, ~0u,
						  &notes);

			off += n2 ? n2 : h2_take_frame(c, d, dir, buf + off,
						       len - off - H2_FRAME_HDR_LEN, &notes);
			continue;
		}
		h2_want(d, len - off, &n);
		if (!n)
			break;
		notes |= h2_feed(c, d, other, dir, buf + off, n);
		off += n;
	}
	h2_conn_totals(c, &dirs[0], &dirs[1]);
	return notes;
}

/* ---- names ----------------------------------------------------------------------------- */

/* §7 error code names; NULL for codes without one. */
static inline const char *h2_error_name(__u32 code)
{
	switch (code) {
	case 0x0: return "NO_ERROR";
	case 0x1: return "PROTOCOL_ERROR";
	case 0x2: return "INTERNAL_ERROR";
	case 0x3: return "FLOW_CONTROL_ERROR";
	case 0x4: return "SETTINGS_TIMEOUT";
	case 0x5: return "STREAM_CLOSED";
	case 0x6: return "FRAME_SIZE_ERROR";
	case 0x7: return "REFUSED_STREAM";
	case 0x8: return "CANCEL";
	case 0x9: return "COMPRESSION_ERROR";
	case 0xa: return "CONNECT_ERROR";
	case 0xb: return "ENHANCE_YOUR_CALM";
	case 0xc: return "INADEQUATE_SECURITY";
	case 0xd: return "HTTP_1_1_REQUIRED";
	default: return 0;
	}
}

#endif
