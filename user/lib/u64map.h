/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* An open-addressing hash map from u64 keys (any value: cookies, cgroup ids) to
 * pointers. The two values the slots reserve, 0 and U64MAP_TOMB, live beside them. */
#ifndef CONNSCOPE_U64MAP_H
#define CONNSCOPE_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct u64map {
	uint64_t *keys; /* 0: empty, U64MAP_TOMB: deleted */
	void **vals;
	size_t cap;     /* power of two */
	size_t used;    /* live + tombstones */
	size_t len;     /* live, the two below included */
	void *special[2];  /* the values of keys 0 and U64MAP_TOMB */
	bool has_special[2];
};

#define U64MAP_TOMB UINT64_MAX

void *u64map_get(const struct u64map *m, uint64_t key);
/* Insert or replace. Returns 0, or -1 if out of memory. */
int u64map_put(struct u64map *m, uint64_t key, void *val);
/* Remove and return the value (NULL if absent). */
void *u64map_del(struct u64map *m, uint64_t key);
void u64map_free(struct u64map *m);

/* Iterate: for (size_t i = 0; u64map_next(m, &i, &k, &v);) */
int u64map_next(const struct u64map *m, size_t *pos, uint64_t *key, void **val);

#endif
