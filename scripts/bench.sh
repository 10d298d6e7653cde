#!/bin/bash
# connscope benchmark (`make bench`). Needs root.
#
# 1. Throughput: loopback connect/send/close at the maximum rate (closed loop), with
#    no tracer, with `connscope trace -o json` attached and with Debian's libbpf-tools
#    `tcpstates` attached. The three configurations run interleaved in one run
#    (ROUNDS rounds, rotating order), and the report gives the median rate of each and
#    its ratio to the baseline. Target for connscope: >= 0.97.
# 2. Fixed rate: RATE connections/s for RATE_SECONDS with `connscope trace -o json`
#    writing to a file; then its final stats record (events, lost, map_full) and the
#    number of connection records against 2 x the connections made. Target: lost == 0.
#
# The load is tests/bench/connload.c. In the throughput rounds a tracer's stdout is a
# regular file (as with `connscope daemon > file`); connscope counts as attached
# once its first record (stats, phase "start") is out. Runs during which other BPF
# programs were loaded (e.g. someone's test running connscope) are flagged in the report.
# For the run's duration: net.ipv4.tcp_tw_reuse=1, kernel.bpf_stats_enabled=1 in part 2,
# tracefs mounted if tcpstates needs it; all put back on exit, as are the processes.
#
# Exits non-zero only when something broke (a build, the load generator, a tracer that
# does not start); a missed target is printed as MISS. Settings (environment):
#   BENCH_ROUNDS=5 BENCH_SECONDS=4 BENCH_RATE=20000 BENCH_RATE_SECONDS=10
#   BENCH_WORKERS=<cpus> BENCH_SERVER_THREADS=<cpus> BENCH_PORT=29100 (8 ports)
#   BENCH_QUIET_WAIT=5 (s to wait per run for other BPF programs to go, 40 s in all)
#   BENCH_KEEP=1 (keep the work directory)  TCPSTATES=/usr/sbin/tcpstates
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
BPFTOOL=${BPFTOOL:-$(command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)}
TCPSTATES=${TCPSTATES:-$(command -v tcpstates 2>/dev/null || echo /usr/sbin/tcpstates)}
CONNSCOPE=$ROOT/connscope
CONNLOAD=$ROOT/.output/connload

die() { echo "bench: failed to $*" >&2; exit 1; }
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ "$(id -u)" = 0 ] || die "run: needs root (BPF programs and sysctls)"
[ -x "$CONNSCOPE" ] || die "find ./connscope: run make first"
# Debian's python3 (standard library only) for the report.
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)} ||
	die "find python3 (make deps)"

# ---- cleanup: every process we start, every setting we change ---------------------
PIDS=()
RESTORE_SYSCTL=()
UNMOUNT_TRACEFS=0
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

# The client side ends in TIME_WAIT; allow loopback reuse of old TIME_WAIT 4-tuples
# (on top of the 249 source addresses x 8 ports the load spreads over).
set_sysctl net.ipv4.tcp_tw_reuse 1

HAVE_TCPSTATES=1
if [ ! -x "$TCPSTATES" ]; then
	HAVE_TCPSTATES=0
	log "tcpstates not found ($TCPSTATES): comparison skipped (apt-get install libbpf-tools)"
elif [ ! -d /sys/kernel/tracing/events/sock ]; then
	# libbpf-tools' tcpstates attaches a classic tracepoint, which needs tracefs.
	if mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null; then
		UNMOUNT_TRACEFS=1
	fi
	if [ ! -d /sys/kernel/tracing/events/sock ]; then
		HAVE_TCPSTATES=0
		log "tracefs is not available: tcpstates comparison skipped"
	fi
fi

CONFIGS=(baseline connscope)
[ "$HAVE_TCPSTATES" = 1 ] && CONFIGS+=(tcpstates)

LOAD_ARGS=(--workers "$WORKERS" --server-threads "$SERVER_THREADS" --base-port "$PORT"
	--ports "$NPORTS")

# ---- tracers ------------------------------------------------------------------------
# A tracer's stdout goes to a FIFO drained by a reader that keeps the first line
# (connscope's start record = attached) and the last one (its end stats record).
TRACER_PID=
TRACER_OUT=

# start_tracer NAME DIR [OUTFILE]: returns once the tracer is attached.
start_tracer() {
	local name=$1 dir=$2 out=${3:-$2/out} i
	mkdir -p "$dir"
	# Records go to a regular file, as `connscope daemon > file` would: no
	# reader process competes with the load for the CPUs.
	TRACER_OUT=$out
	case $name in
	connscope) "$CONNSCOPE" trace -o json >"$out" 2>"$dir/err" & ;;
	tcpstates) "$TCPSTATES" >"$out" 2>"$dir/err" & ;;
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
		connscope)
			# Attached once its first record, stats phase "start", is out.
			head -n 1 "$out" 2>/dev/null | grep -q '"phase":"start"' && return 0 ;;
		tcpstates)
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
	[ "$TRACER_OUT" = "$dir/out" ] && rm -f "$TRACER_OUT"
	TRACER_PID=
}

run_load() {
	local out=$1
	shift
	"$CONNLOAD" "$@" "${LOAD_ARGS[@]}" >"$out" || die "run connload $* (exit $?)"
	grep -q '"conns_per_s"' "$out" || die "run connload: no result line"
}

# ---- other people's tracers and CPU use --------------------------------------------
# This is a shared machine: another connscope (a test run, say) attached during a
# round slows every connection of that round. Record which BPF programs are loaded and
# how much CPU the rest of the machine used, so the report can flag such rounds.
PROG_FILTER='import json,sys
try: d = json.load(sys.stdin)
except ValueError: d = []
print(" ".join("%d:%s" % (p["id"], p.get("name", "?")) for p in d
               if p.get("type") not in ("cgroup_device",)))'
bpf_progs() { "$BPFTOOL" -j prog show 2>/dev/null | "$PYTHON" -c "$PROG_FILTER"; }
# busy and steal CPU time of the whole machine, ms
cpu_busy() { awk '/^cpu /{printf "%d %d\n", ($2+$3+$4+$7+$8)*10, $9*10}' /proc/stat; }

QUIET_WAIT=${BENCH_QUIET_WAIT:-5}     # per run, seconds
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-40} # whole bench, seconds
quiet_spent=0
wait_quiet() {
	local t=0
	while [ -n "$(bpf_progs)" ] && [ "$t" -lt "$((QUIET_WAIT * 4))" ] &&
		[ "$quiet_spent" -lt "$((QUIET_BUDGET * 4))" ]; do
		[ "$t" = 0 ] && log "other BPF programs are loaded ($(bpf_progs)): waiting up to ${QUIET_WAIT}s"
		sleep 0.25
		t=$((t + 1))
		quiet_spent=$((quiet_spent + 1))
	done
}

# measured_run CONFIG DIR LOAD-ARGS...: the load, with CONFIG's tracer attached.
measured_run() {
	local cfg=$1 dir=$2
	shift 2
	mkdir -p "$dir"
	wait_quiet
	bpf_progs >"$dir/progs0"
	[ "$cfg" != baseline ] && start_tracer "$cfg" "$dir" "${OUTFILE:-}"
	bpf_progs >"$dir/progs1"
	sleep 0.5
	cpu_busy >"$dir/busy0"
	[ -n "$TRACER_PID" ] && proc_cpu_ms "$TRACER_PID" >"$dir/tracer_cpu0"
	run_load "$dir/load.json" "$@"
	cpu_busy >"$dir/busy1"
	[ -n "$TRACER_PID" ] && proc_cpu_ms "$TRACER_PID" >"$dir/tracer_cpu1"
	bpf_progs >"$dir/progs2"
	return 0
}

# ---- 1. throughput, interleaved -----------------------------------------------------
log "throughput: ${#CONFIGS[@]} configs x $ROUNDS rounds x ${SECS}s, closed loop," \
	"$WORKERS client + $SERVER_THREADS server threads, $NCPU CPUs"
mkdir -p "$WORK/runs"
n=${#CONFIGS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
	for ((k = 0; k < n; k++)); do
		cfg=${CONFIGS[$(((r - 1 + k) % n))]}
		dir=$WORK/runs/r$r-$k-$cfg
		measured_run "$cfg" "$dir" --closed-loop --seconds "$SECS"
		[ "$cfg" != baseline ] && stop_tracer "$dir"
		log "round $r/$ROUNDS $(printf '%-10s' "$cfg")" \
			"$("$PYTHON" -c 'import json,sys; print("%.0f conns/s" % json.load(open(sys.argv[1]))["conns_per_s"])' "$dir/load.json")"
	done
done

# ---- 2. fixed rate with connscope writing to a file ---------------------------------
log "fixed rate: $RATE connections/s for ${RATE_SECS}s with connscope trace -o json > file"
dir=$WORK/rate
# Count BPF run time for this part only (connscope reports it as bpf_ms).
set_sysctl kernel.bpf_stats_enabled 1
OUTFILE=$dir/trace.jsonl measured_run connscope "$dir" --rate "$RATE" --seconds "$RATE_SECS"
sleep 1 # every connection's last state change is in; let connscope drain and print
stop_tracer "$dir"
restore_sysctl kernel.bpf_stats_enabled

# ---- report -------------------------------------------------------------------------
"$PYTHON" tests/bench/report.py --work "$WORK" --rounds "$ROUNDS" --seconds "$SECS" \
	--rate "$RATE" --rate-seconds "$RATE_SECS" --port "$PORT" --nports "$NPORTS" \
	--cpus "$NCPU" --configs "${CONFIGS[*]}" || die "summarise the results"
