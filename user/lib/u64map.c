// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#include "u64map.h"

#include <stdlib.h>

static size_t slot(uint64_t key, size_t cap)
{
	/* splitmix64 finaliser: cookies and cgroup ids are sequential. */
	key ^= key >> 30;
	key *= 0xbf58476d1ce4e5b9ull;
	key ^= key >> 27;
	key *= 0x94d049bb133111ebull;
	key ^= key >> 31;
	return key & (cap - 1);
}

/* 0 and U64MAP_TOMB mark slots: keys with those values are kept aside. */
static int special(uint64_t key)
{
	return key == 0 ? 0 : key == U64MAP_TOMB ? 1 : -1;
}

void *u64map_get(const struct u64map *m, uint64_t key)
{
	int s = special(key);

	if (s >= 0)
		return m->has_special[s] ? m->special[s] : NULL;
	if (!m->cap)
		return NULL;
	for (size_t i = slot(key, m->cap), n = 0; n < m->cap; i = (i + 1) & (m->cap - 1), n++) {
		if (m->keys[i] == key)
			return m->vals[i];
		if (!m->keys[i])
			return NULL;
	}
	return NULL;
}

static int grow(struct u64map *m)
{
	size_t ncap = m->cap ? m->cap : 64;
	uint64_t *okeys = m->keys;
	void **ovals = m->vals;
	size_t ocap = m->cap;

	/* Rebuild at twice the live size (or the same size, just to drop tombstones). */
	while (ncap < (m->len + 1) * 2)
		ncap *= 2;
	m->keys = calloc(ncap, sizeof(*m->keys));
	m->vals = calloc(ncap, sizeof(*m->vals));
	if (!m->keys || !m->vals) {
		free(m->keys);
		free(m->vals);
		m->keys = okeys;
		m->vals = ovals;
		return -1;
	}
	m->cap = ncap;
	m->used = 0;
	m->len = m->has_special[0] + m->has_special[1];
	for (size_t i = 0; i < ocap; i++)
		if (okeys[i] && okeys[i] != U64MAP_TOMB)
			u64map_put(m, okeys[i], ovals[i]);
	free(okeys);
	free(ovals);
	return 0;
}

int u64map_put(struct u64map *m, uint64_t key, void *val)
{
	size_t tomb = SIZE_MAX;
	int s = special(key);

	if (s >= 0) {
		m->len += !m->has_special[s];
		m->has_special[s] = true;
		m->special[s] = val;
		return 0;
	}
	if ((m->used + 1) * 10 >= m->cap * 7 && grow(m))
		return -1;
	for (size_t i = slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			m->vals[i] = val;
			return 0;
		}
		if (m->keys[i] == U64MAP_TOMB && tomb == SIZE_MAX)
			tomb = i;
		if (!m->keys[i]) {
			if (tomb != SIZE_MAX)
				i = tomb;
			else
				m->used++;
			m->keys[i] = key;
			m->vals[i] = val;
			m->len++;
			return 0;
		}
	}
}

void *u64map_del(struct u64map *m, uint64_t key)
{
	int s = special(key);

	if (s >= 0) {
		void *v = m->special[s];

		if (!m->has_special[s])
			return NULL;
		m->has_special[s] = false;
		m->special[s] = NULL;
		m->len--;
		return v;
	}
	if (!m->cap)
		return NULL;
	for (size_t i = slot(key, m->cap), n = 0; n < m->cap; i = (i + 1) & (m->cap - 1), n++) {
		if (m->keys[i] == key) {
			void *v = m->vals[i];

			m->keys[i] = U64MAP_TOMB;
			m->vals[i] = NULL;
			m->len--;
			return v;
		}
		if (!m->keys[i])
			return NULL;
	}
	return NULL;
}

int u64map_next(const struct u64map *m, size_t *pos, uint64_t *key, void **val)
{
	for (; *pos < m->cap; (*pos)++) {
		uint64_t k = m->keys[*pos];

		if (k && k != U64MAP_TOMB) {
			*key = k;
			*val = m->vals[*pos];
			(*pos)++;
			return 1;
		}
	}
	/* Then the two kept aside, at positions cap and cap + 1. */
	for (; *pos < m->cap + 2; (*pos)++) {
		int s = (int)(*pos - m->cap);

		if (m->has_special[s]) {
			*key = s ? U64MAP_TOMB : 0;
			*val = m->special[s];
			(*pos)++;
			return 1;
		}
	}
	return 0;
}

void u64map_free(struct u64map *m)
{
	free(m->keys);
	free(m->vals);
	*m = (struct u64map){0};
}
