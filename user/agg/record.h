/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Records as typed values, handed to the sinks (user/out/output.c) that write them as
 * JSON lines or text: the schema of each lives in its sink alone, and whoever
 * needs a figure reads the struct, not a key of the printed record.
 */
#ifndef CONNSCOPE_RECORD_H
#define CONNSCOPE_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"  /* CS_HIST_SLOTS */

/* replay: one capture file. */
struct stats_file {
	const char *file;
	bool read;               /* opened; the rest only then */
	const char *link;
	uint64_t packets;
	bool truncated;
};

/* `stats`: the tool itself (live) or the capture's own figures (replay). The
 * counters shared by both mean the same in both (connscope(8)). */
struct stats_rec {
	uint64_t ts_real;
	const char *phase;       /* "start", "interval", "end" */
	bool replay;
	uint64_t events, lost, map_full, parser_desync;
	double cpu_ms;
	/* live */
	uint64_t ringbuf_full, missed_runs, rescued_runs, bpf_ms, consumed;
	uint64_t child_races;    /* listener children closed in SYN_RECV: no record */
	uint64_t sampled_out;    /* healthy connections not sent for their record (backlog) */
	const char *attach;
	const char *socket_state; /* live: "on_demand" (lean) or "every_socket"; NULL in replay */
	const char *tls_cgroup;  /* NULL: the TLS programs are not attached */
	const char *h2_plaintext; /* live: --h2-plaintext as it runs: off, all, pods, auto,
				     unavailable */
	struct {
		bool on;          /* pods or auto: per-process probes */
		uint64_t pods, processes, links, over_cap;
		const char *names[16]; /* of the pods probed, the first 16 */
		int nnames;
	} h2_probes;
	const char *tls_handshakes; /* live: which handshakes cross: problems, all (NULL: no TLS) */
	uint64_t tls_events;      /* live: TLS records the kernel sent */
	uint64_t unread;          /* live: records left in the rings, unhandled, when a
				     signal ended the run (it has a second) */
	struct {
		const char *watcher;
		uint64_t events, lost, map_full, map_evictions, evictions;
		uint64_t nat_gets, nat_gets_skipped;
	} ct;
	struct {
		const char *mode;
		uint64_t captured, dropped;
	} stacks;
	const char *holders;
	/* Records connscope could not write to stdout (its queue was full, or stdout
	 * failed), by type. */
	struct {
		uint64_t connection, finding, summary, stats;
	} output_dropped;
	double uptime_s;
	/* replay */
	const struct stats_file *files;
	int nfiles;
	uint64_t packets, bytes, tcp_segments, not_tcp, ip_fragments, decode_errors, snap_cut,
		 truncated_files, flows, evictions, ignored, duplicates, gaps, desyncs,
		 tls_decrypted, tls_no_keys, tls_bad_keys, tls_unsupported, tls_decrypt_errors,
		 tls_early_data_records;
};

struct pod_info;

/* An address and port; addr is 4 or 16 bytes by family. */
struct rec_endpoint {
	int family;
	const uint8_t *addr;
	uint16_t port;
};

/* "nat": what conntrack translated (a Service address to its backend). */
struct nat_rec {
	int family;
	const uint8_t *orig_dst, *reply_src;
	uint16_t orig_dport, reply_sport;
	const char *reply_pod;   /* "ns/name" of the backend, if its sockets were seen; NULL */
	const char *state;       /* conntrack's TCP state when the record was made */
	const char *source;      /* "bpf", "netlink" */
};

/* `finding`: what it is about decides its common fields. */
enum finding_about {
	FINDING_SOCKET,          /* a local socket: pod, owner, netns, cookie, side, ends, nat */
	FINDING_FORWARDED,       /* a flow this node forwards: side, source, ends (nat last) */
	FINDING_NODE,            /* the node itself */
};

/* The fields that follow the common ones, one set per kind. */
enum finding_detail {
	FD_FOLD,                 /* tcp_connect_refused, tcp_reset */
	FD_CONNECT_TIMEOUT,
	FD_CLOSE_WAIT,
	FD_TLS_TIMEOUT,
	FD_TLS_FAILED,
	FD_H2_CHURN,
	FD_H2_GOAWAY,
	FD_H2_CANCELS,
	FD_CT_PRESSURE,
};

#define FINDING_MAX_HOLDERS 8
#define FINDING_MAX_FRAMES 40
#define FINDING_MESSAGE_LEN 2048
#define FINDING_MAX_EVIDENCE 12
#define FINDING_DEBUG_LEN 33     /* GOAWAY debug data kept (bpf/h2.h H2_DEBUG_MAX) + NUL */

/* One figure behind a finding's cause: a number, or a string (is_str; NULL: null). */
struct finding_evidence {
	const char *name;
	const char *str;
	double num;
	bool is_str;
};

struct finding_holder {
	uint32_t pid, fd;
	const char *comm;
};

/* An HTTP/2 reuse window (h2_reuse_churn). */
struct h2_window_rec {
	double seconds;
	uint32_t opened, closed;
	uint64_t streams;        /* of the connections whose streams are known (closed
				    beyond tls_alpn; none: written null) */
	double streams_per_conn; /* < 0: no closed connection with known streams */
	uint32_t tls_alpn;       /* closed TLS connections that offered h2, streams unknown */
	uint32_t http1;          /* ... where the server chose HTTP/1.1 */
	double median_lifetime_ms; /* < 0: none */
	uint32_t by_goaway, by_peer_fin, by_local_fin, by_rst, by_other;
};

struct finding_rec {
	uint64_t ts_real;
	const char *kind, *severity;
	enum finding_about about;
	bool replay;             /* from a capture: no pid, comm, netns or cookie */
	/* FINDING_SOCKET */
	const struct pod_info *pod;
	uint32_t pid;            /* 0: unknown */
	const char *comm;
	uint32_t netns;
	uint64_t cookie;
	/* FINDING_SOCKET and FINDING_FORWARDED */
	const char *side;
	const char *source;      /* FINDING_FORWARDED */
	struct rec_endpoint client, server;
	bool has_nat;
	struct nat_rec nat;
	enum finding_detail detail;
	union {
		struct {
			uint64_t count;
			double window_s;
		} fold;
		struct {
			double elapsed_s, threshold_s;
			unsigned syn_retrans;
		} connect_timeout;
		struct {
			double age_s, threshold_s;
			bool preexisting, age_estimated; /* FINDING_SOCKET */
			bool has_holders;                /* the holders and stack fields */
			struct finding_holder holders[FINDING_MAX_HOLDERS];
			int nholders;                    /* shown */
			int holders_total;               /* written when above nholders */
			const char *holders_note;        /* NULL: none */
			const char *stack[FINDING_MAX_FRAMES]; /* innermost first */
			int nstack;                      /* 0: "stack" null, and stack_note */
			const char *stack_origin, *stack_note;
		} close_wait;
		struct {
			const char *sni;                 /* NULL: none */
			double elapsed_s, threshold_s;   /* FD_TLS_TIMEOUT */
			const char *failed_by, *alert, *reason; /* FD_TLS_FAILED; alert NULL */
		} tls;
		struct {
			struct h2_window_rec window;
			unsigned threshold_conns;
			double threshold_streams_per_conn;
			const char *source;      /* "tls_alpn": TLS on the wire, no streams */
		} h2_churn;
		struct {
			uint32_t cancels;        /* RST_STREAM CANCEL sent in the window */
			unsigned threshold;
			double window_s;
		} h2_cancels;
		struct {
			const char *by;
			uint32_t last_stream_id, streams;
			char error[24];          /* the code's name, or "0x1f" */
			bool has_debug;                  /* the GOAWAY carried debug data */
			char debug[FINDING_DEBUG_LEN];   /* ... its printable ASCII, others '?' */
			bool run;                        /* a run of GOAWAYs: the two below */
			uint32_t goaway_connections;
			double window_s;
		} h2_goaway;
		struct {
			uint64_t count, max, drops, insert_failed, early_drops;
			double percent, growth_per_s, threshold_percent;
		} ct_pressure;
	} d;
	/* Findings whose kind has documented causes (has_cause): cause NULL is written
	 * as null (the evidence did not tell one), evidence as an object. */
	bool has_cause;
	const char *cause;
	struct finding_evidence evidence[FINDING_MAX_EVIDENCE];
	int nevidence;
	char message[FINDING_MESSAGE_LEN];
};

/* `connection`: a socket's connection from its start to its close, or a flow this
 * node only forwarded (conntrack saw it, no socket here took part). */
struct conn_rec {
	uint64_t ts_real;
	uint64_t start_real;      /* 0: unknown (pre-existing) */
	uint64_t duration_ns;
	const struct pod_info *pod;
	uint32_t pid;             /* 0: unknown */
	const char *comm;
	uint32_t netns;
	uint64_t cookie;
	const char *side;
	int family;
	const uint8_t *client_ip, *server_ip;
	uint16_t client_port, server_port;
	bool preexisting;
	const char *outcome;
	bool connect_known;
	uint64_t connect_ns;
	unsigned syn_retrans;
	const char *close;
	uint64_t close_wait_ns;
	uint64_t bytes_in, bytes_out;
	unsigned retrans;
	const char *error;        /* NULL: none */
	/* tls: only when has_tls */
	bool has_tls;
	const char *tls_version, *tls_sni, *tls_alpn, *tls_outcome;
	const char *tls_alpn_offered; /* comma-joined */
	bool tls_alpn_seen;           /* the server's choice shows (tls_alpn NULL: it chose none) */
	bool tls_ms_known;
	uint64_t tls_ns;
	/* h2: only when has_h2 */
	bool has_h2;
	bool h2_midway;               /* joined mid-connection: counts unknown */
	bool h2_joined;               /* replay: joined mid-connection, counted from a frame boundary */
	const char *h2_source;
	bool h2_wire_only;            /* TLS seen on the wire (ALPN h2): no frame counts */
	uint32_t h2_streams, h2_goaway, h2_goaway_last_id, h2_goaway_error_code;
	const char *h2_goaway_error;  /* NULL: a code without a name */
	const char *h2_goaway_by;     /* NULL: no GOAWAY */
	bool h2_goaway_has_debug;
	char h2_goaway_debug[FINDING_DEBUG_LEN]; /* the latest GOAWAY's, printable ASCII */
	uint32_t h2_rst_stream, h2_max_concurrent, h2_pings, h2_desync;
#define H2_UNSET_VALUE 0xffffffffu  /* h2_max_concurrent: never announced */
	/* nat: only when has_nat (conntrack translated the connection) */
	bool has_nat;
	struct nat_rec nat;
	/* replay: no process, cgroup or socket; where in which capture it began */
	bool replay;
	bool open;                    /* still open when the capture ended */
	const char *capture_file;
	uint64_t capture_packet;
	/* forwarded: no pod, process or socket; what conntrack held (nat as above) */
	bool forwarded;
	const char *ct_state;
	bool ct_seen_reply, ct_assured;
	uint32_t ct_netns, ct_mark;
	bool ct_close_wait_known;
	uint64_t ct_close_wait_ns;
};

/* `summary`: one pod's figures since start. */
#define SUMMARY_MAX_REMOTES 5      /* the remotes shown, most troubled first */
#define SUMMARY_ALL_REMOTES 32     /* the remotes a pod's counts keep (/metrics) */
#define SUMMARY_MAX_TLS_DESTS 16
#define SUMMARY_MAX_H2_REMOTES 16

struct tls_stats_rec {
	uint64_t handshakes, ok, failed, timeouts;
	double p50_ms, p99_ms;     /* < 0: no handshake time yet */
};

/* A pod's remote in a summary: the server it dialled, or a client that dialled it. */
struct remote_rec {
	struct rec_endpoint ep;  /* port 0: the remote is a client */
	uint64_t connections, refused, timeouts, resets;
};

struct summary_rec {
	uint64_t ts_real;
	const struct pod_info *pod;
	const char *key;           /* the pod's key in the tracker (not written) */
	struct {
		uint64_t opened, closed, active, refused, timeouts, resets, failed;
		uint64_t closed_by[5];     /* enum cs_close_cause */
		uint64_t bytes_in, bytes_out;
		double connect_p50_ms, connect_p99_ms;  /* -1: no connect timed */
		/* /metrics: connect times, slot r holding [2^(r-1), 2^r) us, and their sum */
		uint64_t connect_hist[CS_HIST_SLOTS], connect_sum_us;
	} tcp;
	struct {
		uint64_t current, stuck;
		double max_age_s;
	} close_wait;
	bool has_tls;              /* false: "tls" null (no handshake yet) */
	struct {
		struct tls_stats_rec all;
		uint64_t hist[CS_HIST_SLOTS], sum_us;  /* /metrics: complete handshakes' times */
		struct {
			const char *destination;
			struct tls_stats_rec st;
		} dests[SUMMARY_MAX_TLS_DESTS];
		int ndests;
		uint64_t dest_evictions;
	} tls;
	bool has_h2;               /* false: "h2" null (no HTTP/2 connection yet) */
	struct {
		uint64_t connections, closed, streams, goaway, rst_stream, desync;
		uint64_t tls_alpn;         /* of connections: TLS on the wire, streams unknown */
		double streams_per_conn;   /* < 0: none with known streams */
		struct h2_window_rec window;  /* all remotes; no median_lifetime_ms */
		struct {
			struct rec_endpoint ep;  /* port 0: the remote is a client */
			bool client;             /* the pod is its client */
			struct h2_window_rec window;
		} remotes[SUMMARY_MAX_H2_REMOTES];
		int nremotes;
		uint64_t remote_evictions;
	} h2;
	uint64_t findings;
	struct remote_rec remotes[SUMMARY_MAX_REMOTES];
	int nremotes;
	uint64_t remote_evictions;
	/* /metrics: every remote the pod's counts keep, in no order, and what the
	 * kernel's full table counted under the cgroups' "other" entries. */
	struct remote_rec all_remotes[SUMMARY_ALL_REMOTES];
	int nall_remotes;
	struct remote_rec remotes_other;  /* ep unset */
};

#endif
