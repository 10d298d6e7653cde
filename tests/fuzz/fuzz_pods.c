// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* libFuzzer harness: cgroup paths are read from the filesystem and may be
 * anything a container runtime (or an attacker in a pod) names its cgroups. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pods.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pod_info p;
	char *path = malloc(size + 1);

	if (!path)
		return 0;
	memcpy(path, data, size);
	path[size] = 0;
	memset(&p, 0, sizeof(p));
	if (pods_parse_path(path, &p)) {
		/* A match always yields a terminated, plausible uid. */
		size_t n = strnlen(p.uid, sizeof(p.uid));

		if (n == sizeof(p.uid) || (n != 36 && n != 32))
			abort();
	}
	pods_match(&p, "ns/name", NULL);
	pods_match(&p, NULL, "ns");
	free(path);
	return 0;
}
