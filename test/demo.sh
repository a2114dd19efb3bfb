#!/usr/bin/env bash
# make demo: the agent in a namespace sandbox, start to finish.
#   1. a "net VM" namespace with a router link and one NIC; the agent starts
#   2. a second NIC is hotplugged; `netagent status`
#   3. frames through the XDP forwarder: LAN -> router arrives tagged,
#      router -> LAN arrives untagged (tcpdump shows both)
#   4. the NIC is unplugged; status again
#   5. a short run of the router-p2p profile with 0a:b3:ec links
#   6-9. the network VM booted in qemu: status at its console, NIC hotplug/unplug
# Everything is torn down at the end, also on Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TAG=$(( $$ % 10000 ))
NETVM=demo-vm-$TAG LAN1=demo-lan1-$TAG LAN2=demo-lan2-$TAG RTR=demo-rtr-$TAG NET2=demo-r2-$TAG CL1=demo-c1-$TAG CL2=demo-c2-$TAG
WORK=$(mktemp -d /tmp/netagent-demo-XXXX)
PINS=$WORK/pins
AGENT_PID=
CAP_PIDS=()

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_ns() { local ns=$1; shift; nsenter --net=/run/netns/"$ns" -- "$@"; }
netagent() { in_ns "$CURRENT_NS" "$ROOT/bin/netagent" "$@"; }

cleanup() {
  set +e
  stop_agent
  for p in "${CAP_PIDS[@]}"; do kill "$p" 2>/dev/null; done; CAP_PIDS=()
  for ns in $NETVM $LAN1 $LAN2 $RTR $NET2 $CL1 $CL2; do ip netns del "$ns" 2>/dev/null; done
  umount "$PINS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "interrupted: cleaning up"; exit 130' INT TERM

start_agent() { # ns config-json
  CURRENT_NS=$1
  echo "$2" > "$WORK/config.json"
  rm -f "$WORK/ready"
  # fd 3 is the readiness pipe, as s6 gives it; the agent writes a newline once coldplug is done.
  # A simple command, not a shell function, in the background: $! is then the
  # agent itself (nsenter and bin/netagent both exec), not a subshell whose
  # death would leave the agent running.
  nsenter --net=/run/netns/"$1" -- "$ROOT/bin/netagent" run --config "$WORK/config.json" --socket "$WORK/control.sock" \
    --pin-dir "$PINS" --notify-fd 3 3>"$WORK/ready" >"$WORK/agent-$1.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 200); do [ -s "$WORK/ready" ] && break; sleep 0.05; done
  [ -s "$WORK/ready" ] || { echo "agent not ready; log:"; tail "$WORK/agent-$1.log"; exit 1; }
}
# SIGTERM, as s6 would; SIGKILL if it has not exited after 5 s.
stop_agent() {
  [ -n "$AGENT_PID" ] || return 0
  kill "$AGENT_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=
}

# send-frame NS DEV HEX: one raw Ethernet frame out of DEV (python3 stdlib AF_PACKET).
send_frame() {
  in_ns "$1" /usr/bin/python3 -c 'import socket,sys; s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind((sys.argv[1],0)); s.send(bytes.fromhex(sys.argv[2]))' "$2" "$3"
}
# capture NS DEV SECONDS FILE: tcpdump in the background (-e shows the VLAN tag);
# its PID (timeout's, which passes signals on) is in CAP_PIDS, waited for by wait_captures.
capture() {
  nsenter --net=/run/netns/"$1" -- timeout "$3" tcpdump -l -e -n -q -i "$2" ether proto 0x88b5 or vlan >"$4" 2>/dev/null &
  CAP_PIDS+=($!)
}
wait_captures() { for p in "${CAP_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; CAP_PIDS=(); }

mkdir -p "$PINS"; mount -t bpf bpf "$PINS"
for ns in $NETVM $LAN1 $LAN2 $RTR; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
for ns in $LAN1 $LAN2 $RTR; do in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
ip -n "$NETVM" link add eth0 address 52:54:00:00:00:11 type veth peer name lan netns "$LAN1"
ip -n "$NETVM" link add rlink address 02:01:00:00:00:01 type veth peer name trunk netns "$RTR"
ip -n "$LAN1" link set lan up; ip -n "$RTR" link set trunk up

bold "1. the net VM has a router link (02:01:00:00:00:01) and one NIC; netagent starts (xdp-forwarder)"
start_agent "$NETVM" '{ "profile": "xdp-forwarder" }'
echo "ready (s6 readiness fd written). Log: $WORK/agent-$NETVM.log"

bold "2. hotplug: a second NIC appears"
ip -n "$NETVM" link add eth1 address 52:54:00:00:00:22 type veth peer name lan netns "$LAN2"
ip -n "$LAN2" link set lan up
sleep 0.3
echo '$ netagent status'
netagent status --socket "$WORK/control.sock"

IDX1=$(ip -n "$NETVM" -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ifindex"])')
IDX2=$(ip -n "$NETVM" -j link show eth1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ifindex"])')

bold "3a. a frame sent into LAN 1 arrives at the router tagged with VLAN $IDX1 (eth0's ifindex)"
capture "$RTR" trunk 2 "$WORK/cap1"
sleep 0.5
send_frame "$LAN1" lan "ffffffffffff02aaaaaaaa0188b568656c6c6f206c616e2031"   # ethertype 0x88b5, "hello lan 1"
wait_captures; cat "$WORK/cap1"

bold "3b. a frame the router tags with VLAN $IDX2 arrives untagged in LAN 2 only"
capture "$LAN2" lan 2 "$WORK/cap2"
capture "$LAN1" lan 2 "$WORK/cap3"
sleep 0.5
send_frame "$RTR" trunk "ffffffffffff02bbbbbbbb01$(printf '8100%04x' "$IDX2")88b5776f726c64"
wait_captures
echo "LAN 2 saw:"; cat "$WORK/cap2"
# tcpdump prints a blank line after some frames: count the frame lines only.
echo "LAN 1 saw: $(grep -c 'ff:ff:ff:ff:ff:ff' "$WORK/cap3" || true) frames"

bold "4. unplug eth1; status again (its allowlist entry is gone with it)"
ip -n "$NETVM" link del eth1
sleep 0.3
netagent status --socket "$WORK/control.sock"
stop_agent

bold "5. router-p2p: 0a:b3:ec links get the address their MAC encodes"
ip netns add "$NET2"; ip netns add "$CL1"; ip netns add "$CL2"; ip -n "$NET2" link set lo up
ip -n "$NET2" link add vm1 address 0a:b3:ec:40:00:02 type veth peer name eth0 netns "$CL1"
ip -n "$NET2" link add vm2 address 0a:b3:ec:40:00:04 type veth peer name eth0 netns "$CL2"
ip -n "$NET2" link add bad address 0a:b3:ec:01:02:03 type veth peer name bad0 netns "$CL1"
ip -n "$CL1" link set eth0 up; ip -n "$CL2" link set eth0 up   # the client VMs' ends
start_agent "$NET2" '{ "profile": "router-p2p", "uplinkDhcp": false }'
netagent status --socket "$WORK/control.sock"
echo '$ ip -br addr   (in the router namespace)'
ip -n "$NET2" -br addr
stop_agent
cleanup; set -e
# The same agent in the booted network VM (skip with DEMO_VM=0).
if [ "${DEMO_VM:-1}" != 0 ]; then node --enable-source-maps dist/test/demo-vm.js; fi
bold "done"
