/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * What the HTTP/2 watchers tell user space: the h2c walker in the cgroup_skb
 * programs (bpf/tls.bpf.c) and the TLS library uprobes (bpf/h2u.bpf.c). Both send
 * the connection's running totals (struct h2_conn, bpf/h2.h), never payloads:
 * when a connection turns out to be HTTP/2, when a GOAWAY or a desync happens,
 * every H2_UPDATE_STREAMS new streams, and when the connection ends (FIN or RST
 * on the wire, or the socket's close for the uprobe path). User space keeps the
 * latest totals per socket and joins them to the socket's `connection` record.
 */
#ifndef CONNSCOPE_H2_EVENTS_H
#define CONNSCOPE_H2_EVENTS_H

#include "h2.h"

#define H2_UPDATE_STREAMS 64     /* a progress event every this many new streams */

enum h2_ev_type {
	H2_EV_START = 1,   /* the client preface was seen: an HTTP/2 connection */
	H2_EV_UPDATE = 2,  /* running totals (streams milestone, RST_STREAM) */
	H2_EV_GOAWAY = 3,  /* a GOAWAY frame: totals include it */
	H2_EV_DESYNC = 4,  /* a direction lost its frame boundary */
	H2_EV_END = 5,     /* the connection ends: final totals */
};

enum h2_source {
	H2_SRC_WIRE = 1,     /* cleartext h2c, cgroup_skb */
	H2_SRC_OPENSSL = 2,  /* libssl SSL_read/SSL_write plaintext */
	H2_SRC_GO = 3,       /* Go crypto/tls (*Conn).Write plaintext */
	H2_SRC_KEYLOG = 4,   /* replay: TLS records decrypted with a key log */
	H2_SRC_TLS_ALPN = 5, /* user space: a TLS connection that offered h2 (ALPN), seen
				on the wire only: no frames, no stream counts */
};

/* Direction indexes in struct h2_conn as sent: by the local socket's view. */
#define H2_LOCAL_OUT 0   /* bytes this socket sent (egress, SSL_write) */
#define H2_LOCAL_IN 1    /* bytes it received (ingress, SSL_read) */

struct h2_event {
	__u64 ts_ns;
	__u64 cookie;        /* socket cookie; 0 if the uprobe path has not tied it yet */
	__u64 cgroup_id;
	__u32 pid;           /* uprobes: the process; wire: 0 */
	__u16 family;
	__u16 sport;         /* local port, host order (0 if unknown) */
	__u16 dport;
	__u8 type;           /* enum h2_ev_type */
	__u8 source;         /* enum h2_source */
	__u8 _pad[4];
	__u8 saddr[16];
	__u8 daddr[16];
	struct h2_conn c;    /* the totals; c.client_dir is H2_LOCAL_OUT if we are the client */
	char comm[16];
};
_Static_assert(sizeof(struct h2_event) == 184, "h2_event layout changed");

#endif
