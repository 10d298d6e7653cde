#!/usr/bin/env bash
# tests/vm/build.sh: build (or reuse) the cache for the Debian 12 test VM.
#
# Produces, under .output/vm/image/ (the build dir is git-ignored):
#   vmlinuz          Debian 12's stock kernel, from linux-image-6.1.0-N-amd64
#   vmlinux          the same, decompressed: qemu boots it via its PVH entry
#   rootfs.cpio      a debootstrap --variant=minbase root filesystem holding
#                    connscope's runtime libraries, a few test tools and the
#                    kernel's (pruned) modules, packed as an initramfs
#   kernel-release   e.g. 6.1.0-57-amd64
#   key              what the cache was built from; a different key rebuilds
#   manifest         package versions and sizes, for the curious
#
# The whole root filesystem is the initramfs: Debian builds virtio_blk, ext4
# and 9p as modules, so booting from a disk or a share would need a second
# stage that loads them first. An initramfs needs no driver at all, and the
# kernel unpacks an uncompressed cpio with a plain copy, which is the fastest
# thing to do under TCG (decompression runs emulated). See README.md.
#
# Everything comes from Debian's archive through the host's apt configuration:
# apt-get for the host tools and the kernel package, debootstrap for the root.
# Usage: tests/vm/build.sh [--force]     (env: see the variables below)
set -eu
export LC_ALL=C # sort and comm must agree on the order

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
VM_DIR=${CONNSCOPE_VM_DIR:-$top/.output/vm}
SUITE=${CONNSCOPE_VM_SUITE:-bookworm}
# Packages in the root filesystem beyond minbase: the image's runtime stage
# (the Dockerfile's list: what `ldd ./connscope` needs; libpcap0.8 brings
# libdbus/libsystemd), then the VM's own, for the live scenarios (VM_ONLY).
# debootstrap resolves Depends, never Recommends.
VM_ONLY="kmod iproute2 nftables procps python3 python3-pytest python3-yaml curl openssl
nghttp2-client nghttp2-server bpftool"
PACKAGES=${CONNSCOPE_VM_PACKAGES:-"$(sh "$top/scripts/dockerfile-pkgs.sh" runtime "$top/Dockerfile")
$VM_ONLY"}
# The kernel package: the newest linux-image-6.1.0-N-amd64 apt offers unless
# pinned (e.g. CONNSCOPE_VM_KERNEL=linux-image-6.1.0-57-amd64).
KERNEL_PKG=${CONNSCOPE_VM_KERNEL:-}
# Modules kept in the image (paths under /lib/modules/VER/, extended regex),
# plus everything they depend on. All of net/ but radio and storage-over-net
# protocols, the virtual network devices, overlayfs and the crypto/lib helpers.
MODULES_KEEP='^kernel/(net|lib|crypto|arch/x86/crypto)/|^kernel/drivers/net/([^/]+\.ko$|bonding/|ipvlan/|team/|vxlan/|wireguard/)|^kernel/fs/overlayfs/'
MODULES_DROP='^kernel/net/(wireless|mac80211|mac802154|ieee802154|6lowpan|bluetooth|nfc|sunrpc|ceph|rxrpc|can|atm|tipc|rds|appletalk|ax25|netrom|rose|x25|lapb|phonet|9p|dsa|smc|l2tp|batman-adv|mpls|nsh|qrtr|caif|hsr|llc|802|vmw_vsock|sctp)/'

force=0
case "${1:-}" in
--force) force=1 ;;
"") ;;
*) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

log() { printf 'vm-build: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"

export DEBIAN_FRONTEND=noninteractive
mkdir -p "$VM_DIR"

# One builder at a time; run.sh takes the same lock (shared) while it copies
# the image, so it never reads one that is being replaced.
exec 9>"$VM_DIR/lock"
flock 9

# Host tools, installed from Debian's archive when missing.
need=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || need="$need qemu-system-x86"
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
command -v cpio >/dev/null 2>&1 || need="$need cpio"
command -v xz >/dev/null 2>&1 || need="$need xz-utils"
if [ -n "$need" ]; then
	log "installing$need"
	# shellcheck disable=SC2086 # word splitting of the package list is wanted
	{ apt-get update -qq && nice -n 10 apt-get install -y -qq --no-install-recommends $need; } \
		>"$VM_DIR/apt.log" 2>&1 || { tail -n 20 "$VM_DIR/apt.log" >&2; die "apt-get install$need failed"; }
fi

img="$VM_DIR/image"
# The cache key: the kernel package and version, then what else goes into the
# image. The other packages' versions are not in it (bookworm main changes
# only at point releases; a rebuild is one --force away).
# shellcheck disable=SC2086 # one package a word
pkgs=$(printf '%s\n' $PACKAGES | sort -u | tr '\n' ' ')
inputs=$(printf 'suite=%s\npackages=%s\nbuild.sh=%s\n' \
	"$SUITE" "$pkgs" "$(sha256sum <"$here/build.sh" | cut -c1-16)")
complete() { [ -f "$img/key" ] && [ -f "$img/vmlinuz" ] && [ -f "$img/rootfs.cpio" ]; }

# Fast path (apt-cache takes a second or more a call here): the kernel was
# resolved from the package lists, so while no list is newer than the image
# and the other inputs match, the image is current.
if [ "$force" = 0 ] && complete && [ "$(sed 1d "$img/key")" = "$inputs" ] &&
	{ [ -z "$KERNEL_PKG" ] || [ "$(sed -n '1s/^kernel=\([^ ]*\) .*/\1/p' "$img/key")" = "$KERNEL_PKG" ]; } &&
	[ -z "$(find /var/lib/apt/lists -maxdepth 1 -type f -newer "$img/key" -print -quit 2>/dev/null)" ]; then
	exit 0
fi

newest_kernel() {
	apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null |
		awk '{print $1}' | sort -V | tail -n 1
}
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
if [ -z "$KERNEL_PKG" ]; then
	KERNEL_PKG=$(newest_kernel)
	if [ -z "$KERNEL_PKG" ]; then
		# A fresh machine has no package lists yet.
		apt-get update -qq || true
		KERNEL_PKG=$(newest_kernel)
	fi
fi
kver=""
[ -z "$KERNEL_PKG" ] || kver=$(candidate "$KERNEL_PKG")
if [ -z "$kver" ] || [ "$kver" = "(none)" ]; then
	# Offline and no lists: an existing image is better than nothing.
	complete && { log "apt finds no kernel package; reusing the cached image"; exit 0; }
	die "apt offers no linux-image-6.1.0-N-amd64 (run apt-get update?)"
fi
key=$(printf 'kernel=%s %s\n%s\n' "$KERNEL_PKG" "$kver" "$inputs")
if [ "$force" = 0 ] && complete && [ "$(cat "$img/key")" = "$key" ]; then
	touch "$img/key" # newer than the lists again: the fast path next time
	exit 0
fi

log "building the VM image: $KERNEL_PKG $kver, $SUITE minbase"
t0=$(date +%s)
work="$VM_DIR/build"
root="$work/rootfs"

# debootstrap mounts /proc and /sys inside its target; never rm -rf a tree
# that still has something mounted in it.
umount_under() {
	awk -v p="$1" '$2 == p || index($2, p "/") == 1 {print $2}' /proc/mounts |
		sort -r | while read -r m; do umount -l "$m" || true; done
}
cleanup() { umount_under "$root"; }
trap cleanup EXIT
umount_under "$root"
rm -rf "$work"
mkdir -p "$work" "$VM_DIR/debs"

# The mirror the host's apt uses for Debian (not -security), default deb.debian.org.
mirror=${CONNSCOPE_VM_MIRROR:-$(grep -hoE '(URIs:|^deb) *(\[[^]]*\] *)?https?://[^ ]*/debian/?( |$)' \
	/etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
	grep -oE 'https?://[^ ]*' | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}

# 1. Root filesystem. --cache-dir keeps the .debs, so a rebuild after an edit
#    of this script downloads nothing again.
log "debootstrap from $mirror"
nice -n 10 debootstrap --variant=minbase --components=main \
	--include="$(printf '%s' "$pkgs" | tr ' ' ',' | sed 's/,$//')" \
	--cache-dir="$VM_DIR/debs" "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
	{ tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }
umount_under "$root"
t1=$(date +%s)

# 2. Kernel: vmlinuz and modules straight from the package (it is never
#    installed: its maintainer scripts would build an initramfs we don't want).
log "kernel package $KERNEL_PKG"
deb="$VM_DIR/debs/${KERNEL_PKG}_$(printf '%s' "$kver" | sed 's/:/%3a/')_amd64.deb"
if [ ! -f "$deb" ]; then
	# Into a directory of its own: apt may drop a partial file on failure.
	rm -rf "$work/dl"
	mkdir -p "$work/dl"
	(cd "$work/dl" && apt-get download -q "$KERNEL_PKG=$kver" >"$work/download.log" 2>&1) ||
		{ cat "$work/download.log" >&2; die "apt-get download $KERNEL_PKG=$kver failed"; }
	# Keep only this kernel's package.
	find "$VM_DIR/debs" -maxdepth 1 -name 'linux-image-*.deb' -delete
	mv "$work/dl"/*.deb "$deb"
fi
nice -n 10 dpkg-deb -x "$deb" "$work/kernel"
krel=$(basename "$(ls -d "$work"/kernel/lib/modules/*/)")
mkdir -p "$root/lib/modules"
mv "$work/kernel/lib/modules/$krel" "$root/lib/modules/$krel"

# Prune the modules: depmod the whole tree once to learn the dependencies,
# keep the wanted ones plus their dependencies (modules.dep lists them all,
# transitively), drop the rest (GPU, sound, storage... ~350 MB), depmod again.
# The rootfs's own depmod runs in a chroot, so the host needs no kmod.
chroot "$root" depmod -a "$krel"
awk -F': *' -v keep="$MODULES_KEEP" -v drop="$MODULES_DROP" '
	$1 ~ keep && $1 !~ drop { print $1; n = split($2, d, " "); for (i = 1; i <= n; i++) print d[i] }
' "$root/lib/modules/$krel/modules.dep" | sort -u >"$work/modules.keep"
(cd "$root/lib/modules/$krel" && find kernel -name '*.ko' | sort) >"$work/modules.all"
comm -23 "$work/modules.all" "$work/modules.keep" | (cd "$root/lib/modules/$krel" && xargs rm -f)
find "$root/lib/modules/$krel/kernel" -type d -empty -delete
chroot "$root" depmod -a "$krel"

# 3. Trim what a test VM never reads.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
	"$root"/usr/share/locale/* "$root"/usr/share/lintian "$root"/var/cache/apt/* \
	"$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/var/cache/debconf/*-old \
	"$root"/usr/lib/x86_64-linux-gnu/gconv
# (gconv: glibc's iconv modules, 8 MB; UTF-8 and ASCII are built in.)
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tconnscope-vm\n' >"$root/etc/hosts"
echo connscope-vm >"$root/etc/hostname"
# The modules the scenarios count on must have survived the pruning.
for m in nf_conntrack nf_tables nft_nat nf_conntrack_netlink veth bridge br_netfilter tls sch_ingress cls_bpf; do
	chroot "$root" modprobe -S "$krel" --show-depends "$m" >/dev/null ||
		die "module $m missing from the pruned tree"
done

# 4. Check that connscope would find every library it links (by soname, so
#    the check needs no ./connscope). libpcap pulls dbus/systemd/gcrypt in.
missing=""
for so in libbpf.so.1 libelf.so.1 libz.so.1 libcjson.so.1 libpcap.so.0.8 libcrypto.so.3 \
	libdbus-1.so.3 libsystemd.so.0 libcap.so.2 libgcrypt.so.20 liblzma.so.5 libzstd.so.1 \
	liblz4.so.1 libgpg-error.so.0; do
	chroot "$root" ldconfig -p | grep -q "$so " || missing="$missing $so"
done
[ -z "$missing" ] || die "libraries missing from the rootfs:$missing"

# 5. Pack. Uncompressed on purpose: see the header. Owners are root (they are
#    already, debootstrap ran as root); device nodes such as /dev/console come
#    along, and the kernel needs that one before /init mounts devtmpfs.
log "packing the initramfs"
new="$VM_DIR/image.new"
rm -rf "$new"
mkdir -p "$new"
cp "$work/kernel/boot/vmlinuz-$krel" "$new/vmlinuz"
# The bzImage decompresses itself (xz) in the guest, which takes seconds under
# TCG. Its payload is an ELF vmlinux with a PVH entry note (CONFIG_PVH=y), and
# qemu boots such an ELF directly: decompress it once here. run.sh falls back
# to vmlinuz if this ever fails.
xzoff=$(grep -obUaP '\xfd7zXZ\x00' "$new/vmlinuz" | head -n 1 | cut -d: -f1)
if [ -n "$xzoff" ] &&
	tail -c +$((xzoff + 1)) "$new/vmlinuz" | xz -dc --single-stream >"$new/vmlinux" 2>/dev/null &&
	[ "$(head -c 4 "$new/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
	:
else
	log "warning: no ELF vmlinux inside vmlinuz; the VM boots the bzImage (slower)"
	rm -f "$new/vmlinux"
fi
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | nice -n 10 cpio -o -H newc --quiet) >"$new/rootfs.cpio"
echo "$krel" >"$new/kernel-release"
{
	echo "kernel: $KERNEL_PKG $kver ($krel)"
	echo "rootfs: $(du -sh --apparent-size "$root" | cut -f1) unpacked," \
		"modules $(du -sh --apparent-size "$root/lib/modules" | cut -f1)" \
		"($(wc -l <"$work/modules.keep") of $(wc -l <"$work/modules.all"))"
	echo "initramfs: $(du -h --apparent-size "$new/rootfs.cpio" | cut -f1)"
	echo "packages:"
	# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
	chroot "$root" dpkg-query -W -f '  ${Package} ${Version} ${Installed-Size}K\n'
} >"$new/manifest"
printf '%s\n' "$key" >"$new/key"
rm -rf "$img"
mv "$new" "$img"
rm -rf "$work" "$VM_DIR/debs/partial"
t2=$(date +%s)
log "done in $((t2 - t0)) s (debootstrap $((t1 - t0)) s): $(sed -n 2,3p "$img/manifest" | tr '\n' ' ')"
