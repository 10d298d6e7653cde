/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The tracker's insides, shared by its core (track.c: the cgroup -> pod cache, the
 * pods' aggregates, folding windows, the finding builder, emit) and its parts
 * (track_tcp.c, track_tls.c, track_h2.c, track_ct.c, listed in track_parts.c). */
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
	uint64_t established;  /* replay: the count given by track_established */
	struct cs_cg_counts k; /* live: the kernel's counts for this cgroup, last read */
};

struct tracker {
	const struct cs_opts *o;
	struct pod_resolver *pods;
	bool want_conns;
	struct track_sink sink;
	void *sink_arg;
	struct track_clock clock;
	struct u64map cgroups;  /* cgroup id -> cg_entry */
	struct kmap aggs;       /* pod key (pods_key, zero-padded) -> pod_agg */
	struct kmap folds;      /* struct fold_key -> fold */
	uint64_t events;
	uint64_t dropped;       /* edges not kept: no memory for their cgroup's entry */
	uint16_t eph_lo, eph_hi;
	uint64_t fold_window_ns;
	bool kcounts;           /* the kernel counts (track_kcounts); edges are not counted */
	void *part[TRACK_MAX_PARTS]; /* each part's own state (track_part.state_size) */
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

struct cg_entry *tr_cgroup(struct tracker *t, uint64_t cgid);
/* The slot of a log2 histogram of microseconds (CS_HIST_SLOTS) that us falls in:
 * slot r holds [2^(r-1), 2^r) us, as the kernel's cs_log2_slot counts. */
static inline uint32_t tr_hist_slot(uint64_t us)
{
	uint32_t r = us ? 64 - (uint32_t)__builtin_clzll(us) : 0;

	return r < CS_HIST_SLOTS ? r : CS_HIST_SLOTS - 1;
}

/* p-th percentile (0..100) of a log2 histogram of microseconds (CS_HIST_SLOTS), in
 * ms: the upper bound of the slot the rank falls in; -1 when empty. */
double tr_hist_pct_ms(const uint64_t *h, double p);
/* The TLS part's share of the kernel's per-cgroup counts: what changed since was. */
void tls_kcounts(struct pod_agg *pa, const struct cs_cg_counts *was, const struct cs_cg_counts *now);
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
/* A figure behind the finding's cause (evidence), a number or a string (NULL:
 * null); beyond FINDING_MAX_EVIDENCE, dropped. */
void tr_evidence_num(struct finding_rec *f, const char *name, double v);
void tr_evidence_str(struct finding_rec *f, const char *name, const char *v);
void tr_emit_finding(struct tracker *t, const struct finding_rec *f);
void tr_emit_connection(struct tracker *t, const struct conn_rec *c);

/* A part of the tracker (TCP, TLS, HTTP/2, conntrack): the hooks the core calls
 * for every part alike, in the order of track_parts (user/agg/track_parts.c).
 * The core names no part; a part keeps its state in what the core allocates for
 * it (tr_state, tr_pod_state) and reaches the others only through the records.
 * Any hook may be NULL. */
struct track_part {
	const char *name;
	size_t state_size;    /* its state in the tracker: zeroed at track_new */
	size_t pod_size;      /* its state in a pod: zeroed, at its first tr_pod_state */
	void (*init)(struct tracker *t, void *st);
	/* Every lifecycle edge (struct cs_event), before any filter. */
	void (*edge)(struct tracker *t, const struct cs_event *e);
	/* A connection ended (the TCP part's close): a part adds what it knows to the
	 * record, and settles its own accounts; conn_done after the record is out. */
	void (*conn_close)(struct tracker *t, const struct cs_event *e, struct conn_rec *v);
	void (*conn_done)(struct tracker *t, const struct cs_event *e);
	/* A finding about a socket is being built: what the part adds to it. */
	void (*finding)(struct tracker *t, struct finding_rec *f, const struct cs_event *e);
	void (*tick)(struct tracker *t, uint64_t now);   /* timers, from track_tick */
	void (*flush)(struct tracker *t);                /* at the end: nothing held back */
	/* Its members of a pod's summary record; pod_live: a summary is due even
	 * when nothing changed (a live gauge). */
	void (*summary)(struct tracker *t, struct summary_rec *s, const struct pod_agg *a);
	bool (*pod_live)(const struct tracker *t, const struct pod_agg *a);
	void (*pod_free)(void *pod_st);                  /* what its pod state holds */
	void (*free_all)(struct tracker *t);             /* at track_free */
};

extern const struct track_part *const track_parts[]; /* NULL-terminated */
extern const struct track_part tcp_part, tls_part, h2_part, ct_part;

/* A part's state in the tracker, and in a pod (NULL when create is false and the
 * pod has none yet, or when memory ran out). */
void *tr_state(const struct tracker *t, const struct track_part *p);
void *tr_pod_state(struct pod_agg *a, const struct track_part *p, bool create);
const void *tr_pod_state_c(const struct pod_agg *a, const struct track_part *p);
/* An edge for every part, not counted as one the kernel sent (track_event). */
void tr_edge(struct tracker *t, const struct cs_event *e);
/* Passes --port. */
bool tr_port_match(const struct tracker *t, const struct cs_event *e);
/* The real time (ns since the epoch) of a time on the tracker's clock. */
uint64_t tr_real(const struct tracker *t, uint64_t mono);
/* A connection ended: every part adds to its record, which goes out when
 * connection records are wanted. */
void tr_connection_end(struct tracker *t, const struct cs_event *e, struct conn_rec *v);
/* A finding about one pod and remote: the first at once, repeats within
 * --finding-window counted and reported with their count when it ends. The
 * caller's message function writes the text (and the cause, for kinds that have
 * one; the event is the latest of the fold). */
typedef void (*tr_fold_msg_fn)(struct tracker *t, struct finding_rec *f,
			       const struct cs_event *e, int side, char *msg, size_t len);
void tr_fold_hit(struct tracker *t, const char *kind, const struct cs_event *e, int side,
		 tr_fold_msg_fn msg_fn);

#endif
