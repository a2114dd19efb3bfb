// The rtnetlink codec: what it encodes decodes back to the same thing, and
// bytes that are not a well-formed message (truncated, lying lengths, random
// garbage) come back as error values: nothing thrown, nothing looping.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as C from '../../agent/netlink/constants.js';
import {
  attr, attrStr, attrU32, decodeAddr, decodeError, decodeLink, decodeRoute, encodeAddrPayload, encodeAttrs,
  encodeLinkPayload, encodeMsg, encodeRoutePayload, formatIp, parseAttrs, parseCidr, parseIp, parseMessages,
  type AddrMsg, type LinkMsg, type NlMsg, type RouteMsg,
} from '../../agent/netlink/codec.js';

const link: LinkMsg = {
  ifindex: 42, name: 'veth-router', mac: '02:01:0a:0b:0c:0d', flags: C.IFF_UP | C.IFF_RUNNING | C.IFF_PROMISC | C.IFF_BROADCAST,
  up: true, running: true, promisc: true, mtu: 1500, operstate: 'UP', kind: 'veth', master: 7,
  xdp: { attached: 'skb', progId: 123, skbProgId: 123, drvProgId: 0, hwProgId: 0 },
  family: 0,
};
const addr4: AddrMsg = { ifindex: 5, family: 4, address: '100.64.0.3', prefixlen: 31, local: '100.64.0.2', scope: 0, label: 'eth0', proto: 99 };
const addr6: AddrMsg = { ifindex: 6, family: 6, address: 'fe80::1:2ff:fe03:405', prefixlen: 64, local: null, scope: 253, label: null, proto: null };
const route4: RouteMsg = {
  family: 4, dst: '100.64.1.2', dstLen: 32, oif: 9, gateway: null, table: 254, protocol: 4, scope: 253, type: 1, priority: null,
};
const route6: RouteMsg = {
  family: 6, dst: '::', dstLen: 0, oif: 3, gateway: 'fe80::1', table: 1000, protocol: 99, scope: 0, type: 1, priority: 1024,
};

/** Every message in a datagram decoded the way a consumer would; returns errors seen. Must not throw. */
function decodeEverything(buf: Buffer): string[] {
  const errors: string[] = [];
  const { msgs, error } = parseMessages(buf);
  if (error) errors.push(error);
  for (const m of msgs) {
    for (const r of [decodeLink(m.payload), decodeAddr(m.payload), decodeRoute(m.payload), decodeError(m)]) {
      if (!r.ok) errors.push(r.error);
    }
  }
  return errors;
}

function one(buf: Buffer): NlMsg {
  const { msgs, error } = parseMessages(buf);
  assert.is(error, null);
  assert.is(msgs.length, 1);
  return msgs[0]!;
}

test('link, address and route messages round-trip', () => {
  const l = decodeLink(one(encodeMsg(C.RTM_NEWLINK, 0, 1, encodeLinkPayload(link))).payload);
  assert.ok(l.ok);
  if (l.ok) assert.equal(l.value, link);
  for (const a of [addr4, addr6]) {
    const r = decodeAddr(one(encodeMsg(C.RTM_NEWADDR, 0, 2, encodeAddrPayload(a))).payload);
    assert.ok(r.ok);
    if (r.ok) assert.equal(r.value, a);
  }
  for (const rt of [route4, route6]) {
    const r = decodeRoute(one(encodeMsg(C.RTM_NEWROUTE, 0, 3, encodeRoutePayload(rt))).payload);
    assert.ok(r.ok);
    if (r.ok) assert.equal(r.value, rt);
  }
});

test('several messages in one datagram keep their order, header fields and payload bounds', () => {
  const buf = Buffer.concat([
    encodeMsg(C.RTM_NEWLINK, C.NLM_F_MULTI, 7, encodeLinkPayload(link), [], 1234),
    encodeMsg(C.RTM_NEWADDR, C.NLM_F_MULTI | C.NLM_F_DUMP_INTR, 7, encodeAddrPayload(addr4), [], 1234),
    encodeMsg(C.NLMSG_DONE, C.NLM_F_MULTI, 7, Buffer.alloc(4), [], 1234),
  ]);
  const { msgs, error } = parseMessages(buf);
  assert.is(error, null);
  assert.equal(msgs.map((m) => [m.type, m.seq, m.pid]), [[C.RTM_NEWLINK, 7, 1234], [C.RTM_NEWADDR, 7, 1234], [C.NLMSG_DONE, 7, 1234]]);
  assert.ok(msgs[1]!.flags & C.NLM_F_DUMP_INTR);
  assert.is(msgs[2]!.payload.length, 4);
});

test('xdp attachment: mode names and program ids, single and multi mode as the kernel reports them', () => {
  const xdpLink = (attrs: Array<[number, number, 'u8' | 'u32']>) =>
    Buffer.concat([
      encodeLinkPayload(link).subarray(0, C.IFINFOMSG_LEN),
      encodeAttrs([
        attrStr(C.IFLA_IFNAME, 'x'),
        { type: C.IFLA_XDP | C.NLA_F_NESTED, data: encodeAttrs(attrs.map(([t, v, w]) => (w === 'u8' ? { type: t, data: Buffer.from([v]) } : attrU32(t, v)))) },
      ]),
    ]);
  const cases: Array<[Array<[number, number, 'u8' | 'u32']>, LinkMsg['xdp']]> = [
    [[[C.IFLA_XDP_ATTACHED, 0, 'u8']], { attached: 'none', progId: 0, skbProgId: 0, drvProgId: 0, hwProgId: 0 }],
    // Single mode: the per-mode id and IFLA_XDP_PROG_ID.
    [[[C.IFLA_XDP_SKB_PROG_ID, 7, 'u32'], [C.IFLA_XDP_ATTACHED, 2, 'u8'], [C.IFLA_XDP_PROG_ID, 7, 'u32']],
      { attached: 'skb', progId: 7, skbProgId: 7, drvProgId: 0, hwProgId: 0 }],
    [[[C.IFLA_XDP_DRV_PROG_ID, 8, 'u32'], [C.IFLA_XDP_ATTACHED, 1, 'u8'], [C.IFLA_XDP_PROG_ID, 8, 'u32']],
      { attached: 'native', progId: 8, skbProgId: 0, drvProgId: 8, hwProgId: 0 }],
    // Only IFLA_XDP_PROG_ID (older kernels): the mode says whose it is.
    [[[C.IFLA_XDP_ATTACHED, 3, 'u8'], [C.IFLA_XDP_PROG_ID, 9, 'u32']], { attached: 'hw', progId: 9, skbProgId: 0, drvProgId: 0, hwProgId: 9 }],
    // Multi mode: no IFLA_XDP_PROG_ID, one id per mode.
    [[[C.IFLA_XDP_SKB_PROG_ID, 5, 'u32'], [C.IFLA_XDP_DRV_PROG_ID, 6, 'u32'], [C.IFLA_XDP_ATTACHED, 4, 'u8']],
      { attached: 'multi', progId: 6, skbProgId: 5, drvProgId: 6, hwProgId: 0 }],
    // A mode this code does not know is 'none', ids kept.
    [[[C.IFLA_XDP_ATTACHED, 77, 'u8']], { attached: 'none', progId: 0, skbProgId: 0, drvProgId: 0, hwProgId: 0 }],
  ];
  for (const [attrs, want] of cases) {
    const r = decodeLink(xdpLink(attrs));
    assert.ok(r.ok);
    if (r.ok) assert.equal(r.value.xdp, want);
  }
  const multi = { ...link, xdp: { attached: 'multi' as const, progId: 6, skbProgId: 5, drvProgId: 6, hwProgId: 0 } };
  const rt = decodeLink(encodeLinkPayload(multi));
  assert.ok(rt.ok && rt.value.xdp.skbProgId === 5 && rt.value.xdp.drvProgId === 6 && rt.value.xdp.progId === 6);
});

test('NLMSG_ERROR: acks, errno, capped request header, ext-ack message and offset', () => {
  const req = encodeMsg(C.RTM_NEWADDR, C.NLM_F_REQUEST | C.NLM_F_ACK, 99, Buffer.alloc(8));
  const errno = Buffer.alloc(4);
  errno.writeInt32LE(-17);
  const tlv = encodeAttrs([attrStr(C.NLMSGERR_ATTR_MSG, 'ipv4: Address already assigned'), attrU32(C.NLMSGERR_ATTR_OFFS, 24)]);
  const capped = one(encodeMsg(C.NLMSG_ERROR, C.NLM_F_CAPPED | C.NLM_F_ACK_TLVS, 99, Buffer.concat([errno, req.subarray(0, 16), tlv])));
  const e = decodeError(capped);
  assert.ok(e.ok);
  if (e.ok) {
    assert.is(e.value.errno, 17);
    assert.is(e.value.extack, 'ipv4: Address already assigned');
    assert.is(e.value.extackOffset, 24);
    assert.is(e.value.request?.seq, 99);
    assert.is(e.value.request?.type, C.RTM_NEWADDR);
  }
  // Uncapped: the whole request is quoted before the TLVs.
  const full = one(encodeMsg(C.NLMSG_ERROR, C.NLM_F_ACK_TLVS, 99, Buffer.concat([errno, req, tlv])));
  const f = decodeError(full);
  assert.ok(f.ok && f.value.extack === 'ipv4: Address already assigned');
  // A plain ack.
  const ack = decodeError(one(encodeMsg(C.NLMSG_ERROR, C.NLM_F_CAPPED, 99, Buffer.concat([Buffer.alloc(4), req.subarray(0, 16)]))));
  assert.ok(ack.ok && ack.value.errno === 0 && ack.value.extack === null);
  // Claims to quote more of the request than it carries.
  const lying = Buffer.from(req);
  lying.writeUInt32LE(4000, 0);
  const l = decodeError(one(encodeMsg(C.NLMSG_ERROR, C.NLM_F_ACK_TLVS, 99, Buffer.concat([errno, lying]))));
  assert.not.ok(l.ok);
});

test('lying and impossible lengths are errors, not loops or throws', () => {
  const good = encodeMsg(C.RTM_NEWLINK, 0, 1, encodeLinkPayload(link));
  // nlmsg_len of 0 (would loop forever if trusted), 15, and past the end.
  for (const len of [0, 1, 15, good.length + 1, 0xffffffff]) {
    const b = Buffer.from(good);
    b.writeUInt32LE(len, 0);
    const r = parseMessages(b);
    assert.ok(r.error !== null, `nlmsg_len ${len}`);
    assert.is(r.msgs.length, 0);
  }
  // rta_len of 0, 3, and past the end, inside an otherwise good message.
  for (const rlen of [0, 3, 0xffff]) {
    const b = Buffer.from(good);
    b.writeUInt16LE(rlen, C.NLMSG_HDRLEN + C.IFINFOMSG_LEN);
    const m = one(b);
    assert.not.ok(decodeLink(m.payload).ok, `rta_len ${rlen}`);
  }
  assert.not.ok(parseAttrs(Buffer.from([0, 0, 1, 0, 9, 9, 9, 9])).ok);
  // A nested attribute whose inner length lies.
  const nested = Buffer.concat([
    encodeLinkPayload(link).subarray(0, C.IFINFOMSG_LEN),
    encodeAttrs([attrStr(C.IFLA_IFNAME, 'x'), attr(C.IFLA_LINKINFO, Buffer.from([200, 0, 1, 0, 0x76, 0, 0, 0]))]),
  ]);
  const r = decodeLink(nested);
  assert.not.ok(r.ok);
  if (!r.ok) assert.match(r.error, /IFLA_LINKINFO/);
  // An address attribute of the wrong size for its family.
  const odd = Buffer.concat([encodeAddrPayload(addr4).subarray(0, C.IFADDRMSG_LEN), encodeAttrs([attr(C.IFA_ADDRESS, Buffer.alloc(5))])]);
  assert.not.ok(decodeAddr(odd).ok);
});

test('every truncation of a valid datagram is handled', () => {
  const dgram = Buffer.concat([
    encodeMsg(C.RTM_NEWLINK, C.NLM_F_MULTI, 1, encodeLinkPayload(link)),
    encodeMsg(C.RTM_NEWADDR, C.NLM_F_MULTI, 1, encodeAddrPayload(addr6)),
    encodeMsg(C.RTM_NEWROUTE, C.NLM_F_MULTI, 1, encodeRoutePayload(route6)),
  ]);
  for (let n = 0; n < dgram.length; n++) decodeEverything(dgram.subarray(0, n));
  // And every truncation of each payload handed straight to the decoders.
  for (const p of [encodeLinkPayload(link), encodeAddrPayload(addr4), encodeRoutePayload(route4)]) {
    for (let n = 0; n < p.length; n++) {
      decodeLink(p.subarray(0, n));
      decodeAddr(p.subarray(0, n));
      decodeRoute(p.subarray(0, n));
    }
  }
  assert.not.ok(decodeLink(Buffer.alloc(3)).ok);
  assert.not.ok(decodeRoute(Buffer.alloc(11)).ok);
});

test('thousands of random and mutated buffers: error values only, promptly', () => {
  // Deterministic PRNG (xorshift32) so a failure reproduces.
  let s = 0x9e3779b9;
  const rnd = () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s;
  };
  const seeds = [
    encodeMsg(C.RTM_NEWLINK, 0, 1, encodeLinkPayload(link)),
    encodeMsg(C.RTM_NEWADDR, 0, 1, encodeAddrPayload(addr4)),
    encodeMsg(C.RTM_NEWROUTE, 0, 1, encodeRoutePayload(route6)),
  ];
  const t0 = Date.now();
  let errors = 0;
  for (let i = 0; i < 6000; i++) {
    let buf: Buffer;
    if (i % 2 === 0) {
      buf = Buffer.alloc(rnd() % 200);
      for (let j = 0; j < buf.length; j++) buf[j] = rnd() & 0xff;
      // Often give it a plausible header so the attribute walkers see garbage too.
      if (buf.length >= 16 && i % 4 === 0) buf.writeUInt32LE(buf.length - (rnd() % 3), 0);
      if (buf.length >= 16 && i % 8 === 0) buf.writeUInt16LE([16, 20, 24, 2, 3][rnd() % 5]!, 4);
    } else {
      buf = Buffer.from(seeds[rnd() % seeds.length]!);
      const flips = 1 + (rnd() % 6);
      for (let k = 0; k < flips; k++) buf[rnd() % buf.length] = rnd() & 0xff;
    }
    try {
      errors += decodeEverything(buf).length > 0 ? 1 : 0;
    } catch (e) {
      assert.unreachable(`buffer ${buf.toString('hex')} threw: ${(e as Error).message}`);
    }
  }
  assert.ok(errors > 1000, `most garbage is reported as errors (${errors})`);
  assert.ok(Date.now() - t0 < 10_000, 'no pathological slowness');
});

test('IP addresses print as ip(8) prints them and parse back', () => {
  const cases = ['0.0.0.0', '100.64.0.1', '255.255.255.255', '::', '::1', '2001:db8::1', 'fe80::1:2ff:fe03:405',
    '1:0:0:1::1', '1:0:1:0:1:0:1:0', '2001:db8:0:0:1::', '::ffff:1.2.3.4', '::1.2.3.4', '1::'];
  for (const c of cases) {
    const p = parseIp(c);
    assert.ok(p, c);
    assert.is(formatIp(p!.bytes), c);
  }
  assert.is(formatIp(parseIp('2001:0db8:0000:0000:0000:0000:0000:0001')!.bytes), '2001:db8::1');
  assert.is(formatIp(parseIp('1:0:0:2:0:0:0:3')!.bytes), '1:0:0:2::3');
  for (const badIp of ['1.2.3', '256.1.1.1', '01.2.3.4', '1:2:3', '1::2::3', 'fe80::g', '', 'eth0', '1:2:3:4:5:6:7:8:9']) {
    assert.is(parseIp(badIp), null, badIp);
  }
  const c = parseCidr('100.64.0.1/31');
  assert.ok(c.ok && c.value.prefixlen === 31 && c.value.family === 4);
  assert.not.ok(parseCidr('100.64.0.1/33').ok);
  assert.not.ok(parseCidr('::/129').ok);
  assert.ok(parseCidr('::/0').ok);
  // IPv4 goes through core/ipv4.ts, whose reason reaches the NetlinkError.
  const lz = parseCidr('100.064.0.7/31');
  assert.ok(!lz.ok && /octet "064" has a leading zero/.test(lz.error), JSON.stringify(lz));
  assert.not.ok(parseCidr('100.64.0.7/031').ok);
});

test('link-layer addresses of any length print in one form and encode back', () => {
  for (const mac of ['02:01:0a:0b:0c:0d', '0a:00:00:01', '']) {
    const l = decodeLink(encodeLinkPayload({ ...link, mac }));
    assert.ok(l.ok && l.value.mac === mac, mac);
  }
  assert.throws(() => encodeLinkPayload({ ...link, mac: '2:1:a:b:c:d' }), /not a link-layer address/);
});

test.run();
