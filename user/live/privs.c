// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The capabilities connscope uses, found by running it with each one dropped from
 * the bounding set (as Kubernetes does for `capabilities: {drop: [ALL], add: [...]}`):
 *
 *   CAP_BPF, CAP_PERFMON  load BPF maps and programs; the tracing ones (tracepoints,
 *                         iterators, stacks) need CAP_PERFMON. CAP_SYS_ADMIN also
 *                         passes both checks.
 *   CAP_NET_ADMIN         cgroup_skb and netfilter BPF programs (CAP_SYS_ADMIN also
 *                         passes that check), and ctnetlink, which takes it alone.
 *   CAP_SYS_ADMIN         setns(CLONE_NEWNET): the snapshot of the sockets that
 *                         existed before start, in every pod's namespace, and
 *                         --conntrack-netns; perf's uprobe events (--h2-plaintext).
 *   CAP_SYS_PTRACE        /proc/<pid>/{maps,root,exe,ns} of a process of another
 *                         user, or with capabilities connscope lacks.
 */
#include "privs.h"

#include <linux/capability.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

int privs_report(FILE *f)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { { 0 } };
	static const struct {
		int cap;
		const char *name, *use;
	} caps[] = {
		{ CAP_BPF, "CAP_BPF", "BPF maps and programs (every live part)" },
		{ CAP_PERFMON, "CAP_PERFMON", "tracing programs: TCP lifecycle, socket holders, "
		  "stacks, HTTP/2 in TLS" },
		{ CAP_NET_ADMIN, "CAP_NET_ADMIN", "cgroup_skb (TLS, h2c) and netfilter (conntrack) "
		  "programs; ctnetlink (conntrack events, NAT lookups)" },
		{ CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "setns into each network namespace (sockets open "
		  "before start, --conntrack-netns); uprobes (--h2-plaintext)" },
		{ CAP_SYS_PTRACE, "CAP_SYS_PTRACE", "/proc/<pid> of other users' processes (stack "
		  "symbols, --h2-plaintext, their network namespaces)" },
	};
	bool have[64] = { false }, sa;
	int broken = 0;

	if (!syscall(SYS_capget, &hdr, data))
		for (int c = 0; c < 64; c++)
			have[c] = data[c / 32].effective & (1u << (c % 32));
	sa = have[CAP_SYS_ADMIN];
	fprintf(f, "privileges:       uid %u; the capabilities connscope uses, in the "
		"effective set:\n", (unsigned)geteuid());
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		const char *why = NULL, *also = "";
		int c = caps[i].cap;

		if (have[c]) {
			fprintf(f, "  %-16s yes: %s\n", caps[i].name, caps[i].use);
			continue;
		}
		switch (c) {
		case CAP_BPF:
			why = sa ? NULL : "no BPF program loads: nothing live is observed "
				"(replay still works)";
			break;
		case CAP_PERFMON:
			why = sa ? NULL : "the tracing programs cannot load: TCP lifecycle "
				"(tracepoints), socket holders (task/file iterator), stacks and "
				"HTTP/2 in TLS; live commands stop";
			break;
		case CAP_NET_ADMIN:
			why = sa ? "ctnetlink refuses connscope: the netlink conntrack watcher "
				"(--conntrack netlink, and auto where the kernel has no BPF netfilter "
				"link) and the NAT lookups of problem records cannot work "
				"(CAP_SYS_ADMIN lets the cgroup_skb and netfilter programs attach)"
				 : "TLS/h2c packet programs (cgroup_skb) and the conntrack watcher "
				"(BPF netfilter link, ctnetlink) cannot attach";
			break;
		case CAP_SYS_ADMIN:
			why = "no setns: sockets that existed before start in other network "
			      "namespaces (every pod's) are not seen, and --conntrack-netns cannot "
			      "be entered; no uprobes: --h2-plaintext cannot probe (the kernel's "
			      "uprobe events need CAP_SYS_ADMIN)";
			if (!have[CAP_BPF] || !have[CAP_PERFMON])
				also = "; and without CAP_BPF and CAP_PERFMON, no BPF program loads";
			break;
		case CAP_SYS_PTRACE:
			why = "the /proc/<pid> files of processes of other users (or with "
			      "capabilities connscope lacks) cannot be read: their stacks stay raw "
			      "addresses, --h2-plaintext cannot probe them, and their network "
			      "namespaces are found only through /run/netns";
			break;
		}
		if (why) {
			fprintf(f, "  %-16s missing: %s%s\n", caps[i].name, why, also);
			broken++;
		} else {
			fprintf(f, "  %-16s no, and not needed: CAP_SYS_ADMIN stands in for it\n",
				caps[i].name);
		}
	}
	return broken;
}
