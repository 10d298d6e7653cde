/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * User stacks captured by BPF (bpf_get_stackid with BPF_F_USER_STACK) turned into
 * text: "function+0xoff (module)" per frame, from the ELF symbols of the files a
 * process maps (.symtab, else .dynsym; Go's .gopclntab for stripped Go binaries).
 */
#ifndef CONNSCOPE_SYMBOLIZE_H
#define CONNSCOPE_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

#define SYM_LEN 192   /* one frame's text */

/* Parsed symbol tables of the files seen so far, keyed by (st_dev, st_ino) and
 * checked against size and mtime; at most 64 files, the least recently used goes.
 * Not thread-safe: one cache per thread. */
struct sym_cache;

struct sym_cache *sym_cache_new(void);
void sym_cache_free(struct sym_cache *c);

/*
 * Symbolize a user stack of process `pid` (a host pid, read through /proc/<pid>/maps
 * and /proc/<pid>/root). ips[0] is the instruction pointer at the syscall; ips[1..] are
 * return addresses (looked up at ip-1; the offset printed is from the symbol to ip).
 * A 0 in ips[] ends the stack.
 *
 * sp_words: the nwords 8-byte words found from the user stack pointer up when the
 * stack was taken (may be 0 words). A frame-pointer unwinder skips the caller of a
 * function that set up no frame (glibc's connect()/accept4() wrappers). Its return
 * address sits above the stack pointer by what the function at ips[0] pushed and
 * subtracted before ips[0] (push r64 at its start, sub rsp, imm: glibc's
 * multi-threaded path lowers it by 0x18 or 0x28; nothing on the single-threaded
 * path). When that word lies in an executable file mapping of an x86-64 ELF file,
 * the file's bytes just before it end in a call instruction, and it differs from
 * ips[1], it is inserted as frame 1.
 *
 * Writes up to max frames into out[i]: "function+0xoff (module)", module being the
 * basename of the mapped file; "0x7f12... (module)" when no symbol covers the address;
 * "0x... ([vdso])" in the vDSO; "0x... (?)" outside any file mapping. Returns the number
 * of frames written, or -1 if /proc/<pid>/maps cannot be read or is empty (the process
 * is gone, or is a zombie).
 */
int sym_user_stack(struct sym_cache *c, uint32_t pid, const uint64_t *ips, int n,
		   const uint64_t *sp_words, int nwords, char (*out)[SYM_LEN], int max);

/*
 * For tests: load the file at path into the cache the way sym_user_stack does, then
 * name the ELF virtual address vaddr: out gets "function+0xoff", or "" when no symbol
 * covers it. Returns the number of function symbols the file provides (0 for a file
 * that is not ELF or has none), or -1 if the file cannot be opened.
 */
int sym_elf_load_path(struct sym_cache *c, const char *path, uint64_t vaddr,
		      char *out, size_t len);

#endif
