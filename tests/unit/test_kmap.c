// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* kmap keeps keys whole: entries whose keys hash the same stay apart, through
 * growth, deletes and tombstones; and u64map keeps its two reserved key values. */
#include <stdint.h>
#include "check.h"
#include "kmap.h"
#include "u64map.h"

/* A flow-like key: the shape the tracker's and replay's tables use. */
struct tkey {
	uint8_t l3;
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
};

static struct tkey tk(int i)
{
	struct tkey k;

	memset(&k, 0, sizeof(k));
	k.l3 = 2;
	k.src[0] = 10;
	k.src[3] = (uint8_t)i;
	k.dst[0] = 10;
	k.dport = 443;
	k.sport = (uint16_t)(40000 + i);
	return k;
}

static uint64_t same_hash(const void *key, size_t len)
{
	(void)key;
	(void)len;
	return 0x1234;
}

static void collide(const char *what, kmap_hash_fn hash)
{
	enum { N = 500 };
	struct kmap m;
	bool ok = true;
	size_t n = 0;
	const void *k;
	void *v;

	kmap_init(&m, sizeof(struct tkey), hash);
	for (int i = 0; i < N; i++) {
		struct tkey key = tk(i);

		ok &= !kmap_put(&m, &key, (void *)(uintptr_t)(i + 1));
	}
	check(ok && m.len == N, "%s: %d keys in, %zu entries", what, N, m.len);
	ok = true;
	for (int i = 0; i < N; i++) {
		struct tkey key = tk(i);

		ok &= kmap_get(&m, &key) == (void *)(uintptr_t)(i + 1);
	}
	check(ok, "%s: every key finds its own value", what);
	for (int i = 0; i < N; i += 2) {
		struct tkey key = tk(i);

		ok &= kmap_del(&m, &key) == (void *)(uintptr_t)(i + 1);
	}
	for (int i = 0; i < N; i++) {
		struct tkey key = tk(i);

		ok &= kmap_get(&m, &key) == (i % 2 ? (void *)(uintptr_t)(i + 1) : NULL);
	}
	check(ok && m.len == N / 2, "%s: deleting every other key leaves the rest", what);
	for (size_t i = 0; kmap_next(&m, &i, &k, &v);) {
		const struct tkey *key = k;

		n++;
		ok &= (uintptr_t)v == (uintptr_t)(key->sport - 40000 + 1);
	}
	check(ok && n == N / 2, "%s: iteration yields each live key with its value", what);
	{
		struct tkey a = tk(7), b = tk(7);

		b.dst[15] = 1;  /* differs in a byte IPv4 does not use */
		kmap_put(&m, &b, (void *)99);
		check(kmap_get(&m, &a) == (void *)8 && kmap_get(&m, &b) == (void *)99,
		      "%s: keys differing in one byte stay distinct", what);
	}
	kmap_free(&m);
}

static void pod_keys(void)
{
	char a[320] = "kubepods/pod-a", b[320] = "kubepods/pod-b";
	struct kmap m;

	kmap_init(&m, sizeof(a), same_hash);
	kmap_put(&m, a, (void *)1);
	kmap_put(&m, b, (void *)2);
	kmap_put(&m, a, (void *)3);  /* replaces */
	check(m.len == 2 && kmap_get(&m, a) == (void *)3 && kmap_get(&m, b) == (void *)2,
	      "two pod keys with an equal hash stay two pods");
	kmap_free(&m);
}

static void u64_reserved(void)
{
	struct u64map m = {0};
	uint64_t k;
	void *v;
	int seen = 0;

	u64map_put(&m, 1, (void *)1);
	u64map_put(&m, 0, (void *)2);
	u64map_put(&m, U64MAP_TOMB, (void *)3);
	check(u64map_get(&m, 1) == (void *)1 && u64map_get(&m, 0) == (void *)2 &&
	      u64map_get(&m, U64MAP_TOMB) == (void *)3 && m.len == 3,
	      "u64map: keys 0, 1 and UINT64_MAX are three entries");
	for (size_t i = 0; u64map_next(&m, &i, &k, &v);)
		seen += (int)(uintptr_t)v;
	check(seen == 6, "u64map: iteration yields the reserved keys too");
	check(u64map_del(&m, 0) == (void *)2 && !u64map_get(&m, 0) && u64map_get(&m, 1) == (void *)1 &&
	      m.len == 2, "u64map: deleting key 0 leaves key 1");
	u64map_free(&m);
}

int main(void)
{
	collide("equal hashes", same_hash);
	collide("FNV-1a", NULL);
	pod_keys();
	u64_reserved();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
