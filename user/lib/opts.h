/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The parsed command line. Which commands take which option: all_options in main.c. */
#ifndef CONNSCOPE_OPTS_H
#define CONNSCOPE_OPTS_H

#include <stdbool.h>
#include <stdint.h>

enum cs_cmd { CMD_TOP, CMD_TRACE, CMD_DAEMON, CMD_REPLAY, CMD_CHECK };
enum cs_fmt { FMT_TEXT, FMT_JSON };
enum cs_attach { ATTACH_AUTO, ATTACH_TP_BTF, ATTACH_RAW_TP };
enum cs_conntrack { CT_AUTO, CT_BPF, CT_NETLINK, CT_OFF };
/* --connections: which connection records are written. */
enum cs_conns { CONNS_DEFAULT, CONNS_ALL, CONNS_PROBLEMS, CONNS_NONE };
/* --h2-plaintext: where the TLS libraries are probed for HTTP/2 inside TLS: nowhere,
 * every process of the node, the processes of named pods, or those of pods an
 * HTTP/2 finding named, for a while. */
enum cs_h2p { H2P_OFF, H2P_ALL, H2P_PODS, H2P_AUTO };

struct cs_opts {
	enum cs_cmd cmd;
	enum cs_fmt fmt;
	enum cs_attach attach;
	const char *pod;            /* --pod [NS/]NAME */
	const char *ns;             /* --namespace NS */
	uint16_t port;              /* --port N, 0 = any */
	double interval_s;          /* -i: refresh / summary interval, 0 = none */
	double duration_s;          /* -d: stop after, 0 = until signalled */
	double close_wait_threshold_s;
	double tls_timeout_s;
	double connect_timeout_s;
	double finding_window_s;    /* repeats of a finding within this window are folded */
	double idle_cut_s;          /* peer_reset after this long without a byte in: idle_cut */
	double h2_window_s;         /* HTTP/2 reuse window */
	unsigned h2_churn_conns;    /* h2_reuse_churn: closed connections in the window, at least */
	double h2_churn_streams;    /* ... carrying at most this many streams each */
	unsigned h2_goaway_runs;    /* h2_goaway: connections ended by GOAWAY in the window */
	const char *pods_dir;
	const char *cgroup;         /* --cgroup: where cgroup_skb programs attach (default: cgroup2 root) */
	const char *metrics_addr;
	unsigned metrics_remotes;   /* remotes labelled per pod in /metrics (0: the default) */
	bool verbose;
	bool no_snapshot;
	char **files;               /* replay */
	int nfiles;
	const char *keylog;
	const char *pods_file;
	enum cs_conntrack conntrack; /* --conntrack */
	const char *conntrack_netns; /* --conntrack-netns: where conntrack is watched */
	double ct_pressure_pct;      /* --conntrack-pressure: % of nf_conntrack_max */
	uint64_t ct_max;             /* --conntrack-max: the table size to measure against (0: the kernel's) */
	int stacks;                  /* --stacks: enum hs_stack_mode */
	enum cs_conns connections;   /* --connections (resolved: never CONNS_DEFAULT) */
	enum cs_h2p h2_plaintext;    /* --h2-plaintext (default off: nothing per request) */
	const char *h2_pods;         /* H2P_PODS: "NS/NAME,NS/,..." as given */
	double h2_plaintext_for_s;   /* --h2-plaintext-for: H2P_AUTO's probing time per pod */
	uint64_t ringbuf_bytes;      /* CONNSCOPE_RINGBUF_BYTES: the problem ring's size (tests) */
	uint64_t conn_ringbuf_bytes; /* CONNSCOPE_CONN_RINGBUF_BYTES: the healthy closes' ring */
	uint64_t tls_ringbuf_bytes;  /* CONNSCOPE_TLS_RINGBUF_BYTES: the TLS handshakes' ring */
	bool lean_off;               /* CONNSCOPE_LEAN=0: socket state for every socket */
	bool rescue_off;             /* CONNSCOPE_RESCUE=0: no rescue programs */
	uint32_t test_skip_runs;     /* CONNSCOPE_TEST_SKIP_RUNS: tests skip every Nth run */
	bool reset_rate_set;         /* CONNSCOPE_RESET_RATE given: */
	uint64_t reset_rate;         /* reset records a second per CPU with only problems (0: all) */
	unsigned output_queue_mib;   /* --output-queue: MiB of records for stdout, 0: 8 */
};

#endif
