#!/bin/bash
# Make a large capture for the replay benchmark (scripts/bench.sh, part "replay").
#
#   tests/bench/replay_gen.sh DIR [TARGET_MB] [H2C_PORT] [TLS_PORT]
#
# On loopback (127.0.0.1) in a network namespace of its own (unshare -n: nothing in
# the machine's namespace is touched), whose lo gets MTU REPLAY_MTU (default 1500;
# 0 keeps lo's 65536) with GSO off, so the capture holds wire-sized packets as on a
# node's interface rather than 64 KiB loopback super-packets; tcpdump -i lo -s 0 -U
# into DIR/replay.pcap for the two ports:
#   - h2c: nghttpd --no-tls (a 2 KiB page) and h2load -c 8 -m 10 runs of 20000
#     requests, repeated until the file passes 85 % of TARGET_MB (default 220);
#   - TLS churn: nghttpd over TLS (self-signed P-256 certificate made in DIR), then
#     `openssl s_time -new` (a new TLS connection and HTTP/1.1 GET each; the server
#     answers h2-less clients with an error page, the handshakes are what counts) for
#     a few seconds, h2load over TLS with 200 connections of 5 requests each, and 20
#     nghttp runs (h2c, one connection each).
# Prints one JSON line: the file, its size, tcpdump's counts and the peers' own figures
# (h2c requests done, TLS connections made). Everything it starts is stopped on exit.
set -euo pipefail

# Into a private network namespace first (the script runs again inside it).
if [ "${REPLAY_GEN_IN_NETNS:-0}" != 1 ]; then
	REPLAY_GEN_IN_NETNS=1 exec unshare -n -- "$0" "$@"
fi
ip link set lo up
if [ "${REPLAY_MTU:-1500}" != 0 ]; then
	ip link set lo mtu "${REPLAY_MTU:-1500}"
	ip link set lo gso_max_segs 1
fi

DIR=${1:?usage: replay_gen.sh DIR [TARGET_MB] [H2C_PORT] [TLS_PORT]}
TARGET_MB=${2:-220}
H2C_PORT=${3:-29180}
TLS_PORT=${4:-29181}
OUT=$DIR/replay.pcap
PIDS=()

die() { echo "replay_gen: failed to $*" >&2; exit 1; }
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -INT "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT

for tool in tcpdump nghttpd h2load nghttp openssl ss; do
	command -v "$tool" >/dev/null || die "find $tool"
done
mkdir -p "$DIR/www"
head -c 2048 /dev/zero | tr '\0' x >"$DIR/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>"$DIR/cert.err" || die "make a certificate"

wait_listen() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ -n "$(ss -Hltn "sport = :$1")" ] && return 0
		sleep 0.05
	done
	die "start a server on port $1"
}

nghttpd --no-tls -a 127.0.0.1 -d "$DIR/www" "$H2C_PORT" >/dev/null 2>"$DIR/nghttpd-h2c.err" &
PIDS+=($!)
nghttpd -a 127.0.0.1 -d "$DIR/www" "$TLS_PORT" "$DIR/key.pem" "$DIR/cert.pem" \
	>/dev/null 2>"$DIR/nghttpd-tls.err" &
PIDS+=($!)
wait_listen "$H2C_PORT"
wait_listen "$TLS_PORT"

tcpdump -i lo -n -s 0 -U -B 262144 -Z root -w "$OUT" "tcp port $H2C_PORT or tcp port $TLS_PORT" \
	2>"$DIR/tcpdump.err" &
TCPDUMP=$!
PIDS+=("$TCPDUMP")
for ((i = 0; i < 100; i++)); do
	grep -q "listening on" "$DIR/tcpdump.err" && break
	kill -0 "$TCPDUMP" 2>/dev/null || die "start tcpdump: $(cat "$DIR/tcpdump.err")"
	sleep 0.05
done
grep -q "listening on" "$DIR/tcpdump.err" || die "start tcpdump (not listening after 5 s)"

h2c_done=0
h2c_conns=0
size_mb() { echo $(($(stat -c %s "$OUT") / 1048576)); }
while [ "$(size_mb)" -lt $((TARGET_MB * 85 / 100)) ]; do
	out=$(h2load -n 20000 -c 8 -m 10 -t 1 "http://127.0.0.1:$H2C_PORT/index.html") ||
		die "run h2load (h2c)"
	done_=$(sed -n 's/^requests: .* \([0-9]*\) done.*/\1/p' <<<"$out")
	ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
	[ "$done_" = 20000 ] && [ "$ok" = 20000 ] || die "run h2load (h2c): $(grep ^requests <<<"$out")"
	h2c_done=$((h2c_done + done_))
	h2c_conns=$((h2c_conns + 8))
done

stime=$(openssl s_time -connect "127.0.0.1:$TLS_PORT" -new -time 4 -www / 2>&1) ||
	die "run openssl s_time"
stime_conns=$(sed -n 's/^\([0-9]*\) connections in [0-9.]*s.*/\1/p' <<<"$stime" | head -n 1)
out=$(h2load -n 1000 -c 200 -m 1 -t 1 "https://127.0.0.1:$TLS_PORT/index.html") ||
	die "run h2load (TLS)"
tls_done=$(sed -n 's/^requests: .* \([0-9]*\) done.*/\1/p' <<<"$out")
for ((i = 0; i < 20; i++)); do
	nghttp -ns "http://127.0.0.1:$H2C_PORT/index.html" >/dev/null || die "run nghttp"
done
h2c_done=$((h2c_done + 20))
h2c_conns=$((h2c_conns + 20))

sleep 0.5
kill -INT "$TCPDUMP"
wait "$TCPDUMP" 2>/dev/null || true
captured=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$DIR/tcpdump.err")
dropped=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$DIR/tcpdump.err")
printf '{"file": "%s", "bytes": %d, "packets": %d, "dropped": %d, "h2c_port": %d, "tls_port": %d, "h2c_requests": %d, "h2c_conns": %d, "tls_s_time_conns": %d, "tls_h2load_requests": %d, "tls_h2load_conns": 200, "mtu": %d}\n' \
	"$OUT" "$(stat -c %s "$OUT")" "${captured:-0}" "${dropped:-0}" "$H2C_PORT" "$TLS_PORT" \
	"$h2c_done" "$h2c_conns" "${stime_conns:-0}" "${tls_done:-0}" "$(ip -o link show lo | sed -n 's/.* mtu \([0-9]*\).*/\1/p')"
# (the JSON line's "mtu": the loopback MTU used; 65536 = lo's own)
