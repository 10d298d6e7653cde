/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The ctnetlink fallback: conntrack lifecycle edges of one network namespace,
 * read from the kernel's NETLINK_NETFILTER multicast groups, without BPF and
 * without libnetfilter_conntrack. Events come out as struct ct_event
 * (bpf/ct_events.h) with source CT_SRC_NETLINK and id = CTA_ID.
 *
 * The kernel only sends these events when net.netfilter.nf_conntrack_events
 * is 1, or 2 ("on while someone listens", the default on recent kernels,
 * 6.18 included): with 0 the groups stay silent. ctnl_describe() says which it is in the watched netns.
 */
#ifndef CONNSCOPE_CTNL_H
#define CONNSCOPE_CTNL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ct_events.h"

struct ctnl;

typedef void (*ctnl_cb)(void *arg, const struct ct_event *e);

/* Subscribe to the conntrack NEW, UPDATE and DESTROY groups of the network
 * namespace behind netns_path (/run/netns/NAME, /proc/PID/ns/net), or of the
 * caller's own when it is NULL. The sockets are made by a short-lived thread
 * that enters the namespace; they stay bound to it, and no thread of the
 * process is left inside. NULL on failure, with the reason in why. */
struct ctnl *ctnl_open(const char *netns_path, char *why, size_t whylen);
/* Only a socket for requests (ctnl_get), in that namespace: no events. */
struct ctnl *ctnl_open_query(const char *netns_path, char *why, size_t whylen);
/* The entry whose original tuple (reply false) or reply tuple (true) is t, as
 * a CT_EV_NEW with its current state. 0, or a negative errno: -ENOENT when
 * conntrack has no such entry. Two system calls; the caller bounds the rate. */
int ctnl_get(struct ctnl *c, const struct ct_tuple *t, bool reply, struct ct_event *out);
/* The event socket, non-blocking, for poll(POLLIN). */
int ctnl_fd(const struct ctnl *c);
/* Deliver the events already queued (up to a few thousand datagrams per
 * call; poll again for the rest). Returns the number delivered, or a
 * negative errno. A receive-buffer overrun (ENOBUFS) is counted as lost, not
 * returned: the events it dropped cannot be recovered, but later ones can. */
int ctnl_read(struct ctnl *c, ctnl_cb cb, void *arg);
/* List the TCP entries that exist now (IPCTNL_MSG_CT_GET, NLM_F_DUMP) on a
 * separate socket, so that none of them interleave with live events. Each is
 * delivered as CT_EV_NEW: a caller that must tell them from live NEW edges
 * passes a different callback or arg. The entries also seed the table of last
 * states, so that a later UPDATE knows its old_tcp_state. Returns the number
 * of entries, or a negative errno. */
int ctnl_dump(struct ctnl *c, ctnl_cb cb, void *arg);
/* events: delivered so far (read and dump). lost: overruns of the receive
 * buffer, each one an unknown number of events. */
void ctnl_counters(const struct ctnl *c, uint64_t *events, uint64_t *lost);
/* One line: the namespace, nf_conntrack_events and what it means. */
void ctnl_describe(const struct ctnl *c, char *buf, size_t len);
void ctnl_close(struct ctnl *c);

/*
 * Parse one ctnetlink message (struct nlmsghdr onwards, exactly len bytes).
 * Pure: no state, so type is NEW, UPDATE or DESTROY from the message alone and
 * old_tcp_state, ts_ns and netns are left 0. A message that carries no
 * CTA_PROTOINFO leaves tcp_state CT_TCP_NONE.
 * Returns 1 for a TCP conntrack event, 0 for a message that is well formed but
 * not one (another protocol, another message type), -1 for a malformed one.
 */
int ctnl_parse(const void *msg, size_t len, struct ct_event *out);

/* Run fn(arg) on a short-lived thread inside the network namespace behind
 * path (NULL: the caller's own). Returns 0, or a negative errno with the
 * failing step in why; fn's own result travels through arg. *ino receives the
 * namespace's inode when ino is not NULL. */
int ctnl_in_netns(const char *path, void (*fn)(void *arg), void *arg, uint32_t *ino,
		  char *why, size_t whylen);

#endif
