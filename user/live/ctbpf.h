/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The BPF conntrack watcher: bpf/ct.bpf.c on netfilter hooks of one network
 * namespace, reporting struct ct_event (bpf/ct_events.h) edges. Needs a kernel
 * with BPF netfilter links (>= 6.4); on older kernels ctbpf_open fails with the
 * reason and the caller falls back to ctnetlink.
 */
#ifndef CONNSCOPE_CTBPF_H
#define CONNSCOPE_CTBPF_H

#include <stddef.h>
#include <stdint.h>
#include "ct_events.h"

struct ctbpf;
struct ring_buffer;

/* Hooks to attach, for IPv4 and IPv6 each. */
enum {
	CTBPF_PRE_ROUTING = 1u << 0,  /* after DNAT: forwarded and incoming packets */
	CTBPF_LOCAL_OUT = 1u << 1,    /* after DNAT of locally generated packets */
	CTBPF_POST_ROUTING = 1u << 2, /* after SNAT: the first packet's SRC_NAT bit */
	CTBPF_DEFAULT_HOOKS = CTBPF_PRE_ROUTING | CTBPF_LOCAL_OUT,
	/* Read nf_conn with bpf_probe_read_kernel even where the faster
	 * bpf_rdonly_cast loads would do (tests of the fallback). */
	CTBPF_PROBE_READ = 1u << 8,
	/* Only what a problem needs crosses: a translated entry (for the NAT of a
	 * record), an entry in CLOSE_WAIT, and the end of either; a healthy flow
	 * that conntrack did not translate sends nothing (see bpf/ct.bpf.c). */
	CTBPF_QUIET = 1u << 9,
};

typedef void (*ctbpf_cb)(void *arg, const struct ct_event *e);

/* Load the program and attach it in the network namespace at netns_path
 * (/run/netns/NAME, /proc/PID/ns/net), or in the caller's one if NULL.
 * Succeeds if at least one hook attached (see ctbpf_describe for the rest).
 * On failure returns NULL with one plain sentence in why. */
struct ctbpf *ctbpf_open(const char *netns_path, char *why, size_t whylen);
struct ctbpf *ctbpf_open_hooks(const char *netns_path, unsigned hooks, char *why, size_t whylen);

/* Wait up to timeout_ms for events and call cb for each. Returns the number of
 * events handled or a negative errno (-EINTR is a normal stop). */
int ctbpf_poll(struct ctbpf *c, int timeout_ms, ctbpf_cb cb, void *arg);
/* An epoll-able fd that becomes readable when events wait; then ctbpf_poll(c, 0, ...). */
int ctbpf_fd(const struct ctbpf *c);
/* Or feed the events into the caller's own ring buffer set: fn gets a struct ct_event. */
int ctbpf_add_ring(struct ctbpf *c, struct ring_buffer *rb,
		   int (*fn)(void *ctx, void *data, size_t size), void *ctx);

/* Quiet: the translated entry a socket's traffic went through (key: the socket's
 * local address and port as src, the peer's as dst, l3 set), whichever end of it
 * the socket is, in *out, with tcp_state its state now (CT_TCP_NONE unless the
 * program follows it). 0, or -1 if none is kept. */
int ctbpf_nat(const struct ctbpf *c, const struct ct_tuple *key, struct ct_event *out);

/* Counters summed over CPUs; any pointer may be NULL. */
void ctbpf_counters(const struct ctbpf *c, uint64_t *events, uint64_t *lost, uint64_t *map_full);
/* Entries the LRU state map had to evict to make room (approximate, see
 * bpf/ct.bpf.c): each one may later show up again as a NEW. */
uint64_t ctbpf_evictions(const struct ctbpf *c);
/* The program's BPF id (for bpftool / run-time stats), or 0. */
uint32_t ctbpf_prog_id(const struct ctbpf *c);
/* One line for `connscope check`: what is attached where, and what failed why. */
void ctbpf_describe(const struct ctbpf *c, char *buf, size_t len);
/* Close the links (which detaches the hooks) and free everything. NULL is fine. */
void ctbpf_close(struct ctbpf *c);

#endif
