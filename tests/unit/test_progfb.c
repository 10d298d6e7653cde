// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Per-program fallback: what it learns from libbpf's messages, what it records,
 * and which programs of a real object (h2u.bpf.o, opened, never loaded) it
 * switches off for a missing hook or CONNSCOPE_PROGS_OFF.
 */
#include "check.h"
#include "progfb.h"

#include <bpf/libbpf.h>

static const struct progfb_role roles[] = {
	{ "must", true, "", "everything" },
	{ "extra", false, "the other hook", "" },
	{ NULL, false, NULL, NULL },
};

/* The warnings libbpf prints for a refused program, as its print callback gets
 * them: each after libbpf's own "libbpf: " (without it, as an earlier version of
 * this test fed them, the real ones were never recognised). */
static void refuse(const char *prog, const char *log)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "libbpf: prog '%s': BPF program load failed: Argument list too long\n",
		 prog);
	progfb_note_libbpf(msg);
	snprintf(msg, sizeof(msg),
		 "libbpf: prog '%s': -- BEGIN PROG LOAD LOG --\n%s-- END PROG LOAD LOG --\n", prog, log);
	progfb_note_libbpf(msg);
	snprintf(msg, sizeof(msg), "libbpf: prog '%s': failed to load: -7\n", prog);
	progfb_note_libbpf(msg);
}

static bool printed_has(const char *needle)
{
	char buf[4096] = "";
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");

	progfb_print(f);
	fclose(f);
	return strstr(buf, needle) != NULL;
}

static void test_blame(void)
{
	progfb_reset("obj");
	check(!progfb_blame("obj", roles, -7), "nothing refused: no retry");
	refuse("extra", "3936: (71) r1 = *(u8 *)(r3 +9)\nBPF program is too large. Processed 1000001 insn\n"
			"processed 1000001 insns (limit 1000000) max_states_per_insn 12\n");
	check(progfb_blame("obj", roles, -7), "an optional program refused: retry without it");
	check(progfb_is_off("obj", "extra"), "and it is recorded");
	check(printed_has("refused by the verifier") && printed_has("1000001 instructions processed"),
	      "check shows the verifier's count");
	check(printed_has("BPF program is too large"), "and its last words, not its statistics");
	check(printed_has("instead: the other hook"), "and what replaces it");
	check(!progfb_blame("obj", roles, -7), "blamed once: a second failure is something else");
	refuse("must", "R6 invalid mem access 'scalar'\nprocessed 117 insns (limit 1000000)\n");
	check(!progfb_blame("obj", roles, -13), "a required program refused: no retry");
	check(progfb_is_off("obj", "must"), "but check still names it");
	check(progfb_count() == 2, "two recorded (%d)", progfb_count());
	progfb_reset("obj");
	check(progfb_count() == 0 && !progfb_is_off("obj", "extra"), "reset forgets the object");
}

static void test_hooks(void)
{
	char why[160];

	check(progfb_hook_exists("tp_btf/inet_sock_set_state", why, sizeof(why)),
	      "a tracepoint every supported kernel has");
	check(!progfb_hook_exists("tp_btf/no_such_tracepoint_x", why, sizeof(why)) &&
	      strstr(why, "not in this kernel"), "a made-up tracepoint: %s", why);
	check(!progfb_hook_exists("raw_tp/no_such_tracepoint_x", why, sizeof(why)), "raw_tp too");
	check(progfb_hook_exists("uprobe", why, sizeof(why)), "sections without a named hook: yes");
	check(progfb_hook_exists("iter/task_file", why, sizeof(why)), "the task/file iterator");
	check(!progfb_hook_exists("iter/no_such_iter", why, sizeof(why)), "a made-up iterator");
}

static void test_prune(const char *obj_path)
{
	struct bpf_object *obj = bpf_object__open_file(obj_path, NULL);
	struct bpf_program *send, *go;

	if (libbpf_get_error(obj)) {
		check(false, "open %s", obj_path);
		return;
	}
	send = bpf_object__find_program_by_name(obj, "h2u_send");
	go = bpf_object__find_program_by_name(obj, "h2u_go_write");
	setenv("CONNSCOPE_PROGS_OFF", "h2u_go_write, nonexistent", 1);
	progfb_reset("h2u");
	progfb_prune(obj, "h2u", roles);
	check(go && !bpf_program__autoload(go), "CONNSCOPE_PROGS_OFF switches a program off");
	check(progfb_is_off("h2u", "h2u_go_write") && printed_has("CONNSCOPE_PROGS_OFF"),
	      "and says why");
	check(send && bpf_program__autoload(send) == progfb_hook_exists("tp_btf/sock_send_length",
									(char[160]){ 0 }, 160),
	      "h2u_send stays on exactly when the kernel has sock_send_length");
	unsetenv("CONNSCOPE_PROGS_OFF");
	progfb_reset("h2u");
	bpf_object__close(obj);
}

int main(int argc, char **argv)
{
	test_blame();
	test_hooks();
	test_prune(argc > 1 ? argv[1] : ".output/h2u.bpf.o");
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
