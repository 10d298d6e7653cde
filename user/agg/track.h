/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The aggregator: turns lifecycle edges into connection records, findings and
 * per-pod summaries. It keeps no per-connection state for healthy connections:
 * only sockets in trouble (CLOSE_WAIT, SYN retransmits) sit in its watch list.
 */
#ifndef CONNSCOPE_TRACK_H
#define CONNSCOPE_TRACK_H

#include <stdbool.h>
#include <stdint.h>
#include "conn.h"
#include "opts.h"
#include "pods.h"
#include "snapshot.h"

#define TRACK_MAX_PARTS 8

/* One pod's aggregates. The parts (TCP, TLS, HTTP/2, conntrack) keep theirs
 * behind `part`; outside the tracker, a pod is read as a summary record
 * (track_views). */
struct pod_agg {
	char key[320];        /* pods_key(), zero-padded: the tracker's map key */
	struct pod_info pod;  /* container cleared when the pod has several */
	uint64_t findings;
	uint64_t dirty;       /* changes since the last summary */
	void *part[TRACK_MAX_PARTS];
};

/* Where records go, one callback per type (user/agg/record.h). */
struct finding_rec;
struct conn_rec;
struct summary_rec;
struct track_sink {
	void (*finding)(const struct finding_rec *f, void *arg);
	void (*connection)(const struct conn_rec *c, void *arg);
	void (*summary)(const struct summary_rec *s, void *arg);
};

struct tracker;

/* The tracker's time: its timers (CLOSE_WAIT age, connect and TLS timeouts,
 * folding windows, HTTP/2 windows) and the time stamps of its records read
 * nothing else. now: monotonic ns; real: the wall-clock time (ns since the epoch)
 * of a time on that clock. Live: the monotonic and real-time clocks (the
 * default); replay: packet time, which is wall-clock already; tests: whatever
 * they feed. */
struct track_clock {
	uint64_t (*now)(void *arg);
	uint64_t (*real)(void *arg, uint64_t mono);
	void *arg;
};

/* want_connections: build `connection` records (trace, daemon); top does not. */
struct tracker *track_new(const struct cs_opts *o, struct pod_resolver *pods,
			  bool want_connections, const struct track_sink *sink,
			  void *sink_arg);
void track_free(struct tracker *t);
void track_set_clock(struct tracker *t, const struct track_clock *c);
/* Replay: pods come from pod_fn (an id the caller hands out per pod or address, in
 * cs_event.cgroup_id) instead of cgroup2; connection records say which capture file
 * and packet each connection started at (cookie: (file index + 1) << 48 | packet
 * number) and whether it was still open when the capture ended (CS_F_OPEN). */
typedef const struct pod_info *(*track_pod_fn)(void *arg, uint64_t id);
void track_set_replay(struct tracker *t, track_pod_fn pod_fn, void *arg, char *const *files,
		      int nfiles);
#define TRACK_COOKIE_FILE(c) ((int)((c) >> 48) - 1)
#define TRACK_COOKIE_PACKET(c) ((c) & ((1ull << 48) - 1))

/* Live: who holds stuck sockets and which code path made them (user/live/holders.c).
 * lookup fills out[i] for cookies[i] (inos[i]: the inode where known); flag asks
 * for stacks in a cgroup from now on (--stacks auto). */
struct sock_holders;
typedef void (*track_holders_fn)(void *arg, const uint64_t *cookies, const uint64_t *inos,
				 int n, struct sock_holders *out);
typedef void (*track_flag_fn)(void *arg, uint64_t cgroup_id);
void track_set_holders(struct tracker *t, track_holders_fn lookup, track_flag_fn flag,
		       void *arg);

void track_event(struct tracker *t, const struct cs_event *e);
struct tls_event;
/* An edge from the TLS handshake watcher (bpf/tls.bpf.c). */
void track_tls_event(struct tracker *t, const struct tls_event *e);
/* Replay with a key log: the protocol a TLS 1.3 server selected, read from its
 * decrypted EncryptedExtensions. */
void track_tls_alpn(struct tracker *t, uint64_t cookie, const char *alpn);
struct h2_event;
/* Totals from an HTTP/2 watcher (wire or TLS library uprobes). */
void track_h2_event(struct tracker *t, const struct h2_event *e);
/* Replay: the running count of connections established in a cgroup. */
void track_established(struct tracker *t, uint64_t cgroup_id, uint64_t established);
/* Live: the counts come from the kernel (cg_counts, remote_counts) and edges are
 * not counted again; each refresh gives every cgroup's counts (summed over the
 * CPUs), then every remote's, before summaries, a top frame or /metrics. */
void track_set_kernel_counts(struct tracker *t);
/* Live TLS: the kernel's tls_hello map (bpf/tls_events.h) holds the handshakes in
 * progress, read through k. With counts, the kernel counts handshakes in cg_counts
 * (track_kcounts); with quiet (only problems cross), a complete handshake does not
 * cross at all, and one in progress keeps its hello bytes in tls_hello. */
/* Live conntrack, quiet (only problems cross): translated entries are kept in the
 * kernel, looked up when a record or finding needs one: nat(key, out) as
 * ctbpf_nat. */
struct ct_tuple;
struct ct_event;
struct track_ct_kernel {
	void *ctx;
	int (*nat)(void *ctx, const struct ct_tuple *key, struct ct_event *out);
};
void track_set_ct_kernel(struct tracker *t, const struct track_ct_kernel *k);

struct tls_hello;
struct tls_done;
struct track_tls_kernel {
	void *ctx;
	int (*get)(void *ctx, uint64_t cookie, struct tls_hello *out);
	int (*del)(void *ctx, uint64_t cookie);
	int (*mark)(void *ctx, uint64_t cookie, struct tls_hello *h, uint8_t flags);
	int (*next)(void *ctx, const uint64_t *prev, uint64_t *next);
	int (*done)(void *ctx, uint64_t cookie, struct tls_done *out); /* taken out */
};
void track_set_tls_kernel(struct tracker *t, bool counts, bool quiet,
			  const struct track_tls_kernel *k);
void track_kcounts(struct tracker *t, uint64_t cgroup_id, const struct cs_cg_counts *k);
void track_kremotes_begin(struct tracker *t);
void track_kremote(struct tracker *t, const struct cs_remote_key *k,
		   const struct cs_remote_counts *r);
/* The sockets in CLOSE_WAIT now, as the kernel keeps them (map cw_socks): new ones
 * are watched, those gone from it have left CLOSE_WAIT. */
void track_cw_sockets(struct tracker *t, const struct cs_event *e, int n);
/* True if the cgroup's directory is gone: its kernel counter can be deleted
 * (cgroup ids are never reused). Resets what the tracker read of it. */
bool track_cgroup_gone(struct tracker *t, uint64_t cgroup_id);
/* Sockets that existed before we attached (sock_diag). */
void track_snapshot(struct tracker *t, const struct snap_sock *s, int n);
/* Timers: stuck CLOSE_WAIT, connect timeouts, folded findings. Call often. */
void track_tick(struct tracker *t);
/* Report everything held back (at exit). */
void track_flush(struct tracker *t);
/* One `summary` record per pod that changed or holds live gauges. */
void track_summaries(struct tracker *t, bool all);

struct ct_event;
/* A conntrack edge (BPF netfilter program or ctnetlink): kept to join NAT to the
 * sockets' records, and to report flows this node only forwards. */
void track_ct_event(struct tracker *t, const struct ct_event *e);
/* The conntrack table's fill and the kernel's running drop counters: a
 * conntrack_pressure finding when it nears max or drops. */
void track_ct_pressure(struct tracker *t, uint64_t count, uint64_t max, uint64_t drops,
		       uint64_t insert_failed, uint64_t early_drops);
uint64_t track_ct_evictions(const struct tracker *t);
/* The conntrack table as track_ct_pressure last had it; false before the first. */
bool track_ct_table(const struct tracker *t, uint64_t *count, uint64_t *max, uint64_t *drops,
		    uint64_t *insert_failed, uint64_t *early_drops);
/* Did conntrack's entry for the socket of e go while established (ctnetlink's
 * destroy of an ESTABLISHED entry: expired, or flushed; not a close) by the time
 * of e? 1 or 0; -1 where the watcher cannot tell (none, or the BPF one). */
int track_ct_expired(struct tracker *t, const struct cs_event *e);

/* Every pod as a summary record (top, /metrics): n records in *out, to free()
 * with track_views_free; their pointers stay valid until the next event. */
int track_views(struct tracker *t, struct summary_rec **out);
void track_views_free(struct summary_rec *v, int n);
uint64_t track_events(const struct tracker *t);
/* Edges the tracker could not keep (out of memory): part of replay's stats.lost. */
uint64_t track_dropped(const struct tracker *t);

#endif
