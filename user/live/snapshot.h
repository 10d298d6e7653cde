/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Snapshot of the TCP sockets that existed before connscope started, in every
 * network namespace, through netlink sock_diag (NETLINK_SOCK_DIAG, inet_diag). */
#ifndef CONNSCOPE_SNAPSHOT_H
#define CONNSCOPE_SNAPSHOT_H

#include <stdint.h>

struct snap_sock {
	uint64_t cookie;       /* inet_diag cookie (same value as bpf_get_socket_cookie) */
	uint64_t cgroup_id;    /* INET_DIAG_CGROUP_ID, 0 if the kernel did not give it */
	uint64_t ino;          /* socket inode, 0 if orphaned */
	uint32_t netns;        /* netns inode the socket lives in */
	uint32_t uid;
	uint8_t family;        /* AF_INET or AF_INET6 */
	uint8_t state;         /* TCP state, kernel numbering (TCP_ESTABLISHED = 1 ...) */
	uint16_t sport, dport; /* host order */
	uint8_t saddr[16], daddr[16]; /* IPv4 in the first 4 bytes */
	uint32_t last_ack_recv_ms;  /* tcp_info tcpi_last_ack_recv (ms since last ACK in) */
	uint32_t last_data_recv_ms; /* tcp_info tcpi_last_data_recv */
	uint64_t bytes_received, bytes_acked; /* tcp_info, 0 if not given */
};

/* Dump every TCP socket except LISTEN in every network namespace reachable through
 * /proc/<pid>/ns/net and /run/netns/<name>, once per namespace. *out is malloc'd
 * (caller frees). Returns the count, or -1 with a cs_fail line. */
int snapshot_tcp(struct snap_sock **out);

/* The same for the listening sockets only. */
int snapshot_listeners(struct snap_sock **out);

#endif
