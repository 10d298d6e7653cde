/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Per-program fallback: a BPF object loads with the programs this kernel can
 * run, never all-or-nothing. Before load, a program whose hook the kernel lacks
 * (a tracepoint not in its BTF or tracefs, an iterator it does not have) is
 * switched off; a program the verifier refuses is named from libbpf's log,
 * switched off, and the object is loaded again without it. Each program
 * switched off is kept, with why and what replaces it, for `connscope check`.
 *
 * CONNSCOPE_PROGS_OFF=name,name... switches programs off by name as if their
 * hook were missing: a way around a program that misbehaves on some kernel,
 * and how the fallbacks are tested on a kernel that has every hook.
 */
#ifndef CONNSCOPE_PROGFB_H
#define CONNSCOPE_PROGFB_H

#include <stdbool.h>
#include <stdio.h>
#include <bpf/libbpf.h>

/* What a part says of one of its programs. */
struct progfb_role {
	const char *prog;     /* program name, as in the object */
	bool required;        /* the part cannot work without it: no retry without it */
	const char *instead;  /* what does its work when it is off ("" if nothing) */
	const char *lost;     /* what is lost when it is off ("" if nothing) */
};

/* Does this kernel have the hook named by a program's section ("tp_btf/x",
 * "raw_tp/x", "tracepoint/cat/x", "iter/task_file"; others: yes)? If not,
 * why[] says so. */
bool progfb_hook_exists(const char *sec, char *why, size_t len);

/* Is tracefs (which the syscall tracepoints are found through) mounted? Where
 * it is not (a fresh container, or `ip netns exec`, which mounts a new /sys),
 * it is mounted at /sys/kernel/tracing; *mounted_here then says so. */
bool progfb_tracefs(bool *mounted_here);

/* Switch off, before load, the programs of obj (autoload on) whose hook is
 * missing or that CONNSCOPE_PROGS_OFF names, and those earlier attempts on this
 * object blamed (progfb_blame). Records each one under object's name. */
void progfb_prune(struct bpf_object *obj, const char *object, const struct progfb_role *roles);

/* After a failed load of object: the program libbpf named as refused is
 * recorded (with the verifier's error and instruction count), so that check
 * names it and the next progfb_prune switches it off. True: it was not
 * required, try again without it. */
bool progfb_blame(const char *object, const struct progfb_role *roles, int err);

/* Record a program a part switched off itself, and why. */
void progfb_record(const char *object, const char *prog, const struct progfb_role *roles,
		   const char *why);

/* Is this program of object switched off (recorded)? */
bool progfb_is_off(const char *object, const char *prog);

/* Forget object's records (before a fresh series of attempts). */
void progfb_reset(const char *object);

/* Called by the libbpf print hook with every message: notes the program the
 * kernel refused and the instructions the verifier processed for it. */
void progfb_note_libbpf(const char *msg);

/* How many programs are switched off. */
int progfb_count(void);

/* The programs switched off, a line each (PROGRAM, PART, WHY, INSTEAD / LOST);
 * nothing if none. Returns their number. */
int progfb_print(FILE *f);

#endif
