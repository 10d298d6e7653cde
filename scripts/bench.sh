#!/bin/bash
# connscope benchmark (`make bench`). Needs root.
#
# 1. Throughput: loopback connect/send/close at the maximum rate (closed loop), for
#    each close style in BENCH_CLOSES: fin (the client closes, the server reads EOF and
#    closes) and rst (connload --close rst-client: the client closes with SO_LINGER 0,
#    a RST and no TIME_WAIT; BENCH_RST_SIDE=server makes the server answer the FIN with
#    one instead). Per style, interleaved in one run (ROUNDS rounds, rotating order):
#    bare (no tracer), the floor (tests/bench/floor.bpf.c: do-nothing programs on the
#    tracepoint and the cgroup packet hooks connscope uses, so the part of its cost
#    that no change to its programs can remove is measured in the same run), the
#    counting floor (the same, with the least work that exact counts in the kernel
#    take on the tracepoint, and a second program there as a rescue's mark check),
#    `connscope daemon` (stdout to a file, as a DaemonSet's log),
#    `connscope top -i TOP_INTERVAL` (stdout a file, not a terminal: a frame per
#    interval), `connscope trace -o json` to a file, and Debian's libbpf-tools
#    `tcpstates` and `tcplife` (anchors). The report gives each one's median rate, its
#    ratio to bare and the per-round ratio range. Targets: daemon >= 0.97, top >= 0.97,
#    trace >= 0.92 (the anchors have none). Per connscope mode, per connection: its
#    user-space CPU (utime + stime of the process, /proc/PID/stat, before and after the
#    timed window, over the connections made in it; median round and range) and, from
#    one more run per mode with kernel.bpf_stats_enabled=1 (outside the ratios), its
#    programs' BPF run time over the window (`bpftool -j prog show` before and after).
#    Lost events at the maximum rate in daemon mode, from the daemon's end stats record
#    (lost, events) in each round: target lost == 0. daemon and trace count as attached
#    once their stats start record is out, top once its first frame is in the file, the
#    anchors once their BPF link exists (plus 1 s for their perf buffers). The load
#    runs inside the bench's cgroup, where connscope attaches its packet programs
#    (--cgroup): on a node they sit at the cgroup2 root, on every pod's packets.
# 1b. Stacks: the same closed loop, interleaved (ROUNDS rounds): no tracer,
#    `connscope trace --stacks off` and `connscope trace --stacks all` (a user stack
#    taken at every connect and accept on the node, the worst case of the default
#    auto mode). The report gives each ratio to the baseline and all / off.
# 2. Fixed rate: RATE connections/s for RATE_SECONDS with `connscope trace -o json`
#    writing to a file; then its final stats record (events, lost, map_full) and the
#    number of connection records against 2 x the connections made. Target: lost == 0.
#    Then the same rate with `connscope daemon` writing to a file: the bytes the file
#    grew by from the load's start to 1 s after its end (the start record and the final
#    summaries left out), over the load's seconds, and by record type. Target at 20,000
#    healthy connections/s: < 2000 bytes/s.
# 3. TLS: the per-packet cost of connscope's cgroup_skb programs (they follow TLS
#    handshakes). tests/bench/tlsload.c, run inside a cgroup of the bench's own, does
#    a bulk TLS 1.3 transfer (one connection, 16 KiB writes; MB/s) and back-to-back
#    full TLS 1.3 handshakes (handshakes/s), each interleaved bare, under `connscope
#    daemon --cgroup <that cgroup> > file` (the DaemonSet's mode) and under `connscope
#    trace -o json --cgroup <that cgroup> > file` (TLS_ROUNDS rounds). Targets, for
#    the daemon: bulk ratio >= 0.98, handshake ratio >= 0.97 (trace's ratios are
#    reported); and in every trace handshake run, the connection records on the TLS
#    port with tls.outcome "ok" equal the handshakes made (client + server side).
# 4. HTTP/2: the cost of following HTTP/2 frames. nghttpd (one worker) and h2load
#    (`-c 6 -m 10 -t 1 -D <s>`: 6 connections, 10 concurrent streams each) run on
#    loopback inside the bench's cgroup; requests/s, first over h2c (nghttpd --no-tls,
#    prior knowledge), then over TLS (a throwaway self-signed certificate made in the
#    work directory), each interleaved bare, under the floor (do-nothing programs on
#    the same hooks), h2c under the walking floor (floor.bpf.c: the least work an
#    exact frame count takes, each header's length read on every packet),
#    `connscope daemon`, `connscope top` (as in part 1) and
#    `connscope trace -o json --cgroup <that cgroup> > file` (H2_ROUNDS rounds).
#    Targets, for each of daemon, top and trace: h2c ratio >= 0.97, TLS ratio >= 0.97
#    (no TLS library is probed by default: the TLS connections cost their packets'
#    programs only). In each trace run the report also counts the connection
#    records on the server port whose "h2" object is set, and sums their h2.streams;
#    and, from one more run of each with kernel.bpf_stats_enabled=1, the run time of
#    connscope's programs per packet and per request.
# 5. Replay: tests/bench/replay_gen.sh makes a capture of at least REPLAY_MB MB on
#    loopback (tcpdump -s 0): h2c (nghttpd --no-tls, h2load -c 8 -m 10 runs of 20000
#    requests) and TLS churn (openssl s_time -new, h2load over TLS with 200 connections,
#    nghttp runs), in a network namespace of its own whose lo has MTU BENCH_REPLAY_MTU
#    (default 1500, GSO off: wire-sized packets). Then, interleaved (REPLAY_ROUNDS rounds, rotating order), with the
#    file in the page cache and /usr/bin/time -v for wall time and peak RSS:
#    `connscope replay FILE -o json > /dev/null`, tshark computing the same HTTP/2
#    stream counts (`-d tcp.port==<h2c>,http2 -Y http2.type==1 -T fields -e tcp.stream
#    -e tcp.srcport -e http2.type -e http2.streamid > /dev/null`) and the bare libpcap
#    read loop tests/bench/pcapread.c. Targets: connscope >= 50x faster than tshark,
#    <= 3x the bare loop's time, peak RSS <= 1/10 of tshark's. One more run of each
#    (outside the timing) writes its output, and the report checks that connscope's
#    h2.streams on the h2c port equal tshark's client HEADERS (first per odd stream id).
# 6. DNAT: the cost of connscope's conntrack watcher (--conntrack bpf: a BPF netfilter
#    link program at prerouting/output, priority -99, that reads conntrack for every
#    packet) on a routed, DNATed path. The bench makes three network namespaces of its
#    own: a node (ip_forward=1) joined by veth pairs to a client (10.79.1.0/24) and a
#    backend (10.79.2.0/24), and in the node an nft DNAT rule per Service port: VIP
#    10.96.0.10:80 -> 10.79.2.20:8080 (bulk) and :81-88 -> :8081-8088 (rate). Then,
#    interleaved with and without `connscope trace -o json --conntrack bpf
#    --conntrack-netns /run/netns/<node> --cgroup <the bench's cgroup> > file`
#    (DNAT_ROUNDS rounds): (a) bulk, one TCP connection from the client to the VIP
#    (tests/bench/bulk.c: 64 KiB writes for DNAT_SECONDS, MB/s received); (b) connection
#    rate, connload closed loop from the client (16 source addresses) to the VIP's 8
#    ports, each interleaved bare, under `connscope daemon` and under `connscope trace
#    -o json`. Targets, for the daemon: bulk ratio >= 0.98, rate ratio >= 0.95 (trace's
#    are reported); in every connscope run its
#    end stats record shows conntrack events > 0 and lost == 0. One more connscope run
#    of each with kernel.bpf_stats_enabled=1 gives the netfilter program's run time
#    per packet, per MB and per connection. The loads run outside the bench's cgroup
#    (the part measures the netfilter program and the socket programs, not the
#    cgroup_skb ones). The conntrack program is only ever attached in the bench's node
#    namespace; the namespaces (and their sysctls and nft rules) go on exit, and nothing
#    of the machine's own network namespace is changed by this part.
#
# connscope never attaches its packet programs to the cgroup2 root here: a cgroup is
# made under the cgroup2 mount (found in /proc/self/mountinfo) for the run, every
# connscope gets `--cgroup` with it, and it is removed on exit. The loads of parts 1 to
# 4 run inside it, as every pod's traffic runs through the packet programs at the root
# of a node; the DNAT part's stay outside.
#
# The load is tests/bench/connload.c. In the throughput rounds a tracer's stdout is a
# regular file (as with `connscope daemon > file`); connscope counts as attached
# once its first record (stats, phase "start") is out (top: its first frame). Runs
# during which other BPF programs were loaded (e.g. someone's test running connscope)
# are flagged in the report. For the run's duration: net.ipv4.tcp_tw_reuse=1,
# kernel.bpf_stats_enabled=1 in part 2 and in the detail runs, tracefs mounted if
# tcpstates and tcplife need it; all put back on exit, as are the processes.
#
# Exits non-zero only when something broke (a build, the load generator, a tracer that
# does not start); a missed target is printed as MISS. Settings (environment):
#   BENCH_ROUNDS=5 BENCH_SECONDS=4 BENCH_RATE=20000 BENCH_RATE_SECONDS=10
#   BENCH_WORKERS=<cpus> BENCH_SERVER_THREADS=<cpus> BENCH_PORT=29100 (8 ports)
#   BENCH_QUIET_WAIT=5 (s to wait per run for other BPF programs to go and the CPUs to
#   be idle, at most BENCH_QUIET_BUDGET=40 s in all; BENCH_QUIET_BUSY=15 % is idle)
#   BENCH_KEEP=1 (keep the work directory)  TCPSTATES=/usr/sbin/tcpstates
#   TCPLIFE=/usr/sbin/tcplife  BENCH_CLOSES="fin rst"  BENCH_RST_SIDE=client (or server)
#   BENCH_TOP_INTERVAL=2 (top's -i in part 1)
#   BENCH_PARTS="tcp stacks rate tls h2 replay dnat" (which parts run; e.g. BENCH_PARTS=tls)
#   BENCH_TLS_ROUNDS=5 BENCH_TLS_SECONDS=4 BENCH_TLS_WORKERS=<cpus>
#   BENCH_TLS_PORT=<BENCH_PORT + 8>
#   BENCH_H2_ROUNDS=5 BENCH_H2_SECONDS=4 BENCH_H2_CLIENTS=6 BENCH_H2_STREAMS=10
#   BENCH_H2_PORT=<BENCH_PORT + 9> (h2c; TLS on the next port)
#   BENCH_REPLAY_ROUNDS=3 BENCH_REPLAY_MB=220 BENCH_REPLAY_PORT=<BENCH_PORT + 11> (h2c;
#   TLS on the next port) BENCH_REPLAY_MTU=1500 (0: lo's own 65536, 64 KiB packets)
#   BENCH_DNAT_ROUNDS=3 BENCH_DNAT_SECONDS=4 BENCH_DNAT_WORKERS=<cpus>
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=${BENCH_ROUNDS:-5}
SECS=${BENCH_SECONDS:-4}
RATE=${BENCH_RATE:-20000}
RATE_SECS=${BENCH_RATE_SECONDS:-10}
NCPU=$(nproc)
WORKERS=${BENCH_WORKERS:-$NCPU}
SERVER_THREADS=${BENCH_SERVER_THREADS:-$NCPU}
PORT=${BENCH_PORT:-29100}
NPORTS=8
PARTS=${BENCH_PARTS:-tcp stacks rate tls h2 replay dnat}
TLS_ROUNDS=${BENCH_TLS_ROUNDS:-5}
TLS_SECS=${BENCH_TLS_SECONDS:-4}
TLS_WORKERS=${BENCH_TLS_WORKERS:-$NCPU}
TLS_PORT=${BENCH_TLS_PORT:-$((PORT + NPORTS))}
H2_ROUNDS=${BENCH_H2_ROUNDS:-5}
H2_SECS=${BENCH_H2_SECONDS:-4}
H2_CLIENTS=${BENCH_H2_CLIENTS:-6}
H2_STREAMS=${BENCH_H2_STREAMS:-10}
H2_PORT=${BENCH_H2_PORT:-$((PORT + NPORTS + 1))}
H2_TLS_PORT=$((H2_PORT + 1))
REPLAY_ROUNDS=${BENCH_REPLAY_ROUNDS:-3}
REPLAY_MB=${BENCH_REPLAY_MB:-220}
REPLAY_PORT=${BENCH_REPLAY_PORT:-$((PORT + NPORTS + 3))}
REPLAY_TLS_PORT=$((REPLAY_PORT + 1))
DNAT_ROUNDS=${BENCH_DNAT_ROUNDS:-3}
DNAT_SECS=${BENCH_DNAT_SECONDS:-4}
DNAT_WORKERS=${BENCH_DNAT_WORKERS:-$NCPU}
DNAT_VIP=10.96.0.10
DNAT_BE=10.79.2.20
DNAT_CLI=10.79.1.10 # the first of 16 client addresses
BULK=$ROOT/.output/bulk
PCAPREAD=$ROOT/.output/pcapread
BPFTOOL=${BPFTOOL:-$(command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)}
TCPSTATES=${TCPSTATES:-$(command -v tcpstates 2>/dev/null || echo /usr/sbin/tcpstates)}
TCPLIFE=${TCPLIFE:-$(command -v tcplife 2>/dev/null || echo /usr/sbin/tcplife)}
# Part 1's close styles: fin (both sides close normally) and rst (SO_LINGER 0 on the
# side BENCH_RST_SIDE names: client or server).
CLOSES=${BENCH_CLOSES:-fin rst}
RST_SIDE=${BENCH_RST_SIDE:-client}
TOP_INTERVAL=${BENCH_TOP_INTERVAL:-2}
CONNSCOPE=$ROOT/connscope
CONNLOAD=$ROOT/.output/connload
FLOOR=$ROOT/.output/floor
FLOOR_OBJ=$ROOT/.output/floor.bpf.o
TLSLOAD=$ROOT/.output/tlsload

die() { echo "bench: failed to $*" >&2; exit 1; }
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
has_part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

for part in $PARTS; do
	case $part in tcp | stacks | rate | tls | h2 | replay | dnat) ;; *) die "parse BENCH_PARTS: unknown part '$part' (tcp stacks rate tls h2 replay dnat)" ;; esac
done
for style in $CLOSES; do
	case $style in fin | rst) ;; *) die "parse BENCH_CLOSES: unknown close style '$style' (fin rst)" ;; esac
done
case $RST_SIDE in client | server) ;; *) die "parse BENCH_RST_SIDE: '$RST_SIDE' (client or server)" ;; esac

[ "$(id -u)" = 0 ] || die "run: needs root (BPF programs and sysctls)"
[ -x "$CONNSCOPE" ] || die "find ./connscope: run make first"
# Debian's python3 (standard library only) for the report.
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)} ||
	die "find python3 (make deps)"

# ---- cleanup: every process we start, every setting we change ---------------------
PIDS=()
RESTORE_SYSCTL=()
UNMOUNT_TRACEFS=0
CGROUP=         # the bench's own cgroup2 directory, once made
NETNS_MADE=()   # the DNAT part's network namespaces (ip netns names)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/connscope-bench.XXXXXX")

cleanup() {
	local rc=$? pid kv
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || continue
		kill -INT "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for kv in "${RESTORE_SYSCTL[@]}"; do
		sysctl -q -w "$kv" >/dev/null || echo "bench: failed to restore sysctl $kv" >&2
	done
	[ -n "$CGROUP" ] && remove_cgroup
	for kv in "${NETNS_MADE[@]}"; do
		ip netns del "$kv" 2>/dev/null || echo "bench: failed to remove the network namespace $kv" >&2
	done
	if [ "$UNMOUNT_TRACEFS" = 1 ]; then
		umount /sys/kernel/tracing 2>/dev/null ||
			echo "bench: note: /sys/kernel/tracing left mounted (busy)" >&2
	fi
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "bench: work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the bench's cgroup ---------------------------------------------------------------
# The first cgroup2 mount in /proc/self/mountinfo (field 5 is the mount point, octal
# escapes as in \040; the file system type follows the "-" separator).
cgroup2_mount() {
	local mnt
	mnt=$(awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' /proc/self/mountinfo)
	[ -n "$mnt" ] || return 1
	printf '%b' "$(printf '%s' "$mnt" | sed 's/\\\([0-7][0-7][0-7]\)/\\0\1/g')"
}

make_cgroup() {
	local mnt
	mnt=$(cgroup2_mount) || die "find a cgroup2 mount in /proc/self/mountinfo"
	[ -f "$mnt/cgroup.procs" ] || die "use the cgroup2 mount $mnt (no cgroup.procs)"
	mkdir "$mnt/connscope-bench-$$" || die "create a cgroup under $mnt"
	CGROUP=$mnt/connscope-bench-$$
}

# Everything still in our cgroup is ours (only this script puts processes there).
remove_cgroup() {
	local pid i
	for ((i = 0; i < 25; i++)); do
		[ -s "$CGROUP/cgroup.procs" ] || break
		while read -r pid; do
			kill -KILL "$pid" 2>/dev/null || true
		done <"$CGROUP/cgroup.procs"
		sleep 0.2
	done
	for ((i = 0; i < 25; i++)); do
		rmdir "$CGROUP" 2>/dev/null && { CGROUP=; return 0; }
		sleep 0.2
	done
	echo "bench: failed to remove the cgroup $CGROUP" >&2
}

# in_cgroup CMD ARGS...: run CMD inside the bench's cgroup (it moves in, then execs).
in_cgroup() {
	(
		echo "$BASHPID" >"$CGROUP/cgroup.procs" || die "move into the cgroup $CGROUP"
		exec "$@"
	)
}

# Set a sysctl for the duration of the run; the old value comes back on exit.
set_sysctl() {
	local key=$1 val=$2 old
	old=$(sysctl -n "$key") || die "read sysctl $key"
	[ "$old" = "$val" ] && return 0
	RESTORE_SYSCTL+=("$key=$old")
	sysctl -q -w "$key=$val" >/dev/null || die "set sysctl $key=$val"
}

# Put one sysctl back now (cleanup would do it at exit anyway).
restore_sysctl() {
	local kv
	for kv in "${RESTORE_SYSCTL[@]}"; do
		if [ "${kv%%=*}" = "$1" ]; then
			sysctl -q -w "$kv" >/dev/null || echo "bench: failed to restore sysctl $kv" >&2
		fi
	done
}

forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# ---- build and environment --------------------------------------------------------
mkdir -p .output
gcc -O2 -g -Wall -Wextra -pthread -o "$CONNLOAD" tests/bench/connload.c ||
	die "build tests/bench/connload.c"
if has_part tcp || has_part tls || has_part h2 || has_part dnat; then
	# The floor: vmlinux.h is the one the build made (make all ran before).
	vmlinux_h=$(find "$ROOT/vmlinux" -name vmlinux.h 2>/dev/null | head -n 1)
	[ -n "$vmlinux_h" ] || die "find vmlinux.h under vmlinux/ (run make first)"
	clang -O2 -g -target bpf -D__TARGET_ARCH_"$(uname -m | sed -e 's/x86_64/x86/' \
		-e 's/aarch64/arm64/')" -I"$(dirname "$vmlinux_h")" -c tests/bench/floor.bpf.c \
		-o "$FLOOR_OBJ" || die "build tests/bench/floor.bpf.c"
	gcc -O2 -g -Wall -Wextra -o "$FLOOR" tests/bench/floor.c -lbpf ||
		die "build tests/bench/floor.c"
fi
if has_part tls; then
	gcc -O2 -g -Wall -Wextra -pthread -o "$TLSLOAD" tests/bench/tlsload.c -lssl -lcrypto ||
		die "build tests/bench/tlsload.c (needs libssl-dev)"
fi
if has_part h2; then
	for tool in nghttpd h2load openssl ss; do
		command -v "$tool" >/dev/null ||
			die "find $tool (apt-get install nghttp2-server nghttp2-client openssl iproute2)"
	done
fi
if has_part dnat; then
	for tool in ip nft; do
		command -v "$tool" >/dev/null || die "find $tool (apt-get install iproute2 nftables)"
	done
	gcc -O2 -g -Wall -Wextra -pthread -o "$BULK" tests/bench/bulk.c ||
		die "build tests/bench/bulk.c"
fi
HAVE_PCAPREAD=0
if has_part replay; then
	for tool in tshark tcpdump nghttpd h2load nghttp openssl ss /usr/bin/time; do
		command -v "$tool" >/dev/null ||
			die "find $tool (apt-get install tshark tcpdump nghttp2-server nghttp2-client openssl iproute2 time)"
	done
	if [ -f tests/bench/pcapread.c ]; then
		cc -O2 -Wall -o "$PCAPREAD" tests/bench/pcapread.c -lpcap ||
			die "build tests/bench/pcapread.c (needs libpcap-dev)"
		HAVE_PCAPREAD=1
	else
		log "tests/bench/pcapread.c not found: the bare libpcap loop comparison is skipped"
	fi
fi
make_cgroup
# The whole run uses one connscope binary, whatever a rebuild does to ./connscope
# meanwhile.
cp "$CONNSCOPE" "$WORK/connscope" || die "copy ./connscope"
log "connscope: ./connscope built $(date -r "$CONNSCOPE" '+%F %T'), sha256" \
	"$(sha256sum "$CONNSCOPE" | cut -c1-12), tree $(git rev-parse --short HEAD 2>/dev/null ||
		echo '?')$(git diff --quiet HEAD -- bpf user 2>/dev/null || echo ' + uncommitted bpf/user changes')"
CONNSCOPE=$WORK/connscope
log "cgroup for connscope's packet programs and the TLS load: $CGROUP"
# How close each program is to the verifier's budget (and how long loading takes).
"$CONNSCOPE" check -v --stacks all --conntrack off --cgroup "$CGROUP" 2>/dev/null |
	sed -n '/^Instructions the verifier/,$p' >"$WORK/verified.txt" || true

# The client side ends in TIME_WAIT; allow loopback reuse of old TIME_WAIT 4-tuples
# (on top of the 249 source addresses x 8 ports the load spreads over). The DNAT part
# sets its own in its client namespace and changes nothing in the machine's own.
for part in $PARTS; do
	[ "$part" = dnat ] && continue
	set_sysctl net.ipv4.tcp_tw_reuse 1
	break
done

# The anchors of part 1, libbpf-tools' tcpstates and tcplife: both attach the classic
# tracepoint sock:inet_sock_set_state, which needs tracefs.
tracefs_ready() {
	[ -d /sys/kernel/tracing/events/sock ] && return 0
	if [ "$UNMOUNT_TRACEFS" = 0 ] && mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null; then
		UNMOUNT_TRACEFS=1
	fi
	[ -d /sys/kernel/tracing/events/sock ]
}

# anchor_ok NAME PATH: whether the anchor tool can run here (says why not).
anchor_ok() {
	if [ ! -x "$2" ]; then
		log "$1 not found ($2): comparison skipped (apt-get install libbpf-tools)"
		return 1
	fi
	if ! tracefs_ready; then
		log "tracefs is not available: $1 comparison skipped"
		return 1
	fi
}

# Part 1's configurations: no tracer, the floor (do-nothing programs on the same
# hooks: what the kernel charges for any program there), connscope's three live
# modes, the two anchors.
CONFIGS=(baseline floor counting daemon top trace)
if has_part tcp; then
	anchor_ok tcpstates "$TCPSTATES" && CONFIGS+=(tcpstates)
	anchor_ok tcplife "$TCPLIFE" && CONFIGS+=(tcplife)
fi

LOAD_ARGS=(--workers "$WORKERS" --server-threads "$SERVER_THREADS" --base-port "$PORT"
	--ports "$NPORTS")

# ---- tracers ------------------------------------------------------------------------
# A tracer's stdout goes to a FIFO drained by a reader that keeps the first line
# (connscope's start record = attached) and the last one (its end stats record).
TRACER_PID=
TRACER_OUT=
TRACER_NAME=

# start_tracer NAME DIR [OUTFILE]: returns once the tracer is attached.
start_tracer() {
	local name=$1 dir=$2 out=${3:-$2/out} i t0
	mkdir -p "$dir"
	t0=$(date +%s%N)
	TRACER_NAME=$name
	# Records go to a regular file, as `connscope daemon > file` would: no
	# reader process competes with the load for the CPUs. Conntrack's netfilter
	# program stays off here: these parts measure the socket and packet programs,
	# and it is never attached in the machine's own network namespace by the bench.
	TRACER_OUT=$out
	case $name in
	stacksoff | stacksall)
		"$CONNSCOPE" trace -o json --cgroup "$CGROUP" --conntrack off \
			--stacks "${name#stacks}" >"$out" 2>"$dir/err" & ;;
	# Part 1's three modes, as a node would run them: daemon (the DaemonSet, its log a
	# file), top (no terminal: a frame every TOP_INTERVAL s appended to a file) and
	# trace -o json into a file.
	daemon)
		if [ -n "${CT_NETNS:-}" ]; then
			"$CONNSCOPE" daemon --cgroup "$CGROUP" --conntrack bpf \
				--conntrack-netns "$CT_NETNS" >"$out" 2>"$dir/err" &
		else
			"$CONNSCOPE" daemon --cgroup "$CGROUP" --conntrack off >"$out" 2>"$dir/err" &
		fi ;;
	top)
		"$CONNSCOPE" top -i "$TOP_INTERVAL" --cgroup "$CGROUP" --conntrack off \
			>"$out" 2>"$dir/err" </dev/null & ;;
	probes)
		# HTTP/2 inside TLS stream by stream: uprobes on libssl's SSL_read and
		# SSL_write (nghttpd and h2load both use it).
		"$CONNSCOPE" trace -o json --cgroup "$CGROUP" --conntrack off --h2-plaintext all \
			>"$out" 2>"$dir/err" & ;;
	connscope | trace)
		if [ -n "${CT_NETNS:-}" ]; then
			# The DNAT part: conntrack's program in the bench's node namespace only.
			"$CONNSCOPE" trace -o json --cgroup "$CGROUP" --conntrack bpf \
				--conntrack-netns "$CT_NETNS" >"$out" 2>"$dir/err" &
		else
			"$CONNSCOPE" trace -o json --cgroup "$CGROUP" --conntrack off >"$out" 2>"$dir/err" &
		fi ;;
	floor)
		# The DNAT part: the netfilter hooks too, where connscope's conntrack goes.
		"$FLOOR" "$FLOOR_OBJ" --cgroup "$CGROUP" ${CT_NETNS:+--netns "$CT_NETNS"} \
			>"$out" 2>"$dir/err" & ;;
	counting)
		# The floor's packet and netfilter programs, and on the tracepoint the
		# least work that exact counts in the kernel take (floor.bpf.c).
		FLOOR_COUNT=1 "$FLOOR" "$FLOOR_OBJ" --cgroup "$CGROUP" ${CT_NETNS:+--netns "$CT_NETNS"} \
			>"$out" 2>"$dir/err" & ;;
	walking)
		# The floor's tracepoint program, and on the packet hooks the least work
		# that an exact HTTP/2 frame count takes (floor.bpf.c).
		FLOOR_WALK=1 "$FLOOR" "$FLOOR_OBJ" --cgroup "$CGROUP" >"$out" 2>"$dir/err" & ;;
	tcpstates) "$TCPSTATES" >"$out" 2>"$dir/err" & ;;
	tcplife) "$TCPLIFE" >"$out" 2>"$dir/err" & ;;
	*) die "start $name: unknown tracer" ;;
	esac
	TRACER_PID=$!
	PIDS+=("$TRACER_PID")

	for ((i = 0; i < 300; i++)); do
		kill -0 "$TRACER_PID" 2>/dev/null || {
			sed 's/^/    /' "$dir/err" >&2
			die "start $name (it exited; stderr above)"
		}
		case $name in
		connscope | trace | probes | daemon | stacksoff | stacksall | floor | counting | walking)
			# Attached once its first record, stats phase "start", is out:
			# its start-up time (load, verify, attach, snapshot) is kept.
			if head -n 1 "$out" 2>/dev/null | grep -q '"phase":"start"'; then
				echo "$name $((($(date +%s%N) - t0) / 1000000))" >>"$WORK/startup.txt"
				return 0
			fi ;;
		top)
			# top writes no stats record; it draws its first frame once attached
			# (after the snapshot).
			if grep -q '^connscope top - ' "$out" 2>/dev/null; then
				echo "$name $((($(date +%s%N) - t0) / 1000000))" >>"$WORK/startup.txt"
				return 0
			fi ;;
		tcpstates | tcplife)
			# Its stdout is block-buffered, so no header shows up: wait for the BPF
			# link, then give it a moment to set up its perf buffer.
			if has_bpf_link "$TRACER_PID"; then
				sleep 1
				return 0
			fi ;;
		esac
		sleep 0.05
	done
	die "start $name: not attached after 15 s"
}

has_bpf_link() {
	local f
	for f in "/proc/$1/fd/"*; do
		[ "$(readlink "$f" 2>/dev/null)" = "anon_inode:bpf_link" ] && return 0
	done
	return 1
}

# CPU time (ms) a process (all its threads) has used so far.
CLK_TCK=$(getconf CLK_TCK)
proc_cpu_ms() {
	local stat f
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	# after "pid (comm) ": state is f[0], utime f[11], stime f[12] (proc(5))
	read -r -a f <<<"${stat##*) }"
	echo $(((f[11] + f[12]) * 1000 / CLK_TCK))
}

stop_tracer() {
	local dir=$1 i
	proc_cpu_ms "$TRACER_PID" >"$dir/cpu_ms"
	tracer_prog_ids "$TRACER_PID" >>"$OUR_PROG_IDS"
	kill -INT "$TRACER_PID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$TRACER_PID" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$TRACER_PID" 2>/dev/null; then
		log "tracer $TRACER_PID ignored SIGINT for 5 s: killing it"
		kill -KILL "$TRACER_PID" 2>/dev/null || true
	fi
	wait "$TRACER_PID" 2>/dev/null || true
	forget_pid "$TRACER_PID"
	# The report reads the tracer's first and last lines; the file itself can go.
	head -n 1 "$TRACER_OUT" >"$dir/first" 2>/dev/null || true
	tail -n 1 "$TRACER_OUT" >"$dir/last" 2>/dev/null || true
	# top's counters (events, lost) are in its last frame's title line.
	if [ "$TRACER_NAME" = top ]; then
		{ grep '^connscope top - ' "$TRACER_OUT" | tail -n 1 >"$dir/top_last"; } 2>/dev/null || true
	fi
	stat -c %s "$TRACER_OUT" >"$dir/out_bytes_end" 2>/dev/null || true
	[ "$TRACER_OUT" = "$dir/out" ] && rm -f "$TRACER_OUT"
	TRACER_PID=
	TRACER_NAME=
}

run_load() {
	local out=$1
	shift
	# Inside the bench's cgroup, where connscope's packet programs are attached: on
	# a node they sit at the cgroup2 root, and every packet of every pod runs them.
	in_cgroup "$CONNLOAD" "$@" "${LOAD_ARGS[@]}" >"$out" || die "run connload $* (exit $?)"
	grep -q '"conns_per_s"' "$out" || die "run connload: no result line"
}

# The TLS load, inside the bench's cgroup.
run_tlsload() {
	local out=$1
	shift
	in_cgroup "$TLSLOAD" "$@" --port "$TLS_PORT" >"$out" || die "run tlsload $* (exit $?)"
	grep -q '"mode"' "$out" || die "run tlsload: no result line"
}

# ---- other people's tracers and CPU use --------------------------------------------
# This is a shared machine: another connscope (a test run, say) attached during a
# round slows every connection of that round. Record which BPF programs are loaded and
# how much CPU the rest of the machine used, so the report can flag such rounds.
# Our own tracers' programs can outlive them for a moment (the kernel frees them after
# a grace period): their ids, noted at each stop, do not count as someone else's.
OUR_PROG_IDS=$WORK/our_prog_ids
: >"$OUR_PROG_IDS"
PROG_FILTER='import json,sys
try: d = json.load(sys.stdin)
except ValueError: d = []
ours = set(open(sys.argv[1]).read().split())
print(" ".join("%d:%s" % (p["id"], p.get("name", "?")) for p in d
               if p.get("type") not in ("cgroup_device",) and str(p["id"]) not in ours))'
bpf_progs() { "$BPFTOOL" -j prog show 2>/dev/null | "$PYTHON" -c "$PROG_FILTER" "$OUR_PROG_IDS"; }
# tracer_prog_ids PID: the ids of the BPF programs behind PID's file descriptors.
tracer_prog_ids() {
	cat "/proc/$1/fdinfo/"* 2>/dev/null | awk '/^prog_id:/ { print $2 }' | sort -un
}
# busy and steal CPU time of the whole machine, ms
cpu_busy() { awk '/^cpu /{printf "%d %d\n", ($2+$3+$4+$7+$8)*10, $9*10}' /proc/stat; }

QUIET_WAIT=${BENCH_QUIET_WAIT:-5}     # per run, seconds
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-40} # whole bench, seconds
quiet_spent=0
QUIET_BUSY=${BENCH_QUIET_BUSY:-15}    # % of all CPUs busy that counts as quiet

# Busy share of all CPUs (%) over the next 0.25 s.
busy_pct() {
	# shellcheck disable=SC2016 # awk's fields
	local a b prog='/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}'
	read -r -a a < <(awk "$prog" /proc/stat)
	sleep 0.25
	read -r -a b < <(awk "$prog" /proc/stat)
	echo $(((b[0] - a[0]) * 100 / (b[1] - a[1] > 0 ? b[1] - a[1] : 1)))
}

# Wait (within the budgets) until no other BPF program is loaded and the CPUs are
# idle: someone's test or build running next to the load slows it down.
wait_quiet() {
	local t=0 progs busy why
	while [ "$t" -lt "$((QUIET_WAIT * 4))" ] && [ "$quiet_spent" -lt "$((QUIET_BUDGET * 4))" ]; do
		progs=$(bpf_progs)
		busy=$(busy_pct) # takes 0.25 s
		if [ -n "$progs" ]; then
			why="other BPF programs are loaded ($progs)"
		elif [ "$busy" -gt "$QUIET_BUSY" ]; then
			why="the machine is ${busy}% busy"
		else
			return 0
		fi
		[ "$t" = 0 ] && log "$why: waiting up to ${QUIET_WAIT}s"
		t=$((t + 1))
		quiet_spent=$((quiet_spent + 1))
	done
}

# The size of the tracer's output file so far (bytes).
out_bytes() { stat -c %s "$TRACER_OUT" 2>/dev/null || echo 0; }

# measured_run CONFIG DIR LOAD-ARGS...: the load, with CONFIG's tracer attached.
# Around the timed window: the tracer's CPU time (tracer_cpu0/1, from /proc/PID/stat)
# and the size of its output (out_bytes0/1); with PROG_STATS=1 (kernel.bpf_stats_enabled
# on) also every program's run count and time (prog_stats0/1.json) and the ids of the
# tracer's programs (tracer_prog_ids).
measured_run() {
	local cfg=$1 dir=$2
	shift 2
	mkdir -p "$dir"
	wait_quiet
	bpf_progs >"$dir/progs0"
	[ "$cfg" != baseline ] && start_tracer "$cfg" "$dir" "${OUTFILE:-}"
	bpf_progs >"$dir/progs1"
	sleep 0.5
	if [ "${PROG_STATS:-0}" = 1 ] && [ -n "$TRACER_PID" ]; then
		tracer_prog_ids "$TRACER_PID" >"$dir/tracer_prog_ids"
		"$BPFTOOL" -j prog show >"$dir/prog_stats0.json" 2>/dev/null || true
	fi
	cpu_busy >"$dir/busy0"
	if [ -n "$TRACER_PID" ]; then
		proc_cpu_ms "$TRACER_PID" >"$dir/tracer_cpu0"
		out_bytes >"$dir/out_bytes0"
	fi
	"${LOAD_FN:-run_load}" "$dir/load.json" "$@"
	cpu_busy >"$dir/busy1"
	if [ -n "$TRACER_PID" ]; then
		proc_cpu_ms "$TRACER_PID" >"$dir/tracer_cpu1"
		out_bytes >"$dir/out_bytes1"
	fi
	if [ "${PROG_STATS:-0}" = 1 ] && [ -n "$TRACER_PID" ]; then
		"$BPFTOOL" -j prog show >"$dir/prog_stats1.json" 2>/dev/null || true
	fi
	bpf_progs >"$dir/progs2"
	return 0
}

# interleave SUBDIR LABEL CONFIG...: ROUNDS rounds of the closed loop, one run per
# config, the order rotating per round; results in $WORK/SUBDIR/r<round>-<slot>-<config>.
# CLOSE_ARGS (an array, may be empty) goes to every connload run.
CLOSE_ARGS=()
interleave() {
	local sub=$1 label=$2 r k cfg dir
	shift 2
	local cfgs=("$@") n=$#
	mkdir -p "$WORK/$sub"
	for ((r = 1; r <= ROUNDS; r++)); do
		for ((k = 0; k < n; k++)); do
			cfg=${cfgs[$(((r - 1 + k) % n))]}
			dir=$WORK/$sub/r$r-$k-$cfg
			measured_run "$cfg" "$dir" --closed-loop --seconds "$SECS" "${CLOSE_ARGS[@]}"
			[ "$cfg" != baseline ] && stop_tracer "$dir"
			log "${label}round $r/$ROUNDS $(printf '%-10s' "$cfg")" \
				"$("$PYTHON" -c 'import json,sys; print("%.0f conns/s" % json.load(open(sys.argv[1]))["conns_per_s"])' "$dir/load.json")"
		done
	done
}

# ---- 1. throughput, interleaved, per close style -------------------------------------
# close_args STYLE: connload's options for a close style.
close_args() {
	case $1 in
	fin) echo "--close fin" ;;
	rst) echo "--close rst-$RST_SIDE" ;;
	esac
}

# One more run of each connscope mode with kernel.bpf_stats_enabled=1 (which itself
# costs a little, hence outside the ratios): its programs' run time over the timed
# window, per connection (prog_stats0/1.json), and its CPU time again.
tcp_detail() {
	local style=$1 mode dir
	set_sysctl kernel.bpf_stats_enabled 1
	for mode in daemon top trace; do
		dir=$WORK/runs-$style/detail-$mode
		PROG_STATS=1 measured_run "$mode" "$dir" --closed-loop --seconds "$SECS" "${CLOSE_ARGS[@]}"
		stop_tracer "$dir"
		log "$style detail $(printf '%-10s' "$mode") kernel.bpf_stats_enabled=1" \
			"$("$PYTHON" -c 'import json,sys; print("%.0f conns/s" % json.load(open(sys.argv[1]))["conns_per_s"])' "$dir/load.json")"
	done
	restore_sysctl kernel.bpf_stats_enabled
}

if has_part tcp; then
	for style in $CLOSES; do
		# shellcheck disable=SC2207 # two words, no globbing in them
		CLOSE_ARGS=($(close_args "$style"))
		log "throughput, $style closes (connload ${CLOSE_ARGS[*]}): ${#CONFIGS[@]} configs x" \
			"$ROUNDS rounds x ${SECS}s, closed loop, $WORKERS client + $SERVER_THREADS server" \
			"threads, $NCPU CPUs"
		interleave "runs-$style" "$style " "${CONFIGS[@]}"
		tcp_detail "$style"
	done
	CLOSE_ARGS=()
fi

# ---- 1b. stacks: --stacks all against --stacks off, interleaved ---------------------
if has_part stacks; then
	log "stacks: 3 configs x $ROUNDS rounds x ${SECS}s, closed loop"
	interleave stacks_runs "stacks " baseline stacksoff stacksall
fi

# ---- 2. fixed rate with connscope writing to a file ---------------------------------
# First `connscope trace -o json > file` (records and lost events), then
# `connscope daemon > file` (how many bytes a DaemonSet's log grows by per second
# of healthy churn).
if has_part rate; then
	log "fixed rate: $RATE connections/s for ${RATE_SECS}s with connscope trace -o json > file"
	dir=$WORK/rate
	# Count BPF run time for this part only (connscope reports it as bpf_ms).
	set_sysctl kernel.bpf_stats_enabled 1
	OUTFILE=$dir/trace.jsonl measured_run connscope "$dir" --rate "$RATE" --seconds "$RATE_SECS"
	sleep 1 # every connection's last state change is in; let connscope drain and print
	stop_tracer "$dir"
	log "fixed rate: $RATE connections/s for ${RATE_SECS}s with connscope daemon > file"
	dir=$WORK/rate-daemon
	OUTFILE=$dir/daemon.jsonl measured_run daemon "$dir" --rate "$RATE" --seconds "$RATE_SECS"
	sleep 1 # the window's last records are out (daemon writes every tick)
	out_bytes >"$dir/out_bytes2"
	stop_tracer "$dir"
	restore_sysctl kernel.bpf_stats_enabled
fi

# ---- 3. TLS: bulk transfer and handshakes, inside the bench's cgroup ------------------
# Baseline and connscope alternate within each round (order rotating per round),
# bulk first, then handshakes. The handshake runs keep connscope's output to count
# the connection records with a TLS outcome; the bulk runs keep only its stats.
tls_round() {
	local mode=$1 r=$2 k cfg dir
	for ((k = 0; k < ${#TLS_CONFIGS[@]}; k++)); do
		cfg=${TLS_CONFIGS[$(((r - 1 + k) % ${#TLS_CONFIGS[@]}))]}
		dir=$WORK/tls/$mode/r$r-$k-$cfg
		if [ "$mode" = handshakes ] && [ "$cfg" = connscope ]; then
			OUTFILE=$dir/trace.jsonl LOAD_FN=run_tlsload measured_run "$cfg" "$dir" \
				--handshakes --seconds "$TLS_SECS" --workers "$TLS_WORKERS"
		elif [ "$mode" = handshakes ]; then
			LOAD_FN=run_tlsload measured_run "$cfg" "$dir" \
				--handshakes --seconds "$TLS_SECS" --workers "$TLS_WORKERS"
		else
			LOAD_FN=run_tlsload measured_run "$cfg" "$dir" --bulk --seconds "$TLS_SECS"
		fi
		if [ "$cfg" != baseline ]; then
			# The last connections' records are out once connscope has drained.
			[ "$mode" = handshakes ] && sleep 1
			stop_tracer "$dir"
			if [ "$mode" = handshakes ] && [ "$cfg" = connscope ]; then
				"$PYTHON" tests/bench/report.py --count-tls "$dir/trace.jsonl" \
					--port "$TLS_PORT" >"$dir/records.json" ||
					die "count the TLS records of $dir/trace.jsonl"
				[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$dir/trace.jsonl"
			fi
		fi
		log "tls round $r/$TLS_ROUNDS $(printf '%-10s %-10s' "$mode" "$cfg")" \
			"$("$PYTHON" -c 'import json,sys
d = json.load(open(sys.argv[1]))
print("%.1f MB/s" % d["mb_per_s"] if d["mode"] == "bulk" else
      "%.0f handshakes/s (%d failed)" % (d["handshakes_per_s"], d["failed"]))' "$dir/load.json")"
	done
}

# One more connscope run of each load with kernel.bpf_stats_enabled=1 (which itself
# costs a little, hence outside the ratios): the run count and run time of each of
# connscope's programs (told apart from anyone else's by the ids behind its file
# descriptors) give the cgroup_skb programs' cost per packet directly.
tls_detail() {
	local mode=$1 dir=$WORK/tls/detail-$1
	mkdir -p "$dir"
	set_sysctl kernel.bpf_stats_enabled 1
	if [ "$mode" = handshakes ]; then
		LOAD_FN=run_tlsload measured_run connscope "$dir" \
			--handshakes --seconds "$TLS_SECS" --workers "$TLS_WORKERS"
	else
		LOAD_FN=run_tlsload measured_run connscope "$dir" --bulk --seconds "$TLS_SECS"
	fi
	tracer_prog_ids "$TRACER_PID" >"$dir/tracer_prog_ids"
	"$BPFTOOL" -j prog show >"$dir/prog_stats.json" 2>/dev/null || true
	stop_tracer "$dir"
	restore_sysctl kernel.bpf_stats_enabled
}

if has_part tls; then
	# daemon: the DaemonSet's mode (its targets); connscope: trace -o json.
	TLS_CONFIGS=(baseline floor daemon connscope)
	log "tls: 4 configs (bare, floor, daemon, trace) x $TLS_ROUNDS rounds x ${TLS_SECS}s, bulk and handshakes" \
		"($TLS_WORKERS client + $TLS_WORKERS server threads), port $TLS_PORT, in $CGROUP"
	for ((r = 1; r <= TLS_ROUNDS; r++)); do
		tls_round bulk "$r"
		tls_round handshakes "$r"
	done
	tls_detail bulk
	tls_detail handshakes
fi

# ---- 4. HTTP/2: nghttpd and h2load, h2c and TLS, inside the bench's cgroup ------------
# One nghttpd per protocol serves the whole part (each h2load run makes its own 6
# connections). The load's CPU time is the cgroup's (nghttpd and h2load together).
cgroup_cpu_ms() { awk '/^usage_usec/ { printf "%d\n", $2 / 1000 }' "$CGROUP/cpu.stat"; }

# start_nghttpd PORT [KEY CERT]: nghttpd on 127.0.0.1:PORT in the cgroup (no key: h2c);
# its pid in NGHTTPD_PID. (One subshell that moves itself and execs: $! is nghttpd.)
NGHTTPD_PID=
start_nghttpd() {
	local port=$1 pid i tls=()
	shift
	[ $# = 0 ] && tls=(--no-tls)
	(
		echo "$BASHPID" >"$CGROUP/cgroup.procs" || exit 125
		exec nghttpd "${tls[@]}" -a 127.0.0.1 -d "$WORK/h2/www" "$port" "$@"
	) >/dev/null 2>"$WORK/h2/nghttpd-$port.err" &
	pid=$!
	PIDS+=("$pid")
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || {
			sed 's/^/    /' "$WORK/h2/nghttpd-$port.err" >&2
			die "start nghttpd on port $port (it exited; stderr above)"
		}
		if [ -n "$(ss -Hltn "sport = :$port")" ]; then
			NGHTTPD_PID=$pid
			return 0
		fi
		sleep 0.05
	done
	die "start nghttpd on port $port: not listening after 5 s"
}

stop_pid() {
	local i
	kill -TERM "$1" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	forget_pid "$1"
}

# run_h2load OUT MODE: one timed h2load run against the MODE (h2c|tls) server.
run_h2load() {
	local out=$1 mode=$2 url c0 c1 rc=0
	case $mode in
	h2c) url=http://127.0.0.1:$H2_PORT/ ;;
	tls) url=https://127.0.0.1:$H2_TLS_PORT/ ;;
	esac
	c0=$(cgroup_cpu_ms)
	# -n is ignored with -D (timed run), but must be large for h2load's checks.
	in_cgroup h2load -n 1000000000 -c "$H2_CLIENTS" -m "$H2_STREAMS" -t 1 -D "$H2_SECS" \
		"$url" >"$out.raw" 2>&1 || rc=$?
	c1=$(cgroup_cpu_ms)
	[ "$rc" = 0 ] || { tail -n 20 "$out.raw" | sed 's/^/    /' >&2; die "run h2load $url (exit $rc)"; }
	"$PYTHON" tests/bench/report.py --parse-h2load "$out.raw" --mode "$mode" \
		--seconds "$H2_SECS" --cpu-ms "$((c1 - c0))" >"$out" ||
		die "run h2load $url: no summary (output in $out.raw)"
}

h2_round() {
	local mode=$1 r=$2 k cfg dir port=$H2_PORT
	[ "$mode" = tls ] && port=$H2_TLS_PORT
	local n=${#H2_CONFIGS[@]}
	for ((k = 0; k < n; k++)); do
		cfg=${H2_CONFIGS[$(((r - 1 + k) % n))]}
		# The TLS library probes have nothing to do on h2c, nor the walking floor
		# (frames in the clear) on TLS.
		[ "$cfg" = probes ] && [ "$mode" = h2c ] && continue
		[ "$cfg" = walking ] && [ "$mode" = tls ] && continue
		dir=$WORK/h2/$mode/r$r-$k-$cfg
		if [ "$cfg" = connscope ] || [ "$cfg" = probes ]; then
			OUTFILE=$dir/trace.jsonl LOAD_FN=run_h2load measured_run "$cfg" "$dir" "$mode"
			# The last connections' records are out once connscope has drained.
			sleep 1
			stop_tracer "$dir"
			"$PYTHON" tests/bench/report.py --count-h2 "$dir/trace.jsonl" --port "$port" \
				>"$dir/records.json" || die "count the HTTP/2 records of $dir/trace.jsonl"
			[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$dir/trace.jsonl"
		else
			LOAD_FN=run_h2load measured_run "$cfg" "$dir" "$mode"
		fi
		[ "$cfg" = connscope ] || [ "$cfg" = probes ] || [ "$cfg" = baseline ] ||
			stop_tracer "$dir"
		log "h2 round $r/$H2_ROUNDS $(printf '%-4s %-10s' "$mode" "$cfg")" \
			"$("$PYTHON" -c 'import json,sys
d = json.load(open(sys.argv[1]))
print("%.0f req/s (%d succeeded, %d failed)" % (d["req_per_s"], d["succeeded"], d["failed"]))' \
				"$dir/load.json")"
	done
}

# One more connscope run of each with kernel.bpf_stats_enabled=1 (outside the ratios,
# as in the TLS part): connscope's programs' run counts and times, per request.
# h2_detail MODE [CFG]: CFG probes is the TLS library probes' run (detail-tls-probes):
# their run counts are the uprobe traps, which the report prices; walking is the
# walking floor's (detail-h2c-walking), beside connscope's time per packet.
h2_detail() {
	local mode=$1 cfg=${2:-connscope} dir=$WORK/h2/detail-$1
	[ "$cfg" = connscope ] || dir=$dir-$cfg
	mkdir -p "$dir"
	set_sysctl kernel.bpf_stats_enabled 1
	LOAD_FN=run_h2load measured_run "$cfg" "$dir" "$mode"
	tracer_prog_ids "$TRACER_PID" >"$dir/tracer_prog_ids"
	"$BPFTOOL" -j prog show >"$dir/prog_stats.json" 2>/dev/null || true
	stop_tracer "$dir"
	restore_sysctl kernel.bpf_stats_enabled
}

if has_part h2; then
	# connscope: trace -o json (its records are counted); daemon and top as in part 1.
	# probes: trace with the TLS library probes (--h2-plaintext all), TLS only.
	# walking: the walking floor (floor.bpf.c), h2c only.
	H2_CONFIGS=(baseline floor walking daemon top connscope probes)
	mkdir -p "$WORK/h2/www" "$WORK/h2/cert"
	head -c 64 /dev/zero | tr '\0' x >"$WORK/h2/www/index.html"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$WORK/h2/cert/key.pem" -out "$WORK/h2/cert/cert.pem" 2>"$WORK/h2/cert/err" ||
		die "make a self-signed certificate ($(tail -n 1 "$WORK/h2/cert/err"))"
	start_nghttpd "$H2_PORT"
	H2C_SRV=$NGHTTPD_PID
	start_nghttpd "$H2_TLS_PORT" "$WORK/h2/cert/key.pem" "$WORK/h2/cert/cert.pem"
	H2TLS_SRV=$NGHTTPD_PID
	log "h2: ${#H2_CONFIGS[@]} configs (bare, floor, daemon, top, trace; walking floor on h2c, probes on TLS) x $H2_ROUNDS rounds x ${H2_SECS}s, h2c (port $H2_PORT) then TLS" \
		"(port $H2_TLS_PORT); nghttpd (1 worker) and h2load -c $H2_CLIENTS -m $H2_STREAMS -t 1" \
		"in $CGROUP"
	for ((r = 1; r <= H2_ROUNDS; r++)); do
		h2_round h2c "$r"
		h2_round tls "$r"
	done
	h2_detail h2c
	h2_detail h2c walking
	h2_detail tls
	h2_detail tls probes
	stop_pid "$H2C_SRV"
	stop_pid "$H2TLS_SRV"
fi

# ---- 5. replay: a large capture, connscope vs tshark vs the bare libpcap loop ----------
# timed CMD...: run CMD under /usr/bin/time -v (wall time, peak RSS) into $dir/time.txt,
# stdout to /dev/null; $dir/rc holds its exit status.
# /usr/bin/time's wall clock has 10 ms steps: the wall time is taken here too ($dir/wall_s).
replay_timed() {
	local dir=$1 rc=0 t0 t1
	shift
	mkdir -p "$dir"
	t0=$EPOCHREALTIME
	/usr/bin/time -v -o "$dir/time.txt" "$@" >/dev/null 2>"$dir/err" || rc=$?
	t1=$EPOCHREALTIME
	echo "$rc" >"$dir/rc"
	"$PYTHON" -c 'import sys; print("%.6f" % (float(sys.argv[2]) - float(sys.argv[1])))' \
		"$t0" "$t1" >"$dir/wall_s"
}

replay_cmd() {
	case $1 in
	connscope) echo "$CONNSCOPE replay $RFILE -o json" ;;
	tshark) echo "tshark -r $RFILE -n -d tcp.port==$REPLAY_PORT,http2 -Y http2.type==1 -T fields -e tcp.stream -e tcp.srcport -e http2.type -e http2.streamid" ;;
	pcapread) echo "$PCAPREAD $RFILE" ;;
	esac
}

if has_part replay; then
	mkdir -p "$WORK/replay"
	log "replay: making a capture of >= ${REPLAY_MB} MB on loopback (ports $REPLAY_PORT h2c," \
		"$REPLAY_TLS_PORT TLS)"
	REPLAY_MTU=${BENCH_REPLAY_MTU:-1500} tests/bench/replay_gen.sh "$WORK/replay/gen" "$REPLAY_MB" "$REPLAY_PORT" "$REPLAY_TLS_PORT" \
		>"$WORK/replay/gen.json" || die "make the replay capture (tests/bench/replay_gen.sh)"
	RFILE=$WORK/replay/gen/replay.pcap
	log "replay: $(cat "$WORK/replay/gen.json")"
	cat "$RFILE" >/dev/null # into the page cache: every tool reads it from memory
	# The outputs, once, outside the timing: connscope's records and tshark's fields.
	"$CONNSCOPE" replay "$RFILE" -o json >"$WORK/replay/connscope.jsonl" \
		2>"$WORK/replay/connscope.err" || log "connscope replay exited $? (stderr in the report)"
	# shellcheck disable=SC2046 # the command's words
	$(replay_cmd tshark) >"$WORK/replay/tshark.out" 2>"$WORK/replay/tshark.err" ||
		die "run tshark on $RFILE ($(tail -n 1 "$WORK/replay/tshark.err"))"
	"$PYTHON" tests/bench/report.py --count-replay "$WORK/replay/connscope.jsonl" \
		--tshark-out "$WORK/replay/tshark.out" --port "$REPLAY_PORT" \
		>"$WORK/replay/counts.json" || die "count the replay outputs"
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$WORK/replay/connscope.jsonl" "$WORK/replay/tshark.out"
	RCONFIGS=(connscope tshark)
	[ "$HAVE_PCAPREAD" = 1 ] && RCONFIGS+=(pcapread)
	n=${#RCONFIGS[@]}
	for ((r = 1; r <= REPLAY_ROUNDS; r++)); do
		for ((k = 0; k < n; k++)); do
			cfg=${RCONFIGS[$(((r - 1 + k) % n))]}
			dir=$WORK/replay/r$r-$k-$cfg
			# shellcheck disable=SC2046
			replay_timed "$dir" $(replay_cmd "$cfg")
			log "replay round $r/$REPLAY_ROUNDS $(printf '%-10s' "$cfg")" \
				"$(cat "$dir/wall_s") s wall," \
				"$(awk -F': ' '/Maximum resident/ {printf "%.1f MB peak RSS", $2/1024}' "$dir/time.txt")" \
				"(exit $(cat "$dir/rc"))"
		done
	done
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$RFILE"
fi

# ---- 6. DNAT: bulk and connection rate through a node namespace's DNAT rule ----------
# setup_dnat: the namespaces (cs<pid>-node, -cli, -be), veths, routes and the rules.
NS_NODE=cs$$-node
NS_CLI=cs$$-cli
NS_BE=cs$$-be
setup_dnat() {
	local ns i rules
	for ns in "$NS_NODE" "$NS_CLI" "$NS_BE"; do
		[ -e "/run/netns/$ns" ] && die "make the network namespace $ns: it exists"
		ip netns add "$ns" || die "make the network namespace $ns"
		NETNS_MADE+=("$ns")
		ip -n "$ns" link set lo up || die "bring lo up in $ns"
	done
	# Each veth is made inside the node namespace with its peer made in the pod's:
	# no interface ever appears in the machine's own namespace.
	ip -n "$NS_NODE" link add vcli type veth peer name eth0 netns "$NS_CLI" ||
		die "make the veth pair $NS_NODE/vcli - $NS_CLI/eth0"
	ip -n "$NS_NODE" link add vbe type veth peer name eth0 netns "$NS_BE" ||
		die "make the veth pair $NS_NODE/vbe - $NS_BE/eth0"
	{
		ip -n "$NS_NODE" addr add 10.79.1.1/24 dev vcli &&
			ip -n "$NS_NODE" addr add 10.79.2.1/24 dev vbe &&
			ip -n "$NS_NODE" link set vcli up && ip -n "$NS_NODE" link set vbe up &&
			for ((i = 10; i < 26; i++)); do ip -n "$NS_CLI" addr add "10.79.1.$i/24" dev eth0 || die "add 10.79.1.$i in $NS_CLI"; done &&
			ip -n "$NS_CLI" link set eth0 up &&
			ip -n "$NS_CLI" route add default via 10.79.1.1 &&
			ip -n "$NS_BE" addr add "$DNAT_BE/24" dev eth0 &&
			ip -n "$NS_BE" link set eth0 up &&
			ip -n "$NS_BE" route add default via 10.79.2.1
	} || die "address and route the DNAT namespaces"
	# Sysctls of these namespaces only (each namespace has its own).
	ip netns exec "$NS_NODE" sysctl -q -w net.ipv4.ip_forward=1 >/dev/null ||
		die "set ip_forward in $NS_NODE"
	# The client's TIME_WAIT sockets: reuse them, and use the whole port range.
	ip netns exec "$NS_CLI" sysctl -q -w net.ipv4.tcp_tw_reuse=1 \
		net.ipv4.ip_local_port_range="1024 65000" >/dev/null || die "set the client's sysctls"
	rules="table ip csbench {
 chain pre {
  type nat hook prerouting priority dstnat;
  ip daddr $DNAT_VIP tcp dport 80 dnat to $DNAT_BE:8080"
	for ((i = 81; i <= 88; i++)); do
		rules+="
  ip daddr $DNAT_VIP tcp dport $i dnat to $DNAT_BE:$((i + 8000))"
	done
	rules+="
 }
}"
	ip netns exec "$NS_NODE" nft -f - <<<"$rules" || die "add the DNAT rules in $NS_NODE"
	# The node's conntrack keeps a connection's entry for 120 s after its close
	# (TIME_WAIT): the rate runs make tens of thousands a second. With 5 s, a bare
	# run at 55,000/s filled the table (nf_conntrack_max, 262,144, shared by every
	# namespace): new SYNs were dropped, each a one-second stall of a closed-loop
	# worker, and a round's rate fell by a quarter to a half depending on what the
	# round before it had left. In this namespace, 1 s: the table holds ~120,000.
	ip netns exec "$NS_NODE" sysctl -q -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=1 \
		>/dev/null 2>&1 || log "note: could not shorten conntrack's TIME_WAIT in $NS_NODE"
}

run_dnat_bulk() {
	local out=$1
	"$BULK" --server-netns "/run/netns/$NS_BE" --client-netns "/run/netns/$NS_CLI" \
		--listen "$DNAT_BE:8080" --connect "$DNAT_VIP:80" --seconds "$DNAT_SECS" >"$out" ||
		die "run bulk through $DNAT_VIP:80 (exit $?)"
	grep -q '"mb_per_s"' "$out" || die "run bulk: no result line"
}

run_dnat_rate() {
	local out=$1
	"$CONNLOAD" --closed-loop --seconds "$DNAT_SECS" --workers "$DNAT_WORKERS" \
		--server-threads "$DNAT_WORKERS" --server-netns "/run/netns/$NS_BE" \
		--client-netns "/run/netns/$NS_CLI" --listen-addr "$DNAT_BE" --base-port 8081 \
		--ports 8 --connect-addr "$DNAT_VIP" --connect-port 81 --src-base "$DNAT_CLI" \
		--src-addrs 16 >"$out" || die "run connload through $DNAT_VIP (exit $?)"
	grep -q '"conns_per_s"' "$out" || die "run connload: no result line"
}

dnat_run() {
	local mode=$1 dir=$2
	if [ "$mode" = bulk ]; then
		LOAD_FN=run_dnat_bulk measured_run "${@:3}" "$dir"
	else
		LOAD_FN=run_dnat_rate measured_run "${@:3}" "$dir"
	fi
}

dnat_round() {
	local mode=$1 r=$2 k cfg dir
	for ((k = 0; k < ${#DNAT_CONFIGS[@]}; k++)); do
		cfg=${DNAT_CONFIGS[$(((r - 1 + k) % ${#DNAT_CONFIGS[@]}))]}
		dir=$WORK/dnat/$mode/r$r-$k-$cfg
		CT_NETNS=/run/netns/$NS_NODE dnat_run "$mode" "$dir" "$cfg"
		if [ "$cfg" != baseline ]; then
			# The last flows' conntrack events are in once connscope has drained.
			sleep 0.5
			stop_tracer "$dir"
		fi
		log "dnat round $r/$DNAT_ROUNDS $(printf '%-5s %-10s' "$mode" "$cfg")" \
			"$("$PYTHON" -c 'import json,sys
d = json.load(open(sys.argv[1]))
print("%.1f MB/s" % d["mb_per_s"] if d["mode"] == "bulk" else
      "%.0f conns/s (%d failed)" % (d["conns_per_s"], d["failed"]))' "$dir/load.json")"
	done
}

# One more connscope run of each with kernel.bpf_stats_enabled=1 (outside the ratios):
# the netfilter program's run count and time.
dnat_detail() {
	local mode=$1 dir=$WORK/dnat/detail-$1
	mkdir -p "$dir"
	set_sysctl kernel.bpf_stats_enabled 1
	CT_NETNS=/run/netns/$NS_NODE dnat_run "$mode" "$dir" connscope
	tracer_prog_ids "$TRACER_PID" >"$dir/tracer_prog_ids"
	"$BPFTOOL" -j prog show >"$dir/prog_stats.json" 2>/dev/null || true
	sleep 0.5
	stop_tracer "$dir"
	restore_sysctl kernel.bpf_stats_enabled
}

if has_part dnat; then
	DNAT_CONFIGS=(baseline floor counting daemon connscope)
	setup_dnat
	log "dnat: namespaces $NS_CLI -> $NS_NODE (DNAT $DNAT_VIP:80,81-88 -> $DNAT_BE:8080,8081-8088)" \
		"-> $NS_BE; 5 configs (bare, floor, counting, daemon, trace) x $DNAT_ROUNDS rounds x ${DNAT_SECS}s, bulk and rate" \
		"($DNAT_WORKERS client + $DNAT_WORKERS server threads)"
	for ((r = 1; r <= DNAT_ROUNDS; r++)); do
		dnat_round bulk "$r"
		dnat_round rate "$r"
	done
	dnat_detail bulk
	dnat_detail rate
fi

# ---- report -------------------------------------------------------------------------
"$PYTHON" tests/bench/report.py --work "$WORK" --rounds "$ROUNDS" --seconds "$SECS" \
	--rate "$RATE" --rate-seconds "$RATE_SECS" --port "$PORT" --nports "$NPORTS" \
	--cpus "$NCPU" --configs "${CONFIGS[*]}" --closes "$CLOSES" --rst-side "$RST_SIDE" \
	--top-interval "$TOP_INTERVAL" --parts "$PARTS" --tls-rounds "$TLS_ROUNDS" \
	--tls-seconds "$TLS_SECS" --tls-port "$TLS_PORT" --tls-workers "$TLS_WORKERS" \
	--h2-rounds "$H2_ROUNDS" --h2-seconds "$H2_SECS" --h2-port "$H2_PORT" \
	--h2-tls-port "$H2_TLS_PORT" --h2-clients "$H2_CLIENTS" --h2-streams "$H2_STREAMS" \
	--replay-rounds "$REPLAY_ROUNDS" --replay-port "$REPLAY_PORT" \
	--dnat-rounds "$DNAT_ROUNDS" --dnat-seconds "$DNAT_SECS" --dnat-workers "$DNAT_WORKERS" \
	--dnat-node "/run/netns/$NS_NODE" \
	--cgroup "$CGROUP" || die "summarise the results"
