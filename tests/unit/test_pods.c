// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit test of user/agg/pods.c: the kubelet cgroup path parser, and the resolver end to
 * end over a fake cgroup2 tree and fake kubelet log directories in a temporary dir.
 *
 *   scripts/test.sh unit    (built against connscope's libraries)
 */
#define _GNU_SOURCE
#include "pods.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static void check_str(const char *what, const char *got, const char *want)
{
	bool ok = !strcmp(got, want);

	if (ok)
		check(true, "%s = \"%s\"", what, want);
	else
		check(false, "%s = \"%s\", want \"%s\"", what, got, want);
}

/* ---- test data ---------------------------------------------------------------- */

#define UID_A "0f3c1a2b-7d4e-4f5a-9b6c-1d2e3f4a5b6c"
#define UID_A_ "0f3c1a2b_7d4e_4f5a_9b6c_1d2e3f4a5b6c"
#define UID_B "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
#define UID_D "deadbeef-0000-4111-8222-333344445555"
#define UID_E "11111111-2222-4333-8444-555566667777"
#define UID_E_ "11111111_2222_4333_8444_555566667777"
#define UID_S "6e2f9d1c0b4a38577a6d5c4b3a291807" /* static pod: 32 hex */

#define ID1 "1111111111111111111111111111111111111111111111111111111111111111"
#define ID2 "2222222222222222222222222222222222222222222222222222222222222222"
#define ID3 "3333333333333333333333333333333333333333333333333333333333333333"
#define IDB "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define IDC "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define IDD "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
#define IDE "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

#define SD_BURST "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_A_ ".slice"
#define SD_BEST "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID_A_ ".slice"
#define SD_GUAR "/kubepods.slice/kubepods-pod" UID_A_ ".slice"

/* ---- pods_parse_path ---------------------------------------------------------- */

struct parse_case {
	const char *what, *path;
	bool is_pod;
	const char *uid, *cid, *runtime;
};

static const struct parse_case parse_cases[] = {
	{ "systemd burstable containerd", SD_BURST "/cri-containerd-" ID1 ".scope",
	  true, UID_A, ID1, "containerd" },
	{ "systemd besteffort cri-o", SD_BEST "/crio-" ID2 ".scope", true, UID_A, ID2, "cri-o" },
	{ "systemd cri-o conmon", SD_BEST "/crio-conmon-" ID2 ".scope", true, UID_A, ID2, "cri-o" },
	{ "systemd guaranteed docker", SD_GUAR "/docker-" ID3 ".scope", true, UID_A, ID3, "docker" },
	{ "systemd pod-level cgroup", SD_BURST, true, UID_A, "", "" },
	{ "systemd below the container", SD_BURST "/cri-containerd-" ID1 ".scope/init.scope",
	  true, UID_A, ID1, "containerd" },
	{ "systemd static pod (32 hex)",
	  "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_S
	  ".slice/cri-containerd-" ID1 ".scope", true, UID_S, ID1, "containerd" },
	{ "systemd kind prefix",
	  "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
	  "kubelet-kubepods-besteffort-pod" UID_A_ ".slice/cri-containerd-" ID1 ".scope",
	  true, UID_A, ID1, "containerd" },
	{ "systemd test prefix", "/connscope-test-xyz" SD_GUAR "/crio-" ID2 ".scope",
	  true, UID_A, ID2, "cri-o" },
	{ "systemd upper-case hex is normalised",
	  "/kubepods.slice/kubepods-pod0F3C1A2B_7D4E_4F5A_9B6C_1D2E3F4A5B6C.slice", true, UID_A,
	  "", "" },
	{ "systemd unknown scope: pod without container", SD_BURST "/rkt-" ID1 ".scope",
	  true, UID_A, "", "" },
	{ "systemd short container id", SD_BURST "/cri-containerd-" ID1 "1.scope",
	  true, UID_A, "", "" },
	{ "systemd container without .scope", SD_BURST "/cri-containerd-" ID1,
	  true, UID_A, "", "" },
	{ "cgroupfs burstable plain id", "/kubepods/burstable/pod" UID_B "/" IDB,
	  true, UID_B, IDB, "" },
	{ "cgroupfs besteffort cri-o", "/kubepods/besteffort/pod" UID_B "/crio-" IDB,
	  true, UID_B, IDB, "cri-o" },
	{ "cgroupfs guaranteed docker", "/kubepods/pod" UID_B "/docker-" IDB,
	  true, UID_B, IDB, "docker" },
	{ "cgroupfs containerd prefix", "/kubepods/pod" UID_B "/cri-containerd-" IDB,
	  true, UID_B, IDB, "containerd" },
	{ "cgroupfs pod-level cgroup", "/kubepods/burstable/pod" UID_B, true, UID_B, "", "" },
	{ "cgroupfs static pod", "/kubepods/besteffort/pod" UID_S "/" IDB, true, UID_S, IDB, "" },
	{ "cgroupfs with prefix", "/kubelet/kubepods/burstable/pod" UID_B "/" IDB,
	  true, UID_B, IDB, "" },
	{ "cgroupfs double slashes", "//kubepods//pod" UID_B "//" IDB, true, UID_B, IDB, "" },
	{ "nested pods: the deepest wins",
	  "/kubepods/pod" UID_B "/" IDB "/kubepods.slice/kubepods-pod" UID_A_ ".slice",
	  true, UID_A, "", "" },

	{ "garbage: empty", "", false, "", "", "" },
	{ "garbage: root", "/", false, "", "", "" },
	{ "garbage: not a pod", "/system.slice/containerd.service", false, "", "", "" },
	{ "garbage: uid too short",
	  "/kubepods.slice/kubepods-pod0f3c1a2b_7d4e_4f5a_9b6c_1d2e3f4a5b6.slice", false, "", "", "" },
	{ "garbage: uid too long", "/kubepods/pod" UID_B "0/" IDB, false, "", "", "" },
	{ "garbage: non-hex uid",
	  "/kubepods.slice/kubepods-pod0f3c1a2b_7d4e_4f5a_9b6c_1d2e3f4a5b6g.slice", false, "", "", "" },
	{ "garbage: 32 chars non-hex", "/kubepods/podzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
	  false, "", "", "" },
	{ "garbage: 31 hex", "/kubepods/pod6e2f9d1c0b4a38577a6d5c4b3a29180", false, "", "", "" },
	{ "garbage: dashes in a systemd uid",
	  "/kubepods.slice/kubepods-pod" UID_A ".slice", false, "", "", "" },
	{ "garbage: underscores in a cgroupfs uid", "/kubepods/pod" UID_A_, false, "", "", "" },
	{ "garbage: misplaced dashes",
	  "/kubepods/pod0f3c1a2b7-d4e-4f5a-9b6c-1d2e3f4a5b6c", false, "", "", "" },
	{ "garbage: cgroupfs pod without kubepods", "/foo/pod" UID_B "/" IDB, false, "", "", "" },
	{ "garbage: cgroupfs wrong qos", "/kubepods/guaranteed/pod" UID_B, false, "", "", "" },
	{ "garbage: slice suffix", SD_BURST "x", false, "", "", "" },
	{ "garbage: word boundary", "/xkubepods-pod" UID_A_ ".slice", false, "", "", "" },
	{ "garbage: no kubepods", "/burstable-pod" UID_A_ ".slice", false, "", "", "" },
	{ "garbage: .. after the pod", "/kubepods/burstable/pod" UID_B "/../../etc",
	  false, "", "", "" },
	{ "garbage: .. before the pod", "/kubepods/../kubepods/pod" UID_B, false, "", "", "" },
	{ "garbage: . segment", "/kubepods/./pod" UID_B, false, "", "", "" },
	{ "garbage: .. as uid", "/kubepods/pod..", false, "", "", "" },
};

static void test_parse_case(const struct parse_case *c)
{
	struct pod_info pi;
	bool ret;

	memset(&pi, 0x5a, sizeof(pi)); /* the parser must set every field it owns */
	ret = pods_parse_path(c->path, &pi);
	check(ret == c->is_pod && pi.is_pod == c->is_pod, "parse %s: is_pod %d", c->what, c->is_pod);
	check(!strcmp(pi.uid, c->uid) && !strcmp(pi.container_id, c->cid) &&
	      !strcmp(pi.runtime, c->runtime),
	      "parse %s: uid \"%.40s\" container_id \"%.72s\" runtime \"%.16s\"", c->what,
	      pi.uid, pi.container_id, pi.runtime);
}

/* Every prefix of every case: no crash, and any match is well formed. */
static void test_parse_truncations(void)
{
	bool ok = true;

	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const char *path = parse_cases[i].path;
		size_t n = strlen(path);

		for (size_t cut = 0; cut <= n; cut++) {
			char *s = strndup(path, cut);
			struct pod_info pi;

			if (pods_parse_path(s, &pi)) {
				size_t ul = strlen(pi.uid), cl = strlen(pi.container_id);

				ok &= pi.is_pod && (ul == 36 || ul == 32) && (cl == 0 || cl == 64);
			}
			free(s);
		}
	}
	check(ok, "parse every truncation of every case");
}

static void test_parse_limits(void)
{
	char long_path[2048], deep[512];
	struct pod_info pi;
	size_t n = 0;

	memset(long_path, 'a', 600);
	long_path[0] = '/';
	snprintf(long_path + 600, sizeof(long_path) - 600, "%s", SD_BURST);
	check(!pods_parse_path(long_path, &pi) && !pi.is_pod && !pi.uid[0],
	      "parse garbage: overlong path (%zu chars)", strlen(long_path));

	while (n + 2 < 200)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "/a");
	snprintf(deep + n, sizeof(deep) - n, "%s", "/kubepods/pod" UID_B);
	check(!pods_parse_path(deep, &pi) && !pi.is_pod, "parse garbage: too many segments");
	check(!pods_parse_path(NULL, &pi) && !pi.is_pod, "parse garbage: NULL path");
}

/* ---- end to end: fake cgroup2 root, pods dir and containers dir --------------- */

static char tmp[64];

static void mkdirs(const char *rel)
{
	char path[1024], *p;

	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	for (p = path + strlen(tmp) + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(path, 0755);
		*p = '/';
	}
	if (mkdir(path, 0755) && errno != EEXIST)
		perror(path);
}

static void touch(const char *rel)
{
	char path[1024];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
}

static uint64_t ino_of(const char *rel)
{
	char path[1024];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	if (stat(path, &st)) {
		perror(path);
		return 0;
	}
	return (uint64_t)st.st_ino;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

#define CG_A "cg" SD_BURST
#define CG_B "cg/kubepods/besteffort/pod" UID_B
#define CG_S "cg/kubepods.slice/kubepods-pod" UID_S ".slice"
#define CG_D "cg/kubepods/pod" UID_D
#define CG_E "cg/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID_E_ ".slice"

static void build_tree(void)
{
	mkdirs(CG_A "/cri-containerd-" ID1 ".scope");
	mkdirs(CG_A "/cri-containerd-" ID2 ".scope");
	mkdirs(CG_A "/cri-containerd-" ID3 ".scope"); /* pause: no log */
	mkdirs(CG_B "/crio-" IDB);
	mkdirs(CG_S "/docker-" IDC ".scope");
	mkdirs(CG_D "/" IDD);
	mkdirs("cg/system.slice/sshd.service");
	mkdirs("cg/gone");
	touch("cg/cgroup.procs");

	/* pod A: two containers logged, names from the containers dir */
	mkdirs("log/pods/shop_cart-7d9f8-abcde_" UID_A "/cart");
	mkdirs("log/pods/shop_cart-7d9f8-abcde_" UID_A "/istio-proxy");
	mkdirs("log/containers");
	touch("log/containers/cart-7d9f8-abcde_shop_cart-" ID1 ".log");
	touch("log/containers/cart-7d9f8-abcde_shop_istio-proxy-" ID2 ".log");
	/* pod B: one container log dir, no containers dir entry */
	mkdirs("log/pods/default_web_" UID_B "/nginx");
	/* static pod */
	mkdirs("log/pods/kube-system_etcd-node1_" UID_S "/etcd");
	touch("log/containers/etcd-node1_kube-system_etcd-" IDC ".log");
	/* junk that must be ignored */
	mkdirs("log/pods/no-uid-here");
	mkdirs("log/pods/a_b_c_" UID_D); /* '_' inside a name: mismatched uid is fine */
	touch("log/pods/ns_file_" UID_D);
	touch("log/containers/junk.log");
	touch("log/containers/a_b-" ID1 ".log");
}

static void add_symlink(void)
{
	char target[1024], link[1024];

	snprintf(target, sizeof(target), "%s/cg/kubepods", tmp);
	snprintf(link, sizeof(link), "%s/cg/link", tmp);
	if (symlink(target, link))
		perror(link);
}

static void expect_pod(struct pod_resolver *r, const char *what, uint64_t id, const char *path,
		       const char *ns, const char *name, const char *uid, const char *ctr,
		       const char *cid, const char *rt)
{
	struct pod_info pi = *pods_lookup(r, id);
	char label[128];

	printf("-- %s (cgroup id %llu)\n", what, (unsigned long long)id);
	snprintf(label, sizeof(label), "%s cgroup_path", what);
	check_str(label, pi.cgroup_path, path);
	check(pi.is_pod == (uid[0] != '\0'), "%s is_pod %d", what, pi.is_pod);
	check(pi.known == (name[0] != '\0'), "%s known %d", what, pi.known);
	snprintf(label, sizeof(label), "%s namespace", what);
	check_str(label, pi.namespace_, ns);
	snprintf(label, sizeof(label), "%s name", what);
	check_str(label, pi.name, name);
	snprintf(label, sizeof(label), "%s uid", what);
	check_str(label, pi.uid, uid);
	snprintf(label, sizeof(label), "%s container", what);
	check_str(label, pi.container, ctr);
	snprintf(label, sizeof(label), "%s container_id", what);
	check_str(label, pi.container_id, cid);
	snprintf(label, sizeof(label), "%s runtime", what);
	check_str(label, pi.runtime, rt);
}

static void test_filters(struct pod_resolver *r)
{
	struct pod_info a = *pods_lookup(r, ino_of(CG_A "/cri-containerd-" ID1 ".scope"));
	struct pod_info d = *pods_lookup(r, ino_of(CG_D "/" IDD));
	struct pod_info sshd = *pods_lookup(r, ino_of("cg/system.slice/sshd.service"));
	char key[256], small[6];

	check(pods_match(&a, NULL, NULL), "match: no filter");
	check(pods_match(&a, "cart-7d9f8-abcde", NULL), "match: --pod NAME");
	check(pods_match(&a, "shop/cart-7d9f8-abcde", NULL), "match: --pod NS/NAME");
	check(!pods_match(&a, "other/cart-7d9f8-abcde", NULL), "match: --pod wrong NS/NAME");
	check(!pods_match(&a, "cart", NULL), "match: --pod prefix is not a match");
	check(pods_match(&a, NULL, "shop"), "match: --namespace");
	check(!pods_match(&a, NULL, "default"), "match: --namespace other");
	check(!pods_match(&a, "shop/cart-7d9f8-abcde", "default"), "match: both, ns differs");
	check(pods_match(&d, NULL, NULL), "match: unknown pod, no filter");
	check(!pods_match(&d, NULL, ""), "match: unknown pod never matches --namespace");
	check(!pods_match(&d, UID_D, NULL), "match: unknown pod never matches --pod");
	check(!pods_match(&sshd, NULL, "default"), "match: non-pod never matches");
	check(!pods_match(NULL, "x", NULL), "match: NULL pod with a filter");

	pods_key(&a, 1, key, sizeof(key));
	check_str("key known pod", key, "shop/cart-7d9f8-abcde");
	pods_key(&d, 1, key, sizeof(key));
	check_str("key unknown pod", key, "pod:" UID_D);
	pods_key(&sshd, 1, key, sizeof(key));
	check_str("key non-pod", key, "/system.slice/sshd.service");
	pods_key(pods_lookup(r, 0xfeedfacecafebeefull), 0xfeedfacecafebeefull, key, sizeof(key));
	check_str("key missing cgroup", key, "cgroup:18369614221190020847");
	pods_key(&a, 1, small, sizeof(small));
	check_str("key truncated", small, "shop/");
	pods_key(&a, 1, small, 0);
	check(true, "key with len 0");
}

static void put(const char *rel, const char *text)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		return;
	}
	fputs(text, f);
	fclose(f);
}

struct found {
	char path[512], uid[40];
	int n;
};

static void on_found(const char *path, const char *uid, const char *name, void *arg)
{
	struct found *f = arg;

	(void)name;

	snprintf(f->path, sizeof(f->path), "%s", path);
	snprintf(f->uid, sizeof(f->uid), "%s", uid);
	f->n++;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* NS/NAME -> the pod's cgroup -> the processes of it and of its containers. */
static void test_find(struct pod_resolver *r)
{
	struct pid_list l = { 0 };
	struct found f = { 0 };
	char out[512], uid[40], tiny[8];

	printf("-- pods_pod_path, pods_find, pods_cgroup_procs\n");
	check(pods_pod_path(SD_BURST "/cri-containerd-" ID1 ".scope", out, sizeof(out), uid),
	      "pod path of a systemd container");
	check_str("pod path (systemd)", out, SD_BURST);
	check_str("pod path uid", uid, UID_A);
	check(pods_pod_path("/x/kubepods/besteffort/pod" UID_B "/crio-" IDB, out, sizeof(out),
			    NULL), "pod path of a cgroupfs container");
	check_str("pod path (cgroupfs)", out, "/x/kubepods/besteffort/pod" UID_B);
	check(pods_pod_path(SD_GUAR, out, sizeof(out), NULL), "pod path of a pod cgroup");
	check_str("pod path (the pod itself)", out, SD_GUAR);
	check(!pods_pod_path("/system.slice/sshd.service", out, sizeof(out), NULL),
	      "pod path: not a pod");
	check(!pods_pod_path(SD_BURST, tiny, sizeof(tiny), NULL), "pod path: no room");

	check(pods_find(r, "shop", "cart-7d9f8-abcde", false, on_found, &f) == 1 && f.n == 1,
	      "find shop/cart-7d9f8-abcde");
	check_str("found path", f.path, SD_BURST);
	check_str("found uid", f.uid, UID_A);
	memset(&f, 0, sizeof(f));
	check(pods_find(r, "default", NULL, false, on_found, &f) == 1, "find default/ (a namespace)");
	check_str("found in namespace", f.path, "/kubepods/besteffort/pod" UID_B);
	check(pods_find(r, "shop", "cart", false, NULL, NULL) == 0, "find: a prefix is no name");
	check(pods_find(r, "nowhere", NULL, true, NULL, NULL) == 0, "find: no such namespace");

	put("cg/" SD_BURST "/cgroup.procs", "");
	put("cg/" SD_BURST "/cri-containerd-" ID1 ".scope/cgroup.procs", "101\n102\n");
	put("cg/" SD_BURST "/cri-containerd-" ID2 ".scope/cgroup.procs", "201\n");
	check(pods_cgroup_procs(r, SD_BURST, &l) == 0, "procs of pod A");
	if (l.n == 3)
		qsort(l.pids, l.n, sizeof(*l.pids), cmp_int);
	check(l.n == 3 && l.pids[0] == 101 && l.pids[1] == 102 && l.pids[2] == 201,
	      "pod A: its containers' processes (%zu)", l.n);
	check(pods_cgroup_procs(r, "/kubepods/pod-gone", &l) == -1 && l.n == 3,
	      "procs of a cgroup that is gone: -1");
	check(pods_cgroup_procs(r, "/../etc", &l) == -1, "procs: no way out of the tree");
	free(l.pids);
}

static void test_resolver(void)
{
	char cg[128], pods[128];
	struct pod_resolver *r;
	uint64_t gone, id;
	const struct pod_info *pi;

	snprintf(cg, sizeof(cg), "%s/cg", tmp);
	snprintf(pods, sizeof(pods), "%s/log/pods/", tmp); /* trailing slash on purpose */
	build_tree();
	add_symlink();
	gone = ino_of("cg/gone");

	r = pods_new(cg, pods);
	check(r != NULL, "pods_new on a fake tree");
	if (!r)
		return;
	check_str("pods_cgroup2_root", pods_cgroup2_root(r), cg);

	/* Pod E appears after the first scans. Created before the rmdir below: ext4, unlike
	 * cgroup2, would hand the removed directory's inode to a new one. */
	mkdirs(CG_E "/cri-containerd-" IDE ".scope");
	mkdirs("log/pods/batch_job-x_" UID_E "/worker");
	mkdirs("log/pods/batch_job-x_" UID_E "/helper");
	touch("log/containers/job-x_batch_worker-" IDE ".log");
	id = ino_of(CG_E "/cri-containerd-" IDE ".scope");
	pi = pods_lookup(r, id);
	check(!pi->cgroup_path[0], "new cgroup within 1 s of the walk: not yet found");

	/* Within the rate limit of the first walk: a removed cgroup. */
	if (rmdir(strcat(cg, "/gone")))
		perror(cg);
	cg[strlen(cg) - strlen("/gone")] = '\0';
	pi = pods_lookup(r, gone);
	check(!pi->cgroup_path[0] && !pi->is_pod && !pi->known, "removed cgroup: path \"\"");
	pi = pods_lookup(r, gone);
	check(!pi->cgroup_path[0] && !pi->is_pod, "removed cgroup: cached, still \"\"");
	pi = pods_lookup(r, 0xfeedfacecafebeefull);
	check(!pi->cgroup_path[0] && !pi->is_pod, "unknown cgroup id: path \"\"");

	expect_pod(r, "A cart", ino_of(CG_A "/cri-containerd-" ID1 ".scope"),
		   SD_BURST "/cri-containerd-" ID1 ".scope", "shop", "cart-7d9f8-abcde", UID_A,
		   "cart", ID1, "containerd");
	expect_pod(r, "A sidecar", ino_of(CG_A "/cri-containerd-" ID2 ".scope"),
		   SD_BURST "/cri-containerd-" ID2 ".scope", "shop", "cart-7d9f8-abcde", UID_A,
		   "istio-proxy", ID2, "containerd");
	expect_pod(r, "A pause (short id)", ino_of(CG_A "/cri-containerd-" ID3 ".scope"),
		   SD_BURST "/cri-containerd-" ID3 ".scope", "shop", "cart-7d9f8-abcde", UID_A,
		   "333333333333", ID3, "containerd");
	expect_pod(r, "A pod-level", ino_of(CG_A), SD_BURST, "shop", "cart-7d9f8-abcde", UID_A,
		   "", "", "");
	expect_pod(r, "B cgroupfs cri-o (single log dir)", ino_of(CG_B "/crio-" IDB),
		   "/kubepods/besteffort/pod" UID_B "/crio-" IDB, "default", "web", UID_B,
		   "nginx", IDB, "cri-o");
	expect_pod(r, "static pod docker", ino_of(CG_S "/docker-" IDC ".scope"),
		   "/kubepods.slice/kubepods-pod" UID_S ".slice/docker-" IDC ".scope", "kube-system",
		   "etcd-node1", UID_S, "etcd", IDC, "docker");
	expect_pod(r, "D unknown pod", ino_of(CG_D "/" IDD), "/kubepods/pod" UID_D "/" IDD,
		   "", "", UID_D, "dddddddddddd", IDD, "");
	expect_pod(r, "non-pod", ino_of("cg/system.slice/sshd.service"),
		   "/system.slice/sshd.service", "", "", "", "", "", "");
	expect_pod(r, "root", ino_of("cg"), "/", "", "", "", "", "", "");
	expect_pod(r, "kubepods via a symlink is not followed", ino_of("cg/kubepods"),
		   "/kubepods", "", "", "", "", "", "");

	pi = pods_lookup(r, ino_of(CG_A "/cri-containerd-" ID1 ".scope"));
	check(pi == pods_lookup(r, ino_of(CG_A "/cri-containerd-" ID1 ".scope")),
	      "cached: the same entry twice");

	test_filters(r);
	test_find(r);

	/* Pod E appears after the first scans: found by the rate-limited rescans. */
	usleep(1100 * 1000);
	expect_pod(r, "E appears after start", id,
		   "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID_E_
		   ".slice/cri-containerd-" IDE ".scope", "batch", "job-x", UID_E, "worker", IDE,
		   "containerd");
	pi = pods_lookup(r, gone);
	check(!pi->cgroup_path[0] && !pi->is_pod, "removed cgroup after a rescan: still \"\"");

	pods_free(r);
}

static void test_new_errors(void)
{
	char cg[128];
	struct pod_resolver *r;

	check(pods_new("/nonexistent-connscope/cg", NULL) == NULL, "pods_new: missing root fails");

	snprintf(cg, sizeof(cg), "%s/cg", tmp);
	r = pods_new(cg, "/nonexistent-connscope/pods");
	check(r != NULL, "pods_new: a missing pods dir is not an error");
	if (r) {
		const struct pod_info *pi = pods_lookup(r, ino_of(CG_B "/crio-" IDB));

		check(pi->is_pod && !pi->known && !strcmp(pi->container, "bbbbbbbbbbbb"),
		      "missing pods dir: pod unknown, short container id");
		pods_free(r);
	}
	pods_free(NULL);
	check(pods_lookup(NULL, 1)->cgroup_path[0] == '\0', "pods_lookup(NULL) is safe");
}

/* The real machine: the cgroup2 mount comes from /proc/self/mountinfo. */
static void test_real_mount(void)
{
	struct pod_resolver *r = pods_new(NULL, "/nonexistent-connscope/pods");
	struct stat st;

	if (!r) {
		check(true, "no cgroup2 mount here: skipped the real-mount test");
		return;
	}
	printf("-- cgroup2 mount: %s\n", pods_cgroup2_root(r));
	check(pods_cgroup2_root(r)[0] == '/', "real mount: absolute path");
	if (!stat(pods_cgroup2_root(r), &st))
		check_str("real mount: root cgroup path",
			  pods_lookup(r, (uint64_t)st.st_ino)->cgroup_path, "/");
	pods_free(r);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++)
		test_parse_case(&parse_cases[i]);
	test_parse_truncations();
	test_parse_limits();

	snprintf(tmp, sizeof(tmp), "/tmp/test_pods.XXXXXX");
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	test_resolver();
	test_new_errors();
	test_real_mount();
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);

	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
