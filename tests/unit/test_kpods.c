// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * user/replay/kpods.c: `kubectl get pods -A -o json` -> address -> pod. The list below
 * has the shape kubectl prints (v1 List of Pods, trimmed to the fields read plus
 * some that are not): dual stack, a host-network pod, a finished pod whose
 * address a running one took over, two running pods claiming one address, a pod
 * with two containers and one without an address yet.
 */
#include <arpa/inet.h>
#include "check.h"
#include "kpods.h"

static const char pods_json[] =
	"{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":["
	/* 0: dual stack, one container */
	"{\"metadata\":{\"name\":\"frontend-7d9\",\"namespace\":\"shop\",\"uid\":\"11111111-aaaa\","
	"\"labels\":{\"app\":\"frontend\"}},"
	"\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"nginx\"}]},"
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.1.5\","
	"\"podIPs\":[{\"ip\":\"10.244.1.5\"},{\"ip\":\"fd00:10:244:1::5\"}]}},"
	/* 1: host network: shares the node's address */
	"{\"metadata\":{\"name\":\"kube-proxy-x\",\"namespace\":\"kube-system\",\"uid\":\"22222222\"},"
	"\"spec\":{\"hostNetwork\":true,\"containers\":[{\"name\":\"kube-proxy\"}]},"
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"192.168.1.10\"}},"
	/* 2: finished, had 10.244.1.9 */
	"{\"metadata\":{\"name\":\"job-old\",\"namespace\":\"batch\",\"uid\":\"33333333\"},"
	"\"spec\":{\"containers\":[{\"name\":\"job\"}]},"
	"\"status\":{\"phase\":\"Succeeded\",\"podIP\":\"10.244.1.9\"}},"
	/* 3: running, has 10.244.1.9 now; two containers */
	"{\"metadata\":{\"name\":\"backend-5f\",\"namespace\":\"shop\",\"uid\":\"44444444\"},"
	"\"spec\":{\"containers\":[{\"name\":\"app\"},{\"name\":\"envoy\"}]},"
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.1.9\"}},"
	/* 4 and 5: both running on 10.244.2.2 (a stale list): the first listed wins */
	"{\"metadata\":{\"name\":\"a\",\"namespace\":\"x\",\"uid\":\"55555555\"},"
	"\"spec\":{\"containers\":[{\"name\":\"c\"}]},"
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.2.2\"}},"
	"{\"metadata\":{\"name\":\"b\",\"namespace\":\"x\",\"uid\":\"66666666\"},"
	"\"spec\":{\"containers\":[{\"name\":\"c\"}]},"
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.2.2\"}},"
	/* 6: pending, no address */
	"{\"metadata\":{\"name\":\"pending\",\"namespace\":\"x\",\"uid\":\"77777777\"},"
	"\"spec\":{\"containers\":[{\"name\":\"c\"}]},\"status\":{\"phase\":\"Pending\"}},"
	/* junk an item may hold */
	"42, {\"metadata\":7,\"status\":{\"podIP\":\"not an ip\"}}"
	"]}";

static const struct pod_info *find(const struct kpods *k, const char *ip)
{
	uint8_t a[16] = {0};
	int fam = strchr(ip, ':') ? AF_INET6 : AF_INET;

	if (inet_pton(fam, ip, a) != 1)
		abort();
	return kpods_find(k, fam, a);
}

static void expect(const struct kpods *k, const char *ip, const char *ns_name,
		   const char *container)
{
	const struct pod_info *p = find(k, ip);
	char got[400] = "(none)";

	if (p)
		snprintf(got, sizeof(got), "%s/%s", p->namespace_, p->name);
	if (!ns_name) {
		check(!p, "%s belongs to no pod (got %s)", ip, got);
		return;
	}
	check(p && !strcmp(got, ns_name) && p->is_pod && p->known, "%s -> %s (got %s)", ip,
	      ns_name, got);
	if (p)
		check(!strcmp(p->container, container), "%s: container \"%s\" (got \"%s\")", ip,
		      container, p->container);
}

int main(void)
{
	char err[256] = "";
	struct kpods *k = kpods_parse(pods_json, strlen(pods_json), "pods.json", err, sizeof(err));
	size_t np, na, nh, nc;

	check(k != NULL, "the list parses (%s)", err);
	if (!k)
		return 1;
	kpods_counts(k, &np, &na, &nh, &nc);
	check(np == 7, "7 pods read (got %zu)", np);
	check(nh == 1, "1 host-network pod left out (got %zu)", nh);
	check(nc == 1, "1 address claimed by two running pods (got %zu)", nc);
	check(na == 4, "4 addresses mapped (got %zu)", na);
	expect(k, "10.244.1.5", "shop/frontend-7d9", "web");
	expect(k, "fd00:10:244:1::5", "shop/frontend-7d9", "web");
	expect(k, "10.244.1.9", "shop/backend-5f", "");
	expect(k, "10.244.2.2", "x/a", "c");
	expect(k, "192.168.1.10", NULL, NULL);
	expect(k, "10.244.9.9", NULL, NULL);
	check(!strcmp(find(k, "fd00:10:244:1::5")->ip, "10.244.1.5"),
	      "a dual-stack pod is named by its podIP");
	kpods_free(k);

	/* Not a pod list, not JSON, empty: NULL with the file named. */
	k = kpods_parse("{\"kind\":\"Service\"}", 18, "svc.json", err, sizeof(err));
	check(!k && strstr(err, "svc.json") && strstr(err, "items"), "a Service is refused: %s", err);
	k = kpods_parse("{\"items\":[", 10, "cut.json", err, sizeof(err));
	check(!k && strstr(err, "cut.json"), "cut JSON is refused: %s", err);
	k = kpods_parse("", 0, "empty.json", err, sizeof(err));
	check(!k, "an empty file is refused: %s", err);
	k = kpods_load("/nonexistent/pods.json", err, sizeof(err));
	check(!k && strstr(err, "No such file"), "a missing file is named: %s", err);
	/* An empty list is fine: nothing maps. */
	k = kpods_parse("{\"items\":[]}", 12, "none.json", err, sizeof(err));
	check(k && !find(k, "10.0.0.1"), "an empty list maps nothing");
	kpods_free(k);
	/* Every prefix of the real list: refused or parsed, never a crash. */
	for (size_t n = 0; n < sizeof(pods_json) - 1; n++) {
		char *cut = (char *)dup_n((const unsigned char *)pods_json, n);

		kpods_free(kpods_parse(cut, n, "cut.json", err, sizeof(err)));
		free(cut);
	}
	check(true, "every prefix of the list parsed or refused without a crash");
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
