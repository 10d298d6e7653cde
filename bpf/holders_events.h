/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Types shared by bpf/holders.bpf.c and user/live/holders.c: who holds a socket (a
 * task/file iterator walks every fd table) and the user stack of the connect()
 * or accept() that made it (a BPF stack map). Fixed-width types only, widest
 * fields first, explicit padding.
 */
#ifndef CONNSCOPE_HOLDERS_EVENTS_H
#define CONNSCOPE_HOLDERS_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define HS_COMM_LEN 16
/* Frames kept per stack: the innermost ones, which name the call site. A
 * 32-frame map slot is 256 bytes, so the whole map stays near 1 MiB. */
#define HS_STACK_DEPTH 32
#define HS_STACK_ENTRIES 4096   /* per stack map; there are two (see HS_STACK_ALT) */
/* A stack's id is its bucket in a stack map, and a different stack already in
 * that bucket makes bpf_get_stackid fail. Two maps with two chances cut those
 * drops from about k/N to (k/N)^2 for k distinct stacks; an id with this bit is
 * in the second map (stacks_alt). */
#define HS_STACK_ALT (1 << 30)
#define HS_SOCK_ENTRIES 65536   /* sockets with a stack, until they close */
#define HS_FLAG_ENTRIES 4096    /* cgroups flagged for --stacks auto */
/* Words read from the user stack pointer up when a stack is taken. The frame-
 * pointer walk skips the caller of a syscall wrapper that set up no frame; its
 * return address is in one of these, past what the wrapper pushed and
 * subtracted (glibc: 0 bytes single-threaded, 0x18 or 0x28 multi-threaded). */
#define HS_SP_WORDS 8

/* --stacks */
enum hs_stack_mode {
	HS_STACKS_OFF = 0,
	HS_STACKS_AUTO = 1,  /* only in cgroups user space flagged (map stack_cgroups) */
	HS_STACKS_ALL = 2,
};

/* Which call made the socket. */
enum hs_origin {
	HS_ORIGIN_NONE = 0,
	HS_ORIGIN_CONNECT = 1,
	HS_ORIGIN_ACCEPT = 2,
};

/* Per-CPU counters (array map `hs_counters`), summed by user space. */
enum hs_counter {
	HS_CNT_CAPTURED = 0,   /* stacks taken and stored */
	HS_CNT_NO_STACK = 1,   /* a stack was due but none was taken: the stack map's
				  bucket held another stack, or no user stack (a
				  kernel thread) */
	HS_CNT_TABLE_FULL = 2, /* a stack was taken but the socket table had no room */
	HS_CNT_MAX = 4,
};

/* Map sock_stacks, keyed by the socket's kernel address: deleted when the
 * socket reaches CLOSE, so an address reused by a later socket never inherits
 * a stack. */
struct hs_sock_stack {
	__u64 ts_ns;         /* bpf_ktime_get_ns() of the call */
	__u64 sp_words[HS_SP_WORDS]; /* from the user stack pointer up (0 if unreadable) */
	__u32 tgid;          /* the caller (host pid) */
	__s32 stack_id;      /* in map stacks */
	__u8 origin;         /* enum hs_origin */
	__u8 _pad[7];
};
_Static_assert(sizeof(struct hs_sock_stack) == 88, "hs_sock_stack layout changed");

/* One record of the holders iterator: a process that holds a wanted socket
 * (map want_cookies) in one of its fds, with the socket's stack if one was
 * captured. Read from the iterator's fd, back to back. */
struct hs_holder {
	__u64 cookie;        /* the socket */
	__u64 sp_words[HS_SP_WORDS]; /* from hs_sock_stack, 0 if none */
	__u32 tgid;          /* the holder, as the host's PID namespace numbers it */
	__u32 fd;
	__u32 stack_tgid;    /* who made the socket, 0 if no stack */
	__s32 stack_id;      /* -1 if no stack */
	__u8 origin;         /* enum hs_origin */
	__u8 state;          /* TCP state now */
	__u8 _pad[6];
	char comm[HS_COMM_LEN];
};
_Static_assert(sizeof(struct hs_holder) == 112, "hs_holder layout changed");

#endif
