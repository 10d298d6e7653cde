// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * user/live/symbolize.c against this process and against small Go programs built here.
 *
 *   scripts/test.sh unit    (built against connscope's libraries)
 *
 * Own frames: a function's address and return addresses taken with
 * __builtin_return_address, named with their exact offsets; libc through dlsym; the
 * frame a frame-pointer unwinder misses (sp_ret), inserted after a call and only then;
 * addresses outside any file; a dead pid.
 * Go (needs `go` on PATH; its absence is a failure): one program built three ways
 * (stripped, unstripped, stripped PIE) prints the address of a noinline function and
 * waits; each is named through .gopclntab or .symtab; the stripped one also after its
 * file is deleted (read through /proc/<pid>/map_files, as root).
 * Files: a copy of this binary and of the Go one, replaced, rewritten in place,
 * truncated at many sizes and corrupted (the pclntab header, random bytes), loaded
 * through sym_elf_load_path: right names, or none, never a crash.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <search.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "check.h"
#include "symbolize.h"

#define NOINLINE __attribute__((noinline))

static struct sym_cache *cache;
static char out[16][SYM_LEN];
static char self_name[64];   /* basename of this executable */
static char tmpdir[64];
static int data_word = 42;
static uint64_t go_leak_va;   /* main.leakConn in the stripped, non-PIE Go binary */

/* ---- functions whose frames are looked at --------------------------------------- */

NOINLINE static uint64_t symt_callee(void)
{
	uint64_t r = (uint64_t)(uintptr_t)__builtin_return_address(0);

	__asm__ volatile("" : "+r"(r));
	return r;
}

/* Returns the address just after its call to symt_callee. */
NOINLINE static uint64_t symt_caller(void)
{
	uint64_t r = symt_callee();

	__asm__ volatile("" : "+r"(r));
	return r;
}

NOINLINE static uint64_t symt_outer(void)
{
	uint64_t r = symt_callee();

	__asm__ volatile("" : "+r"(r));
	return r;
}

static uint64_t (*volatile symt_fp)(void) = symt_callee;

/* The same through a function pointer: an ff /2 call. */
NOINLINE static uint64_t symt_indirect(void)
{
	uint64_t r = symt_fp();

	__asm__ volatile("" : "+r"(r));
	return r;
}

NOINLINE static int symt_leaf(int x)
{
	__asm__ volatile("" : "+r"(x));
	return x * 3 + 1;
}

static uint64_t ret_in_libc;

/* Called by libc's tfind: records where in tfind. */
NOINLINE static int symt_cmp(const void *a, const void *b)
{
	ret_in_libc = (uint64_t)(uintptr_t)__builtin_return_address(0);
	return *(const int *)a - *(const int *)b;
}

/*
 * A syscall wrapper the way glibc writes them: the single-threaded path reaches its
 * syscall (here a nop) with the return address at the stack pointer; the other lowers
 * the stack pointer first (sub $0x18,%rsp), so the word there is its own.
 */
__asm__(".pushsection .text\n"
	".type symt_wrapper, @function\n"
	"symt_wrapper:\n"
	"\tnop\n"
	"symt_wrapper_single:\n"
	"\tret\n"
	"\tsub $0x18, %rsp\n"
	"\tnop\n"
	"symt_wrapper_multi:\n"
	"\tadd $0x18, %rsp\n"
	"\tret\n"
	".size symt_wrapper, .-symt_wrapper\n"
	".popsection\n");
extern const char symt_wrapper[], symt_wrapper_single[], symt_wrapper_multi[];

static void free_nothing(void *p)
{
	(void)p;
}

static uint64_t addr_of(const void *fn)
{
	return (uint64_t)(uintptr_t)fn;
}

/* ---- helpers ---------------------------------------------------------------------- */

static bool eq(const char *got, const char *want, const char *what)
{
	if (!strcmp(got, want))
		return true;
	printf("  %s: got \"%s\", want \"%s\"\n", what, got, want);
	return false;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

static int stack(uint32_t pid, const uint64_t *ips, int n, uint64_t sp_ret)
{
	memset(out, 0, sizeof(out));
	return sym_user_stack(cache, pid, ips, n, &sp_ret, 1, out, 16);
}

static int load_bias_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	*(uint64_t *)arg = info->dlpi_addr;
	return 1;   /* the first object is the executable */
}

static uint64_t self_vaddr(uint64_t addr)
{
	uint64_t bias = 0;

	dl_iterate_phdr(load_bias_cb, &bias);
	return addr - bias;
}

static int copy_bytes(const char *to, const unsigned char *p, size_t n)
{
	int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	size_t done = 0;

	if (fd < 0)
		return -1;
	while (done < n) {
		ssize_t w = write(fd, p + done, n - done);

		if (w <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)w;
	}
	return close(fd);
}

static unsigned char *slurp(const char *path, size_t *n)
{
	unsigned char *p = NULL;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*n = 0;
	if (fd < 0)
		return NULL;
	if (!fstat(fd, &st) && st.st_size > 0 && (p = malloc((size_t)st.st_size)) &&
	    read(fd, p, (size_t)st.st_size) == st.st_size) {
		*n = (size_t)st.st_size;
	} else {
		free(p);
		p = NULL;
	}
	close(fd);
	return p;
}

static uint64_t pcln_shdr;   /* file offset of the last probed *gopclntab's section header */

/* Does the ELF file have a SHT_SYMTAB? Where is its *gopclntab (file offset, size)? */
static bool elf_probe(const char *path, uint64_t *pcln_off, uint64_t *pcln_size)
{
	GElf_Ehdr eh;
	Elf_Scn *scn = NULL;
	bool symtab = false;
	size_t shstrndx;
	Elf *e;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*pcln_off = *pcln_size = 0;
	if (fd < 0)
		return false;
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (e && gelf_getehdr(e, &eh) && !elf_getshdrstrndx(e, &shstrndx)) {
		while ((scn = elf_nextscn(e, scn))) {
			GElf_Shdr sh;
			const char *name;

			if (!gelf_getshdr(scn, &sh))
				continue;
			symtab |= sh.sh_type == SHT_SYMTAB;
			name = elf_strptr(e, shstrndx, sh.sh_name);
			if (name && ends_with(name, "gopclntab")) {
				*pcln_off = sh.sh_offset;
				*pcln_size = sh.sh_size;
				pcln_shdr = eh.e_shoff + elf_ndxscn(scn) * eh.e_shentsize;
			}
		}
	}
	if (e)
		elf_end(e);
	close(fd);
	return symtab;
}

/* ---- this process ------------------------------------------------------------------ */

static void test_self(void)
{
	uint32_t me = (uint32_t)getpid();
	uint64_t r_caller = symt_caller(), r_outer = symt_outer(), r_ind = symt_indirect();
	uint64_t leaf = addr_of((void *)symt_leaf), ips[4];
	char want[SYM_LEN], want2[SYM_LEN], want_caller[SYM_LEN];
	int n;

	/* ips[0]: a function's own address. */
	ips[0] = leaf;
	n = stack(me, ips, 1, 0);
	snprintf(want, sizeof(want), "symt_leaf+0x0 (%s)", self_name);
	check(n == 1 && eq(out[0], want, "frame 0"), "a function's address names it: %s", out[0]);

	/* ips[1]: a return address, looked up at ip-1 and shown with its offset to ip. */
	ips[0] = leaf + 1;
	ips[1] = r_caller;
	n = stack(me, ips, 2, 0);
	snprintf(want_caller, sizeof(want_caller), "symt_caller+0x%" PRIx64 " (%s)",
		 r_caller - addr_of((void *)symt_caller), self_name);
	check(n == 2 && eq(out[1], want_caller, "frame 1") && !strncmp(out[0], "symt_leaf+0x1 ", 14),
	      "a return address names its caller at the right offset: %s", out[1]);

	/* libc through dlsym: the exported names, aliases resolved the same way each time. */
	{
		void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
		void *conn = h ? dlsym(h, "connect") : NULL, *gp = h ? dlsym(h, "getpid") : NULL;

		ips[0] = addr_of(conn);
		n = stack(me, ips, 1, 0);
		check(conn && n == 1 && eq(out[0], "connect+0x0 (libc.so.6)", "connect"),
		      "libc's connect (aliased __connect) names itself: %s", out[0]);
		ips[0] = addr_of(gp);
		n = stack(me, ips, 1, 0);
		check(gp && n == 1 && strstr(out[0], "getpid+0x0 ") && ends_with(out[0], " (libc.so.6)"),
		      "libc's getpid: %s", out[0]);
		if (h)
			dlclose(h);
	}
	{
		static int keys[2] = { 1, 2 };
		void *root = NULL;

		tsearch(&keys[0], &root, symt_cmp);
		ret_in_libc = 0;
		tfind(&keys[1], &root, symt_cmp);
		tdestroy(root, free_nothing);
		ips[0] = leaf;
		ips[1] = ret_in_libc;
		n = stack(me, ips, 2, 0);
		check(n == 2 && !strncmp(out[1], "tfind+0x", 8) && ends_with(out[1], " (libc.so.6)"),
		      "a return address inside libc (tfind calling back): %s", out[1]);
	}

	/* sp_ret: the caller a frame-pointer unwinder skipped. */
	ips[0] = addr_of(symt_wrapper_single); /* a frameless wrapper at its syscall */
	ips[1] = r_outer;
	n = stack(me, ips, 2, r_caller);
	snprintf(want2, sizeof(want2), "symt_outer+0x%" PRIx64 " (%s)", r_outer - addr_of((void *)symt_outer),
		 self_name);
	check(n == 3 && eq(out[1], want_caller, "inserted frame") && eq(out[2], want2, "frame 2"),
	      "sp_ret after a call (e8) is inserted as frame 1: %s", out[1]);
	ips[0] = addr_of(symt_wrapper_single);
	n = stack(me, ips, 2, r_ind);
	snprintf(want, sizeof(want), "symt_indirect+0x%" PRIx64 " (%s)",
		 r_ind - addr_of((void *)symt_indirect), self_name);
	check(n == 3 && eq(out[1], want, "inserted frame"),
	      "sp_ret after an indirect call (ff /2) is inserted: %s", out[1]);
	n = stack(me, ips, 2, addr_of((void *)symt_caller));
	check(n == 2 && eq(out[1], want2, "frame 1"), "a function's first byte as sp_ret is not inserted");
	n = stack(me, ips, 2, r_outer);
	check(n == 2 && eq(out[1], want2, "frame 1"), "sp_ret equal to ips[1] is not repeated");
	n = stack(me, ips, 2, addr_of(&data_word));
	check(n == 2, "sp_ret in data is not inserted");
	n = stack(me, ips, 2, addr_of(&n));
	check(n == 2, "sp_ret on the stack is not inserted");
	n = stack(me, ips, 1, r_caller);
	check(n == 2 && eq(out[1], want_caller, "inserted frame"), "sp_ret is inserted when the stack has one frame");
	n = sym_user_stack(cache, me, ips, 2, &r_caller, 1, out, 1);
	check(n == 1, "max = 1 writes one frame");
	ips[0] = addr_of(symt_wrapper_single);
	n = stack(me, ips, 2, r_caller);
	check(n == 3 && !strncmp(out[0], "symt_wrapper+0x1 ", 17) &&
	      eq(out[1], want_caller, "inserted frame"),
	      "sp_ret inserted under a wrapper that did not move rsp: %s", out[0]);
	ips[0] = addr_of(symt_wrapper_multi);
	n = stack(me, ips, 2, r_caller);
	check(n == 2 && !strncmp(out[0], "symt_wrapper+0x", 15),
	      "sp_ret not inserted after the wrapper's sub $0x18,%%rsp: %s", out[0]);
	{
		/* The words above the stack pointer: the return address is found
		 * past the 0x18 bytes the wrapper subtracted. */
		uint64_t words[6] = { r_caller, 0, addr_of(&data_word), r_caller, 0, 0 };

		words[0] = addr_of(symt_wrapper);  /* a stale slot: not a return address */
		memset(out, 0, sizeof(out));
		n = sym_user_stack(cache, me, ips, 2, words, 6, out, 16);
		check(n == 3 && eq(out[1], want_caller, "inserted frame"),
		      "the return address at sp+0x18 is found after sub $0x18,%%rsp: %s", out[1]);
		memset(out, 0, sizeof(out));
		n = sym_user_stack(cache, me, ips, 2, words, 3, out, 16);
		check(n == 2, "sp+0x18 beyond the words given: nothing inserted");
		words[3] = addr_of(&data_word);
		memset(out, 0, sizeof(out));
		n = sym_user_stack(cache, me, ips, 2, words, 6, out, 16);
		check(n == 2, "a data word at sp+0x18 is not inserted");
	}

	/* Outside any file. */
	ips[0] = 0x10;
	n = stack(me, ips, 1, 0);
	check(n == 1 && eq(out[0], "0x10 (?)", "unmapped"), "an unmapped address: %s", out[0]);
	ips[0] = addr_of(&n);
	n = stack(me, ips, 1, 0);
	check(n == 1 && ends_with(out[0], " (?)") && !strncmp(out[0], "0x", 2),
	      "a stack address: %s", out[0]);
	ips[0] = getauxval(AT_SYSINFO_EHDR);
	if (ips[0]) {
		ips[0] += 0x10;
		n = stack(me, ips, 1, 0);
		check(n == 1 && ends_with(out[0], " ([vdso])"), "the vDSO: %s", out[0]);
	}
	ips[0] = leaf;
	ips[1] = 0;
	ips[2] = r_caller;
	n = stack(me, ips, 3, 0);
	check(n == 1, "a 0 ends the stack");
	check(stack(me, ips, 0, 0) == 0, "an empty stack gives 0 frames");

	/* A process that is gone. */
	{
		pid_t child = fork();

		if (child == 0)
			_exit(0);
		waitpid(child, NULL, 0);
		ips[0] = leaf;
		check(child > 0 && stack((uint32_t)child, ips, 1, 0) == -1, "a dead pid gives -1");
	}
}

/* ---- files through sym_elf_load_path ---------------------------------------------- */

static void test_files(const char *go_stripped)
{
	uint64_t leaf_va = self_vaddr(addr_of((void *)symt_leaf)), pcoff = 0, pcsize = 0;
	char path[128], path2[128], name[SYM_LEN];
	unsigned char *self = NULL, *go = NULL, *buf;
	size_t nself, ngo = 0;
	int n;

	snprintf(path, sizeof(path), "%s/elf", tmpdir);
	snprintf(path2, sizeof(path2), "%s/elf2", tmpdir);
	self = slurp("/proc/self/exe", &nself);
	check(self != NULL, "read this executable");
	if (!self)
		return;
	check(sym_elf_load_path(cache, "/nonexistent/x", 0, name, sizeof(name)) == -1,
	      "a missing file gives -1");
	copy_bytes(path, (const unsigned char *)"not an ELF file\n", 16);
	check(sym_elf_load_path(cache, path, 0, name, sizeof(name)) == 0 && !name[0],
	      "a file that is not ELF has no symbols");

	copy_bytes(path, self, nself);
	n = sym_elf_load_path(cache, path, leaf_va + 2, name, sizeof(name));
	check(n > 10 && eq(name, "symt_leaf+0x2", "copy"), "a copy of this binary: %d functions, %s", n, name);

	if (go_stripped && (go = slurp(go_stripped, &ngo))) {
		uint64_t go_va = go_leak_va;

		/* The same path, another file (rename: new inode), then in-place rewrites. */
		copy_bytes(path2, go, ngo);
		rename(path2, path);
		n = sym_elf_load_path(cache, path, leaf_va, name, sizeof(name));
		check(n > 100 && strcmp(name, "symt_leaf+0x0"),
		      "a different file at the same path is re-read (%d functions)", n);
		copy_bytes(path, self, nself);
		n = sym_elf_load_path(cache, path, leaf_va, name, sizeof(name));
		check(eq(name, "symt_leaf+0x0", "rewritten"), "a file rewritten in place is re-read");

		/* Not PIE: the address the program printed is its ELF virtual address. */
		elf_probe(go_stripped, &pcoff, &pcsize);
		copy_bytes(path, go, ngo);
		n = sym_elf_load_path(cache, path, go_va + 3, name, sizeof(name));
		check(go_va && pcsize && eq(name, "main.leakConn+0x3", "go"),
		      "stripped Go binary by file: main.leakConn at 0x%" PRIx64 ", pclntab %" PRIu64 " bytes",
		      go_va, pcsize);

		/* Truncated at many sizes. */
		for (int k = 0; k <= 80; k++) {
			size_t cut = k < 40 ? (size_t)k * 97 % 5000 : ngo * (size_t)(k - 40) / 40;

			copy_bytes(path, go, cut);
			sym_elf_load_path(cache, path, go_va, name, sizeof(name));
			copy_bytes(path, self, cut < nself ? cut : nself - 1);
			sym_elf_load_path(cache, path, leaf_va, name, sizeof(name));
		}
		check(true, "this binary and the Go one truncated at 81 sizes: no crash");

		/* The pclntab header: each word set to hostile values. */
		buf = dup_n(go, ngo);
		if (pcoff && pcoff + 72 <= ngo) {
			static const uint64_t vals[] = {
				0, 1, 0x7fffffff, 0x80000000, 0xffffffff, UINT64_MAX, UINT64_MAX / 8,
			};

			for (int word = 0; word < 8; word++)
				for (size_t v = 0; v < sizeof(vals) / sizeof(vals[0]); v++) {
					memcpy(buf, go, ngo);
					memcpy(buf + pcoff + 8 + word * 8, &vals[v], 8);
					copy_bytes(path, buf, ngo);
					sym_elf_load_path(cache, path, go_va, name, sizeof(name));
				}
			/* ptrSize 4 over a 64-bit table; and the Go 1.16 magic */
			memcpy(buf, go, ngo);
			buf[pcoff + 7] = 4;
			copy_bytes(path, buf, ngo);
			sym_elf_load_path(cache, path, go_va, name, sizeof(name));
			memcpy(buf, go, ngo);
			memcpy(buf + pcoff, "\xfa\xff\xff\xff", 4);
			copy_bytes(path, buf, ngo);
			sym_elf_load_path(cache, path, go_va, name, sizeof(name));
		}
		check(true, "pclntab header words set to hostile values: no crash");

		/* The section cut short in its header (sh_size, at +32 in an Elf64_Shdr):
		 * the table's own offsets then point past it. */
		if (pcln_shdr && pcln_shdr + 64 <= ngo) {
			for (uint64_t cut = 0; cut < pcsize; cut = cut * 2 + 7) {
				memcpy(buf, go, ngo);
				memcpy(buf + pcln_shdr + 32, &cut, 8);
				copy_bytes(path, buf, ngo);
				sym_elf_load_path(cache, path, go_va, name, sizeof(name));
			}
		}
		check(pcln_shdr != 0, "pclntab section cut short in its header: no crash");

		/* Random bytes in the pclntab, and in the ELF headers of both files. */
		srand(1);
		for (int round = 0; round < 60; round++) {
			memcpy(buf, go, ngo);
			for (int i = 0; i < 64; i++) {
				size_t at = pcsize ? pcoff + (size_t)rand() % (pcsize < 4096 ? pcsize : 4096)
						   : (size_t)rand() % ngo;

				if (round & 1)   /* anywhere in the table */
					at = pcsize ? pcoff + (size_t)rand() % pcsize : at;
				buf[at] = (unsigned char)rand();
			}
			copy_bytes(path, buf, ngo);
			sym_elf_load_path(cache, path, go_va, name, sizeof(name));
		}
		free(buf);
		check(true, "random bytes in the Go binary's pclntab: no crash");
		free(go);
	} else {
		check(false, "the stripped Go binary for the file tests is missing");
	}

	buf = dup_n(self, nself);
	srand(2);
	for (int round = 0; round < 60; round++) {
		memcpy(buf, self, nself);
		for (int i = 0; i < 16; i++) {
			/* ELF header and program headers, or the section headers at the end */
			size_t at = (round & 1) ? (size_t)rand() % 1024 : nself - 1 - (size_t)rand() % 4096;

			buf[at] = (unsigned char)rand();
		}
		copy_bytes(path, buf, nself);
		sym_elf_load_path(cache, path, leaf_va, name, sizeof(name));
	}
	free(buf);
	check(true, "random bytes in this binary's ELF, program and section headers: no crash");

	/* More files than the cache holds: the first is evicted, then read again. */
	copy_bytes(path, self, nself);
	sym_elf_load_path(cache, path, leaf_va, name, sizeof(name));
	for (int i = 0; i < 70; i++) {
		char p[160];

		snprintf(p, sizeof(p), "%s/small%d", tmpdir, i);
		copy_bytes(p, (const unsigned char *)"x", 1);
		sym_elf_load_path(cache, p, 0, name, sizeof(name));
		unlink(p);
	}
	n = sym_elf_load_path(cache, path, leaf_va, name, sizeof(name));
	check(eq(name, "symt_leaf+0x0", "after eviction"), "70 more files through the cache, then the first again");
	unlink(path);
	free(self);
}

/* ---- Go ---------------------------------------------------------------------------- */

static const char go_src[] =
	"package main\n"
	"\n"
	"import (\n"
	"\t\"fmt\"\n"
	"\t\"os\"\n"
	"\t\"reflect\"\n"
	"\t\"time\"\n"
	")\n"
	"\n"
	"//go:noinline\n"
	"func leakConn(n int) int { return n*3 + 1 }\n"
	"\n"
	"func main() {\n"
	"\tfmt.Printf(\"%x %d\\n\", reflect.ValueOf(leakConn).Pointer(), os.Getpid())\n"
	"\tleakConn(2)\n"
	"\tfor {\n"
	"\t\ttime.Sleep(time.Hour)\n"
	"\t}\n"
	"}\n";

static bool go_on_path(void)
{
	const char *path = getenv("PATH");
	char dir[512], exe[600];

	while (path && *path) {
		size_t l = strcspn(path, ":");

		snprintf(dir, sizeof(dir), "%.*s", (int)l, path);
		snprintf(exe, sizeof(exe), "%s/go", dir[0] ? dir : ".");
		if (!access(exe, X_OK))
			return true;
		path += l + (path[l] == ':');
	}
	return false;
}

static bool go_build(const char *outname, const char *flags)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE='%s/cache' GOFLAGS= "
		 "go build %s -o '%s' main.go >build.log 2>&1 || cat build.log",
		 tmpdir, tmpdir, flags, outname);
	fflush(stdout);
	if (system(cmd))
		return false;
	snprintf(cmd, sizeof(cmd), "%s/%s", tmpdir, outname);
	return access(cmd, X_OK) == 0;
}

/* Start a Go program; it prints "<hex address of main.leakConn> <pid>". */
static pid_t go_start(const char *exe, uint64_t *fn)
{
	int pfd[2];
	char line[128];
	size_t got = 0;
	pid_t pid;
	int gpid = 0;

	*fn = 0;
	if (pipe2(pfd, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		execl(exe, exe, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	while (pid > 0 && got < sizeof(line) - 1 && !memchr(line, '\n', got)) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 10000) <= 0)
			break;
		r = read(pfd[0], line + got, sizeof(line) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(pfd[0]);
	line[got] = 0;
	if (sscanf(line, "%" SCNx64 " %d", fn, &gpid) != 2 || gpid != pid)
		*fn = 0;
	return pid;
}

static void go_stop(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

/* Run exe, name main.leakConn as frame 0 and as a return address (+3). */
static uint64_t go_check(const char *exe, const char *what, bool want_symtab, bool unlink_first)
{
	uint64_t fn, ips[2], pcoff, pcsize;
	bool has_symtab = elf_probe(exe, &pcoff, &pcsize);
	const char *base = strrchr(exe, '/') + 1;
	char want0[SYM_LEN], want1[SYM_LEN];
	pid_t pid;
	int n;

	check(has_symtab == want_symtab && pcsize > 0, "%s: %s .symtab, .gopclntab of %" PRIu64 " bytes",
	      what, has_symtab ? "has" : "no", pcsize);
	pid = go_start(exe, &fn);
	check(pid > 0 && fn, "%s: started (pid %d), main.leakConn at 0x%" PRIx64, what, (int)pid, fn);
	if (unlink_first)
		unlink(exe);
	ips[0] = fn;
	ips[1] = fn + 3;
	n = stack((uint32_t)pid, ips, 2, 0);
	snprintf(want0, sizeof(want0), "main.leakConn+0x0 (%s)", base);
	snprintf(want1, sizeof(want1), "main.leakConn+0x3 (%s)", base);
	check(fn && n == 2 && eq(out[0], want0, what) && eq(out[1], want1, what), "%s: %s, %s", what,
	      out[0], out[1]);
	go_stop(pid);
	return fn;
}

static void test_go(char *stripped_path, size_t len)
{
	char cmd[256], p[160];
	FILE *f;

	stripped_path[0] = 0;
	if (!go_on_path()) {
		check(false, "`go` is not on PATH: the Go part of this test cannot run (apt install golang-go)");
		return;
	}
	snprintf(p, sizeof(p), "%s/main.go", tmpdir);
	f = fopen(p, "w");
	if (!f || fputs(go_src, f) < 0 || fclose(f)) {
		check(false, "write %s", p);
		return;
	}
	if (!go_build("gos", "-ldflags=-s") || !go_build("gou", "") ||
	    !go_build("gop", "-buildmode=pie -ldflags=-s")) {
		check(false, "go build (see the output above)");
		return;
	}
	check(true, "built a Go program stripped, unstripped and stripped PIE");
	snprintf(p, sizeof(p), "%s/gos", tmpdir);
	go_leak_va = go_check(p, "stripped Go (.gopclntab)", false, false);
	snprintf(stripped_path, len, "%s", p);
	snprintf(p, sizeof(p), "%s/gou", tmpdir);
	go_check(p, "unstripped Go (.symtab)", true, false);
	snprintf(p, sizeof(p), "%s/gop", tmpdir);
	go_check(p, "stripped Go PIE (.data.rel.ro.gopclntab)", false, false);
	if (geteuid() == 0) {
		snprintf(p, sizeof(p), "%s/godel", tmpdir);
		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", stripped_path, p);
		if (system(cmd) == 0)
			go_check(p, "stripped Go, file deleted (map_files)", false, true);
		else
			check(false, "copy the stripped Go binary");
	} else {
		printf("skip: not root: a deleted file's mapping is not readable\n");
	}
}

int main(void)
{
	char exe[512], gos[160], cmd[128];
	ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *b;

	setvbuf(stdout, NULL, _IOLBF, 0);
	exe[l > 0 ? l : 0] = 0;
	b = strrchr(exe, '/');
	snprintf(self_name, sizeof(self_name), "%.63s", b ? b + 1 : exe);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_symbolize.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	elf_version(EV_CURRENT);
	cache = sym_cache_new();
	check(cache != NULL, "sym_cache_new");
	if (!cache)
		return 1;
	test_self();
	test_go(gos, sizeof(gos));
	test_files(gos[0] ? gos : NULL);
	sym_cache_free(cache);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd))
		printf("could not remove %s\n", tmpdir);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
