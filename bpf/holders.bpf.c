// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Who holds a socket, and which code path made it.
 *
 * Holders: a task/file iterator walks the fd table of every process (threads
 * that share one table are walked once) and writes one hs_holder record per fd
 * that refers to a TCP socket user space asked about (map want_cookies). The
 * iterator runs only when a close_wait_stuck finding is due; nothing here runs
 * per packet or per connection.
 *
 * Stacks: the user stack of the connect() or accept() that made a socket, taken
 * with bpf_get_stackid (a frame-pointer walk) and kept in a stack map by the
 * socket's kernel address until the socket reaches CLOSE.
 *   - connect(): the socket enters SYN_SENT inside the syscall, in the caller's
 *     context, so the state-change tracepoint takes the stack there.
 *   - accept(): no tracepoint fires inside accept, and the child socket was
 *     born in softirq; the syscall's exit tracepoint finds the socket through
 *     the returned fd.
 * Off the hot path: stack_mode (rodata) is off, auto (only sockets of cgroups
 * that user space flagged in stack_cgroups: pods that already had a socket in
 * CLOSE_WAIT for half the threshold) or all. With off, the loader does not even
 * load the stack programs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "conn.h"
#include "compat.h"
#include "holders_events.h"
#include "maps.bpf.h"
#include "fdsock.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

const volatile __u8 stack_mode = HS_STACKS_OFF;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, HS_STACK_ENTRIES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, HS_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps"), stacks_alt SEC(".maps");

/* Preallocated here; user space makes it grow on demand for --stacks auto. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HS_SOCK_ENTRIES);
	__type(key, __u64);   /* struct sock * */
	__type(value, struct hs_sock_stack);
} sock_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HS_FLAG_ENTRIES);
	__type(key, __u64);   /* cgroup id */
	__type(value, __u8);
} stack_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);   /* socket cookie */
	__type(value, __u8);
} want_cookies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} hs_counters SEC(".maps");

static __always_inline bool tcp_sock_of_interest(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	return (family == AF_INET || family == AF_INET6) && sk_protocol_compat(sk) == IPPROTO_TCP;
}

/* Is a stack wanted for a socket of this cgroup? */
static __always_inline bool stack_wanted(struct sock *sk)
{
	__u64 cgid;

	if (stack_mode == HS_STACKS_ALL)
		return true;
	if (stack_mode != HS_STACKS_AUTO)
		return false;
	cgid = BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
	return bpf_map_lookup_elem(&stack_cgroups, &cgid) != NULL;
}

/* Take the caller's user stack for sk. ctx is the program's own context, which
 * bpf_get_stackid needs. */
static __always_inline void take_stack(void *ctx, struct sock *sk, __u8 origin)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct hs_sock_stack rec = {};
	struct pt_regs *regs;
	__u64 key = (__u64)sk;
	long id;

	id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	if (id == -EEXIST) {
		id = bpf_get_stackid(ctx, &stacks_alt, BPF_F_USER_STACK);
		if (id >= 0)
			id |= HS_STACK_ALT;
	}
	if (id < 0) {
		/* -EEXIST: another stack holds this bucket; -EFAULT: no user
		 * stack (a kernel thread); -ENOMEM. */
		cs_count(&hs_counters, HS_CNT_NO_STACK);
		return;
	}
	/* The bpf_task_pt_regs helper came in v5.15; on older kernels the
	 * stack goes without sp_words, and the check prunes the call. */
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		regs = NULL;
	else
		regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (regs) {
		__u64 sp = BPF_CORE_READ(regs, sp);

		if (bpf_probe_read_user(rec.sp_words, sizeof(rec.sp_words), (void *)sp))
			__builtin_memset(rec.sp_words, 0, sizeof(rec.sp_words));
	}
	rec.ts_ns = bpf_ktime_get_ns();
	rec.tgid = bpf_get_current_pid_tgid() >> 32;
	rec.stack_id = (__s32)id;
	rec.origin = origin;
	if (bpf_map_update_elem(&sock_stacks, &key, &rec, BPF_ANY)) {
		cs_count(&hs_counters, HS_CNT_TABLE_FULL);
		return;
	}
	cs_count(&hs_counters, HS_CNT_CAPTURED);
}

static __always_inline int on_set_state(void *ctx, struct sock *sk, int newstate)
{
	__u64 key;

	if (newstate != CS_TCP_SYN_SENT && newstate != CS_TCP_CLOSE)
		return 0;
	if (!tcp_sock_of_interest(sk) || !stack_wanted(sk))
		return 0;
	if (newstate == CS_TCP_SYN_SENT) {
		take_stack(ctx, sk, HS_ORIGIN_CONNECT);
	} else {
		key = (__u64)sk;
		bpf_map_delete_elem(&sock_stacks, &key);
	}
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(hs_set_state_btf, struct sock *sk, int oldstate, int newstate)
{
	return on_set_state(ctx, sk, newstate);
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(hs_set_state_raw, struct sock *sk, int oldstate, int newstate)
{
	return on_set_state(ctx, sk, newstate);
}

/* accept()/accept4() returned fd: find its socket through the caller's fd table. */
static __always_inline int on_accept(void *ctx, long fd)
{
	struct sock *sk = sock_of_fd(fd);

	if (!sk || !tcp_sock_of_interest(sk) || !stack_wanted(sk))
		return 0;
	take_stack(ctx, sk, HS_ORIGIN_ACCEPT);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int hs_accept4_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int hs_accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx, ctx->ret);
}

/* Every fd of every process: report the wanted TCP sockets. */
SEC("iter/task_file")
int hs_holders(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct hs_sock_stack *st;
	struct hs_holder h = {};
	struct socket *sock;
	struct sock *sk;
	__u64 key;

	if (!task || !file)
		return 0;
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || !tcp_sock_of_interest(sk))
		return 0;
	/* The cookie is set once anything asked for it: the lifecycle edges
	 * and sock_diag both did for every socket user space knows of. Where
	 * it is not, the raw_tp lifecycle programs named the socket by its
	 * address, and so does this: by either name, since something else (a
	 * sock_diag dump, another tool) may set the cookie after our raw_tp
	 * program named the socket by address. */
	h.cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (!h.cookie || !bpf_map_lookup_elem(&want_cookies, &h.cookie)) {
		h.cookie = (__u64)sk;
		if (!bpf_map_lookup_elem(&want_cookies, &h.cookie))
			return 0;
	}
	h.tgid = BPF_CORE_READ(task, tgid);
	h.fd = ctx->fd;
	h.state = BPF_CORE_READ(sk, __sk_common.skc_state);
	h.stack_id = -1;
	BPF_CORE_READ_STR_INTO(&h.comm, task, group_leader, comm);
	key = (__u64)sk;
	st = bpf_map_lookup_elem(&sock_stacks, &key);
	if (st) {
		h.stack_id = st->stack_id;
		h.stack_tgid = st->tgid;
		__builtin_memcpy(h.sp_words, st->sp_words, sizeof(h.sp_words));
		h.origin = st->origin;
	}
	bpf_seq_write(seq, &h, sizeof(h));
	return 0;
}
