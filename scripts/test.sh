#!/bin/sh
# Run connscope's tests: unit tests (ASan/UBSan), the golden replay tests
# (committed captures against committed records; no root needed), fuzz smoke
# runs, then the live tests against the real kernel (root), /metrics in a real
# Prometheus (deploy/'s rules and dashboard), the image tests (the runtime stage
# debootstrapped with connscope run in it; the README's two commands and the
# build stage on a fresh minimal Debian 12), then the kernel matrix (the core
# live scenarios on the host and on Debian 12's 6.1 kernel in a VM).
# `scripts/test.sh unit|golden|fuzz|bpf|live|prom|image|matrix` runs one part.
set -eu
cd "$(dirname "$0")/.."
part="${1:-all}"
out=.output/tests
mkdir -p "$out"
CC_SAN="${CC_SAN:-clang}"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -g -O1"
CFLAGS_T="-std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Ibpf -I.output $(for d in user/*/; do printf -- "-I%s " "${d%/}"; done)"
failed=0

# The tests link connscope's own libraries (make libs), built again with the
# sanitizers (VARIANT=san) or for libFuzzer (VARIANT=fuzz): no source lists here.
LIBS_LDLIBS="-lbpf -lelf -lz -lcjson -lpcap -lcrypto -lcapstone -lm -lpthread"
build_libs() {
	make --no-print-directory -j2 CC="$CC_SAN" VARIANT="$1" VARIANT_CFLAGS="$2" libs >/dev/null
}
libs_of() { echo "-Wl,--start-group $(ls .output/user-"$1"/libcs_*.a | tr '\n' ' ') -Wl,--end-group"; }

run_unit() {
	build_libs san "$SAN"
	for t in tests/unit/test_*.c; do
		name=$(basename "$t" .c)
		echo "== unit: $name"
		# shellcheck disable=SC2046,SC2086
		$CC_SAN $CFLAGS_T $SAN "$t" $(libs_of san) $LIBS_LDLIBS -o "$out/$name"
		"$out/$name" || failed=1
	done
}

# Seeds for fuzz_symbolize: small ELF files compiled here (an address, then the
# file), with and without .symtab, PIE and not.
symbolize_seeds() {
	local dir=$1 src=$out/seed.c i=0 flags
	printf 'int f(int x) { return x + 1; }\nint main(void) { return f(1); }\n' >"$src"
	for flags in "-O1" "-O1 -s" "-O1 -no-pie" "-O1 -shared -fPIC"; do
		# shellcheck disable=SC2086
		cc $flags -o "$out/seed.elf" "$src" 2>/dev/null || continue
		{ printf '\000\021\100\000\000\000\000\000'; cat "$out/seed.elf"; } >"$dir/seed$i"
		i=$((i + 1))
	done
	rm -f "$out/seed.elf" "$src"
}

run_fuzz() {
	build_libs fuzz "-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -g -O1"
	for f in tests/fuzz/fuzz_*.c; do
		[ -e "$f" ] || continue
		name=$(basename "$f" .c)
		echo "== fuzz (smoke, 20 s): $name"
		# shellcheck disable=SC2046,SC2086
		clang $CFLAGS_T -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1 \
			"$f" $(libs_of fuzz) $LIBS_LDLIBS -o "$out/$name"
		mkdir -p "$out/$name.corpus"
		[ "$name" = fuzz_symbolize ] && symbolize_seeds "$out/$name.corpus"
		seeds=tests/fuzz/corpus
		[ -d "tests/fuzz/corpus_${name#fuzz_}" ] && seeds="tests/fuzz/corpus_${name#fuzz_}"
		"$out/$name" -max_total_time=20 -seed=1 "$out/$name.corpus" "$seeds" >/dev/null 2>"$out/$name.log" \
			|| { tail -30 "$out/$name.log"; failed=1; }
		tail -1 "$out/$name.log"
	done
}

# Golden replay tests (tests/golden/README.md): needs ./connscope (make), not
# root. GOLDEN_UPDATE=1 rewrites the expected output instead of comparing.
run_golden() {
	echo "== golden: replay of tests/golden/captures against tests/golden/expected"
	/usr/bin/python3 tests/golden/run.py || failed=1
}

run_bpf() {
	build_libs san "$SAN"
	for t in tests/bpf/test_*.c; do
		name=$(basename "$t" .c)
		echo "== bpf: $name"
		# shellcheck disable=SC2046,SC2086
		$CC_SAN $CFLAGS_T $SAN -I.output "$t" $(libs_of san) $LIBS_LDLIBS -o "$out/$name"
		"$out/$name" || failed=1
	done
}

run_live() {
	echo "== live tests (real kernel, simulated pods)"
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/live || failed=1
	echo "== live tests again on the raw_tp fallback path"
	CONNSCOPE_ATTACH=raw_tp /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		tests/live/test_tcp_lifecycle.py \
		tests/live/test_holders.py::test_accept_after_close_names_every_holder \
		"tests/live/test_holders.py::test_c_client_stack_names_the_leaking_function[multi]" \
		|| failed=1
	# Kernels before 6.3 lack sock_send_length/sock_recv_length: the same
	# programs switched off here take the fallback 6.1 takes (the socket of a
	# TLS call bound at the write/read syscalls).
	echo "== live tests again without sock_send_length/sock_recv_length (as on 6.1)"
	CONNSCOPE_PROGS_OFF=h2u_send,h2u_recv /usr/bin/python3 -m pytest -q \
		-p no:cacheprovider \
		tests/live/test_h2.py::test_h2load_tls_openssl_exact_counts \
		tests/live/test_h2.py::test_grpc_go_tls_goaway_and_churn \
		tests/live/test_holders.py::test_accept_after_close_names_every_holder \
		|| failed=1
}

# connscope's /metrics scraped by a real Prometheus (Debian's, our own process on
# a free port): the series against what simulated pods did, promtool's checks and
# a rules unit test generated from the scraped series, the alerts firing live,
# every dashboard query returning data (tests/prom/test_prometheus.py).
run_prom() {
	echo "== prom: /metrics in a real Prometheus, deploy/ rules and dashboard"
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/prom || failed=1
}

# The image tests (tests/image), each in a root built with debootstrap: the
# Dockerfile's runtime stage (its package list, connscope check and a replay run
# in it); a minimal Debian 12 where the README's set-up and `make run` install,
# build and start top, then the build stage's RUN commands build again.
run_image() {
	echo "== image: the Dockerfile's stages and the README's commands, debootstrapped"
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/image || failed=1
}

# The kernel matrix: the same core scenarios on the host kernel, then on Debian
# 12's stock 6.1 kernel in a VM (qemu, TCG; tests/vm/README.md). The VM image is
# built once and cached in .output/vm.
run_matrix() {
	echo "== kernel matrix: host ($(uname -r))"
	sh tests/vm/matrix.sh || failed=1
	echo "== kernel matrix: Debian 12's stock kernel in a VM"
	tests/vm/run.sh --timeout 900 tests/vm/matrix.sh \
		tests/vm/matrix.txt tests/vm/matrix.sh tests/live tests/lib deploy || failed=1
}

case "$part" in
unit) run_unit ;;
golden) run_golden ;;
bpf) run_bpf ;;
fuzz) run_fuzz ;;
live) run_live ;;
prom) run_prom ;;
image) run_image ;;
matrix) run_matrix ;;
all) run_unit; run_golden; run_fuzz; run_bpf; run_live; run_prom; run_image; run_matrix ;;
*) echo "usage: $0 [unit|golden|fuzz|bpf|live|prom|image|matrix|all]" >&2; exit 2 ;;
esac
exit $failed
