/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* SIGINT and SIGTERM end a live run within a second. The first sets the run's stop
 * flag, and arms a guard: a thread that, SIGEND_GUARD_MS after the signal, ends the
 * process itself if the run has not (a start-up step or a write that does not
 * return), saying on stderr what was not written. A second signal ends the process
 * at once. */
#ifndef CONNSCOPE_SIGEND_H
#define CONNSCOPE_SIGEND_H

#include <signal.h>
#include <stdint.h>

#define SIGEND_GUARD_MS 900

extern volatile sig_atomic_t sigend_stop;

/* Handlers for SIGINT and SIGTERM, unblocked (a parent may have blocked them), and
 * the guard thread. 0, or -1 when the guard could not start (the handlers are set). */
int sigend_install(void);
/* Monotonic time of the first signal; 0 if none came. */
uint64_t sigend_when_ns(void);
/* The run has said all it will say: past its deadline, the guard exits with rc
 * quietly (what remains is teardown the kernel does anyway). */
void sigend_done(int rc);
/* Exit with rc now, leaving the release of the kernel objects (slow: uprobes) to a
 * child that outlives the process by that long. Async-signal-safe. */
void sigend_exit(int rc) __attribute__((noreturn));

#endif
