import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseCounters, renderRuleset, setDelta, setElements, type AppliedSets } from '../../agent/nft.js';
import { foreignChanges } from '../../agent/nftwatch.js';
import { purgeRequest } from '../../agent/conntrack.js';
import { attrStr, encodeAttrs, parseMessages } from '../../agent/netlink/codec.js';

const peers = [
  { name: 'vm1', address: '100.64.0.3', gateway: '100.64.0.2' },
  { name: 'vm2', address: '100.64.0.5', gateway: '100.64.0.4' },
];
const G = { peers, uplinks: ['eth0'], clients: ['vm1', 'vm2'] };
const applied = (els: Record<string, string[]>) => Object.fromEntries(Object.entries(els).map(([k, v]) => [k, new Set(v)])) as AppliedSets;

test('the ruleset: one table of ours, replaced atomically, forward chain failing closed', () => {
  const r = renderRuleset('netagent', G, ['192.0.2.53']);
  assert.ok(r.startsWith('add table inet netagent\ndelete table inet netagent\ntable inet netagent {'));
  assert.match(r, /set clients \{\n    type ifname\n    elements = \{ "vm1", "vm2" \}/);
  assert.match(r, /hook forward priority filter; policy drop;/);
  assert.match(r, /ct state established,related jump accounted/);
  assert.match(r, /iifname @clients oifname @uplinks jump accounted/);
  assert.match(r, /iifname @clients oifname @uplinks counter masquerade/);
  assert.not.match(renderRuleset('t', { peers: [], uplinks: [], clients: [] }), /elements/);
});

test('anti-spoofing, input filter and DNS: each client link with its own address and gateway', () => {
  const r = renderRuleset('netagent', G, ['192.0.2.53', '192.0.2.54']);
  assert.match(r, /set sources \{\n    type ifname \. ipv4_addr\n    elements = \{ "vm1" \. 100\.64\.0\.3, "vm2" \. 100\.64\.0\.5 \}/);
  assert.match(r, /set gateways \{\n    type ifname \. ipv4_addr\n    elements = \{ "vm1" \. 100\.64\.0\.2, "vm2" \. 100\.64\.0\.4 \}/);
  assert.match(r, /map dns \{\n    type inet_service : ipv4_addr\n    elements = \{ 53 : 192\.0\.2\.53 \}/, 'one resolver: the first');
  assert.match(r, /hook prerouting priority raw;[^}]*iifname \. ip saddr @sources accept[^}]*iifname @spoofed drop/);
  assert.match(r, /chain client_in \{[^}]*icmp type echo-request accept[\s\S]*?iifname @to_netvm drop comment "[^"]*"\n    drop\n/);
  assert.match(r, /chain uplink_in \{\n    ct state established,related accept\n    udp sport 67 udp dport 68 accept/);
  assert.match(r, /set spoofed \{\n    type ifname\n    counter\n    elements = \{ "vm1", "vm2" \}/);
  assert.not.match(renderRuleset('t', G), /53 :/, 'no resolver known: no DNAT target');
});

test('a client without a valid address is left out of sources (all it sends is dropped as spoofed)', () => {
  const els = setElements({ peers: [{ name: 'vm1', address: 'nope', gateway: '100.64.0.2' }], uplinks: [], clients: ['vm1'] });
  assert.equal(els.sources, []);
  assert.equal(els.spoofed, ['"vm1"']);
});

test('names nft cannot quote safely are left out (fail closed)', () => {
  const r = renderRuleset('t', { peers: [], uplinks: ['eth0'], clients: ['ok1', 'bad"x', 'a b'] });
  assert.match(r, /set clients \{\n    type ifname\n    elements = \{ "ok1" \}/);
});

test('set deltas: only what changed, deletions first, map elements deleted by key', () => {
  const have = applied(setElements(G, ['192.0.2.53']));
  assert.is(setDelta('t', have, setElements(G, ['192.0.2.53'])), '');
  const d = setDelta('t', have, setElements({ peers: [peers[1]!, { name: 'vm3', address: '100.64.0.7', gateway: '100.64.0.6' }], uplinks: ['eth0'], clients: ['vm2', 'vm3'] }, ['192.0.2.99']));
  const lines = d.trim().split('\n');
  assert.ok(lines.findIndex((l) => l.startsWith('add')) > lines.map((l) => l.startsWith("delete")).lastIndexOf(true));
  assert.ok(lines.includes('delete element inet t sources { "vm1" . 100.64.0.3 }'));
  assert.ok(lines.includes('add element inet t sources { "vm3" . 100.64.0.7 }'));
  assert.ok(lines.includes('delete element inet t dns { 53 }'));
  assert.ok(lines.includes('add element inet t dns { 53 : 192.0.2.99 }'));
  assert.ok(lines.includes('delete element inet t to_netvm { "vm1" }'));
});

test('per-client counters from `list sets` JSON', () => {
  const json = JSON.stringify({ nftables: [
    { metainfo: {} },
    { set: { name: 'clients', elem: ['vm1'] } },
    { set: { name: 'tx', elem: [{ elem: { val: 'vm1', counter: { packets: 3, bytes: 300 } } }] } },
    { set: { name: 'rx', elem: [{ elem: { val: 'vm1', counter: { packets: 2, bytes: 200 } } }] } },
    { set: { name: 'spoofed', elem: [{ elem: { val: 'vm1', counter: { packets: 7, bytes: 700 } } }] } },
    { set: { name: 'to_netvm', elem: [{ elem: { val: 'vm1', counter: { packets: 1, bytes: 60 } } }] } },
  ] });
  assert.equal(parseCounters(json).get('vm1'), { tx: { packets: 3, bytes: 300 }, rx: { packets: 2, bytes: 200 }, dropped: { spoofed: 7, toClient: 0, toNetVm: 1 } });
});

test('nftables notifications: foreign changes to our table, not ours, not other tables', () => {
  const msg = (kind: number, family: number, table: string, pid: number) => {
    const body = Buffer.concat([Buffer.from([family, 0, 0, 0]), encodeAttrs([attrStr(1, table)])]);
    const h = Buffer.alloc(16);
    h.writeUInt32LE(16 + body.length, 0);
    h.writeUInt16LE((10 << 8) | kind, 4);
    h.writeUInt32LE(pid, 12);
    return Buffer.concat([h, body]);
  };
  const buf = Buffer.concat([msg(14, 1, 'netagent', 999), msg(14, 1, 'netagent', 42), msg(2, 1, 'other', 999), msg(2, 2, 'netagent', 999), msg(15, 1, 'netagent', 999)]);
  assert.equal(foreignChanges(parseMessages(buf).msgs, 'netagent', 42), [{ what: 'delete element', portId: 999 }]);
});

test('conntrack purge: one CT_DELETE filtered by original source address', () => {
  const b = purgeRequest('100.64.0.3', 7);
  assert.is(b.readUInt16LE(4), 0x102, 'IPCTNL_MSG_CT_DELETE of ctnetlink');
  assert.is(b.readUInt32LE(8), 7);
  assert.is(b[16], 2, 'AF_INET');
  assert.ok(b.includes(Buffer.from([100, 64, 0, 3])));
  assert.throws(() => purgeRequest('100.64.0', 1), /not an IPv4 address/);
});

test.run();
