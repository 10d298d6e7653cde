// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * HTTP/2 in TLS plaintext: load bpf/h2u.bpf.c and find what to probe.
 *
 * uprobes live on files (an inode and an offset), not on processes: attached with
 * pid -1 they fire in every process that maps the file, now and later. So the work
 * here is to find the files: every libssl.so.3 that a running process maps, and every
 * Go executable that contains crypto/tls.(*Conn).Write, each once (by device and
 * inode). Files inside containers are reached through /proc/<pid>/root and
 * /proc/<pid>/exe; the kernel resolves those links when the probe is created.
 *
 * That is --h2-plaintext all. With a list of pods or auto (h2pods.c) the mode is per
 * process instead: h2u_sync names the processes, and each gets its own links,
 * attached with its pid (see "per-process probes" below).
 *
 * Limits, all by design:
 *  - Go: (*Conn).Write at entry, and (*Conn).Read at entry and on each of its RET
 *    instructions (found with capstone, goret.c): a return probe would crash Go,
 *    whose runtime copies a growing stack by its return addresses and aborts at
 *    the kernel's trampoline. The entry keeps the receiver and buffer by goroutine
 *    (g, in R14), the RET reads the count returned in RAX. Both directions of a Go
 *    connection are walked: a client sees the server's SETTINGS and GOAWAY. Where
 *    Read cannot be probed (its body does not decode whole, more than GO_MAX_RETS
 *    RETs, an unknown prologue), Write alone is, as before: a Go server is then
 *    recognised as HTTP/2 by its first write, a SETTINGS frame, and its streams are
 *    counted from the highest stream id it answers ((id + 1) / 2: it answers out
 *    of order). The entry probes
 *    sit just past the function's stack-check prologue, so that a call whose
 *    stack grows (the prologue runs twice) is walked once; a binary whose prologue
 *    is not one of the known amd64 forms is not probed. Go >= 1.17 (register ABI),
 *    amd64; stripped binaries (-ldflags=-s) are found through .gopclntab.
 *  - Go's Write is tied to its socket by the first send on the same thread within
 *    5 ms. A goroutine that blocks between its Write and its send (another writer
 *    holds the Conn's lock) can leave the thread to another goroutine: its send may
 *    then bind the wrong socket. Bindings are made once per connection and never
 *    stolen from another connection, which keeps such mistakes rare and contained.
 *  - OpenSSL: libssl.so.3 only (not 1.1, not BoringSSL, not statically linked), and
 *    only SSL objects over a socket BIO: one that reads through memory BIOs (Node.js)
 *    never binds and reports nothing. Deleted (upgraded) libraries are not probed.
 *  - A process scanned once is scanned again only when its pid shows another
 *    executable, or every FULL_RESCAN_EVERY scans: a library it dlopen()s later is
 *    found then.
 *  - Connections already open when connscope starts, or opened by a program in the
 *    second before a rescan finds its binary or library for the first time, are
 *    joined mid-stream: the walker cannot find a boundary and does not guess, so
 *    they report nothing. (Once a file is probed, every later process using it is
 *    seen from its first byte.)
 *  - H2_EV_END comes at SSL_free or at the TCP close, whichever is first.
 */
#include "h2u.h"
#include "gopclntab.h"
#include "goret.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "h2_events.h"
#include "h2u.skel.h"
#include "loader.h"
#include "progfb.h"
#include "util.h"

#define FULL_RESCAN_EVERY 30          /* scans (~s) between re-reads of every process's maps */
#define GC_EVERY_NS (10ull * 1000000000ull)
#define GC_BATCH 4096                 /* stale entries removed per map per pass */
#define GO_WRITE_SYM "crypto/tls.(*Conn).Write"
#define GO_READ_SYM "crypto/tls.(*Conn).Read"
#define GO_MAX_RETS 16                /* RET instructions of Read probed at most */
#define GO_MAX_BODY (64 * 1024)       /* bytes of Read disassembled at most */
#define GO_MIN_MINOR 17               /* register ABI on amd64 */
#define SYS_BIND_LINKS 11             /* 8 syscalls, or 2 tracepoints; and close */

#define PP_FILES 4                    /* libssl files probed per process */
#define PP_ATTACH_PER_SYNC 16         /* new processes probed per sync: the rest wait a second */
#define PP_ATTACH_NS (100 * 1000000ull) /* ... and no new one past this time in a sync */
#define SSL_LINKS 9                   /* links of one libssl: 4 calls x 2, and SSL_free */

/* A process probed in per-process mode, and its links. */
struct pproc {
	int pid;
	uint64_t start;       /* start time (/proc/<pid>/stat): a reused pid is another process */
	dev_t dev;            /* its executable */
	ino_t ino;
	struct bpf_link **l;
	int nl, capl;
	struct { dev_t dev; ino_t ino; } files[PP_FILES]; /* libssl files probed in it */
	int nfiles;
	bool go;              /* its executable is probed */
	bool capped;          /* H2U_MAX_LINKS left some of its probes out: tried each sync */
	bool keep;            /* named at this sync */
};

/* Mirrors struct h2u_key in bpf/h2u.bpf.c. */
struct h2u_key {
	uint32_t tgid;
	uint32_t pad;
	uint64_t ptr;
};

enum target_kind { T_SSL, T_GO, T_OTHER };

/* Go's (*Conn).Read: where its entry probe and its RET probes go (file offsets). */
struct go_read_at {
	size_t entry;     /* 0: Read is not probed */
	size_t rets[GO_MAX_RETS];
	int nrets;
};

/* A file looked at once: probed, or why not. */
struct target {
	dev_t dev;
	ino_t ino;
	enum target_kind kind;
	bool probed;
	size_t off;       /* T_GO: where its probe goes, when note is empty */
	struct go_read_at rd; /* T_GO: (*Conn).Read's probes */
	char name[192];   /* the path as its process sees it */
	char note[128];   /* why it is not probed (empty if it is, or if it is not a target) */
};

/* A process already scanned: its pid and the executable it runs. */
struct seen {
	int pid;
	dev_t dev;
	ino_t ino;
};

struct h2u {
	struct h2u_bpf *skel;
	struct bpf_link *kernel_links[SYS_BIND_LINKS]; /* socket binding and close */
	int nkernel_links, nbind;
	bool sys_bind;        /* bound through syscall tracepoints (no sock_*_length) */
	struct bpf_link **links;
	size_t nlinks, caplinks;
	struct target *t;
	size_t nt, capt;
	struct seen *seen;
	size_t nseen;
	ino_t mntns;          /* our mount namespace */
	unsigned scans;
	uint64_t last_gc_ns;
	int self;
	/* Per-process mode (h2u_sync): probes on named processes only. */
	bool per_proc;
	struct reaper *reaper; /* releases the links of processes no longer probed */
	struct pproc *pp;     /* sorted by pid */
	size_t npp, cappp;
	size_t pp_links;      /* links the processes hold, at most H2U_MAX_LINKS */
	unsigned over_cap;    /* processes named at the last sync that the cap left out */
	unsigned syncs;
};

/* ---- bookkeeping -------------------------------------------------------------------- */

static struct target *target_find(struct h2u *u, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < u->nt; i++)
		if (u->t[i].dev == dev && u->t[i].ino == ino)
			return &u->t[i];
	return NULL;
}

static struct target *target_add(struct h2u *u, const struct stat *st, enum target_kind kind,
				 const char *name)
{
	struct target *t;

	if (u->nt == u->capt) {
		size_t cap = u->capt ? u->capt * 2 : 64;
		struct target *n = realloc(u->t, cap * sizeof(*n));

		if (!n)
			return NULL;
		u->t = n;
		u->capt = cap;
	}
	t = &u->t[u->nt++];
	memset(t, 0, sizeof(*t));
	t->dev = st->st_dev;
	t->ino = st->st_ino;
	t->kind = kind;
	snprintf(t->name, sizeof(t->name), "%s", name);
	return t;
}

static int link_keep(struct h2u *u, struct bpf_link *l)
{
	if (u->nlinks == u->caplinks) {
		size_t cap = u->caplinks ? u->caplinks * 2 : 32;
		struct bpf_link **n = realloc(u->links, cap * sizeof(*n));

		if (!n)
			return -1;
		u->links = n;
		u->caplinks = cap;
	}
	u->links[u->nlinks++] = l;
	return 0;
}

/* Drop the links made since mark (a target that attached only in part). */
static void links_undo(struct h2u *u, size_t mark)
{
	while (u->nlinks > mark)
		bpf_link__destroy(u->links[--u->nlinks]);
}

/* How a process names a file: the plain path in our mount namespace, else "pid N:path". */
static void display_name(struct h2u *u, int pid, const char *path, char *out, size_t len)
{
	char ns[64];
	struct stat st;

	snprintf(ns, sizeof(ns), "/proc/%d/ns/mnt", pid);
	if (pid <= 0 || (!stat(ns, &st) && st.st_ino == u->mntns))
		snprintf(out, len, "%s", path);
	else
		snprintf(out, len, "pid %d:%s", pid, path);
}

/* ---- OpenSSL ------------------------------------------------------------------------ */

/* pid -1: every process that maps the file; else only that process (the kernel
 * puts the breakpoint in its memory alone). */
static struct bpf_link *attach_pid(struct bpf_program *prog, int pid, const char *path,
				   const char *func, size_t off, bool ret)
{
	LIBBPF_OPTS(bpf_uprobe_opts, o, .retprobe = ret, .func_name = func);

	return bpf_program__attach_uprobe_opts(prog, pid, path, off, &o);
}

static struct bpf_link *attach_one(struct bpf_program *prog, const char *path, const char *func,
				   size_t off, bool ret)
{
	return attach_pid(prog, -1, path, func, off, ret);
}

struct ssl_fn {
	const char *fn;
	struct bpf_program *prog;
	bool ret;
};

/* The probes of one libssl, in attach order: a call's return probe before its
 * entry (an entry never waits for a return that is not there yet); SSL_free
 * last, if its program loaded. Returns how many. */
static int ssl_fns(struct h2u_bpf *s, struct ssl_fn *f)
{
	const struct {
		const char *fn;
		struct bpf_program *entry;
	} calls[] = {
		{ "SSL_write", s->progs.h2u_ssl_write },
		{ "SSL_write_ex", s->progs.h2u_ssl_write_ex },
		{ "SSL_read", s->progs.h2u_ssl_read },
		{ "SSL_read_ex", s->progs.h2u_ssl_read_ex },
	};
	int n = 0;

	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		f[n++] = (struct ssl_fn){ calls[i].fn, s->progs.h2u_ssl_ret, true };
		f[n++] = (struct ssl_fn){ calls[i].fn, calls[i].entry, false };
	}
	if (bpf_program__autoload(s->progs.h2u_ssl_free))
		f[n++] = (struct ssl_fn){ "SSL_free", s->progs.h2u_ssl_free, false };
	return n;
}

/* Probe a libssl.so.3 at path (openable from here); name is how its users see it. */
static void attach_ssl(struct h2u *u, const struct stat *st, const char *path, const char *name)
{
	struct ssl_fn fns[SSL_LINKS];
	int n = ssl_fns(u->skel, fns);
	struct target *t = target_add(u, st, T_SSL, name);
	size_t mark = u->nlinks;
	struct bpf_link *l = NULL;

	if (!t)
		return;
	for (int i = 0; i < n; i++) {
		l = attach_one(fns[i].prog, path, fns[i].fn, 0, fns[i].ret);
		if (!l || link_keep(u, l))
			goto fail;
	}
	t->probed = true;
	return;
fail:
	snprintf(t->note, sizeof(t->note), "uprobe attach failed: %s%s (%s)", strerror(errno),
		 errno == EACCES || errno == EPERM ? " (needs CAP_SYS_ADMIN)" : "",
		 loader_last_libbpf_msg());
	bpf_link__destroy(l);
	links_undo(u, mark);
	cs_warn("no HTTP/2 plaintext from %s: %s", name, t->note);
}

/* libssl.so.3, or the file it links to where distributions add the full version
 * (libssl.so.3.0.7): maps show the file's real name. */
static bool is_libssl3(const char *path)
{
	const char *base = strrchr(path, '/');

	return base && !strncmp(base + 1, "libssl.so.3", 11) && (!base[12] || base[12] == '.');
}

/* ---- Go ----------------------------------------------------------------------------- */

/* File offset of virtual address va, from the program headers; -1 if not in the file. */
static long long va_to_off(Elf *e, uint64_t va, bool exec_only)
{
	size_t n;

	if (elf_getphdrnum(e, &n))
		return -1;
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (exec_only && !(ph.p_flags & PF_X))
			continue;
		if (va >= ph.p_vaddr && va < ph.p_vaddr + ph.p_filesz)
			return (long long)(va - ph.p_vaddr + ph.p_offset);
	}
	return -1;
}

static int read_va(int fd, Elf *e, uint64_t va, void *buf, size_t len)
{
	long long off = va_to_off(e, va, false);

	if (off < 0 || pread(fd, buf, len, off) != (ssize_t)len)
		return -1;
	return 0;
}

static uint64_t le64(const unsigned char *b)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

static uint32_t le32(const unsigned char *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/*
 * The Go version a binary was built with, from .go.buildinfo: a 16-byte header
 * ("\xff Go buildinf:", pointer size, flags), then, since Go 1.18 (flags bit 2),
 * the version inline at offset 32 as a varint length and the bytes; before, at
 * offset 16, the address of a string header (pointer, length) for it.
 */
static void go_version(int fd, Elf *e, Elf_Data *bi, char *out, size_t len)
{
	const unsigned char *d = bi ? bi->d_buf : NULL;
	unsigned char hdr[16];
	uint64_t n = 0, ptr;
	int shift = 0;
	size_t i;

	out[0] = 0;
	if (!d || bi->d_size < 33 || memcmp(d, "\xff Go buildinf:", 14) || d[14] != 8 || (d[15] & 1))
		return;  /* only 64-bit little-endian binaries are probed */
	if (d[15] & 2) {
		for (i = 32; i < bi->d_size && i < 42; i++) {
			n |= (uint64_t)(d[i] & 0x7f) << shift;
			shift += 7;
			if (!(d[i] & 0x80))
				break;
		}
		i++;
		if (n < len && i + n <= bi->d_size) {
			memcpy(out, d + i, n);
			out[n] = 0;
		}
		return;
	}
	if (read_va(fd, e, le64(d + 16), hdr, sizeof(hdr)))
		return;
	ptr = le64(hdr);
	n = le64(hdr + 8);
	if (n && n < len && !read_va(fd, e, ptr, out, n))
		out[n] = 0;
}

/*
 * The entry address of function fname from .gopclntab (layout in gopclntab.h),
 * 64-bit binaries only. Every offset is checked against the section. 0 if not found.
 */
static uint64_t pclntab_find(Elf_Data *data, const char *fname, uint64_t *end)
{
	const unsigned char *p = data ? data->d_buf : NULL;
	size_t n = data ? data->d_size : 0, flen = strlen(fname) + 1;
	uint64_t nfunc, names, pcln, text;
	struct pcln_hdr hd;
	bool go118;

	if (pcln_parse(p, n, &hd) || hd.ptrsize != 8)
		return 0;
	go118 = hd.go118;
	nfunc = hd.nfunc;
	names = hd.names;
	pcln = hd.pcln;
	text = hd.text;
	for (uint64_t i = 0; i < nfunc; i++) {
		uint64_t slot = pcln + i * (go118 ? 8 : 16), fo, nameat;

		if (slot + (go118 ? 8 : 16) > n)
			return 0;
		fo = pcln + (go118 ? le32(p + slot + 4) : le64(p + slot + 8));
		if (fo + (go118 ? 8 : 12) > n)
			continue;
		nameat = names + (uint64_t)(int64_t)(int32_t)le32(p + fo + (go118 ? 4 : 8));
		if (nameat >= n || n - nameat < flen || memcmp(p + nameat, fname, flen))
			continue;
		/* The table is sorted by entry and closed by the end of the text:
		 * the next slot's entry ends this function. */
		if (end) {
			uint64_t next = slot + (go118 ? 8 : 16);

			*end = next + (go118 ? 4 : 8) > n ? 0 :
			       go118 ? text + le32(p + next) : le64(p + next);
		}
		return go118 ? text + le32(p + fo) : le64(p + fo);
	}
	return 0;
}

/*
 * How many bytes of amd64 stack-check prologue open a Go function:
 *
 *   cmp rsp, [r14+0x10]               49 3b 66 10            small frames
 *   lea r12, [rsp-N]; cmp r12, [r14+0x10]
 *                                      4c 8d 64 24 NN | 4c 8d a4 24 NN NN NN NN; 4d 3b 66 10
 *   jbe morestack                      76 NN | 0f 86 NN NN NN NN
 *
 * (r14 holds g; g.stackguard0 is at 0x10.) -1 if it is none of these.
 */
static int go_prologue_len(const unsigned char *b, size_t n)
{
	size_t i = 0;

	if (n < 16)
		return -1;
	if (b[0] == 0x49 && b[1] == 0x3b && b[2] == 0x66 && b[3] == 0x10) {
		i = 4;
	} else if (b[0] == 0x4c && b[1] == 0x8d && (b[2] == 0x64 || b[2] == 0xa4) && b[3] == 0x24) {
		i = b[2] == 0x64 ? 5 : 8;
		if (!(b[i] == 0x4d && b[i + 1] == 0x3b && b[i + 2] == 0x66 && b[i + 3] == 0x10))
			return -1;
		i += 4;
	} else {
		return -1;
	}
	if (b[i] == 0x76)
		return (int)i + 2;
	if (b[i] == 0x0f && b[i + 1] == 0x86)
		return (int)i + 6;
	return -1;
}

/*
 * Where (*Conn).Read [va, end) takes its probes: past its stack-check prologue, as
 * Write, and on each RET instruction, found by disassembling the whole body
 * (goret.c). Left empty (Read not probed: Go's writes alone are seen, as before)
 * when the body cannot be read or decoded whole, or has more RETs than probed.
 */
static void go_read_probes(int fd, Elf *e, uint64_t va, uint64_t end, struct go_read_at *rd)
{
	uint32_t rets[GO_MAX_RETS];
	unsigned char *code;
	long long foff;
	size_t len;
	int plen, n;

	memset(rd, 0, sizeof(*rd));
	if (!va || end <= va || end - va > GO_MAX_BODY)
		return;
	len = (size_t)(end - va);
	foff = va_to_off(e, va, true);
	if (foff < 0 || !(code = malloc(len)))
		return;
	if (pread(fd, code, len, foff) == (ssize_t)len &&
	    (plen = go_prologue_len(code, len)) > 0 &&
	    (n = x86_ret_offsets(code, len, rets, GO_MAX_RETS)) > 0) {
		rd->entry = (size_t)foff + (size_t)plen;
		for (int i = 0; i < n; i++)
			rd->rets[i] = (size_t)foff + rets[i];
		rd->nrets = n;
	}
	free(code);
}

/*
 * Is the executable at path (a /proc/<pid>/exe link) a Go program using crypto/tls?
 * Returns its kind; for T_GO, *off is where to probe, or note[] says why not.
 */
static enum target_kind go_inspect(const char *path, size_t *off, struct go_read_at *rd,
				    char *note, size_t notelen)
{
	Elf_Data *buildinfo = NULL, *pclntab = NULL;
	enum target_kind kind = T_OTHER;
	Elf_Scn *scn = NULL, *symtab = NULL;
	uint64_t write_va = 0, read_va = 0, read_end = 0;
	GElf_Ehdr eh;
	bool is_go = false;
	size_t shstrndx, nlen;
	char ver[32];
	Elf *e = NULL;
	int fd;

	note[0] = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return T_OTHER;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF || !gelf_getehdr(e, &eh) || elf_getshdrstrndx(e, &shstrndx))
		goto out;
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		const char *name;

		if (!gelf_getshdr(scn, &sh) || !(name = elf_strptr(e, shstrndx, sh.sh_name)))
			continue;
		nlen = strlen(name);
		if (!strcmp(name, ".go.buildinfo")) {
			is_go = true;
			buildinfo = elf_getdata(scn, NULL);
		} else if (nlen >= 9 && !strcmp(name + nlen - 9, "gopclntab") && sh.sh_type != SHT_NOBITS) {
			/* .gopclntab; .data.rel.ro.gopclntab in PIE builds */
			is_go = true;
			pclntab = elf_getdata(scn, NULL);
		} else if (!strcmp(name, ".note.go.buildid")) {
			is_go = true;
		} else if (sh.sh_type == SHT_SYMTAB) {
			symtab = scn;
		}
	}
	if (!is_go)
		goto out;
	if (symtab) {
		GElf_Shdr sh;
		Elf_Data *d = elf_getdata(symtab, NULL);
		size_t nsym;

		gelf_getshdr(symtab, &sh);
		nsym = d && sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
		for (size_t i = 0; i < nsym && !(write_va && read_va); i++) {
			GElf_Sym sym;
			const char *name;

			if (!gelf_getsym(d, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
			    !(name = elf_strptr(e, sh.sh_link, sym.st_name)))
				continue;
			if (!strcmp(name, GO_WRITE_SYM)) {
				write_va = sym.st_value;
			} else if (!strcmp(name, GO_READ_SYM)) {
				read_va = sym.st_value;
				read_end = sym.st_size ? sym.st_value + sym.st_size : 0;
			}
		}
	}
	if (!write_va)  /* stripped (-ldflags=-s): the runtime's own table */
		write_va = pclntab_find(pclntab, GO_WRITE_SYM, NULL);
	if (!read_va || !read_end)
		read_va = pclntab_find(pclntab, GO_READ_SYM, &read_end);
	if (!write_va) {
		/* Go without TLS; or a table this code cannot read, if the name is there. */
		if (pclntab && memmem(pclntab->d_buf, pclntab->d_size, GO_WRITE_SYM, strlen(GO_WRITE_SYM))) {
			kind = T_GO;
			snprintf(note, notelen, "%s not found in its symbols or pclntab", GO_WRITE_SYM);
		}
		goto out;
	}
	kind = T_GO;
	go_version(fd, e, buildinfo, ver, sizeof(ver));
	if (eh.e_machine != EM_X86_64) {
		snprintf(note, notelen, "Go probes are implemented for x86-64 only");
		goto out;
	}
	if (!strncmp(ver, "go1.", 4)) {
		long minor = strtol(ver + 4, NULL, 10);

		if (minor < GO_MIN_MINOR) {
			snprintf(note, notelen, "%s passes arguments on the stack (Go 1.%d+ needed)",
				 ver, GO_MIN_MINOR);
			goto out;
		}
	}
	{
		long long foff = va_to_off(e, write_va, true);
		unsigned char code[16];
		int plen;

		if (foff < 0 || pread(fd, code, sizeof(code), foff) != (ssize_t)sizeof(code)) {
			snprintf(note, notelen, "%s not in the file", GO_WRITE_SYM);
			goto out;
		}
		plen = go_prologue_len(code, sizeof(code));
		if (plen < 0) {
			snprintf(note, notelen, "%s: unknown prologue (%s)", GO_WRITE_SYM,
				 ver[0] ? ver : "unknown Go version");
			goto out;
		}
		*off = (size_t)foff + (size_t)plen;
	}
	go_read_probes(fd, e, read_va, read_end, rd);
out:
	if (e)
		elf_end(e);
	close(fd);
	return kind;
}

/* The executable of pid (st: its stat through /proc/<pid>/exe), inspected once: a
 * target whose note is empty if it is a Go program to probe at t->off. */
static struct target *inspect_exe(struct h2u *u, int pid, const struct stat *st)
{
	char exe[64], path[PATH_MAX], name[192], note[128];
	struct go_read_at rd = { 0 };
	enum target_kind kind;
	struct target *t;
	ssize_t n;
	size_t off = 0;

	snprintf(exe, sizeof(exe), "/proc/%d/exe", pid);
	n = readlink(exe, path, sizeof(path) - 1);
	if (n < 0)
		return NULL;
	path[n] = 0;
	kind = go_inspect(exe, &off, &rd, note, sizeof(note));
	display_name(u, pid, path, name, sizeof(name));
	t = target_add(u, st, kind, name);
	if (!t || kind != T_GO)
		return t;
	if (!note[0] && !bpf_program__autoload(u->skel->progs.h2u_go_write))
		snprintf(note, sizeof(note), "the Go probe program did not load on this kernel");
	snprintf(t->note, sizeof(t->note), "%s", note);
	t->off = off;
	t->rd = rd;
	if (!bpf_program__autoload(u->skel->progs.h2u_go_read) ||
	    !bpf_program__autoload(u->skel->progs.h2u_go_read_ret))
		t->rd.entry = 0;
	return t;
}

/* The links a Go target takes: Write's entry, then Read's RETs and entry (a RET
 * never waits for an entry not attached yet: the other way round, a Read could
 * enter and leave a record its RET never takes). */
static int go_nlinks(const struct target *t)
{
	return 1 + (t->rd.entry ? 1 + t->rd.nrets : 0);
}

/*
 * Probe t's Go functions for pid (-1: every process running it) through exe; the
 * links go to out[], go_nlinks(t) at most. Returns how many, 0 if Write's failed.
 * Read's probes are all or nothing: without them Write's still count.
 */
static int go_attach(struct h2u *u, const struct target *t, int pid, const char *exe,
		     struct bpf_link **out)
{
	struct h2u_bpf *s = u->skel;
	int n = 0, r0;

	out[n] = attach_pid(s->progs.h2u_go_write, pid, exe, NULL, t->off, false);
	if (!out[n])
		return 0;
	n++;
	if (!t->rd.entry)
		return n;
	r0 = n;
	for (int i = 0; i < t->rd.nrets; i++) {
		out[n] = attach_pid(s->progs.h2u_go_read_ret, pid, exe, NULL, t->rd.rets[i], false);
		if (!out[n])
			goto no_read;
		n++;
	}
	out[n] = attach_pid(s->progs.h2u_go_read, pid, exe, NULL, t->rd.entry, false);
	if (!out[n])
		goto no_read;
	return n + 1;
no_read:
	cs_warn("%s: Go reads not probed: %s (%s)", t->name, strerror(errno),
		loader_last_libbpf_msg());
	while (n > r0)
		bpf_link__destroy(out[--n]);
	return n;
}

/* The executable of pid, looked at once and probed for every process (pid -1). */
static void consider_exe(struct h2u *u, int pid, const struct stat *st)
{
	char exe[64], name[192];
	struct target *t = inspect_exe(u, pid, st);
	struct bpf_link *l[2 + GO_MAX_RETS];
	int n;

	if (!t || t->kind != T_GO || t->note[0])
		return;
	snprintf(exe, sizeof(exe), "/proc/%d/exe", pid);
	snprintf(name, sizeof(name), "%s", t->name);
	/* The kernel resolves /proc/<pid>/exe to the file when it makes the probe. */
	n = go_attach(u, t, -1, exe, l);
	if (!n) {
		snprintf(t->note, sizeof(t->note), "uprobe attach failed: %s%s (%s)", strerror(errno),
			 errno == EACCES || errno == EPERM ? " (needs CAP_SYS_ADMIN)" : "",
			 loader_last_libbpf_msg());
		cs_warn("no HTTP/2 plaintext from %s: %s", name, t->note);
		return;
	}
	for (int i = 0; i < n; i++) {
		if (link_keep(u, l[i])) {
			while (i < n)
				bpf_link__destroy(l[i++]);
			break;
		}
	}
	t->probed = true;
}

/* ---- processes ---------------------------------------------------------------------- */

/* Every libssl.so.3 that pid maps. */
static void scan_maps(struct h2u *u, int pid)
{
	char p[64], last[PATH_MAX] = "", *line = NULL;
	size_t cap = 0;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/%d/maps", pid);
	f = fopen(p, "re");
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		char *path = strchr(line, '/'), root[PATH_MAX + 32], name[192];
		struct stat st;

		if (!path)
			continue;
		path[strcspn(path, "\n")] = 0;
		/* A library replaced on disk since it was mapped: its path names
		 * another file now. */
		if (strstr(path, " (deleted)") || !is_libssl3(path) || !strcmp(path, last))
			continue;
		snprintf(last, sizeof(last), "%s", path);
		snprintf(root, sizeof(root), "/proc/%d/root%s", pid, path);
		if (stat(root, &st) || target_find(u, st.st_dev, st.st_ino))
			continue;
		display_name(u, pid, path, name, sizeof(name));
		attach_ssl(u, &st, root, name);
	}
	free(line);
	fclose(f);
}

static int seen_cmp(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/*
 * Look at processes not seen before. A pid counts as seen while it runs the same
 * executable: one stat of /proc/<pid>/exe per process and scan. (An exec keeps the
 * pid and the start time, so those would miss the new program.)
 */
static void scan_procs(struct h2u *u, bool full)
{
	struct seen *now = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d = opendir("/proc");

	if (!d)
		return;
	while ((de = readdir(d))) {
		struct seen key = {}, *old;
		char exe[64];
		struct stat st;
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 0 || pid == u->self)
			continue;
		key.pid = (int)pid;
		snprintf(exe, sizeof(exe), "%ld/exe", pid);
		if (!fstatat(dirfd(d), exe, &st, 0)) {
			key.dev = st.st_dev;
			key.ino = st.st_ino;
		}
		if (n == cap) {
			size_t c = cap ? cap * 2 : 1024;
			struct seen *nn = realloc(now, c * sizeof(*nn));

			if (!nn)
				break;
			now = nn;
			cap = c;
		}
		now[n++] = key;
		old = u->seen ? bsearch(&key, u->seen, u->nseen, sizeof(key), seen_cmp) : NULL;
		if (old && old->dev == key.dev && old->ino == key.ino && !full)
			continue;
		if (!key.ino)
			continue;  /* a kernel thread, or a process on its way out */
		if (!target_find(u, key.dev, key.ino))
			consider_exe(u, key.pid, &st);
		scan_maps(u, key.pid);
	}
	closedir(d);
	qsort(now, n, sizeof(*now), seen_cmp);
	free(u->seen);
	u->seen = now;
	u->nseen = n;
}

/* Where distributions keep the system's libssl.so.3. */
static void attach_system_libssl(struct h2u *u)
{
	static const char *const paths[] = {
		"/usr/lib/x86_64-linux-gnu/libssl.so.3",
		"/lib/x86_64-linux-gnu/libssl.so.3",
		"/usr/lib/aarch64-linux-gnu/libssl.so.3",
		"/lib/aarch64-linux-gnu/libssl.so.3",
		"/usr/lib64/libssl.so.3",
		"/lib64/libssl.so.3",
		"/usr/lib/libssl.so.3",
		"/lib/libssl.so.3",
	};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct stat st;

		if (stat(paths[i], &st) || target_find(u, st.st_dev, st.st_ino))
			continue;
		attach_ssl(u, &st, paths[i], paths[i]);
	}
}

/* ---- garbage: entries whose thread or process is gone ------------------------------ */

static bool proc_alive(uint32_t tgid)
{
	char p[64];

	snprintf(p, sizeof(p), "/proc/%u", tgid);
	return !access(p, F_OK);
}

/*
 * A connection never tied to a socket (a memory BIO, a Go Write whose send came too
 * late), or not closed before its process died, leaves its state; a state removed
 * that way leaves its cookie link. Each pass removes up to GC_BATCH of each. (The
 * per-thread call records are task storage: they die with their threads.)
 */
static void gc(struct h2u *u)
{
	int states = bpf_map__fd(u->skel->maps.h2u_state);
	int cookies = bpf_map__fd(u->skel->maps.h2u_by_cookie);
	size_t vsz = bpf_map__value_size(u->skel->maps.h2u_state), n;
	uint64_t *ids = calloc(GC_BATCH, sizeof(*ids));
	struct h2u_key *keys = calloc(GC_BATCH, sizeof(*keys));
	void *val = calloc(1, vsz);
	struct h2u_key k, kcur;
	uint64_t id, cur;
	bool have;

	if (!ids || !keys || !val)
		goto out;
	/* Deletions wait for the end of each walk: deleting the cursor's key
	 * would restart the iteration. */
	n = 0;
	for (have = false; n < GC_BATCH && !bpf_map_get_next_key(states, have ? &kcur : NULL, &k);
	     have = true) {
		if (!proc_alive(k.tgid))
			keys[n++] = k;
		kcur = k;
	}
	for (size_t i = 0; i < n; i++)
		bpf_map_delete_elem(states, &keys[i]);

	n = 0;
	for (have = false; n < GC_BATCH && !bpf_map_get_next_key(cookies, have ? &cur : NULL, &id);
	     have = true) {
		if (!bpf_map_lookup_elem(cookies, &id, &k) && bpf_map_lookup_elem(states, &k, val) &&
		    errno == ENOENT)
			ids[n++] = id;
		cur = id;
	}
	for (size_t i = 0; i < n; i++)
		bpf_map_delete_elem(cookies, &ids[i]);
out:
	free(ids);
	free(keys);
	free(val);
}

/* ---- per-process probes ------------------------------------------------------------ */

/*
 * A uprobe attached with a pid fires in that process alone: the kernel installs
 * its breakpoint only in memory maps whose process an attached event names, so
 * every other process that maps the same file runs the original instruction and
 * takes no trap. (A child forked by a probed process inherits its copy of the
 * breakpoint; its first hit there is filtered and removes it.) The links are per
 * process, so their number grows with the processes: H2U_MAX_LINKS bounds it.
 */

static uint64_t proc_start(int pid)
{
	char p[64], buf[1024], *paren;
	unsigned long long start = 0;
	ssize_t n;
	int fd;

	snprintf(p, sizeof(p), "/proc/%d/stat", pid);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* After the command's closing parenthesis: state is field 3, starttime 22. */
	paren = strrchr(buf, ')');
	if (!paren || sscanf(paren + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d "
			     "%*d %*d %*d %*d %*d %llu", &start) != 1)
		return 0;
	return start;
}

static int pp_cmp(const void *a, const void *b)
{
	const struct pproc *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

static struct pproc *pp_find(struct h2u *u, int pid)
{
	struct pproc key = { .pid = pid };

	return u->npp ? bsearch(&key, u->pp, u->npp, sizeof(key), pp_cmp) : NULL;
}

static int pp_keep_link(struct h2u *u, struct pproc *p, struct bpf_link *l)
{
	if (p->nl == p->capl) {
		int cap = p->capl ? p->capl * 2 : 16;
		struct bpf_link **n = realloc(p->l, (size_t)cap * sizeof(*n));

		if (!n)
			return -1;
		p->l = n;
		p->capl = cap;
	}
	p->l[p->nl++] = l;
	u->pp_links++;
	return 0;
}

/*
 * Releasing a uprobe waits for RCU grace periods in the kernel: about 30 ms a link,
 * so a pod's hundred links would hold the event loop for seconds. A thread of its
 * own releases them; the probes fire in their process until then, harmlessly.
 */
struct reaper {
	pthread_t tid;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct bpf_link **q;
	size_t n, cap;
	bool stop;
};

static void *reaper_main(void *arg)
{
	struct reaper *r = arg;

	for (;;) {
		struct bpf_link *l;

		pthread_mutex_lock(&r->mu);
		while (!r->n && !r->stop)
			pthread_cond_wait(&r->cv, &r->mu);
		if (!r->n) {
			pthread_mutex_unlock(&r->mu);
			return NULL;
		}
		l = r->q[--r->n];
		pthread_mutex_unlock(&r->mu);
		bpf_link__destroy(l);
	}
}

static struct reaper *reaper_start(void)
{
	struct reaper *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if (pthread_create(&r->tid, NULL, reaper_main, r)) {
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return NULL;
	}
	return r;
}

/* Handed to the thread; released here if there is none, or no room. */
static void reaper_put(struct reaper *r, struct bpf_link *l)
{
	if (r) {
		pthread_mutex_lock(&r->mu);
		if (r->n == r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 64;
			struct bpf_link **q = realloc(r->q, cap * sizeof(*q));

			if (q) {
				r->q = q;
				r->cap = cap;
			}
		}
		if (r->n < r->cap) {
			r->q[r->n++] = l;
			pthread_cond_signal(&r->cv);
			pthread_mutex_unlock(&r->mu);
			return;
		}
		pthread_mutex_unlock(&r->mu);
	}
	bpf_link__destroy(l);
}

/* The thread releases what it holds, then ends. */
static void reaper_stop(struct reaper *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->tid, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r->q);
	free(r);
}

static void pp_undo(struct h2u *u, struct pproc *p, int mark)
{
	while (p->nl > mark) {
		reaper_put(u->reaper, p->l[--p->nl]);
		u->pp_links--;
	}
}

static void pp_warn(struct h2u *u, const char *what, int pid)
{
	static unsigned warned;

	if (warned++ < 5)
		cs_warn("no HTTP/2 plaintext from pid %d (%s): uprobe attach failed: %s%s (%s)", pid,
			what, strerror(errno), errno == EACCES || errno == EPERM ?
			" (needs CAP_SYS_ADMIN)" : "", loader_last_libbpf_msg());
}

/* Every libssl.so.3 that p maps and that is not probed in it yet. */
static void pp_scan_maps(struct h2u *u, struct pproc *p, bool *capped)
{
	char path_maps[64], *line = NULL;
	size_t cap = 0;
	FILE *f;

	snprintf(path_maps, sizeof(path_maps), "/proc/%d/maps", p->pid);
	f = fopen(path_maps, "re");
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0 && p->nfiles < PP_FILES) {
		char *path = strchr(line, '/'), root[PATH_MAX + 32];
		struct ssl_fn fns[SSL_LINKS];
		struct stat st;
		bool have = false;
		int n, mark = p->nl;

		if (!path)
			continue;
		path[strcspn(path, "\n")] = 0;
		if (strstr(path, " (deleted)") || !is_libssl3(path))
			continue;
		snprintf(root, sizeof(root), "/proc/%d/root%s", p->pid, path);
		if (stat(root, &st))
			continue;
		for (int i = 0; i < p->nfiles; i++)
			have |= p->files[i].dev == st.st_dev && p->files[i].ino == st.st_ino;
		if (have)
			continue;
		n = ssl_fns(u->skel, fns);
		if (u->pp_links + (size_t)n > H2U_MAX_LINKS) {
			*capped = true;
			break;
		}
		for (int i = 0; i < n; i++) {
			struct bpf_link *l = attach_pid(fns[i].prog, p->pid, root, fns[i].fn, 0,
							fns[i].ret);

			if (!l || pp_keep_link(u, p, l)) {
				pp_warn(u, path, p->pid);
				bpf_link__destroy(l);
				pp_undo(u, p, mark);
				break;
			}
		}
		/* Probed, or failed: either way not tried again in this process. */
		p->files[p->nfiles].dev = st.st_dev;
		p->files[p->nfiles].ino = st.st_ino;
		p->nfiles++;
	}
	free(line);
	fclose(f);
}

/* p's executable, if it is a Go program with crypto/tls. */
static void pp_attach_exe(struct h2u *u, struct pproc *p, const struct stat *st, bool *capped)
{
	struct target *t = target_find(u, st->st_dev, st->st_ino);
	struct bpf_link *l[2 + GO_MAX_RETS];
	char exe[64];
	int n;

	if (!t)
		t = inspect_exe(u, p->pid, st);
	if (!t || t->kind != T_GO || t->note[0])
		return;
	if (u->pp_links + (size_t)go_nlinks(t) > H2U_MAX_LINKS) {
		*capped = true;
		return;
	}
	snprintf(exe, sizeof(exe), "/proc/%d/exe", p->pid);
	n = go_attach(u, t, p->pid, exe, l);
	if (!n) {
		pp_warn(u, t->name, p->pid);
		return;
	}
	for (int i = 0; i < n; i++) {
		if (pp_keep_link(u, p, l[i])) {
			pp_warn(u, t->name, p->pid);
			while (i < n)
				bpf_link__destroy(l[i++]);
			break;
		}
	}
	p->go = true;
}

static int attach_kernel_side(struct h2u *u, char *why, size_t whylen);

static void detach_kernel_side(struct h2u *u)
{
	for (int i = 0; i < u->nkernel_links; i++)
		bpf_link__destroy(u->kernel_links[i]);
	u->nkernel_links = 0;
	u->nbind = 0;
}

/* The socket binding runs on every send and receive of the node: attached only
 * while some process holds probes. */
static void kernel_side_as_needed(struct h2u *u)
{
	char why[256];

	if (u->pp_links && !u->nkernel_links) {
		if (attach_kernel_side(u, why, sizeof(why))) {
			detach_kernel_side(u);
			cs_warn("HTTP/2 inside TLS: %s", why);
		}
	} else if (!u->pp_links && u->nkernel_links) {
		detach_kernel_side(u);
	}
}

static int int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

void h2u_sync(struct h2u *u, const int *pids, size_t n)
{
	bool full = ++u->syncs % FULL_RESCAN_EVERY == 0;
	int budget = PP_ATTACH_PER_SYNC, *want = NULL;
	uint64_t until = cs_mono_ns() + PP_ATTACH_NS;
	size_t nw = 0, j;

	if (!u || !u->per_proc)
		return;
	if (n && !(want = malloc(n * sizeof(*want))))
		return;
	if (n)
		memcpy(want, pids, n * sizeof(*want));
	qsort(want, n, sizeof(*want), int_cmp);
	for (size_t i = 0; i < n; i++)
		if (!nw || want[nw - 1] != want[i])
			want[nw++] = want[i];
	for (size_t i = 0; i < u->npp; i++)
		u->pp[i].keep = false;
	u->over_cap = 0;
	for (size_t i = 0; i < nw; i++) {
		char exe[64];
		struct stat st;
		struct pproc *p;
		uint64_t start;
		bool capped = false;

		if (want[i] == u->self)
			continue;
		snprintf(exe, sizeof(exe), "/proc/%d/exe", want[i]);
		if (stat(exe, &st))
			continue;  /* a kernel thread, or gone */
		start = proc_start(want[i]);
		p = pp_find(u, want[i]);
		if (p && (p->start != start || p->dev != st.st_dev || p->ino != st.st_ino)) {
			/* Another process under the same pid, or another program after an
			 * exec: probed again from scratch. */
			pp_undo(u, p, 0);
			p->nfiles = 0;
			p->go = false;
			p->start = start;
			p->dev = st.st_dev;
			p->ino = st.st_ino;
			pp_attach_exe(u, p, &st, &capped);
			pp_scan_maps(u, p, &capped);
		} else if (p) {
			/* A library dlopen()ed since; or room under the cap now. */
			if (p->capped && !p->go)
				pp_attach_exe(u, p, &st, &capped);
			if (full || p->capped)
				pp_scan_maps(u, p, &capped);
		} else if (budget > 0 && cs_mono_ns() < until) {
			struct pproc np = { .pid = want[i], .start = start, .dev = st.st_dev,
					    .ino = st.st_ino };
			size_t at;

			if (u->npp == u->cappp) {
				size_t cap = u->cappp ? u->cappp * 2 : 64;
				struct pproc *nn = realloc(u->pp, cap * sizeof(*nn));

				if (!nn)
					break;
				u->pp = nn;
				u->cappp = cap;
			}
			for (at = u->npp; at > 0 && u->pp[at - 1].pid > np.pid; at--)
				;
			memmove(&u->pp[at + 1], &u->pp[at], (u->npp - at) * sizeof(*u->pp));
			u->pp[at] = np;
			u->npp++;
			p = &u->pp[at];
			budget--;
			pp_attach_exe(u, p, &st, &capped);
			pp_scan_maps(u, p, &capped);
		}
		if (p) {
			p->keep = true;
			p->capped = capped;
		}
		u->over_cap += capped;
	}
	free(want);
	/* Processes that exited, or are not named any more: their probes go. */
	for (j = 0, nw = 0; j < u->npp; j++) {
		if (!u->pp[j].keep) {
			pp_undo(u, &u->pp[j], 0);
			free(u->pp[j].l);
			continue;
		}
		u->pp[nw++] = u->pp[j];
	}
	u->npp = nw;
	kernel_side_as_needed(u);
}

void h2u_probe_counts(struct h2u *u, unsigned *procs, unsigned *links, unsigned *over_cap)
{
	unsigned n = 0;

	for (size_t i = 0; u && i < u->npp; i++)
		n += u->pp[i].nl > 0;
	*procs = n;
	*links = u ? (unsigned)u->pp_links : 0;
	*over_cap = u ? u->over_cap : 0;
}

/* ---- the interface -------------------------------------------------------------------- */

/* ---- loading ------------------------------------------------------------------------------ */

#define SYS_BIND_PROGS 8

static const struct progfb_role roles[] = {
	{ "h2u_ssl_write", true, "", "" },
	{ "h2u_ssl_write_ex", true, "", "" },
	{ "h2u_ssl_read", true, "", "" },
	{ "h2u_ssl_read_ex", true, "", "" },
	{ "h2u_ssl_ret", true, "", "" },
	{ "h2u_ssl_free", false, "TCP close ends the connection's walk",
	  "an SSL object freed and reused before its socket closes may mix two connections" },
	{ "h2u_go_write", false, "", "HTTP/2 in Go's crypto/tls" },
	{ "h2u_go_read", false, "Go's writes alone",
	  "what a Go process reads: a client's view of the server's GOAWAY and SETTINGS" },
	{ "h2u_go_read_ret", false, "Go's writes alone",
	  "what a Go process reads: a client's view of the server's GOAWAY and SETTINGS" },
	{ "h2u_close", false, "SSL_free ends OpenSSL connections",
	  "final totals of Go connections at TCP close" },
	{ "h2u_send", false, "syscall tracepoints (write, writev, sendto, sendmsg) bind the socket",
	  "" },
	{ "h2u_recv", false, "syscall tracepoints (read, readv, recvfrom, recvmsg) bind the socket",
	  "" },
	{ NULL, false, NULL, NULL },
};

static struct bpf_program **sys_progs(struct h2u_bpf *s, struct bpf_program **p)
{
	p[0] = s->progs.h2u_sys_write;
	p[1] = s->progs.h2u_sys_writev;
	p[2] = s->progs.h2u_sys_sendto;
	p[3] = s->progs.h2u_sys_sendmsg;
	p[4] = s->progs.h2u_sys_read;
	p[5] = s->progs.h2u_sys_readv;
	p[6] = s->progs.h2u_sys_recvfrom;
	p[7] = s->progs.h2u_sys_recvmsg;
	return p;
}

/*
 * Load with the programs this kernel can run. The socket binding takes the
 * sock_send_length/sock_recv_length tracepoints where the kernel has them (a
 * call per socket I/O), else the syscall tracepoints (a call per read and write
 * of every process: loaded only then).
 */
static int load(struct h2u *u, int sk_info_fd, bool lean, char *why, size_t whylen)
{
	int err = 0;

	progfb_reset("h2u");
	for (int attempt = 0; attempt < 4; attempt++) {
		struct bpf_program *sp[SYS_BIND_PROGS];
		bool kernel_tp;

		u->skel = h2u_bpf__open();
		if (!u->skel) {
			snprintf(why, whylen, "open BPF object: %s", strerror(errno));
			return -1;
		}
		progfb_prune(u->skel->obj, "h2u", roles);
		kernel_tp = bpf_program__autoload(u->skel->progs.h2u_send) &&
			    bpf_program__autoload(u->skel->progs.h2u_recv);
		if (kernel_tp) {
			bpf_program__set_autoload(u->skel->progs.h2u_send, true);
			bpf_program__set_autoload(u->skel->progs.h2u_recv, true);
		} else {
			/* One of the pair is off: both go, the syscalls bind. */
			struct bpf_program *pair[2] = { u->skel->progs.h2u_send,
							 u->skel->progs.h2u_recv };

			for (int i = 0; i < 2; i++) {
				if (!bpf_program__autoload(pair[i]))
					continue;
				bpf_program__set_autoload(pair[i], false);
				progfb_record("h2u", bpf_program__name(pair[i]), roles,
					      "its pair is off: both bind, or neither");
			}
		}
		sys_progs(u->skel, sp);
		/* progfb_prune already switched off the syscalls this kernel lacks. */
		if (kernel_tp)
			for (int i = 0; i < SYS_BIND_PROGS; i++)
				bpf_program__set_autoload(sp[i], false);
		u->sys_bind = !kernel_tp;
		/* Bound sockets marked in the lifecycle programs' storage: their
		 * closes cross (h2u_open). */
		if (sk_info_fd >= 0 && kernel_tp &&
		    !bpf_map__reuse_fd(u->skel->maps.conn_sk_info, sk_info_fd)) {
			u->skel->rodata->hold_close = true;
			u->skel->rodata->lean = lean;
		}
		err = h2u_bpf__load(u->skel);
		if (!err)
			return 0;
		snprintf(why, whylen, "uprobe programs did not load: %s (%s)", strerror(-err),
			 loader_last_libbpf_msg());
		h2u_bpf__destroy(u->skel);
		u->skel = NULL;
		if (!progfb_blame("h2u", roles, err))
			return -1;
	}
	return -1;
}

static int attach_kernel_side(struct h2u *u, char *why, size_t whylen)
{
	struct bpf_program *p[SYS_BIND_PROGS + 3];
	int n = 0;

	if (u->sys_bind) {
		sys_progs(u->skel, p);
		n = SYS_BIND_PROGS;
	} else {
		p[n++] = u->skel->progs.h2u_send;
		p[n++] = u->skel->progs.h2u_recv;
	}
	p[n++] = u->skel->progs.h2u_close;
	for (int i = 0; i < n; i++) {
		struct bpf_link *l;

		if (!bpf_program__autoload(p[i]))
			continue;
		l = bpf_program__attach(p[i]);
		if (!l) {
			snprintf(why, whylen, "%s attach failed: %s (%s)",
				 bpf_program__section_name(p[i]), strerror(errno),
				 loader_last_libbpf_msg());
			return -1;
		}
		u->kernel_links[u->nkernel_links++] = l;
		u->nbind += p[i] != u->skel->progs.h2u_close;
	}
	if (!u->nbind) {
		snprintf(why, whylen, "no hook binds a TLS call to its socket on this kernel "
			 "(neither sock_send_length/sock_recv_length nor syscall tracepoints)");
		return -1;
	}
	return 0;
}

/* Room for the per-process links: each is a file descriptor. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 1024 + H2U_MAX_LINKS) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 1024 + H2U_MAX_LINKS
				      ? 1024 + H2U_MAX_LINKS : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

bool h2u_kernel_binds(void)
{
	return libbpf_find_vmlinux_btf_id("sock_send_length", BPF_TRACE_RAW_TP) > 0 &&
	       libbpf_find_vmlinux_btf_id("sock_recv_length", BPF_TRACE_RAW_TP) > 0;
}

bool h2u_holds_closes(const struct h2u *u)
{
	return u && u->skel && u->skel->rodata->hold_close;
}

struct h2u *h2u_open(bool per_process, int sk_info_fd, bool lean, char *why, size_t whylen)
{
	struct h2u *u;
	struct stat ns;

	if (elf_version(EV_CURRENT) == EV_NONE) {
		snprintf(why, whylen, "libelf: %s", elf_errmsg(-1));
		return NULL;
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	u->self = getpid();
	if (!stat("/proc/self/ns/mnt", &ns))
		u->mntns = ns.st_ino;
	if (load(u, sk_info_fd, lean, why, whylen))
		goto fail;
	if (attach_kernel_side(u, why, whylen))
		goto fail;
	u->per_proc = per_process;
	if (per_process) {
		/* Attached above to know it can be; again with the first probe. */
		detach_kernel_side(u);
		raise_nofile();
		u->reaper = reaper_start();
	} else {
		attach_system_libssl(u);
		scan_procs(u, true);
	}
	u->last_gc_ns = cs_mono_ns();
	return u;
fail:
	h2u_close(u);
	return NULL;
}

int h2u_add_ring(struct h2u *u, struct ring_buffer *rb, ring_buffer_sample_fn fn, void *ctx)
{
	return ring_buffer__add(rb, bpf_map__fd(u->skel->maps.h2u_events), fn, ctx);
}

void h2u_rescan(struct h2u *u)
{
	uint64_t now = cs_mono_ns();

	u->scans++;
	if (!u->per_proc)
		scan_procs(u, u->scans % FULL_RESCAN_EVERY == 0);
	if (now - u->last_gc_ns >= GC_EVERY_NS) {
		gc(u);
		u->last_gc_ns = now;
	}
}

uint64_t h2u_counter(struct h2u *u, int idx)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t sum = 0, *vals;
	uint32_t key = (uint32_t)idx;

	if (!u || !u->skel || ncpu <= 0 || !(vals = calloc(ncpu, sizeof(*vals))))
		return 0;
	if (!bpf_map_lookup_elem(bpf_map__fd(u->skel->maps.h2u_counters), &key, vals))
		for (int i = 0; i < ncpu; i++)
			sum += vals[i];
	free(vals);
	return sum;
}

/* "N things (a, b, c +2 more)" for the probed targets of one kind. */
static size_t describe_kind(struct h2u *u, enum target_kind kind, const char *one,
			    const char *many, char *buf, size_t len)
{
	size_t pos = 0, shown = 0, count = 0;

	for (size_t i = 0; i < u->nt; i++)
		count += u->t[i].kind == kind && u->t[i].probed;
	pos += snprintf(buf + pos, len - pos, "%zu %s", count, count == 1 ? one : many);
	for (size_t i = 0; i < u->nt && pos < len; i++) {
		if (u->t[i].kind != kind || !u->t[i].probed)
			continue;
		if (shown == 3) {
			pos += snprintf(buf + pos, len - pos, " +%zu more", count - shown);
			break;
		}
		pos += snprintf(buf + pos, len - pos, "%s%s", shown ? ", " : " (", u->t[i].name);
		shown++;
	}
	if (shown && pos < len)
		pos += snprintf(buf + pos, len - pos, ")");
	return pos < len ? pos : len;
}

void h2u_describe(struct h2u *u, char *buf, size_t len)
{
	size_t pos, skipped = 0;
	const struct target *first = NULL;

	if (!len)
		return;
	if (!u) {
		snprintf(buf, len, "not loaded");
		return;
	}
	if (u->per_proc) {
		unsigned procs, links, over;

		h2u_probe_counts(u, &procs, &links, &over);
		snprintf(buf, len, "%s; per-process probes (OpenSSL's libssl.so.3 and Go's "
			 "crypto/tls) on %u processes, %u links of at most %d%s",
			 u->sys_bind ? "sockets bound at write/read syscalls"
				     : "sockets bound at sock_send_length/sock_recv_length",
			 procs, links, H2U_MAX_LINKS, over ? ", some processes left out" : "");
		return;
	}
	pos = snprintf(buf, len, "%s; OpenSSL probes on ",
		       u->sys_bind ? "sockets bound at write/read syscalls (no sock_send_length/"
				     "sock_recv_length tracepoints)"
				   : "sockets bound at sock_send_length/sock_recv_length");
	if (pos < len)
		pos += describe_kind(u, T_SSL, "library", "libraries", buf + pos, len - pos);
	if (pos < len)
		pos += snprintf(buf + pos, len - pos, ", Go probes on ");
	if (pos < len)
		pos += describe_kind(u, T_GO, "binary", "binaries", buf + pos, len - pos);
	for (size_t i = 0; i < u->nt; i++) {
		if (u->t[i].kind != T_OTHER && !u->t[i].probed && u->t[i].note[0]) {
			skipped++;
			if (!first)
				first = &u->t[i];
		}
	}
	if (first && pos < len)
		snprintf(buf + pos, len - pos, "; not probed: %zu (%s: %s%s)", skipped, first->name,
			 first->note, skipped > 1 ? ", ..." : "");
}

void h2u_close(struct h2u *u)
{
	if (!u)
		return;
	links_undo(u, 0);
	for (size_t i = 0; i < u->npp; i++) {
		pp_undo(u, &u->pp[i], 0);
		free(u->pp[i].l);
	}
	free(u->pp);
	reaper_stop(u->reaper);
	detach_kernel_side(u);
	h2u_bpf__destroy(u->skel);
	free(u->links);
	free(u->t);
	free(u->seen);
	free(u);
}
