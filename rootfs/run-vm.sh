#!/bin/bash
# Boots the network VM image (rootfs/build-image.sh) in qemu, serial console
# on this terminal: log in is automatic (root shell on ttyS0); type
# `netagent status`. Ctrl-A X quits, Ctrl-A C switches to the qemu monitor
# (hotplug a NIC there: `netdev_add user,id=hp1,restrict=on` then
# `device_add virtio-net-pci,netdev=hp1,id=hp1,mac=52:54:00:12:34:99`,
# and `device_del hp1` to unplug it).
#
# Environment:
#   PROFILE   netagent profile written to /etc/netagent/config.json in the
#             guest, through the kernel command line (netagent.profile=...;
#             /init turns it into the config file). Default xdp-forwarder.
#   XDP_MODE  skb | native | auto (netagent.xdpmode=...); unset: the agent's default.
#   MEM       guest RAM in MiB (default 768; the root filesystem lives in RAM,
#             ramfs: 512 is the least that works).
#   SMP       vCPUs (default 2).
#   ACCEL     tcg | kvm (default: kvm when it can run a guest here, else tcg).
#   QMP       path of a QMP socket to open (optional, for scripts).
#   NETDEV    user (default) | tap: the NICs' backends (below).
#   QUEUES    queue pairs per NIC with NETDEV=tap (default 2 x SMP).
#
# NICs (all virtio-net). With NETDEV=user every netdev is qemu user-mode
# networking with restrict=on, so no frame leaves this machine; each NIC is
# its own network, 10.0.2.0/24, 10.0.3.0/24, ... in NIC order, with qemu's
# DHCP server at .2. User-mode networking has one queue pair: native XDP
# (XDP_MODE=native or auto) still attaches, but virtio_net then sends
# redirected frames through the stack's queue under a lock ("slower locked
# tx mode" in the guest's dmesg). With NETDEV=tap each NIC is a TAP device
# navm-<name> (navm-router, navm-phys1, ...) with QUEUES queue pairs, mq=on
# and 2 x QUEUES + 2 MSI-X vectors: enough for native XDP with XDP send
# queues of its own (virtio_net wants min(QUEUES, vCPUs) + vCPUs pairs).
# As root qemu creates the TAPs (gone when it exits); otherwise create them
# first: ip tuntap add dev navm-phys1 mode tap multi_queue user $USER. They
# are connected to nothing: bring them up, capture or bridge them yourself.
#   02:01:00:00:00:01   the router link
#   52:54:00:12:34:01   physical NIC 1 (the uplink in the router profiles)
#   52:54:00:12:34:02   physical NIC 2
#   router-p2p:    + 0a:b3:ec:40:00:02, 0a:b3:ec:40:00:04 (clients 100.64.0.2/31, 100.64.0.4/31)
#   router-routed: + 02:01:00:00:00:02 (client 100.64.0.2)
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
OUT=$ROOT/build/vm
PROFILE=${PROFILE:-xdp-forwarder}
MEM=${MEM:-768}
SMP=${SMP:-2}
NETDEV=${NETDEV:-user}

[ -f "$OUT/vmlinuz" ] && [ -e "$OUT/initramfs.img" ] ||
  { echo "run-vm: no image in $OUT: run make image (bash rootfs/build-image.sh)" >&2; exit 1; }

case "$PROFILE" in
  xdp-forwarder|router-p2p|router-routed|client) ;;
  *) echo "run-vm: PROFILE=$PROFILE: expected xdp-forwarder, router-p2p, router-routed or client" >&2; exit 1 ;;
esac
case "$NETDEV" in
  user) [ -z "${QUEUES:-}" ] || { echo "run-vm: QUEUES=$QUEUES needs NETDEV=tap (qemu user-mode networking has one queue pair)" >&2; exit 1; } ;;
  tap) QUEUES=${QUEUES:-$((2 * SMP))}
    [[ "$QUEUES" =~ ^[1-9][0-9]*$ ]] || { echo "run-vm: QUEUES=$QUEUES: expected a positive number" >&2; exit 1; } ;;
  *) echo "run-vm: NETDEV=$NETDEV: expected user or tap" >&2; exit 1 ;;
esac

# KVM only when it really runs a guest: /dev/kvm can exist and still fail
# (here the vCPU hangs once the kernel decompresses). The probe boots our
# kernel with no root for a few seconds and looks for its banner; the answer
# is cached per host boot in build/vm/accel.
probe_accel() {
  local cache=$OUT/accel boot_id
  boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
  if [ -f "$cache" ] && [ "$(cut -d' ' -f1 "$cache")" = "$boot_id" ]; then
    cut -d' ' -f2 "$cache"; return
  fi
  local a=tcg
  if [ -r /dev/kvm ] && [ -w /dev/kvm ] &&
    timeout 8 qemu-system-x86_64 -accel kvm -M pc -nodefaults -display none -no-reboot -m 128 \
      -serial stdio -kernel "$OUT/vmlinuz" -append "console=ttyS0 panic=-1 rdinit=/none" 2>/dev/null |
      grep -q -m1 'Linux version'; then
    a=kvm
  fi
  echo "$boot_id $a" > "$cache"
  echo "$a"
}
if [ "${1:-}" = --probe-accel ]; then probe_accel; exit 0; fi
ACCEL=${ACCEL:-$(probe_accel)}
case "$ACCEL" in
  kvm) accel=(-accel kvm -cpu host) ;;
  *) accel=(-accel tcg,thread=multi -cpu max) ;;
esac

nics=()
subnet=1
nic() { # nic ID MAC: a user-mode network 10.0.N.0/24 of its own, or TAP navm-ID
  subnet=$((subnet + 1))
  # romfile= : no iPXE option ROM (nothing boots from the network here).
  if [ "$NETDEV" = tap ]; then
    if [ "$QUEUES" -gt 1 ]; then
      # One MSI-X vector per queue (rx and tx), one for config, one for the control queue.
      nics+=(-netdev "tap,id=$1,ifname=navm-$1,script=no,downscript=no,queues=$QUEUES"
        -device "virtio-net-pci,netdev=$1,id=$1,mac=$2,romfile=,mq=on,vectors=$((2 * QUEUES + 2))")
    else
      nics+=(-netdev "tap,id=$1,ifname=navm-$1,script=no,downscript=no"
        -device "virtio-net-pci,netdev=$1,id=$1,mac=$2,romfile=")
    fi
  else
    nics+=(-netdev "user,id=$1,restrict=on,net=10.0.$subnet.0/24"
      -device "virtio-net-pci,netdev=$1,id=$1,mac=$2,romfile=")
  fi
}
nic router 02:01:00:00:00:01
nic phys1 52:54:00:12:34:01
nic phys2 52:54:00:12:34:02
case "$PROFILE" in
  router-p2p) nic p2p1 0a:b3:ec:40:00:02; nic p2p2 0a:b3:ec:40:00:04 ;;
  router-routed) nic routed1 02:01:00:00:00:02 ;;
esac

append="console=ttyS0 rootfstype=ramfs panic=-1 quiet netagent.profile=$PROFILE"
[ -n "${XDP_MODE:-}" ] && append+=" netagent.xdpmode=$XDP_MODE"
qmp=()
[ -n "${QMP:-}" ] && qmp=(-qmp "unix:$QMP,server=on,wait=off")

nd=$NETDEV; [ "$NETDEV" = tap ] && nd="TAPs navm-*, $QUEUES queue pairs"
echo "run-vm: profile $PROFILE, $ACCEL, ${MEM} MiB, $SMP vCPUs, $nd; Ctrl-A X quits, Ctrl-A C is the qemu monitor" >&2
if [ "$NETDEV" = user ] && [[ "${XDP_MODE:-}" =~ ^(native|auto)$ ]]; then
  echo "run-vm: XDP_MODE=$XDP_MODE on user-mode NICs (one queue pair): native XDP redirects in virtio_net's locked tx mode; NETDEV=tap (root) gives every NIC $((2 * SMP)) queue pairs" >&2
elif [ "$NETDEV" = tap ] && [ "$QUEUES" -lt $((2 * SMP)) ] && [[ "${XDP_MODE:-}" =~ ^(native|auto)$ ]]; then
  echo "run-vm: QUEUES=$QUEUES < 2 x SMP: native XDP redirects in virtio_net's locked tx mode" >&2
fi
exec qemu-system-x86_64 "${accel[@]}" -M pc -smp "$SMP" -m "$MEM" \
  -nodefaults -no-reboot -nographic -serial mon:stdio \
  -kernel "$OUT/vmlinuz" -initrd "$OUT/initramfs.img" -append "$append" \
  "${nics[@]}" "${qmp[@]}"
