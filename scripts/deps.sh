#!/bin/sh
# Install the Debian 12 packages connscope needs to build, test and benchmark.
# Idempotent: does nothing when everything is present.
set -eu
PKGS="make gcc clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libcjson-dev pkg-config
      iproute2 nftables curl python3 python3-pytest procps libbpf-tools tcpdump
      libclang-rt-14-dev openssl libssl-dev nghttp2-server nghttp2-client golang-go
      golang-google-grpc-dev libpcap-dev tshark libcapstone-dev debootstrap python3-yaml"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "connscope: failed to install dependencies: need root for apt-get (missing:$missing)" >&2
	exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
