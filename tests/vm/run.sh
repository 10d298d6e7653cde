#!/usr/bin/env bash
# tests/vm/run.sh: run a shell script as root inside a Debian 12 VM booted on
# Debian's stock 6.1 kernel (qemu, TCG: no KVM needed), with ./connscope in it.
#
#   tests/vm/run.sh [OPTIONS] SCRIPT [FILES...]
#
# SCRIPT runs with sh, as root, from /work, with connscope at /connscope (and
# on PATH). FILES (files or directories) are copied under /work with their
# relative path (tests/lib/x.py -> /work/tests/lib/x.py); an absolute path or
# one with .. lands under /work by its base name. The script's stdout and
# stderr are streamed to stdout, merged, and run.sh exits with its status.
#
# Options:
#   --timeout SEC       the script's limit (default 600); on expiry exit 124
#   --boot-timeout SEC  limit from start to the script's start (default 300)
#   --mem MB            guest memory (default 1024); the root fs lives in it
#   --smp N             guest CPUs (default 2)
#   --modules "A B"     modules to load before the script (default nf_conntrack)
#   --console           stream the kernel console to stderr as well
# Exit: the script's status; 124 if it timed out; 125 if the VM failed (did
# not boot in time, qemu failed, no status came back); 2 for a usage error. The kernel console of
# the last run is kept in .output/vm/last-console.log.
# Env: CONNSCOPE_BIN (default ./connscope), CONNSCOPE_VM_DIR (.output/vm).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
VM_DIR=${CONNSCOPE_VM_DIR:-$top/.output/vm}
BIN=${CONNSCOPE_BIN:-$top/connscope}

timeout=600
boot_timeout=300
mem=1024
smp=2
modules=nf_conntrack
console=0

usage() { sed -n '4,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }
die() { printf 'vm-run: %s\n' "$*" >&2; exit 125; }
bad() { printf 'vm-run: %s\n' "$*" >&2; exit 2; }
posint() { case "$2" in '' | *[!0-9]* | 0*) bad "$1 needs a positive integer, not '$2'" ;; esac; }

while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) posint "$1" "${2:-}"; timeout=$2; shift 2 ;;
	--boot-timeout) posint "$1" "${2:-}"; boot_timeout=$2; shift 2 ;;
	--mem) posint "$1" "${2:-}"; mem=$2; shift 2 ;;
	--smp) posint "$1" "${2:-}"; smp=$2; shift 2 ;;
	--modules) [ $# -ge 2 ] || usage; modules=$2; shift 2 ;;
	--console) console=1; shift ;;
	-h | --help) usage 0 ;;
	--) shift; break ;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
script=$1
shift
[ -f "$script" ] || bad "no such script: $script"
[ -x "$BIN" ] || die "no connscope binary at $BIN (run make first)"
case "$modules" in *[!A-Za-z0-9_\ -]*) bad "bad --modules list: $modules" ;; esac

# The cache: built the first time, reused while its key matches.
"$here/build.sh" || die "building the VM image failed"
img="$VM_DIR/image"

tmp=$(mktemp -d "$VM_DIR/run.XXXXXX")
qpid=""
tails=""
# shellcheck disable=SC2317 # reached through the trap
cleanup() {
	# qemu must never outlive this script, whatever ends it.
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$qpid" 2>/dev/null || true
	fi
	for t in $tails; do kill "$t" 2>/dev/null || true; done
	[ ! -f "$tmp/console.log" ] || cp "$tmp/console.log" "$VM_DIR/last-console.log" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# The per-run archive: /init, /connscope, /vm/{script,params}, /work/FILES.
# The kernel unpacks it after the cached root, so it adds to it (and /init
# from here wins: editing init needs no rebuild).
stage="$tmp/stage"
mkdir -p "$stage/vm" "$stage/work" "$stage/usr/local/bin"
install -m 755 "$here/init" "$stage/init"
install -m 755 "$BIN" "$stage/connscope"
ln -s /connscope "$stage/usr/local/bin/connscope"
install -m 644 "$script" "$stage/vm/script"
printf 'TIMEOUT=%s\nMODULES="%s"\n' "$timeout" "$modules" >"$stage/vm/params"
for f in "$@"; do
	[ -e "$f" ] || bad "no such file: $f"
	case "$f" in
	/* | ../* | */../* | *"/.." | ..) dest="$stage/work/$(basename "$f")" ;;
	*) dest="$stage/work/$f" ;;
	esac
	mkdir -p "$(dirname "$dest")"
	cp -a "$f" "$dest"
done
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$tmp/run.cpio"
# qemu takes one initrd; the kernel reads concatenated cpio archives in turn.
# Under a shared lock: a concurrent build.sh replaces the image only when no
# run is copying it. The kernel is linked (or copied), for the same reason.
exec 9<"$VM_DIR/lock"
flock -s 9
cat "$img/rootfs.cpio" "$tmp/run.cpio" >"$tmp/initrd"
# The decompressed kernel (PVH entry) when build.sh could extract it.
kernel="$img/vmlinux"
[ -f "$kernel" ] || kernel="$img/vmlinuz"
ln "$kernel" "$tmp/kernel" 2>/dev/null || cp "$kernel" "$tmp/kernel"
kernel="$tmp/kernel"
flock -u 9
exec 9<&-
rm -rf "$stage" "$tmp/run.cpio"

: >"$tmp/console.log"
: >"$tmp/out.log"
: >"$tmp/status.log"
# -nodefaults: no VGA, NIC, floppy or cdrom to probe. Three 16550 UARTs
# (built into Debian's kernel; virtio-console is a module): console, output,
# status. -no-reboot: the guest's reboot ends qemu. Kernel options: quiet
# boot; no mitigations (a throwaway test VM, and they cost under TCG); the
# emulated CPU's RDRAND seeds the RNG at once (openssl, python need it);
# norandmaps: without ASLR every process maps ld.so and libc at the same
# addresses, so TCG reuses its translations across processes (each exec got
# ~3x faster, and the boot ~2 s).
nice -n 10 qemu-system-x86_64 \
	-nodefaults -no-user-config -display none -no-reboot \
	-machine pc,accel=tcg -cpu max -smp "$smp" -m "$mem" \
	-kernel "$kernel" -initrd "$tmp/initrd" \
	-append "console=ttyS0 quiet loglevel=4 panic=-1 oops=panic mitigations=off random.trust_cpu=on tsc=reliable norandmaps" \
	-serial "file:$tmp/console.log" -serial "file:$tmp/out.log" -serial "file:$tmp/status.log" \
	-nic none </dev/null >"$tmp/qemu.log" 2>&1 &
qpid=$!

# Stream the output while qemu runs; tail ends on its own once qemu is gone
# (after a last read).
tail -n +1 -s 0.2 --pid="$qpid" -f "$tmp/out.log" &
tails=$!
if [ "$console" = 1 ]; then
	tail -n +1 -s 0.2 --pid="$qpid" -f "$tmp/console.log" >&2 &
	tails="$tails $!"
fi

# Watchdog: the boot and the script each have a deadline; qemu never runs
# past them (the script's has a grace period for the guest's own timeout).
t0=$SECONDS
booted=""
finished=""
why=""
while kill -0 "$qpid" 2>/dev/null; do
	if [ -z "$booted" ]; then
		if grep -q '^BOOTED' "$tmp/status.log"; then
			booted=$SECONDS
		elif [ $((SECONDS - t0)) -ge "$boot_timeout" ]; then
			why="the VM did not boot within $boot_timeout s"
			break
		fi
	fi
	if [ -n "$booted" ] && [ -z "$finished" ]; then
		if grep -qE '^(EXIT|TIMEOUT) ' "$tmp/status.log"; then
			finished=$SECONDS
		elif [ $((SECONDS - booted)) -ge $((timeout + 30)) ]; then
			why="the script did not end within $timeout s (and the guest did not stop it)"
			break
		fi
	fi
	# The guest reboots right after the status; give it a few seconds.
	if [ -n "$finished" ] && [ $((SECONDS - finished)) -ge 10 ]; then
		break
	fi
	sleep 0.2
done
if kill -0 "$qpid" 2>/dev/null; then
	kill "$qpid" 2>/dev/null || true
fi
wait "$qpid" 2>/dev/null || true
# Let tail print what is left (it checks every 0.2 s whether qemu is gone).
for t in $tails; do wait "$t" 2>/dev/null || true; done
tails=""

status=$(grep -E '^(EXIT|TIMEOUT) ' "$tmp/status.log" | tail -n 1 || true)
if [ -z "$why" ]; then
	case "$status" in
	"EXIT "*) exit "${status#EXIT }" ;;
	"TIMEOUT "*) why="the script timed out after $timeout s"; rc=124 ;;
	*)
		if grep -q '^BOOTED' "$tmp/status.log"; then
			why="the VM stopped before the script reported a status (kernel panic?)"
		else
			why="the VM stopped before the script started"
		fi
		rc=125
		;;
	esac
else
	case "$why" in *script*) rc=124 ;; *) rc=125 ;; esac
fi
printf 'vm-run: %s\n' "$why" >&2
if [ -s "$tmp/qemu.log" ]; then
	sed 's/^/vm-run: qemu: /' "$tmp/qemu.log" >&2
fi
if [ "$rc" = 125 ] && [ "$console" = 0 ]; then
	echo "vm-run: last lines of the kernel console:" >&2
	tail -n 25 "$tmp/console.log" | sed 's/^/  /' >&2
fi
exit "$rc"
