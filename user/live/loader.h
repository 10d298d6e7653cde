/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Load the BPF programs and attach them, choosing a fallback per kernel. */
#ifndef CONNSCOPE_LOADER_H
#define CONNSCOPE_LOADER_H

#include <stdbool.h>
#include <stdint.h>
#include "opts.h"

#define LOADER_NHOOKS 4
#define LOADER_NRESCUE 4 /* the hooks with a rescue program, first in the list */

struct hook_status {
	const char *tracepoint;
	const char *purpose;
	bool required;
	bool in_btf;          /* the kernel has this tracepoint (BTF typedef) */
	const char *variant;  /* "tp_btf", "raw_tp" or NULL if not attached */
	char note[160];
};

struct loader {
	struct conn_bpf *skel;
	/* TLS: cgroup_skb programs on ingress and egress of one cgroup2 directory. */
	struct tls_bpf *tls;
	struct bpf_link *tls_links[2];
	char tls_cgroup[512];  /* where they are attached */
	char tls_note[256];    /* why TLS is not observed, when it is not */
	struct bpf_link *links[LOADER_NHOOKS];
	struct bpf_link *rescue_links[LOADER_NRESCUE]; /* run what the kernel skipped */
	char rescue_note[160]; /* why a rescue program is not attached */
	enum cs_attach mode;  /* ATTACH_TP_BTF or ATTACH_RAW_TP once loaded */
	char fallback_why[256];
	struct hook_status hooks[LOADER_NHOOKS];
	int stats_fd;
	bool problems_only;   /* the kernel sends only problem closes (conn_mode) */
	bool lean;            /* ... and keeps no socket storage for healthy ones */
	bool tls_quiet;       /* asked: complete TLS handshakes stay in the kernel */
	uint64_t tls_ring_bytes; /* asked: the TLS ring's size (0: the object's) */
	bool tls_kcounts;     /* TLS handshakes are counted in cg_counts */
	const struct cs_event *cw_slots; /* the CLOSE_WAIT slots, mapped read-only */
};

/* Check the environment (privileges, BTF); one line on stderr and -1 if unfit. */
int loader_preflight(void);
/* The capabilities to load BPF programs: CAP_SYS_ADMIN, or CAP_BPF and CAP_PERFMON. */
bool loader_may_bpf(void);
/* Load and attach. Returns 0, or -1 with one line on stderr. */
int loader_open(struct loader *L, const struct cs_opts *o);
void loader_close(struct loader *L);
/* Load and attach the TLS programs at cgroup_dir. On failure TLS is simply not
 * observed: returns -1 with the reason in L->tls_note, prints nothing. */
int loader_tls_open(struct loader *L, const char *cgroup_dir);
/* Quiet TLS: the handshake in progress under a socket cookie (tls_hello), 0 or -1;
 * its deletion; its flags set (only while it is there); the key after *prev (NULL:
 * the first), 0 or -1 at the end. */
struct tls_hello;
int loader_tls_hello(struct loader *L, uint64_t cookie, struct tls_hello *out);
int loader_tls_hello_del(struct loader *L, uint64_t cookie);
int loader_tls_hello_mark(struct loader *L, uint64_t cookie, struct tls_hello *h, uint8_t flags);
int loader_tls_hello_next(struct loader *L, const uint64_t *prev, uint64_t *next);
/* Quiet TLS: what was kept of a complete handshake (tls_done), taken out; 0 or -1. */
struct tls_done;
int loader_tls_done(struct loader *L, uint64_t cookie, struct tls_done *out);
/* Sum of a per-CPU TLS counter (0 events, 1 lost, 2 map_full, 3 desync). */
uint64_t loader_tls_counter(struct loader *L, int idx);
/* Sum of a per-CPU counter (enum cs_counter). */
uint64_t loader_counter(struct loader *L, int idx);
/* Call fn(&cgroup_id, &counts, arg) for every entry of the cg_counts map (struct
 * cs_cg_counts, summed over the CPUs); an entry for which fn returns true is
 * deleted. */
int loader_for_each_cg_count(struct loader *L,
			     bool (*fn)(const void *cgid, const void *counts, void *arg), void *arg);
/* The same for remote_counts (struct cs_remote_key -> struct cs_remote_counts). */
int loader_for_each_remote(struct loader *L,
			   bool (*fn)(const void *key, const void *counts, void *arg), void *arg);
/* The sockets in CLOSE_WAIT now (map cw_socks): n edges in *out, to free(). */
struct cs_event;
int loader_cw_socks(struct loader *L, struct cs_event **out);
/* Program runs the kernel skipped because the program was already running on
 * that CPU (a softirq interrupting it) and that no rescue program ran: edges
 * lost before the ring buffer. */
uint64_t loader_prog_misses(struct loader *L);
/* Skipped runs that a rescue program ran. */
uint64_t loader_rescued(struct loader *L);
/* Hooks whose rescue program is attached. */
int loader_rescue_hooks(const struct loader *L);
/* Total run time of our programs in ns if kernel BPF stats are on, else 0. */
uint64_t loader_bpf_runtime_ns(struct loader *L);
/* libbpf diagnostics: shown with -v, otherwise the last one is kept for errors. */
void loader_set_verbose(bool v);
const char *loader_last_libbpf_msg(void);

/* Lean mode: the start-up snapshot's sockets, so that the kernel knows them for
 * older than connscope at their close. Returns how many were entered. */
int loader_preexisting(struct loader *L, const uint64_t *cookies, int n);
/* Whether healthy connections now keep no socket state (lean, after the snapshot). */
bool loader_lean_on(const struct loader *L);

#endif
