// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * TLS handshakes and cleartext HTTP/2 (h2c) on the wire, for every stack.
 *
 * cgroup_skb programs on ingress and egress follow each socket's TLS records by
 * TCP sequence number (bpf/tls.h, the parser shared with replay) while, and only
 * while, the socket is in its handshake. A socket becomes a TLS socket when its
 * first payload byte in either direction starts a ClientHello; its state lives in
 * socket storage and dies with it. Once the handshake is complete, failed or lost,
 * each further packet costs one storage lookup.
 *
 * Out go: the start, the bytes of the ClientHello and of the server's first flight
 * (user space reads SNI, ALPN and versions from them with the same parser), and the
 * end: done, an alert, or a desync.
 *
 * h2c: a socket whose first payload in a direction is the HTTP/2 client preface,
 * or a SETTINGS frame (a server's preface), is walked frame by frame in both
 * directions for as long as it lives (bpf/h2.h, the walker shared with replay):
 * the segment's bytes are copied to a window 1 KiB at a time, and runs of frames
 * whose payload nobody reads (DATA, HEADERS, WINDOW_UPDATE, ...) are taken header
 * and payload at once, up to 16 a call, read where they are in the window, the
 * walk's state in registers; the few payloads that are read (GOAWAY, RST_STREAM,
 * SETTINGS) go unit by unit. Out go its running totals (bpf/h2_events.h) when it turns out to be
 * HTTP/2, on GOAWAY, RST_STREAM, desync, every H2_UPDATE_STREAMS new streams, and
 * on every FIN or RST it sends or receives (the last one is the final count).
 *
 * The programs always return 1: they observe, they never drop.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tls.h"
#include "tls_events.h"
#include "h2_events.h"
#include "conn.h"
#include "maps.bpf.h"
#include "hold.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6
#define AF_INET 2
#define AF_INET6 10
#define ALLOW 1

#define TLS_RING_BYTES (4 * 1024 * 1024)
#define H2_RING_BYTES (1024 * 1024)

/*
 * A length the verifier can bound: for 1 <= n <= pow2 this is n, and the mask
 * shows the range [1, pow2] in the very instruction (clang may otherwise test a
 * 32-bit copy of n and pass the unchecked 64-bit one to the helper).
 */
#define BOUNDED_LEN(n, pow2) ((((n) - 1) & ((pow2) - 1)) + 1)

/* Chunks of one segment walked per packet, TLS_BUF_MAX each: a handshake flight
 * larger than that in one skb is not followed further (it desyncs, and says so). */
#define SEG_CHUNKS 2
/* Data events per packet and direction at most: the capture windows are small. */
#define DATA_EVENTS_MAX (TLS_CAPTURE_CLIENT / TLS_CHUNK + 1)

/* Set by the loader when conn_sk_info (hold.bpf.h) is the lifecycle programs' own socket
 * storage (tp_btf): then a socket without an entry there predates connscope. */
const volatile bool midway_check = false;
/* The lifecycle programs run lean (bpf/conn.bpf.c): a healthy socket has no
 * sk_info, and `preexisting` tells a socket older than connscope instead. */
const volatile bool lean = false;

/* cg_counts below is the lifecycle programs' (shared by the loader): handshakes
 * are counted there, per cgroup, whatever crosses. */
const volatile bool kcounts = false;
/* Only problems cross (daemon, top): a complete handshake stays in the kernel, its
 * hello bytes in tls_hello until it ends (bpf/tls_events.h). Needs kcounts. */
const volatile bool quiet = false;

/* Lean: the start-up snapshot's lowest and highest cookie, set by the loader with
 * bpf/conn.bpf.c's (every cookie until then: the lookup decides). A payload of a
 * socket outside the range is no snapshot socket's, and costs no lookup. */
__u64 pre_lo SEC(".data") = 0;
__u64 pre_hi SEC(".data") = ~0ull;

/* Frame-walk steps per segment (a frame header or a counted payload is one step,
 * a skipped payload one more): a 64 KiB loopback segment of 13-byte frames needs
 * about 5,000. A segment with more is not followed further (a desync, counted). */
#define H2_SEG_STEPS 16384

enum {
	TS_PROGRESS = 0,  /* TLS handshake followed */
	TS_OVER = 1,      /* nothing more to follow: one lookup per packet */
	TS_H2 = 2,        /* h2c frames followed */
};

/* A cache line between a socket's two directions' h2c state, whatever its place. */
#define H2_APART 64
struct h2_dir_apart {
	struct h2_dir d;
	__u8 _apart[H2_APART];
};

struct tls_sock {
	__u64 start_ns;
	struct tls_stream st[2];  /* indexed by enum tls_dir */
	struct tls_hs hs;
	__u32 base_seq[2];        /* sequence number of each direction's first byte */
	__u8 we_are_client;
	__u8 state;               /* TS_* */
	__u8 _pad[6];
	/* h2c (TS_H2): the connection, which both directions read, then each
	 * direction's own state (indexed H2_LOCAL_OUT (egress) / H2_LOCAL_IN), which
	 * it writes at every segment. Egress and ingress run on different CPUs (the
	 * sender's and the peer's): a cache line apart, whatever the element's
	 * alignment, so that neither takes the other's line away. */
	struct h2_conn h2;
	__u8 _apart[H2_APART];
	struct h2_dir_apart h2d[2];
};

/* The storage element (the kernel's 72 bytes, then this) fits a 512-byte slab. */
_Static_assert(sizeof(struct tls_sock) <= 512 - 72, "tls_sock: one 512-byte element");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tls_sock);
} tls_storage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TLS_RING_BYTES);
} tls_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, H2_RING_BYTES);
} h2_events SEC(".maps");

/* conn_sk_info, the lifecycle programs' per-socket state, is hold.bpf.h's (shared
 * by the loader when midway_check is set). */

/* bpf/conn.bpf.c's, shared by the loader (lean mode). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, __u8);
} conn_preexisting SEC(".maps");

/* bpf/conn.bpf.c's per-cgroup counts, shared by the loader (kcounts). */
#include "cg_counts.bpf.h"

/* Quiet mode: handshakes in progress, by socket cookie (bpf/tls_events.h). Not
 * preallocated: an entry lives from a ClientHello to the handshake's end. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, TLS_HELLO_MAX);
	__type(key, __u64);
	__type(value, struct tls_hello);
} tls_hello SEC(".maps");

/* Quiet mode: complete handshakes, for a record that crosses later (tls_events.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLS_DONE_MAX);
	__type(key, __u64);
	__type(value, struct tls_done);
} tls_done SEC(".maps");

/* A new tls_hello is built here (too large for the stack), then copied in. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_hello);
} hello_tmpl SEC(".maps");

/* The state a new h2c socket starts from, built per CPU and copied in by the
 * kernel when it creates the storage. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_sock);
} h2_template SEC(".maps");

/* Per-CPU scratch: a segment's bytes for the parser, and the walker's output. */
struct scratch {
	__u8 buf[TLS_BUF_MAX];
	struct tls_walk walk;
	/* Quiet mode: a complete handshake's hellos. The ServerHello first: the
	 * parser's stores into its 32-byte alpn[] are masked to 128 for the verifier
	 * (a no-op at run time), and 6.1's verifier wants those 128 bytes inside. */
	struct tls_server_hello sh;
	struct tls_client_hello ch;
	struct tls_done done;        /* built here: off the stack of the chain of calls */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

/* Counters shared with user space (index enum cs_counter in conn.h, plus these). */
enum { TLS_CNT_EVENTS = 0, TLS_CNT_LOST = 1, TLS_CNT_MAP_FULL = 2, TLS_CNT_DESYNC = 3,
       TLS_CNT_H2_DESYNC = 4, TLS_CNT_MAX = 5 };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TLS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tls_counters SEC(".maps");

/* Where this segment's TCP payload is: the skb starts at the network header. */
struct seg {
	__u8 saddr[16], daddr[16]; /* first: 8-byte aligned, copied in two loads */
	__u32 off;        /* payload offset in the skb */
	__u32 len;        /* payload bytes */
	__u32 seq;        /* sequence number of the first payload byte */
	__u16 family;
	__u16 sport, dport; /* as on the wire, host order */
	__u8 tcp_flags;
};

#define TCP_FIN 0x01
#define TCP_RST 0x04

/* The TCP header's fields a segment needs, from tcp[0..20). */
static __always_inline int seg_tcp(struct __sk_buff *skb, struct seg *s, const __u8 *tcp,
				   __u32 ip_len)
{
	s->sport = (__u16)tcp[0] << 8 | tcp[1];
	s->dport = (__u16)tcp[2] << 8 | tcp[3];
	s->seq = (__u32)tcp[4] << 24 | (__u32)tcp[5] << 16 | (__u32)tcp[6] << 8 | tcp[7];
	s->tcp_flags = tcp[13];
	s->off = ip_len + (tcp[12] >> 4) * 4;
	if (s->off < ip_len + 20 || s->off > skb->len)
		return -1;
	s->len = skb->len - s->off;  /* 0 for a bare FIN or RST */
	return 0;
}

/* parse_seg's common case: IPv4 headers in the skb's linear part, read in place
 * (no helper call, no copy). 1 when they are not there: the caller copies. */
static __always_inline int parse_seg_direct(struct __sk_buff *skb, struct seg *s)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data;
	__u8 *tcp;
	__u32 ip_len;

	if (skb->protocol != bpf_htons(ETH_P_IP) || (void *)(ip + 1) > end)
		return 1;
	ip_len = (ip->ihl & 0xf) * 4;
	tcp = data + (ip_len & 0x3c);
	if ((void *)(tcp + 20) > end)
		return 1;
	if (ip->protocol != IPPROTO_TCP || (ip->frag_off & bpf_htons(0x3fff)) || ip_len < 20)
		return -1;  /* fragments: no */
	s->family = AF_INET;
	__builtin_memcpy(s->saddr, &ip->saddr, 4);
	__builtin_memcpy(s->daddr, &ip->daddr, 4);
	return seg_tcp(skb, s, tcp, ip_len);
}

static __always_inline int parse_seg(struct __sk_buff *skb, struct seg *s)
{
	__u8 tcp[20];
	__u32 ip_len;
	int rc;

	__builtin_memset(s, 0, sizeof(*s));
	rc = parse_seg_direct(skb, s);
	if (rc <= 0)
		return rc;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 ip[20];

		if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)))
			return -1;
		if (ip[9] != IPPROTO_TCP || (ip[6] & 0x3f) || ip[7]) /* fragments: no */
			return -1;
		ip_len = (ip[0] & 0x0f) * 4;
		s->family = AF_INET;
		__builtin_memcpy(s->saddr, &ip[12], 4);
		__builtin_memcpy(s->daddr, &ip[16], 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 ip6[40];

		if (bpf_skb_load_bytes(skb, 0, ip6, sizeof(ip6)))
			return -1;
		if (ip6[6] != IPPROTO_TCP) /* extension headers: not followed */
			return -1;
		ip_len = 40;
		s->family = AF_INET6;
		__builtin_memcpy(s->saddr, &ip6[8], 16);
		__builtin_memcpy(s->daddr, &ip6[24], 16);
	} else {
		return -1;
	}
	if (ip_len < 20 || bpf_skb_load_bytes(skb, ip_len, tcp, sizeof(tcp)))
		return -1;
	return seg_tcp(skb, s, tcp, ip_len);
}

/* A segment's endpoints as the socket sees them: local first, as in the
 * connection edges. */
static __always_inline void local_first(const struct seg *s, bool egress, __u16 *sport,
					__u16 *dport, __u8 *saddr, __u8 *daddr)
{
	*sport = egress ? s->sport : s->dport;
	*dport = egress ? s->dport : s->sport;
	__builtin_memcpy(saddr, egress ? s->saddr : s->daddr, 16);
	__builtin_memcpy(daddr, egress ? s->daddr : s->saddr, 16);
}

static __always_inline struct tls_event *event_new(struct __sk_buff *skb, struct tls_sock *ts,
						    const struct seg *s, bool egress, __u8 type)
{
	struct tls_event *e = bpf_ringbuf_reserve(&tls_events, sizeof(*e), 0);

	if (!e) {
		cs_count(&tls_counters, TLS_CNT_LOST);
		return NULL;
	}
	/* Only the header part is written for non-data events; data[] is left as is
	 * (user space reads it only for TLS_EV_DATA, up to len). */
	__builtin_memset(e, 0, offsetof(struct tls_event, data));
	e->ts_ns = bpf_ktime_get_ns();
	e->cookie = bpf_get_socket_cookie(skb);
	e->cgroup_id = bpf_skb_cgroup_id(skb);
	e->family = s->family;
	local_first(s, egress, &e->sport, &e->dport, e->saddr, e->daddr);
	e->type = type;
	e->we_are_client = ts->we_are_client;
	e->version = ts->hs.version;
	return e;
}

static __always_inline void event_send(struct tls_event *e)
{
	/* No wake-up (see cs_wake_flags): on the packets that end an event, a
	 * handshake load spent most of the egress program's time in them. */
	bpf_ringbuf_submit(e, cs_wake_flags(&tls_events, TLS_RING_BYTES / 4, sizeof(*e)));
	cs_count(&tls_counters, TLS_CNT_EVENTS);
}

/* The counts of the packet's socket's cgroup (kcounts), the entry made on first
 * use; NULL without kcounts, or when the map is full (counted). */
static __always_inline struct cs_cg_counts *tls_cg_counts(struct __sk_buff *skb)
{
	return kcounts ? cs_cg_counts_of(bpf_skb_cgroup_id(skb), &tls_counters,
					 TLS_CNT_MAP_FULL) : NULL;
}

/* The socket's inode, which names its holder later (/proc/<pid>/fd) when a finding
 * needs it; 0 for a server's child not accepted yet. */
static __always_inline __u64 sock_ino(struct bpf_sock *sk)
{
	struct tcp_sock *ktp = bpf_skc_to_tcp_sock(sk);

	return ktp ? ktp->inet_conn.icsk_inet.sk.sk_socket->file->f_inode->i_ino : 0;
}

/* Quiet mode: the handshake waits in tls_hello instead of crossing as it starts. */
static __always_inline void hello_new(struct __sk_buff *skb, struct tls_sock *ts,
				      const struct seg *s, bool egress, __u64 ino)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u32 zero = 0;
	struct tls_hello *h = bpf_map_lookup_elem(&hello_tmpl, &zero);

	if (!h)
		return;
	h->start_ns = ts->start_ns;
	h->cgroup_id = bpf_skb_cgroup_id(skb);
	h->ino = ino;
	h->ch_have = 0;
	h->sh_have = 0;
	h->family = s->family;
	local_first(s, egress, &h->sport, &h->dport, h->saddr, h->daddr);
	h->we_are_client = egress;
	h->flags = 0;
	if (bpf_map_update_elem(&tls_hello, &cookie, h, BPF_ANY))
		cs_count(&tls_counters, TLS_CNT_MAP_FULL);
}

/* One data event of capture(): the loop state, on capture()'s stack. */
struct capture_ctx {
	struct __sk_buff *skb;
	struct tls_sock *ts;
	struct tls_hello *hello;  /* quiet mode: the bytes go here, not on the ring */
	struct seg *s;
	__u32 egress, dir, cap;
	__u32 stream_off; /* the segment's first payload byte in the direction's stream */
	__u32 done;       /* payload bytes of this segment already sent */
};

/* A bpf_loop body: verified once, whatever the number of events (a plain loop
 * of reserve-and-copy made the 6.1 verifier walk past its 1M instructions). */
static long capture_step(__u32 i, void *arg)
{
	struct capture_ctx *c = arg;
	struct seg *s = c->s;
	struct tls_event *e;
	__u32 at, n;

	if (!s || !c->ts)
		return 1;
	at = c->stream_off + c->done;
	if (at >= c->cap || c->done >= s->len)
		return 1;
	n = s->len - c->done;
	if (n > c->cap - at)
		n = c->cap - at;
	if (n > TLS_CHUNK)
		n = TLS_CHUNK;
	if (c->hello) {
		struct tls_hello *h = c->hello;
		__u32 off = s->off + c->done;

		/* at < the window (a power of two): the mask shows the verifier. */
		if (c->dir == TLS_DIR_C2S) {
			at &= TLS_CAPTURE_CLIENT - 1;
			if (bpf_skb_load_bytes(c->skb, off, h->ch + at, BOUNDED_LEN(n, TLS_CHUNK)))
				return 1;
			if (at + n > h->ch_have)
				h->ch_have = at + n;
		} else {
			at &= TLS_CAPTURE_SERVER - 1;
			if (bpf_skb_load_bytes(c->skb, off, h->sh + at, BOUNDED_LEN(n, TLS_CHUNK)))
				return 1;
			if (at + n > h->sh_have)
				h->sh_have = at + n;
		}
		c->done += n;
		return 0;
	}
	e = event_new(c->skb, c->ts, s, c->egress, TLS_EV_DATA);
	if (!e)
		return 1;
	e->dir = c->dir;
	e->off = at;
	e->len = n;
	if (!n || bpf_skb_load_bytes(c->skb, s->off + c->done, e->data, BOUNDED_LEN(n, TLS_CHUNK))) {
		bpf_ringbuf_discard(e, 0);
		return 1;
	}
	event_send(e);
	c->done += n;
	return 0;
}

/*
 * Copy the part of this segment that falls in the direction's capture window
 * into data events, one bpf_loop step each. A global function: verified once,
 * on its own.
 */
__noinline int capture(struct __sk_buff *skb, struct tls_sock *ts, struct seg *s, __u32 egress_dir,
		       __u32 stream_off)
{
	struct capture_ctx c = { .skb = skb, .ts = ts, .s = s, .stream_off = stream_off };

	if (!skb || !ts || !s)
		return 0;
	c.egress = egress_dir & 1;
	c.dir = (egress_dir >> 1) & 1;
	c.cap = c.dir == TLS_DIR_C2S ? TLS_CAPTURE_CLIENT : TLS_CAPTURE_SERVER;
	if (stream_off >= c.cap)
		return 0;  /* past both windows: nothing to keep */
	if (quiet) {
		__u64 cookie = bpf_get_socket_cookie(skb);

		c.hello = bpf_map_lookup_elem(&tls_hello, &cookie);
		if (!c.hello)
			return 0;  /* not kept (the map was full: counted) */
	}
	bpf_loop(DATA_EVENTS_MAX, capture_step, &c, 0);
	return 0;
}

static __always_inline void release(struct bpf_sock *sk);

/* n bytes (n <= TLS_CAPTURE_CLIENT) of a kept hello into the parser's buffer,
 * 8 at a time: the parser's offsets are bounded by the buffer, not by the map
 * value the bytes are kept in. */
static __always_inline void hello_copy(__u8 *dst, const __u8 *src, __u32 n)
{
	for (__u32 i = 0; i < TLS_CAPTURE_CLIENT / 8; i++) {
		if (i * 8 >= n)
			break;
		*(__u64 *)(dst + i * 8) = *(const __u64 *)(src + i * 8);
	}
}

/* A kept hello (have bytes of its window of cap) into the parser's buffer: the end
 * of its first record's bytes there, or 0 if that is no handshake record. */
static __always_inline __u32 hello_load(__u8 *buf, const __u8 *kept, __u32 have, __u32 cap)
{
	__u32 end;

	if (have > cap)
		have = cap;
	hello_copy(buf, kept, have);
	if (have < TLS_REC_HDR_LEN + 4 || buf[0] != 22 /* handshake */)
		return 0;
	end = TLS_REC_HDR_LEN + ((__u32)buf[3] << 8 | buf[4]);
	return end < have ? end : have;
}

/*
 * Quiet mode: the ALPN of a complete handshake, read in the kernel from the hellos
 * kept in tls_hello (which do not cross), by the parser user space uses: the
 * offered names, whether h2 is one of them, and the server's choice where the
 * ServerHello shows it (TLS <= 1.2). A global function: the parsers' ~110K
 * instructions are verified once, and run once per handshake.
 */
__noinline int hello_alpn(struct tls_hello *h, struct scratch *sc, struct tls_done *d)
{
	__u32 end, i;
	char c;

	if (!h || !sc || !d)
		return 0;
	end = hello_load(sc->buf, h->ch, h->ch_have, TLS_CAPTURE_CLIENT);
	if (!end || tls_client_hello_alpn_at(sc->buf, TLS_REC_HDR_LEN, end, &sc->ch) != TLS_OK)
		return 0;
	d->alpn_flags |= TLS_DONE_ALPN_READ;
	if (!(sc->ch.flags & TLS_CH_ALPN))
		return 0;
	if (sc->ch.alpn[TLS_DONE_OFFERED_MAX - 1])
		d->alpn_flags |= TLS_DONE_ALPN_CUT;
	for (i = 0; i < TLS_DONE_OFFERED_MAX - 1; i++)
		d->alpn_offered[i] = sc->ch.alpn[i];
	/* "h2" as a whole name: at the start or after a comma, before one or the end. */
	for (i = 0; i < TLS_ALPN_MAX - 2; i++) {
		c = sc->ch.alpn[i];
		if (!c)
			break;
		if (c == 'h' && sc->ch.alpn[i + 1] == '2' &&
		    (sc->ch.alpn[i + 2] == ',' || !sc->ch.alpn[i + 2]) &&
		    (i == 0 || sc->ch.alpn[i - 1] == ',')) {
			d->alpn_flags |= TLS_DONE_ALPN_H2;
			break;
		}
	}
	/* TLS 1.3 sends the server's choice encrypted. */
	if (!d->version || d->version > 0x0303)
		return 0;
	end = hello_load(sc->buf, h->sh, h->sh_have, TLS_CAPTURE_SERVER);
	if (!end || tls_parse_server_hello_at(sc->buf, TLS_REC_HDR_LEN, end, &sc->sh) != TLS_OK)
		return 0;
	d->alpn_flags |= TLS_DONE_SEL_SEEN;
	if (sc->sh.flags & TLS_SH_ALPN)
		for (i = 0; i < TLS_DONE_SEL_MAX - 1; i++)
			d->alpn[i] = sc->sh.alpn[i];
	return 0;
}

/*
 * The handshake ended (type: TLS_EV_DONE, _ALERT or _DESYNC): counted in its
 * cgroup, out of tls_hello, and reported. In quiet mode a complete one is not
 * reported: its close no longer needs to cross either, unless user space reported
 * it already (a timeout) and waits for its end; a failed one stays in tls_hello
 * until user space takes it.
 */
static __always_inline void finish(struct __sk_buff *skb, struct bpf_sock *sk,
				   struct tls_sock *ts, const struct seg *s, bool egress,
				   __u8 type, __u8 dir, struct scratch *sc)
{
	struct cs_cg_counts *c = tls_cg_counts(skb);
	__u64 now = bpf_ktime_get_ns(), us = (now - ts->start_ns) / 1000, cookie;
	struct tls_hello *h;
	struct tls_event *e;

	ts->state = TS_OVER;
	if (type == TLS_EV_DESYNC)
		cs_count(&tls_counters, TLS_CNT_DESYNC);
	if (c) {
		if (type == TLS_EV_DONE) {
			c->tls_ok++;
			c->tls_us[cs_log2_slot(us, CS_HIST_SLOTS) & (CS_HIST_SLOTS - 1)]++;
			c->tls_us_sum += us;
		} else if (type == TLS_EV_ALERT) {
			c->tls_alert++;
		} else {
			c->tls_desync++;
		}
	}
	cookie = bpf_get_socket_cookie(skb);
	h = bpf_map_lookup_elem(&tls_hello, &cookie);
	if (!quiet) {
		/* Every event crosses; the entry only told user space that the
		 * handshake was still on (should its end event be lost). */
		if (h)
			bpf_map_delete_elem(&tls_hello, &cookie);
	} else if (type == TLS_EV_DONE && !(h && (h->flags & TLS_HELLO_REPORTED))) {
		struct tls_done *d = &sc->done;

		__builtin_memset(d, 0, sizeof(*d));
		d->handshake_us = us;
		d->version = ts->hs.version;
		if (h) {
			hello_alpn(h, sc, d);
			bpf_map_delete_elem(&tls_hello, &cookie);
		}
		bpf_map_update_elem(&tls_done, &cookie, d, BPF_ANY);
		/* A connection that offered h2 stays held (start() held it): its
		 * close crosses, for the pod's HTTP/2 reuse window. */
		if (!(d->alpn_flags & TLS_DONE_ALPN_H2))
			release(sk);
		return;
	}
	e = event_new(skb, ts, s, egress, type);
	if (!e)
		return;
	e->ts_ns = now;
	e->dir = dir;
	e->alert_level = ts->hs.alert_level;
	e->alert_desc = ts->hs.alert_desc;
	e->alert_clear = ts->hs.alert_level != 0;
	event_send(e);
}

/*
 * The first payload byte of a connection? Egress: nothing of ours acknowledged
 * but the SYN, and this segment starts at snd_una. Ingress: nothing received
 * yet, and it starts at rcv_nxt. Only then can a ClientHello begin here.
 */
static __always_inline bool first_payload(struct bpf_tcp_sock *tp, const struct seg *s,
					  bool egress)
{
	if (egress)
		return tp->bytes_acked <= 1 && s->seq == tp->snd_una;
	return tp->bytes_received == 0 && s->seq == tp->rcv_nxt;
}

static __always_inline struct tls_sock *start(struct __sk_buff *skb, struct bpf_sock *sk,
					      struct bpf_tcp_sock *tp, const struct seg *s,
					      bool egress)
{
	struct cs_cg_counts *c;
	struct tls_sock *ts;
	struct tls_event *e;
	__u8 head[6];

	/* Record header and handshake type: a ClientHello's first segment has them. */
	if (s->len < sizeof(head) || bpf_skb_load_bytes(skb, s->off, head, sizeof(head)))
		return NULL;
	if (!tls_looks_like_client_hello(head, sizeof(head)))
		return NULL;
	ts = bpf_sk_storage_get(&tls_storage, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!ts) {
		cs_count(&tls_counters, TLS_CNT_MAP_FULL);
		return NULL;
	}
	__builtin_memset(ts, 0, sizeof(*ts));
	ts->start_ns = bpf_ktime_get_ns();
	ts->we_are_client = egress;
	tls_hs_init(&ts->hs);
	/* Client to server starts here; the other way starts where that side's
	 * sequence space is now (nothing was sent that way yet). */
	ts->base_seq[TLS_DIR_C2S] = s->seq;
	ts->base_seq[TLS_DIR_S2C] = egress ? tp->rcv_nxt : tp->snd_nxt;
	tls_stream_init(&ts->st[TLS_DIR_C2S], ts->base_seq[TLS_DIR_C2S]);
	tls_stream_init(&ts->st[TLS_DIR_S2C], ts->base_seq[TLS_DIR_S2C]);
	c = tls_cg_counts(skb);
	if (c)
		c->tls_started++;
	/* In progress: in quiet mode its whole state, else only the fact. */
	hello_new(skb, ts, s, egress, sock_ino(sk));
	if (quiet)
		return ts;
	e = event_new(skb, ts, s, egress, TLS_EV_START);
	if (e) {
		e->ts_ns = ts->start_ns;
		e->ino = sock_ino(sk);
		event_send(e);
	}
	return ts;
}

/*
 * The parser's two workhorses run as global functions: the verifier checks each
 * once, on its own, instead of once per record slot of every chunk it is inlined
 * into (inlined, the programs used 920K of the 1M instructions it allows).
 */
__noinline int walk_chunk(struct tls_stream *st, struct scratch *sc, __u32 seq, __u32 n)
{
	if (!st || !sc)
		return TLS_WALK_DESYNC;
	if (n > TLS_BUF_MAX)
		n = TLS_BUF_MAX;
	return tls_walk(st, seq, sc->buf, n, &sc->walk);
}

/* Record i of the last walk through the handshake rule (bpf/tls.h). */
__noinline int step_record(struct tls_hs *hs, struct scratch *sc, __u32 i, int from_client)
{
	struct tls_walk_rec *r;

	if (!hs || !sc || i >= TLS_WALK_MAX)
		return TLS_HS_PROGRESS;
	r = &sc->walk.rec[i];
	return tls_hs_step(hs, from_client, r->type, r->len, sc->buf, r->body_off, r->body_here);
}

/*
 * Walk this segment's records, chunk by chunk, and step the handshake. Returns
 * the event that ends the handshake (TLS_EV_DONE, _ALERT, _DESYNC) or 0. The one
 * caller reports it: reporting from inside the loops would make the verifier
 * walk the reporting code once per record slot.
 */
static __always_inline __u8 walk_segment(struct __sk_buff *skb, struct tls_sock *ts,
					 const struct seg *s, __u8 dir, struct scratch *sc)
{
	__u32 chunk, i, done = 0;

	for (chunk = 0; chunk < SEG_CHUNKS; chunk++) {
		__u32 n = s->len - done;
		int rc, pass;

		if (done >= s->len)
			return 0;
		if (n > TLS_BUF_MAX)
			n = TLS_BUF_MAX;
		if (!n || bpf_skb_load_bytes(skb, s->off + done, sc->buf, BOUNDED_LEN(n, TLS_BUF_MAX)))
			return 0;
		/* A chunk holds at most TLS_WALK_MAX headers per call; MORE asks for
		 * another call on the same bytes. Two calls cover handshake flights. */
		for (pass = 0; pass < 2; pass++) {
			rc = walk_chunk(&ts->st[dir & 1], sc, s->seq + done, n);
			/* Lost a boundary, or bytes were skipped (reordering on the
			 * wire): stop following rather than guess. */
			if (rc == TLS_WALK_DESYNC || rc == TLS_WALK_GAP)
				return TLS_EV_DESYNC;
			for (i = 0; i < TLS_WALK_MAX; i++) {
				int hs;

				if (i >= sc->walk.n)
					break;
				hs = step_record(&ts->hs, sc, i, dir == TLS_DIR_C2S);
				if (hs == TLS_HS_COMPLETE)
					return TLS_EV_DONE;
				if (hs == TLS_HS_FAILED)
					return TLS_EV_ALERT;
			}
			if (rc != TLS_WALK_MORE)
				break;
		}
		done += n;
	}
	return 0;
}

/* ---- h2c ----------------------------------------------------------------------------- */

static __always_inline void h2_event_send(struct __sk_buff *skb, struct tls_sock *ts,
					  const struct seg *s, bool egress, __u8 type)
{
	struct h2_event *e = bpf_ringbuf_reserve(&h2_events, sizeof(*e), 0);

	if (!e) {
		cs_count(&tls_counters, TLS_CNT_LOST);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->cookie = bpf_get_socket_cookie(skb);
	e->cgroup_id = bpf_skb_cgroup_id(skb);
	e->family = s->family;
	local_first(s, egress, &e->sport, &e->dport, e->saddr, e->daddr);
	e->type = type;
	e->source = H2_SRC_WIRE;
	__builtin_memcpy(&e->c, &ts->h2, sizeof(e->c));
	h2_conn_totals(&e->c, &ts->h2d[0].d, &ts->h2d[1].d);
	bpf_ringbuf_submit(e, cs_wake_flags(&h2_events, H2_RING_BYTES / 4, sizeof(*e)));
	cs_count(&tls_counters, TLS_CNT_EVENTS);
}

/* Bytes of a segment copied out at once: frame headers are read from this window,
 * one skb load per window instead of one per header (small frames come many to a
 * segment). A power of two; the window starts at the header that needs it. 1 KiB
 * rather than 256 bytes: 3% less time a packet on h2load's small responses. */
#define H2_WIN 1024

/* Where a segment's walk is: shared by the bpf_loop callback and the global
 * functions it calls (a global function takes five arguments at most). */
struct h2_pos {
	__u32 off;        /* next payload byte, as an skb offset */
	__u32 end;        /* skb->len */
	__u32 win_off, win_len; /* sc->buf[0..H2_WIN) holds skb bytes [win_off, +win_len) */
	__u32 notes;      /* the walker's notes, ORed */
};

struct h2_walk_ctx {
	struct __sk_buff *skb;
	struct tls_sock *ts;
	struct scratch *sc;
	__u32 dir;
	struct h2_pos p;
};

/* The n bytes at the walk position are in the window (loaded there if not).
 * Nonzero if the skb would not give them. */
static __always_inline int h2_window(struct h2_walk_ctx *w, __u32 n)
{
	struct h2_pos *p = &w->p;
	__u32 len = p->end - p->off;

	if (p->off >= p->win_off && p->off - p->win_off + n <= p->win_len)
		return 0;
	if (len > H2_WIN)
		len = H2_WIN;
	if (bpf_skb_load_bytes(w->skb, p->off, w->sc->buf, BOUNDED_LEN(len, H2_WIN)))
		return 1;
	p->win_off = p->off;
	p->win_len = len;
	return 0;
}

/*
 * The frame state machine for one unit (h2_want's n bytes, in the window at the
 * walk position), as a global function: verified once on its own, not again
 * inside every pass the verifier makes over the loop callback.
 */
__noinline int h2_feed_step(struct tls_sock *ts, struct scratch *sc, __u32 dir,
			    struct h2_pos *p, __u32 n)
{
	if (!ts || !sc || !p)
		return 0;
	dir &= 1;
	/* h2_feed reads at most 9 bytes; the mask keeps them in the buffer. */
	p->notes |= h2_feed(&ts->h2, &ts->h2d[dir].d, &ts->h2d[dir ^ 1].d, dir,
			    sc->buf + ((p->off - p->win_off) & (H2_WIN - 1)), n);
	p->off += n;
	return 0;
}

/* Frames per h2_frames call at most (a bounded loop the verifier walks). */
#define H2_BURST 16

/*
 * A run of whole frames at the walk position whose payload nobody reads
 * (h2_take_frames, at most H2_BURST), read where they are in the window, never
 * copied. The walk position moves past them; their notes are ORed into p->notes.
 * Returns the bytes taken: 0 when the first frame is of another kind (the unit
 * steps take it). A global function: verified once.
 */
__noinline __u32 h2_frames(struct tls_sock *ts, struct scratch *sc, __u32 dir, struct h2_pos *p)
{
	__u32 rel, took;

	if (!ts || !sc || !p)
		return 0;
	dir &= 1;
	rel = p->off - p->win_off;
	if (p->off < p->win_off || rel + H2_FRAME_HDR_LEN > p->win_len ||
	    p->end - p->off < H2_FRAME_HDR_LEN)
		return 0;
	took = h2_take_frames(&ts->h2, &ts->h2d[dir].d, dir, sc->buf, rel, p->win_len,
			      p->end - p->off, H2_WIN - 1, H2_BURST, &p->notes);
	p->off += took;
	return took;
}

/* The common step: whole frames at the walk position, with the payloads they skip
 * (h2_frames, read in the window). The bytes taken: 0 when no such frame is there;
 * -1 when the skb would not give the window. */
static __always_inline int h2_run(struct h2_walk_ctx *w, const struct h2_dir *d, __u32 dir)
{
	if (d->unit != H2_U_HDR || d->have || w->p.end - w->p.off < H2_FRAME_HDR_LEN)
		return 0;
	if (h2_window(w, H2_FRAME_HDR_LEN))
		return -1;
	return h2_frames(w->ts, w->sc, dir, &w->p);
}

/* One walker step: a bpf_loop callback, verified once whatever the frame count. */
static long h2_step(__u32 i, void *arg)
{
	struct h2_walk_ctx *w = arg;
	struct tls_sock *ts = w->ts;
	struct h2_dir *d;
	__u32 n, dir = w->dir & 1;
	int took;

	if (!ts || !w->sc || w->p.off >= w->p.end)
		return 1;
	d = &ts->h2d[dir].d;
	took = h2_run(w, d, dir);
	if (took)
		return took < 0;
	if (h2_want(d, w->p.end - w->p.off, &n)) {
		if (!n || n > H2_PIECE_MAX || h2_window(w, n))
			return 1;
	} else if (!n) {
		return 1;
	}
	h2_feed_step(ts, w->sc, dir, &w->p, n);
	return 0;
}

/* Walk this segment's payload in direction dir; returns the walker's notes. */
static __always_inline __u32 h2_walk_segment(struct __sk_buff *skb, struct tls_sock *ts,
					     const struct seg *s, __u32 dir)
{
	struct h2_dir *d = &ts->h2d[dir & 1].d;
	struct h2_walk_ctx w = { .skb = skb, .ts = ts, .dir = dir };
	__u32 skip, zero = 0;
	int at;

	if (!s->len)
		return 0;
	w.sc = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!w.sc)
		return 0;
	at = h2_at(d, s->seq, s->len, &skip);
	if (at == H2_AT_GAP)  /* bytes the walker never saw: reordered or lost */
		return h2_desync(&ts->h2, d);
	if (at != H2_AT_OK)
		return 0;
	w.p.off = s->off + skip;
	w.p.end = s->off + s->len;
	/* The common segment, whole frames whose payloads nobody reads, in one call:
	 * the loop only for what is left. */
	if (h2_run(&w, d, dir & 1) >= 0 && w.p.off < w.p.end)
		bpf_loop(H2_SEG_STEPS, h2_step, &w, 0);
	/* Steps ran out, or a load failed, before the segment's end: the boundary is
	 * lost for good. */
	if (w.p.off < w.p.end && !h2_dir_stopped(d))
		w.p.notes |= h2_desync(&ts->h2, d);
	return w.p.notes;
}

/*
 * One segment of an h2c connection. A global function: the verifier checks it,
 * and the walker's bpf_loop callback inside it, once, instead of once per caller
 * it would be inlined into. flags: H2SEG_EGRESS, and H2SEG_FIRST when the segment
 * is its direction's first payload (the caller reads that from the TCP socket,
 * which a global function cannot be given).
 */
#define H2SEG_EGRESS 1
#define H2SEG_FIRST 2
__noinline int h2_segment(struct __sk_buff *skb, struct tls_sock *ts, struct seg *s, __u32 flags)
{
	bool egress = flags & H2SEG_EGRESS;
	__u32 dir = egress ? H2_LOCAL_OUT : H2_LOCAL_IN;
	struct h2_dir *d;
	__u32 streams, notes = 0;

	if (!skb || !ts || !s)
		return 0;
	d = &ts->h2d[dir].d;
	streams = d->streams;
	if (!(d->flags & H2_D_STARTED) && !h2_dir_stopped(d) && s->len) {
		/* This direction's first payload starts it; one we did not see
		 * from its start is never walked. */
		if (flags & H2SEG_FIRST)
			h2_dir_init(d, s->seq);
		else
			notes = h2_desync(&ts->h2, d);
	}
	notes |= h2_walk_segment(skb, ts, s, dir);
	if (notes & H2_N_DESYNC)
		cs_count(&tls_counters, TLS_CNT_H2_DESYNC);
	if (!(ts->h2.flags & H2_C_H2)) {
		/* Not (yet) HTTP/2: nothing to tell. A direction that is not stops
		 * everything. */
		if (ts->h2.flags & H2_C_NOT_H2)
			ts->state = TS_OVER;
		return 0;
	}
	if (notes & H2_N_PREFACE)
		h2_event_send(skb, ts, s, egress, H2_EV_START);
	if (notes & H2_N_GOAWAY)
		h2_event_send(skb, ts, s, egress, H2_EV_GOAWAY);
	if (notes & H2_N_DESYNC)
		h2_event_send(skb, ts, s, egress, H2_EV_DESYNC);
	if (s->tcp_flags & (TCP_FIN | TCP_RST))
		h2_event_send(skb, ts, s, egress, H2_EV_END);
	else if ((notes & H2_N_RST) ||
		 streams / H2_UPDATE_STREAMS != d->streams / H2_UPDATE_STREAMS)
		h2_event_send(skb, ts, s, egress, H2_EV_UPDATE);
	return 0;
}


/*
 * A socket's first payload in this direction starts an h2c walk. Both directions
 * may start at once on two CPUs (a server sends its SETTINGS without waiting for
 * the preface): the storage is created already initialised, from a template, so
 * the CPU that loses the race (its create fails, the element exists) finds a whole
 * state, never a half-written one.
 */
static __always_inline struct tls_sock *h2_start(struct __sk_buff *skb, struct bpf_sock *sk,
						 const struct seg *s)
{
	struct tls_sock *ts, *tmpl;
	__u32 zero = 0;

	tmpl = bpf_map_lookup_elem(&h2_template, &zero);
	if (!tmpl)
		return NULL;
	__builtin_memset(tmpl, 0, sizeof(*tmpl));
	tmpl->start_ns = bpf_ktime_get_ns();
	tmpl->state = TS_H2;
	h2_conn_init(&tmpl->h2);
	h2_dir_init_unstarted(&tmpl->h2d[0].d);
	h2_dir_init_unstarted(&tmpl->h2d[1].d);
	ts = bpf_sk_storage_get(&tls_storage, sk, tmpl, BPF_SK_STORAGE_GET_F_CREATE);
	if (!ts)
		ts = bpf_sk_storage_get(&tls_storage, sk, NULL, 0);
	if (!ts || ts->state != TS_H2) {
		cs_count(&tls_counters, TLS_CNT_MAP_FULL);
		return NULL;
	}
	return ts;
}

/*
 * A socket established before connscope attached, seen past its first payload:
 * its frame boundaries cannot be known. If its first segment seen starts with what
 * can only be an HTTP/2 frame header, say so (one event, a desync: never a stream
 * counted from the middle). Either way it is looked at once.
 */
static __always_inline void midway(struct __sk_buff *skb, struct bpf_sock *sk, bool egress,
				   struct seg *s)
{
	struct tls_sock *ts, *tmpl;
	__u8 h[H2_FRAME_HDR_LEN];
	__u32 zero = 0, len, stream;

	/* Born under us: its first payload was seen, and was neither. Lean, a
	 * healthy socket has no sk_info: the start-up snapshot's list says. */
	if (lean) {
		__u64 cookie = bpf_get_socket_cookie(skb);

		if (cookie < pre_lo || cookie > pre_hi ||
		    bpf_sk_storage_get(&conn_sk_info, sk, NULL, 0) ||
		    !bpf_map_lookup_elem(&conn_preexisting, &cookie))
			return;
	} else if (bpf_sk_storage_get(&conn_sk_info, sk, NULL, 0)) {
		return;
	}
	if (parse_seg(skb, s) || !s->len)
		return;  /* wait for a segment with payload */
	tmpl = bpf_map_lookup_elem(&h2_template, &zero);
	if (!tmpl)
		return;
	__builtin_memset(tmpl, 0, sizeof(*tmpl));
	tmpl->state = TS_OVER;
	ts = bpf_sk_storage_get(&tls_storage, sk, tmpl, BPF_SK_STORAGE_GET_F_CREATE);
	if (!ts || s->len < sizeof(h) || bpf_skb_load_bytes(skb, s->off, h, sizeof(h)))
		return;
	len = (__u32)h[0] << 16 | (__u32)h[1] << 8 | h[2];
	stream = (__u32)h[5] << 24 | (__u32)h[6] << 16 | (__u32)h[7] << 8 | h[8];
	if (h[3] > H2_CONTINUATION || (stream & 0x80000000) ||
	    !h2_frame_ok(len, h[3], h[4], stream, H2_DEFAULT_MAX_FRAME))
		return;
	h2_conn_init(&ts->h2);
	ts->h2.flags = H2_C_MIDWAY;
	ts->h2.desync = 1;
	cs_count(&tls_counters, TLS_CNT_H2_DESYNC);
	h2_event_send(skb, ts, s, egress, H2_EV_DESYNC);
}

/* User space keeps state for this socket from now on: its close must reach it. */
static __always_inline void hold(struct bpf_sock *sk)
{
	if (midway_check)
		cs_hold(sk, lean);
}

/* The handshake is over and healthy (quiet mode): user space keeps nothing for the
 * socket, and its close need not cross. Storage that hold() made (lean) goes. */
static __always_inline void release(struct bpf_sock *sk)
{
	struct sk_info *ci;

	if (!midway_check)
		return;
	ci = bpf_sk_storage_get(&conn_sk_info, sk, NULL, 0);
	if (!ci)
		return;
	if (lean && (ci->flags & CS_F_LATE))
		bpf_sk_storage_delete(&conn_sk_info, sk);
	else
		ci->flags &= ~CS_F_HELD;
}

/*
 * One segment of a TLS handshake followed (its bytes already kept by capture()):
 * its records walked, and the handshake's end reported. A global function: the
 * handshake's locals are off the stack of the h2c path, whose chain of calls is
 * deeper. (capture() is called beside it, not from it: the chain through both and
 * capture's loop would pass the verifier's 512 bytes on 6.1.)
 */
__noinline int tls_segment(struct __sk_buff *skb, struct tls_sock *ts, struct seg *s,
			   __u32 egress)
{
	struct bpf_sock *sk;
	struct scratch *sc;
	__u32 zero = 0;
	__u8 dir, end;

	if (!skb || !ts || !s)
		return 0;
	dir = (bool)egress == (bool)ts->we_are_client ? TLS_DIR_C2S : TLS_DIR_S2C;
	sc = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!sc || !(end = walk_segment(skb, ts, s, dir, sc)))
		return 0;
	sk = skb->sk;
	if (sk)
		sk = bpf_sk_fullsock(sk);
	if (sk)
		finish(skb, sk, ts, s, egress & 1, end, dir, sc);
	return 0;
}

/*
 * The payload length of a TCP segment, from its headers read in place (direct
 * packet access: no helper call). -1 where they are not in the linear part, or
 * the packet is not TCP: the caller takes the slow path, which says.
 */
static __always_inline int peek_payload(struct __sk_buff *skb, __u32 *len, __u8 *flags)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u32 ip_len, hdrs;
	__u8 *doff;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP)
			return -1;
		ip_len = (ip->ihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return -1;
		ip_len = 40;
	} else {
		return -1;
	}
	doff = data + (ip_len & 0x3c) + 12;
	if ((void *)(doff + 2) > end)
		return -1;
	hdrs = ip_len + (doff[0] >> 4) * 4;
	*flags = doff[1];
	*len = skb->len > hdrs ? skb->len - hdrs : 0;
	return 0;
}

static __always_inline int handle(struct __sk_buff *skb, bool egress)
{
	struct bpf_sock *sk = skb->sk;
	struct bpf_tcp_sock *tp;
	struct tls_sock *ts;
	struct seg s;
	__u32 plen = ~0u;
	__u8 dir, tflags = 0;

	if (!sk)
		return ALLOW;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != IPPROTO_TCP)
		return ALLOW;
	/* The common packet of the node: no payload (a handshake, an ACK). Only
	 * an h2c walk wants one, and only with a FIN or RST (its final count):
	 * nothing to look up. */
	if (!peek_payload(skb, &plen, &tflags) && !plen && !(tflags & (TCP_FIN | TCP_RST)))
		return ALLOW;
	ts = bpf_sk_storage_get(&tls_storage, sk, NULL, 0);
	if (ts && ts->state == TS_OVER)
		return ALLOW;       /* the steady state of a TLS connection */
	if (ts && ts->state == TS_H2) {
		__u32 flags = egress;

		if (parse_seg(skb, &s))
			return ALLOW;
		/* The TCP socket only until the direction has started. */
		if (!(ts->h2d[egress ? H2_LOCAL_OUT : H2_LOCAL_IN].d.flags & H2_D_STARTED)) {
			tp = bpf_tcp_sock(sk);
			if (tp && first_payload(tp, &s, egress))
				flags |= H2SEG_FIRST;
		}
		h2_segment(skb, ts, &s, flags);
		return ALLOW;
	}
	tp = bpf_tcp_sock(sk);
	if (!tp)
		return ALLOW;
	if (!ts) {
		__u8 head[H2_FRAME_HDR_LEN];

		/* A FIN or RST without payload, of a socket with nothing followed:
		 * nothing can start there, and a socket older than us waits for a
		 * payload. */
		if (!plen)
			return ALLOW;
		/* Cheap test first: past the first payload, nothing to start. */
		if (egress ? tp->bytes_acked > 1 : tp->bytes_received > 0) {
			if (midway_check)
				midway(skb, sk, egress, &s);
			return ALLOW;
		}
		if (parse_seg(skb, &s) || !s.len || !first_payload(tp, &s, egress))
			return ALLOW;
		ts = start(skb, sk, tp, &s, egress);
		if (ts)
			hold(sk);
		if (!ts) {
			/* Not TLS: perhaps h2c. */
			if (s.len < 6 || bpf_skb_load_bytes(skb, s.off, head,
							    s.len < sizeof(head) ? 6 : sizeof(head)))
				return ALLOW;
			if (!h2_looks_like_start(head, s.len < sizeof(head) ? 6 : sizeof(head)))
				return ALLOW;
			ts = h2_start(skb, sk, &s);
			if (ts) {
				hold(sk);
				h2_segment(skb, ts, &s, egress | H2SEG_FIRST);
			}
			return ALLOW;
		}
	} else if (parse_seg(skb, &s)) {
		return ALLOW;
	}
	dir = egress == (bool)ts->we_are_client ? TLS_DIR_C2S : TLS_DIR_S2C;
	capture(skb, ts, &s, (__u32)egress | (__u32)dir << 1, s.seq - ts->base_seq[dir & 1]);
	tls_segment(skb, ts, &s, egress);
	return ALLOW;
}

SEC("cgroup_skb/egress")
int cs_tls_egress(struct __sk_buff *skb)
{
	return handle(skb, true);
}

SEC("cgroup_skb/ingress")
int cs_tls_ingress(struct __sk_buff *skb)
{
	return handle(skb, false);
}
