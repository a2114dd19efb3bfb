import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { classifyMac, formatMac, macHasPrefix, nameMatches, normalizeMac, parseHwAddr, parseMac } from '../../agent/core/mac.js';
import { decodeInterVm, decodeRoutedClient, parseCidr4, parseIp4, formatIp4, peer31, inNet4, SHARED_SPACE } from '../../agent/core/addr.js';
import { DEFAULT_CONFIG } from '../../agent/config.js';

const P = DEFAULT_CONFIG.macPrefixes;

test('MACs parse case-insensitively and normalise to lower case', () => {
  assert.is(normalizeMac('0A:B3:EC:40:00:02'), '0a:b3:ec:40:00:02');
  assert.is(normalizeMac('02-01-00-00-00-01'), '02:01:00:00:00:01');
  assert.is(parseMac('02:01:00:00:00'), null);
  assert.is(parseMac('02:01:00:00:00:zz'), null);
  assert.is(parseMac(''), null);
  assert.is(parseMac('02:01:00:00:00:01:02'), null);
  assert.is(parseMac('2:1:0:0:0:1'), null, 'octets are two digits');
  assert.is(parseMac('02:01-00:00:00:01'), null, 'one separator throughout');
  assert.is(parseMac(' 02:01:00:00:00:01'), null, 'no whitespace');
});

test('one formatter for every hardware address: lower case, colons, any length', () => {
  assert.is(formatMac(Uint8Array.from([0x0a, 0xb3, 0xec, 0x40, 0x00, 0x02])), '0a:b3:ec:40:00:02');
  assert.is(formatMac(Uint8Array.from([10, 0, 0, 1])), '0a:00:00:01');
  assert.equal(parseHwAddr('0a:00:00:01'), Uint8Array.from([10, 0, 0, 1]));
  assert.is(parseHwAddr('0a:00:00:1'), null);
});

test('the spec table: each MAC gets its class', () => {
  assert.is(classifyMac('02:01:00:00:00:01', P), 'router-link');
  assert.is(classifyMac('02:01:AB:CD:00:07', P), 'router-link');
  assert.is(classifyMac('0a:b3:ec:40:00:02', P), 'inter-vm');
  assert.is(classifyMac('0A:B3:EC:40:00:02', P), 'inter-vm');
  assert.is(classifyMac('02:00:00:00:00:09', P), 'client-link');
  assert.is(classifyMac('00:00:00:00:00:00', P), 'loopback');
  assert.is(classifyMac('52:54:00:12:34:56', P), 'physical');
  assert.is(classifyMac('02:10:00:00:00:01', P), 'physical', '02:10 is not 02:01');
  assert.is(classifyMac('', P), 'none');
  assert.is(classifyMac('garbage', P), 'none');
});

test('prefixes are configuration, matched on octet boundaries', () => {
  const custom = { routerLink: '06:01', interVm: '0A:B3', clientLink: '06:00' };
  assert.is(classifyMac('06:01:00:00:00:01', custom), 'router-link');
  assert.is(classifyMac('02:01:00:00:00:01', custom), 'physical');
  assert.is(classifyMac('0a:b3:00:00:00:01', custom), 'inter-vm');
  assert.ok(macHasPrefix('02:01:00:00:00:01', '02:01'));
  assert.ok(macHasPrefix('02:01:00:00:00:01', '02-01'));
  // Whole octets of two digits, as the config accepts them: no other spelling matches.
  assert.not.ok(macHasPrefix('02:01:00:00:00:01', '2:1'));
  assert.not.ok(macHasPrefix('02:01:00:00:00:01', '02:0'));
  assert.not.ok(macHasPrefix('02:01:00:00:00:01', ''));
});

test('interface name patterns', () => {
  assert.ok(nameMatches('eth0', ['eth0']));
  assert.ok(nameMatches('eth12', ['eth*']));
  assert.not.ok(nameMatches('veth1', ['eth*']));
  assert.ok(nameMatches('a.b', ['a.b']));
  assert.not.ok(nameMatches('axb', ['a.b']));
});

test('IPv4 math', () => {
  assert.is(formatIp4(parseIp4('100.64.0.2')!), '100.64.0.2');
  assert.is(parseIp4('256.0.0.1'), null);
  assert.is(parseIp4('1.2.3'), null);
  assert.equal(parseCidr4('10.0.0.0/8'), { addr: parseIp4('10.0.0.0'), len: 8 });
  assert.is(parseCidr4('10.0.0.0/33'), null);
  assert.is(parseCidr4('10.0.0.0/8/1'), null);
  assert.is(formatIp4(peer31(parseIp4('100.64.0.2')!)), '100.64.0.3');
  assert.is(formatIp4(peer31(parseIp4('100.64.0.3')!)), '100.64.0.2');
  assert.ok(inNet4(parseIp4('100.127.255.255')!, SHARED_SPACE));
  assert.not.ok(inNet4(parseIp4('100.128.0.0')!, SHARED_SPACE));
  assert.not.ok(inNet4(parseIp4('100.63.255.255')!, SHARED_SPACE));
});

test('0a:b3:ec MACs decode to 100.AA.BB.CC/31 (hex octets)', () => {
  const d = decodeInterVm(parseMac('0a:b3:ec:40:00:02')!, false);
  assert.equal(d.ok && d.cidr, '100.64.0.2/31');
  const hi = decodeInterVm(parseMac('0a:b3:ec:7f:ff:ff')!, false);
  assert.equal(hi.ok && hi.cidr, '100.127.255.255/31');
});

test('a MAC that decodes outside 100.64.0.0/10 is refused unless allowed', () => {
  const d = decodeInterVm(parseMac('0a:b3:ec:01:02:03')!, false);
  assert.not.ok(d.ok);
  if (!d.ok) {
    assert.match(d.error, /100\.1\.2\.3/);
    assert.match(d.error, /100\.64\.0\.0\/10/);
    assert.match(d.error, /allowPublicAddresses/);
  }
  const edge = decodeInterVm(parseMac('0a:b3:ec:80:00:00')!, false);
  assert.not.ok(edge.ok, '100.128.0.0 is just outside');
  const allowed = decodeInterVm(parseMac('0a:b3:ec:01:02:03')!, true);
  assert.equal(allowed.ok && allowed.cidr, '100.1.2.3/31');
});

test('02:01:XX:XX:AA:BB decodes to the routed client 100.64.AA.BB', () => {
  const d = decodeRoutedClient(parseMac('02:01:de:ad:01:0a')!);
  assert.equal(d.ok && d.cidr, '100.64.1.10/32');
});

test.run();
