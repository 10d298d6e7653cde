// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * HTTP/2 inside TLS, read in plaintext at the TLS library and tied to its socket.
 *
 * The wire shows a TLS connection's records, not its HTTP/2 frames. The TLS
 * library sees the plaintext, so uprobes there feed the frame walker (bpf/h2.h):
 *
 *   OpenSSL (libssl.so.3)   SSL_write, SSL_write_ex, SSL_read, SSL_read_ex:
 *                           entry stashes {ssl, buf, &written, sp} per thread,
 *                           the return walks the bytes the call moved.
 *                           SSL_free ends the object's connection.
 *   Go crypto/tls           (*Conn).Write at entry only (a uretprobe crashes Go
 *                           programs when their stacks move): walks the buffer
 *                           about to be written. Reads cannot be probed (no return
 *                           probe), so a Go process is seen through what it
 *                           writes: a client its preface and requests, a server
 *                           its SETTINGS and responses, either side's GOAWAY.
 *
 * Which socket? While a thread is inside an SSL call, or has just entered Go's
 * Write, the kernel's sock_send_length / sock_recv_length tracepoints fire on the
 * same thread for the socket the library uses: that binds (tgid, SSL* or *Conn) to
 * the socket's cookie, cgroup and endpoints (before 6.3, which lacks them: the
 * entry of the thread's write/read syscalls, by fd). For Go the binding is trusted only
 * for the first send on the same thread within go_bind_ns of Write's entry (the
 * goroutine could be descheduled in between; see the limits in user/live/h2u.c).
 *
 * Walker state (struct h2_conn, one struct h2_dir per direction: H2_LOCAL_OUT for
 * what the process writes, H2_LOCAL_IN for what it reads) lives in a bounded hash
 * keyed by (tgid, pointer). Positions are per-direction byte offsets, starting at
 * 0 on the first buffer seen. Only totals leave the kernel (struct h2_event), and
 * only for connections that proved to be HTTP/2: START, GOAWAY, DESYNC, UPDATE
 * (every H2_UPDATE_STREAMS streams and on RST_STREAM) and END (TCP close or
 * SSL_free, whichever comes first). Notes made before the socket is known (Go
 * walks before it writes) wait in the state and go out when it binds.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "h2.h"
#include "h2_events.h"
#include "conn.h"
#include "maps.bpf.h"
#include "hold.bpf.h"
#include "fdsock.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_CLOSE 7
#define TCP_LISTEN 10

/* Walker steps per buffer: a frame header or a skipped payload is one step
 * whatever its size, so this bounds the cost of a call, not its bytes. A buffer
 * with more frames than this is not walked to its end: that direction desyncs
 * (counted), it is never guessed past. */
#define H2U_MAX_STEPS 4096

/* Load-time options (rodata). */
const volatile __u64 go_bind_ns = 5000000;        /* Go: Write entry -> send, at most */
const volatile __u64 wakeup_bytes = 64 * 1024;    /* wake user space past this backlog */
/* Set by the loader when conn_sk_info (hold.bpf.h) is the lifecycle programs' socket
 * storage (tp_btf): a socket bound here is marked CS_F_HELD, so that its close
 * crosses to user space (which ends the connection's HTTP/2 there) even when only
 * problems cross and the TLS packet programs let a complete handshake go. */
const volatile bool hold_close = false;
/* The lifecycle programs run lean: a healthy socket has no sk_info of its own. */
const volatile bool lean = false;

/* conn_sk_info, bpf/conn.bpf.c's per-socket state, is hold.bpf.h's (shared by the
 * loader when hold_close is set). */

/* Go's register ABI (Go >= 1.17 on amd64, >= 1.18 on arm64): receiver and the
 * slice's pointer and length in the first three integer argument registers,
 * which on amd64 are RAX, RBX, RCX (not the C ABI's RDI, RSI, RDX). */
#if defined(__TARGET_ARCH_x86)
#define GO_PARM1(x) ((x)->ax)
#define GO_PARM2(x) ((x)->bx)
#define GO_PARM3(x) ((x)->cx)
#define GO_RET1(x) ((x)->ax)   /* the first result, at a RET */
#define GO_G(x) ((x)->r14)     /* the goroutine (ABIInternal keeps g in R14) */
/* A uretprobe runs after `ret` popped the return address. */
#define RET_SP_ADJ 8
#elif defined(__TARGET_ARCH_arm64)
#define GO_PARM1(x) PT_REGS_PARM1(x)
#define GO_PARM2(x) PT_REGS_PARM2(x)
#define GO_PARM3(x) PT_REGS_PARM3(x)
#define GO_RET1(x) PT_REGS_PARM1(x)
#define GO_G(x) ((x)->regs[28])
#define RET_SP_ADJ 0
#else
#error "h2u.bpf.c: Go register ABI not described for this architecture"
#endif

enum { CNT_EVENTS = 0, CNT_LOST = 1, CNT_MAP_FULL = 2, CNT_DESYNC = 3, CNT_MAX = 4 };

enum call_kind { CALL_SSL = 1, CALL_GO = 2 };

/* Pending events of a connection whose socket is not known yet. */
#define PEND_START 0x01
#define PEND_GOAWAY 0x02
#define PEND_DESYNC 0x04
#define PEND_UPDATE 0x08

/* The socket a library object writes to. */
struct h2u_sock {
	__u64 cookie;
	__u64 cgroup_id;
	__u16 family;
	__u16 sport;      /* local, host order */
	__u16 dport;
	__u16 _pad;
	__u8 saddr[16];   /* local */
	__u8 daddr[16];
};

/* A thread inside an SSL call, or just into Go's Write. */
struct h2u_call {
	__u64 ptr;        /* SSL * or *tls.Conn */
	__u64 buf;        /* user buffer */
	__u64 outp;       /* size_t * of the _ex calls, 0 otherwise */
	__u64 sp;         /* stack pointer at entry: tells nested and abandoned calls */
	__u64 ts;         /* Go: when Write was entered */
	__u8 kind;        /* enum call_kind */
	__u8 dir;         /* H2_LOCAL_OUT or H2_LOCAL_IN */
	__u8 bound;       /* si is set: the call touched its socket */
	__u8 _pad[5];
	struct h2u_sock si;
};

/* user/live/h2u.c mirrors this key (its garbage collector reads the tgid). */
struct h2u_key {
	__u32 tgid;
	__u32 _pad;
	__u64 ptr;
};

struct h2u_conn {
	struct h2_conn c;
	struct h2_dir d[2];   /* H2_LOCAL_OUT, H2_LOCAL_IN */
	struct h2u_sock si;   /* si.cookie == 0: not tied to a socket yet */
	__u32 seq[2];         /* bytes seen so far per direction: the next buffer's position */
	__u32 pid;
	__u8 source;          /* enum h2_source */
	__u8 pend;            /* PEND_*: events waiting for the socket */
	__u8 go_server;       /* a Go server: see go_server_preface */
	__u8 _pad;
	char comm[16];
};

/* Per thread, in task storage: the socket tracepoints fire on every send and
 * receive of the system, and most threads have none (one pointer test). The
 * record dies with its thread, also one killed inside a call. kind == 0: idle. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct h2u_call);
} h2u_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct h2u_key);
	__type(value, struct h2u_conn);
} h2u_state SEC(".maps");

/* A goroutine inside Go's (*Conn).Read, by tgid and g: the receiver and buffer,
 * for the probes on the function's RET instructions (a goroutine may move to
 * another thread between the two; it keeps its g). LRU: a Read abandoned (its
 * goroutine gone, a panic) is never deleted by its RET. */
struct go_read {
	__u64 conn, buf, len;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct h2u_key);
	__type(value, struct go_read);
} h2u_go_reads SEC(".maps");

/* Socket cookie -> the state tied to it, for the end at TCP close. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct h2u_key);
} h2u_by_cookie SEC(".maps");

/* Set once a socket was first tied to a state: until then no close can be one
 * of ours, and h2u_close (which runs at every TCP state change on the node)
 * leaves at once instead of looking every closing socket up. */
__u32 h2u_bound = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} h2u_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} h2u_counters SEC(".maps");

/* A new state is built here (it is too large for the 512-byte stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct h2u_conn);
} h2u_scratch SEC(".maps");

/* ---- events -------------------------------------------------------------------------- */

/*
 * Client streams opened. A Go server sees only its own HEADERS, which answer the
 * client's streams in whatever order the handlers finish: the walker's count of
 * new highest ids misses those answered late. Clients number their streams 1, 3,
 * 5, ... (RFC 9113 §5.1.1), so the highest id answered tells how many were opened.
 */
static __always_inline __u32 conn_streams(const struct h2u_conn *st)
{
	const struct h2_dir *d0 = &st->d[0], *d1 = &st->d[1];

	if (st->go_server)
		return ((d0->max_stream_id > d1->max_stream_id ? d0->max_stream_id
							       : d1->max_stream_id) + 1) / 2;
	return d0->streams + d1->streams;
}

static __always_inline void emit(struct h2u_conn *st, __u8 type)
{
	struct h2_event *e;

	if (!(st->c.flags & H2_C_H2) || !st->si.cookie)
		return;
	e = bpf_ringbuf_reserve(&h2u_events, sizeof(*e), 0);
	if (!e) {
		cs_count(&h2u_counters, CNT_LOST);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->cookie = st->si.cookie;
	e->cgroup_id = st->si.cgroup_id;
	e->pid = st->pid;
	e->family = st->si.family;
	e->sport = st->si.sport;
	e->dport = st->si.dport;
	e->type = type;
	e->source = st->source;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	__builtin_memcpy(e->saddr, st->si.saddr, 16);
	__builtin_memcpy(e->daddr, st->si.daddr, 16);
	__builtin_memcpy(&e->c, &st->c, sizeof(e->c));
	h2_conn_totals(&e->c, &st->d[0], &st->d[1]);
	if (st->go_server) {
		e->c.client_dir = H2_LOCAL_IN;
		e->c.streams = conn_streams(st);
	}
	__builtin_memcpy(e->comm, st->comm, sizeof(e->comm));
	/* User space drains on a short timer; wake it only as a backlog builds. */
	bpf_ringbuf_submit(e, cs_wake_flags(&h2u_events, wakeup_bytes, sizeof(*e)));
	cs_count(&h2u_counters, CNT_EVENTS);
}

static __always_inline void flush(struct h2u_conn *st, __u8 pend)
{
	if (pend & PEND_START)
		emit(st, H2_EV_START);
	if (pend & PEND_GOAWAY)
		emit(st, H2_EV_GOAWAY);
	if (pend & PEND_DESYNC)
		emit(st, H2_EV_DESYNC);
	if (pend & PEND_UPDATE)
		emit(st, H2_EV_UPDATE);
}

/* What a walk's notes mean for the outside: events now, or once the socket is known. */
static __always_inline void report(struct h2u_conn *st, __u32 notes, __u32 streams_before)
{
	__u8 pend = 0;

	if (!(st->c.flags & H2_C_H2))
		return;
	if (notes & H2_N_PREFACE)
		pend |= PEND_START;
	if (notes & H2_N_GOAWAY)
		pend |= PEND_GOAWAY;
	if (notes & H2_N_DESYNC) {
		pend |= PEND_DESYNC;
		cs_count(&h2u_counters, CNT_DESYNC);
	}
	if ((notes & H2_N_RST) ||
	    conn_streams(st) / H2_UPDATE_STREAMS != streams_before / H2_UPDATE_STREAMS)
		pend |= PEND_UPDATE;
	if (!pend)
		return;
	if (!st->si.cookie) {
		st->pend |= pend;
		return;
	}
	flush(st, pend);
}

/* The connection behind st is over: send its final totals, drop the cookie's link.
 * The caller deletes (or resets) the state itself. */
static __always_inline void end_conn(struct h2u_conn *st, struct h2u_key *k)
{
	struct h2u_key *owner;
	__u64 cookie = st->si.cookie;

	if (!cookie)
		return;
	emit(st, H2_EV_END);
	owner = bpf_map_lookup_elem(&h2u_by_cookie, &cookie);
	if (owner && owner->tgid == k->tgid && owner->ptr == k->ptr)
		bpf_map_delete_elem(&h2u_by_cookie, &cookie);
}

/* ---- state ----------------------------------------------------------------------------- */

static __always_inline void state_reset(struct h2u_conn *st)
{
	h2_conn_init(&st->c);
	h2_dir_init_unstarted(&st->d[0]);
	h2_dir_init_unstarted(&st->d[1]);
	__builtin_memset(&st->si, 0, sizeof(st->si));
	st->seq[0] = st->seq[1] = 0;
	st->pend = 0;
	st->go_server = 0;
}

/* Tie st to a socket. Nothing changes if another state holds the socket already. */
static __always_inline void state_bind(struct h2u_conn *st, struct h2u_key *k,
					const struct h2u_sock *si)
{
	struct h2u_key *owner;

	if (st->si.cookie == si->cookie)
		return;
	owner = bpf_map_lookup_elem(&h2u_by_cookie, &si->cookie);
	if (owner && (owner->tgid != k->tgid || owner->ptr != k->ptr))
		return;
	if (st->si.cookie) {
		/* The object drives another socket now: its memory was freed and
		 * reused for a new connection. The old one is over. */
		end_conn(st, k);
		state_reset(st);
	}
	if (bpf_map_update_elem(&h2u_by_cookie, &si->cookie, k, BPF_ANY)) {
		/* No way to find the state at close: leave it unbound (no events). */
		cs_count(&h2u_counters, CNT_MAP_FULL);
		return;
	}
	if (!h2u_bound)
		h2u_bound = 1;
	__builtin_memcpy(&st->si, si, sizeof(st->si));
	if (st->pend) {
		__u8 pend = st->pend;

		st->pend = 0;
		flush(st, pend);
	}
}

static __always_inline struct h2u_conn *state_get(struct h2u_key *k, __u8 source,
					       const struct h2u_sock *si)
{
	struct h2u_conn *st = bpf_map_lookup_elem(&h2u_state, k), *init;
	__u32 zero = 0;

	if (st)
		return st;
	init = bpf_map_lookup_elem(&h2u_scratch, &zero);
	if (!init)
		return NULL;
	state_reset(init);
	init->pid = k->tgid;
	init->source = source;
	init->_pad = 0;
	bpf_get_current_comm(init->comm, sizeof(init->comm));
	/* Another thread of the process may create it first: that one is used. */
	st = cs_insert_lookup(&h2u_state, k, init);
	if (!st) {
		cs_count(&h2u_counters, CNT_MAP_FULL);
		return NULL;
	}
	if (si && si->cookie)
		state_bind(st, k, si);
	return st;
}

/* ---- the walk -------------------------------------------------------------------------- */

struct h2u_walk {
	struct h2u_conn *st;
	__u64 ubuf;        /* user address of the buffer */
	__u32 len;
	__u32 off;         /* bytes of the buffer walked */
	__u32 dir;
	__u32 notes;
	__u32 fault;       /* a user read failed */
};

/* One walker step: at most one h2_want/h2_feed pair (a bpf_loop callback). */
static long walk_step(__u32 i, void *ctx)
{
	struct h2u_walk *w = ctx;
	struct h2u_conn *st = w->st;
	__u8 piece[16] = {};
	__u32 dir = w->dir & 1, n;
	struct h2_dir *d;
	int copy;

	if (!st || w->off >= w->len)
		return 1;
	d = &st->d[dir];
	copy = h2_want(d, w->len - w->off, &n);
	if (!n)
		return 1;
	if (copy) {
		/* 1 <= n <= H2_PIECE_MAX; the mask shows the verifier n fits piece. */
		if (bpf_probe_read_user(piece, ((n - 1) & 15) + 1,
					(const void *)(w->ubuf + w->off))) {
			w->fault = 1;
			return 1;
		}
	}
	w->notes |= h2_feed(&st->c, d, &st->d[dir ^ 1], dir, piece, n);
	w->off += n;
	return 0;
}

/*
 * Did a Go process's first write open with a server's SETTINGS (RFC 9113 §3.4)?
 * Go's reads are not seen, so a Go server never sees the client's preface: this
 * is its proof of HTTP/2, and of being the server. The walker follows stream ids
 * on the client's direction (HEADERS on a new odd id); the only direction seen
 * here is the server's, so the state names it the client's, the walker tracks
 * the highest stream id answered (conn_streams makes the count of it), and events
 * say the truth: client_dir H2_LOCAL_IN.
 */
static __always_inline bool go_server_preface(const struct h2u_conn *st)
{
	const struct h2_dir *d = &st->d[H2_LOCAL_OUT];

	if (st->c.flags & (H2_C_H2 | H2_C_NOT_H2) || st->c.client_dir != H2_DIR_NONE)
		return false;
	if (!(d->flags & H2_D_STARTED) ||
	    (d->flags & (H2_D_FIRST_FRAME | H2_D_NOT_H2 | H2_D_DESYNC)))
		return false;
	return d->unit != H2_U_START && d->unit != H2_U_PREFACE && d->unit != H2_U_STOP;
}

/*
 * Walk len bytes at user address buf, the next bytes of direction dir, and report.
 * A global function: the verifier checks it once, on its own, instead of once per
 * path of each program that calls it (inlined, h2u_go_write alone cost 70K).
 */
__noinline int walk_buffer(struct h2u_conn *st, __u64 buf, __u32 len, __u32 dir)
{
	struct h2_dir *d;
	__u32 streams_before, notes = 0, skip;
	struct h2u_walk w = {};
	int at;

	if (!st)
		return 0;
	d = &st->d[dir & 1];
	streams_before = conn_streams(st);
	if (!(d->flags & H2_D_STARTED) && !h2_dir_stopped(d))
		h2_dir_init(d, st->seq[dir & 1]);
	at = h2_at(d, st->seq[dir & 1], len, &skip);
	st->seq[dir & 1] += len;
	if (at == H2_AT_GAP) {
		notes = h2_desync(&st->c, d);
	} else if (at == H2_AT_OK) {
		w.st = st;
		w.ubuf = buf;
		w.len = len;
		w.off = skip;
		w.dir = dir & 1;
		bpf_loop(H2U_MAX_STEPS, walk_step, &w, 0);
		notes = w.notes;
		/* Bytes left unwalked (a fault, or more frames than steps): the
		 * boundary is lost. */
		if (w.fault || (w.off < len && !h2_dir_stopped(d)))
			notes |= h2_desync(&st->c, d);
	}
	/* A Go server whose reads are probed too: once the client's preface was read,
	 * the walker counts the client's streams itself. */
	if (st->go_server && st->c.client_dir == H2_LOCAL_IN)
		st->go_server = 0;
	if (st->source == H2_SRC_GO && (dir & 1) == H2_LOCAL_OUT && go_server_preface(st)) {
		st->c.flags |= H2_C_H2;
		st->c.client_dir = H2_LOCAL_OUT;
		st->go_server = 1;
		notes |= H2_N_PREFACE;
	}
	report(st, notes, streams_before);
	return 0;
}

/* ---- OpenSSL ----------------------------------------------------------------------------- */

/* Set at the first probed call: until a process entered one, no send or
 * receive on the node can be inside one, and the binding hooks (which run at
 * every send and receive) leave without a task-storage lookup. */
__u32 h2u_called = 0;

static __always_inline struct h2u_call *call_of_current(bool create)
{
	if (create && !h2u_called)
		h2u_called = 1;
	else if (!create && !h2u_called)
		return NULL;
	return bpf_task_storage_get(&h2u_calls, bpf_get_current_task_btf(), NULL,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

static __always_inline int ssl_enter(struct pt_regs *ctx, __u8 dir, bool ex)
{
	__u64 sp = PT_REGS_SP(ctx);
	struct h2u_call *c = call_of_current(true);

	if (!c) {
		cs_count(&h2u_counters, CNT_MAP_FULL);
		return 0;
	}
	/* Called from inside one of ours (deeper stack): the outer call reports.
	 * A record from a shallower or equal depth was left by a call that never
	 * returned (longjmp, a lost return probe): replaced. */
	if (c->kind == CALL_SSL && c->sp > sp)
		return 0;
	c->kind = CALL_SSL;
	c->dir = dir;
	c->bound = 0;
	c->ptr = PT_REGS_PARM1(ctx);
	c->buf = PT_REGS_PARM2(ctx);
	c->outp = ex ? PT_REGS_PARM4(ctx) : 0;
	c->sp = sp;
	c->ts = 0;
	return 0;
}

SEC("uprobe")
int h2u_ssl_write(struct pt_regs *ctx)
{
	return ssl_enter(ctx, H2_LOCAL_OUT, false);
}

SEC("uprobe")
int h2u_ssl_write_ex(struct pt_regs *ctx)
{
	return ssl_enter(ctx, H2_LOCAL_OUT, true);
}

SEC("uprobe")
int h2u_ssl_read(struct pt_regs *ctx)
{
	return ssl_enter(ctx, H2_LOCAL_IN, false);
}

SEC("uprobe")
int h2u_ssl_read_ex(struct pt_regs *ctx)
{
	return ssl_enter(ctx, H2_LOCAL_IN, true);
}

/* The return of all four: walk what the call moved. */
SEC("uretprobe")
int h2u_ssl_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 sp = PT_REGS_SP(ctx), bytes;
	struct h2u_call *cur = call_of_current(false);
	struct h2u_sock si;
	struct h2u_conn *st;
	struct h2u_key k = {};
	__u64 buf, outp;
	__u8 dir, bound;
	long rc;

	if (!cur || cur->kind != CALL_SSL)
		return 0;
	if (sp < cur->sp + RET_SP_ADJ)
		return 0;  /* a nested call returns; ours is still running */
	if (sp != cur->sp + RET_SP_ADJ) {
		/* A record left by a call that never returned (longjmp, a lost
		 * uretprobe): not ours. */
		cur->kind = 0;
		return 0;
	}
	k.tgid = id >> 32;
	k.ptr = cur->ptr;
	buf = cur->buf;
	outp = cur->outp;
	dir = cur->dir;
	bound = cur->bound;
	if (bound)
		__builtin_memcpy(&si, &cur->si, sizeof(si));
	cur->kind = 0;

	rc = (int)PT_REGS_RC(ctx);
	if (outp) {
		/* SSL_*_ex: 1 and the count in *written / *readbytes. */
		if (rc != 1 || bpf_probe_read_user(&bytes, sizeof(bytes), (const void *)outp))
			return 0;
	} else {
		if (rc <= 0)
			return 0;
		bytes = rc;
	}
	if (!bytes || !k.ptr)
		return 0;
	if (bytes > 0x7fffffff)
		bytes = 0x7fffffff;  /* cannot be walked anyway: desyncs on the step bound */
	st = state_get(&k, H2_SRC_OPENSSL, bound ? &si : NULL);
	if (!st)
		return 0;
	walk_buffer(st, buf, (__u32)bytes, dir);
	return 0;
}

/* The SSL object is freed: its connection is over, and its address may be reused. */
SEC("uprobe")
int h2u_ssl_free(struct pt_regs *ctx)
{
	struct h2u_key k = {};
	struct h2u_conn *st;

	k.tgid = bpf_get_current_pid_tgid() >> 32;
	k.ptr = PT_REGS_PARM1(ctx);
	st = bpf_map_lookup_elem(&h2u_state, &k);
	if (!st)
		return 0;
	end_conn(st, &k);
	bpf_map_delete_elem(&h2u_state, &k);
	return 0;
}

/* ---- Go -------------------------------------------------------------------------------- */

/* Do the first 24 bytes at buf hold the client preface? */
static __always_inline bool starts_with_preface(__u64 buf)
{
	__u8 b[H2_PREFACE_LEN];
	int i;

	if (bpf_probe_read_user(b, sizeof(b), (const void *)buf))
		return false;
	for (i = 0; i < H2_PREFACE_LEN; i++)
		if (b[i] != h2__preface_at(i))
			return false;
	return true;
}

/*
 * Can a Go connection's first write open HTTP/2: the client preface, or a server's
 * SETTINGS frame header (RFC 9113 §3.4, §6.5)? Only then does it get a state: Go has
 * no free to probe, and a connection that never binds (HTTP/1.1 is never walked
 * past its first byte, and a write after the socket's close cannot bind) would
 * keep its state until the process exits.
 */
static __always_inline bool go_may_open_h2(__u64 buf, __u64 len)
{
	__u8 b[H2_FRAME_HDR_LEN];
	__u32 flen;

	if (len < H2_FRAME_HDR_LEN || bpf_probe_read_user(b, sizeof(b), (const void *)buf))
		return false;
	if (b[0] == 'P')
		return true;  /* the walker checks the rest of the preface */
	flen = (__u32)b[0] << 16 | (__u32)b[1] << 8 | b[2];
	return b[3] == H2_SETTINGS && b[4] == 0 && !b[5] && !b[6] && !b[7] && !b[8] &&
	       flen % 6 == 0 && flen <= H2_DEFAULT_MAX_FRAME;
}

/*
 * The state of the Go connection at k, whose next bytes in direction dir are
 * buf[0..len); opened by them where there is none (go_may_open_h2), else NULL. A
 * client preface on a direction already under way: the Conn's memory now holds a
 * new connection (Go has no free to probe), and the old one ends.
 */
static __always_inline struct h2u_conn *go_conn(struct h2u_key *k, __u64 buf, __u64 len,
						__u32 dir)
{
	struct h2u_conn *st = bpf_map_lookup_elem(&h2u_state, k);

	if (st && (st->d[dir & 1].flags & H2_D_STARTED) && len >= H2_PREFACE_LEN &&
	    starts_with_preface(buf)) {
		end_conn(st, k);
		bpf_map_delete_elem(&h2u_state, k);
		st = NULL;
	}
	if (!st && go_may_open_h2(buf, len))
		st = state_get(k, H2_SRC_GO, NULL);
	return st;
}

/*
 * func (c *Conn) Write(b []byte) (int, error), attached past the stack-check
 * prologue by user space: a goroutine whose stack must grow runs the prologue
 * twice, the body once.
 */
SEC("uprobe")
int h2u_go_write(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 buf = GO_PARM2(ctx), len = GO_PARM3(ctx);
	struct h2u_key k = {};
	struct h2u_conn *st;

	k.tgid = id >> 32;
	k.ptr = GO_PARM1(ctx);
	if (!k.ptr || !len)
		return 0;
	if (len > 0x7fffffff)
		len = 0x7fffffff;
	st = go_conn(&k, buf, len, H2_LOCAL_OUT);
	if (!st)
		return 0;
	walk_buffer(st, buf, (__u32)len, H2_LOCAL_OUT);
	if (!st->si.cookie) {
		/* The first send on this thread, soon, tells the socket. */
		struct h2u_call *c = call_of_current(true);

		if (!c) {
			cs_count(&h2u_counters, CNT_MAP_FULL);
		} else {
			c->kind = CALL_GO;
			c->ptr = k.ptr;
			c->ts = bpf_ktime_get_ns();
			c->bound = 0;
		}
	}
	return 0;
}

/*
 * func (c *Conn) Read(b []byte) (int, error): at entry (past the stack-check
 * prologue, as Write) the receiver and buffer are kept by goroutine; at each of
 * the function's RET instructions (user space found them with a disassembler:
 * a return probe would crash Go, see h2u.c) the count read is in the first
 * result register, and that many bytes are walked as the peer's.
 */
SEC("uprobe")
int h2u_go_read(struct pt_regs *ctx)
{
	struct h2u_key g = {};
	struct go_read r = {};

	g.tgid = bpf_get_current_pid_tgid() >> 32;
	g.ptr = GO_G(ctx);
	r.conn = GO_PARM1(ctx);
	r.buf = GO_PARM2(ctx);
	r.len = GO_PARM3(ctx);
	if (!g.ptr || !r.conn || !r.buf || !r.len)
		return 0;
	if (bpf_map_update_elem(&h2u_go_reads, &g, &r, BPF_ANY))
		cs_count(&h2u_counters, CNT_MAP_FULL);
	return 0;
}

SEC("uprobe")
int h2u_go_read_ret(struct pt_regs *ctx)
{
	__u64 n = GO_RET1(ctx), buf, len;
	struct h2u_key g = {}, k = {};
	struct h2u_conn *st;
	struct go_read *r;

	g.tgid = k.tgid = bpf_get_current_pid_tgid() >> 32;
	g.ptr = GO_G(ctx);
	r = bpf_map_lookup_elem(&h2u_go_reads, &g);
	if (!r)
		return 0;
	k.ptr = r->conn;
	buf = r->buf;
	len = r->len;
	bpf_map_delete_elem(&h2u_go_reads, &g);
	if ((__s64)n <= 0 || n > len)
		return 0;
	if (n > 0x7fffffff)
		n = 0x7fffffff;
	/* A read opens a connection too: a server's first, the client preface; or
	 * a client's, the server's SETTINGS, when its reader goroutine gets them
	 * before its writer has sent the preface (grpc-go starts the reader first). */
	st = go_conn(&k, buf, n, H2_LOCAL_IN);
	if (!st)
		return 0;
	walk_buffer(st, buf, (__u32)n, H2_LOCAL_IN);
	return 0;
}

/* ---- the kernel side: socket I/O and close -------------------------------------------------- */

/* A TCP socket that can carry a connection's bytes; fill si from it. Reads
 * through bpf_probe_read (BPF_CORE_READ): the syscall tracepoint programs hold
 * sk as a plain number. The cookie: from the helper in the tp_btf programs;
 * else the field, set by then for every socket connscope saw an edge of or
 * found in its start-up snapshot (both asked for it); 0: no binding yet. */
static __always_inline bool sock_info(struct sock *sk, struct h2u_sock *si, bool btf)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);

	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP || (family != AF_INET && family != AF_INET6))
		return false;
	if (state == TCP_CLOSE || state == TCP_LISTEN)
		return false;
	__builtin_memset(si, 0, sizeof(*si));
	si->cookie = btf ? bpf_get_socket_cookie(sk) : BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	si->cgroup_id = BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
	si->family = family;
	si->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	si->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&si->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&si->daddr, sk, __sk_common.skc_v6_daddr);
	} else {
		*(__u32 *)si->saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		*(__u32 *)si->daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	}
	return si->cookie != 0;
}

/* User space follows this socket's HTTP/2: its close must reach it. (tp_btf only:
 * socket storage needs the kernel's own pointer.) */
static __always_inline void hold(struct sock *sk)
{
	if (hold_close)
		cs_hold(sk, lean);
}

static __always_inline int on_sock_io(struct sock *sk, bool send, bool btf)
{
	struct h2u_call *cur;
	struct h2u_conn *st;
	struct h2u_key k = {};

	if (!sk)
		return 0;
	cur = call_of_current(false);
	if (!cur || !cur->kind)
		return 0;
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	k.ptr = cur->ptr;
	if (cur->kind == CALL_GO) {
		struct h2u_sock si;
		__u64 ts = cur->ts;

		if (!send)
			return 0;
		/* Only the first send after Write's entry may tell the socket. */
		cur->kind = 0;
		if (bpf_ktime_get_ns() - ts > go_bind_ns || !sock_info(sk, &si, btf))
			return 0;
		if (btf)
			hold(sk);
		st = bpf_map_lookup_elem(&h2u_state, &k);
		if (st)
			state_bind(st, &k, &si);
		return 0;
	}
	if (cur->bound || !sock_info(sk, &cur->si, btf))
		return 0;
	cur->bound = 1;
	if (btf)
		hold(sk);
	st = bpf_map_lookup_elem(&h2u_state, &k);
	if (st)
		state_bind(st, &k, &cur->si);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(h2u_send, struct sock *sk, int ret, int flags)
{
	return on_sock_io(sk, true, true);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(h2u_recv, struct sock *sk, int ret, int flags)
{
	return on_sock_io(sk, false, true);
}

/*
 * Where the kernel has no sock_send_length / sock_recv_length (before 6.3), the
 * same binding comes from the syscalls the libraries make inside their calls:
 * OpenSSL's socket BIO writes and reads with write(2)/read(2) (sendmsg with
 * kernel TLS), Go's net package with write/read (writev for net.Buffers). At the
 * syscall's entry, the fd names the socket through the thread's fd table. A
 * thread that is not inside one of our calls costs one task-storage lookup.
 */
static __always_inline int on_fd_io(long fd, bool send)
{
	struct h2u_call *cur = call_of_current(false);

	if (!cur || !cur->kind || (cur->kind == CALL_SSL && cur->bound))
		return 0;
	if (cur->kind == CALL_GO && !send)
		return 0;
	return on_sock_io(sock_of_fd(fd), send, false);
}

#define SYS_BIND(name, sys, send)                                               \
	SEC("tracepoint/syscalls/sys_enter_" #sys)                             \
	int name(struct trace_event_raw_sys_enter *ctx)                         \
	{                                                                       \
		return on_fd_io((long)ctx->args[0], send);                     \
	}
SYS_BIND(h2u_sys_write, write, true)
SYS_BIND(h2u_sys_writev, writev, true)
SYS_BIND(h2u_sys_sendto, sendto, true)
SYS_BIND(h2u_sys_sendmsg, sendmsg, true)
SYS_BIND(h2u_sys_read, read, false)
SYS_BIND(h2u_sys_readv, readv, false)
SYS_BIND(h2u_sys_recvfrom, recvfrom, false)
SYS_BIND(h2u_sys_recvmsg, recvmsg, false)

/* TCP close: the connection's final totals, and its state goes. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(h2u_close, struct sock *sk, int oldstate, int newstate)
{
	struct h2u_key *owner, k;
	struct h2u_conn *st;
	__u64 cookie;

	if (newstate != TCP_CLOSE || !h2u_bound)
		return 0;
	/* A socket nobody asked the cookie of is not one of ours (and reading
	 * the field, not calling the helper, does not make one up). */
	cookie = sk->__sk_common.skc_cookie.counter;
	if (!cookie)
		return 0;
	owner = bpf_map_lookup_elem(&h2u_by_cookie, &cookie);
	if (!owner)
		return 0;
	k = *owner;
	bpf_map_delete_elem(&h2u_by_cookie, &cookie);
	st = bpf_map_lookup_elem(&h2u_state, &k);
	if (st && st->si.cookie == cookie) {
		emit(st, H2_EV_END);
		bpf_map_delete_elem(&h2u_state, &k);
	}
	return 0;
}
