#!/usr/bin/env python3
"""Raw Ethernet frames on one interface, for the XDP tests (stdlib only).

  pkt.py send IFNAME HEX [HEX ...]
      Sends each hex string as one frame, as is (tags included).
  pkt.py capture IFNAME MS [ETHERTYPE]
      Captures incoming frames for MS milliseconds. Prints "ready" once the
      socket is bound, then one hex frame per line as they arrive. When the
      kernel moved a VLAN tag into metadata (it does on receive), the tag is
      re-inserted from PACKET_AUXDATA, as libpcap does, so the printed frame
      is what was on the wire. With ETHERTYPE (e.g. 0x88b5) only frames whose
      ethertype, outer or behind up to two tags, matches are printed.

Run it inside a namespace with nsenter --net (test/lib/sandbox.ts inNs()).
"""
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
VLAN_TPIDS = (0x8100, 0x88A8)


def send(ifname, frames):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((ifname, 0))
    for h in frames:
        s.send(bytes.fromhex(h))
    s.close()


def ethertypes(frame):
    out, off = [], 12
    while off + 2 <= len(frame):
        t = struct.unpack_from("!H", frame, off)[0]
        out.append(t)
        if t not in VLAN_TPIDS or len(out) > 2:
            break
        off += 4
    return out


def capture(ifname, ms, want):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    print("ready", flush=True)
    end = time.monotonic() + ms / 1000.0
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        while True:
            try:
                data, anc, _flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(64))
            except BlockingIOError:
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            for level, typ, cdata in anc:
                if level != SOL_PACKET or typ != PACKET_AUXDATA or len(cdata) < 20:
                    continue
                status, _len, _snap, _mac, _net, tci, tpid = struct.unpack_from("=IIIHHHH", cdata)
                if status & TP_STATUS_VLAN_VALID or tci:
                    if not status & TP_STATUS_VLAN_TPID_VALID:
                        tpid = 0x8100
                    data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
            if want is not None and want not in ethertypes(data):
                continue
            print(data.hex(), flush=True)
    s.close()


def main(argv):
    if len(argv) >= 3 and argv[1] == "send":
        send(argv[2], argv[3:])
    elif len(argv) in (4, 5) and argv[1] == "capture":
        capture(argv[2], int(argv[3]), int(argv[4], 0) if len(argv) == 5 else None)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
