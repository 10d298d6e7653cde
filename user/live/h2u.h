/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * HTTP/2 inside TLS, seen in plaintext at the TLS library (bpf/h2u.bpf.c): uprobes on
 * OpenSSL's libssl.so.3 and on Go's crypto/tls, tied to each connection's socket.
 * Events are struct h2_event (bpf/h2_events.h), source H2_SRC_OPENSSL or H2_SRC_GO.
 */
#ifndef CONNSCOPE_H2U_H
#define CONNSCOPE_H2U_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <bpf/libbpf.h>

struct h2u;

/* Counter indexes for h2u_counter. */
enum { H2U_CNT_EVENTS = 0, H2U_CNT_LOST = 1, H2U_CNT_MAP_FULL = 2, H2U_CNT_DESYNC = 3 };

/* Links per-process probes may hold in all (each a perf event and a descriptor):
 * a process with libssl takes 9, a Go program 1. */
#ifndef H2U_MAX_LINKS
#define H2U_MAX_LINKS 1024
#endif

/* Load bpf/h2u.bpf.c, attach its tracepoints, then uprobes on every libssl.so.3 and every
 * Go binary containing crypto/tls.(*Conn).Write found via /proc/<pid>/maps and
 * /proc/<pid>/exe of running processes (files in other mount namespaces through
 * /proc/<pid>/root; deduplicated by device and inode), plus the system libssl if present.
 * per_process: none of that; the probes go only on the processes h2u_sync names, each
 * attached for its pid, and the socket-binding tracepoints only while some process
 * holds probes.
 * NULL and the reason in why[] if it cannot load. */
struct h2u *h2u_open(bool per_process, int sk_info_fd, bool lean, char *why, size_t whylen);
/* sk_info_fd >= 0: the lifecycle programs' socket storage (lean: they run lean). A
 * socket a probed call binds is marked there (CS_F_HELD), so that its close crosses
 * to user space when healthy closes do not: h2u_holds_closes says if it is done.
 * Only through the sock_send_length/sock_recv_length tracepoints, which
 * h2u_kernel_binds says this kernel has. */
bool h2u_kernel_binds(void);
bool h2u_holds_closes(const struct h2u *u);
/* Per-process mode: the processes to probe now (any order, duplicates allowed). Those
 * not probed yet get their probes (at most 16 new ones a call, and none past 100 ms
 * of it: the rest at the next; a link takes ~3 ms to make, and a thread of h2u's own
 * releases them, ~30 ms each),
 * those probed and not named any more (exited, or their pod no longer asked for) lose
 * theirs. A pid now running another program, or reused, is probed again. Every 30th
 * call re-reads each probed process's maps (dlopen). Call every ~1 s. */
void h2u_sync(struct h2u *u, const int *pids, size_t n);
/* Per-process mode: processes holding probes, links held, and processes named at
 * the last h2u_sync that H2U_MAX_LINKS left (partly) without. */
void h2u_probe_counts(struct h2u *u, unsigned *procs, unsigned *links, unsigned *over_cap);
/* Add its ring buffer to rb (ring_buffer__add) with fn receiving struct h2_event. */
int h2u_add_ring(struct h2u *u, struct ring_buffer *rb, ring_buffer_sample_fn fn, void *ctx);
/* Attach to binaries and libraries of processes that appeared since the last scan.
 * Call every ~1 s: a process already scanned costs one stat of /proc/<pid>/exe
 * (a pid counts as scanned while it runs the same executable; exec() keeps the pid
 * and the start time). Every 30th call re-reads every process's maps (dlopen), and
 * every ~10 s entries of processes that are gone are removed from the BPF maps. */
void h2u_rescan(struct h2u *u);
/* Per-CPU counters summed: 0 events, 1 lost, 2 map_full, 3 desync. */
uint64_t h2u_counter(struct h2u *u, int idx);
/* One line for `connscope check`: what is probed. */
void h2u_describe(struct h2u *u, char *buf, size_t len);
void h2u_close(struct h2u *u);

#endif
