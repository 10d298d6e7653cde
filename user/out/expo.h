/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The Prometheus text exposition of `connscope daemon --metrics-addr`: per pod
 * (TCP, connect and handshake histograms, CLOSE_WAIT, TLS, HTTP/2, findings by
 * kind, the busiest remotes), for the node (conntrack) and for connscope itself.
 *
 * It keeps what a scrape must see grow steadily and a summary cannot carry: the
 * findings by kind, and which remotes of each pod have a label of their own.
 * Only the event loop calls it.
 */
#ifndef CONNSCOPE_EXPO_H
#define CONNSCOPE_EXPO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "record.h"
#include "track.h"

#define EXPO_REMOTES_DEFAULT 5  /* remotes with a label of their own, per pod */

/* The tool's own figures: the stats record's fields of the same names. */
struct metrics_self {
	uint64_t events, lost, map_full, parser_desync, sampled_out;
	double cpu_ms;
	/* stats.output_dropped, by type: connection, finding, summary, stats */
	uint64_t output_dropped[4];
	const char *attach;             /* tp_btf or raw_tp */
	unsigned links_attached, links_detached;
	uint64_t bpf_run_ns, bpf_runs;  /* every program's, from the kernel's bpf_stats */
	uint64_t ct_events, ct_lost;    /* the conntrack watcher's */
	bool has_ct_table;              /* the five below were read */
	uint64_t ct_entries, ct_limit, ct_drops, ct_insert_failed, ct_early_drops;
	uint64_t rss_bytes;
	double start_time_s;            /* the process's start, seconds since the epoch */
};

struct expo;

/* remotes: the labelled remotes per pod (0: EXPO_REMOTES_DEFAULT). NULL when out
 * of memory. */
struct expo *expo_new(unsigned remotes);
/* Count a finding under its pod and kind (connscope_findings_total). */
void expo_finding(struct expo *x, const struct finding_rec *f);
/* Write the exposition: the tracker's pods, then the node and the tool. The
 * server's own counters (connscope_metrics_rejected_total) are appended by the
 * caller. -1 when the tracker's views cannot be made (out of memory). */
int expo_render(struct expo *x, FILE *f, struct tracker *t, const struct metrics_self *self);
/* The same from summaries made elsewhere (tests). */
int expo_render_views(struct expo *x, FILE *f, const struct summary_rec *pods, int n,
		      const struct metrics_self *self);
void expo_free(struct expo *x);

#endif
