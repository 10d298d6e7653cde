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

#define TRACK_MAX_REMOTES 32
#define TRACK_TLS_SAMPLES 512      /* handshake times kept per pod, for p50/p99 */
#define TRACK_TLS_DEST_SAMPLES 128 /* ... and per destination */
#define TRACK_MAX_TLS_DESTS 16
#define TRACK_MAX_H2_REMOTES 16    /* remotes with an HTTP/2 window per pod */
#define TRACK_H2_SAMPLES 256       /* events kept per remote and window ring */

struct tls_stats {
	uint64_t handshakes, ok, failed, timeouts;
	uint32_t nsamples, pos;    /* ring of the most recent handshake times */
	float *ms;                 /* TRACK_TLS_SAMPLES or TRACK_TLS_DEST_SAMPLES */
};

struct tls_dest {
	char name[272];            /* SNI, or else server ip:port */
	struct tls_stats st;
};

/* How an HTTP/2 connection ended. */
enum h2_end { H2_END_GOAWAY, H2_END_PEER_FIN, H2_END_LOCAL_FIN, H2_END_RST, H2_END_OTHER,
	      H2_END_MAX };

struct h2_closed {
	uint64_t end_ns;
	uint32_t life_ms;
	uint32_t streams;
	uint8_t end;               /* enum h2_end */
};

/* One remote service of a pod, for the HTTP/2 reuse window (rings of the most
 * recent TRACK_H2_SAMPLES events; the window reads those inside it). */
struct h2_remote {
	uint8_t family;
	uint8_t addr[16];
	uint16_t port;             /* 0: the remote is a client */
	bool client;               /* the pod is the client of this remote */
	uint64_t last_ns;
	uint64_t opened[TRACK_H2_SAMPLES];
	uint32_t open_pos, nopened;
	uint64_t goaways[TRACK_H2_SAMPLES];  /* connections' first GOAWAY */
	uint32_t goaway_pos, ngoaways;
	struct h2_closed closed[TRACK_H2_SAMPLES];
	uint32_t closed_pos, nclosed;
	uint64_t churn_reported_ns, goaway_reported_ns;
};

struct h2_agg {
	uint64_t connections, closed, streams, goaway, rst_stream, desync;
};

struct remote_agg {
	uint8_t family;
	uint8_t addr[16];
	uint16_t port;        /* 0: the remote is a client (many source ports) */
	uint64_t conns, refused, timeouts, resets;
};

struct pod_agg {
	char key[320];        /* pods_key(), zero-padded: the tracker's map key */
	struct pod_info pod;  /* container cleared when the pod has several */
	uint64_t opened, closed, refused, timeouts, resets, failed, findings;
	int64_t active;
	/* CLOSE_WAIT gauge, refreshed by track_tick */
	uint64_t cw_current, cw_stuck;
	double cw_max_age_s;
	struct remote_agg remotes[TRACK_MAX_REMOTES];
	int nremotes;
	uint64_t remote_evictions;
	uint64_t dirty;       /* changes since the last summary */
	struct tls_stats tls;
	struct tls_dest *tls_dests; /* TRACK_MAX_TLS_DESTS, allocated on first TLS */
	int ntls_dests;
	uint64_t tls_dest_evictions;
	struct h2_agg h2;
	struct h2_remote **h2_remotes; /* TRACK_MAX_H2_REMOTES, allocated on first HTTP/2 */
	int nh2_remotes;
	uint64_t h2_remote_evictions;
	/* for top: rate of new connections */
	uint64_t rate_prev_opened;
	double open_rate;
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

/* The tracker's time, monotonic ns: its timers (CLOSE_WAIT age, connect and TLS
 * timeouts, folding windows, HTTP/2 windows) read nothing else. Live: the
 * monotonic clock (the default); replay: packet time; tests: whatever they feed. */
typedef uint64_t (*track_clock_fn)(void *arg);

/* want_connections: build `connection` records (trace, daemon); top does not. */
struct tracker *track_new(const struct cs_opts *o, struct pod_resolver *pods,
			  bool want_connections, const struct track_sink *sink,
			  void *sink_arg);
void track_free(struct tracker *t);
void track_set_clock(struct tracker *t, track_clock_fn now, void *arg);
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
/* Streams per HTTP/2 connection of a pod since start; -1 if it had none. */
double h2_streams_per_conn(const struct pod_agg *a);
/* p-th percentile (0..100) of a stats ring, in ms; -1 when empty. */
double track_tls_pct(const struct tls_stats *s, double p);
/* The kernel's running count of connections established in a cgroup (map
 * cg_counts): call for every entry before summaries or a top refresh. */
void track_established(struct tracker *t, uint64_t cgroup_id, uint64_t established);
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

/* For top: the pod aggregates. */
int track_pods(struct tracker *t, struct pod_agg ***out);
uint64_t track_events(const struct tracker *t);
/* Edges the tracker could not keep (out of memory): part of replay's stats.lost. */
uint64_t track_dropped(const struct tracker *t);

#endif
