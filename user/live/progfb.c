// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Per-program fallback (see progfb.h). The records live for the whole process:
 * `check` prints them after every part has loaded, and a part that loads again
 * (holders after a restart of its stack programs) finds its earlier verdicts.
 */
#include "progfb.h"

#include <bpf/btf.h>
#include <pthread.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#define MAX_OFF 48

struct off_rec {
	char object[16];
	char prog[64];
	char why[200];
	const char *instead, *lost;
};

static struct off_rec recs[MAX_OFF];
static int nrecs;
/* The parts load in threads of their own (live start-up): the table is shared. */
static pthread_mutex_t recs_lock = PTHREAD_MUTEX_INITIALIZER;

/* From the libbpf log of the last failed load, per thread: each part's loader
 * blames what its own load logged. */
static __thread char failed_prog[64];
static __thread char failed_log[160];   /* the verifier's last words on it */
static __thread unsigned failed_processed;

static struct btf *vmlinux;
static bool vmlinux_tried;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct btf *vmlinux_btf(void)
{
	pthread_mutex_lock(&init_lock);
	if (!vmlinux_tried) {
		vmlinux_tried = true;
		vmlinux = btf__load_vmlinux_btf();
		if (libbpf_get_error(vmlinux))
			vmlinux = NULL;
	}
	pthread_mutex_unlock(&init_lock);
	return vmlinux;
}

static bool btf_has(const char *name, int kind)
{
	const struct btf *b = vmlinux_btf();

	return b && btf__find_by_name_kind(b, name, kind) > 0;
}

/* Syscall and other perf tracepoints are found through tracefs. Where it is not
 * mounted (a fresh container, or `ip netns exec`, which mounts a new /sys),
 * mount it at its usual place: it adds nothing but the tracing control files. */
static bool we_mounted_tracefs;

static const char *tracefs_events(void)
{
	static const char *const dirs[] = { "/sys/kernel/tracing/events",
					    "/sys/kernel/debug/tracing/events" };
	const char *found = NULL;

	pthread_mutex_lock(&init_lock);
	for (int pass = 0; pass < 2 && !found; pass++) {
		for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && !found; i++)
			if (!access(dirs[i], F_OK))
				found = dirs[i];
		if (found || (pass == 0 && mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL)))
			break;
		we_mounted_tracefs = true;
	}
	pthread_mutex_unlock(&init_lock);
	return found;
}

bool progfb_hook_exists(const char *sec, char *why, size_t len)
{
	char name[160];
	const char *tp;

	if (!sec)
		return true;
	if (sec[0] == '?')
		sec++;
	if (!strncmp(sec, "tp_btf/", 7) || !strncmp(sec, "raw_tp/", 7) ||
	    !strncmp(sec, "raw_tracepoint/", 15)) {
		tp = strchr(sec, '/') + 1;
		snprintf(name, sizeof(name), "btf_trace_%s", tp);
		if (btf_has(name, BTF_KIND_TYPEDEF))
			return true;
		snprintf(why, len, "tracepoint %s not in this kernel", tp);
		return false;
	}
	if (!strncmp(sec, "tracepoint/", 11) || !strncmp(sec, "tp/", 3)) {
		const char *ev = tracefs_events();

		tp = strchr(sec, '/') + 1;
		if (!ev)
			return true;  /* cannot tell; attach will say */
		snprintf(name, sizeof(name), "%s/%s", ev, tp);
		if (!access(name, F_OK))
			return true;
		snprintf(why, len, "tracepoint %s not in this kernel", tp);
		return false;
	}
	if (!strncmp(sec, "iter/", 5)) {
		snprintf(name, sizeof(name), "bpf_iter_%s", sec + 5);
		if (btf_has(name, BTF_KIND_FUNC))
			return true;
		snprintf(why, len, "no %s iterator in this kernel (5.8+)", sec + 5);
		return false;
	}
	return true;
}

static const struct progfb_role *role_of(const struct progfb_role *roles, const char *prog)
{
	for (; roles && roles->prog; roles++)
		if (!strcmp(roles->prog, prog))
			return roles;
	return NULL;
}

static struct off_rec *rec_find(const char *object, const char *prog)
{
	for (int i = 0; i < nrecs; i++)
		if (!strcmp(recs[i].object, object) && !strcmp(recs[i].prog, prog))
			return &recs[i];
	return NULL;
}

void progfb_record(const char *object, const char *prog, const struct progfb_role *roles,
		    const char *why)
{
	const struct progfb_role *r = role_of(roles, prog);
	struct off_rec *o;

	pthread_mutex_lock(&recs_lock);
	o = rec_find(object, prog);
	if (!o && nrecs < MAX_OFF)
		o = &recs[nrecs++];
	if (o) {
		snprintf(o->object, sizeof(o->object), "%s", object);
		snprintf(o->prog, sizeof(o->prog), "%s", prog);
		snprintf(o->why, sizeof(o->why), "%s", why);
		o->instead = r ? r->instead : "";
		o->lost = r ? r->lost : "";
	}
	pthread_mutex_unlock(&recs_lock);
}

bool progfb_is_off(const char *object, const char *prog)
{
	bool off;

	pthread_mutex_lock(&recs_lock);
	off = rec_find(object, prog) != NULL;
	pthread_mutex_unlock(&recs_lock);
	return off;
}

void progfb_reset(const char *object)
{
	int j = 0;

	pthread_mutex_lock(&recs_lock);
	for (int i = 0; i < nrecs; i++)
		if (strcmp(recs[i].object, object))
			recs[j++] = recs[i];
	nrecs = j;
	pthread_mutex_unlock(&recs_lock);
}

static bool env_names(const char *prog)
{
	const char *env = getenv("CONNSCOPE_PROGS_OFF");
	size_t n = strlen(prog);

	while (env && *env) {
		size_t k = strcspn(env, ", ");

		if (k == n && !strncmp(env, prog, n))
			return true;
		env += k;
		env += strspn(env, ", ");
	}
	return false;
}

void progfb_prune(struct bpf_object *obj, const char *object, const struct progfb_role *roles)
{
	struct bpf_program *p;
	char why[160];

	bpf_object__for_each_program(p, obj) {
		const char *name = bpf_program__name(p);

		if (!bpf_program__autoload(p))
			continue;
		if (rec_find(object, name)) {
			bpf_program__set_autoload(p, false);
			continue;
		}
		if (env_names(name)) {
			snprintf(why, sizeof(why), "switched off by CONNSCOPE_PROGS_OFF");
		} else if (progfb_hook_exists(bpf_program__section_name(p), why, sizeof(why))) {
			continue;
		}
		bpf_program__set_autoload(p, false);
		progfb_record(object, name, roles, why);
	}
}

bool progfb_blame(const char *object, const struct progfb_role *roles, int err)
{
	const struct progfb_role *r;
	char why[200];

	if (!failed_prog[0])
		return false;
	r = role_of(roles, failed_prog);
	if (rec_find(object, failed_prog))
		return false;  /* switched off already, and still failing: something else */
	if (failed_processed)
		snprintf(why, sizeof(why), "refused by the verifier: %s (%u instructions processed)%s%s",
			 strerror(err < 0 ? -err : err), failed_processed, failed_log[0] ? ": " : "",
			 failed_log);
	else
		snprintf(why, sizeof(why), "did not load: %s%s%s", strerror(err < 0 ? -err : err),
			 failed_log[0] ? ": " : "", failed_log);
	progfb_record(object, failed_prog, roles, why);
	failed_prog[0] = 0;
	return !(r && r->required);
}

/* The last non-empty line of the verifier's log that is not its statistics. */
static void last_words(const char *log, char *out, size_t len)
{
	const char *end = log + strlen(log), *line_end, *line;

	out[0] = 0;
	while (end > log) {
		line_end = end;
		while (line_end > log && (line_end[-1] == '\n' || line_end[-1] == ' '))
			line_end--;
		line = line_end;
		while (line > log && line[-1] != '\n')
			line--;
		if (line_end > line && strncmp(line, "processed ", 10) &&
		    strncmp(line, "-- END PROG LOAD LOG", 20) && strncmp(line, "verification time", 17)) {
			size_t n = (size_t)(line_end - line);

			if (n >= len)
				n = len - 1;
			memcpy(out, line, n);
			out[n] = 0;
			return;
		}
		end = line;
	}
}

void progfb_note_libbpf(const char *msg)
{
	const char *p, *q;
	char name[64];

	/* "prog 'NAME': BPF program load failed: ..." then the log, then
	 * "prog 'NAME': failed to load: -E", each after libbpf's "libbpf: ". */
	if (!strncmp(msg, "libbpf: ", 8))
		msg += 8;
	if (strncmp(msg, "prog '", 6) || !(q = strchr(msg + 6, '\'')))
		return;
	snprintf(name, sizeof(name), "%.*s", (int)(q - msg - 6), msg + 6);
	if (strstr(msg, "-- BEGIN PROG LOAD LOG --")) {
		snprintf(failed_prog, sizeof(failed_prog), "%s", name);
		failed_processed = 0;
		if ((p = strstr(msg, "processed ")))
			failed_processed = (unsigned)strtoul(p + 10, NULL, 10);
		if ((p = strstr(msg, "Processed ")) && !failed_processed)
			failed_processed = (unsigned)strtoul(p + 10, NULL, 10);
		last_words(strstr(msg, "--\n") ? strstr(msg, "--\n") + 3 : msg, failed_log,
			   sizeof(failed_log));
	} else if (strstr(msg, "failed to load") || strstr(msg, "load failed")) {
		if (strcmp(failed_prog, name)) {
			snprintf(failed_prog, sizeof(failed_prog), "%s", name);
			failed_processed = 0;
			failed_log[0] = 0;
		}
	}
}

bool progfb_tracefs(bool *mounted_here)
{
	bool ok = tracefs_events() != NULL;

	if (mounted_here)
		*mounted_here = we_mounted_tracefs;
	return ok;
}

int progfb_count(void)
{
	return nrecs;
}

int progfb_print(FILE *f)
{
	for (int i = 0; i < nrecs; i++) {
		const struct off_rec *o = &recs[i];

		fprintf(f, "  %-18s %-8s %s\n", o->prog, o->object, o->why);
		if (o->instead && o->instead[0])
			fprintf(f, "  %-18s %-8s   instead: %s\n", "", "", o->instead);
		if (o->lost && o->lost[0])
			fprintf(f, "  %-18s %-8s   lost: %s\n", "", "", o->lost);
	}
	return nrecs;
}
