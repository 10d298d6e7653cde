/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Types shared by bpf/conn.bpf.c and the user space: the TCP lifecycle events that
 * cross the ring buffer. Fixed-width types only, widest fields first, explicit padding.
 */
#ifndef CONNSCOPE_CONN_H
#define CONNSCOPE_CONN_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define CS_COMM_LEN 16

/* TCP states, kernel numbering (include/net/tcp_states.h). */
enum cs_tcp_state {
	CS_TCP_ESTABLISHED = 1,
	CS_TCP_SYN_SENT = 2,
	CS_TCP_SYN_RECV = 3,
	CS_TCP_FIN_WAIT1 = 4,
	CS_TCP_FIN_WAIT2 = 5,
	CS_TCP_TIME_WAIT = 6,
	CS_TCP_CLOSE = 7,
	CS_TCP_CLOSE_WAIT = 8,
	CS_TCP_LAST_ACK = 9,
	CS_TCP_LISTEN = 10,
	CS_TCP_CLOSING = 11,
	CS_TCP_NEW_SYN_RECV = 12,
};

/* Lifecycle edges: the only things that leave the kernel. */
enum cs_event_type {
	CS_EV_ESTABLISHED = 1, /* -> ESTABLISHED, sent only after SYN retransmits (see cg_counts) */
	CS_EV_CLOSE_WAIT = 2,  /* peer's FIN arrived: -> CLOSE_WAIT */
	CS_EV_SYN_RETRANS = 3, /* a SYN was retransmitted (connect in trouble) */
	CS_EV_CLOSE = 4,       /* -> CLOSE: the connection is over */
	CS_EV_RST_OUT = 5,     /* a RST sent just after CLOSE (abortive close): only ts, cookie */
};

enum cs_side {
	CS_SIDE_UNKNOWN = 0,
	CS_SIDE_CLIENT = 1, /* we sent the SYN */
	CS_SIDE_SERVER = 2, /* we answered it */
};

/* What ended the connection first. */
enum cs_close_cause {
	CS_CLOSE_NONE = 0,
	CS_CLOSE_LOCAL_FIN = 1,
	CS_CLOSE_PEER_FIN = 2,
	CS_CLOSE_RST_IN = 3,
	CS_CLOSE_RST_OUT = 4,
};

/* cs_event.flags */
#define CS_F_MIDWAY 0x01   /* first seen after it started (before connscope ran) */
#define CS_F_RST_IN 0x02   /* a RST was received */
#define CS_F_RST_OUT 0x04  /* a RST was sent */
#define CS_F_WAS_EST 0x08  /* reached ESTABLISHED */
#define CS_F_OPEN 0x10     /* replay: still open when the capture ended (not a close) */
#define CS_F_HELD 0x20     /* user space keeps state for it (TLS, HTTP/2): its close crosses */
#define CS_F_LATE 0x40     /* sk_info only: made after the socket's birth (lean mode: TLS
			    * marked it held); conn.bpf.c completes it at the next state change */

/* Which closes cross the ring buffers (rodata conn_mode). Counts are kept in the
 * kernel either way (cg_counts, remote_counts). */
enum cs_conn_mode {
	CS_CONN_ALL = 0,       /* every close: problems on `events`, the rest on `conn_events` */
	CS_CONN_PROBLEMS = 1,  /* only problems (see conn.bpf.c: is_problem) */
};

/* Per-CPU counters in the `counters` array map, summed by user space. */
enum cs_counter {
	CS_CNT_EVENTS = 0,    /* events submitted to the ring buffer */
	CS_CNT_LOST = 1,      /* ring buffer reserve failures */
	CS_CNT_MAP_FULL = 2,  /* socket state could not be stored */
	CS_CNT_CHILD_RACE = 3, /* listener children closed in SYN_RECV: lost the race for their request */
	CS_CNT_SAMPLED_OUT = 4, /* healthy closes not sent (conn_events backlog): counted, no record */
	CS_CNT_CW_FULL = 5,   /* CLOSE_WAIT sockets the cw_socks map could not take (sent as edges) */
	CS_CNT_REMOTE_FULL = 6, /* closes no remote_counts entry could take, not even "other" */
	CS_CNT_CONN_EVENTS = 7, /* healthy closes sent on conn_events */
	CS_CNT_RESCUED = 8,   /* runs the kernel skipped (nested), run by the rescue programs */
	CS_CNT_MAX = 9,
};

/* Log2 histogram of microseconds: slot 0 holds < 1 us, slot i [2^(i-1), 2^i) us;
 * the last slot everything from 2^(CS_HIST_SLOTS-2) us (about 18 min) up. */
#define CS_HIST_SLOTS 32

/* Per-cgroup counters kept in the kernel (per-CPU map cg_counts, keyed by cgroup
 * id): every connection is counted here, whether or not an edge crosses, so a lost
 * event can never make a count wrong. User space sums the CPUs. */
struct cs_cg_counts {
	__u64 opened;          /* reached ESTABLISHED while connscope watched */
	__u64 closed;          /* established connections that ended */
	__u64 closed_midway;   /* ... of which open before connscope attached */
	__u64 close_cause[5];  /* closed, by enum cs_close_cause */
	__u64 refused;         /* our connects answered by a RST (or ECONNREFUSED) */
	__u64 timeouts;        /* our connects that timed out (or retransmitted their SYN and died) */
	__u64 failed;          /* other connects and accepted handshakes that never established */
	__u64 resets;          /* established connections ended by a RST, either way */
	__u64 bytes_in;        /* payload of the connections that closed */
	__u64 bytes_out;
	__u64 connect_us[CS_HIST_SLOTS]; /* connect time of those established (client: SYN to
					    ESTABLISHED; server: SYN-ACK round trip) */
	__u64 connect_us_sum;  /* ... their sum (a histogram's _sum for /metrics) */
	/* TLS handshakes seen on the wire (bpf/tls.bpf.c counts them in the same entry) */
	__u64 tls_started;     /* ClientHellos that began one */
	__u64 tls_ok;          /* complete */
	__u64 tls_alert;       /* ended by an alert (in clear, or encrypted, told by its size) */
	__u64 tls_desync;      /* no longer followed (a record boundary was lost) */
	__u64 tls_us[CS_HIST_SLOTS]; /* handshake time of those complete: ClientHello to the end */
	__u64 tls_us_sum;      /* ... their sum */
};

/* A pod's remote (bounded map remote_counts): the server for the pod's connects
 * (port set), the client for its accepted connections (port 0). family 0 is the
 * "other" entry of a cgroup: closes the full map could not give their own. */
struct cs_remote_key {
	__u64 cgroup_id;
	__u8 addr[16];
	__u16 port;
	__u16 family;
	__u32 _pad;
};

struct cs_remote_counts {
	__u64 conns;           /* connections that ended, every outcome */
	__u64 refused, timeouts, resets;
};

#define CS_IDLE_UNKNOWN 0xffffffffu

struct cs_event {
	__u64 ts_ns;         /* bpf_ktime_get_ns() of the edge */
	__u64 cookie;        /* socket cookie (as sock_diag reports it) */
	__u64 start_ns;      /* SYN_SENT / child creation; 0 if MIDWAY */
	__u64 est_ns;        /* ESTABLISHED; 0 if never */
	__u64 close_wait_ns; /* entered CLOSE_WAIT; 0 if never */
	__u64 cgroup_id;     /* the socket's cgroup (sk_cgrp_data) */
	__u64 ino;           /* socket inode, 0 if not known */
	__u64 bytes_in;      /* tcp_sock.bytes_received */
	__u64 bytes_out;     /* tcp_sock.bytes_acked */
	__u32 netns;         /* network namespace inode */
	__u32 pid;           /* owner tgid where known, else 0 */
	__u32 connect_us;    /* connect latency (client: SYN->ESTABLISHED; server: SYN-ACK RTT) */
	__u32 retrans;       /* tcp_sock.total_retrans at the edge */
	__u32 idle_ms;       /* close: ms since the last data or ACK received (the time the
				connection sat idle before the end), CS_IDLE_UNKNOWN if not
				known; 0 on other edges */
	__u32 _pad;
	__u16 family;        /* AF_INET / AF_INET6 */
	__u16 sport;         /* local port, host order */
	__u16 dport;         /* remote port, host order */
	__u16 syn_retrans;   /* SYN retransmits */
	__u16 sk_err;        /* sk->sk_err at close (ETIMEDOUT, ECONNREFUSED...) */
	__u8 type;           /* enum cs_event_type */
	__u8 side;           /* enum cs_side */
	__u8 oldstate;
	__u8 newstate;
	__u8 close_cause;    /* enum cs_close_cause */
	__u8 flags;          /* CS_F_* */
	__u8 saddr[16];      /* local address; IPv4 in the first 4 bytes */
	__u8 daddr[16];      /* remote address */
	char comm[CS_COMM_LEN];
};
_Static_assert(sizeof(struct cs_event) == 160, "cs_event layout changed");

/* Who last listened on a port (map `listeners`): written at the listen() that
 * makes a listening socket (the state change runs in the caller's context); user
 * space adds those that were listening before connscope started. An entry stays
 * after its listener closes (the connections it accepted may outlive it, and are
 * read after it); a new listen() on the port replaces it, and the map is an LRU.
 * An accepted socket's owner is its listener's, found there in user space:
 * nothing runs on the node's sends and receives to learn it. */
#define CS_LISTENERS 16384

struct cs_listen_key {
	__u32 netns;      /* network namespace inode */
	__u16 port;       /* local port, host order */
	__u16 _pad;
};

struct cs_listener {
	__u32 pid;        /* the listen() caller's tgid */
	__u32 prev_pid;   /* the one before (a listen() that fails gives the port back) */
	__u64 at_ns;      /* when */
	char comm[CS_COMM_LEN];
	char prev_comm[CS_COMM_LEN];
};

/* Lean mode (rodata lean): what a socket's birth leaves for its later state
 * changes (the connect's owner and start, the handshake's time), in a
 * direct-mapped array indexed by the socket cookie instead of socket storage
 * (whose creation costs more than the rest of a healthy connection's
 * accounting). A socket CS_BIRTHS cookies younger takes the slot over: then
 * the owner, start and connect time of the first are unknown (0), nothing else. */
#define CS_BIRTHS (1u << 17)
struct cs_birth {
	__u64 tag;        /* the socket's cookie; the slot is this socket's if equal */
	__u64 start_ns;   /* SYN_SENT; a server's: its SYN, one RTT before ESTABLISHED */
	__u32 pid;        /* the connect's caller (0 for a server's socket) */
	__u32 connect_us; /* set at ESTABLISHED */
	__u8 side;        /* enum cs_side */
	__u8 _pad[7];
	char comm[CS_COMM_LEN];
};

/* Sockets in CLOSE_WAIT now: a cs_event each in the array cw_slots, indexed by
 * cookie (user space maps it and reads it in place), or in the hash cw_socks
 * when the slot is taken. A slot is in use while cookie is set, and complete
 * once type is CS_EV_CLOSE_WAIT (written last). */
#define CS_CW_SLOTS 4096

/* Per-socket state of the lifecycle programs (socket storage, or the raw_tp
 * fallback's hash). bpf/tls.bpf.c looks it up too: a socket without it was
 * established before connscope attached. */
struct sk_info {
	__u64 start_ns;
	__u64 est_ns;
	__u64 close_wait_ns;
	__u64 cgroup_id;
	__u64 ino;
	__u32 pid;
	__u32 connect_us;
	__u16 syn_retrans;
	__u8 side;
	__u8 close_cause;
	__u8 flags;
	__u8 _pad;
	__u16 sport;   /* local port, kept: the kernel clears it before CLOSE */
	char comm[CS_COMM_LEN];
};

#endif
