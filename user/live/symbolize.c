// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * User stacks from BPF (bpf_get_stackid, BPF_F_USER_STACK) to text.
 *
 * An address is placed through /proc/<pid>/maps: its mapping names the file and the
 * file offset (addr - start + pgoff), the file's PT_LOAD program headers turn that
 * offset into the ELF virtual address its symbols use (PIE, non-PIE and shared
 * libraries alike). The file is read through /proc/<pid>/root, so a process in a
 * container is symbolized from its own files; a deleted or memfd file through
 * /proc/<pid>/map_files.
 *
 * Symbols: .symtab if the file has function symbols there, else .dynsym plus, for a
 * stripped Go binary, the runtime's own table (.gopclntab, which -ldflags=-s keeps).
 * Functions (STT_FUNC, STT_GNU_IFUNC) are sorted by address; at one address the
 * preferred alias is the sized, non-local one with the fewest leading underscores
 * (libc's "connect" over "__connect"), then global over weak, then the shortest and
 * alphabetically first name. An address takes the sized symbol that covers it, or
 * else the nearest symbol below it if that one has no size.
 *
 * Frame-pointer unwinding misses the caller of a function that sets up no frame
 * (glibc's syscall wrappers), so the words at the stack pointer may be given
 * (sp_words): the one frame 0's function keeps its return address in (after what its
 * prologue pushed and subtracted) is taken as that caller when the file's bytes
 * before it end in a call (x86-64 only).
 *
 * Each file is parsed once and cached by (st_dev, st_ino), checked against its size
 * and mtime; at most CACHE_FILES files are kept, the least recently used goes first.
 *
 * Files are hostile input: everything read from them is checked against the bounds
 * of what was read. Nothing here prints: what cannot be named is shown as an address.
 */
#include "symbolize.h"
#include "gopclntab.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CACHE_FILES 64
#define MAX_SEGS 32               /* PT_LOAD headers kept per file */
#define MAX_SYMS (1u << 22)       /* functions kept per file */
#define MAX_NAMES (64u << 20)     /* bytes of names kept per file */
#define BACK_SCAN 32              /* symbols looked at below an address for one covering it */
#define CALL_MAX 7                /* longest call instruction recognized */
#define PROLOGUE_SCAN 512         /* bytes of frame 0's function searched for sub rsp */

/* One function: [addr, addr + size) in the file's virtual addresses. */
struct fsym {
	uint64_t addr;
	uint64_t size;
	uint32_t name;   /* offset into symfile.names */
	uint8_t bind;    /* STB_* */
};

/* One PT_LOAD: file bytes [off, off + filesz) sit at vaddr. */
struct seg {
	uint64_t off, filesz, vaddr;
	bool x;
};

struct symfile {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	uint64_t used;        /* sym_cache.clock at the last use */
	uint16_t machine;     /* e_machine; EM_NONE if not ELF */
	struct seg segs[MAX_SEGS];
	size_t nsegs;
	struct fsym *syms;
	size_t nsyms, capsyms;
	char *names;
	size_t nnames, capnames;
};

struct sym_cache {
	struct symfile *f[CACHE_FILES];
	size_t n;
	uint64_t clock;
};

/* One line of /proc/<pid>/maps that can hold code or names a file. */
struct map {
	uint64_t start, end, pgoff;
	bool x, deleted;
	char *path;     /* NULL if anonymous; " (deleted)" stripped */
	int state;      /* 0: file not looked at yet, 1: st is valid, -1: no readable file */
	struct stat st;
};

struct maps {
	struct map *m;
	size_t n, cap;
};

/* ---- symbol tables ------------------------------------------------------------------ */

static void symfile_free(struct symfile *sf)
{
	if (!sf)
		return;
	free(sf->syms);
	free(sf->names);
	free(sf);
}

static void add_sym(struct symfile *sf, uint64_t addr, uint64_t size, uint8_t bind,
		    const char *name, size_t len)
{
	if (!len || sf->nsyms >= MAX_SYMS)
		return;
	if (len > SYM_LEN - 1)
		len = SYM_LEN - 1;   /* no frame shows more */
	if (sf->nnames + len + 1 > MAX_NAMES)
		return;
	if (sf->nsyms == sf->capsyms) {
		size_t cap = sf->capsyms ? sf->capsyms * 2 : 256;
		struct fsym *s = realloc(sf->syms, cap * sizeof(*s));

		if (!s)
			return;
		sf->syms = s;
		sf->capsyms = cap;
	}
	if (sf->nnames + len + 1 > sf->capnames) {
		size_t cap = sf->capnames ? sf->capnames : 4096;
		char *p;

		while (cap < sf->nnames + len + 1)
			cap *= 2;
		p = realloc(sf->names, cap);
		if (!p)
			return;
		sf->names = p;
		sf->capnames = cap;
	}
	memcpy(sf->names + sf->nnames, name, len);
	sf->names[sf->nnames + len] = 0;
	sf->syms[sf->nsyms++] = (struct fsym){
		.addr = addr, .size = size, .name = (uint32_t)sf->nnames, .bind = bind,
	};
	sf->nnames += len + 1;
}

/* The functions of a SHT_SYMTAB or SHT_DYNSYM section. */
static void add_elf_syms(struct symfile *sf, Elf *e, Elf_Scn *scn)
{
	Elf_Data *d = elf_getdata(scn, NULL);
	size_t esz = gelf_fsize(e, ELF_T_SYM, 1, EV_CURRENT), nsym;
	GElf_Shdr sh;

	if (!d || !esz || !gelf_getshdr(scn, &sh))
		return;
	nsym = d->d_size / esz;
	for (size_t i = 0; i < nsym && i <= INT32_MAX; i++) {
		GElf_Sym sym;
		const char *name;
		int type;

		if (!gelf_getsym(d, (int)i, &sym))
			break;
		type = GELF_ST_TYPE(sym.st_info);
		if ((type != STT_FUNC && type != STT_GNU_IFUNC) || sym.st_shndx == SHN_UNDEF)
			continue;
		name = elf_strptr(e, sh.sh_link, sym.st_name);
		if (name)
			add_sym(sf, sym.st_value, sym.st_size, GELF_ST_BIND(sym.st_info), name,
				strlen(name));
	}
}

/*
 * The functions in Go's .gopclntab (layout in gopclntab.h), as sized symbols: each
 * runs from its functab entry to the next. text_addr (the .text section) stands in
 * for a textStart of 0.
 */
static void add_pcln_syms(struct symfile *sf, const unsigned char *p, size_t n, uint64_t text_addr)
{
	struct pcln_hdr hd;
	uint64_t nfunc, names, pcln, text, ent;
	unsigned w;
	bool go118;

	if (pcln_parse(p, n, &hd))
		return;
	go118 = hd.go118;
	w = hd.ptrsize;
	nfunc = hd.nfunc;
	names = hd.names;
	pcln = hd.pcln;
	ent = hd.entsize;
	text = hd.text ? hd.text : text_addr;
	for (uint64_t i = 0; i < nfunc; i++) {
		const unsigned char *slot = p + pcln + i * ent;
		uint64_t entry, next, fo, nameat, room;
		const unsigned char *nul;
		int64_t nameoff;

		if (go118) {
			entry = text + pcln_le(slot, 4);
			next = text + pcln_le(slot + ent, 4);
			fo = pcln_le(slot + 4, 4);
		} else {
			entry = pcln_le(slot, w);
			next = pcln_le(slot + ent, w);
			fo = pcln_le(slot + w, w);
		}
		if (next <= entry || fo >= n - pcln)
			continue;
		fo += pcln;
		if (n - fo < (go118 ? 8 : (uint64_t)w + 4))
			continue;
		nameoff = (int32_t)(uint32_t)pcln_le(p + fo + (go118 ? 4 : w), 4);
		if (nameoff < 0 && (uint64_t)-nameoff > names)
			continue;
		nameat = names + (uint64_t)nameoff;
		if (nameat >= n)
			continue;
		room = n - nameat < 1024 ? n - nameat : 1024;
		nul = memchr(p + nameat, 0, room);
		if (nul)
			add_sym(sf, entry, next - entry, STB_GLOBAL, (const char *)p + nameat,
				(size_t)(nul - (p + nameat)));
	}
}

static int lead_underscores(const char *s)
{
	int k = 0;

	while (s[k] == '_')
		k++;
	return k;
}

/* By address; at one address the preferred alias first (see the top of the file). */
static int sym_cmp(const void *a, const void *b, void *arg)
{
	const struct fsym *x = a, *y = b;
	const char *names = arg, *nx = names + x->name, *ny = names + y->name;
	int ux, uy, c;
	size_t lx, ly;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (!x->size != !y->size)
		return x->size ? -1 : 1;
	if ((x->bind == STB_LOCAL) != (y->bind == STB_LOCAL))
		return x->bind == STB_LOCAL ? 1 : -1;
	ux = lead_underscores(nx);
	uy = lead_underscores(ny);
	if (ux != uy)
		return ux < uy ? -1 : 1;
	if ((x->bind == STB_GLOBAL) != (y->bind == STB_GLOBAL))
		return x->bind == STB_GLOBAL ? -1 : 1;
	lx = strlen(nx);
	ly = strlen(ny);
	if (lx != ly)
		return lx < ly ? -1 : 1;
	c = strcmp(nx, ny);
	if (c)
		return c;
	if (x->size != y->size)
		return x->size > y->size ? -1 : 1;
	return 0;
}

/* Sort, and keep one symbol per address. */
static void syms_finish(struct symfile *sf)
{
	size_t k = 0;

	if (!sf->nsyms)
		return;
	qsort_r(sf->syms, sf->nsyms, sizeof(*sf->syms), sym_cmp, sf->names);
	for (size_t i = 0; i < sf->nsyms; i++)
		if (!k || sf->syms[i].addr != sf->syms[k - 1].addr)
			sf->syms[k++] = sf->syms[i];
	sf->nsyms = k;
}

/* Read what fd holds into sf: program headers and functions. Never fails: a file that
 * is not ELF, or is damaged, gives what could be read (maybe nothing). */
static void elf_load(struct symfile *sf, int fd)
{
	Elf_Scn *scn = NULL, *symtab = NULL, *dynsym = NULL, *pcln = NULL;
	uint64_t text_addr = 0;
	size_t phnum, shstrndx;
	GElf_Ehdr eh;
	Elf *e;

	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF || !gelf_getehdr(e, &eh))
		goto out;
	sf->machine = eh.e_machine;
	if (!elf_getphdrnum(e, &phnum)) {
		for (size_t i = 0; i < phnum && i <= INT32_MAX && sf->nsegs < MAX_SEGS; i++) {
			GElf_Phdr ph;

			if (!gelf_getphdr(e, (int)i, &ph))
				break;
			if (ph.p_type != PT_LOAD || !ph.p_filesz || ph.p_offset + ph.p_filesz < ph.p_offset)
				continue;
			sf->segs[sf->nsegs++] = (struct seg){
				.off = ph.p_offset, .filesz = ph.p_filesz, .vaddr = ph.p_vaddr,
				.x = !!(ph.p_flags & PF_X),
			};
		}
	}
	if (elf_getshdrstrndx(e, &shstrndx))
		goto out;
	while ((scn = elf_nextscn(e, scn))) {
		const char *name;
		GElf_Shdr sh;
		size_t nlen;

		if (!gelf_getshdr(scn, &sh))
			continue;
		if (sh.sh_type == SHT_SYMTAB && !symtab)
			symtab = scn;
		else if (sh.sh_type == SHT_DYNSYM && !dynsym)
			dynsym = scn;
		if (!(name = elf_strptr(e, shstrndx, sh.sh_name)))
			continue;
		nlen = strlen(name);
		if (!strcmp(name, ".text"))
			text_addr = sh.sh_addr;
		else if (nlen >= 9 && !strcmp(name + nlen - 9, "gopclntab") && sh.sh_type == SHT_PROGBITS && !pcln)
			pcln = scn;   /* .gopclntab; .data.rel.ro.gopclntab in PIE builds */
	}
	if (symtab)
		add_elf_syms(sf, e, symtab);
	if (!sf->nsyms) {
		if (dynsym)
			add_elf_syms(sf, e, dynsym);
		if (pcln) {
			Elf_Data *d = elf_getdata(pcln, NULL);

			if (d && d->d_buf)
				add_pcln_syms(sf, d->d_buf, d->d_size, text_addr);
		}
	}
	syms_finish(sf);
out:
	if (e)
		elf_end(e);
}

/* The segment holding file offset foff (an executable one first if want_x); its
 * virtual address in *va. */
static const struct seg *seg_of_off(const struct symfile *sf, uint64_t foff, bool want_x,
				    uint64_t *va)
{
	const struct seg *any = NULL;

	for (size_t i = 0; i < sf->nsegs; i++) {
		const struct seg *s = &sf->segs[i];

		if (foff < s->off || foff - s->off >= s->filesz)
			continue;
		if (s->x == want_x) {
			any = s;
			break;
		}
		if (!any)
			any = s;
	}
	if (any)
		*va = foff - any->off + any->vaddr;
	return any;
}

/* The function at virtual address v: the sized one covering it, else the nearest below
 * if that one is unsized and (given seg) starts in the same segment. */
static const struct fsym *sym_find(const struct symfile *sf, uint64_t v, const struct seg *seg)
{
	size_t lo = 0, hi = sf->nsyms, idx;
	const struct fsym *s;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (sf->syms[mid].addr <= v)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return NULL;
	idx = lo - 1;
	for (size_t j = idx, k = 0; k < BACK_SCAN; j--, k++) {
		s = &sf->syms[j];
		if (s->size && v - s->addr < s->size)
			return s;
		if (!j)
			break;
	}
	s = &sf->syms[idx];
	if (s->size || !seg || s->addr < seg->vaddr)
		return NULL;
	return s;
}

/* ---- the cache ---------------------------------------------------------------------- */

struct sym_cache *sym_cache_new(void)
{
	if (elf_version(EV_CURRENT) == EV_NONE)
		return NULL;
	return calloc(1, sizeof(struct sym_cache));
}

void sym_cache_free(struct sym_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		symfile_free(c->f[i]);
	free(c);
}

static bool same_file(const struct symfile *sf, const struct stat *st)
{
	return sf->dev == st->st_dev && sf->ino == st->st_ino;
}

static bool same_version(const struct symfile *sf, const struct stat *st)
{
	return sf->size == st->st_size && sf->mtime.tv_sec == st->st_mtim.tv_sec &&
	       sf->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static struct symfile *cache_find(struct sym_cache *c, const struct stat *st)
{
	for (size_t i = 0; i < c->n; i++)
		if (same_file(c->f[i], st) && same_version(c->f[i], st)) {
			c->f[i]->used = ++c->clock;
			return c->f[i];
		}
	return NULL;
}

/* Parse the file open on fd (described by st) into a cache slot: the slot of an older
 * version of the same file, a free one, or the least recently used one. */
static struct symfile *cache_load(struct sym_cache *c, const struct stat *st, int fd)
{
	struct symfile *sf = calloc(1, sizeof(*sf));
	size_t slot = c->n;

	if (!sf)
		return NULL;
	sf->dev = st->st_dev;
	sf->ino = st->st_ino;
	sf->size = st->st_size;
	sf->mtime = st->st_mtim;
	elf_load(sf, fd);
	for (size_t i = 0; i < c->n; i++)
		if (same_file(c->f[i], st)) {
			slot = i;
			break;
		}
	if (slot == c->n && c->n == CACHE_FILES) {
		slot = 0;
		for (size_t i = 1; i < c->n; i++)
			if (c->f[i]->used < c->f[slot]->used)
				slot = i;
	}
	if (slot == c->n)
		c->n++;
	else
		symfile_free(c->f[slot]);
	c->f[slot] = sf;
	sf->used = ++c->clock;
	return sf;
}

/* ---- the process's mappings --------------------------------------------------------- */

static void maps_free(struct maps *mm)
{
	for (size_t i = 0; i < mm->n; i++)
		free(mm->m[i].path);
	free(mm->m);
}

static int map_cmp(const void *a, const void *b)
{
	const struct map *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* "start-end perms offset dev inode   path": mappings that are executable or name a
 * file. -1 if the file cannot be read or holds none (the process is gone). */
static int maps_read(uint32_t pid, struct maps *mm)
{
	static const char deleted[] = " (deleted)";
	const size_t dlen = sizeof(deleted) - 1;
	char fn[64], perms[8], *line = NULL;
	size_t linecap = 0;
	bool sorted = true;
	ssize_t len;
	FILE *f;

	memset(mm, 0, sizeof(*mm));
	snprintf(fn, sizeof(fn), "/proc/%" PRIu32 "/maps", pid);
	f = fopen(fn, "re");
	if (!f)
		return -1;
	while ((len = getline(&line, &linecap, f)) > 0) {
		uint64_t start, end, pgoff;
		char *path;
		int pos = -1;
		size_t plen;
		struct map *m;

		if (line[len - 1] == '\n')
			line[--len] = 0;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %*s %*s%n",
			   &start, &end, perms, &pgoff, &pos) != 4 || pos < 0 || end <= start ||
		    strlen(perms) < 3)
			continue;
		path = line + pos;
		while (*path == ' ' || *path == '\t')
			path++;
		plen = strlen(path);
		if (!plen && perms[2] != 'x')
			continue;
		if (mm->n == mm->cap) {
			size_t cap = mm->cap ? mm->cap * 2 : 64;
			struct map *p = realloc(mm->m, cap * sizeof(*p));

			if (!p)
				break;
			mm->m = p;
			mm->cap = cap;
		}
		m = &mm->m[mm->n];
		memset(m, 0, sizeof(*m));
		m->start = start;
		m->end = end;
		m->pgoff = pgoff;
		m->x = perms[2] == 'x';
		if (plen > dlen && !strcmp(path + plen - dlen, deleted)) {
			m->deleted = true;
			path[plen - dlen] = 0;
		}
		if (*path && !(m->path = strdup(path)))
			break;
		if (mm->n && start < mm->m[mm->n - 1].start)
			sorted = false;
		mm->n++;
	}
	free(line);
	fclose(f);
	if (!mm->n) {
		maps_free(mm);
		return -1;
	}
	if (!sorted)
		qsort(mm->m, mm->n, sizeof(*mm->m), map_cmp);
	return 0;
}

static struct map *map_find(struct maps *mm, uint64_t addr)
{
	size_t lo = 0, hi = mm->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (mm->m[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || addr >= mm->m[lo - 1].end)
		return NULL;
	return &mm->m[lo - 1];
}

/* path as process pid sees it, resolved inside its root (absolute symlinks included)
 * where openat2 is available. */
static int open_in_root(uint32_t pid, const char *path)
{
	const int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
	char fn[PATH_MAX + 64];
	int dfd, fd;

	snprintf(fn, sizeof(fn), "/proc/%" PRIu32 "/root", pid);
	dfd = open(fn, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
#ifdef SYS_openat2
	{
		struct open_how how = {
			.flags = flags, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
		};

		fd = (int)syscall(SYS_openat2, dfd, path, &how, sizeof(how));
		if (fd >= 0 || (errno != ENOSYS && errno != EPERM && errno != EINVAL && errno != E2BIG)) {
			close(dfd);
			return fd;
		}
	}
#endif
	close(dfd);
	if (snprintf(fn, sizeof(fn), "/proc/%" PRIu32 "/root%s%s", pid, path[0] == '/' ? "" : "/",
		     path) >= (int)sizeof(fn))
		return -1;
	return open(fn, flags);
}

/* The mapping itself, whatever its name says (deleted files, memfds). */
static int open_map_files(uint32_t pid, const struct map *m)
{
	char fn[96];

	snprintf(fn, sizeof(fn), "/proc/%" PRIu32 "/map_files/%" PRIx64 "-%" PRIx64, pid,
		 m->start, m->end);
	return open(fn, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
}

static int map_open(uint32_t pid, const struct map *m)
{
	int fd;

	if (!m->path || m->path[0] == '[')
		return -1;
	/* A deleted file's path may now name another one: the mapping first then. */
	fd = m->deleted ? open_map_files(pid, m) : open_in_root(pid, m->path);
	if (fd < 0)
		fd = m->deleted ? open_in_root(pid, m->path) : open_map_files(pid, m);
	return fd;
}

/* The parsed file behind mapping m, or NULL. */
static struct symfile *map_file(struct sym_cache *c, uint32_t pid, struct map *m)
{
	struct symfile *sf;
	int fd;

	if (m->state < 0)
		return NULL;
	if (m->state > 0 && (sf = cache_find(c, &m->st)))
		return sf;
	fd = map_open(pid, m);
	if (fd < 0 || fstat(fd, &m->st) || !S_ISREG(m->st.st_mode)) {
		if (fd >= 0)
			close(fd);
		m->state = -1;
		return NULL;
	}
	m->state = 1;
	sf = cache_find(c, &m->st);
	if (!sf)
		sf = cache_load(c, &m->st, fd);
	close(fd);
	return sf;
}

/* ---- frames ------------------------------------------------------------------------- */

/* Control characters (from file names or symbol names) become '?'. */
static void sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

/* "name+0xoff tail", the name cut so that the tail fits. */
static void fmt_named(char *out, size_t len, const char *name, uint64_t off, const char *tail)
{
	char t[SYM_LEN];
	int tl = snprintf(t, sizeof(t), "+0x%" PRIx64 "%s", off, tail);
	size_t room = tl >= 0 && (size_t)tl + 1 < len ? len - 1 - (size_t)tl : 0;

	snprintf(out, len, "%.*s%s", (int)strnlen(name, room), name, t);
}

/*
 * One frame. A return address (ret) is looked up at ip - 1, the call it returns from,
 * and shown with its offset to ip.
 */
static void frame_text(struct sym_cache *c, uint32_t pid, struct maps *mm, uint64_t ip, bool ret,
		       char *out)
{
	uint64_t look = ret ? ip - 1 : ip, va;
	struct map *m = map_find(mm, look);
	const struct symfile *sf;
	const struct seg *seg;
	const struct fsym *s;
	const char *module;
	char tail[SYM_LEN];

	if (!m || !m->path || (m->path[0] == '[' && strcmp(m->path, "[vdso]"))) {
		snprintf(out, SYM_LEN, "0x%" PRIx64 " (?)", ip);
		return;
	}
	module = strrchr(m->path, '/');
	module = module && module[1] ? module + 1 : m->path;
	sf = map_file(c, pid, m);
	if (sf && (seg = seg_of_off(sf, look - m->start + m->pgoff, m->x, &va)) &&
	    (s = sym_find(sf, va, seg))) {
		snprintf(tail, sizeof(tail), " (%s)", module);
		fmt_named(out, SYM_LEN, sf->names + s->name, va + ret - s->addr, tail);
	} else {
		/* room for "0x", 16 digits and the parentheses */
		snprintf(out, SYM_LEN, "0x%" PRIx64 " (%.*s)", ip, SYM_LEN - 22, module);
	}
	sanitize(out);
}

/* Length of a ModRM operand (ModRM, SIB, displacement) starting at p, avail bytes known. */
static int modrm_len(const unsigned char *p, int avail)
{
	int mod = p[0] >> 6, rm = p[0] & 7, len = 1;

	if (mod == 3)
		return 1;
	if (rm == 4) {
		if (avail < 2)
			return -1;
		len++;
		if (mod == 0 && (p[1] & 7) == 5)
			len += 4;
	} else if (mod == 0 && rm == 5) {
		len += 4;   /* rip-relative */
	}
	if (mod == 1)
		len += 1;
	else if (mod == 2)
		len += 4;
	return len;
}

/*
 * Do the k (<= CALL_MAX) bytes b[CALL_MAX - k .. CALL_MAX) that end just before a return
 * address end in an x86-64 call: e8 rel32, or ff /2 (call through a register or memory:
 * ff d0+r, ff 15 disp32, ff 10+r, ff 50+r disp8, ff 90+r disp32, SIB forms). A REX
 * prefix before ff changes nothing here.
 */
static bool ends_in_call(const unsigned char *b, int k)
{
#define BEFORE(j) b[CALL_MAX - (j)]   /* the byte j bytes before the return address */
	if (k >= 5 && BEFORE(5) == 0xe8)
		return true;
	for (int l = 2; l <= k; l++)
		if (BEFORE(l) == 0xff && (BEFORE(l - 1) & 0x38) == 0x10 &&
		    1 + modrm_len(&BEFORE(l - 1), l - 1) == l)
			return true;
	return false;
#undef BEFORE
}

/* Is ret a return address: in an executable file mapping of an x86-64 ELF file, inside
 * an executable segment, after a call (read from the file)? */
static bool is_return_address(struct sym_cache *c, uint32_t pid, struct maps *mm, uint64_t ret)
{
	unsigned char b[CALL_MAX];
	const struct symfile *sf;
	struct map *m;
	uint64_t foff, va;
	const struct seg *seg;
	int k, fd;
	bool ok;

	if (!ret || !(m = map_find(mm, ret - 1)) || !m->x)
		return false;
	sf = map_file(c, pid, m);
	if (!sf || sf->machine != EM_X86_64)
		return false;
	foff = ret - m->start + m->pgoff;
	seg = seg_of_off(sf, foff - 1, true, &va);
	if (!seg || !seg->x)
		return false;
	k = foff - seg->off < CALL_MAX ? (int)(foff - seg->off) : CALL_MAX;
	fd = map_open(pid, m);
	if (fd < 0)
		return false;
	ok = pread(fd, b + CALL_MAX - k, (size_t)k, (off_t)(foff - (uint64_t)k)) == k &&
	     ends_in_call(b, k);
	close(fd);
	return ok;
}

/*
 * Where, above the stack pointer at ip (frame 0), its function keeps its return
 * address: the bytes its prologue pushed (push r64: 50+r, 41 50+r, right at the
 * start after an endbr64) plus a sub rsp, imm8 (48 83 ec ib) or imm32 (48 81 ec id)
 * found in its first PROLOGUE_SCAN bytes before ip. 0 when it moved nothing, or the
 * function is not known (the word at the stack pointer is then taken as the return
 * address, if a call precedes it); -1 for a prologue that makes no sense. glibc's syscall wrappers lower the stack pointer on their multi-threaded
 * path (connect: sub $0x18,%rsp; accept4: $0x28) and not on the single-threaded one.
 */
static int64_t ret_slot(struct sym_cache *c, uint32_t pid, struct maps *mm, uint64_t ip)
{
	unsigned char b[PROLOGUE_SCAN];
	struct map *m = map_find(mm, ip);
	const struct symfile *sf;
	const struct seg *seg;
	const struct fsym *s;
	int64_t off = 0;
	uint64_t va, len;
	ssize_t got, i = 0;
	int fd;

	if (!m || !(sf = map_file(c, pid, m)) || sf->machine != EM_X86_64 ||
	    !(seg = seg_of_off(sf, ip - m->start + m->pgoff, m->x, &va)) ||
	    !(s = sym_find(sf, va, seg)) || s->addr < seg->vaddr)
		return 0;
	len = va - s->addr < PROLOGUE_SCAN ? va - s->addr : PROLOGUE_SCAN;
	if (len < 1 || (fd = map_open(pid, m)) < 0)
		return 0;
	got = pread(fd, b, (size_t)len, (off_t)(s->addr - seg->vaddr + seg->off));
	close(fd);
	if (got >= 4 && b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa)
		i = 4;
	for (;;) {
		if (i < got && b[i] >= 0x50 && b[i] <= 0x57)
			i += 1;
		else if (i + 1 < got && b[i] == 0x41 && b[i + 1] >= 0x50 && b[i + 1] <= 0x57)
			i += 2;
		else
			break;
		off += 8;
	}
	for (; i + 4 <= got; i++) {
		if (b[i] != 0x48 || b[i + 2] != 0xec)
			continue;
		if (b[i + 1] == 0x83)
			return off + (int8_t)b[i + 3] > 0 ? off + (int8_t)b[i + 3] : -1;
		if (b[i + 1] == 0x81 && i + 7 <= got)
			return off + (int64_t)(uint32_t)(b[i + 3] | b[i + 4] << 8 | b[i + 5] << 16 |
							  (uint32_t)b[i + 6] << 24);
	}
	return off;
}

int sym_user_stack(struct sym_cache *c, uint32_t pid, const uint64_t *ips, int n,
		   const uint64_t *sp_words, int nwords, char (*out)[SYM_LEN], int max)
{
	struct maps mm;
	int w = 0;

	if (!c || (n > 0 && !ips) || (max > 0 && !out) || (nwords > 0 && !sp_words))
		return -1;
	if (maps_read(pid, &mm))
		return -1;
	for (int i = 0; i < n && w < max && ips[i]; i++) {
		frame_text(c, pid, &mm, ips[i], i > 0, out[w++]);
		if (!i && w < max && nwords > 0) {
			int64_t slot = ret_slot(c, pid, &mm, ips[0]);
			uint64_t ret = slot >= 0 && slot % 8 == 0 && slot / 8 < nwords ?
				sp_words[slot / 8] : 0;

			if (ret && (n < 2 || ret != ips[1]) && is_return_address(c, pid, &mm, ret))
				frame_text(c, pid, &mm, ret, true, out[w++]);
		}
	}
	maps_free(&mm);
	return w;
}

int sym_elf_load_path(struct sym_cache *c, const char *path, uint64_t vaddr, char *out, size_t len)
{
	const struct symfile *sf;
	const struct seg *seg = NULL;
	const struct fsym *s;
	struct stat st;
	int fd;

	if (out && len)
		out[0] = 0;
	if (!c || !path)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return -1;
	}
	sf = cache_find(c, &st);
	if (!sf)
		sf = cache_load(c, &st, fd);
	close(fd);
	if (!sf)
		return -1;
	for (size_t i = 0; i < sf->nsegs; i++)
		if (vaddr >= sf->segs[i].vaddr && vaddr - sf->segs[i].vaddr < sf->segs[i].filesz) {
			seg = &sf->segs[i];
			break;
		}
	if (out && len && (s = sym_find(sf, vaddr, seg))) {
		fmt_named(out, len, sf->names + s->name, vaddr - s->addr, "");
		sanitize(out);
	}
	return sf->nsyms > INT32_MAX ? INT32_MAX : (int)sf->nsyms;
}
