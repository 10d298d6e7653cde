#!/bin/sh
# Install the Debian 12 packages connscope needs, from Debian's archive with
# apt-get. Idempotent: does nothing when everything is present.
#
#   scripts/deps.sh [-n] [make|build|all]        (default: all)
#     make   make alone: all that a minimal Debian 12 (debian:12-slim, debootstrap
#            minbase) lacks to run `make run` or `make test`, which install the rest
#     build  what `make` needs: the packages the Dockerfile's build stage installs
#            (its apt-get install line is the one list; `make run` installs these)
#     all    build, and what the tests and the benchmark need (`make test`)
#     -n     install nothing: print the missing packages and have apt-get simulate
#            their installation (fails if one is not in the archive)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
simulate=0
[ "${1:-}" = -n ] && { simulate=1; shift; }
set_=${1:-all}

case "$set_" in
make) PKGS="make" ;;
build | all)
	build=$(sh "$top/scripts/dockerfile-pkgs.sh" build "$top/Dockerfile")
	PKGS="make $build"
	if [ "$set_" = all ]; then
		PKGS="$PKGS pkg-config
		iproute2 nftables curl python3 python3-pytest procps libbpf-tools tcpdump
		libclang-rt-14-dev openssl nghttp2-server nghttp2-client golang-go
		golang-google-grpc-dev tshark debootstrap prometheus python3-yaml"
	fi
	;;
*) echo "usage: $0 [-n] [make|build|all]" >&2; exit 2 ;;
esac

missing=""
for p in $PKGS; do
	case " $missing " in *" $p "*) continue ;; esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "connscope: failed to install dependencies: need root for apt-get (missing:$missing)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh system (debian:12-slim) has no package lists at all.
apt-get update -qq
if [ "$simulate" = 1 ]; then
	echo "missing:$missing"
	# shellcheck disable=SC2086
	apt-get install -s -qq --no-install-recommends $missing >/dev/null
	exit 0
fi
echo "installing:$missing" >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
