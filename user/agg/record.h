/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Records as typed values, handed to the sinks (user/output.c) that write them as
 * JSON lines or text: the schema of each lives in its sink alone, and whoever
 * needs a figure reads the struct, not a key of the printed record.
 */
#ifndef CONNSCOPE_RECORD_H
#define CONNSCOPE_RECORD_H

#include <stdbool.h>
#include <stdint.h>

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
	uint64_t ringbuf_full, missed_runs, bpf_ms, consumed;
	uint64_t child_races;    /* listener children closed in SYN_RECV: no record */
	const char *attach;
	const char *tls_cgroup;  /* NULL: the TLS programs are not attached */
	struct {
		const char *watcher;
		uint64_t events, lost, map_full, map_evictions, evictions;
	} ct;
	struct {
		const char *mode;
		uint64_t captured, dropped;
	} stacks;
	const char *holders;
	double uptime_s;
	/* replay */
	const struct stats_file *files;
	int nfiles;
	uint64_t packets, bytes, tcp_segments, not_tcp, ip_fragments, decode_errors, snap_cut,
		 truncated_files, flows, evictions, ignored, duplicates, gaps, desyncs,
		 tls_decrypted, tls_no_keys, tls_bad_keys, tls_unsupported, tls_decrypt_errors,
		 tls_early_data_records;
};

#endif
