/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * An open-addressing hash map from fixed-size keys (a struct of addresses and
 * ports, a pod key, ...) to pointers. The map keeps a copy of every key and
 * compares it whole: two keys that hash the same stay two entries. Keys are
 * compared as bytes, so build them zeroed (memset) with padding and unused
 * address bytes at 0.
 */
#ifndef CONNSCOPE_KMAP_H
#define CONNSCOPE_KMAP_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t (*kmap_hash_fn)(const void *key, size_t len);

struct kmap {
	size_t klen;         /* key size in bytes, set by kmap_init */
	kmap_hash_fn hash;   /* NULL: FNV-1a (tests inject a colliding one) */
	uint64_t *hs;        /* per slot: 0 empty, KMAP_TOMB deleted, else the hash */
	uint8_t *keys;       /* cap * klen */
	void **vals;
	size_t cap;          /* power of two */
	size_t used;         /* live + tombstones */
	size_t len;          /* live */
};

#define KMAP_TOMB UINT64_MAX

void kmap_init(struct kmap *m, size_t klen, kmap_hash_fn hash);
void *kmap_get(const struct kmap *m, const void *key);
/* Insert or replace. Returns 0, or -1 if out of memory. */
int kmap_put(struct kmap *m, const void *key, void *val);
/* Remove and return the value (NULL if absent). Safe inside kmap_next loops. */
void *kmap_del(struct kmap *m, const void *key);
void kmap_free(struct kmap *m);

/* Iterate: for (size_t i = 0; kmap_next(m, &i, &k, &v);) -- k points into the map. */
int kmap_next(const struct kmap *m, size_t *pos, const void **key, void **val);

uint64_t kmap_fnv1a(const void *key, size_t len);

#endif
