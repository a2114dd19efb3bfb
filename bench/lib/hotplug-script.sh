#!/bin/bash
# The published approach, for comparison: an event-driven shell script that,
# per new link, runs the commands the published mdev script runs, one process
# per step, one link after the other (as mdev -d handles uevents).
# The trigger is `ip monitor link` (the kernel's link events).
#
# usage: hotplug-script.sh PROFILE LOADER PINDIR OBJDIR PREFIX
#   PROFILE  xdp-forwarder | router-routed
#   LOADER   xdp-loader: `xdp-loader load -m skb -p PINDIR DEV OBJ` per link,
#                        exactly as published (fails on libbpf 1.1.2 once the
#                        router_iface pin exists: the pinned-DEVMAP bug);
#            pinned:     the same steps, XDP attached with
#                        `ip link set DEV xdpgeneric pinned PINDIR/prog_NAME`
#                        (programs loaded once beforehand): what the script
#                        needs to work on Debian 12.
#   PREFIX   only links whose name starts with it are handled.
# Runs until killed; prints "ready" on stdout once the monitor is running and
# one line "failed STEP DEV" on stdout per failed step.
set -u
profile=$1 loader=$2 pin=$3 objdir=$4 prefix=$5

configure_xdp() {
	local dev=$1 idx=$2 mac=$3 prog=physical
	case $mac in 02:01:*) prog=router ;; esac
	if [ "$loader" = xdp-loader ]; then
		xdp-loader load -m skb -p "$pin" "$dev" "$objdir/pub_$prog.o" >/dev/null 2>&1 || echo "failed xdp-loader $dev"
	else
		ip link set dev "$dev" xdpgeneric pinned "$pin/prog_$prog" || echo "failed ip-xdp $dev"
	fi
	if [ $prog = router ]; then
		ip link set dev "$dev" promisc on || echo "failed promisc $dev"
		# set-router-iface: the ifindex as 4 little-endian bytes
		bpftool map update pinned "$pin/router_iface" key 0 0 0 0 \
			value $((idx & 255)) $(((idx >> 8) & 255)) $(((idx >> 16) & 255)) $(((idx >> 24) & 255)) ||
			echo "failed set-router-iface $dev"
	fi
	ip link set dev "$dev" up || echo "failed up $dev"
}

configure_routed() {
	local dev=$1 mac=$3 a b
	IFS=: read -r _ _ _ _ a b <<<"$mac"
	ip addr add 169.254.0.1/32 dev "$dev" || echo "failed addr $dev"
	ip link set dev "$dev" up || echo "failed up $dev"
	ip route add "100.64.$((16#$a)).$((16#$b))/32" dev "$dev" || echo "failed route $dev"
}

declare -A seen
exec 3< <(exec ip -o monitor link)
sleep 0.3 # let the monitor subscribe before anyone creates links
echo ready
while read -r line <&3; do
	case $line in Deleted*) continue ;; esac
	idx=${line%%:*}
	rest=${line#*: }
	dev=${rest%%[:@]*}
	[[ $dev == "$prefix"* ]] || continue
	[[ -n ${seen[$idx]:-} ]] && continue
	seen[$idx]=1
	mac=${line#*link/ether }
	mac=${mac%% *}
	case $profile in
	xdp-forwarder) configure_xdp "$dev" "$idx" "$mac" ;;
	router-routed) configure_routed "$dev" "$idx" "$mac" ;;
	esac
done
