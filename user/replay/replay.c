// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * connscope replay: capture files in, the live tool's records out.
 *
 * The live tool's aggregator (track*.c) is fed the very edges the BPF programs
 * would have sent, made here from packets, so a connection, a finding and a summary
 * mean the same thing in both, and the protocol work runs through the same shared
 * parsers (bpf/tls.h, bpf/h2.h) in the same way:
 *
 *   pcapin (files merged by packet time)
 *     -> flow table (client = the side that sent the SYN)
 *        -> lifecycle: SYN, SYN retransmits, SYN-ACK, FIN, RST -> cs_event edges
 *        -> reasm (each direction in order, gaps counted)
 *           -> TLS handshake rule (tls_walk, tls_hs_step) -> tls_event
 *           -> h2c frame walker (h2_walk_mem)                -> h2_event
 *           -> with --keylog: TLS records -> tlsdec -> plaintext -> h2 walker
 *   -> tracker on packet time (its clock) -> records
 *
 * Each TCP connection is seen from its client's side (one record per connection).
 * The one edge told from the server's side is CLOSE_WAIT when the client closed
 * first: the finding then names the server, which is the one leaking a socket.
 *
 * Memory is bounded by the open flows: a flow holds its counters, two reassembly
 * buffers of bounded size, and parser state only while a parser follows it. Closed
 * flows linger briefly as tombstones so their last ACKs do not start new flows.
 */
#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <pcap/pcap.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "conn.h"
#include "h2_events.h"
#include "kpods.h"
#include "output.h"
#include "pcapin.h"
#include "reasm.h"
#include "replay.h"
#include "tls.h"
#include "tls_events.h"
#include "tlsdec.h"
#include "track.h"
#include "kmap.h"
#include "util.h"

#define NS_PER_MS 1000000ull
#define NS_PER_SEC 1000000000ull
#define TICK_NS (100 * NS_PER_MS)      /* timers run every 100 ms of packet time */
#define TOMB_NS (10 * NS_PER_SEC)      /* a closed flow ignores stray packets this long */
#define SYN_DUP_NS (200 * NS_PER_MS)   /* a SYN again sooner is a capture duplicate */
#define DUP_NS (1 * NS_PER_MS)         /* the same segment again sooner: a duplicate */
#define MAX_FLOWS (1u << 20)           /* open flows at most; the least recently seen go */
#define FLIGHT_MAX 16384               /* hello bytes kept per direction for the key log */

enum flow_state { FS_SYN_SENT, FS_EST, FS_CLOSED };
enum flow_proto { FP_UNDECIDED, FP_TLS, FP_H2, FP_OFF };

/* One direction's TLS records being put together for decryption. */
struct rec_asm {
	uint8_t *buf;        /* TLS_REC_HDR_LEN + TLS_REC_MAX_LEN */
	uint32_t have, need; /* need 0: the header is not complete yet */
};

struct tls_flow {
	struct tls_stream st[2];
	struct tls_hs hs;
	uint32_t base[2];        /* sequence number of each direction's first byte */
	bool base_set[2];
	bool following;          /* the handshake rule still runs */
	/* --keylog */
	bool decrypt;            /* records are assembled and decrypted */
	uint8_t *flight[2];      /* each direction's first FLIGHT_MAX bytes, until keys */
	uint32_t flight_len[2];
	struct tlsdec *dec;
	bool dec_failed;
	bool ee_read;            /* the server's first protected handshake record was read */
	struct rec_asm ra[2];
	uint64_t plain_off[2];   /* application data bytes so far per direction */
};

struct flow {
	struct flow *hnext;                /* hash chain */
	struct flow *prev, *next;          /* LRU (open) or tombstone list (closed) */
	uint64_t cookie;
	uint8_t family;
	uint8_t state;                     /* enum flow_state */
	uint8_t proto;                     /* enum flow_proto */
	uint8_t close_cause;
	uint8_t flags;                     /* CS_F_* */
	uint8_t seen_first[2];             /* a direction's first payload was looked at */
	bool midway, h2_on, fin[2];
	bool cw_server;                    /* the server got the first FIN (cw_ns is its) */
	bool data_start;                   /* midway, but its data is seen from the start */
	bool registered;                   /* midway: told to the tracker as pre-existing */
	bool h2_sync[2];                   /* midway: the direction is walked from a frame header */
	uint8_t h2_tries[2];               /* midway: segments looked at for one */
	uint8_t caddr[16], saddr[16];      /* client, server */
	uint16_t cport, sport;
	uint16_t syn_retrans;
	uint16_t sk_err;
	uint32_t isn[2];                   /* dir 0: client -> server */
	bool isn_known[2];
	uint32_t hi[2];                    /* highest sequence number + length seen */
	bool hi_set[2];
	uint32_t last_seq[2], last_len[2];
	uint64_t last_seg_ns[2];
	uint64_t last_rx_ns[2];            /* dir's last segment but a reset: what the
					      receiving side last heard */
	uint64_t bytes[2], retrans;
	uint64_t start_ns, last_syn_ns, est_ns, cw_ns, last_ns, closed_ns;
	uint64_t gc, gs;                   /* group ids of client and server */
	struct reasm rs[2];
	struct tls_flow *tls;
	struct h2_conn h2;
	struct h2_dir h2d[2];
	uint32_t h2_streams_sent;
	uint8_t h2_source;
};

struct group {
	struct pod_info info;
	uint64_t established;              /* connections its clients established */
};

struct rp_file {
	struct pcapin *in;
	struct pcap_seg seg;
	bool have, done;
};

struct replay {
	const struct cs_opts *o;
	struct tracker *t;
	struct keylog *kl;
	struct kpods *kp;
	/* groups: pods, or addresses without a pod */
	struct group *groups;
	size_t ngroups, cap_groups;
	struct kmap group_by_addr;         /* struct group_key -> group id */
	/* flows */
	struct flow **buckets;
	size_t nbuckets, nflows;
	struct flow lru, tombs;            /* list heads */
	uint64_t now, next_tick, first_ns;
	/* Moments a tracker timer is due (a CLOSE_WAIT or a connect reaching its
	 * threshold), a min-heap: time is advanced to each and the timers run
	 * there, not at the next packet. */
	uint64_t *due;
	size_t ndue, cap_due;
	uint64_t cur_packet;               /* the packet being read, for messages */
	int cur_file;
	/* stats */
	uint64_t flows, evictions, lost, map_full, gaps, tls_decrypted, tls_no_keys, tls_bad_keys,
		 tls_unsupported, tls_decrypt_errors, early_data, ignored, dup_segs, h2_desync, tls_desync;
	uint8_t plain[TLS_REC_MAX_LEN + 256];
};

/* ---- small helpers ---- */

static int32_t seq_diff(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b);
}

static size_t alen(int family)
{
	return family == AF_INET6 ? 16 : 4;
}

static void list_del(struct flow *f)
{
	if (f->prev) {
		f->prev->next = f->next;
		f->next->prev = f->prev;
	}
	f->prev = f->next = NULL;
}

static void list_add_tail(struct flow *head, struct flow *f)
{
	f->prev = head->prev;
	f->next = head;
	head->prev->next = f;
	head->prev = f;
}

/* ---- groups: who an address belongs to ---- */

/* A pod (family 0) or an address without one. */
struct group_key {
	uint8_t family;
	uint8_t addr[16];
	char uid[sizeof(((struct pod_info *)0)->uid)];
	char name[sizeof(((struct pod_info *)0)->name)];
};

static uint64_t group_for(struct replay *r, int family, const uint8_t *addr)
{
	const struct pod_info *p = r->kp ? kpods_find(r->kp, family, addr) : NULL;
	struct group_key key;
	void *v;

	/* One group per pod (all its addresses) or per address. */
	memset(&key, 0, sizeof(key));
	if (p) {
		memcpy(key.uid, p->uid, sizeof(key.uid));
		memcpy(key.name, p->name, sizeof(key.name));
	} else {
		key.family = (uint8_t)family;
		memcpy(key.addr, addr, alen(family));
	}
	if ((v = kmap_get(&r->group_by_addr, &key)))
		return (uint64_t)(uintptr_t)v;
	if (r->ngroups == r->cap_groups) {
		size_t ncap = r->cap_groups ? r->cap_groups * 2 : 64;
		struct group *n = realloc(r->groups, ncap * sizeof(*n));

		if (!n)
			return 0;
		r->groups = n;
		r->cap_groups = ncap;
	}
	struct group *g = &r->groups[r->ngroups];

	memset(g, 0, sizeof(*g));
	if (p) {
		g->info = *p;
	} else {
		inet_ntop(family, addr, g->info.ip, sizeof(g->info.ip));
	}
	if (kmap_put(&r->group_by_addr, &key, (void *)(uintptr_t)(r->ngroups + 1)))
		return 0;
	return ++r->ngroups;
}

/* The tracker runs on packet time, which is wall-clock time already. */
static uint64_t packet_clock(void *arg)
{
	return ((const struct replay *)arg)->now;
}

static uint64_t packet_real(void *arg, uint64_t t)
{
	(void)arg;
	return t;
}

static const struct pod_info *group_pod(void *arg, uint64_t id)
{
	static const struct pod_info none;
	struct replay *r = arg;

	return id && id <= r->ngroups ? &r->groups[id - 1].info : &none;
}

/* ---- edges to the tracker ---- */

/* The flow as a cs_event from the client's side (or the server's). */
static void edge(const struct replay *r, const struct flow *f, uint8_t type, bool server_view,
		 struct cs_event *e)
{
	memset(e, 0, sizeof(*e));
	e->ts_ns = r->now;
	e->cookie = f->cookie;
	e->start_ns = f->midway ? 0 : f->start_ns;
	e->est_ns = f->est_ns;
	/* CLOSE_WAIT (the peer's FIN to our close) is the time of the side that got
	 * the first FIN; the side that sent it sat in FIN_WAIT_2 and has none. The
	 * tracker reads a watch of the same cookie when close_wait_ns is 0, and in
	 * replay that is the other side's CLOSE_WAIT: a start at this very edge
	 * says 0 instead. */
	if (f->cw_ns && f->cw_server == server_view)
		e->close_wait_ns = f->cw_ns;
	else if (f->cw_ns)
		e->close_wait_ns = r->now;
	e->cgroup_id = server_view ? f->gs : f->gc;
	e->bytes_in = f->bytes[server_view ? 0 : 1];
	e->bytes_out = f->bytes[server_view ? 1 : 0];
	e->connect_us = f->est_ns && f->start_ns && !f->midway ?
			(uint32_t)((f->est_ns - f->start_ns) / 1000) : 0;
	e->retrans = (uint32_t)f->retrans;
	if (type == CS_EV_CLOSE) {
		/* As live: how long this side had heard nothing when it ended. */
		uint64_t heard = f->last_rx_ns[server_view ? 0 : 1];

		e->idle_ms = !heard ? CS_IDLE_UNKNOWN :
			     r->now > heard ? (uint32_t)((r->now - heard) / 1000000) : 0;
	}
	e->family = f->family;
	e->sport = server_view ? f->sport : f->cport;
	e->dport = server_view ? f->cport : f->sport;
	e->syn_retrans = f->syn_retrans;
	e->sk_err = f->sk_err;
	e->type = type;
	e->side = server_view ? CS_SIDE_SERVER : CS_SIDE_CLIENT;
	e->close_cause = f->close_cause;
	e->flags = f->flags | (f->midway ? CS_F_MIDWAY : 0);
	memcpy(e->saddr, server_view ? f->saddr : f->caddr, 16);
	memcpy(e->daddr, server_view ? f->caddr : f->saddr, 16);
}

static void send_edge(struct replay *r, const struct flow *f, uint8_t type, bool server_view)
{
	struct cs_event e;

	edge(r, f, type, server_view, &e);
	track_event(r->t, &e);
}

static void tls_ev_init(const struct replay *r, const struct flow *f, uint8_t type,
			struct tls_event *e)
{
	memset(e, 0, offsetof(struct tls_event, data));
	e->ts_ns = r->now;
	e->cookie = f->cookie;
	e->cgroup_id = f->gc;
	e->family = f->family;
	e->sport = f->cport;
	e->dport = f->sport;
	e->type = type;
	e->we_are_client = 1;
	memcpy(e->saddr, f->caddr, 16);
	memcpy(e->daddr, f->saddr, 16);
}

static void h2_send(struct replay *r, struct flow *f, uint8_t type)
{
	struct h2_event e;

	memset(&e, 0, sizeof(e));
	e.ts_ns = r->now;
	e.cookie = f->cookie;
	e.cgroup_id = f->gc;
	e.family = f->family;
	e.sport = f->cport;
	e.dport = f->sport;
	e.type = type;
	e.source = f->h2_source;
	memcpy(e.saddr, f->caddr, 16);
	memcpy(e.daddr, f->saddr, 16);
	e.c = f->h2;
	track_h2_event(r->t, &e);
}

/* What the walker noted, told as the BPF programs tell it. */
static void h2_notes(struct replay *r, struct flow *f, uint32_t notes)
{
	if (notes & H2_N_DESYNC)
		r->h2_desync++;
	if (!(f->h2.flags & H2_C_H2)) {
		if (f->h2.flags & H2_C_NOT_H2)
			f->h2_on = false;
		return;
	}
	if (notes & H2_N_PREFACE)
		h2_send(r, f, H2_EV_START);
	if (notes & H2_N_GOAWAY)
		h2_send(r, f, H2_EV_GOAWAY);
	if (notes & H2_N_DESYNC)
		h2_send(r, f, H2_EV_DESYNC);
	if ((notes & H2_N_RST) ||
	    f->h2_streams_sent / H2_UPDATE_STREAMS != f->h2.streams / H2_UPDATE_STREAMS) {
		f->h2_streams_sent = f->h2.streams;
		h2_send(r, f, H2_EV_UPDATE);
	}
}

static void h2_begin(struct flow *f, uint8_t source)
{
	f->h2_on = true;
	f->h2_source = source;
	h2_conn_init(&f->h2);
	h2_dir_init_unstarted(&f->h2d[0]);
	h2_dir_init_unstarted(&f->h2d[1]);
}

/* Bytes of direction dir at position pos (sequence number or plaintext offset). */
static void h2_bytes(struct replay *r, struct flow *f, int dir, uint32_t pos, const uint8_t *p,
		     uint32_t len)
{
	struct h2_dir *d = &f->h2d[dir];

	if (!f->h2_on || h2_dir_stopped(d))
		return;
	if (!(d->flags & H2_D_STARTED))
		h2_dir_init(d, pos);
	h2_notes(r, f, h2_walk_mem(&f->h2, f->h2d, (uint32_t)dir, pos, p, len));
}

/* ---- TLS ---- */

static void tls_free_flow(struct tls_flow *tf)
{
	if (!tf)
		return;
	free(tf->flight[0]);
	free(tf->flight[1]);
	free(tf->ra[0].buf);
	free(tf->ra[1].buf);
	tlsdec_free(tf->dec);
	free(tf);
}

static void tls_finish(struct replay *r, struct flow *f, uint8_t type, int dir)
{
	struct tls_flow *tf = f->tls;
	struct tls_event e;

	tf->following = false;
	if (type == TLS_EV_DESYNC)
		r->tls_desync++;
	tls_ev_init(r, f, type, &e);
	e.dir = (uint8_t)dir;
	e.version = tf->hs.version;
	e.alert_level = tf->hs.alert_level;
	e.alert_desc = tf->hs.alert_desc;
	e.alert_clear = tf->hs.alert_level != 0;
	track_tls_event(r->t, &e);
}

/* The handshake bytes the live programs capture for user space (SNI, ALPN...). */
static void tls_capture(struct replay *r, struct flow *f, int dir, uint32_t off,
			const uint8_t *p, uint32_t len)
{
	uint32_t cap = dir == TLS_DIR_C2S ? TLS_CAPTURE_CLIENT : TLS_CAPTURE_SERVER;
	struct tls_event e;

	while (len && off < cap) {
		uint32_t n = len;

		if (n > cap - off)
			n = cap - off;
		if (n > TLS_CHUNK)
			n = TLS_CHUNK;
		tls_ev_init(r, f, TLS_EV_DATA, &e);
		e.dir = (uint8_t)dir;
		e.off = off;
		e.len = (uint16_t)n;
		memcpy(e.data, p, n);
		track_tls_event(r->t, &e);
		off += n;
		p += n;
		len -= n;
	}
}

/* The handshake rule over in-order bytes, exactly as bpf/tls.bpf.c walks a segment. */
static void tls_follow(struct replay *r, struct flow *f, int dir, uint32_t seq,
		       const uint8_t *p, uint32_t len)
{
	struct tls_flow *tf = f->tls;
	struct tls_walk w;

	while (len && tf->following) {
		uint32_t n = len < TLS_BUF_MAX ? len : TLS_BUF_MAX;
		int rc;

		do {
			rc = tls_walk(&tf->st[dir], seq, p, n, &w);
			if (rc == TLS_WALK_DESYNC || rc == TLS_WALK_GAP) {
				tls_finish(r, f, TLS_EV_DESYNC, dir);
				return;
			}
			for (uint32_t i = 0; i < w.n; i++) {
				const struct tls_walk_rec *rec = &w.rec[i];
				int hs = tls_hs_step(&tf->hs, dir == TLS_DIR_C2S, rec->type, rec->len,
						     p, rec->body_off, rec->body_here);

				if (hs == TLS_HS_COMPLETE) {
					tls_finish(r, f, TLS_EV_DONE, dir);
					break;
				}
				if (hs == TLS_HS_FAILED) {
					tls_finish(r, f, TLS_EV_ALERT, dir);
					break;
				}
			}
		} while (rc == TLS_WALK_MORE && tf->following);
		seq += n;
		p += n;
		len -= n;
	}
}

static void dec_fail(struct replay *r, struct flow *f, int status, const char *why)
{
	struct tls_flow *tf = f->tls;
	char c[INET6_ADDRSTRLEN], s[INET6_ADDRSTRLEN];
	static unsigned said;

	tf->dec_failed = true;
	tf->decrypt = false;
	if (status == TLSDEC_NO_KEYS)
		r->tls_no_keys++;
	else if (status == TLSDEC_UNSUPPORTED)
		r->tls_unsupported++;
	else if (status == TLSDEC_BAD_KEYS)
		r->tls_bad_keys++;
	else
		r->tls_decrypt_errors++;  /* bytes missing, or records that are not TLS */
	/* A key log from another session is a mistake to point out; a capture
	 * with connections the key log never covered is normal. */
	if (status != TLSDEC_NO_KEYS && said++ < 5) {
		inet_ntop(f->family, f->caddr, c, sizeof(c));
		inet_ntop(f->family, f->saddr, s, sizeof(s));
		cs_warn("%s: packet %llu: TLS connection %s:%u -> %s:%u (from packet %llu) not "
			"decrypted with the key log %s: %s",
			r->o->files[r->cur_file], (unsigned long long)r->cur_packet, c, f->cport, s,
			f->sport, (unsigned long long)TRACK_COOKIE_PACKET(f->cookie), r->o->keylog,
			why);
	}
	if (f->h2_on && f->h2_source == H2_SRC_KEYLOG) {
		/* Frames were being counted: say they stopped being. */
		uint32_t notes = h2_desync(&f->h2, &f->h2d[0]) | h2_desync(&f->h2, &f->h2d[1]);

		h2_notes(r, f, notes);
	}
}

static void tls_plaintext(struct replay *r, struct flow *f, int dir, const uint8_t *p,
			  size_t n)
{
	struct tls_flow *tf = f->tls;

	/* The first application data of a TLS connection: HTTP/2 if it starts as
	 * h2c would (the client preface, or the server's SETTINGS). */
	if (!f->h2_on && f->h2_source != H2_SRC_KEYLOG && !tf->plain_off[0] && !tf->plain_off[1]) {
		f->h2_source = H2_SRC_KEYLOG; /* looked at once */
		if (h2_looks_like_start(p, (uint32_t)n))
			h2_begin(f, H2_SRC_KEYLOG);
	}
	if (f->h2_on)
		h2_bytes(r, f, dir, (uint32_t)tf->plain_off[dir], p, (uint32_t)n);
	tf->plain_off[dir] += n;
}

static void tls_try_keys(struct replay *r, struct flow *f)
{
	struct tls_flow *tf = f->tls;
	struct tls_hello_params hp;
	char why[256] = "";
	int status = TLSDEC_ERROR;

	if (tf->dec || tf->dec_failed)
		return;
	if (!tlsdec_hello_params(tf->flight[0], tf->flight_len[0], tf->flight[1], tf->flight_len[1],
				 &hp)) {
		if (tf->flight_len[1] >= FLIGHT_MAX)
			dec_fail(r, f, TLSDEC_ERROR, "no ServerHello in the server's first 16 KiB");
		return;
	}
	tf->dec = tlsdec_new(r->kl, &hp, &status, why, sizeof(why));
	if (!tf->dec) {
		dec_fail(r, f, status, why);
		return;
	}
	free(tf->flight[0]);
	free(tf->flight[1]);
	tf->flight[0] = tf->flight[1] = NULL;
}

/*
 * TLS 1.3 sends the selected ALPN in EncryptedExtensions, the first message of the
 * server's first protected record (RFC 8446 §4.3.1):
 *   type 8 | length (3) | extensions length (2) | { type (2) | length (2) | data }...
 * ALPN (16): protocol name list length (2) | name length (1) | name.
 */
static void ee_alpn(struct replay *r, struct flow *f, const uint8_t *p, size_t n)
{
	size_t end, at;
	char name[32];

	if (n < 6 || p[0] != 8)
		return;
	end = 4 + ((size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3]);
	if (end > n || end < 6)
		return;
	at = 6;
	if (at + ((size_t)p[4] << 8 | p[5]) > end)
		return;
	while (at + 4 <= end) {
		size_t type = (size_t)p[at] << 8 | p[at + 1], len = (size_t)p[at + 2] << 8 | p[at + 3];

		at += 4;
		if (at + len > end)
			return;
		if (type == TLS_EXT_ALPN && len >= 3 && p[at + 2] && 3 + (size_t)p[at + 2] <= len &&
		    p[at + 2] < sizeof(name)) {
			size_t k, l = p[at + 2];

			for (k = 0; k < l; k++)
				name[k] = tls_printable(p[at + 3 + k]) ? (char)p[at + 3 + k] : '?';
			name[l] = 0;
			track_tls_alpn(r->t, f->cookie, name);
			return;
		}
		at += len;
	}
}

/* One whole record of direction dir. */
static void tls_record(struct replay *r, struct flow *f, int dir, const uint8_t *rec, uint32_t len)
{
	struct tls_flow *tf = f->tls;
	size_t out_len = 0;
	uint8_t type = 0;
	int st;

	if (!tf->dec) {
		/* Before the keys: hellos in clear, or 0-RTT data we cannot read. */
		if (rec[0] == TLS_CT_APPLICATION_DATA)
			r->early_data++;
		/* The ServerHello may have just completed. */
		if (dir == TLS_DIR_S2C)
			tls_try_keys(r, f);
		return;
	}
	st = tlsdec_record(tf->dec, dir, rec, len, r->plain, &out_len, &type);
	if (st != TLSDEC_OK) {
		dec_fail(r, f, st, tlsdec_why(tf->dec));
		return;
	}
	if (type == TLS_CT_APPLICATION_DATA && out_len)
		tls_plaintext(r, f, dir, r->plain, out_len);
	else if (type == TLS_CT_HANDSHAKE && dir == TLS_DIR_S2C && rec[0] == TLS_CT_APPLICATION_DATA &&
		 !tf->ee_read) {
		tf->ee_read = true;
		ee_alpn(r, f, r->plain, out_len);
	}
}

/* Cut a direction's in-order bytes into records. */
static void tls_records(struct replay *r, struct flow *f, int dir, const uint8_t *p, uint32_t len)
{
	struct rec_asm *ra = &f->tls->ra[dir];

	while (len && f->tls->decrypt) {
		if (!ra->buf && !(ra->buf = malloc(TLS_REC_HDR_LEN + TLS_REC_MAX_LEN))) {
			dec_fail(r, f, TLSDEC_ERROR, "out of memory");
			return;
		}
		/* A whole record in the bytes at hand, and none waiting: no copy. */
		if (!ra->have && len >= TLS_REC_HDR_LEN) {
			uint32_t rl = (uint32_t)p[3] << 8 | p[4];

			if (rl > TLS_REC_MAX_LEN) {
				dec_fail(r, f, TLSDEC_ERROR, "a record header is not TLS: boundary lost");
				return;
			}
			if (len >= TLS_REC_HDR_LEN + rl) {
				tls_record(r, f, dir, p, TLS_REC_HDR_LEN + rl);
				p += TLS_REC_HDR_LEN + rl;
				len -= TLS_REC_HDR_LEN + rl;
				continue;
			}
		}
		uint32_t want = ra->need ? ra->need : TLS_REC_HDR_LEN, n = want - ra->have;

		if (n > len)
			n = len;
		memcpy(ra->buf + ra->have, p, n);
		ra->have += n;
		p += n;
		len -= n;
		if (ra->have < want)
			return;
		if (!ra->need) {
			uint32_t rl = (uint32_t)ra->buf[3] << 8 | ra->buf[4];

			if (rl > TLS_REC_MAX_LEN) {
				dec_fail(r, f, TLSDEC_ERROR, "a record header is not TLS: boundary lost");
				return;
			}
			ra->need = TLS_REC_HDR_LEN + rl;
			if (rl)
				continue;
		}
		tls_record(r, f, dir, ra->buf, ra->need);
		ra->have = ra->need = 0;
	}
}

static void tls_bytes(struct replay *r, struct flow *f, int dir, uint32_t seq, const uint8_t *p,
		      uint32_t len)
{
	struct tls_flow *tf = f->tls;
	uint32_t off;

	if (!tf->base_set[dir]) {
		tf->base[dir] = seq;
		tf->base_set[dir] = true;
		tls_stream_init(&tf->st[dir], seq);
	}
	off = seq - tf->base[dir];

	if (tf->following) {
		tls_capture(r, f, dir, off, p, len);
		tls_follow(r, f, dir, seq, p, len);
	}
	if (!tf->decrypt)
		return;
	if (!tf->dec && tf->flight_len[dir] < FLIGHT_MAX) {
		uint32_t n = len;

		if (!tf->flight[dir] && !(tf->flight[dir] = malloc(FLIGHT_MAX))) {
			dec_fail(r, f, TLSDEC_ERROR, "out of memory");
			return;
		}
		if (n > FLIGHT_MAX - tf->flight_len[dir])
			n = FLIGHT_MAX - tf->flight_len[dir];
		memcpy(tf->flight[dir] + tf->flight_len[dir], p, n);
		tf->flight_len[dir] += n;
	}
	tls_records(r, f, dir, p, len);
}

static void tls_start(struct replay *r, struct flow *f)
{
	struct tls_flow *tf = calloc(1, sizeof(*tf));
	struct tls_event e;

	if (!tf) {
		f->proto = FP_OFF;
		return;
	}
	f->tls = tf;
	f->proto = FP_TLS;
	tf->following = true;
	tls_hs_init(&tf->hs);
	for (int d = 0; d < 2; d++) {
		if (!f->isn_known[d])
			continue;  /* set by the direction's first byte (tls_bytes) */
		tf->base[d] = f->isn[d] + 1;
		tf->base_set[d] = true;
		tls_stream_init(&tf->st[d], tf->base[d]);
	}
	tf->decrypt = r->kl != NULL;
	tls_ev_init(r, f, TLS_EV_START, &e);
	track_tls_event(r->t, &e);
}

/* ---- payload ---- */

/* The first bytes of a direction decide what follows the connection, as the live
 * programs decide: a ClientHello starts TLS, the client preface or a SETTINGS
 * frame starts h2c; a connection whose both directions began with neither is not
 * followed any further (its bytes are only counted). */
static void first_payload(struct replay *r, struct flow *f, int dir, const uint8_t *p,
			  uint32_t len)
{
	f->seen_first[dir] = 1;
	if (f->proto != FP_UNDECIDED)
		return;
	if (len >= 6 && tls_looks_like_client_hello(p, 6)) {
		tls_start(r, f);
		return;
	}
	if (h2_looks_like_start(p, len)) {
		f->proto = FP_H2;
		h2_begin(f, H2_SRC_WIRE);
		return;
	}
	if (f->seen_first[dir ^ 1])
		f->proto = FP_OFF;
}

/* What the reassembly callbacks are called with. */
struct seg_ctx {
	struct replay *r;
	struct flow *f;
	int dir;
};

static void on_data(void *arg, uint32_t seq, const uint8_t *p, uint32_t len)
{
	struct seg_ctx *c = arg;
	struct replay *r = c->r;
	struct flow *f = c->f;
	int dir = c->dir;

	if (!f->seen_first[dir] && f->isn_known[dir] && seq == f->isn[dir] + 1)
		first_payload(r, f, dir, p, len);
	f->seen_first[dir] = 1;
	switch (f->proto) {
	case FP_TLS:
		tls_bytes(r, f, dir, seq, p, len);
		break;
	case FP_H2:
		h2_bytes(r, f, dir, seq, p, len);
		if (!f->h2_on)
			f->proto = FP_OFF;
		break;
	}
}

static void on_gap(void *arg, uint32_t from, uint32_t to)
{
	struct seg_ctx *c = arg;
	struct replay *r = c->r;
	struct flow *f = c->f;
	int dir = c->dir;

	r->gaps++;
	/* The parsers see the gap as the live programs would: bytes that skip ahead. */
	if (f->proto == FP_TLS && f->tls->following)
		tls_finish(r, f, TLS_EV_DESYNC, dir);
	if (f->proto == FP_TLS && f->tls->decrypt)
		dec_fail(r, f, TLSDEC_ERROR, "bytes missing from the capture");
	if (f->h2_on && f->h2_source == H2_SRC_WIRE && !h2_dir_stopped(&f->h2d[dir]))
		h2_notes(r, f, h2_desync(&f->h2, &f->h2d[dir]));
	(void)from;
	(void)to;
}

static struct seg_ctx *ctx_of(struct replay *r, struct flow *f, int dir, struct seg_ctx *c)
{
	c->r = r;
	c->f = f;
	c->dir = dir;
	return c;
}

/* Does anything still read this connection's bytes? */
static bool wants_bytes(const struct flow *f)
{
	switch (f->proto) {
	case FP_UNDECIDED: return true;
	case FP_TLS: return f->tls->following || f->tls->decrypt;
	case FP_H2: return f->h2_on;
	default: return false;
	}
}

/* ---- flows ---- */

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

/* The bucket of a flow; flow_find compares the endpoints themselves. */
static uint64_t flow_hash(int family, const uint8_t *a, uint16_t ap, const uint8_t *b,
			  uint16_t bp)
{
	/* The same for both directions: the smaller endpoint first. */
	int c = memcmp(a, b, alen(family));
	uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)family;

	if (c > 0 || (c == 0 && ap > bp)) {
		const uint8_t *t = a;
		uint16_t tp = ap;

		a = b; ap = bp; b = t; bp = tp;
	}
	h = fnv(a, alen(family), h);
	h = fnv(&ap, 2, h);
	h = fnv(b, alen(family), h);
	return fnv(&bp, 2, h);
}

static struct flow **bucket(struct replay *r, uint64_t h)
{
	return &r->buckets[h & (r->nbuckets - 1)];
}

static bool grow(struct replay *r)
{
	size_t n = r->nbuckets ? r->nbuckets * 2 : 4096;
	struct flow **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return false;
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct flow *f = r->buckets[i], *next;

		for (; f; f = next) {
			next = f->hnext;
			uint64_t h = flow_hash(f->family, f->caddr, f->cport, f->saddr, f->sport);

			f->hnext = nb[h & (n - 1)];
			nb[h & (n - 1)] = f;
		}
	}
	free(r->buckets);
	r->buckets = nb;
	r->nbuckets = n;
	return true;
}

/* The flow of a segment, and the direction (0: from the client). */
static struct flow *flow_find(struct replay *r, const struct pcap_seg *s, uint64_t h, int *dir)
{
	size_t n = alen(s->family);

	for (struct flow *f = r->nbuckets ? *bucket(r, h) : NULL; f; f = f->hnext) {
		if (f->family != s->family)
			continue;
		if (f->cport == s->sport && f->sport == s->dport && !memcmp(f->caddr, s->saddr, n) &&
		    !memcmp(f->saddr, s->daddr, n)) {
			*dir = 0;
			return f;
		}
		if (f->cport == s->dport && f->sport == s->sport && !memcmp(f->caddr, s->daddr, n) &&
		    !memcmp(f->saddr, s->saddr, n)) {
			*dir = 1;
			return f;
		}
	}
	return NULL;
}

static void flow_unlink(struct replay *r, struct flow *f)
{
	struct flow **pp = bucket(r, flow_hash(f->family, f->caddr, f->cport, f->saddr, f->sport));

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == f) {
			*pp = f->hnext;
			break;
		}
	}
	list_del(f);
	r->nflows--;
}

static void flow_release(struct replay *r, struct flow *f)
{
	/* Decrypted: keys found, and every record given to them opened. */
	if (f->tls && f->tls->dec && !f->tls->dec_failed)
		r->tls_decrypted++;
	reasm_free(&f->rs[0]);
	reasm_free(&f->rs[1]);
	tls_free_flow(f->tls);
	f->tls = NULL;
}

/* Is this side's port the kind servers listen on? For connections whose SYN the
 * capture missed. */
static bool looks_server_port(uint16_t port, uint16_t other)
{
	bool eph = port >= 32768, other_eph = other >= 32768;

	if (eph != other_eph)
		return !eph;
	return port < other;
}

static void flow_close(struct replay *r, struct flow *f, bool open);
static void midway_register(struct replay *r, struct flow *f);

static struct flow *flow_new(struct replay *r, const struct pcap_seg *s, bool src_is_client)
{
	struct flow *f;

	if (r->nflows >= MAX_FLOWS && r->tombs.next != &r->tombs) {
		/* Full: a closed flow's tombstone goes first (at worst a stray ACK of
		 * it will look like a connection joined midway)... */
		struct flow *old = r->tombs.next;

		flow_unlink(r, old);
		free(old);
	} else if (r->nflows >= MAX_FLOWS && r->lru.next != &r->lru) {
		/* ... then the least recently seen open flow: reported as it stands. */
		struct flow *old = r->lru.next;

		r->evictions++;
		flow_close(r, old, true);
	}
	if (r->nflows >= MAX_FLOWS) {
		/* Nothing to let go of (cannot happen while every flow is on a
		 * list): the segment is dropped, and counted. */
		r->map_full++;
		return NULL;
	}
	if ((r->nflows + 1 > r->nbuckets && !grow(r)) || !(f = calloc(1, sizeof(*f)))) {
		r->lost++;  /* no memory: the segment is dropped */
		return NULL;
	}
	f->family = (uint8_t)s->family;
	memcpy(f->caddr, src_is_client ? s->saddr : s->daddr, 16);
	memcpy(f->saddr, src_is_client ? s->daddr : s->saddr, 16);
	f->cport = src_is_client ? s->sport : s->dport;
	f->sport = src_is_client ? s->dport : s->sport;
	f->cookie = ((uint64_t)(r->cur_file + 1) << 48) | (s->num & ((1ull << 48) - 1));
	f->start_ns = f->last_ns = r->now;
	f->gc = group_for(r, f->family, f->caddr);
	f->gs = group_for(r, f->family, f->saddr);
	uint64_t h = flow_hash(f->family, f->caddr, f->cport, f->saddr, f->sport);

	f->hnext = *bucket(r, h);
	*bucket(r, h) = f;
	list_add_tail(&r->lru, f);
	r->nflows++;
	r->flows++;
	return f;
}

/* The client-side view counts a connection opened once it is established. */
static void established(struct replay *r, struct flow *f)
{
	struct group *g = f->gc && f->gc <= r->ngroups ? &r->groups[f->gc - 1] : NULL;

	f->state = FS_EST;
	f->est_ns = r->now;
	f->flags |= CS_F_WAS_EST;
	if (g)
		track_established(r->t, f->gc, ++g->established);
	if (f->syn_retrans)
		send_edge(r, f, CS_EV_ESTABLISHED, false);
	reasm_init(&f->rs[0], f->isn[0] + 1);
	reasm_init(&f->rs[1], f->isn[1] + 1);
}

static void flow_close(struct replay *r, struct flow *f, bool open)
{
	struct seg_ctx ctx;
	struct cs_event e;

	/* What waits behind a hole is handed on now, the hole counted. */
	for (int d = 0; d < 2; d++)
		if (f->rs[d].started && wants_bytes(f))
			reasm_flush(&f->rs[d], on_data, on_gap, ctx_of(r, f, d, &ctx));
	midway_register(r, f);
	if (f->h2_on || (f->h2.flags & H2_C_MIDWAY))
		h2_send(r, f, open ? H2_EV_UPDATE : H2_EV_END);
	if (open)
		f->flags |= CS_F_OPEN;
	edge(r, f, CS_EV_CLOSE, false, &e);
	if (open)
		e.ts_ns = r->now;
	track_event(r->t, &e);
	flow_release(r, f);
	list_del(f);
	if (open) {
		flow_unlink(r, f);
		free(f);
		return;
	}
	f->state = FS_CLOSED;
	f->closed_ns = r->now;
	list_add_tail(&r->tombs, f);
}

/* Bytes that can only be the first of a client's stream: the HTTP/2 client
 * preface, or a TLS record that opens a ClientHello. */
static bool client_start(const uint8_t *p, uint32_t len)
{
	if (len < 6)
		return false;
	return (p[0] == 'P' && p[1] == 'R' && p[2] == 'I' && p[3] == ' ' && p[4] == '*' &&
		p[5] == ' ') || tls_looks_like_client_hello(p, 6);
}

/* A connection whose SYN the capture missed. If its first payload is a client's
 * first bytes, the capture holds its data from the start: its parsers run as
 * for any connection (each direction from its first byte seen). Otherwise it
 * is only counted, and its first bytes are looked at once for HTTP/2. */
static struct flow *flow_midway(struct replay *r, const struct pcap_seg *s)
{
	bool starts = client_start(s->payload, s->len);
	struct flow *f = flow_new(r, s, starts || !looks_server_port(s->sport, s->dport));

	if (!f)
		return NULL;
	f->midway = true;
	f->state = FS_EST;
	f->flags |= CS_F_WAS_EST;
	f->proto = FP_OFF;
	reasm_init_unstarted(&f->rs[0]);
	reasm_init_unstarted(&f->rs[1]);
	return f;
}

/* Told to the tracker once its sides are settled: as live counts a socket that
 * was there before it, active but not opened. */
static void midway_register(struct replay *r, struct flow *f)
{
	struct snap_sock ss = {0};

	if (!f->midway || f->registered)
		return;
	f->registered = true;
	ss.cookie = f->cookie;
	ss.cgroup_id = f->gc;
	ss.family = f->family;
	ss.state = CS_TCP_ESTABLISHED;
	ss.sport = f->cport;
	ss.dport = f->sport;
	memcpy(ss.saddr, f->caddr, 16);
	memcpy(ss.daddr, f->saddr, 16);
	track_snapshot(r->t, &ss, 1);
}

/* The client's first bytes, seen in a connection taken for joined midway whose
 * first packets carried none: its data is seen from the start after all. */
static void midway_data_start(struct flow *f, int *dir)
{
	if (*dir == 1) {
		uint8_t a[16];
		uint16_t port = f->cport;
		uint64_t g = f->gc;

		memcpy(a, f->caddr, 16);
		memcpy(f->caddr, f->saddr, 16);
		memcpy(f->saddr, a, 16);
		f->cport = f->sport;
		f->sport = port;
		f->gc = f->gs;
		f->gs = g;
		for (int i = 0; i < 2; i++) {
			/* Nothing but bare ACKs so far: no bytes to move. */
			f->hi_set[i] = false;
			f->last_len[i] = 0;
		}
		*dir = 0;
	}
	f->data_start = true;
	f->proto = FP_UNDECIDED;
}

/* A joined connection: frames are followed from the first segment of each
 * direction that starts with a valid frame header (a segment start is where a
 * sender's write began, most often a frame's start; a wrong guess breaks the
 * chain of headers soon and is a desync). The counts are of what the capture
 * shows from there on, and the record says it joined midway. */
#define H2_SYNC_TRIES 16

static void midway_try_h2(struct replay *r, struct flow *f, int dir, const struct pcap_seg *s)
{
	uint32_t flen, stream;
	const uint8_t *p = s->payload;

	if (f->h2_sync[dir] || f->h2_tries[dir] >= H2_SYNC_TRIES || s->len < H2_FRAME_HDR_LEN ||
	    (f->h2.flags & H2_C_NOT_H2))
		return;
	f->h2_tries[dir]++;
	flen = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
	stream = (uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8];
	if (p[3] > H2_CONTINUATION || (stream & 0x80000000u) ||
	    !h2_frame_ok(flen, p[3], p[4], stream, H2_DEFAULT_MAX_FRAME))
		return;
	if (!f->h2_on) {
		h2_begin(f, H2_SRC_WIRE);
		f->proto = FP_H2;
		f->h2.flags = H2_C_H2 | H2_C_JOINED;
		f->h2.client_dir = 0;
		h2_send(r, f, H2_EV_START);
	}
	h2_dir_init(&f->h2d[dir], s->seq);
	f->h2d[dir].unit = H2_U_HDR;
	reasm_init(&f->rs[dir], s->seq);
	f->h2_sync[dir] = true;
}

static void count_bytes(struct flow *f, int dir, const struct pcap_seg *s, uint64_t now,
			uint64_t *dups)
{
	uint32_t len = s->wire_len, end = s->seq + len;

	if (!len)
		return;
	/* The same segment twice within a millisecond is the capture's doing
	 * (`-i any` sees a packet on two interfaces), not a retransmission. */
	if (f->last_seq[dir] == s->seq && f->last_len[dir] == len &&
	    now - f->last_seg_ns[dir] < DUP_NS) {
		(*dups)++;
		return;
	}
	f->last_seq[dir] = s->seq;
	f->last_len[dir] = len;
	f->last_seg_ns[dir] = now;
	if (!f->hi_set[dir]) {
		f->hi_set[dir] = true;
		f->hi[dir] = f->isn_known[dir] ? f->isn[dir] + 1 : s->seq;
	}
	if (seq_diff(end, f->hi[dir]) > 0) {
		f->bytes[dir] += (uint32_t)seq_diff(end, f->hi[dir]);
		f->hi[dir] = end;
	} else {
		f->retrans++;
	}
}

/* ---- timer moments ---- */

/* The tracker's timer that starts at `from` runs out `secs` later (its own
 * rounding: track.c). A moment that cannot be kept (no memory) falls back on
 * the 100 ms ticks. */
static void due_at(struct replay *r, uint64_t from, double secs)
{
	uint64_t at = from + (uint64_t)(secs * NS_PER_SEC);
	size_t i;

	if (secs <= 0 || at <= r->now)
		return;
	if (r->ndue == r->cap_due) {
		size_t ncap = r->cap_due ? r->cap_due * 2 : 64;
		uint64_t *n = realloc(r->due, ncap * sizeof(*n));

		if (!n)
			return;
		r->due = n;
		r->cap_due = ncap;
	}
	for (i = r->ndue++; i && r->due[(i - 1) / 2] > at; i = (i - 1) / 2)
		r->due[i] = r->due[(i - 1) / 2];
	r->due[i] = at;
}

static uint64_t due_pop(struct replay *r)
{
	uint64_t top = r->due[0], last = r->due[--r->ndue];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < r->ndue) {
		if (c + 1 < r->ndue && r->due[c + 1] < r->due[c])
			c++;
		if (r->due[c] >= last)
			break;
		r->due[i] = r->due[c];
		i = c;
	}
	if (r->ndue)
		r->due[i] = last;
	return top;
}

static void segment(struct replay *r, const struct pcap_seg *s)
{
	uint64_t h = flow_hash(s->family, s->saddr, s->sport, s->daddr, s->dport);
	bool syn = s->flags & PCAP_TH_SYN, ack = s->flags & PCAP_TH_ACK;
	bool rst = s->flags & PCAP_TH_RST, fin = s->flags & PCAP_TH_FIN;
	int dir = 0;
	struct flow *f = flow_find(r, s, h, &dir);
	struct seg_ctx ctx;

	if (f && f->state == FS_CLOSED) {
		/* A new connection on the same addresses and ports replaces the old. */
		if (!(syn && !ack && !(dir == 0 && s->seq == f->isn[0]))) {
			r->ignored++;
			return;
		}
		flow_unlink(r, f);
		free(f);
		f = NULL;
	}
	if (!f) {
		if (rst) {
			r->ignored++;  /* a reset of something we never saw */
			return;
		}
		if (syn && !ack) {
			f = flow_new(r, s, true);
			if (!f)
				return;
			f->isn[0] = s->seq;
			f->isn_known[0] = true;
			f->last_syn_ns = r->now;
			dir = 0;
		} else if (syn && ack) {
			/* Its SYN was not captured: the client is the other side. */
			f = flow_new(r, s, false);
			if (!f)
				return;
			f->isn[0] = s->ack - 1;
			f->isn_known[0] = true;
			f->last_syn_ns = r->now;
			dir = 1;
		} else {
			f = flow_midway(r, s);
			if (!f)
				return;
			dir = f->cport == s->sport && !memcmp(f->caddr, s->saddr, alen(s->family)) ? 0 : 1;
		}
	}
	f->last_ns = r->now;
	list_del(f);
	list_add_tail(&r->lru, f);
	if (!rst)
		f->last_rx_ns[dir] = r->now;

	if (syn) {
		if (dir == 0 && !ack && f->state == FS_SYN_SENT) {
			if (s->seq != f->isn[0]) {
				/* Another attempt on the same port: the first one gave up. */
				flow_close(r, f, false);
				segment(r, s);
				return;
			}
			if (r->now - f->last_syn_ns >= SYN_DUP_NS && f->last_syn_ns != r->now) {
				f->syn_retrans++;
				send_edge(r, f, CS_EV_SYN_RETRANS, false);
				if (f->syn_retrans == 1)
					due_at(r, f->start_ns, r->o->connect_timeout_s);
			}
			f->last_syn_ns = r->now;
		} else if (dir == 1 && ack && f->state == FS_SYN_SENT) {
			f->isn[1] = s->seq;
			f->isn_known[1] = true;
			established(r, f);
		}
		return;
	}
	if (rst) {
		if (f->state == FS_SYN_SENT) {
			if (dir != 1)
				return;
			/* Refused: the server answered the SYN with a reset. */
			f->sk_err = ECONNREFUSED;
			f->flags |= CS_F_RST_IN;
		} else {
			f->flags |= dir ? CS_F_RST_IN : CS_F_RST_OUT;
			if (f->close_cause == CS_CLOSE_NONE)
				f->close_cause = dir ? CS_CLOSE_RST_IN : CS_CLOSE_RST_OUT;
		}
		flow_close(r, f, false);
		return;
	}
	if (f->state == FS_SYN_SENT) {
		/* Data before the SYN-ACK was seen (the capture missed it). */
		if (!ack || dir != 0)
			return;
		f->isn[1] = s->ack - 1;
		f->isn_known[1] = true;
		established(r, f);
	}
	if (s->len && f->midway && !f->registered) {
		if (!f->seen_first[0] && !f->seen_first[1] && client_start(s->payload, s->len))
			midway_data_start(f, &dir);
		midway_register(r, f);
	}
	if (s->len && f->midway && !f->data_start)
		midway_try_h2(r, f, dir, s);
	if (s->len && f->data_start && !f->rs[dir].started) {
		/* Each direction from its first byte seen. */
		f->isn[dir] = s->seq - 1;
		f->isn_known[dir] = true;
		reasm_init(&f->rs[dir], s->seq);
	}
	count_bytes(f, dir, s, r->now, &r->dup_segs);
	if (s->len && wants_bytes(f) && (!f->midway || f->data_start || f->h2_sync[dir]))
		reasm_segment(&f->rs[dir], s->seq, s->payload, s->len, on_data, on_gap,
			      ctx_of(r, f, dir, &ctx));
	if (ack && wants_bytes(f) && f->rs[dir ^ 1].started)
		reasm_ack(&f->rs[dir ^ 1], s->ack, on_data, on_gap, ctx_of(r, f, dir ^ 1, &ctx));
	if (fin && !f->fin[dir]) {
		f->fin[dir] = true;
		if (!f->fin[dir ^ 1]) {
			/* The first FIN: the other side is now in CLOSE_WAIT. */
			f->close_cause = dir ? CS_CLOSE_PEER_FIN : CS_CLOSE_LOCAL_FIN;
			f->cw_ns = r->now;
			f->cw_server = dir == 0;
			send_edge(r, f, CS_EV_CLOSE_WAIT, dir == 0);
			due_at(r, f->cw_ns, r->o->close_wait_threshold_s);
		} else {
			flow_close(r, f, false);
		}
	}
}

/* ---- time ---- */

static void tick(struct replay *r)
{
	track_tick(r->t);
	while (r->tombs.next != &r->tombs && r->now - r->tombs.next->closed_ns >= TOMB_NS) {
		struct flow *f = r->tombs.next;

		flow_unlink(r, f);
		free(f);
	}
}

/* Before a packet: the timers due before it run at their own moment, so a
 * finding is stamped when its threshold passed, not with whatever packet
 * came next. */
static void set_time(struct replay *r, uint64_t ts)
{
	if (!r->first_ns)
		r->first_ns = ts;
	/* Packet time never runs backwards for the tracker (files merged, clocks
	 * stepped): a packet stamped earlier counts at the latest time seen. */
	while (r->ndue && r->due[0] < ts) {
		uint64_t at = due_pop(r);

		if (at <= r->now)
			continue;
		r->now = at;
		tick(r);
	}
	if (ts > r->now)
		r->now = ts;
}

/* After a packet: timers due at its moment, and every 100 ms of packet time the
 * rest (folding windows, held closes, HTTP/2 windows, gauges), with the packet
 * already counted (a SYN retransmit at the very moment a connect times out is
 * one of the retransmits the finding names). */
static void timers(struct replay *r)
{
	bool due = false;

	while (r->ndue && r->due[0] <= r->now) {
		due_pop(r);
		due = true;
	}
	if (due || r->now >= r->next_tick) {
		if (r->next_tick || due)
			tick(r);
		if (r->now >= r->next_tick)
			r->next_tick = r->now + TICK_NS;
	}
}

/* ---- the run ---- */

/* The stats record; sf: n entries, filled here. */
static void stats_record(struct replay *r, struct rp_file *files, int n, double cpu_ms,
			 struct stats_file *sf, struct stats_rec *s)
{
	*s = (struct stats_rec){
		.ts_real = r->now ? r->now : cs_real_ns(),
		.phase = "end",
		.replay = true,
		.files = sf,
		.nfiles = n,
	};
	for (int i = 0; i < n; i++) {
		const struct pcapin_stats *st = files[i].in ? pcapin_stats(files[i].in) : NULL;

		sf[i] = (struct stats_file){ .file = r->o->files[i], .read = files[i].in != NULL };
		if (!st)
			continue;
		sf[i].link = pcapin_linktype(files[i].in);
		sf[i].packets = st->packets;
		sf[i].truncated = st->truncated || st->read_error;
		s->packets += st->packets;
		s->bytes += st->bytes;
		s->tcp_segments += st->tcp;
		s->not_tcp += st->not_tcp;
		s->ip_fragments += st->fragments;
		s->decode_errors += st->decode_errors;
		s->snap_cut += st->snap_cut;
		s->truncated_files += st->truncated || st->read_error;
	}
	s->flows = r->flows;
	s->evictions = r->evictions;
	s->ignored = r->ignored;
	s->duplicates = r->dup_segs;
	s->gaps = r->gaps;
	s->desyncs = s->parser_desync = r->tls_desync + r->h2_desync;
	s->tls_decrypted = r->tls_decrypted;
	s->tls_no_keys = r->tls_no_keys;
	s->tls_bad_keys = r->tls_bad_keys;
	s->tls_unsupported = r->tls_unsupported;
	s->tls_decrypt_errors = r->tls_decrypt_errors;
	s->tls_early_data_records = r->early_data;
	s->events = track_events(r->t);
	/* As live: lost counts edges dropped on the way (here: no memory), map_full
	 * those a full table refused; evictions were reported early, not lost. */
	s->lost = r->lost + track_dropped(r->t);
	s->map_full = r->map_full;
	s->cpu_ms = cpu_ms;
}

static double cpu_ms_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 +
	       ru.ru_stime.tv_usec / 1e3;
}

/* ---- -o text: a report for a person ---- */

/* Who a pod row is: namespace/name, else the address the group stands for. */
static void who_text(const struct summary_rec *a, char *buf, size_t len)
{
	if (a->pod->is_pod && a->pod->known)
		snprintf(buf, len, "%s/%s", a->pod->namespace_, a->pod->name);
	else if (a->pod->ip[0])
		snprintf(buf, len, "%s", a->pod->ip);
	else
		snprintf(buf, len, "-");
}

static void cell(char *buf, size_t len, double v, const char *fmt)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, fmt, v);
}

/* The pods' table, from their summaries, busiest first. */
static int agg_cmp(const void *pa, const void *pb)
{
	const struct summary_rec *a = pa, *b = pb;
	uint64_t na = a->tcp.opened + a->findings, nb = b->tcp.opened + b->findings;

	return na < nb ? 1 : na > nb ? -1 : strcmp(a->key, b->key);
}

static void text_report(struct replay *r, const struct stats_rec *st)
{
	char t0[40], t1[40], who[300], c[12][24];
	struct summary_rec *aggs = NULL;
	int n = track_views(r->t, &aggs);

	if (n > 0)
		qsort(aggs, (size_t)n, sizeof(*aggs), agg_cmp);
	printf("\n%-32s %6s %6s %6s %7s %8s %6s %8s %6s %7s %8s %7s %8s %6s %8s\n", "POD / ADDRESS",
	       "OPENED", "CLOSED", "OPEN", "REFUSED", "TIMEOUTS", "RESETS", "CW_STUCK", "TLS_OK",
	       "TLS_ERR", "TLS_P99", "H2_CONN", "S/CONN", "GOAWAY", "FINDINGS");
	for (int i = 0; i < n; i++) {
		const struct summary_rec *a = &aggs[i];
		bool tls = a->has_tls, h2 = a->has_h2;

		who_text(a, who, sizeof(who));
		cell(c[0], 24, (double)a->tcp.opened, "%.0f");
		cell(c[1], 24, (double)a->tcp.closed, "%.0f");
		cell(c[2], 24, (double)a->tcp.active, "%.0f");
		cell(c[3], 24, (double)a->tcp.refused, "%.0f");
		cell(c[4], 24, (double)a->tcp.timeouts, "%.0f");
		cell(c[5], 24, (double)a->tcp.resets, "%.0f");
		cell(c[6], 24, (double)a->close_wait.stuck, "%.0f");
		cell(c[7], 24, tls ? (double)a->tls.all.ok : -1, "%.0f");
		cell(c[8], 24, tls ? (double)(a->tls.all.failed + a->tls.all.timeouts) : -1, "%.0f");
		cell(c[9], 24, tls ? a->tls.all.p99_ms : -1, "%.1fms");
		cell(c[10], 24, h2 ? (double)a->h2.connections : -1, "%.0f");
		cell(c[11], 24, h2 ? a->h2.streams_per_conn : -1, "%.1f");
		printf("%-32.32s %6s %6s %6s %7s %8s %6s %8s %6s %7s %8s %7s %8s %6llu %8llu\n", who,
		       c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11],
		       (unsigned long long)a->h2.goaway, (unsigned long long)a->findings);
	}
	track_views_free(aggs, n);
	cs_fmt_ts(r->first_ns, t0, sizeof(t0));
	cs_fmt_ts(r->now, t1, sizeof(t1));
	printf("\ncapture: %s .. %s (%.1f s), %llu packets, %llu TCP segments, %llu connections\n",
	       t0, t1, (double)(r->now - r->first_ns) / 1e9, (unsigned long long)st->packets,
	       (unsigned long long)st->tcp_segments, (unsigned long long)st->flows);
	printf("honesty: %llu decode errors, %llu truncated files, %llu reassembly gaps, "
	       "%llu parser desyncs, %llu IP fragments skipped, %llu snap-length cuts, "
	       "%llu flows evicted\n",
	       (unsigned long long)st->decode_errors, (unsigned long long)st->truncated_files,
	       (unsigned long long)st->gaps, (unsigned long long)st->parser_desync,
	       (unsigned long long)st->ip_fragments, (unsigned long long)st->snap_cut,
	       (unsigned long long)st->evictions);
	if (r->kl)
		printf("key log: %llu TLS connections decrypted, %llu without keys, %llu with keys "
		       "that did not match, %llu with an unsupported cipher, %llu lost to missing "
		       "bytes\n",
		       (unsigned long long)st->tls_decrypted, (unsigned long long)st->tls_no_keys,
		       (unsigned long long)st->tls_bad_keys, (unsigned long long)st->tls_unsupported,
		       (unsigned long long)st->tls_decrypt_errors);
}

static void sink_finding(const struct finding_rec *f, void *arg)
{
	(void)arg;
	out_finding(f);
}

static void sink_connection(const struct conn_rec *c, void *arg)
{
	(void)arg;
	out_connection(c);
}

static void sink_summary(const struct summary_rec *s, void *arg)
{
	/* Text: the table at the end reads the aggregates, so summary records are
	 * not printed. */
	if (!arg)
		out_summary(s);
}

/* The file whose next packet is the earliest (files are merged by packet time). */
static int next_file(struct rp_file *files, int n)
{
	int best = -1;

	for (int i = 0; i < n; i++) {
		struct rp_file *f = &files[i];

		if (f->done || !f->in)
			continue;
		if (!f->have) {
			if (pcapin_next(f->in, &f->seg) != PCAPIN_TCP) {
				f->done = true;
				continue;
			}
			f->have = true;
		}
		if (best < 0 || f->seg.ts_ns < files[best].seg.ts_ns)
			best = i;
	}
	return best;
}

int replay_run(const struct cs_opts *o)
{
	struct replay *r = calloc(1, sizeof(*r));
	struct rp_file *files = calloc((size_t)o->nfiles, sizeof(*files));
	char err[512];
	int opened = 0, rc = 0, i;
	struct stats_file *sf;
	struct stats_rec stats;

	if (r)
		kmap_init(&r->group_by_addr, sizeof(struct group_key), NULL);
	if (!r || !files) {
		cs_fail("replay", "%s", strerror(ENOMEM));
		free(r);
		free(files);
		return 1;
	}
	r->o = o;
	r->lru.next = r->lru.prev = &r->lru;
	r->tombs.next = r->tombs.prev = &r->tombs;
	if (o->pods_file) {
		size_t np, na, nh, nc;

		r->kp = kpods_load(o->pods_file, err, sizeof(err));
		if (!r->kp) {
			cs_fail("read the pod list", "%s", err);
			rc = 1;
			goto out;
		}
		kpods_counts(r->kp, &np, &na, &nh, &nc);
		if (o->verbose || nc)
			cs_warn("%s: %zu pods, %zu addresses%s%s", o->pods_file, np, na,
				nh ? " (host-network pods left out: they share the node's address)" : "",
				nc ? "; some addresses are claimed by two pods: the first listed wins" : "");
	}
	if (o->keylog) {
		r->kl = keylog_load(o->keylog, err, sizeof(err));
		if (!r->kl) {
			cs_fail("read the key log", "%s", err);
			rc = 1;
			goto out;
		}
		if (!keylog_randoms(r->kl))
			cs_warn("%s: no usable secrets in the key log: nothing will be decrypted",
				o->keylog);
	}
	for (i = 0; i < o->nfiles; i++) {
		files[i].in = pcapin_open(o->files[i], err, sizeof(err));
		if (!files[i].in) {
			cs_warn("%s", err);
			continue;
		}
		opened++;
	}
	if (!opened) {
		cs_fail("replay", "no capture could be read");
		rc = 1;
		goto out;
	}
	out_init(o->fmt, o->verbose);
	static const struct track_sink sink = { sink_finding, sink_connection, sink_summary };

	r->t = track_new(o, NULL, o->fmt == FMT_JSON || o->verbose, &sink,
			 o->fmt == FMT_TEXT ? (void *)r : NULL);
	if (!r->t) {
		cs_fail("replay", "%s", strerror(ENOMEM));
		rc = 1;
		goto out;
	}
	track_set_replay(r->t, group_pod, r, o->files, o->nfiles);
	track_set_clock(r->t, &(struct track_clock){ packet_clock, packet_real, r });

	while ((i = next_file(files, o->nfiles)) >= 0) {
		struct pcap_seg *s = &files[i].seg;

		files[i].have = false;
		r->cur_file = i;
		r->cur_packet = s->num;
		set_time(r, s->ts_ns);
		if (!o->port || s->sport == o->port || s->dport == o->port)
			segment(r, s);
		timers(r);
	}
	/* The end of the capture: timers run at its last moment, then what is still
	 * open is reported as open. */
	if (r->now) {
		tick(r);
		while (r->lru.next != &r->lru)
			flow_close(r, r->lru.next, true);
	}
	track_flush(r->t);
	track_tick(r->t);  /* the gauges, once the held closes are in */
	if (r->kl && r->tls_no_keys) {
		uint64_t all = r->tls_no_keys + r->tls_decrypted + r->tls_bad_keys + r->tls_unsupported +
			       r->tls_decrypt_errors;

		/* A key log from another capture matches nothing: say so plainly. */
		if (r->tls_no_keys == all)
			cs_warn("%s: none of the %llu TLS connections in the capture has its secrets "
				"in this key log: it is not this capture's key log (nothing decrypted)",
				o->keylog, (unsigned long long)all);
		else
			cs_warn("%s: no secrets for %llu of %llu TLS connections: their HTTP/2 is "
				"not counted", o->keylog, (unsigned long long)r->tls_no_keys,
				(unsigned long long)all);
	}
	track_summaries(r->t, true);
	sf = calloc((size_t)o->nfiles, sizeof(*sf));
	if (sf) {
		stats_record(r, files, o->nfiles, cpu_ms_now(), sf, &stats);
		if (o->fmt == FMT_TEXT) {
			out_flush();  /* the records, written before the report */
			text_report(r, &stats);
		} else {
			out_stats(&stats);
		}
		free(sf);
	}
	out_flush();
	/* A truncated file is not a failure: what it held was reported. */
	if (opened < o->nfiles)
		rc = 1;
out:
	if (r->t)
		track_free(r->t);
	while (r->tombs.next && r->tombs.next != &r->tombs) {
		struct flow *f = r->tombs.next;

		list_del(f);
		free(f);
	}
	for (i = 0; i < o->nfiles; i++)
		if (files[i].in)
			pcapin_close(files[i].in);
	free(files);
	free(r->buckets);
	free(r->due);
	free(r->groups);
	kmap_free(&r->group_by_addr);
	keylog_free(r->kl);
	kpods_free(r->kp);
	free(r);
	return rc;
}

void replay_describe(char *buf, size_t len)
{
	snprintf(buf, len, "pcap, pcapng, gzip (%s); key log decryption with %s", pcap_lib_version(),
		 OpenSSL_version(OPENSSL_VERSION));
}
