#!/bin/sh
# tests/vm/matrix.sh: the kernel matrix's scenarios (tests/vm/matrix.txt), run by
# scripts/test.sh matrix on the host and, through tests/vm/run.sh, inside the
# test VM on Debian 12's stock kernel. CONNSCOPE_BIN: the binary (default:
# /connscope inside the VM, else ./connscope).
set -u
# From the repository (the VM's /work holds the same tree).
[ -f tests/vm/matrix.txt ] || cd "$(dirname "$0")/../.."
if [ -z "${CONNSCOPE_BIN:-}" ]; then
	CONNSCOPE_BIN=$PWD/connscope
	[ -x /connscope ] && CONNSCOPE_BIN=/connscope
	export CONNSCOPE_BIN
fi
echo "== kernel $(uname -r)"
ids=$(grep -v '^#' tests/vm/matrix.txt | grep .)
# shellcheck disable=SC2086
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider --color=no $ids
