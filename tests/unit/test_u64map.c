// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* u64map against a plain array model, through growth, deletes and tombstones. */
#include <stdio.h>
#include <stdlib.h>
#include "u64map.h"

#define N 20000

int main(void)
{
	static uintptr_t model[N];
	struct u64map m = {0};
	int pass = 0, fail = 0;
	uint64_t seed = 42;

	for (int round = 0; round < 200000; round++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t k = (seed >> 33) % N + 1; /* keys 1..N */
		int op = (seed >> 20) % 3;

		if (op < 2) {
			u64map_put(&m, k, (void *)(uintptr_t)round + 1);
			model[k - 1] = (uintptr_t)round + 1;
		} else {
			uintptr_t got = (uintptr_t)u64map_del(&m, k);

			if (got != model[k - 1]) {
				fail++;
				break;
			}
			model[k - 1] = 0;
		}
	}
	size_t live = 0;

	for (int i = 0; i < N; i++) {
		live += model[i] != 0;
		if ((uintptr_t)u64map_get(&m, i + 1) != model[i]) {
			fail++;
			break;
		}
	}
	if (live == m.len)
		pass++;
	else
		fail++;
	printf("%s: model agreement after 200000 random operations\n", fail ? "FAIL" : "ok");
	pass++;
	u64map_free(&m);
	printf("%d passed, %d failed\n", pass - (fail ? 1 : 0), fail);
	return fail != 0;
}
