/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Who holds a socket and which code path made it (bpf/holders.bpf.c): every
 * process that has it in an fd, found by a BPF task/file iterator (or, where
 * that cannot load, by a /proc/<pid>/fd scan for its inode), and the user
 * stack of the connect()/accept() that made it, symbolized.
 */
#ifndef CONNSCOPE_HOLDERS_H
#define CONNSCOPE_HOLDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "holders_events.h"
#include "opts.h"
#include "symbolize.h"

#define HOLDERS_MAX 8          /* holders named per socket */
#define HOLDERS_MAX_FRAMES (HS_STACK_DEPTH + 1)

struct holder {
	uint32_t pid;   /* host pid (thread-group id) */
	uint32_t fd;
	char comm[16];
};

/* What is known of one socket. */
struct sock_holders {
	int nholders;                 /* all of them, even past HOLDERS_MAX */
	struct holder h[HOLDERS_MAX];
	char why[256];                /* when nholders == 0: why none is named */
	int nframes;                  /* 0: no stack */
	char frames[HOLDERS_MAX_FRAMES][SYM_LEN];
	const char *origin;           /* "connect", "accept" or NULL */
	char stack_note[160];         /* when nframes == 0: why there is no stack */
};

struct holders;

/* Load the iterator and, unless mode is HS_STACKS_OFF, the stack programs.
 * raw_tp: take the raw_tp form of the state-change hook. Never fails as a whole:
 * what could not load is said by holders_describe. NULL only without memory. */
struct holders *holders_open(enum hs_stack_mode mode, bool raw_tp);
void holders_close(struct holders *h);
/* One line for `connscope check` and the stats record. */
const char *holders_describe(const struct holders *h);
const char *holders_stacks_describe(const struct holders *h);

/* Fill out[i] for the socket with cookies[i] (inos[i]: its inode where known, for
 * the /proc fallback). One iterator pass for all n. */
void holders_lookup(struct holders *h, const uint64_t *cookies, const uint64_t *inos, int n,
		    struct sock_holders *out);
/* Housekeeping, every loop turn: reclaims stack-map entries every 10 s. */
void holders_tick(struct holders *h);
/* --stacks auto: from now on, capture stacks in this cgroup. */
void holders_flag_cgroup(struct holders *h, uint64_t cgroup_id);
/* Stacks taken and dropped (per-CPU counters of the BPF side), and stack-map
 * entries user space reclaimed. */
void holders_counters(const struct holders *h, uint64_t *captured, uint64_t *dropped);

/* The name of the mode for --stacks, or NULL. */
const char *holders_mode_name(enum hs_stack_mode m);
int holders_parse_mode(const char *s, enum hs_stack_mode *m);

#endif
