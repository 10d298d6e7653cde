/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The header of Go's .gopclntab, which the Go runtime needs and so survives
 * stripping (-ldflags=-s). Read by the Go TLS probes (a function's address by
 * name) and by the symbolizer (a function's name by address).
 *
 * Header (runtime/symtab.go pcHeader): magic u32, 2 pad bytes, minLC u8,
 * ptrSize u8, then ptrSize words:
 *
 *   Go 1.16-1.17 (0xfffffffa): nfunc, nfiles, funcnameOffset, cu, filetab, pctab,
 *                pclnOffset; functab at pclnOffset: nfunc + 1 {entry, funcoff} words
 *                (the last entry is the end of the text); _func at pclnOffset + funcoff:
 *                entry word, nameoff i32
 *   Go 1.18+ (0xfffffff0, 0xfffffff1): nfunc, nfiles, textStart, funcnameOffset, cu,
 *                filetab, pctab, pclnOffset; functab: nfunc + 1 {entryoff u32,
 *                funcoff u32} (entryoff from textStart); _func: entryoff u32, nameoff i32
 *
 * A name is at funcnameOffset + nameoff, NUL-terminated.
 */
#ifndef CONNSCOPE_GOPCLNTAB_H
#define CONNSCOPE_GOPCLNTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pcln_hdr {
	bool go118;          /* Go 1.18+ layout */
	unsigned ptrsize;    /* 4 or 8 */
	uint64_t nfunc;
	uint64_t text;       /* textStart (Go 1.18+; 0 before, or when the linker left it 0) */
	uint64_t names;      /* funcnameOffset */
	uint64_t pcln;       /* pclnOffset: the functab */
	uint64_t entsize;    /* bytes per functab entry */
};

/* Little-endian unsigned of w (1..8) bytes. */
static inline uint64_t pcln_le(const unsigned char *p, unsigned w)
{
	uint64_t v = 0;

	for (unsigned i = w; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

/* Parse the header of the n bytes at p. 0, or -1 when it is not a pclntab this
 * reads, or its offsets lie outside the n bytes (the file is hostile input). The
 * functab's nfunc + 1 entries are checked to fit. */
static inline int pcln_parse(const unsigned char *p, size_t n, struct pcln_hdr *h)
{
	uint32_t magic;
	unsigned w;

	if (!p || n < 8)
		return -1;
	w = p[7];
	if ((w != 4 && w != 8) || n < 8 + 8 * (uint64_t)w)
		return -1;
	magic = (uint32_t)pcln_le(p, 4);
	if (magic == 0xfffffff0 || magic == 0xfffffff1)
		h->go118 = true;
	else if (magic == 0xfffffffa)
		h->go118 = false;
	else
		return -1;
	h->ptrsize = w;
#define PCLN_WORD(i) pcln_le(p + 8 + (i) * w, w)
	h->nfunc = PCLN_WORD(0);
	if (h->go118) {
		h->text = PCLN_WORD(2);
		h->names = PCLN_WORD(3);
		h->pcln = PCLN_WORD(7);
	} else {
		h->text = 0;
		h->names = PCLN_WORD(2);
		h->pcln = PCLN_WORD(6);
	}
#undef PCLN_WORD
	h->entsize = h->go118 ? 8 : 2 * (uint64_t)w;
	if (h->names >= n || h->pcln >= n || h->nfunc >= (n - h->pcln) / h->entsize)
		return -1;
	return 0;
}

#endif
