// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "kmap.h"

#include <stdlib.h>
#include <string.h>

uint64_t kmap_fnv1a(const void *key, size_t len)
{
	const uint8_t *b = key;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

void kmap_init(struct kmap *m, size_t klen, kmap_hash_fn hash)
{
	*m = (struct kmap){ .klen = klen, .hash = hash };
}

/* The slot marker of a key: its hash, kept clear of the two reserved values. */
static uint64_t hash_of(const struct kmap *m, const void *key)
{
	uint64_t h = (m->hash ? m->hash : kmap_fnv1a)(key, m->klen);

	return h == 0 || h == KMAP_TOMB ? 1 : h;
}

static size_t first(uint64_t h, size_t cap)
{
	/* FNV's low bits are weak for short keys: mix before masking. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h & (cap - 1);
}

static uint8_t *key_at(const struct kmap *m, size_t i)
{
	return m->keys + i * m->klen;
}

/* The slot holding key, or SIZE_MAX. */
static size_t find(const struct kmap *m, const void *key, uint64_t h)
{
	if (!m->cap)
		return SIZE_MAX;
	for (size_t i = first(h, m->cap), n = 0; n < m->cap; i = (i + 1) & (m->cap - 1), n++) {
		if (!m->hs[i])
			return SIZE_MAX;
		if (m->hs[i] == h && !memcmp(key_at(m, i), key, m->klen))
			return i;
	}
	return SIZE_MAX;
}

void *kmap_get(const struct kmap *m, const void *key)
{
	size_t i = find(m, key, hash_of(m, key));

	return i == SIZE_MAX ? NULL : m->vals[i];
}

static void place(struct kmap *m, size_t i, uint64_t h, const void *key, void *val)
{
	m->hs[i] = h;
	memcpy(key_at(m, i), key, m->klen);
	m->vals[i] = val;
	m->len++;
}

static int grow(struct kmap *m)
{
	struct kmap o = *m;
	size_t ncap = m->cap ? m->cap : 64;

	/* Rebuild at twice the live size (or the same size, just to drop tombstones). */
	while (ncap < (m->len + 1) * 2)
		ncap *= 2;
	m->hs = calloc(ncap, sizeof(*m->hs));
	m->keys = malloc(ncap * m->klen);
	m->vals = calloc(ncap, sizeof(*m->vals));
	if (!m->hs || !m->keys || !m->vals) {
		free(m->hs);
		free(m->keys);
		free(m->vals);
		*m = o;
		return -1;
	}
	m->cap = ncap;
	m->used = m->len = 0;
	for (size_t i = 0; i < o.cap; i++) {
		size_t j;

		if (!o.hs[i] || o.hs[i] == KMAP_TOMB)
			continue;
		for (j = first(o.hs[i], ncap); m->hs[j]; j = (j + 1) & (ncap - 1))
			;
		place(m, j, o.hs[i], key_at(&o, i), o.vals[i]);
		m->used++;
	}
	free(o.hs);
	free(o.keys);
	free(o.vals);
	return 0;
}

int kmap_put(struct kmap *m, const void *key, void *val)
{
	uint64_t h = hash_of(m, key);
	size_t i = find(m, key, h), tomb = SIZE_MAX;

	if (i != SIZE_MAX) {
		m->vals[i] = val;
		return 0;
	}
	if ((m->used + 1) * 10 >= m->cap * 7 && grow(m))
		return -1;
	for (i = first(h, m->cap); m->hs[i]; i = (i + 1) & (m->cap - 1))
		if (m->hs[i] == KMAP_TOMB && tomb == SIZE_MAX)
			tomb = i;
	if (tomb != SIZE_MAX)
		i = tomb;
	else
		m->used++;
	place(m, i, h, key, val);
	return 0;
}

void *kmap_del(struct kmap *m, const void *key)
{
	size_t i = find(m, key, hash_of(m, key));
	void *v;

	if (i == SIZE_MAX)
		return NULL;
	v = m->vals[i];
	m->hs[i] = KMAP_TOMB;
	m->vals[i] = NULL;
	m->len--;
	return v;
}

int kmap_next(const struct kmap *m, size_t *pos, const void **key, void **val)
{
	for (; *pos < m->cap; (*pos)++) {
		uint64_t h = m->hs[*pos];

		if (h && h != KMAP_TOMB) {
			*key = key_at(m, *pos);
			*val = m->vals[*pos];
			(*pos)++;
			return 1;
		}
	}
	return 0;
}

void kmap_free(struct kmap *m)
{
	free(m->hs);
	free(m->keys);
	free(m->vals);
	*m = (struct kmap){ .klen = m->klen, .hash = m->hash };
}
