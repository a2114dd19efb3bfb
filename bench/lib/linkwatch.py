#!/usr/bin/env python3
"""Neutral observer for the control-plane benchmark.

Runs inside the namespace under test, listens to rtnetlink (links, IPv4
addresses, IPv4 routes) and prints one JSON line per event of interest, with
CLOCK_MONOTONIC timestamps taken as the message is read:

  {"ev": "ready"}
  {"ev": "created",    "name": ..., "ifindex": ..., "t": ns}
  {"ev": "configured", "name": ..., "ifindex": ..., "t": ns, "xdp": bool, ...}
  {"ev": "timeout",    "name": ..., "ifindex": ..., "t": ns, ...}   (xdp never seen)

Only links whose name starts with --prefix count. "Configured" means, per
profile:
  xdp-forwarder: IFF_UP, IFF_PROMISC when the MAC starts 02:01, and an XDP
                 program attached (with --xdp observe: not waited for, only
                 reported; used for the published script, whose loader fails).
  router-routed: IFF_UP, 169.254.0.1/32 on the link and the route
                 100.64.AA.BB/32 via the link (AA.BB = last two MAC octets).

Single links are created by the watcher itself when the driver writes
"add NAME MAC PEERNAME PEERNS" on stdin: it sends RTM_NEWLINK (a veth pair,
the peer moved to /run/netns/PEERNS) and takes as the link's creation time
the moment it sends the request (the kernel's creation time, reported as
"ack" events, is thus included in every latency, for every subject alike),
so an observer that runs late can only lengthen a measured latency, never
shorten it. Links created by others (bursts from
`ip -batch`) get the time their first RTM_NEWLINK is read.

Attaching XDP sends no RTM_NEWLINK, so once everything else holds and XDP is
not yet visible, the watcher asks (RTM_GETLINK) every --poll-ms until it is:
such latencies carry up to that much extra delay.
"""
import argparse
import errno
import json
import os
import select
import socket
import struct
import sys
import time

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST = 1
IFF_UP, IFF_PROMISC = 0x1, 0x100
IFLA_ADDRESS, IFLA_IFNAME, IFLA_XDP = 1, 3, 43
IFLA_XDP_ATTACHED = 2
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF = 1, 4
POLL_BATCH = 32
GROUPS = 0x1 | 0x10 | 0x40  # RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE


NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 4, 0x200, 0x400
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1


def rta(ty, payload):
    ln = 4 + len(payload)
    return struct.pack('=HH', ln, ty) + payload + b'\0' * ((4 - ln % 4) % 4)


def veth_request(seq, name, mac, peer, peer_ns_fd):
    ifi = struct.pack('=BxHiII', socket.AF_UNSPEC, 0, 0, 0, 0)
    peer_info = ifi + rta(IFLA_IFNAME, peer.encode() + b'\0') + rta(IFLA_NET_NS_FD, struct.pack('=I', peer_ns_fd))
    linkinfo = rta(IFLA_INFO_KIND, b'veth\0') + rta(IFLA_INFO_DATA, rta(VETH_INFO_PEER, peer_info))
    body = ifi + rta(IFLA_IFNAME, name.encode() + b'\0') + rta(IFLA_ADDRESS, bytes.fromhex(mac.replace(':', ''))) + rta(IFLA_LINKINFO, linkinfo)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return struct.pack('=IHHII', 16 + len(body), RTM_NEWLINK, flags, seq, 0) + body


def attrs(buf, off, end):
    out = {}
    while off + 4 <= end:
        ln, ty = struct.unpack_from('=HH', buf, off)
        if ln < 4:
            break
        out[ty & 0x3FFF] = buf[off + 4:off + ln]
        off += (ln + 3) & ~3
    return out


class Link:
    __slots__ = ('name', 'ifindex', 'mac', 'created', 'flags', 'xdp', 'addrs', 'routes', 'done', 'polling', 'poll_started', 'emitted')

    def __init__(self, name, ifindex, mac, t):
        self.name, self.ifindex, self.mac, self.created = name, ifindex, mac, t
        self.flags, self.xdp = 0, False
        self.addrs, self.routes = set(), set()
        self.done, self.polling, self.poll_started = False, False, 0
        self.emitted = False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--prefix', required=True)
    ap.add_argument('--profile', choices=['xdp-forwarder', 'router-routed'], required=True)
    ap.add_argument('--xdp', choices=['require', 'observe'], default='require')
    ap.add_argument('--poll-ms', type=float, default=0.5)
    ap.add_argument('--xdp-wait-s', type=float, default=5.0)
    a = ap.parse_args()

    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: bursts of 1000 links
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    s.bind((0, GROUPS))
    s.setblocking(False)
    links = {}
    out = sys.stdout
    seq = [1]
    rr = [0]

    def emit(obj):
        out.write(json.dumps(obj) + '\n')
        out.flush()

    def getlink(ifindex):
        seq[0] += 1
        body = struct.pack('=BxHiII', socket.AF_UNSPEC, 0, ifindex, 0, 0)
        hdr = struct.pack('=IHHII', 16 + len(body), RTM_GETLINK, NLM_F_REQUEST, seq[0], 0)
        try:
            s.send(hdr + body)
        except OSError:
            pass

    def check(l, t):
        if l.done:
            return
        up = bool(l.flags & IFF_UP)
        if a.profile == 'xdp-forwarder':
            need_promisc = l.mac.startswith('02:01')
            base = up and (not need_promisc or bool(l.flags & IFF_PROMISC))
            if not base:
                return
            if l.xdp or a.xdp == 'observe':
                l.done = True
                emit({'ev': 'configured', 'name': l.name, 'ifindex': l.ifindex, 't': t, 'xdp': l.xdp,
                      'polled': l.polling})
                return
            if not l.polling:
                l.polling, l.poll_started = True, t
        else:
            o = l.mac.split(':')
            want_route = f'100.64.{int(o[4], 16)}.{int(o[5], 16)}/32'
            if up and '169.254.0.1/32' in l.addrs and want_route in l.routes:
                l.done = True
                emit({'ev': 'configured', 'name': l.name, 'ifindex': l.ifindex, 't': t, 'xdp': l.xdp})

    def handle(buf, t):
        off = 0
        while off + 16 <= len(buf):
            ln, ty, _fl, _sq, _pid = struct.unpack_from('=IHHII', buf, off)
            if ln < 16:
                break
            end = off + ln
            if ty in (RTM_NEWLINK, RTM_DELLINK):
                _fam, _typ, idx, flags, _chg = struct.unpack_from('=BxHiII', buf, off + 16)
                at = attrs(buf, off + 32, end)
                name = at.get(IFLA_IFNAME, b'').rstrip(b'\0').decode()
                if ty == RTM_DELLINK:
                    links.pop(idx, None)
                elif name.startswith(a.prefix):
                    l = links.get(idx)
                    if l is None:
                        mac = ':'.join(f'{b:02x}' for b in at.get(IFLA_ADDRESS, b''))
                        l = links[idx] = Link(name, idx, mac, t)
                        own = adding.get(name)
                        if own is not None:
                            # ours: the creation time is the kernel's ack, taken in add()
                            l.created = own
                        if own is None or own > 0:
                            l.emitted = True
                            emit({'ev': 'created', 'name': name, 'ifindex': idx, 't': l.created})
                    l.flags = flags
                    x = at.get(IFLA_XDP)
                    if x is not None:
                        xa = attrs(x, 0, len(x)).get(IFLA_XDP_ATTACHED)
                        l.xdp = bool(xa and xa[0] != 0)
                    check(l, t)
            elif ty in (RTM_NEWADDR, RTM_DELADDR):
                fam, plen, _f, _sc, idx = struct.unpack_from('=BBBBI', buf, off + 16)
                l = links.get(idx)
                if l and fam == socket.AF_INET:
                    at = attrs(buf, off + 24, end)
                    ad = at.get(IFA_LOCAL) or at.get(IFA_ADDRESS)
                    if ad:
                        cidr = f'{socket.inet_ntoa(ad)}/{plen}'
                        (l.addrs.add if ty == RTM_NEWADDR else l.addrs.discard)(cidr)
                        check(l, t)
            elif ty in (RTM_NEWROUTE, RTM_DELROUTE):
                fam, dlen = struct.unpack_from('=BB', buf, off + 16)
                if fam == socket.AF_INET:
                    at = attrs(buf, off + 28, end)
                    oif, dst = at.get(RTA_OIF), at.get(RTA_DST)
                    if oif and dst:
                        l = links.get(struct.unpack('=I', oif)[0])
                        if l:
                            r = f'{socket.inet_ntoa(dst)}/{dlen}'
                            (l.routes.add if ty == RTM_NEWROUTE else l.routes.discard)(r)
                            check(l, t)
            off = (end + 3) & ~3

    inbuf = [b'']
    adding = {}  # name -> creation time (0 while the request is in flight)
    ctl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    ctl.bind((0, 0))
    ns_fds = {}

    def add(name, mac, peer, peer_ns):
        fd = ns_fds.get(peer_ns)
        if fd is None:
            fd = ns_fds[peer_ns] = os.open(f'/run/netns/{peer_ns}', os.O_RDONLY)
        seq[0] += 1
        adding[name] = 0
        req = veth_request(seq[0], name, mac, peer, fd)
        # The time the request is sent: the link comes into existence between
        # this and the ack; a clock read after the ack could be late (this
        # process preempted by the subject's own work) and shorten latencies.
        t = time.monotonic_ns()
        ctl.send(req)
        while True:
            reply = ctl.recv(65536)
            ack_ns = time.monotonic_ns() - t
            ln, ty, _f, sq, _p = struct.unpack_from('=IHHII', reply, 0)
            if ty == NLMSG_ERROR and sq == seq[0]:
                err = struct.unpack_from('=i', reply, 16)[0]
                break
        if err:
            adding.pop(name, None)
            emit({'ev': 'error', 'name': name, 'errno': -err})
            return
        adding[name] = t
        emit({'ev': 'ack', 'name': name, 'ns': ack_ns})
        # The link's first RTM_NEWLINK may already have been read (it is
        # sent before the ack): then it is waiting for its creation time.
        for l in links.values():
            if l.name == name and not l.emitted:
                l.created = t
                l.emitted = True
                emit({'ev': 'created', 'name': name, 'ifindex': l.ifindex, 't': t})

    emit({'ev': 'ready'})
    p = select.poll()
    p.register(s, select.POLLIN)
    p.register(sys.stdin, select.POLLIN | select.POLLHUP)
    while True:
        polling = [l for l in links.values() if l.polling and not l.done]
        timeout = a.poll_ms if polling else 1000
        for fd, ev in p.poll(timeout):
            if fd == sys.stdin.fileno():
                data = os.read(fd, 65536)
                if not data:  # driver closed our stdin: stop
                    return
                inbuf[0] += data
                while b'\n' in inbuf[0]:
                    line, inbuf[0] = inbuf[0].split(b'\n', 1)
                    cmd = line.decode().split()
                    if cmd and cmd[0] == 'add':
                        add(*cmd[1:])
                continue
        while True:
            try:
                buf = s.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    emit({'ev': 'overrun', 't': time.monotonic_ns()})
                    continue
                raise
            handle(buf, time.monotonic_ns())
        now = time.monotonic_ns()
        pending = [l for l in links.values() if l.polling and not l.done]
        for l in pending:
            if now - l.poll_started > a.xdp_wait_s * 1e9:
                l.done = True
                emit({'ev': 'timeout', 'name': l.name, 'ifindex': l.ifindex, 't': now, 'xdp': False})
        # At most POLL_BATCH requests per tick, round robin: a burst of 1000
        # pending links must not turn the observer into the bottleneck.
        pending = [l for l in pending if not l.done]
        if pending:
            start = rr[0] % len(pending)
            for l in (pending[start:] + pending[:start])[:POLL_BATCH]:
                getlink(l.ifindex)
            rr[0] = start + POLL_BATCH


if __name__ == '__main__':
    main()
