#!/bin/sh
# tests/vm/smoke.sh: runs inside the test VM (tests/vm/run.sh tests/vm/smoke.sh).
# Shows the kernel and what connscope's check finds on it. Exits 0 when check
# ran, whatever it reports (missing features are what we want to see); only a
# check that could not run at all (crash, missing library) fails.
set -u
echo "== uname -r: $(uname -r)"
echo "== mounts:"
grep -E ' (cgroup2|bpf|tracefs|debugfs) ' /proc/mounts
echo "== ldd /connscope:"
ldd /connscope
echo "== /connscope check"
/connscope check
rc=$?
echo "== check exit status: $rc"
echo "== /connscope check -v"
/connscope check -v
rcv=$?
echo "== check -v exit status: $rcv"
# 126/127: not executable or not found (e.g. a missing library); >128: a signal.
for r in "$rc" "$rcv"; do
	if [ "$r" -ge 126 ]; then
		exit 1
	fi
done
exit 0
