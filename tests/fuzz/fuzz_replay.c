// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * libFuzzer harness for the whole of `connscope replay`: bytes as a capture file,
 * through the pcap reader, the flow table, reassembly, the TLS handshake rule,
 * the HTTP/2 walker, decryption (with a key log when CONNSCOPE_FUZZ_KEYLOG names
 * one, or when tests/fuzz/corpus_replay/keylog.txt is found), the tracker and the
 * JSON writer, exactly as the command runs them (replay_run). stdout goes to
 * /dev/null (the diagnostics on stderr stay: they are few, and the sanitizers
 * report there); a crash, a sanitizer report or a leak is the failure.
 *
 *   see scripts/test.sh (fuzz) for the build line; seeds: tests/fuzz/corpus_replay
 *   (real captures made on loopback: h2c, TLS 1.2 and 1.3 with their keys, refused,
 *   reset, CLOSE_WAIT; cut and mangled by the fuzzer from there).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "opts.h"
#include "replay.h"

static const char *keylog_path(void)
{
	static const char *p;
	static int done;

	if (!done) {
		done = 1;
		p = getenv("CONNSCOPE_FUZZ_KEYLOG");
		if (!p && access("tests/fuzz/corpus_replay/keylog.txt", R_OK) == 0)
			p = "tests/fuzz/corpus_replay/keylog.txt";
		if (!freopen("/dev/null", "w", stdout))
			abort();
	}
	return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *kl = keylog_path();
	char path[64], *files[1] = { path };
	struct cs_opts o = {
		.cmd = CMD_REPLAY,
		.fmt = FMT_JSON,
		.close_wait_threshold_s = 1,
		.tls_timeout_s = 2,
		.connect_timeout_s = 1,
		.finding_window_s = 5,
		.h2_window_s = 30,
		.h2_churn_conns = 3,
		.h2_churn_streams = 1.5,
		.h2_goaway_runs = 2,
		.files = files,
		.nfiles = 1,
	};
	int fd = memfd_create("capture", 0);

	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	/* Half the inputs with the key log, half without: both paths run. */
	o.keylog = size && (data[size - 1] & 1) ? kl : NULL;
	(void)replay_run(&o);
	close(fd);
	return 0;
}
