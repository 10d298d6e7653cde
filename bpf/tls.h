/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The TLS wire parser, written once for two runtimes: it compiles inside a BPF
 * program (clang -target bpf, with vmlinux.h) and as ordinary C (user space: pcap
 * replay, tests, the fuzzer). Nothing here needs libc.
 *
 * What it reads:
 *   - the record layer header (RFC 8446 §5.1, RFC 5246 §6.2), and a cheap "is this
 *     the first record of a TLS client?" test for the first payload of a connection;
 *   - the handshake message header, and the cleartext messages an observer can use:
 *     ClientHello (SNI, ALPN offered, highest version offered, resumption flags),
 *     ServerHello (negotiated version, HelloRetryRequest, ALPN selected in TLS 1.2),
 *     Alert;
 *   - record boundaries in a TCP byte stream, segment by segment (tls_walk), and the
 *     rule that says when a handshake is complete or has failed (tls_hs_step).
 *
 * Rules every function keeps, because the bytes come from the network:
 *   - Bytes are read only through struct tls_cur, whose getters check the bytes
 *     that remain before every read and never cast packet bytes to a struct.
 *   - TLS_TRUNCATED means "the bytes given end before the message does; more bytes
 *     may make it parse". TLS_INVALID means "this is not TLS, or it is malformed";
 *     more bytes cannot help. Inside a message whose declared length is present,
 *     an inner length that overruns it is INVALID, never TRUNCATED.
 *   - Every loop has a constant bound (the BPF verifier must see it end). When a
 *     list is longer than the bound, the parser says so with a flag and stops.
 *   - On any status other than TLS_OK the output structure holds no promise.
 *
 * In BPF:
 *   - A buffer handed to a parser must be the start of memory at least TLS_BUF_MAX
 *     bytes long (a per-CPU array value), even if fewer bytes are valid: each read
 *     masks its offset with TLS_BUF_MAX - 1 (see struct tls_cur), which is what the
 *     verifier uses to prove it in bounds. Pass offsets into that buffer (the *_at
 *     parsers, tls_hs_step's body_off), never a pointer into its middle.
 *   - Output structures are large (struct tls_client_hello is 400 bytes): keep them
 *     in map memory, not on the 512-byte stack.
 *   - Call tls_parse_client_hello_at, tls_parse_server_hello_at, tls_walk and
 *     tls_hs_step each from its own global function (non-static, __noinline), which
 *     the verifier checks once, whatever state its callers are in. Inlined one
 *     after the other into one program, each multiplies the states the next is
 *     walked in, and the sum passes 1M instructions. Measured on 6.18 (clang 14),
 *     instructions processed per global function: ClientHello 86K, ServerHello
 *     24K, tls_hs_step 24K, tls_walk 7K, the record header, alert and
 *     handshake-header parsers and tls_looks_like_client_hello under 1K together.
 *   - "Verifier note" comments below say why code is shaped the way it is; keep
 *     them in mind before "simplifying" it.
 */
#ifndef CONNSCOPE_TLS_H
#define CONNSCOPE_TLS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* ---- limits and constants ---------------------------------------------------- */

/*
 * The most bytes any parser looks at in one buffer. A handshake message longer than
 * this (header included) is TLS_TOO_LONG; tls_walk looks at no more than this many
 * bytes of a segment per call. Both runtimes use the same limit, so they agree.
 */
#ifndef TLS_BUF_MAX
#define TLS_BUF_MAX 16384
#endif

#define TLS_REC_HDR_LEN 5
/* TLSPlaintext is at most 2^14; TLSCiphertext 2^14 + 256 in TLS 1.3 (RFC 8446
 * §5.2) and 2^14 + 2048 in TLS 1.2 (RFC 5246 §6.2.3). Accept the larger. */
#define TLS_REC_MAX_LEN (16384 + 2048)
#define TLS_HS_HDR_LEN 4

#define TLS_SNI_MAX 256        /* host name + NUL; DNS names are at most 253 */
#define TLS_ALPN_MAX 128       /* offered protocols, comma-joined, + NUL */
#define TLS_ALPN_SEL_MAX 32    /* the selected protocol + NUL */

#define TLS_EXT_MAX 64         /* extensions examined per hello */
#define TLS_ALPN_ENTRIES_MAX 16
#define TLS_VERSIONS_MAX 32    /* supported_versions entries examined */
#define TLS_SNI_ENTRIES_MAX 4  /* server_name_list entries examined */
#define TLS_WALK_MAX 8         /* record headers reported per tls_walk call */

/* Parser status. */
enum tls_status {
	TLS_OK = 0,
	TLS_TRUNCATED = 1, /* the buffer ends before the message: need more bytes */
	TLS_INVALID = 2,   /* not TLS, or malformed */
	TLS_TOO_LONG = 3,  /* well-formed so far, but longer than TLS_BUF_MAX */
};

/* ContentType (RFC 8446 §5.1; heartbeat: RFC 6520). */
enum tls_content_type {
	TLS_CT_CHANGE_CIPHER_SPEC = 20,
	TLS_CT_ALERT = 21,
	TLS_CT_HANDSHAKE = 22,
	TLS_CT_APPLICATION_DATA = 23,
	TLS_CT_HEARTBEAT = 24,
};

/* HandshakeType (RFC 8446 §4), the ones this file names. */
enum tls_hs_type {
	TLS_HS_CLIENT_HELLO = 1,
	TLS_HS_SERVER_HELLO = 2,
	TLS_HS_NEW_SESSION_TICKET = 4,
	TLS_HS_CERTIFICATE = 11,
	TLS_HS_FINISHED = 20,
};

/* ProtocolVersion values. */
#define TLS_V_SSL30 0x0300
#define TLS_V_TLS10 0x0301
#define TLS_V_TLS11 0x0302
#define TLS_V_TLS12 0x0303
#define TLS_V_TLS13 0x0304

/* ExtensionType values read here (IANA TLS ExtensionType registry). */
#define TLS_EXT_SERVER_NAME 0          /* RFC 6066 §3 */
#define TLS_EXT_ALPN 16                /* RFC 7301 §3.1 */
#define TLS_EXT_SESSION_TICKET 35      /* RFC 5077 §3.2 */
#define TLS_EXT_PRE_SHARED_KEY 41      /* RFC 8446 §4.2.11 */
#define TLS_EXT_EARLY_DATA 42          /* RFC 8446 §4.2.10 */
#define TLS_EXT_SUPPORTED_VERSIONS 43  /* RFC 8446 §4.2.1 */

/* AlertLevel (RFC 8446 §6). */
#define TLS_ALERT_WARNING 1
#define TLS_ALERT_FATAL 2
/* Not an IANA value: the alert's description could not be read (it was encrypted). */
#define TLS_ALERT_DESC_UNKNOWN 255

/* ---- the cursor --------------------------------------------------------------- */

/*
 * A read position in a buffer: bytes [off, len) of p may be read. Invariant:
 * off <= len <= TLS_BUF_MAX. Getters return 1 and advance, or return 0 and leave
 * the cursor where it was when fewer bytes remain than they need.
 *
 * Verifier note: `off < len` proves nothing to the verifier (len is a value read
 * from memory), and clang may bounds-check one copy of off and index with another
 * (it zero-extends the u32 twice), so even a test against a constant can be lost.
 * Every byte is therefore read at p[off & TLS_BUF_MASK]: given the invariant the
 * mask changes nothing, and it bounds the index inside the very instruction that
 * uses it, so a read from a TLS_BUF_MAX-byte map value always verifies.
 */
#define TLS_BUF_MASK (TLS_BUF_MAX - 1)
_Static_assert((TLS_BUF_MAX & TLS_BUF_MASK) == 0, "TLS_BUF_MAX must be a power of two");

/*
 * Verifier note: clang deletes a mask it can prove redundant, and may then index
 * with a copy of the value the verifier has no bound for. tls__opaque(x) hides x's
 * value from the compiler (an empty asm that "changes" it), so a following mask
 * stays in the code. Plain C does not need it.
 */
#ifdef __bpf__
#define tls__opaque(x) asm volatile("" : "+r"(x))
#else
#define tls__opaque(x) ((void)0)
#endif

/*
 * dst[idx] = v for a dst of a power-of-two size `size` that idx is known (by the
 * caller's logic) to be below. The mask is what the verifier sees; tls__opaque
 * keeps clang from dropping it as redundant, or from indexing with another
 * register it knows to be equal (it does both).
 */
static __always_inline void tls__store(char *dst, __u32 idx, __u32 size, char v)
{
	tls__opaque(idx);
	dst[idx & (size - 1)] = v;
}

/*
 * Verifier note: every position stored in a cursor goes through tls__pos. Positions
 * never exceed TLS_BUF_MAX, so the mask changes nothing; but without it the
 * verifier, which cannot relate off to len, sees off's upper bound grow by 64K on
 * every step of a loop, no two iterations' states compare equal, and a 64-extension
 * loop exhausts its 1M-instruction budget. With it, off is always within
 * [0, 2 * TLS_BUF_MAX) and states from different iterations prune.
 */
#define TLS__POS_MASK (2 * TLS_BUF_MAX - 1)

static __always_inline __u32 tls__pos(__u32 x)
{
	return x & TLS__POS_MASK;
}

struct tls_cur {
	const __u8 *p;
	__u32 off;
	__u32 len;
};

static __always_inline void tls_cur_init(struct tls_cur *c, const __u8 *p, __u32 len)
{
	c->p = p;
	c->off = 0;
	c->len = len < TLS_BUF_MAX ? len : TLS_BUF_MAX;
}

static __always_inline __u32 tls_cur_left(const struct tls_cur *c)
{
	return c->len - c->off;
}

/* The byte at off, which the caller has checked against len. */
static __always_inline __u8 tls__at(const struct tls_cur *c, __u32 off)
{
	return c->p[off & TLS_BUF_MASK];
}

static __always_inline int tls_get_u8(struct tls_cur *c, __u8 *v)
{
	__u32 off = c->off;

	if (off >= c->len)
		return 0;
	*v = tls__at(c, off);
	c->off = tls__pos(off + 1);
	return 1;
}

static __always_inline int tls_get_u16(struct tls_cur *c, __u16 *v)
{
	__u32 off = c->off;

	/* c->len - off cannot wrap: off <= len. */
	if (c->len - off < 2)
		return 0;
	*v = (__u16)((__u16)tls__at(c, off) << 8 | tls__at(c, off + 1));
	c->off = tls__pos(off + 2);
	return 1;
}

static __always_inline int tls_get_u24(struct tls_cur *c, __u32 *v)
{
	__u32 off = c->off;

	if (c->len - off < 3)
		return 0;
	*v = (__u32)tls__at(c, off) << 16 | (__u32)tls__at(c, off + 1) << 8 |
	     tls__at(c, off + 2);
	c->off = tls__pos(off + 3);
	return 1;
}

static __always_inline int tls_get_u32(struct tls_cur *c, __u32 *v)
{
	__u32 off = c->off;

	if (c->len - off < 4)
		return 0;
	*v = (__u32)tls__at(c, off) << 24 | (__u32)tls__at(c, off + 1) << 16 |
	     (__u32)tls__at(c, off + 2) << 8 | tls__at(c, off + 3);
	c->off = tls__pos(off + 4);
	return 1;
}

static __always_inline int tls_skip(struct tls_cur *c, __u32 n)
{
	if (n > tls_cur_left(c))
		return 0;
	c->off = tls__pos(c->off + n);
	return 1;
}

/*
 * Split off the next n bytes as a cursor of their own (a length-prefixed vector's
 * contents) and step over them. The sub-cursor shares p, so its offsets keep the
 * same constant bound.
 */
static __always_inline int tls_sub(struct tls_cur *c, __u32 n, struct tls_cur *sub)
{
	if (n > tls_cur_left(c))
		return 0;
	sub->p = c->p;
	sub->off = c->off;
	sub->len = tls__pos(c->off + n);
	c->off = sub->len;
	return 1;
}

/* ---- small predicates ---------------------------------------------------------- */

/* Versions a record or hello may carry: SSL 3.0 .. TLS 1.3. */
static __always_inline int tls_version_ok(__u16 v)
{
	return v >= TLS_V_SSL30 && v <= TLS_V_TLS13;
}

/* GREASE (RFC 8701 §2): 0x0A0A, 0x1A1A, ... 0xFAFA, used for versions too. */
static __always_inline int tls_is_grease(__u16 v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/* A byte that may appear in a host name or in our rendering of a protocol name. */
static __always_inline int tls_printable(__u8 b)
{
	return b >= 0x21 && b <= 0x7e;
}

/* ---- record layer ----------------------------------------------------------------- */

/*
 * TLSPlaintext / TLSCiphertext header, RFC 8446 §5.1 and RFC 5246 §6.2.1:
 *
 *    0        1        2        3        4
 *   +--------+--------+--------+--------+--------+
 *   |  type  | legacy_version  |     length      |  then `length` bytes of body
 *   +--------+--------+--------+--------+--------+
 *
 * type is 20..24; legacy_version is 0x0303 in TLS 1.2/1.3 (0x0301 is common on a
 * first ClientHello; SSL 3.0 .. TLS 1.3 accepted); length <= 2^14 + 2048. Zero-length
 * fragments are forbidden for every type but application_data (RFC 5246 §6.2.1).
 */
struct tls_rec_hdr {
	__u16 version;
	__u16 len;
	__u8 type;
	__u8 _pad;
};

static __always_inline int tls_record_header_ok(__u8 type, __u16 version, __u16 len)
{
	if (type < TLS_CT_CHANGE_CIPHER_SPEC || type > TLS_CT_HEARTBEAT)
		return 0;
	if (!tls_version_ok(version))
		return 0;
	if (len > TLS_REC_MAX_LEN)
		return 0;
	if (len == 0 && type != TLS_CT_APPLICATION_DATA)
		return 0;
	return 1;
}

/*
 * Parse the record header at buf. TLS_TRUNCATED with fewer than 5 bytes, unless
 * the bytes present already cannot begin a record (then TLS_INVALID): so the first
 * byte of a stream is enough to tell most non-TLS traffic.
 */
static __always_inline int tls_parse_record_header(const __u8 *buf, __u32 avail,
						   struct tls_rec_hdr *hdr)
{
	struct tls_cur c;
	__u8 type = 0, major = 0, minor = 0;
	__u16 version, len = 0;

	tls_cur_init(&c, buf, avail);
	if (!tls_get_u8(&c, &type))
		return TLS_TRUNCATED;
	if (type < TLS_CT_CHANGE_CIPHER_SPEC || type > TLS_CT_HEARTBEAT)
		return TLS_INVALID;
	if (!tls_get_u8(&c, &major))
		return TLS_TRUNCATED;
	if (major != 3)
		return TLS_INVALID;
	if (!tls_get_u8(&c, &minor))
		return TLS_TRUNCATED;
	version = (__u16)(major << 8 | minor);
	if (!tls_version_ok(version))
		return TLS_INVALID;
	if (!tls_get_u16(&c, &len))
		return TLS_TRUNCATED;
	if (!tls_record_header_ok(type, version, len))
		return TLS_INVALID;
	hdr->type = type;
	hdr->version = version;
	hdr->len = len;
	hdr->_pad = 0;
	return TLS_OK;
}

/*
 * The cheap test on the first payload bytes of a connection: a handshake record
 * (22) of version SSL 3.0 .. TLS 1.3 whose body is 1 .. 2^14 bytes (a plaintext
 * record) and, when those bytes are present, begins with a client_hello (1) whose
 * legacy_version major is 3. Needs at least the 5 header bytes; returns 1 or 0.
 */
static __always_inline int tls_looks_like_client_hello(const __u8 *buf, __u32 avail)
{
	struct tls_cur c;
	__u8 type = 0, hs_type = 0, major = 0;
	__u16 version = 0, len = 0;
	__u32 hs_len = 0;

	tls_cur_init(&c, buf, avail);
	if (!tls_get_u8(&c, &type) || !tls_get_u16(&c, &version) || !tls_get_u16(&c, &len))
		return 0;
	if (type != TLS_CT_HANDSHAKE || !tls_version_ok(version) || len == 0 || len > 16384)
		return 0;
	if (!tls_get_u8(&c, &hs_type))
		return 1;
	if (hs_type != TLS_HS_CLIENT_HELLO)
		return 0;
	if (!tls_get_u24(&c, &hs_len) || !tls_get_u8(&c, &major))
		return 1;
	return major == 3;
}

/* ---- handshake messages ------------------------------------------------------------ */

/*
 * Handshake header, RFC 8446 §4 (RFC 5246 §7.4):
 *
 *   +--------+--------+--------+--------+
 *   |msg_type|   length (24 bits)       |  then `length` bytes of body
 *   +--------+--------+--------+--------+
 */
static __always_inline int tls_parse_hs_header(const __u8 *buf, __u32 avail, __u8 *type,
					       __u32 *len)
{
	struct tls_cur c;

	tls_cur_init(&c, buf, avail);
	if (!tls_get_u8(&c, type) || !tls_get_u24(&c, len))
		return TLS_TRUNCATED;
	return TLS_OK;
}

/*
 * Open the handshake message of type `want` that starts at buf[start], where bytes
 * buf[0..end) are present. On TLS_OK, *body covers exactly its body (after the
 * 4-byte header), so any inner overrun is INVALID. Offsets stay absolute in buf:
 * in BPF every read is then bounded by the one constant TLS_BUF_MAX.
 */
static __always_inline int tls__open_hs(const __u8 *buf, __u32 start, __u32 end, __u8 want,
					struct tls_cur *body)
{
	struct tls_cur c;
	__u8 type = 0;
	__u32 len = 0;

	tls_cur_init(&c, buf, end);
	if (!tls_skip(&c, start))
		return start < end ? TLS_TOO_LONG : TLS_TRUNCATED;
	if (!tls_get_u8(&c, &type))
		return end > c.len ? TLS_TOO_LONG : TLS_TRUNCATED;
	if (type != want)
		return TLS_INVALID;
	if (!tls_get_u24(&c, &len))
		return end > c.len ? TLS_TOO_LONG : TLS_TRUNCATED;
	if (len > TLS_BUF_MAX - TLS_HS_HDR_LEN)
		return TLS_TOO_LONG;
	if (len > tls_cur_left(&c))
		/* Either the bytes are not there yet, or they are past TLS_BUF_MAX. */
		return end > c.len ? TLS_TOO_LONG : TLS_TRUNCATED;
	body->p = buf;
	body->off = c.off;
	body->len = tls__pos(c.off + len);
	return TLS_OK;
}

/* ClientHello output. Strings are always NUL-terminated (empty when absent). */
#define TLS_CH_SNI 0x0001            /* sni[] holds the first host_name */
#define TLS_CH_SNI_BAD 0x0002        /* server_name present but malformed, not a printable
					name, or longer than 255: sni[] left empty */
#define TLS_CH_ALPN 0x0004           /* ALPN offered: alpn[] holds the names */
#define TLS_CH_ALPN_TRUNC 0x0008     /* alpn[] holds only the first names that fit */
#define TLS_CH_ALPN_BAD 0x0010       /* ALPN extension malformed: alpn[] left empty */
#define TLS_CH_VERSIONS 0x0020       /* supported_versions present */
#define TLS_CH_VERSIONS_BAD 0x0040   /* supported_versions malformed: ignored */
#define TLS_CH_TICKET 0x0080         /* session_ticket with a ticket: resumption attempt */
#define TLS_CH_PSK 0x0100            /* pre_shared_key: TLS 1.3 resumption attempt */
#define TLS_CH_EARLY_DATA 0x0200     /* early_data: 0-RTT data follows */
#define TLS_CH_NO_EXT 0x0400         /* no extensions block at all (very old clients) */
#define TLS_CH_EXT_MORE 0x0800       /* more than TLS_EXT_MAX extensions: rest not read */

struct tls_client_hello {
	char sni[TLS_SNI_MAX];
	char alpn[TLS_ALPN_MAX];     /* e.g. "h2,http/1.1"; unprintable bytes and ',' shown as '?' */
	__u32 flags;                 /* TLS_CH_* */
	__u16 legacy_version;
	__u16 max_version;           /* highest non-GREASE supported_versions entry in
					0x0300..0x03ff, else legacy_version */
	__u16 n_ciphers;
	__u16 n_ext;                 /* extensions read (at most TLS_EXT_MAX) */
	__u32 _pad;
};
_Static_assert(sizeof(struct tls_client_hello) == 400, "tls_client_hello layout");

/*
 * server_name extension data, RFC 6066 §3:
 *
 *   +--------+--------+--------+--------+--------+--------+--------+---
 *   | server_name_list length |  type  |   name length   | host_name...
 *   +--------+--------+--------+--------+--------+--------+--------+---
 *                               (0 = host_name; entries repeat to the list's end)
 *
 * The first host_name entry is copied. Each entry is skipped by its 16-bit length
 * (the only name type defined, host_name, has one).
 */
static __always_inline void tls__ch_sni(struct tls_cur *c, struct tls_client_hello *out)
{
	struct tls_cur list, name;
	__u16 list_len = 0, name_len = 0;
	__u8 type = 0, b = 0;
	__u32 i;

	if (!tls_get_u16(c, &list_len) || list_len != tls_cur_left(c) || list_len == 0 ||
	    !tls_sub(c, list_len, &list))
		goto bad;
	for (i = 0; i < TLS_SNI_ENTRIES_MAX; i++) {
		if (!tls_get_u8(&list, &type) || !tls_get_u16(&list, &name_len) ||
		    !tls_sub(&list, name_len, &name))
			goto bad;
		if (type == 0)
			break;
		if (tls_cur_left(&list) == 0)
			return; /* no host_name: nothing to report */
	}
	if (type != 0)
		return;
	if (name_len == 0 || name_len >= TLS_SNI_MAX)
		goto bad;
	/* The NUL first (name_len < TLS_SNI_MAX: the mask only tells the verifier so),
	 * so that name_len, refined differently by each exit of the loop, is not used
	 * after it and the verifier's states from all exits compare equal. */
	tls__store(out->sni, name_len, TLS_SNI_MAX, 0);
	/* Constant bound; name_len < TLS_SNI_MAX ends it sooner. */
	for (i = 0; i < TLS_SNI_MAX - 1; i++) {
		if (i >= name_len)
			break;
		if (!tls_get_u8(&name, &b) || !tls_printable(b))
			goto bad;
		out->sni[i] = (char)b;
	}
	out->flags |= TLS_CH_SNI;
	return;
bad:
	out->sni[0] = 0;
	out->flags |= TLS_CH_SNI_BAD;
}

/*
 * application_layer_protocol_negotiation extension data, RFC 7301 §3.1:
 *
 *   +--------+--------+--------+-------------+--------+------------
 *   |  list length    |  len   | name (len)  |  len   | name ...
 *   +--------+--------+--------+-------------+--------+------------
 *
 * The list is at least 2 bytes; each name at least 1. Copied comma-joined into
 * dst[dst_size]: "h2,http/1.1". Names that do not fit whole are left out, with the
 * names after them (*trunc = 1); *trunc = -1 when the extension is malformed.
 * Bytes outside 0x21..0x7e, and ',' inside a name, are shown as '?'.
 *
 * List byte i (i >= 1) belongs in dst[i - 1], so the work is done in dst itself,
 * in three loops, none nested (a name-in-entry loop would make the verifier walk
 * bound x bound paths):
 *   1. copy list bytes 1 .. dst_size - 1 into dst, each shown safe;
 *   2. jump from length byte to length byte (TLS_ALPN_ENTRIES_MAX names), checking
 *      the structure, and mark in two 128-bit masks where a ',' goes (over each
 *      length byte but the first) and where the NUL goes (after the last name
 *      that fits whole);
 *   3. apply the marks.
 *
 * Verifier notes (each measured; the naive forms cost 100K to over 1M
 * instructions where this costs about 20K):
 *   - Loop 1 is bounded by a count worked out before it, and reads at offsets that
 *     count keeps inside the list. Testing each read against the cursor's end
 *     would narrow the range the verifier keeps for the list's end differently at
 *     each way out of the loop, and loop 2, which uses it, would be walked once
 *     per exit. Leaving at the end, rather than reading on, spares it paths where
 *     "a read fails, then the next succeeds", quadratic in the bound.
 *   - In loop 2, `fit` (where the next name starts) has a different range on
 *     every path. Used as an index or in a branch, those ranges would be tracked
 *     exactly and every combination walked. So it only feeds shifts and
 *     multiplications, whose results the verifier does not track, and loop 3
 *     writes at constant offsets.
 */
struct tls__mask128 {
	__u64 lo, hi;
};

/* Set bit n (n < 128) without a branch on n. */
static __always_inline void tls__mask_set(struct tls__mask128 *m, __u32 n)
{
	__u64 bit = 1ULL << (n & 63), high = (n >> 6) & 1;

	m->lo |= bit * (1 - high);
	m->hi |= bit * high;
}

static __always_inline int tls__mask_test(const struct tls__mask128 *m, __u32 n)
{
	return (int)((((n & 64) ? m->hi : m->lo) >> (n & 63)) & 1);
}

static __always_inline void tls__alpn_copy(struct tls_cur *c, char *dst, const __u32 dst_size,
					   int *trunc)
{
	struct tls_cur list, scan;
	struct tls__mask128 comma = { 0, 0 }, nul = { 0, 0 };
	__u16 list_len = 0;
	__u8 b = 0;
	__u32 i, n, fit = 0, ok, full = 0;

	*trunc = 0;
	dst[0] = 0;
	if (!tls_get_u16(c, &list_len) || list_len != tls_cur_left(c) || list_len < 2 ||
	    !tls_sub(c, list_len, &list))
		goto bad;

	/* 1. List bytes 1 .. n, n = min(list_len - 1, dst_size - 1). */
	n = tls_cur_left(&list) - 1;
	if (n > dst_size - 1)
		n = dst_size - 1;
	tls__store(dst, dst_size - 1, TLS_ALPN_MAX, 0);
	for (i = 1; i < dst_size; i++) {
		/* i < dst_size <= TLS_ALPN_MAX: the masks are no-ops for the verifier. */
		if (i > n) {
			tls__store(dst, i - 1, TLS_ALPN_MAX, 0);
			break;
		}
		b = tls__at(&list, list.off + i); /* in the list: i <= n < list_len */
		if (!tls_printable(b) || b == ',')
			b = '?';
		tls__store(dst, i - 1, TLS_ALPN_MAX, (char)b);
	}

	/* 2. fit: the list offset where the next name's length byte is, while names
	 * fit whole; the output then ends at dst[fit - 1]. */
	scan = list;
	for (i = 0; i < TLS_ALPN_ENTRIES_MAX; i++) {
		if (!tls_get_u8(&scan, &b) || b == 0 || !tls_skip(&scan, b))
			goto bad;
		/* ok: this name fits too (computed, not branched on: see above). */
		ok = (1 - full) & (((fit + 1 + b) - (dst_size + 1)) >> 31);
		tls__mask_set(&comma, fit * ok); /* bit 0 is never applied */
		fit += (1 + b) * ok;
		full |= 1 - ok;
		if (tls_cur_left(&scan) == 0)
			break;
	}
	if (full || tls_cur_left(&scan) != 0)
		*trunc = 1; /* a name did not fit, or more names than we look at */
	tls__mask_set(&nul, fit & 127); /* fit == 128: dst[127] is NUL already */

	/* 3. */
	for (i = 1; i < dst_size; i++) {
		if (tls__mask_test(&nul, i))
			tls__store(dst, i - 1, TLS_ALPN_MAX, 0);
		else if (tls__mask_test(&comma, i))
			tls__store(dst, i - 1, TLS_ALPN_MAX, ',');
	}
	if (fit == 0)
		dst[0] = 0;
	return;
bad:
	*trunc = -1;
	dst[0] = 0;
}

/*
 * supported_versions in a ClientHello, RFC 8446 §4.2.1:
 *
 *   +--------+--------+--------+--------+--------+---
 *   | length | version         | version         | ...   length: 2..254, even
 *   +--------+--------+--------+--------+--------+---
 */
static __always_inline void tls__ch_versions(struct tls_cur *c, struct tls_client_hello *out)
{
	__u8 n = 0;
	__u16 v = 0, best = 0;
	__u32 i;

	if (!tls_get_u8(c, &n) || n < 2 || (n & 1) || n != tls_cur_left(c)) {
		out->flags |= TLS_CH_VERSIONS_BAD;
		return;
	}
	for (i = 0; i < TLS_VERSIONS_MAX; i++) {
		if (!tls_get_u16(c, &v))
			break;
		/* Skip GREASE and anything that is not a TLS version (drafts 0x7fxx). */
		if (tls_is_grease(v) || (v >> 8) != 3)
			continue;
		if (v > best)
			best = v;
	}
	out->flags |= TLS_CH_VERSIONS;
	if (best)
		out->max_version = best;
}

/*
 * Extension, RFC 8446 §4.2:
 *
 *   +--------+--------+--------+--------+------------
 *   | extension_type  |  extension_data length      | data
 *   +--------+--------+--------+--------+------------
 *
 * tls__ext_check walks the extensions once (TLS_EXT_MAX of them): checks their
 * framing, counts them, and for a ClientHello sets the flags that need no more
 * than the type. tls__find_ext then finds one extension's data; it is called once
 * per extension of interest, after the check, and the first occurrence counts.
 *
 * Verifier note: one walk that notes where three extensions are would carry three
 * (offset, length) pairs, set or not, from iteration to iteration; the verifier's
 * states multiply with them (measured: 31K -> 437K instructions for the walk
 * alone). Separate find loops carry only the cursor, and cost about 20K each.
 * ClientHello flags are or-ed straight into the output, which in BPF is map
 * memory whose contents the verifier does not track.
 */
/* c covers exactly the extensions. Returns TLS_OK (*more set) or TLS_INVALID. */
static __always_inline int tls__ext_check(const struct tls_cur *exts, __u16 *n_ext,
					  __u32 *ch_flags, int *more)
{
	struct tls_cur c = *exts, ext;
	__u16 type = 0, len = 0;
	__u32 i;

	*more = 0;
	for (i = 0; i < TLS_EXT_MAX; i++) {
		if (tls_cur_left(&c) == 0)
			break;
		if (!tls_get_u16(&c, &type) || !tls_get_u16(&c, &len) || !tls_sub(&c, len, &ext))
			return TLS_INVALID;
		(*n_ext)++;
		if (!ch_flags)
			continue; /* a constant after inlining: the switch goes */
		switch (type) {
		case TLS_EXT_SESSION_TICKET:
			if (len > 0)
				*ch_flags |= TLS_CH_TICKET;
			break;
		case TLS_EXT_PRE_SHARED_KEY:
			*ch_flags |= TLS_CH_PSK;
			break;
		case TLS_EXT_EARLY_DATA:
			*ch_flags |= TLS_CH_EARLY_DATA;
			break;
		default:
			break;
		}
	}
	if (tls_cur_left(&c) != 0)
		*more = 1;
	return TLS_OK;
}

/* The data of the first extension of type want among the first TLS_EXT_MAX. */
static __always_inline int tls__find_ext(const struct tls_cur *exts, __u16 want,
					 struct tls_cur *data)
{
	struct tls_cur c = *exts;
	__u16 type = 0, len = 0;
	__u32 i;

	for (i = 0; i < TLS_EXT_MAX; i++) {
		if (!tls_get_u16(&c, &type) || !tls_get_u16(&c, &len) || !tls_sub(&c, len, data))
			return 0;
		if (type == want)
			return 1;
	}
	return 0;
}

/*
 * ClientHello, RFC 8446 §4.1.2 (RFC 5246 §7.4.1.2), after the handshake header:
 *
 *   +--------+--------+----------------+--------+---------------+
 *   | legacy_version  | random (32)    | sid len| session_id    |  sid len <= 32
 *   +--------+--------+----------------+--------+---------------+
 *   | cipher_suites length | suites (2 each) | comp len | methods |  even, >= 2; >= 1
 *   +--------+--------+----------------+--------+---------------+
 *   | extensions length    | extensions ...                     |  absent in very old
 *   +--------+--------+-----------------------------------------+  hellos
 *
 * tls_parse_client_hello: the message starts at buf[0], avail bytes are present.
 * tls_parse_client_hello_at: it starts at buf[start], bytes buf[0..end) are present
 * (in BPF, pass the scratch buffer itself and tls_walk's body_off, so that offsets
 * stay bounded by TLS_BUF_MAX).
 */
static __always_inline int tls__parse_ch(const __u8 *buf, __u32 start, __u32 end,
					 struct tls_client_hello *out, const int want_all)
{
	struct tls_cur m, c;
	__u16 ver = 0, suites_len = 0, ext_len = 0;
	__u8 sid_len = 0, comp_len = 0;
	int st, trunc = 0, more = 0;

	/* All of it, not just the strings' first bytes: in BPF the output is reused
	 * per-CPU memory, and what lies past a NUL would be the last hello's. A
	 * constant-size memset is lowered to plain stores in BPF. */
	__builtin_memset(out, 0, sizeof(*out));

	st = tls__open_hs(buf, start, end, TLS_HS_CLIENT_HELLO, &m);
	if (st != TLS_OK)
		return st;
	if (!tls_get_u16(&m, &ver) || !tls_version_ok(ver))
		return TLS_INVALID;
	if (!tls_skip(&m, 32) || !tls_get_u8(&m, &sid_len) || sid_len > 32 ||
	    !tls_skip(&m, sid_len))
		return TLS_INVALID;
	if (!tls_get_u16(&m, &suites_len) || suites_len < 2 || (suites_len & 1) ||
	    !tls_skip(&m, suites_len))
		return TLS_INVALID;
	if (!tls_get_u8(&m, &comp_len) || comp_len < 1 || !tls_skip(&m, comp_len))
		return TLS_INVALID;
	out->legacy_version = ver;
	out->max_version = ver;
	out->n_ciphers = suites_len / 2;
	if (tls_cur_left(&m) == 0) {
		out->flags |= TLS_CH_NO_EXT;
		return TLS_OK;
	}
	/* The extensions fill the rest of the message exactly. */
	if (!tls_get_u16(&m, &ext_len) || ext_len != tls_cur_left(&m))
		return TLS_INVALID;

	if (tls__ext_check(&m, &out->n_ext, want_all ? &out->flags : NULL, &more) != TLS_OK)
		return TLS_INVALID;
	if (more)
		out->flags |= TLS_CH_EXT_MORE;
	if (want_all && tls__find_ext(&m, TLS_EXT_SERVER_NAME, &c))
		tls__ch_sni(&c, out);
	if (tls__find_ext(&m, TLS_EXT_ALPN, &c)) {
		tls__alpn_copy(&c, out->alpn, TLS_ALPN_MAX, &trunc);
		if (trunc < 0)
			out->flags |= TLS_CH_ALPN_BAD;
		else
			out->flags |= TLS_CH_ALPN | (trunc ? TLS_CH_ALPN_TRUNC : 0);
	}
	if (want_all && tls__find_ext(&m, TLS_EXT_SUPPORTED_VERSIONS, &c))
		tls__ch_versions(&c, out);
	return TLS_OK;
}

static __always_inline int tls_parse_client_hello_at(const __u8 *buf, __u32 start, __u32 end,
						     struct tls_client_hello *out)
{
	return tls__parse_ch(buf, start, end, out, 1);
}

/*
 * The same walk for the ALPN offer alone (the kernel's quiet path reads nothing
 * else): the same verdict on the message and the same alpn[] and TLS_CH_ALPN*
 * flags as tls_parse_client_hello_at; sni, versions and the other extension
 * flags are left empty, which spares the verifier their walks.
 */
static __always_inline int tls_client_hello_alpn_at(const __u8 *buf, __u32 start, __u32 end,
						    struct tls_client_hello *out)
{
	return tls__parse_ch(buf, start, end, out, 0);
}

static __always_inline int tls_parse_client_hello(const __u8 *buf, __u32 avail,
						  struct tls_client_hello *out)
{
	return tls_parse_client_hello_at(buf, 0, avail, out);
}

/* ServerHello output. */
#define TLS_SH_HRR 0x01         /* a HelloRetryRequest, not a ServerHello */
#define TLS_SH_ALPN 0x02        /* alpn[] holds the selected protocol (TLS <= 1.2) */
#define TLS_SH_ALPN_TRUNC 0x04  /* the name is longer than alpn[] holds: left empty */
#define TLS_SH_ALPN_BAD 0x08    /* ALPN extension malformed: alpn[] left empty */
#define TLS_SH_VERSIONS 0x10    /* supported_versions present: selected_version is set */
#define TLS_SH_NO_EXT 0x20      /* no extensions block */
#define TLS_SH_EXT_MORE 0x40    /* more than TLS_EXT_MAX extensions: rest not read */

struct tls_server_hello {
	__u16 legacy_version;
	__u16 selected_version;   /* supported_versions (0 if absent) */
	__u16 version;            /* negotiated: selected_version if present, else legacy */
	__u16 cipher_suite;
	__u8 compression;
	__u8 flags;               /* TLS_SH_* */
	__u16 n_ext;
	char alpn[TLS_ALPN_SEL_MAX];
};
_Static_assert(sizeof(struct tls_server_hello) == 44, "tls_server_hello layout");

/*
 * Compare the 32 bytes at the cursor with the HelloRetryRequest random and step
 * over them. Returns 1 (HRR), 0 (another random) or -1 (fewer than 32 bytes).
 * That random is SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3):
 * CF 21 AD 74 E5 9A 61 11 BE 1D 8C 02 1E 65 B8 91 C2 A2 11 16 7A BB 8C 5E 07 9E 09 E2
 * C8 A8 33 9C.
 *
 * Verifier note: the differences are OR-ed together and tested once. Written as
 * `w0 == K0 && w1 == K1 && ...`, clang emits eight conditional selects, each a
 * fork for the verifier: 256 states, every one of which then walks the rest of
 * the parser.
 */
static __always_inline int tls__random_is_hrr(struct tls_cur *c)
{
	__u32 w0 = 0, w1 = 0, w2 = 0, w3 = 0, w4 = 0, w5 = 0, w6 = 0, w7 = 0;

	if (!tls_get_u32(c, &w0) || !tls_get_u32(c, &w1) || !tls_get_u32(c, &w2) ||
	    !tls_get_u32(c, &w3) || !tls_get_u32(c, &w4) || !tls_get_u32(c, &w5) ||
	    !tls_get_u32(c, &w6) || !tls_get_u32(c, &w7))
		return -1;
	/* Immediates, not a table: a constant array lands in .rodata.cst32 in BPF,
	 * a section libbpf 1.1 cannot open. */
	return ((w0 ^ 0xcf21ad74) | (w1 ^ 0xe59a6111) | (w2 ^ 0xbe1d8c02) |
		(w3 ^ 0x1e65b891) | (w4 ^ 0xc2a21116) | (w5 ^ 0x7abb8c5e) |
		(w6 ^ 0x079e09e2) | (w7 ^ 0xc8a8339c)) == 0;
}

/*
 * ServerHello, RFC 8446 §4.1.3 (RFC 5246 §7.4.1.3), after the handshake header:
 *
 *   +--------+--------+----------------+--------+---------------+
 *   | legacy_version  | random (32)    | sid len| session_id    |  sid len <= 32
 *   +--------+--------+----------------+--------+---------------+
 *   | cipher_suite    | compression    | extensions length | extensions ...
 *   +--------+--------+----------------+--------+---------------+
 *
 * A HelloRetryRequest has the same layout and a fixed random. The extensions we
 * read: supported_versions (2 bytes: the selected version; 0x0304 means TLS 1.3)
 * and ALPN (one name). In TLS 1.3 the server's ALPN travels encrypted, in
 * EncryptedExtensions, so only TLS 1.2 and older show it here.
 * Buffer conventions as for tls_parse_client_hello(_at).
 */
static __always_inline int tls__parse_sh(const __u8 *buf, __u32 start, __u32 end,
					 struct tls_server_hello *out, const int want_alpn)
{
	struct tls_cur m, c;
	__u16 ver = 0, suite = 0, ext_len = 0, sel = 0;
	__u8 sid_len = 0, comp = 0;
	int st, trunc = 0, more = 0, hrr;

	__builtin_memset(out, 0, sizeof(*out));

	st = tls__open_hs(buf, start, end, TLS_HS_SERVER_HELLO, &m);
	if (st != TLS_OK)
		return st;
	if (!tls_get_u16(&m, &ver) || !tls_version_ok(ver))
		return TLS_INVALID;
	hrr = tls__random_is_hrr(&m);
	if (hrr < 0)
		return TLS_INVALID;
	if (!tls_get_u8(&m, &sid_len) || sid_len > 32 || !tls_skip(&m, sid_len))
		return TLS_INVALID;
	if (!tls_get_u16(&m, &suite) || !tls_get_u8(&m, &comp))
		return TLS_INVALID;
	out->legacy_version = ver;
	out->version = ver;
	out->cipher_suite = suite;
	out->compression = comp;
	if (hrr)
		out->flags |= TLS_SH_HRR;
	if (tls_cur_left(&m) == 0) {
		out->flags |= TLS_SH_NO_EXT;
		return TLS_OK;
	}
	if (!tls_get_u16(&m, &ext_len) || ext_len != tls_cur_left(&m))
		return TLS_INVALID;

	if (tls__ext_check(&m, &out->n_ext, (__u32 *)0, &more) != TLS_OK)
		return TLS_INVALID;
	if (more)
		out->flags |= TLS_SH_EXT_MORE;
	if (tls__find_ext(&m, TLS_EXT_SUPPORTED_VERSIONS, &c)) {
		/* RFC 8446 §4.2.1: the ServerHello form is one ProtocolVersion. */
		if (tls_cur_left(&c) != 2 || !tls_get_u16(&c, &sel) || !tls_version_ok(sel))
			return TLS_INVALID;
		out->selected_version = sel;
		out->version = sel;
		out->flags |= TLS_SH_VERSIONS;
	}
	if (want_alpn && tls__find_ext(&m, TLS_EXT_ALPN, &c)) {
		tls__alpn_copy(&c, out->alpn, TLS_ALPN_SEL_MAX, &trunc);
		if (trunc < 0)
			out->flags |= TLS_SH_ALPN_BAD;
		else
			out->flags |= TLS_SH_ALPN | (trunc ? TLS_SH_ALPN_TRUNC : 0);
	}
	return TLS_OK;
}

static __always_inline int tls_parse_server_hello_at(const __u8 *buf, __u32 start, __u32 end,
						     struct tls_server_hello *out)
{
	return tls__parse_sh(buf, start, end, out, 1);
}

static __always_inline int tls_parse_server_hello(const __u8 *buf, __u32 avail,
						  struct tls_server_hello *out)
{
	return tls_parse_server_hello_at(buf, 0, avail, out);
}

/*
 * Alert, RFC 8446 §6 (RFC 5246 §7.2), a record body in clear:
 *
 *   +--------+-------------+
 *   | level  | description |   level: 1 warning, 2 fatal
 *   +--------+-------------+
 */
static __always_inline int tls_parse_alert(const __u8 *buf, __u32 avail, __u8 *level,
					   __u8 *desc)
{
	struct tls_cur c;

	tls_cur_init(&c, buf, avail);
	if (!tls_get_u8(&c, level))
		return TLS_TRUNCATED;
	if (*level != TLS_ALERT_WARNING && *level != TLS_ALERT_FATAL)
		return TLS_INVALID;
	if (!tls_get_u8(&c, desc))
		return TLS_TRUNCATED;
	return TLS_OK;
}

/* ---- record boundaries in a TCP stream ------------------------------------------------ */

/*
 * One direction of one connection. next_seq is the TCP sequence number of the first
 * byte of the next record header; when that header straddles segments, its first
 * hdr_have bytes wait in hdr[] and the stream continues at next_seq + hdr_have.
 * A header that fails tls_record_header_ok sets TLS_STREAM_DESYNC for good: we
 * never guess where records start again. 12 bytes, fits socket storage.
 */
#define TLS_STREAM_DESYNC 0x01

struct tls_stream {
	__u32 next_seq;
	__u8 hdr[4];
	__u8 hdr_have;
	__u8 flags;
	__u16 _pad;
};
_Static_assert(sizeof(struct tls_stream) == 12, "tls_stream layout");

/* The stream's first payload byte has sequence number seq (the ISN + 1). */
static __always_inline void tls_stream_init(struct tls_stream *st, __u32 seq)
{
	st->next_seq = seq;
	st->hdr[0] = st->hdr[1] = st->hdr[2] = st->hdr[3] = 0;
	st->hdr_have = 0;
	st->flags = 0;
	st->_pad = 0;
}

/* One record header found by tls_walk. */
struct tls_walk_rec {
	__u32 body_seq;   /* sequence number of the record's first body byte */
	__u32 body_off;   /* offset of that byte in this buffer, when body_here > 0 */
	__u32 body_here;  /* body bytes present in this buffer from body_off (0 when the
			     body starts in a later segment, or is empty) */
	__u16 len;        /* body length from the header */
	__u16 version;
	__u8 type;
	__u8 _pad[3];
};

struct tls_walk {
	__u32 n;          /* records found by this call */
	__u32 _pad;
	struct tls_walk_rec rec[TLS_WALK_MAX];
};
_Static_assert(sizeof(struct tls_walk) == 8 + 20 * TLS_WALK_MAX, "tls_walk layout");

enum tls_walk_status {
	TLS_WALK_OK = 0,     /* the buffer is accounted for (maybe no header was in it) */
	TLS_WALK_MORE = 1,   /* TLS_WALK_MAX records reported, more headers follow in this
				buffer: call again with the same arguments */
	TLS_WALK_GAP = 2,    /* the buffer starts after bytes never seen: state unchanged */
	TLS_WALK_DESYNC = 3, /* a header failed validation (now or before): state is lost */
};

/* TCP sequence arithmetic (RFC 9293 §3.4): compare by signed 32-bit difference. */
static __always_inline __s32 tls_seq_diff(__u32 a, __u32 b)
{
	return (__s32)(a - b);
}

/*
 * Walk the record headers in one segment's payload (or in one chunk of it):
 * buf[0..len) holds the bytes with sequence numbers seq .. seq + len - 1. At most
 * TLS_BUF_MAX bytes are looked at; feed a longer segment in chunks (seq, buf, 16K),
 * (seq + 16K, buf + 16K, ...) — in BPF, one bpf_skb_load_bytes per chunk.
 *
 * Bytes already accounted for (a retransmission, or the inside of a record body we
 * are skipping) are ignored: a buffer that ends at or before the next byte wanted
 * reports nothing and returns TLS_WALK_OK. A buffer that overlaps it is read from
 * there on. A buffer that starts after it (a lost or reordered segment) returns
 * TLS_WALK_GAP and changes nothing: the caller decides, and counts it.
 *
 *   seq                                  seq + len
 *   |------ this buffer -------------------------|
 *        |hdr|---- body ----|hdr|-- body ---...       records, next_seq moves on
 */
static __always_inline int tls_walk(struct tls_stream *st, __u32 seq, const __u8 *buf,
				    __u32 len, struct tls_walk *out)
{
	struct tls_cur c;
	__u8 h[TLS_REC_HDR_LEN] = { 0 };
	__u8 b = 0;
	__u32 i, j, have, want, rlen, left;
	__s32 d;

	out->n = 0;
	if (st->flags & TLS_STREAM_DESYNC)
		return TLS_WALK_DESYNC;
	tls_cur_init(&c, buf, len);
	have = st->hdr_have;
	if (have > TLS_REC_HDR_LEN - 1) {
		/* Never written by tls_walk; refuse corrupt state rather than guess. */
		st->flags |= TLS_STREAM_DESYNC;
		return TLS_WALK_DESYNC;
	}
	want = st->next_seq + have;
	d = tls_seq_diff(want, seq);
	if (d < 0)
		return TLS_WALK_GAP;
	if ((__u32)d >= c.len)
		return TLS_WALK_OK;
	c.off = tls__pos((__u32)d);

	for (i = 0; i < TLS_WALK_MAX; i++) {
		/* have: header bytes already buffered, 0..4 (0 after the first record). */
		left = tls_cur_left(&c);
		if (left + have < TLS_REC_HDR_LEN) {
			/* The header goes on in the next segment: keep its first bytes.
			 * have + left <= 4, so the mask never changes the index; it shows
			 * the verifier that hdr[] is not overrun. */
			for (j = 0; j < TLS_REC_HDR_LEN - 1; j++) {
				if (!tls_get_u8(&c, &b))
					break;
				st->hdr[(have + j) & 3] = b;
			}
			st->hdr_have = (__u8)(have + left);
			return TLS_WALK_OK;
		}
		/* Assemble the 5 header bytes: buffered ones first, then this buffer's. */
		for (j = 0; j < TLS_REC_HDR_LEN; j++) {
			if (j < have)
				h[j] = st->hdr[j & 3]; /* j < have <= 4: mask is a no-op */
			else if (!tls_get_u8(&c, &h[j]))
				return TLS_WALK_OK; /* cannot happen: left + have >= 5 */
		}
		rlen = (__u32)h[3] << 8 | h[4];
		if (!tls_record_header_ok(h[0], (__u16)((__u16)h[1] << 8 | h[2]), (__u16)rlen)) {
			st->flags |= TLS_STREAM_DESYNC;
			return TLS_WALK_DESYNC;
		}
		left = tls_cur_left(&c);
		out->rec[i].type = h[0];
		out->rec[i].version = (__u16)((__u16)h[1] << 8 | h[2]);
		out->rec[i].len = (__u16)rlen;
		out->rec[i].body_seq = st->next_seq + TLS_REC_HDR_LEN;
		out->rec[i].body_off = c.off;
		out->rec[i].body_here = rlen < left ? rlen : left;
		out->rec[i]._pad[0] = out->rec[i]._pad[1] = out->rec[i]._pad[2] = 0;
		out->n = i + 1;
		st->next_seq += TLS_REC_HDR_LEN + rlen;
		st->hdr_have = 0;
		have = 0;
		if (rlen >= left)
			return TLS_WALK_OK; /* the next header is at or past this buffer's end */
		c.off = tls__pos(c.off + rlen);
	}
	return TLS_WALK_MORE;
}

/* ---- handshake progress ------------------------------------------------------------- */

/*
 * When is a handshake over? An observer sees record types and lengths in both
 * directions, and the cleartext handshake records. The rule (tls_hs_step), shared
 * by BPF and replay:
 *
 * TLS 1.2 and older (RFC 5246 §7.3): each side ends with ChangeCipherSpec (20)
 * then its Finished, the first handshake record (22) it sends under the new keys.
 * Complete when both directions have sent CCS followed by a handshake record. In a
 * full handshake the server's Finished comes last; on resumption, the client's.
 *
 * TLS 1.3 (RFC 8446 §2): everything after the ServerHello is encrypted and sent as
 * application_data (23). Complete when the client sends its first 23-typed record
 * after the ServerHello of at least 20 bytes: its Finished, or its Certificate
 * flight under client auth. A shorter one (19 = 2-byte alert + 1 content type +
 * 16-byte AEAD tag) is an encrypted alert: failed, cause unknown. The same holds for
 * the server's records before completion. CCS records in TLS 1.3 (middlebox
 * compatibility, RFC 8446 §D.4) mean nothing.
 *
 * The version comes from the ServerHello (supported_versions). If the ServerHello's
 * body is not in the buffer given, a server record of type 23 before the server's
 * Finished tells TLS 1.3 (a TLS 1.2 server sends none before it). A
 * HelloRetryRequest (same message type, fixed random) is not the ServerHello; CCS
 * records before the ServerHello are ignored.
 *
 * Either version: a clear alert (type 21, 2 bytes) that is fatal, or a
 * close_notify / user_canceled warning, before completion -> failed, with its level
 * and description. Other warnings (e.g. unrecognized_name) do not end a handshake.
 * An alert record of another length is an encrypted one (TLS 1.2 after CCS):
 * failed, cause unknown.
 *
 * Known limits: in TLS 1.3 a server that rejects the client's certificate answers
 * after the client's Finished, so the handshake counts as complete (as the client's
 * TLS library also reports); 0-RTT data sent after the ServerHello was seen, or an
 * EndOfEarlyData record, completes it one record early. Once complete or failed,
 * the state does not change.
 */
enum tls_hs_state {
	TLS_HS_PROGRESS = 0,
	TLS_HS_COMPLETE = 1,
	TLS_HS_FAILED = 2,
};

#define TLS_HSF_CH 0x01      /* client sent a ClientHello */
#define TLS_HSF_HRR 0x02     /* server sent a HelloRetryRequest */
#define TLS_HSF_SH 0x04      /* server sent the ServerHello */
#define TLS_HSF_C_CCS 0x08   /* client sent CCS after the ServerHello */
#define TLS_HSF_S_CCS 0x10   /* server sent CCS after the ServerHello */
#define TLS_HSF_C_FIN 0x20   /* TLS 1.2: client sent its Finished */
#define TLS_HSF_S_FIN 0x40   /* TLS 1.2: server sent its Finished */
#define TLS_HSF_V13_SEEN 0x80 /* version 1.3 inferred from the records, not read */

struct tls_hs {
	__u16 version;      /* negotiated, from the ServerHello (or inferred); 0 unknown */
	__u8 state;         /* enum tls_hs_state */
	__u8 flags;         /* TLS_HSF_* */
	__u8 alert_level;   /* when failed by an alert: its level (0 if encrypted) */
	__u8 alert_desc;    /* ... and description (TLS_ALERT_DESC_UNKNOWN if encrypted) */
	__u16 _pad;
};
_Static_assert(sizeof(struct tls_hs) == 8, "tls_hs layout");

static __always_inline void tls_hs_init(struct tls_hs *hs)
{
	hs->version = 0;
	hs->state = TLS_HS_PROGRESS;
	hs->flags = 0;
	hs->alert_level = 0;
	hs->alert_desc = 0;
	hs->_pad = 0;
}

static __always_inline int tls__hs_fail(struct tls_hs *hs, __u8 level, __u8 desc)
{
	hs->alert_level = level;
	hs->alert_desc = desc;
	hs->state = TLS_HS_FAILED;
	return TLS_HS_FAILED;
}

/*
 * Feed one record, in the order seen on the wire (both directions interleaved).
 * The record's body, as far as it is at hand, is buf[body_off .. body_off +
 * body_here): exactly what tls_walk reports for the segment buffer it walked
 * (body_here may be 0). Cleartext handshake and alert records need their body for
 * a precise answer: the ServerHello (version, HRR) and the alert's level. Returns
 * the state after this record.
 */
static __always_inline int tls_hs_step(struct tls_hs *hs, int from_client, __u8 rec_type,
				       __u16 rec_len, const __u8 *buf, __u32 body_off,
				       __u32 body_here)
{
	struct tls_server_hello sh;
	struct tls_cur c;
	__u32 end;
	__u8 b0 = 0, b1 = 0;

	if (hs->state != TLS_HS_PROGRESS)
		return hs->state;
	/* The body as a cursor; out-of-range arguments mean "no body". */
	if (body_off > TLS_BUF_MAX || body_here > TLS_BUF_MAX)
		body_off = body_here = 0;
	end = body_off + body_here;
	tls_cur_init(&c, buf, end);
	if (!tls_skip(&c, body_off))
		end = 0;

	switch (rec_type) {
	case TLS_CT_ALERT:
		/* Cleartext: level and description; anything else is encrypted. */
		if (rec_len != 2 || !tls_get_u8(&c, &b0) || !tls_get_u8(&c, &b1) ||
		    (b0 != TLS_ALERT_WARNING && b0 != TLS_ALERT_FATAL))
			return tls__hs_fail(hs, 0, TLS_ALERT_DESC_UNKNOWN);
		if (b0 == TLS_ALERT_FATAL || b1 == 0 /* close_notify */ ||
		    b1 == 90 /* user_canceled */)
			return tls__hs_fail(hs, b0, b1);
		return TLS_HS_PROGRESS;

	case TLS_CT_CHANGE_CIPHER_SPEC:
		if (!(hs->flags & TLS_HSF_SH))
			return TLS_HS_PROGRESS;
		hs->flags |= from_client ? TLS_HSF_C_CCS : TLS_HSF_S_CCS;
		return TLS_HS_PROGRESS;

	case TLS_CT_HANDSHAKE:
		if (hs->version == TLS_V_TLS13 && (hs->flags & TLS_HSF_SH))
			return TLS_HS_PROGRESS; /* TLS 1.3 sends no cleartext handshake after SH */
		if (from_client) {
			if (hs->flags & TLS_HSF_C_CCS)
				hs->flags |= TLS_HSF_C_FIN;
			else if (tls_get_u8(&c, &b0) && b0 == TLS_HS_CLIENT_HELLO)
				hs->flags |= TLS_HSF_CH;
		} else if (hs->flags & TLS_HSF_S_CCS) {
			hs->flags |= TLS_HSF_S_FIN;
		} else if (!(hs->flags & TLS_HSF_SH)) {
			if (tls_get_u8(&c, &b0) && b0 != TLS_HS_SERVER_HELLO)
				return TLS_HS_PROGRESS;
			/* Without the ALPN copy (want_alpn is a constant: the code goes),
			 * which the caller does once with tls_parse_server_hello_at if it
			 * wants the name. */
			if (tls__parse_sh(buf, body_off, end, &sh, 0) == TLS_OK) {
				if (sh.flags & TLS_SH_HRR) {
					hs->flags |= TLS_HSF_HRR;
					return TLS_HS_PROGRESS;
				}
				hs->version = sh.version;
			} else {
				/* Only part of it at hand (or none): the random, at a fixed
				 * place, still tells a HelloRetryRequest. */
				tls_cur_init(&c, buf, end);
				if (tls_skip(&c, body_off + TLS_HS_HDR_LEN + 2) &&
				    tls__random_is_hrr(&c) == 1) {
					hs->flags |= TLS_HSF_HRR;
					return TLS_HS_PROGRESS;
				}
			}
			hs->flags |= TLS_HSF_SH;
		}
		if ((hs->flags & (TLS_HSF_C_FIN | TLS_HSF_S_FIN)) ==
		    (TLS_HSF_C_FIN | TLS_HSF_S_FIN)) {
			hs->state = TLS_HS_COMPLETE;
			return TLS_HS_COMPLETE;
		}
		return TLS_HS_PROGRESS;

	case TLS_CT_APPLICATION_DATA:
		if (!(hs->flags & TLS_HSF_SH))
			return TLS_HS_PROGRESS; /* 0-RTT early data */
		if (hs->version == 0 && !from_client && !(hs->flags & TLS_HSF_S_FIN)) {
			hs->version = TLS_V_TLS13;
			hs->flags |= TLS_HSF_V13_SEEN;
		}
		if (hs->version != TLS_V_TLS13)
			return TLS_HS_PROGRESS; /* TLS 1.2 False Start data */
		if (rec_len < 20)
			return tls__hs_fail(hs, 0, TLS_ALERT_DESC_UNKNOWN);
		if (from_client) {
			hs->state = TLS_HS_COMPLETE;
			return TLS_HS_COMPLETE;
		}
		return TLS_HS_PROGRESS;

	default:
		return TLS_HS_PROGRESS;
	}
}

/* ---- names (user space only) ------------------------------------------------------ */
#ifndef __bpf__

/* AlertDescription, RFC 8446 §6 and RFC 5246 §7.2. */
static inline const char *tls_alert_name(__u8 desc)
{
	switch (desc) {
	case 0: return "close_notify";
	case 10: return "unexpected_message";
	case 20: return "bad_record_mac";
	case 21: return "decryption_failed";
	case 22: return "record_overflow";
	case 30: return "decompression_failure";
	case 40: return "handshake_failure";
	case 41: return "no_certificate";
	case 42: return "bad_certificate";
	case 43: return "unsupported_certificate";
	case 44: return "certificate_revoked";
	case 45: return "certificate_expired";
	case 46: return "certificate_unknown";
	case 47: return "illegal_parameter";
	case 48: return "unknown_ca";
	case 49: return "access_denied";
	case 50: return "decode_error";
	case 51: return "decrypt_error";
	case 60: return "export_restriction";
	case 70: return "protocol_version";
	case 71: return "insufficient_security";
	case 80: return "internal_error";
	case 86: return "inappropriate_fallback";
	case 90: return "user_canceled";
	case 100: return "no_renegotiation";
	case 109: return "missing_extension";
	case 110: return "unsupported_extension";
	case 111: return "certificate_unobtainable";
	case 112: return "unrecognized_name";
	case 113: return "bad_certificate_status_response";
	case 114: return "bad_certificate_hash_value";
	case 115: return "unknown_psk_identity";
	case 116: return "certificate_required";
	case 120: return "no_application_protocol";
	default: return "unknown";
	}
}

static inline const char *tls_version_name(__u16 v)
{
	switch (v) {
	case TLS_V_SSL30: return "SSL3.0";
	case TLS_V_TLS10: return "TLS1.0";
	case TLS_V_TLS11: return "TLS1.1";
	case TLS_V_TLS12: return "TLS1.2";
	case TLS_V_TLS13: return "TLS1.3";
	default: return "unknown";
	}
}

#endif /* !__bpf__ */

#endif /* CONNSCOPE_TLS_H */
