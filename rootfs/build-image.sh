#!/bin/bash
# Builds the network VM's boot image from Debian parts and this repository:
#   build/vm/vmlinuz             the Debian kernel (linux-image-<ver>-amd64)
#   build/vm/initramfs.cpio.zst  the whole root filesystem (boot it with
#                                rootfstype=ramfs; it stays in RAM); gzip
#                                (initramfs.cpio.gz) when zstd is missing
#   build/vm/initramfs.img       a link to whichever of the two is current
# Nothing is downloaded except the kernel package, with `apt-get download`,
# once: the .deb is cached in build/vm/cache and never installed on the host.
# Everything else is copied from this machine (busybox-static, s6, node,
# libbpf1, nftables, iproute2, bpftool, ethtool) and from the repository (the built
# agent). A rerun with unchanged inputs does nothing (stamp of the inputs).
#
# Environment: NETAGENT_KERNEL_PKG  kernel package (default: what
#                                   linux-image-amd64 depends on)
#              NETAGENT_IMAGE_FORCE=1 rebuild even when nothing changed
#              NETAGENT_ZSTD_LEVEL  compression level (default 6)
#              NETAGENT_IMAGE_COMPRESS=gzip  gzip instead of zstd
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
OUT=$ROOT/build/vm
CACHE=$OUT/cache
STAGE=$OUT/root
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
LIBDIR=usr/lib/$MULTIARCH
ZSTD_LEVEL=${NETAGENT_ZSTD_LEVEL:-6}
BB=/bin/busybox
t0=$(date +%s.%N)

say() { echo "build-image: $*"; }
die() { echo "build-image: error: $*" >&2; exit 1; }

mkdir -p "$OUT" "$CACHE"
[ -x "$BB" ] || die "$BB missing: apt-get install busybox-static (make deps)"
# zstd unpacks faster in the guest; gzip is the fallback (both in the Debian kernel).
if [ "${NETAGENT_IMAGE_COMPRESS:-zstd}" = zstd ] && command -v zstd >/dev/null; then
  IMG=$OUT/initramfs.cpio.zst; compress=(zstd -q -T0 -"$ZSTD_LEVEL")
else
  command -v zstd >/dev/null || say "zstd missing (apt-get install zstd): compressing with gzip"
  IMG=$OUT/initramfs.cpio.gz; compress=(gzip -6)
fi
command -v s6-svscan >/dev/null || die "s6 missing: apt-get install s6 (make deps)"

# ---- the kernel package: name, cached .deb, extracted tree ---------------
kernel_dep() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
kpkg=${NETAGENT_KERNEL_PKG:-$(kernel_dep)}
if [ -z "$kpkg" ] && ! ls "$CACHE"/linux-image-*-amd64_*.deb >/dev/null 2>&1; then
  # A fresh machine may have no apt lists yet.
  say "apt knows no linux-image-amd64: running apt-get update"
  apt-get update -qq >/dev/null 2>&1 || true
  kpkg=$(kernel_dep)
fi
if [ -z "$kpkg" ]; then
  # No apt lists (offline, fresh machine): fall back to a cached package.
  deb=$(ls -1t "$CACHE"/linux-image-*-amd64_*.deb 2>/dev/null | head -n1 || true)
  [ -n "$deb" ] || die "cannot tell which kernel to use: run apt-get update, or set NETAGENT_KERNEL_PKG"
  kpkg=$(basename "$deb" | cut -d_ -f1)
fi
deb=$(ls -1 "$CACHE/${kpkg}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  say "downloading $kpkg (apt-get download, cached in $CACHE)"
  (cd "$CACHE" && apt-get download -q "$kpkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  deb=$(ls -1 "$CACHE/${kpkg}"_*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$deb" ]; then
    # Offline with an older kernel cached: use it rather than fail.
    deb=$(ls -1t "$CACHE"/linux-image-*-amd64_*.deb 2>/dev/null | head -n1 || true)
    [ -n "$deb" ] || die "apt-get download $kpkg failed (apt-get update first?)"
    kpkg=$(basename "$deb" | cut -d_ -f1)
    say "warning: using the cached $kpkg instead"
  fi
fi
KVER=${kpkg#linux-image-}
KTREE=$CACHE/$kpkg
if [ ! -f "$KTREE/.extracted" ]; then
  say "extracting $(basename "$deb")"
  rm -rf "$KTREE" && mkdir -p "$KTREE"
  dpkg-deb -x "$deb" "$KTREE"
  # Debian runs depmod in postinst; we need modules.dep to resolve dependencies.
  $BB depmod -b "$KTREE" "$KVER"
  touch "$KTREE/.extracted"
fi
KMODS=$KTREE/lib/modules/$KVER

# ---- the agent, as built by `make` -----------------------------------------
# Production node_modules only (koffi, pino, chokidar and what they need),
# from the repository's node_modules: nothing is downloaded.
mapfile -t node_deps < <(cd "$ROOT" && npm ls --omit=dev --all --parseable 2>/dev/null |
  sed -n "s|^$ROOT/||p" | grep '^node_modules/' | sort -u || true)
agent_inputs=()
for p in bin/netagent package.json dist/agent native/build/Release/netlink.node build/bpf "${node_deps[@]}"; do
  [ -e "$ROOT/$p" ] && agent_inputs+=("$ROOT/$p")
done
[ -f "$ROOT/dist/agent/cli.js" ] || say "warning: dist/agent/cli.js missing: the image boots, but netagent will not run (make build first)"
ls "$ROOT"/build/bpf/*.o >/dev/null 2>&1 || say "warning: no build/bpf/*.o: the agent will find no XDP programs (make bpf first)"

# Host programs copied into the image (with the libraries ldd names).
# ethtool: channels (-l/-L) and the per-queue XDP counters of virtio_net (-S), for native XDP.
HOST_BINS=(/usr/bin/node /usr/sbin/nft /usr/bin/ip /usr/sbin/bpftool /usr/sbin/ethtool)
HOST_BINS+=($(ls /usr/bin/s6-* | grep -v -e s6-fdholder -e s6-instance -e s6-ipcserver -e s6-sudo -e s6-accessrules))
# Loaded with dlopen (koffi), so ldd of node does not name them.
DLOPEN_LIBS=(libbpf.so.1 libnftables.so.1 libelf.so.1 libz.so.1)

# ---- skip when nothing changed ---------------------------------------------
stamp_now=$(
  {
    echo "$kpkg $(basename "$deb") ${compress[*]}"
    # Contents, not mtimes: tsc rewrites dist/ on every run.
    find "$ROOT/rootfs" "${agent_inputs[@]}" -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum
    find "$ROOT/rootfs" "${agent_inputs[@]}" -printf '%p %m %l\n' 2>/dev/null
    for b in "${HOST_BINS[@]}" $BB; do stat -L -c '%n %s %Y' "$b"; done
  } | sort | sha256sum | cut -d' ' -f1
)
if [ -z "${NETAGENT_IMAGE_FORCE:-}" ] && [ -f "$IMG" ] && [ "$(readlink "$OUT/initramfs.img" 2>/dev/null)" = "$(basename "$IMG")" ] && [ -f "$OUT/vmlinuz" ] &&
  [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp_now" ]; then
  say "up to date: $OUT/vmlinuz $IMG ($(du -m "$IMG" | cut -f1) MiB)"
  exit 0
fi

# ---- stage the root filesystem ---------------------------------------------
rm -rf "$STAGE"
mkdir -p "$STAGE"/{usr/bin,usr/sbin,"$LIBDIR",usr/lib64,etc,proc,sys,dev,run,tmp,root,var,mnt}
ln -s usr/bin "$STAGE/bin"
ln -s usr/sbin "$STAGE/sbin"
ln -s usr/lib "$STAGE/lib"
ln -s usr/lib64 "$STAGE/lib64"
ln -s /run "$STAGE/var/run"
ln -s /tmp "$STAGE/var/tmp"
chmod 1777 "$STAGE/tmp"
chmod 700 "$STAGE/root"
# The kernel opens /dev/console for /init before devtmpfs is mounted.
mknod -m 600 "$STAGE/dev/console" c 5 1
mknod -m 666 "$STAGE/dev/null" c 1 3

# Our files: /init, /etc (fstab, s6 services, modules list, profile), udhcpc hook.
cp -a "$ROOT/rootfs/init" "$STAGE/init"
cp -a "$ROOT/rootfs/etc/." "$STAGE/etc/"
cp -a "$ROOT/rootfs/usr/." "$STAGE/usr/"

# copy_lib SRC: a shared object into the multiarch dir under its own (soname) name.
copy_lib() {
  local src=$1 name
  name=$(basename "$src")
  [ -e "$STAGE/$LIBDIR/$name" ] || cp -L "$src" "$STAGE/$LIBDIR/$name"
}
# copy_deps FILE: every library ldd finds for FILE, and the dynamic loader.
copy_deps() {
  local line lib
  while read -r line; do
    case "$line" in
      *'=> not found'*) die "$1 needs a library that is missing here: $line" ;;
      *'=> /'*) lib=${line#*=> }; lib=${lib%% (*}; copy_lib "$lib" ;;
      /*ld-linux*) lib=${line%% (*}
        copy_lib "$lib"
        ln -sf "../lib/$MULTIARCH/$(basename "$lib")" "$STAGE/usr/lib64/$(basename "$lib")" ;;
    esac
  done < <(ldd "$1" 2>/dev/null || true)
}
# copy_bin SRC [DEST]: a program at its host path (or DEST), with its libraries.
copy_bin() {
  local src=$1 dest=${2:-$1}
  dest=${dest#/}; dest=usr/${dest#usr/}
  cp -L "$src" "$STAGE/$dest"
  copy_deps "$src"
}
for b in "${HOST_BINS[@]}"; do copy_bin "$b"; done
for l in "${DLOPEN_LIBS[@]}"; do
  p=/usr/lib/$MULTIARCH/$l
  [ -e "$p" ] || p=/lib/$MULTIARCH/$l
  [ -e "$p" ] || die "$l missing on this machine (apt-get install libbpf1 libnftables1)"
  copy_lib "$p"
  copy_deps "$p"
done
# Unversioned names too, for code that dlopens "libbpf.so" / "libnftables.so".
ln -sf libbpf.so.1 "$STAGE/$LIBDIR/libbpf.so"
ln -sf libnftables.so.1 "$STAGE/$LIBDIR/libnftables.so"

# busybox: every applet that no real program above provides.
cp /bin/busybox "$STAGE/usr/bin/busybox"
# Applets go where Debian puts them (the kernel runs /sbin/modprobe to
# autoload modules), /bin and /sbin being links into /usr.
for p in $($BB --list-full); do
  a=$(basename "$p") d=usr/$(dirname "${p#usr/}")
  [ "$d" = usr/. ] && d=usr/bin
  [ -e "$STAGE/usr/bin/$a" ] || [ -e "$STAGE/usr/sbin/$a" ] || ln -s /usr/bin/busybox "$STAGE/$d/$a"
done

# Debian's busybox-static runs its own applets before searching PATH when the
# shell is busybox ash ("standalone shell"): `ip` typed at the console would be
# busybox's. Aliases in the login profile point at the real programs.
mkdir -p "$STAGE/etc/profile.d"
for a in $($BB --list); do
  [ "$a" = busybox ] && continue
  for d in usr/sbin usr/bin; do
    if [ -f "$STAGE/$d/$a" ] && [ ! -L "$STAGE/$d/$a" ]; then echo "alias $a=/$d/$a"; break; fi
  done
done > "$STAGE/etc/profile.d/real-programs.sh"

# The agent: /usr/lib/netagent keeps the repository layout the launcher and
# the agent expect (bin/netagent -> ../dist/agent/cli.js, package.json with
# "type": "module", node_modules, native addon); BPF objects in
# /usr/lib/netagent/bpf (the agent's default bpfDir), also reachable as
# build/bpf for code that looks there.
NA=$STAGE/usr/lib/netagent
mkdir -p "$NA/bin" "$NA/dist" "$NA/bpf" "$NA/build" "$NA/native/build/Release"
cp "$ROOT/bin/netagent" "$NA/bin/netagent"
cp "$ROOT/package.json" "$NA/package.json"
[ -d "$ROOT/dist/agent" ] && cp -a "$ROOT/dist/agent" "$NA/dist/agent"
find "$NA/dist" -name '*.map' -delete 2>/dev/null || true
if [ -f "$ROOT/native/build/Release/netlink.node" ]; then
  cp "$ROOT/native/build/Release/netlink.node" "$NA/native/build/Release/"
  copy_deps "$ROOT/native/build/Release/netlink.node"
fi
cp "$ROOT"/build/bpf/*.o "$NA/bpf/" 2>/dev/null || true
ln -s ../bpf "$NA/build/bpf"
for d in "${node_deps[@]}"; do
  mkdir -p "$NA/$(dirname "$d")"
  cp -a "$ROOT/$d" "$NA/$d"
  # Only the top of each package: nested node_modules are listed on their own.
  rm -rf "$NA/$d/node_modules"
done
# Drop the musl build of koffi (other libc, would need libc.musl).
rm -rf "$NA"/node_modules/@koromix/*/musl_* 2>/dev/null || true
while IFS= read -r -d '' so; do copy_deps "$so"; done < <(find "$NA" -name '*.node' -print0)
ln -s ../lib/netagent/bin/netagent "$STAGE/usr/bin/netagent"

# Kernel modules listed in /etc/modules and their dependencies.
mods=$(grep -v -e '^#' -e '^$' "$ROOT/rootfs/etc/modules" | awk '{print $1}')
mkdir -p "$STAGE/lib/modules/$KVER"
cp "$KMODS"/modules.builtin "$KMODS"/modules.builtin.modinfo "$KMODS"/modules.order "$STAGE/lib/modules/$KVER/"
for m in $mods; do
  line=$(grep -E "/${m//_/[-_]}\.ko(\.[a-z]+)?:" "$KMODS/modules.dep" || true)
  if [ -z "$line" ]; then
    grep -qE "/${m//_/[-_]}\.ko" "$KMODS/modules.builtin" && continue # built in
    die "kernel module $m (rootfs/etc/modules) is not in $kpkg"
  fi
  for f in ${line/:/}; do
    mkdir -p "$STAGE/lib/modules/$KVER/$(dirname "$f")"
    cp -n "$KMODS/$f" "$STAGE/lib/modules/$KVER/$f"
  done
done
$BB depmod -b "$STAGE" "$KVER"

# The dynamic loader's cache, so dlopen("libbpf.so.1") finds the multiarch dir.
echo "/$LIBDIR" > "$STAGE/etc/ld.so.conf"
/sbin/ldconfig -r "$STAGE"

# ---- pack -----------------------------------------------------------------
cp "$KTREE/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | $BB cpio -o -H newc 2>/dev/null) |
  "${compress[@]}" > "$IMG.tmp"
mv "$IMG.tmp" "$IMG"
rm -f "$OUT"/initramfs.cpio.{zst,gz}.tmp
for other in "$OUT"/initramfs.cpio.zst "$OUT"/initramfs.cpio.gz; do [ "$other" = "$IMG" ] || rm -f "$other"; done
ln -sfn "$(basename "$IMG")" "$OUT/initramfs.img"
echo "$stamp_now" > "$OUT/.stamp"
t1=$(date +%s.%N)
say "kernel $KVER: $OUT/vmlinuz ($(du -m "$OUT/vmlinuz" | cut -f1) MiB)"
say "root: $IMG ($(du -m "$IMG" | cut -f1) MiB packed, $(du -sm "$STAGE" | cut -f1) MiB unpacked)"
say "built in $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s"
