/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The tracker's insides, shared by its core (track.c: pods, TCP, findings, emit) and
 * its parts (track_tls.c, track_h2.c, track_ct.c, listed in track_parts.c). */
#ifndef CONNSCOPE_TRACK_PRIV_H
#define CONNSCOPE_TRACK_PRIV_H

#include "h2_events.h"
#include "procfd.h"
#include "track.h"
#include "kmap.h"
#include "record.h"
#include "u64map.h"

#define NS_PER_SEC 1000000000ull
#define UNKNOWN_POD_RETRY_NS (2 * NS_PER_SEC)

/* The cgroup a socket belongs to, resolved once. */
struct cg_entry {
	struct pod_info pod;
	struct pod_agg *agg;
	bool match;            /* passes --pod / --namespace */
	uint64_t resolved_ns;
	uint64_t established;  /* the kernel's count for this cgroup, last read */
};

/* A socket in trouble, watched for timers. */
struct watch {
	struct cs_event ev;    /* the last edge seen (endpoints, owner, cgroup) */
	uint64_t cw_since_ns;  /* CLOSE_WAIT entered (monotonic) */
	uint64_t connect_start_ns;
	bool in_cw, cw_reported, cw_estimated;
	bool connecting, timeout_reported;
	bool preexisting;
	bool flagged;          /* its cgroup was flagged for stacks (--stacks auto) */
	struct sock_owner owner; /* first holder, found when it got stuck */
};

/* Repeats of one finding about one pod and remote, folded into a count. */
struct fold {
	struct cs_event ev;
	const char *kind;
	uint64_t window_start_ns;
	uint64_t count;        /* occurrences since the last emitted finding */
};

struct tracker {
	const struct cs_opts *o;
	struct pod_resolver *pods;
	bool want_conns;
	struct track_sink sink;
	void *sink_arg;
	track_clock_fn clock;
	void *clock_arg;
	struct u64map cgroups;  /* cgroup id -> cg_entry */
	struct kmap aggs;       /* pod key (pods_key, zero-padded) -> pod_agg */
	struct u64map watch;    /* cookie -> watch */
	struct kmap folds;      /* struct fold_key -> fold */
	struct u64map snap_est; /* cookies of pre-existing ESTABLISHED sockets counted active */
	uint64_t events;
	uint64_t dropped;       /* edges not kept: no memory for their cgroup's entry */
	/* Closes held back briefly: an abortive close sends its RST after CLOSE. */
	struct cs_event *pending;
	size_t npending, cap_pending;
	uint16_t eph_lo, eph_hi;
	uint64_t cw_threshold_ns, connect_timeout_ns, fold_window_ns;
	/* TLS (track_tls.c) */
	struct u64map tls;      /* cookie -> tls_conn, until the connection closes */
	struct u64map tls_hs;   /* cookie -> tls_conn, while the handshake is on */
	uint64_t tls_timeout_ns;
	/* HTTP/2 (track_h2.c) */
	struct u64map h2;       /* cookie -> h2_state, until the connection closes */
	uint64_t h2_window_ns;
	/* Conntrack (track_ct.c) */
	bool ct_on;
	struct kmap ct_orig;    /* orig tuple -> ct_entry */
	struct kmap ct_reply;   /* reply tuple (the backend's socket) -> the same */
	struct kmap pod_addrs;  /* a pod's own address -> "ns/name" (malloc'd) */
	uint64_t ct_events, ct_evictions;
	bool ct_have_stat;
	uint64_t ct_count, ct_max, ct_stat_ns, ct_drops, ct_insert_failed, ct_early_drops,
		 ct_pressure_ns;
	/* Live: holders and stacks (track_set_holders) */
	track_holders_fn holders_fn;
	track_flag_fn flag_fn;
	void *holders_arg;
	/* Replay (track_set_replay) */
	bool replay;
	track_pod_fn pod_fn;
	void *pod_arg;
	char *const *files;
	int nfiles;
};

/* One connection's TLS handshake, as the wire showed it. */
enum tls_outcome { TLS_OUT_PROGRESS, TLS_OUT_OK, TLS_OUT_FAILED, TLS_OUT_TIMEOUT,
		   TLS_OUT_INCOMPLETE };

struct tls_conn {
	struct cs_event ev;       /* endpoints, cgroup, cookie (ts: start) */
	uint64_t start_ns, done_ns;
	uint8_t *ch, *sh;         /* captured ClientHello / server flight, freed once read */
	uint32_t ch_have, sh_have;
	char sni[256];
	char alpn_offered[128];   /* comma-joined */
	char alpn[32];
	char alpn_ee[32];         /* replay: TLS 1.3's selected ALPN, from the decrypted
				     EncryptedExtensions (the ServerHello has none) */
	uint16_t version;
	uint8_t outcome;          /* enum tls_outcome */
	uint8_t we_are_client;
	uint8_t failed_by_client; /* valid when failed */
	uint8_t alert_level, alert_desc, alert_clear;
	bool timeout_reported, counted;
	uint64_t ino;
};


/* One connection's HTTP/2 totals, as its watcher last sent them. */
struct h2_state {
	struct cs_event ev;       /* endpoints, cgroup, cookie, side */
	struct h2_event last;     /* the latest totals */
	struct h2_conn counted;   /* what the pod's counters hold of it */
	uint64_t start_ns;
	uint32_t pid;
	char comm[16];
	bool match;               /* passes the filters */
	bool goaway_counted, goaway_error_reported;
};

struct cg_entry *tr_cgroup(struct tracker *t, uint64_t cgid);
/* Now, on the tracker's clock (track_set_clock). */
uint64_t tr_now(const struct tracker *t);
double tr_secs3(double s);
int tr_family(const struct cs_event *e);
uint64_t tr_elapsed(uint64_t now, uint64_t since);
int tr_side_of(const struct tracker *t, const struct cs_event *e);
const char *tr_side_name(int side);
void tr_remote_text(const struct cs_event *e, int side, char *buf, size_t len);
void tr_pod_text(const struct pod_info *p, char *buf, size_t len);
/* A finding about a socket: the common fields (and its nat) filled, the detail left
 * to the caller. */
void tr_finding_init(struct tracker *t, struct finding_rec *f, const char *kind,
		     const char *severity, const struct cs_event *e, const struct cg_entry *c,
		     uint32_t pid, const char *comm, uint64_t ts_mono);
/* The message, with where conntrack sent the connection when it did. */
void tr_message(struct finding_rec *f, const char *msg);
void tr_emit_finding(struct tracker *t, const struct finding_rec *f);
void tr_emit_connection(struct tracker *t, const struct conn_rec *c);

/* A part of the tracker (TLS, HTTP/2, conntrack): the hooks the core calls for
 * every part alike, in the order of track_parts (user/agg/track_parts.c). Any hook
 * may be NULL. */
struct track_part {
	const char *name;
	void (*init)(struct tracker *t);                 /* at track_new */
	void (*tick)(struct tracker *t, uint64_t now);   /* timers, from track_tick */
	/* Its member of a pod's summary record. */
	void (*summary)(struct tracker *t, struct summary_rec *s, const struct pod_agg *a);
	void (*agg_free)(struct pod_agg *a);             /* what it holds in a pod */
	void (*free_all)(struct tracker *t);             /* at track_free */
};

extern const struct track_part *const track_parts[]; /* NULL-terminated */
extern const struct track_part tls_part, h2_part, ct_part;

/* track_tls.c, called by track.c */
struct conn_rec;
struct tls_conn *tls_take(struct tracker *t, uint64_t cookie);
void tls_close(struct tracker *t, struct tls_conn *tc, const struct cs_event *close);
void tls_view(const struct tls_conn *tc, struct conn_rec *v);
void tls_free(struct tls_conn *tc);

/* track_h2.c, called by track.c */
struct h2_state *h2_take(struct tracker *t, uint64_t cookie);
void h2_close(struct tracker *t, struct h2_state *hs, const struct cs_event *close);
void h2_view(const struct h2_state *hs, struct conn_rec *v);

/* track_ct.c, called by track.c */
void ct_view(struct tracker *t, const struct cs_event *e, struct conn_rec *v);
void ct_finding_nat(struct tracker *t, struct finding_rec *f, const struct cs_event *e);
/* A pod's socket shows the pod's address: remembered, so a NAT'd backend is named. */
void ct_learn_pod(struct tracker *t, const struct cs_event *e, const struct pod_info *p);
/* A socket of this node took part in the flow (an edge of it was seen). */
void ct_socket_seen(struct tracker *t, const struct cs_event *e);

#endif
