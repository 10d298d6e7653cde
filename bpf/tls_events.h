/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * What the TLS handshake watcher (bpf/tls.bpf.c) tells user space, on its own
 * ring buffer. Per handshake: a start, the bytes of the ClientHello and of the
 * server's first record (so user space can read SNI, ALPN and versions with the
 * shared parser in bpf/tls.h), then the end: done, an alert in clear, or a desync.
 */
#ifndef CONNSCOPE_TLS_EVENTS_H
#define CONNSCOPE_TLS_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define TLS_CHUNK 512            /* bytes of handshake per data event (a power of two) */
#define TLS_CAPTURE_CLIENT 4096  /* ClientHello bytes captured at most */
#define TLS_CAPTURE_SERVER 1024  /* bytes of the server's first flight captured */

enum tls_ev_type {
	TLS_EV_START = 1,   /* first bytes of a ClientHello: the handshake starts */
	TLS_EV_DATA = 2,    /* handshake bytes at stream offset `off` of direction `dir` */
	TLS_EV_DONE = 3,    /* complete (rule in bpf/tls.h) */
	TLS_EV_ALERT = 4,   /* an alert in clear, or an encrypted one told by its size */
	TLS_EV_DESYNC = 5,  /* record boundary lost: this handshake is no longer followed */
};

enum tls_dir {
	TLS_DIR_C2S = 0,    /* client to server */
	TLS_DIR_S2C = 1,
};

struct tls_event {
	__u64 ts_ns;
	__u64 cookie;
	__u64 cgroup_id;
	__u64 ino;          /* socket inode (START), to name the process that holds it */
	__u32 netns;
	__u32 off;          /* DATA: offset in the direction's byte stream (0 = first byte) */
	__u16 len;          /* DATA: bytes in data[] */
	__u16 family;
	__u16 sport;        /* local port, host order */
	__u16 dport;
	__u16 version;      /* DONE: 0x0303 / 0x0304 as the handshake showed it */
	__u8 type;          /* enum tls_ev_type */
	__u8 dir;           /* enum tls_dir: DATA, ALERT: who sent it */
	__u8 we_are_client; /* this socket sent the ClientHello */
	__u8 alert_level;   /* ALERT: 1 warning, 2 fatal, 0 unknown (encrypted) */
	__u8 alert_desc;    /* ALERT: description, in clear only */
	__u8 alert_clear;   /* ALERT: 1 if read in clear */
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 data[TLS_CHUNK];
};
_Static_assert(sizeof(struct tls_event) == 600, "tls_event layout changed");

/*
 * A handshake in progress has an entry in the tls_hello map, under the socket
 * cookie, until it ends: then user space can tell one still on at the close (or
 * past --tls-timeout) from one whose end event was lost.
 *
 * Quiet mode (only problems cross): the entry also holds the start and the hello
 * bytes, which do not cross. A complete handshake is counted in the kernel
 * (cg_counts) and its entry deleted; an alert or a desync crosses as its end event,
 * and user space takes the entry then, at the connection's close if the handshake
 * is still on, or when it passes --tls-timeout (user space walks the map).
 */
#define TLS_HELLO_MAX 4096        /* handshakes in progress followed at once */
#define TLS_DONE_MAX 16384        /* complete handshakes remembered (LRU) */
#define TLS_HELLO_REPORTED 0x01   /* user space reported it (a timeout): its end crosses */

struct tls_hello {
	__u64 start_ns;
	__u64 cgroup_id;
	__u64 ino;                /* socket inode, to name the process that holds it */
	__u32 ch_have, sh_have;   /* bytes captured from offset 0 */
	__u16 family;
	__u16 sport;              /* local port, host order */
	__u16 dport;
	__u8 we_are_client;
	__u8 flags;               /* TLS_HELLO_*: set by user space */
	__u8 saddr[16];
	__u8 daddr[16];
	/* Padded by a chunk: a copy may start anywhere below the capture window. */
	__u8 ch[TLS_CAPTURE_CLIENT + TLS_CHUNK];
	__u8 sh[TLS_CAPTURE_SERVER + TLS_CHUNK];
};
/* Quiet mode: what is kept of a complete handshake, for the record of a connection
 * that ends as a problem later (tls_done, an LRU map by socket cookie). The ALPN is
 * read from the hellos in the kernel (they do not cross): a connection that offered
 * h2 is held (its close crosses), for the HTTP/2 reuse window. */
#define TLS_DONE_ALPN_READ 0x01   /* the ClientHello was parsed */
#define TLS_DONE_ALPN_H2 0x02     /* ... and offered h2 */
#define TLS_DONE_ALPN_CUT 0x04    /* alpn_offered holds only the first names that fit */
#define TLS_DONE_SEL_SEEN 0x08    /* the ServerHello shows the choice (TLS <= 1.2) */
#define TLS_DONE_OFFERED_MAX 40
#define TLS_DONE_SEL_MAX 16

struct tls_done {
	__u64 handshake_us;
	__u16 version;
	__u8 alpn_flags;          /* TLS_DONE_* */
	__u8 _pad[5];
	char alpn_offered[TLS_DONE_OFFERED_MAX]; /* comma-joined, NUL-terminated */
	char alpn[TLS_DONE_SEL_MAX];             /* the server's choice; empty: none or unseen */
};

_Static_assert(sizeof(struct tls_hello) == 72 + TLS_CAPTURE_CLIENT + TLS_CAPTURE_SERVER +
	       2 * TLS_CHUNK, "tls_hello layout changed");

#endif
