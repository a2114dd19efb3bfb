// One IPv4 parser for config, rules and netlink: what one accepts, all accept.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatCidr4, formatIp4, isNetwork4, parseCidr4, parseIp4, readCidr4, readIp4 } from '../../agent/core/ipv4.js';
import { parseConfig } from '../../agent/config.js';
import { parseCidr, parseIp } from '../../agent/netlink/codec.js';

const GOOD_IPS = ['0.0.0.0', '100.64.0.7', '255.255.255.255', '10.0.0.1', '1.2.3.4'];
const BAD_IPS = [
  '100.064.0.7', '01.2.3.4', '1.2.3.00', '256.0.0.1', '1.2.3.999', '1.2.3', '1.2.3.4.5', '', '1..2.3',
  ' 1.2.3.4', '1.2.3.4 ', '0x1.2.3.4', '1.2.3.+4', '1.2.3.-4', '1e1.2.3.4', '１.2.3.4', '1.2.3.4/32',
];

test('dotted quads: decimal octets 0..255 without leading zeros, nothing else', () => {
  for (const ip of GOOD_IPS) assert.is(formatIp4(parseIp4(ip)!), ip, ip);
  for (const ip of BAD_IPS) assert.is(parseIp4(ip), null, JSON.stringify(ip));
  assert.is(parseIp4('100.64.0.7'), 0x64400007);
});

test('the reason names the octet', () => {
  const r = readIp4('100.064.0.7');
  assert.ok(!r.ok && /octet "064" has a leading zero/.test(r.error), JSON.stringify(r));
  const big = readIp4('1.2.3.256');
  assert.ok(!big.ok && /octet 256 is above 255/.test(big.error));
});

test('CIDRs: prefix 0..32 without leading zeros; host bits may be set; bare address is /32 unless required', () => {
  assert.equal(parseCidr4('100.64.0.7/31'), { addr: 0x64400007, len: 31 });
  assert.equal(parseCidr4('0.0.0.0/0'), { addr: 0, len: 0 });
  assert.equal(parseCidr4('10.0.0.1'), { addr: 0x0a000001, len: 32 });
  for (const c of ['10.0.0.0/33', '10.0.0.0/08', '10.0.0.0/', '10.0.0.0/8/1', '10.0.0.0/-1', '10.0.0.0/ 8', '/8', '100.064.0.7/31']) {
    assert.is(parseCidr4(c), null, c);
  }
  const bare = readCidr4('100.64.0.7', { prefix: 'required' });
  assert.equal(bare, { ok: false, error: 'no prefix length' });
  assert.is(formatCidr4(parseCidr4('100.64.0.7/31')!), '100.64.0.7/31');
  assert.not.ok(isNetwork4(parseCidr4('100.64.0.7/31')!));
  assert.ok(isNetwork4(parseCidr4('100.64.0.6/31')!));
  assert.ok(isNetwork4(parseCidr4('0.0.0.0/0')!));
});

test('config, rules and netlink codec agree on every IPv4 CIDR (100.064.0.7/31 was accepted by two of three)', () => {
  const cases = [
    ...GOOD_IPS.map((ip) => `${ip}/31`), ...BAD_IPS.map((ip) => `${ip}/31`),
    '100.64.0.7/32', '100.64.0.7/0', '100.64.0.7/33', '100.64.0.7/031', '100.64.0.7/',
  ];
  for (const cidr of cases) {
    const core = parseCidr4(cidr) !== null;
    const codec = parseCidr(cidr).ok;
    const config = parseConfig({ clientAddresses: { '02:00:00:00:00:07': cidr } }).config !== null;
    assert.is(codec, core, `codec vs core on ${JSON.stringify(cidr)}`);
    assert.is(config, core, `config vs core on ${JSON.stringify(cidr)}`);
  }
  for (const ip of [...GOOD_IPS, ...BAD_IPS]) assert.is(parseIp(ip) !== null, parseIp4(ip) !== null, ip);
});

test('the codec still reads IPv4 inside IPv6 with the same rules', () => {
  assert.ok(parseIp('::ffff:1.2.3.4'));
  assert.is(parseIp('::ffff:1.2.3.04'), null);
  assert.is(parseIp('::ffff:1.2.3.256'), null);
});

test.run();
