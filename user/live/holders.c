// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Socket holders and the stacks that made the sockets (bpf/holders.bpf.c).
 *
 * Loading falls back per program: the iterator, the connect stack hook (tp_btf,
 * else raw_tp) and the accept exit tracepoints are tried together, then in
 * smaller sets, so that one missing hook never costs the others. What could
 * not load is kept as text for `connscope check` and the stats record.
 *
 * Holders come from one iterator pass over every fd table, for all the sockets
 * asked about at once. Where the iterator cannot load, /proc/<pid>/fd is
 * scanned for the socket's inode instead (which needs the inode: a socket that
 * was still in a listener's accept queue at its last edge has none yet).
 *
 * The stack maps are not reference counted: every 10 s, if stacks were taken,
 * the ids no socket refers to any more are deleted, so the maps keep room for
 * new code paths.
 */
#include "holders.h"
#include "util.h"
#include "procfd.h"
#include "percpu.h"
#include "loader.h"
#include "progfb.h"
#include "holders.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROC_PID_INIT_INO 0xEFFFFFFCu  /* the host PID namespace's inode (include/linux/proc_ns.h) */
#define GC_NS (10 * 1000000000ull)
#define FLAG_RING HS_FLAG_ENTRIES

struct holders {
	struct holders_bpf *skel;
	struct bpf_link *iter_link;
	enum hs_stack_mode mode;
	bool have_iter, have_connect, have_accept;
	bool armed;                  /* the stack programs are attached */
	struct bpf_program *conn_prog;
	struct bpf_link *stack_links[3]; /* connect, accept4, accept */
	bool host_pidns;
	bool mounted_tracefs;
	char desc[512];
	char stacks_desc[512];
	struct sym_cache *syms;
	/* --stacks auto: the flagged cgroups, oldest first, so the map's bound
	 * drops the oldest flag rather than refusing a new one. */
	uint64_t flagged[FLAG_RING];
	unsigned nflagged, flag_pos;
	uint64_t gc_ns, gc_captured;
};

const char *holders_mode_name(enum hs_stack_mode m)
{
	switch (m) {
	case HS_STACKS_OFF: return "off";
	case HS_STACKS_AUTO: return "auto";
	case HS_STACKS_ALL: return "all";
	}
	return NULL;
}

int holders_parse_mode(const char *s, enum hs_stack_mode *m)
{
	for (int i = HS_STACKS_OFF; i <= HS_STACKS_ALL; i++)
		if (!strcmp(s, holders_mode_name((enum hs_stack_mode)i))) {
			*m = (enum hs_stack_mode)i;
			return 0;
		}
	return -1;
}

static bool in_host_pidns(void)
{
	struct stat st;

	return !stat("/proc/self/ns/pid", &st) && st.st_ino == PROC_PID_INIT_INO;
}

static void err_text(int err, char *buf, size_t len)
{
	const char *m = loader_last_libbpf_msg();

	snprintf(buf, len, "%s%s%s", strerror(err < 0 ? -err : err), m && *m ? ": " : "",
		 m ? m : "");
	buf[strcspn(buf, "\n")] = '\0';
}

static struct bpf_link *attach(struct bpf_program *p, char *why, size_t len)
{
	struct bpf_link *l = bpf_program__attach(p);

	if (!l)
		err_text(errno, why, len);
	return l;
}

static int arm_connect(struct holders *h, char *why, size_t len)
{
	h->stack_links[0] = attach(h->conn_prog, why, len);
	return h->stack_links[0] ? 0 : -1;
}

static int arm_accept(struct holders *h, char *why, size_t len)
{
	h->stack_links[1] = attach(h->skel->progs.hs_accept4_exit, why, len);
	if (h->stack_links[1])
		h->stack_links[2] = attach(h->skel->progs.hs_accept_exit, why, len);
	if (h->stack_links[2])
		return 0;
	bpf_link__destroy(h->stack_links[1]);
	h->stack_links[1] = NULL;
	return -1;
}

static void disarm(struct holders *h)
{
	for (int i = 0; i < 3; i++) {
		bpf_link__destroy(h->stack_links[i]);
		h->stack_links[i] = NULL;
	}
	h->armed = false;
}

/* The programs of one load. */
struct parts {
	bool iter, connect_btf, connect_raw, accept;
};

/* One try at a set of programs. 0, or -1 with the reason in why. */
static int try_load(struct holders *h, const struct parts *p, char *why, size_t len)
{
	struct holders_bpf *s = holders_bpf__open();
	int err;

	if (!s) {
		err_text(errno, why, len);
		return -1;
	}
	s->rodata->stack_mode = (uint8_t)h->mode;
	/* The socket table: preallocated for all (an insert per connect and accept
	 * must not allocate), grown on demand for auto (a few flagged pods' sockets),
	 * and a token for off, as are the stack map and the flags. */
	if (h->mode == HS_STACKS_AUTO) {
		bpf_map__set_map_flags(s->maps.sock_stacks,
				       bpf_map__map_flags(s->maps.sock_stacks) | BPF_F_NO_PREALLOC);
	} else if (h->mode == HS_STACKS_OFF) {
		bpf_map__set_max_entries(s->maps.sock_stacks, 1);
		bpf_map__set_max_entries(s->maps.stacks, 1);
		bpf_map__set_max_entries(s->maps.stacks_alt, 1);
		bpf_map__set_max_entries(s->maps.stack_cgroups, 1);
	}
	bpf_program__set_autoload(s->progs.hs_holders, p->iter);
	bpf_program__set_autoload(s->progs.hs_set_state_btf, p->connect_btf);
	bpf_program__set_autoload(s->progs.hs_set_state_raw, p->connect_raw);
	bpf_program__set_autoload(s->progs.hs_accept4_exit, p->accept);
	bpf_program__set_autoload(s->progs.hs_accept_exit, p->accept);
	holders_bpf__destroy(h->skel);
	h->skel = NULL;
	err = holders_bpf__load(s);
	if (err) {
		err_text(err, why, len);
		holders_bpf__destroy(s);
		return -1;
	}
	h->skel = s;
	return 0;
}


static bool parts_any(const struct parts *p)
{
	return p->iter || p->connect_btf || p->connect_raw || p->accept;
}

struct holders *holders_open(enum hs_stack_mode mode, bool raw_tp)
{
	struct holders *h = calloc(1, sizeof(*h));
	bool stacks = mode != HS_STACKS_OFF;
	struct parts want = { .iter = true, .connect_btf = stacks && !raw_tp,
			      .connect_raw = stacks && raw_tp, .accept = stacks };
	struct parts ok = { 0 };
	char why_all[200] = "", why_iter[200] = "", why_conn[200] = "", why_acc[200] = "", why[200];

	if (!h)
		return NULL;
	h->mode = mode;
	h->host_pidns = in_host_pidns();
	h->syms = sym_cache_new();
	if (stacks)
		progfb_tracefs(&h->mounted_tracefs);
	if (!try_load(h, &want, why_all, sizeof(why_all))) {
		ok = want;
	} else {
		/* Each part alone, so that one missing hook never takes the
		 * others down with it; then the parts that loaded, together. */
		struct parts one;

		one = (struct parts){ .iter = true };
		ok.iter = !try_load(h, &one, why_iter, sizeof(why_iter));
		if (stacks) {
			one = (struct parts){ .connect_btf = !raw_tp, .connect_raw = raw_tp };
			if (!try_load(h, &one, why_conn, sizeof(why_conn))) {
				ok.connect_btf = one.connect_btf;
				ok.connect_raw = one.connect_raw;
			} else if (!raw_tp) {
				one = (struct parts){ .connect_raw = true };
				ok.connect_raw = !try_load(h, &one, why_conn, sizeof(why_conn));
			}
			one = (struct parts){ .accept = true };
			ok.accept = !try_load(h, &one, why_acc, sizeof(why_acc));
		}
		if (parts_any(&ok) && try_load(h, &ok, why_all, sizeof(why_all)))
			ok = (struct parts){ 0 };
	}
	h->have_iter = ok.iter;
	h->have_connect = ok.connect_btf || ok.connect_raw;
	h->have_accept = ok.accept;
	if (h->skel) {
		struct holders_bpf *s = h->skel;

		if (h->have_iter && !(h->iter_link = attach(s->progs.hs_holders, why, sizeof(why)))) {
			h->have_iter = false;
			snprintf(why_iter, sizeof(why_iter), "attach: %s", why);
		}
		h->conn_prog = ok.connect_btf ? s->progs.hs_set_state_btf : s->progs.hs_set_state_raw;
		if (h->have_connect && arm_connect(h, why, sizeof(why))) {
			h->have_connect = false;
			snprintf(why_conn, sizeof(why_conn), "attach: %s", why);
		}
		if (h->have_accept && arm_accept(h, why, sizeof(why))) {
			h->have_accept = false;
			snprintf(why_acc, sizeof(why_acc), "attach (is tracefs mounted?): %s", why);
		}
		/* auto: attached now only to prove they can be; they come back when
		 * the first pod is flagged, so until then nothing runs per connection. */
		if (mode == HS_STACKS_AUTO)
			disarm(h);
		else
			h->armed = true;
	}
	if (h->have_iter)
		snprintf(h->desc, sizeof(h->desc), "BPF task/file iterator, every fd of every process%s",
			 h->host_pidns ? "" : "; NOTE: connscope is not in the host PID namespace and "
			 "sees only its own namespace's processes (run with hostPID: true)");
	else
		snprintf(h->desc, sizeof(h->desc), "/proc/<pid>/fd scan by socket inode (the "
			 "task/file iterator did not load: %s)", why_iter[0] ? why_iter : why_all);
	if (!stacks) {
		snprintf(h->stacks_desc, sizeof(h->stacks_desc), "off (--stacks off)");
	} else {
		char c[240], a[240];

		snprintf(c, sizeof(c), h->have_connect ? "%s" : "NO (%s)",
			 h->have_connect ? (ok.connect_btf ? "tp_btf" : "raw_tp") :
			 why_conn[0] ? why_conn : why_all);
		snprintf(a, sizeof(a), h->have_accept ? "%s" : "NO (%s)",
			 h->have_accept ? (h->mounted_tracefs ? "syscall tracepoints (tracefs was "
			 "not mounted: connscope mounted it at /sys/kernel/tracing)" :
			 "syscall tracepoints") : why_acc[0] ? why_acc : why_all);
		snprintf(h->stacks_desc, sizeof(h->stacks_desc), "%s; connect(): %s; accept(): %s",
			 mode == HS_STACKS_AUTO ? "auto (attached when the first pod has a socket in "
			 "CLOSE_WAIT for half the threshold; then only that pod's sockets)" :
			 "all (every connect and accept)", c, a);
	}
	return h;
}

void holders_close(struct holders *h)
{
	if (!h)
		return;
	disarm(h);
	bpf_link__destroy(h->iter_link);
	holders_bpf__destroy(h->skel);
	sym_cache_free(h->syms);
	free(h);
}

const char *holders_describe(const struct holders *h)
{
	return h ? h->desc : "not loaded";
}

const char *holders_stacks_describe(const struct holders *h)
{
	return h ? h->stacks_desc : "off";
}

void holders_counters(const struct holders *h, uint64_t *captured, uint64_t *dropped)
{
	int fd = h && h->skel ? bpf_map__fd(h->skel->maps.hs_counters) : -1;

	*captured = cs_percpu_sum(fd, HS_CNT_CAPTURED);
	*dropped = cs_percpu_sum(fd, HS_CNT_NO_STACK) + cs_percpu_sum(fd, HS_CNT_TABLE_FULL);
}

void holders_flag_cgroup(struct holders *h, uint64_t cgid)
{
	uint8_t one = 1;
	int fd;

	if (!h || !h->skel || h->mode != HS_STACKS_AUTO || !(h->have_connect || h->have_accept))
		return;
	for (unsigned i = 0; i < h->nflagged; i++)
		if (h->flagged[i] == cgid)
			return;
	fd = bpf_map__fd(h->skel->maps.stack_cgroups);
	if (h->nflagged == FLAG_RING) {
		bpf_map_delete_elem(fd, &h->flagged[h->flag_pos]);
		h->flagged[h->flag_pos] = cgid;
		h->flag_pos = (h->flag_pos + 1) % FLAG_RING;
	} else {
		h->flagged[h->nflagged++] = cgid;
	}
	bpf_map_update_elem(fd, &cgid, &one, BPF_ANY);
	if (!h->armed) {
		char why[200];

		h->armed = true;
		if (h->have_connect && arm_connect(h, why, sizeof(why))) {
			h->have_connect = false;
			cs_warn("connect() stacks are not taken: attach: %s", why);
		}
		if (h->have_accept && arm_accept(h, why, sizeof(why))) {
			h->have_accept = false;
			cs_warn("accept() stacks are not taken: attach: %s", why);
		}
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Delete the entries of both stack maps that no socket refers to any more. */
static void gc_stacks(struct holders *h)
{
	int fds[2] = { bpf_map__fd(h->skel->maps.stacks), bpf_map__fd(h->skel->maps.stacks_alt) };
	int kfd = bpf_map__fd(h->skel->maps.sock_stacks);
	uint32_t *ids = malloc(2 * HS_STACK_ENTRIES * sizeof(*ids));
	uint32_t *used = malloc(HS_SOCK_ENTRIES * sizeof(*used));
	size_t nids = 0, nused = 0;
	uint32_t id, next;
	uint64_t k, nk;
	struct hs_sock_stack v;
	bool first;

	if (!ids || !used)
		goto out;
	/* The ids first, then the references: a stack taken in between is not
	 * in ids, so it is never deleted. */
	for (int m = 0; m < 2; m++)
		for (first = true; nids < 2 * HS_STACK_ENTRIES; first = false) {
			if (bpf_map_get_next_key(fds[m], first ? NULL : &id, &next))
				break;
			id = next;
			ids[nids++] = id | (m ? HS_STACK_ALT : 0);
		}
	for (first = true; nused < HS_SOCK_ENTRIES; first = false) {
		if (bpf_map_get_next_key(kfd, first ? NULL : &k, &nk))
			break;
		k = nk;
		if (!bpf_map_lookup_elem(kfd, &k, &v) && v.stack_id >= 0)
			used[nused++] = (uint32_t)v.stack_id;
	}
	qsort(used, nused, sizeof(*used), cmp_u32);
	for (size_t i = 0; i < nids; i++) {
		if (bsearch(&ids[i], used, nused, sizeof(*used), cmp_u32))
			continue;
		id = ids[i] & ~(uint32_t)HS_STACK_ALT;
		bpf_map_delete_elem(fds[ids[i] & HS_STACK_ALT ? 1 : 0], &id);
	}
out:
	free(ids);
	free(used);
}

void holders_tick(struct holders *h)
{
	uint64_t now = cs_mono_ns(), cap, drop;

	if (!h || !h->skel || !(h->have_connect || h->have_accept) || now - h->gc_ns < GC_NS)
		return;
	h->gc_ns = now;
	holders_counters(h, &cap, &drop);
	if (cap == h->gc_captured)
		return;
	h->gc_captured = cap;
	gc_stacks(h);
}

static const char *origin_name(uint8_t o)
{
	return o == HS_ORIGIN_CONNECT ? "connect" : o == HS_ORIGIN_ACCEPT ? "accept" : NULL;
}

static void add_holder(struct sock_holders *sh, uint32_t pid, uint32_t fd, const char *comm)
{
	/* One entry per process and socket (the first fd), however many fds. */
	for (int i = 0; i < sh->nholders && i < HOLDERS_MAX; i++)
		if (sh->h[i].pid == pid)
			return;
	if (sh->nholders < HOLDERS_MAX) {
		struct holder *x = &sh->h[sh->nholders];

		x->pid = pid;
		x->fd = fd;
		snprintf(x->comm, sizeof(x->comm), "%s", comm);
	}
	sh->nholders++;
}

static void symbolize(struct holders *h, struct sock_holders *sh, const struct hs_holder *r)
{
	uint32_t id = (uint32_t)r->stack_id & ~(uint32_t)HS_STACK_ALT;
	struct bpf_map *map = r->stack_id & HS_STACK_ALT ? h->skel->maps.stacks_alt : h->skel->maps.stacks;
	uint64_t ips[HS_STACK_DEPTH] = { 0 };
	int n = 0, got;

	sh->origin = origin_name(r->origin);
	if (bpf_map_lookup_elem(bpf_map__fd(map), &id, ips)) {
		snprintf(sh->stack_note, sizeof(sh->stack_note),
			 "the stack of its %s() was taken but is no longer in the stack map", sh->origin);
		return;
	}
	while (n < HS_STACK_DEPTH && ips[n])
		n++;
	/* The process that made the socket, or else a holder: after a fork the
	 * child maps the same code at the same addresses. */
	got = sym_user_stack(h->syms, r->stack_tgid, ips, n, (const uint64_t *)r->sp_words,
			     HS_SP_WORDS, sh->frames, HOLDERS_MAX_FRAMES);
	if (got < 0)
		got = sym_user_stack(h->syms, r->tgid, ips, n, (const uint64_t *)r->sp_words,
				     HS_SP_WORDS, sh->frames, HOLDERS_MAX_FRAMES);
	if (got < 0) {
		snprintf(sh->stack_note, sizeof(sh->stack_note),
			 "the process that made it is gone, so its stack cannot be symbolized");
		return;
	}
	sh->nframes = got;
}

static void no_stack_note(const struct holders *h, struct sock_holders *sh)
{
	if (sh->nframes || sh->stack_note[0])
		return;
	if (h->mode == HS_STACKS_OFF)
		snprintf(sh->stack_note, sizeof(sh->stack_note), "stacks are off (--stacks off)");
	else if (!h->have_connect && !h->have_accept)
		snprintf(sh->stack_note, sizeof(sh->stack_note), "stacks cannot be taken on this kernel "
			 "(see connscope check)");
	else if (h->mode == HS_STACKS_AUTO)
		snprintf(sh->stack_note, sizeof(sh->stack_note), "it was made before its pod was flagged "
			 "(--stacks auto starts with the pod's first socket stuck in CLOSE_WAIT)");
	else
		snprintf(sh->stack_note, sizeof(sh->stack_note), "it was made before connscope started, "
			 "or its stack was dropped (see stacks_dropped)");
}

static void no_holder_why(const struct holders *h, struct sock_holders *sh, uint64_t ino)
{
	if (sh->nholders)
		return;
	if (!h->host_pidns)
		snprintf(sh->why, sizeof(sh->why), "connscope runs in a PID namespace of its own and "
			 "cannot see the processes of other containers: run it in the host's (hostPID: true)");
	else if (h->have_iter || ino)
		snprintf(sh->why, sizeof(sh->why), "no process has it in an fd: it is still in a "
			 "listener's accept queue (never accepted), or the kernel itself holds it");
	else
		snprintf(sh->why, sizeof(sh->why), "its inode is not known and the task/file iterator "
			 "cannot load here, so /proc cannot be searched for it");
}

static void lookup_iter(struct holders *h, const uint64_t *cookies, int n, struct sock_holders *out)
{
	int wfd = bpf_map__fd(h->skel->maps.want_cookies), ifd;
	uint8_t one = 1;
	char buf[sizeof(struct hs_holder) * 256];
	size_t have = 0;
	ssize_t r;

	for (int i = 0; i < n; i++)
		bpf_map_update_elem(wfd, &cookies[i], &one, BPF_ANY);
	ifd = bpf_iter_create(bpf_link__fd(h->iter_link));
	if (ifd < 0) {
		for (int i = 0; i < n; i++)
			snprintf(out[i].why, sizeof(out[i].why), "the task/file iterator failed: %s",
				 strerror(errno));
		goto out;
	}
	for (;;) {
		r = read(ifd, buf + have, sizeof(buf) - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		have += (size_t)r;
		size_t off = 0;

		for (; have - off >= sizeof(struct hs_holder); off += sizeof(struct hs_holder)) {
			struct hs_holder rec;

			memcpy(&rec, buf + off, sizeof(rec));
			rec.comm[sizeof(rec.comm) - 1] = '\0';
			for (int i = 0; i < n; i++) {
				if (cookies[i] != rec.cookie)
					continue;
				add_holder(&out[i], rec.tgid, rec.fd, rec.comm);
				if (rec.stack_id >= 0 && !out[i].nframes && !out[i].stack_note[0])
					symbolize(h, &out[i], &rec);
			}
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	close(ifd);
out:
	for (int i = 0; i < n; i++)
		bpf_map_delete_elem(wfd, &cookies[i]);
}

static void lookup_proc(const uint64_t *inos, int n, struct sock_holders *out)
{
	struct sock_owner own[HOLDERS_MAX];

	for (int i = 0; i < n; i++) {
		int k = inos[i] ? procfd_lookup(inos[i], own, HOLDERS_MAX) : 0;

		for (int j = 0; j < k; j++)
			add_holder(&out[i], own[j].pid, own[j].fd, own[j].comm);
	}
}

void holders_lookup(struct holders *h, const uint64_t *cookies, const uint64_t *inos, int n,
		    struct sock_holders *out)
{
	memset(out, 0, (size_t)n * sizeof(*out));
	if (!h || n <= 0)
		return;
	if (h->have_iter)
		lookup_iter(h, cookies, n, out);
	else
		lookup_proc(inos, n, out);
	for (int i = 0; i < n; i++) {
		no_holder_why(h, &out[i], inos[i]);
		no_stack_note(h, &out[i]);
	}
}
