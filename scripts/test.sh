#!/bin/sh
# Run connscope's tests: unit tests (ASan/UBSan), fuzz smoke runs, then the live
# tests against the real kernel (root), then the kernel matrix (the core live
# scenarios on the host and on Debian 12's 6.1 kernel in a VM).
# `scripts/test.sh unit|fuzz|bpf|live|matrix` runs one part.
set -eu
cd "$(dirname "$0")/.."
part="${1:-all}"
out=.output/tests
mkdir -p "$out"
CC_SAN="${CC_SAN:-clang}"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -g -O1"
CFLAGS_T="-std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Iuser -Ibpf"
failed=0

run_unit() {
	for t in tests/unit/test_*.c; do
		name=$(basename "$t" .c)
		srcs="$t user/util.c"
		case "$name" in
		test_pods) srcs="$srcs user/pods.c" ;;
		test_snapshot) srcs="$srcs user/snapshot.c user/procfd.c" ;;
		test_u64map) srcs="$srcs user/u64map.c" ;;
		test_kmap) srcs="$srcs user/kmap.c user/u64map.c" ;;
		test_track) srcs="$srcs user/track.c user/track_parts.c user/track_tls.c user/track_h2.c user/track_ct.c
			user/output.c user/jsonw.c user/procfd.c user/u64map.c user/kmap.c user/pods.c" ;;
		test_jsonw) srcs="$srcs user/jsonw.c" ;;
		test_reasm) srcs="$srcs user/reasm.c" ;;
		test_pcapin) srcs="$srcs user/pcapin.c" ;;
		test_tlsdec) srcs="$srcs user/tlsdec.c" ;;
		test_kpods) srcs="$srcs user/kpods.c" ;;
		test_ctnl) srcs="$srcs user/ctnl.c user/ctstat.c" ;;
		test_symbolize) srcs="$srcs user/symbolize.c" ;;
		test_progfb) srcs="$srcs user/progfb.c -lbpf" ;;
		esac
		echo "== unit: $name"
		# shellcheck disable=SC2086
		$CC_SAN $CFLAGS_T $SAN $srcs -lpcap -lz -lcrypto -lcjson -lpthread -lm -lelf -o "$out/$name"
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
	for f in tests/fuzz/fuzz_*.c; do
		[ -e "$f" ] || continue
		name=$(basename "$f" .c)
		echo "== fuzz (smoke, 20 s): $name"
		# shellcheck disable=SC2086
		extra=""
		case "$name" in
		fuzz_pcapin) extra="user/pcapin.c user/reasm.c" ;;
		fuzz_tlsdec) extra="user/tlsdec.c" ;;
		fuzz_ctnl) extra="user/ctnl.c user/ctstat.c" ;;
		fuzz_symbolize) extra="user/symbolize.c -lelf" ;;
		fuzz_replay) extra="user/replay.c user/track.c user/track_parts.c user/track_tls.c user/track_h2.c user/track_ct.c
			user/output.c user/jsonw.c user/procfd.c user/u64map.c user/kmap.c user/pcapin.c
			user/reasm.c user/tlsdec.c user/kpods.c" ;;
		esac
		# shellcheck disable=SC2086
		clang $CFLAGS_T -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1 \
			"$f" user/pods.c user/util.c $extra -lpcap -lz -lcrypto -lcjson -lm -o "$out/$name"
		mkdir -p "$out/$name.corpus"
		[ "$name" = fuzz_symbolize ] && symbolize_seeds "$out/$name.corpus"
		seeds=tests/fuzz/corpus
		[ -d "tests/fuzz/corpus_${name#fuzz_}" ] && seeds="tests/fuzz/corpus_${name#fuzz_}"
		"$out/$name" -max_total_time=20 -seed=1 "$out/$name.corpus" "$seeds" >/dev/null 2>"$out/$name.log" \
			|| { tail -30 "$out/$name.log"; failed=1; }
		tail -1 "$out/$name.log"
	done
}

run_bpf() {
	for t in tests/bpf/test_*.c; do
		name=$(basename "$t" .c)
		echo "== bpf: $name"
		# shellcheck disable=SC2086
		extra=""
		case "$name" in
		test_ct) extra="user/ctbpf.c user/progfb.c" ;;
		esac
		# shellcheck disable=SC2086
		$CC_SAN $CFLAGS_T $SAN -I.output "$t" $extra -lbpf -lelf -lz -o "$out/$name"
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
	# programs switched off here take the fallbacks 6.1 takes (the socket of a
	# TLS call bound at the write/read syscalls; holders at finding time).
	echo "== live tests again without sock_send_length/sock_recv_length (as on 6.1)"
	CONNSCOPE_PROGS_OFF=h2u_send,h2u_recv,cs_recv_btf,cs_send_btf /usr/bin/python3 -m pytest -q \
		-p no:cacheprovider \
		tests/live/test_h2.py::test_h2load_tls_openssl_exact_counts \
		tests/live/test_h2.py::test_grpc_go_tls_goaway_and_churn \
		tests/live/test_holders.py::test_accept_after_close_names_every_holder \
		|| failed=1
}

# The kernel matrix: the same core scenarios on the host kernel, then on Debian
# 12's stock 6.1 kernel in a VM (qemu, TCG; tests/vm/README.md). The VM image is
# built once and cached in .output/vm.
run_matrix() {
	echo "== kernel matrix: host ($(uname -r))"
	sh tests/vm/matrix.sh || failed=1
	echo "== kernel matrix: Debian 12's stock kernel in a VM"
	tests/vm/run.sh --timeout 900 tests/vm/matrix.sh \
		tests/vm/matrix.txt tests/vm/matrix.sh tests/live tests/lib || failed=1
}

case "$part" in
unit) run_unit ;;
bpf) run_bpf ;;
fuzz) run_fuzz ;;
live) run_live ;;
matrix) run_matrix ;;
all) run_unit; run_fuzz; run_bpf; run_live; run_matrix ;;
*) echo "usage: $0 [unit|fuzz|bpf|live|matrix|all]" >&2; exit 2 ;;
esac
exit $failed
