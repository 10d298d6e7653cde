// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Pod attribution (connscope(8), POD ATTRIBUTION):
 *   cgroup id --(walk of the cgroup2 tree)--> cgroup path
 *             --(pods_parse_path)----------> pod UID, container id, runtime
 *             --(kubelet log directories)--> namespace, pod name, container name
 *
 * Every answer is cached per cgroup id. A lookup that has nothing more to learn is one
 * hash probe with no system call. Misses rescan the cgroup tree or the pods directory,
 * each at most once per second, and incomplete answers are retried with a backoff
 * until they are complete or MAX_TRIES is reached.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pods.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define NS_PER_SEC 1000000000ull
#define RESCAN_MIN_NS NS_PER_SEC   /* at most one walk, and one pods dir scan, per second */
#define RETRY_MAX_NS (30 * NS_PER_SEC)
#define MAX_TRIES 8                /* 1+2+4+8+16+30+30 s, then an answer is final */
#define WALK_MAX_DEPTH 32
#define WALK_MAX_CGROUPS (1u << 20)
#define CACHE_MAX (1u << 16)
#define MAX_SEGS 64
#define UID_LEN 36                 /* 8-4-4-4-12 */
#define UID_HASH_LEN 32            /* static pods: hash of the manifest, no dashes */
#define CTR_ID_LEN 64
#define SHORT_ID_LEN 12
#define CG_PATH_SIZE sizeof(((struct pod_info *)0)->cgroup_path)

/* ---- strings ------------------------------------------------------------------ */

static void copy_str(char *dst, size_t size, const char *src, size_t n)
{
	if (!size)
		return;
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool all_hex(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_hex(p[i]))
			return false;
	return true;
}

static void copy_lower(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = lower(src[i]);
	dst[n] = '\0';
}

/* DNS-1123 names (namespaces, pods, containers) use [a-z0-9.-]; never '_' or '/'. */
static bool k8s_name_ok(const char *p, size_t n, size_t size)
{
	if (n == 0 || n >= size)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = lower(p[i]);

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* A pod UID: 36 chars, 8-4-4-4-12 hex with sep between the groups, or 32 hex chars
 * (static pods). Written to out (>= 37 bytes) in lower case with dashes. */
static bool parse_uid(const char *p, size_t n, char sep, char *out)
{
	if (n == UID_HASH_LEN) {
		if (!all_hex(p, n))
			return false;
		copy_lower(out, p, n);
		return true;
	}
	if (n != UID_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? p[i] != sep : !is_hex(p[i]))
			return false;
		out[i] = dash ? '-' : lower(p[i]);
	}
	out[n] = '\0';
	return true;
}

static bool is_dot(const char *name)
{
	return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}

/* ---- hash table --------------------------------------------------------------- */

/* Open addressing with linear probing, at most half full. No deletion: the tables are
 * rebuilt whole (walk, pods dir scan, cache eviction). */
struct slot {
	uint64_t h;      /* the cgroup id itself, or the hash of key */
	const char *key; /* string key inside val; NULL in tables keyed by id */
	void *val;       /* NULL: empty slot */
};

struct htab {
	struct slot *s;
	size_t cap; /* 0 or a power of two */
	size_t n;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint64_t str_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

static struct slot *ht_slot(const struct htab *t, uint64_t h, const char *key)
{
	size_t mask = t->cap - 1, i = mix64(h) & mask;

	for (;; i = (i + 1) & mask) {
		struct slot *s = &t->s[i];

		if (!s->val || (s->h == h && (!key || !strcmp(s->key, key))))
			return s;
	}
}

static void *ht_get(const struct htab *t, uint64_t h, const char *key)
{
	return t->cap ? ht_slot(t, h, key)->val : NULL;
}

static void *ht_get_str(const struct htab *t, const char *key)
{
	return ht_get(t, str_hash(key), key);
}

static int ht_grow(struct htab *t)
{
	struct htab nt = { .cap = t->cap ? t->cap * 2 : 64 };

	nt.s = calloc(nt.cap, sizeof(*nt.s));
	if (!nt.s)
		return -1;
	for (size_t i = 0; i < t->cap; i++)
		if (t->s[i].val)
			*ht_slot(&nt, t->s[i].h, t->s[i].key) = t->s[i];
	nt.n = t->n;
	free(t->s);
	*t = nt;
	return 0;
}

/* 0: inserted; 1: the key is already there (first one wins); -1: out of memory.
 * On non-zero the caller still owns val. */
static int ht_put(struct htab *t, uint64_t h, const char *key, void *val)
{
	struct slot *s;

	if ((t->n + 1) * 2 > t->cap && ht_grow(t))
		return -1;
	s = ht_slot(t, h, key);
	if (s->val)
		return 1;
	*s = (struct slot){ .h = h, .key = key, .val = val };
	t->n++;
	return 0;
}

static void ht_free(struct htab *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(t->s[i].val);
	free(t->s);
	*t = (struct htab){ 0 };
}

/* ---- the resolver ------------------------------------------------------------- */

struct pod_ent {
	char uid[UID_LEN + 1];
	char ns[sizeof(((struct pod_info *)0)->namespace_)];
	char name[sizeof(((struct pod_info *)0)->name)];
	char only_ctr[sizeof(((struct pod_info *)0)->container)]; /* sole container log dir */
};

struct ctr_ent {
	char id[CTR_ID_LEN + 1];
	char name[sizeof(((struct pod_info *)0)->container)];
};

struct cg_entry {
	struct pod_info info;
	uint64_t retry_ns; /* mono time of the next attempt while !final */
	unsigned tries;
	bool final;        /* nothing more to learn: returned as is */
};

struct pod_resolver {
	char root[PATH_MAX];
	char pods_dir[PATH_MAX];
	char ctrs_dir[PATH_MAX];
	int root_fd;
	struct htab paths; /* cgroup id -> "/path" (char *), from the last walk */
	struct htab cache; /* cgroup id -> struct cg_entry *, what lookups return */
	struct htab pods;  /* pod uid -> struct pod_ent * */
	struct htab ctrs;  /* container id -> struct ctr_ent * */
	uint64_t walked_ns, pods_scanned_ns; /* mono time of the last scans */
	bool warned_walk;
};

static const struct pod_info no_info;

/* ---- cgroup2 mount ------------------------------------------------------------ */

static bool is_oct(char c)
{
	return c >= '0' && c <= '7';
}

/* Decode mountinfo's octal escapes (\040 space, \011 tab, \012 newline, \134 '\'). */
static bool unescape_mnt(const char *s, char *out, size_t size)
{
	size_t o = 0;

	while (*s) {
		char c = *s++;

		if (c == '\\' && is_oct(s[0]) && is_oct(s[1]) && is_oct(s[2])) {
			int v = (s[0] - '0') * 64 + (s[1] - '0') * 8 + (s[2] - '0');

			if (v == 0 || v > 255)
				return false;
			c = (char)v;
			s += 3;
		}
		if (o + 1 >= size)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	return o > 0 && out[0] == '/';
}

/*
 * One line of /proc/self/mountinfo (proc(5)); optional fields end at " - ":
 *   36 35 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
 *   id pa dev root mount-point          options  optional - fstype source   super-options
 * Returns 2 for a cgroup2 mount of the whole hierarchy, 1 for one of a subtree, else 0.
 */
static int mountinfo_cgroup2(char *line, char *mnt, size_t size)
{
	char *sep = strstr(line, " - "), *save = NULL, *f[5];

	if (!sep || strncmp(sep + 3, "cgroup2 ", 8))
		return 0;
	*sep = '\0';
	for (int i = 0; i < 5; i++) {
		f[i] = strtok_r(i ? NULL : line, " ", &save);
		if (!f[i])
			return 0;
	}
	if (!unescape_mnt(f[4], mnt, size))
		return 0;
	return strcmp(f[3], "/") ? 1 : 2;
}

/* How the cgroup2 view was found, for `connscope check`. */
static char cgroup2_how[256] = "mounted in connscope's mount namespace";

/*
 * No cgroup2 mount is visible: `ip netns exec` mounts a fresh /sys without one,
 * and so can a container with a private /sys. Mount a cgroup2 view of our own,
 * in a private mount namespace so that nothing outside connscope sees it: at
 * /sys/fs/cgroup (sysfs always has that directory), else in a new directory.
 * Done before any thread starts, so the whole process is in the namespace.
 */
static int private_cgroup2(char *out, size_t size)
{
	static char dir[] = "/tmp/connscope-cgroup2.XXXXXX";
	const char *at = "/sys/fs/cgroup";
	char why[160];

	if (unshare(CLONE_NEWNS)) {
		snprintf(why, sizeof(why), "unshare(CLONE_NEWNS): %s", strerror(errno));
		goto fail;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		snprintf(why, sizeof(why), "make / private: %s", strerror(errno));
		goto fail;
	}
	if (mount("cgroup2", at, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) {
		if (!mkdtemp(dir) || mount("cgroup2", dir, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) {
			snprintf(why, sizeof(why), "mount cgroup2: %s", strerror(errno));
			goto fail;
		}
		at = dir;
	}
	if (strlen(at) >= size) {
		snprintf(why, sizeof(why), "path too long");
		goto fail;
	}
	strcpy(out, at);
	snprintf(cgroup2_how, sizeof(cgroup2_how), "mounted by connscope in a private mount "
		 "namespace (none was visible, as under `ip netns exec`)");
	return 0;
fail:
	cs_fail("find the cgroup2 mount", "no cgroup2 entry in /proc/self/mountinfo, and "
		"connscope could not mount its own: %s", why);
	return -1;
}

const char *pods_cgroup2_how(void)
{
	return cgroup2_how;
}

static int find_cgroup2(char *out, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, mnt[PATH_MAX];
	size_t cap = 0;
	int best = 0;

	if (!f) {
		cs_fail("read /proc/self/mountinfo", "%s", strerror(errno));
		return -1;
	}
	while (best < 2 && getline(&line, &cap, f) > 0) {
		int k = mountinfo_cgroup2(line, mnt, sizeof(mnt));

		if (k > best && strlen(mnt) < size) {
			strcpy(out, mnt);
			best = k;
		}
	}
	free(line);
	fclose(f);
	if (!best)
		return private_cgroup2(out, size);
	return 0;
}

/* ---- cgroup tree walk --------------------------------------------------------- */

struct walk {
	struct htab tab;
	dev_t dev;
	size_t count;
	char path[CG_PATH_SIZE]; /* "" for the root while walking, "/a/b" below */
};

static void walk_add(struct walk *w, uint64_t id, const char *path)
{
	char *p = strdup(path);

	if (p && ht_put(&w->tab, id, NULL, p))
		free(p);
	w->count++;
}

static bool is_subdir(int dfd, const struct dirent *de)
{
	struct stat st;

	if (de->d_type != DT_UNKNOWN)
		return de->d_type == DT_DIR;
	return !fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) && S_ISDIR(st.st_mode);
}

/* Record every directory below dfd (consumed), whose path w->path holds in len chars.
 * Symlinks are not followed, other file systems not entered. Paths that do not fit a
 * pod_info are skipped with their subtree. Cgroups vanish mid-walk: errors skip. */
static void walk_dir(struct walk *w, int dfd, size_t len, int depth)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;

	if (!d) {
		close(dfd);
		return;
	}
	while (w->count < WALK_MAX_CGROUPS && (de = readdir(d))) {
		size_t n = strlen(de->d_name);
		struct stat st;
		int fd;

		if (is_dot(de->d_name) || len + 1 + n >= sizeof(w->path))
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) || st.st_dev != w->dev) {
			close(fd);
			continue;
		}
		w->path[len] = '/';
		memcpy(w->path + len + 1, de->d_name, n + 1);
		walk_add(w, (uint64_t)st.st_ino, w->path);
		if (depth + 1 < WALK_MAX_DEPTH)
			walk_dir(w, fd, len + 1 + n, depth + 1);
		else
			close(fd);
		w->path[len] = '\0';
	}
	closedir(d);
}

static int walk_cgroups(struct pod_resolver *r)
{
	struct walk w = { 0 };
	struct stat st;
	int fd = openat(r->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st)) {
		if (!r->warned_walk)
			cs_fail("walk the cgroup2 tree", "%s: %s", r->root, strerror(errno));
		r->warned_walk = true;
		if (fd >= 0)
			close(fd);
		return -1;
	}
	w.dev = st.st_dev;
	walk_add(&w, (uint64_t)st.st_ino, "/");
	walk_dir(&w, fd, 0, 0);
	ht_free(&r->paths);
	r->paths = w.tab;
	return 0;
}

static bool rescan_cgroups(struct pod_resolver *r, uint64_t now)
{
	if (now - r->walked_ns < RESCAN_MIN_NS)
		return false;
	r->walked_ns = now;
	return walk_cgroups(r) == 0;
}

/* Is the cgroup of the last walk still at this path? (One fstatat, once per new id.) */
static bool path_alive(const struct pod_resolver *r, const char *path, uint64_t id)
{
	struct stat st;

	if (fstatat(r->root_fd, path[1] ? path + 1 : ".", &st, AT_SYMLINK_NOFOLLOW))
		return false;
	return S_ISDIR(st.st_mode) && (uint64_t)st.st_ino == id;
}

static bool find_path(struct pod_resolver *r, uint64_t id, uint64_t now, char *out, size_t size)
{
	const char *p = ht_get(&r->paths, id, NULL);

	if (!p || !path_alive(r, p, id)) {
		if (!rescan_cgroups(r, now))
			return false;
		p = ht_get(&r->paths, id, NULL);
		if (!p)
			return false;
	}
	copy_str(out, size, p, strlen(p));
	return true;
}

/* ---- kubelet log directories -------------------------------------------------- */

/* <pods_dir>/<namespace>_<name>_<uid>: neither namespace nor name contains '_'. */
static bool parse_pod_dirname(const char *s, struct pod_ent *pe)
{
	const char *first = strchr(s, '_'), *last = strrchr(s, '_');

	if (!first || first == last)
		return false;
	if (!k8s_name_ok(s, (size_t)(first - s), sizeof(pe->ns)) ||
	    !k8s_name_ok(first + 1, (size_t)(last - first - 1), sizeof(pe->name)) ||
	    !parse_uid(last + 1, strlen(last + 1), '-', pe->uid))
		return false;
	copy_str(pe->ns, sizeof(pe->ns), s, (size_t)(first - s));
	copy_str(pe->name, sizeof(pe->name), first + 1, (size_t)(last - first - 1));
	return true;
}

/* <ctrs_dir>/<pod>_<namespace>_<container>-<64 hex id>.log */
static bool parse_ctr_logname(const char *s, struct ctr_ent *ce)
{
	size_t n = strlen(s);
	const char *id, *name, *us;

	if (n < 4 + CTR_ID_LEN + 1 || strcmp(s + n - 4, ".log"))
		return false;
	id = s + n - 4 - CTR_ID_LEN;
	if (id[-1] != '-' || !all_hex(id, CTR_ID_LEN))
		return false;
	us = memrchr(s, '_', (size_t)(id - 1 - s));
	if (!us || !memchr(s, '_', (size_t)(us - s)))
		return false;
	name = us + 1;
	if (!k8s_name_ok(name, (size_t)(id - 1 - name), sizeof(ce->name)))
		return false;
	copy_lower(ce->id, id, CTR_ID_LEN);
	copy_str(ce->name, sizeof(ce->name), name, (size_t)(id - 1 - name));
	return true;
}

/* The name of the only subdirectory of <dfd>/<name> (a pod's container log dirs). */
static void single_subdir(int dfd, const char *name, char *out, size_t size)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *de;
	int count = 0;
	DIR *d;

	out[0] = '\0';
	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while (count < 2 && (de = readdir(d))) {
		if (is_dot(de->d_name) || !is_subdir(dirfd(d), de))
			continue;
		if (++count == 1 && k8s_name_ok(de->d_name, strlen(de->d_name), size))
			copy_str(out, size, de->d_name, strlen(de->d_name));
	}
	if (count != 1)
		out[0] = '\0';
	closedir(d);
}

static void scan_pod_dirs(const char *dir, struct htab *out)
{
	DIR *d = opendir(dir); /* missing off Kubernetes: not an error */
	struct dirent *de;
	struct pod_ent pe;

	if (!d)
		return;
	while ((de = readdir(d))) {
		struct pod_ent *p;

		if (!is_subdir(dirfd(d), de) || !parse_pod_dirname(de->d_name, &pe))
			continue;
		single_subdir(dirfd(d), de->d_name, pe.only_ctr, sizeof(pe.only_ctr));
		p = malloc(sizeof(*p));
		if (!p)
			break;
		*p = pe;
		if (ht_put(out, str_hash(p->uid), p->uid, p))
			free(p);
	}
	closedir(d);
}

static void scan_ctr_logs(const char *dir, struct htab *out)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct ctr_ent ce;

	if (!d)
		return;
	while ((de = readdir(d))) {
		struct ctr_ent *c;

		if (!parse_ctr_logname(de->d_name, &ce))
			continue;
		c = malloc(sizeof(*c));
		if (!c)
			break;
		*c = ce;
		if (ht_put(out, str_hash(c->id), c->id, c))
			free(c);
	}
	closedir(d);
}

static void scan_pods(struct pod_resolver *r)
{
	struct htab pods = { 0 }, ctrs = { 0 };

	scan_pod_dirs(r->pods_dir, &pods);
	scan_ctr_logs(r->ctrs_dir, &ctrs);
	ht_free(&r->pods);
	ht_free(&r->ctrs);
	r->pods = pods;
	r->ctrs = ctrs;
}

static bool rescan_pods(struct pod_resolver *r, uint64_t now)
{
	if (now - r->pods_scanned_ns < RESCAN_MIN_NS)
		return false;
	r->pods_scanned_ns = now;
	scan_pods(r);
	return true;
}

/* Look key up in r->pods or r->ctrs, rescanning both once on a miss (rate-limited).
 * The result is valid until the next rescan: copy from it at once. */
static const void *find_named(struct pod_resolver *r, const struct htab *t, const char *key,
			      uint64_t now)
{
	const void *v = ht_get_str(t, key);

	if (!v && rescan_pods(r, now))
		v = ht_get_str(t, key);
	return v;
}

/* ---- cgroup path parser ------------------------------------------------------- */

/*
 * Kubelet cgroup layouts, found anywhere in the path (any prefix may come first, e.g.
 * /kubelet.slice/kubelet-kubepods.slice/... for kind, or /connscope-test-xyz/...).
 * <uid> is 8-4-4-4-12 hex, or 32 hex for static pods; <id> is 64 hex.
 *
 * systemd driver (a slice repeats its parent's name; '-' in the UID becomes '_'):
 *   /kubepods.slice/kubepods-pod<uid_>.slice/cri-containerd-<id>.scope     guaranteed
 *   /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/crio-<id>.scope
 *   /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/docker-<id>.scope
 *   e.g. kubepods-burstable-pod0f3c1a2b_7d4e_4f5a_9b6c_1d2e3f4a5b6c.slice
 *   Container scopes: cri-containerd-<id> (containerd), crio-<id> and crio-conmon-<id>
 *   (CRI-O, conmon counts as its container), docker-<id> (docker); ".scope" required.
 *
 * cgroupfs driver (UID with dashes; the runtime only shows if the id has a prefix):
 *   /kubepods/pod<uid>/<id>                      guaranteed
 *   /kubepods/burstable/pod<uid>/<id>
 *   /kubepods/besteffort/pod<uid>/crio-<id>
 *
 * The pod cgroup itself (no container segment) is a pod with no container. Segments
 * below the container (e.g. .../cri-containerd-<id>.scope/init.scope) belong to it.
 * When pod segments nest, the deepest one wins.
 */

struct seg {
	const char *p;
	size_t n;
};

static bool seg_is(struct seg s, const char *lit)
{
	return s.n == strlen(lit) && !memcmp(s.p, lit, s.n);
}

static bool seg_cut_prefix(struct seg *s, const char *pre)
{
	size_t n = strlen(pre);

	if (s->n < n || memcmp(s->p, pre, n))
		return false;
	s->p += n;
	s->n -= n;
	return true;
}

static bool seg_cut_suffix(struct seg *s, const char *suf)
{
	size_t n = strlen(suf);

	if (s->n < n || memcmp(s->p + s->n - n, suf, n))
		return false;
	s->n -= n;
	return true;
}

/* Does s end with tail, which starts s or follows a '-'? */
static bool seg_ends_word(struct seg s, const char *tail)
{
	size_t n = strlen(tail);

	if (s.n < n || memcmp(s.p + s.n - n, tail, n))
		return false;
	return s.n == n || s.p[s.n - n - 1] == '-';
}

/* Split into segments; -1 for an overlong path, too many segments, "." or "..". */
static int split_path(const char *path, struct seg *segs, int max)
{
	size_t len = strnlen(path, CG_PATH_SIZE), i = 0;
	int n = 0;

	if (len >= CG_PATH_SIZE)
		return -1;
	while (i < len) {
		size_t start;

		while (i < len && path[i] == '/')
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && path[i] != '/')
			i++;
		if (n == max)
			return -1;
		segs[n] = (struct seg){ path + start, i - start };
		if (seg_is(segs[n], ".") || seg_is(segs[n], ".."))
			return -1;
		n++;
	}
	return n;
}

static bool systemd_pod_seg(struct seg s, char *uid)
{
	static const char *const heads[] = {
		"kubepods-pod", "kubepods-burstable-pod", "kubepods-besteffort-pod",
	};
	static const size_t uid_lens[] = { UID_LEN, UID_HASH_LEN };

	if (!seg_cut_suffix(&s, ".slice"))
		return false;
	for (size_t i = 0; i < 2; i++) {
		struct seg head = s;

		if (s.n <= uid_lens[i])
			continue;
		head.n -= uid_lens[i];
		for (size_t j = 0; j < sizeof(heads) / sizeof(heads[0]); j++)
			if (seg_ends_word(head, heads[j]) &&
			    parse_uid(s.p + head.n, uid_lens[i], '_', uid))
				return true;
	}
	return false;
}

static bool cgroupfs_pod_seg(const struct seg *segs, int i, char *uid)
{
	struct seg s = segs[i];

	if (!seg_cut_prefix(&s, "pod") || !parse_uid(s.p, s.n, '-', uid))
		return false;
	if (i >= 1 && seg_is(segs[i - 1], "kubepods"))
		return true;
	return i >= 2 && seg_is(segs[i - 2], "kubepods") &&
	       (seg_is(segs[i - 1], "burstable") || seg_is(segs[i - 1], "besteffort"));
}

static const struct {
	const char *prefix;
	const char *runtime;
} runtimes[] = {
	{ "cri-containerd-", "containerd" },
	{ "crio-conmon-", "cri-o" }, /* before "crio-" */
	{ "crio-", "cri-o" },
	{ "docker-", "docker" },
};

static void container_seg(struct seg s, bool systemd, struct pod_info *out)
{
	const char *rt = "";

	if (systemd && !seg_cut_suffix(&s, ".scope"))
		return;
	for (size_t i = 0; i < sizeof(runtimes) / sizeof(runtimes[0]); i++) {
		if (seg_cut_prefix(&s, runtimes[i].prefix)) {
			rt = runtimes[i].runtime;
			break;
		}
	}
	if ((systemd && !*rt) || s.n != CTR_ID_LEN || !all_hex(s.p, s.n))
		return;
	copy_lower(out->container_id, s.p, CTR_ID_LEN);
	copy_str(out->runtime, sizeof(out->runtime), rt, strlen(rt));
}

/* The index of the deepest pod segment of segs[0..n) (its UID in uid), or -1. */
static int pod_seg_index(const struct seg *segs, int n, char *uid, bool *systemd)
{
	for (int i = n - 1; i >= 0; i--) {
		if (systemd_pod_seg(segs[i], uid)) {
			*systemd = true;
			return i;
		}
		if (cgroupfs_pod_seg(segs, i, uid)) {
			*systemd = false;
			return i;
		}
	}
	return -1;
}

bool pods_parse_path(const char *cgroup_path, struct pod_info *out)
{
	struct seg segs[MAX_SEGS];
	bool systemd = false;
	int n, i;

	out->is_pod = false;
	out->uid[0] = out->container_id[0] = out->runtime[0] = '\0';
	if (!cgroup_path || (n = split_path(cgroup_path, segs, MAX_SEGS)) < 0)
		return false;
	i = pod_seg_index(segs, n, out->uid, &systemd);
	if (i < 0) {
		out->uid[0] = '\0';
		return false;
	}
	out->is_pod = true;
	if (i + 1 < n)
		container_seg(segs[i + 1], systemd, out);
	return true;
}

bool pods_pod_path(const char *cgroup_path, char *out, size_t size, char *uid)
{
	struct seg segs[MAX_SEGS];
	char u[UID_LEN + 1];
	bool systemd;
	int n, i;

	if (!cgroup_path || (n = split_path(cgroup_path, segs, MAX_SEGS)) < 0 ||
	    (i = pod_seg_index(segs, n, u, &systemd)) < 0)
		return false;
	n = (int)(segs[i].p + segs[i].n - cgroup_path);
	if ((size_t)n >= size)
		return false;
	copy_str(out, size, cgroup_path, (size_t)n);
	if (uid)
		copy_str(uid, UID_LEN + 1, u, strlen(u));
	return true;
}

/* ---- lookups ------------------------------------------------------------------ */

/* Name, namespace and container name. True when complete (nothing left to retry). */
static bool fill_names(struct pod_resolver *r, struct pod_info *pi, uint64_t now)
{
	char only[sizeof(pi->container)] = "";
	const struct pod_ent *pe = find_named(r, &r->pods, pi->uid, now);
	const struct ctr_ent *ce;

	pi->known = pe != NULL;
	pi->namespace_[0] = pi->name[0] = pi->container[0] = '\0';
	if (pe) {
		copy_str(pi->namespace_, sizeof(pi->namespace_), pe->ns, strlen(pe->ns));
		copy_str(pi->name, sizeof(pi->name), pe->name, strlen(pe->name));
		copy_str(only, sizeof(only), pe->only_ctr, strlen(pe->only_ctr));
	}
	if (!pi->container_id[0])
		return pi->known;
	ce = find_named(r, &r->ctrs, pi->container_id, now); /* may free pe */
	if (ce)
		copy_str(pi->container, sizeof(pi->container), ce->name, strlen(ce->name));
	else if (only[0])
		copy_str(pi->container, sizeof(pi->container), only, strlen(only));
	else
		copy_str(pi->container, sizeof(pi->container), pi->container_id, SHORT_ID_LEN);
	return pi->known && ce;
}

static void retry_later(struct cg_entry *e, uint64_t now)
{
	uint64_t wait = RESCAN_MIN_NS << (e->tries < 5 ? e->tries : 5);

	e->retry_ns = now + (wait < RETRY_MAX_NS ? wait : RETRY_MAX_NS);
	if (++e->tries >= MAX_TRIES)
		e->final = true;
}

static void resolve(struct pod_resolver *r, struct cg_entry *e, uint64_t id, uint64_t now)
{
	struct pod_info *pi = &e->info;

	if (!pi->cgroup_path[0]) {
		if (!find_path(r, id, now, pi->cgroup_path, sizeof(pi->cgroup_path))) {
			retry_later(e, now);
			return;
		}
		e->tries = 0;
		if (!pods_parse_path(pi->cgroup_path, pi)) {
			e->final = true;
			return;
		}
	}
	if (fill_names(r, pi, now))
		e->final = true;
	else
		retry_later(e, now);
}

/* A full cache keeps what existed at the last walk, up to half its size. */
static void cache_evict(struct pod_resolver *r)
{
	struct htab keep = { 0 };

	for (size_t i = 0; i < r->cache.cap; i++) {
		struct slot *s = &r->cache.s[i];

		if (!s->val)
			continue;
		if (keep.n < CACHE_MAX / 2 && ht_get(&r->paths, s->h, NULL) &&
		    !ht_put(&keep, s->h, NULL, s->val))
			continue;
		free(s->val);
	}
	free(r->cache.s);
	r->cache = keep;
}

static struct cg_entry *cache_add(struct pod_resolver *r, uint64_t id)
{
	struct cg_entry *e;

	if (r->cache.n >= CACHE_MAX)
		cache_evict(r);
	e = calloc(1, sizeof(*e));
	if (e && ht_put(&r->cache, id, NULL, e)) {
		free(e);
		e = NULL;
	}
	return e;
}

const struct pod_info *pods_lookup(struct pod_resolver *r, uint64_t cgroup_id)
{
	struct cg_entry *e;
	uint64_t now;

	if (!r)
		return &no_info;
	e = ht_get(&r->cache, cgroup_id, NULL);
	if (e && e->final)
		return &e->info; /* the hot path: one probe, no system call */
	now = cs_mono_ns();
	if (e && now < e->retry_ns)
		return &e->info;
	if (!e)
		e = cache_add(r, cgroup_id);
	if (!e)
		return &no_info;
	resolve(r, e, cgroup_id, now);
	return &e->info;
}

/* ---- setup -------------------------------------------------------------------- */

static int init_root(struct pod_resolver *r, const char *root)
{
	if (!root) {
		if (find_cgroup2(r->root, sizeof(r->root)))
			return -1;
	} else if (strlen(root) >= sizeof(r->root)) {
		cs_fail("open the cgroup2 root", "path too long");
		return -1;
	} else {
		strcpy(r->root, root);
	}
	r->root_fd = open(r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->root_fd < 0) {
		cs_fail("open the cgroup2 root", "%s: %s", r->root, strerror(errno));
		return -1;
	}
	return 0;
}

/* pods_dir and its sibling "containers" (/var/log/pods -> /var/log/containers). */
static int init_pods_dirs(struct pod_resolver *r, const char *dir)
{
	size_t n = strlen(dir);
	const char *slash;
	int len;

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n + sizeof("/containers") > sizeof(r->pods_dir)) {
		cs_fail("use the pods dir", "path too long");
		return -1;
	}
	copy_str(r->pods_dir, sizeof(r->pods_dir), dir, n);
	slash = memrchr(r->pods_dir, '/', n);
	if (!slash)
		len = snprintf(r->ctrs_dir, sizeof(r->ctrs_dir), "./containers");
	else
		len = snprintf(r->ctrs_dir, sizeof(r->ctrs_dir), "%.*s/containers",
			       (int)(slash - r->pods_dir), r->pods_dir);
	return len < 0 || (size_t)len >= sizeof(r->ctrs_dir) ? -1 : 0;
}

struct pod_resolver *pods_new(const char *cgroup2_root, const char *pods_dir)
{
	struct pod_resolver *r = calloc(1, sizeof(*r));

	if (!r) {
		cs_fail("create the pod resolver", "%s", strerror(errno));
		return NULL;
	}
	r->root_fd = -1;
	if (!pods_dir || !*pods_dir)
		pods_dir = "/var/log/pods";
	if (init_root(r, cgroup2_root) || init_pods_dirs(r, pods_dir)) {
		pods_free(r);
		return NULL;
	}
	r->walked_ns = cs_mono_ns();
	walk_cgroups(r);
	r->pods_scanned_ns = cs_mono_ns();
	scan_pods(r);
	return r;
}

void pods_free(struct pod_resolver *r)
{
	if (!r)
		return;
	ht_free(&r->paths);
	ht_free(&r->cache);
	ht_free(&r->pods);
	ht_free(&r->ctrs);
	if (r->root_fd >= 0)
		close(r->root_fd);
	free(r);
}

const char *pods_cgroup2_root(const struct pod_resolver *r)
{
	return r ? r->root : "";
}

/* ---- from pods to their processes --------------------------------------------- */

/* The pod cgroup of uid in the last walk (the first path below it will do). */
static bool pod_cgroup_of_uid(const struct pod_resolver *r, const char *uid, char *out,
			      size_t size)
{
	char u[UID_LEN + 1];

	for (size_t i = 0; i < r->paths.cap; i++) {
		const char *p = r->paths.s[i].val;

		if (p && pods_pod_path(p, out, size, u) && !strcmp(u, uid))
			return true;
	}
	return false;
}

int pods_find(struct pod_resolver *r, const char *ns, const char *name, bool refresh,
	      void (*fn)(const char *path, const char *uid, const char *name, void *arg),
	      void *arg)
{
	char path[CG_PATH_SIZE];
	uint64_t now = cs_mono_ns();
	int found = 0;

	if (!r || !ns)
		return 0;
	if (refresh) {
		rescan_pods(r, now);
		rescan_cgroups(r, now);
	}
	for (size_t i = 0; i < r->pods.cap; i++) {
		const struct pod_ent *pe = r->pods.s[i].val;

		if (!pe || strcmp(pe->ns, ns) || (name && strcmp(pe->name, name)))
			continue;
		if (!pod_cgroup_of_uid(r, pe->uid, path, sizeof(path)))
			continue;
		found++;
		if (fn)
			fn(path, pe->uid, pe->name, arg);
	}
	return found;
}

static int pids_add(struct pid_list *l, long pid)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		int *p = realloc(l->pids, cap * sizeof(*p));

		if (!p)
			return -1;
		l->pids = p;
		l->cap = cap;
	}
	l->pids[l->n++] = (int)pid;
	return 0;
}

/* cgroup.procs of the cgroup open at dfd (consumed) and of those below it. */
static void procs_below(int dfd, struct pid_list *l, int depth)
{
	char buf[4096], *line = NULL;
	size_t cap = 0;
	struct dirent *de;
	FILE *f;
	DIR *d;
	int fd = openat(dfd, "cgroup.procs", O_RDONLY | O_CLOEXEC);

	if (fd >= 0 && (f = fdopen(fd, "re"))) {
		setvbuf(f, buf, _IOFBF, sizeof(buf));
		while (getline(&line, &cap, f) > 0) {
			char *end;
			long pid = strtol(line, &end, 10);

			if (pid > 0 && (*end == '\n' || !*end) && pids_add(l, pid))
				break;
		}
		free(line);
		fclose(f);
	} else if (fd >= 0) {
		close(fd);
	}
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	while (depth < WALK_MAX_DEPTH && (de = readdir(d))) {
		int sub;

		if (is_dot(de->d_name) || !is_subdir(dirfd(d), de))
			continue;
		sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			procs_below(sub, l, depth + 1);
	}
	closedir(d);
}

int pods_cgroup_procs(struct pod_resolver *r, const char *path, struct pid_list *l)
{
	int fd;

	if (!r || !path || path[0] != '/' || strstr(path, "/.."))
		return -1;
	fd = openat(r->root_fd, path[1] ? path + 1 : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	procs_below(fd, l, 0);
	return 0;
}

/* ---- filters and keys --------------------------------------------------------- */

bool pods_match(const struct pod_info *p, const char *pod_filter, const char *ns_filter)
{
	const char *name = pod_filter, *slash;

	if (!pod_filter && !ns_filter)
		return true;
	if (!p || !p->known)
		return false;
	if (ns_filter && strcmp(ns_filter, p->namespace_))
		return false;
	if (!pod_filter)
		return true;
	slash = strchr(pod_filter, '/');
	if (slash) {
		size_t n = (size_t)(slash - pod_filter);

		if (n != strlen(p->namespace_) || memcmp(pod_filter, p->namespace_, n))
			return false;
		name = slash + 1;
	}
	return !strcmp(name, p->name);
}

void pods_key(const struct pod_info *p, uint64_t cgroup_id, char *buf, unsigned len)
{
	if (!buf || !len)
		return;
	if (p && p->known)
		snprintf(buf, len, "%s/%s", p->namespace_, p->name);
	else if (p && p->is_pod)
		snprintf(buf, len, "pod:%s", p->uid);
	else if (p && p->cgroup_path[0])
		snprintf(buf, len, "%s", p->cgroup_path);
	else if (p && p->ip[0])
		snprintf(buf, len, "ip:%s", p->ip);
	else
		snprintf(buf, len, "cgroup:%llu", (unsigned long long)cgroup_id);
}
