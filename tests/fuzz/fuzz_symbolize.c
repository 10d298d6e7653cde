// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer harness for user/live/symbolize.c: the ELF reader, the symbol tables and
 * Go's .gopclntab on hostile files. A process in a pod controls the binaries
 * connscope reads to name a stack, so none of them may crash it.
 *
 *   scripts/test.sh fuzz    (built against connscope's libraries)
 *   then, longer: .output/tests/fuzz_symbolize CORPUS
 *
 * Input: 8 bytes of virtual address (little endian), then the file's bytes. The
 * file is written to a new path each run (the cache is keyed by inode, size and
 * mtime, so every input is parsed afresh) and named at that address and at a few
 * others. Besides memory safety, the harness aborts when a name is not a
 * terminated string or the symbol count is out of range. scripts/test.sh seeds it
 * with small ELF files it compiles (with and without .symtab).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "symbolize.h"

static struct sym_cache *cache;
static char path[64];

static void require_(int ok, int line)
{
	if (!ok) {
		fprintf(stderr, "fuzz_symbolize.c:%d: a promise broken\n", line);
		abort();
	}
}

#define require(ok) require_(ok, __LINE__)

static void name_at(uint64_t va)
{
	char out[SYM_LEN];
	int n;

	memset(out, 'x', sizeof(out));
	n = sym_elf_load_path(cache, path, va, out, sizeof(out));
	require(n >= -1);
	if (n >= 0)
		require(memchr(out, '\0', sizeof(out)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t va = 0;
	FILE *f;

	if (!cache) {
		cache = sym_cache_new();
		snprintf(path, sizeof(path), "/tmp/fuzz_symbolize.%d", (int)getpid());
	}
	if (size < 8)
		return 0;
	for (int i = 7; i >= 0; i--)
		va = va << 8 | data[i];
	/* A new inode every run: unlink, then create. */
	unlink(path);
	f = fopen(path, "wb");
	if (!f)
		return 0;
	if (size > 8)
		fwrite(data + 8, 1, size - 8, f);
	fclose(f);
	name_at(va);
	name_at(va + 1);
	name_at(0x400000);
	name_at(0x1000);
	unlink(path);
	return 0;
}
