import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, loadConfig, ConfigError, DEFAULT_CONFIG } from '../../agent/config.js';

test('an empty object gives the defaults: profile xdp-forwarder, skb mode', () => {
  const r = parseConfig({});
  assert.ok(r.config);
  assert.is(r.config!.profile, 'xdp-forwarder');
  assert.is(r.config!.xdpMode, 'skb');
  assert.is(r.config!.allowPublicAddresses, false);
  assert.equal(r.config!.macPrefixes, { routerLink: '02:01', interVm: '0a:b3:ec', clientLink: '02:00' });
});

test('valid values are taken', () => {
  const r = parseConfig({ profile: 'router-p2p', xdpMode: 'auto', allowPublicAddresses: true, macPrefixes: { interVm: '0A:B3' } });
  assert.is(r.config!.profile, 'router-p2p');
  assert.is(r.config!.xdpMode, 'auto');
  assert.is(r.config!.macPrefixes.interVm, '0a:b3');
  assert.is(r.config!.macPrefixes.routerLink, '02:01');
});

test('unknown keys and bad values are errors naming the key', () => {
  const r = parseConfig({ profil: 'client', xdpMode: 'fast', allowPublicAddresses: 'yes', macPrefixes: { router: '02:01', interVm: 'zz' } });
  assert.is(r.config, null);
  const all = r.problems.join('\n');
  assert.match(all, /unknown key "profil"/);
  assert.match(all, /xdpMode must be one of "skb", "native", "auto" \(got "fast"\)/);
  assert.match(all, /allowPublicAddresses must be true or false/);
  assert.match(all, /macPrefixes\.router/);
  assert.match(all, /macPrefixes\.interVm must be a MAC prefix/);
  assert.is(r.problems.length, 5);
});

test('names inherited from Object.prototype are unknown keys, not checks', () => {
  for (const raw of ['{"__proto__": 1}', '{"toString": 1}', '{"constructor": "x"}', '{"hasOwnProperty": true}', '{"macPrefixes": {"toString": "02"}}']) {
    const r = parseConfig(JSON.parse(raw));
    assert.is(r.config, null, raw);
    assert.match(r.problems.join(), /unknown key/, raw);
  }
});

test('non-objects are refused', () => {
  for (const bad of [null, 3, 'x', [1]]) assert.is(parseConfig(bad).config, null);
});

test('clientAddresses takes MAC -> CIDR and names a bad entry', () => {
  const ok = parseConfig({ profile: 'client', clientAddresses: { '02:00:00:00:00:07': '100.64.0.7/31' } });
  assert.equal(ok.config!.clientAddresses, { '02:00:00:00:00:07': '100.64.0.7/31' });
  const bad = parseConfig({ clientAddresses: { '02:00:00:00:00:07': '100.64.0.7' } });
  assert.match(bad.problems.join(), /clientAddresses\.02:00:00:00:00:07/);
});

test('clientAddresses: a leading-zero octet is refused at load time, naming the key and the octet', () => {
  // Netlink would refuse this address at run time; the config must refuse it first.
  const r = parseConfig({ profile: 'client', clientAddresses: { '02:00:00:00:00:07': '100.064.0.7/31' } });
  assert.is(r.config, null);
  assert.is(r.problems.length, 1);
  assert.match(r.problems[0]!, /^clientAddresses\.02:00:00:00:00:07 must be an IPv4 CIDR/);
  assert.match(r.problems[0]!, /octet "064" has a leading zero/);
});

test('clientAddresses: MAC keys are normalised, and the same MAC twice is an error', () => {
  const ok = parseConfig({ clientAddresses: { '02-00-00-00-00-0A': '100.64.0.10/31' } });
  assert.equal(ok.config!.clientAddresses, { '02:00:00:00:00:0a': '100.64.0.10/31' });
  const twice = parseConfig({ clientAddresses: { '02:00:00:00:00:0a': '100.64.0.10/31', '02:00:00:00:00:0A': '100.64.0.12/31' } });
  assert.match(twice.problems.join(), /02:00:00:00:00:0a is given twice/);
  const notMac = parseConfig({ clientAddresses: { '2:0:0:0:0:a': '100.64.0.10/31' } });
  assert.match(notMac.problems.join(), /key "2:0:0:0:0:a" is not a MAC address/);
});

test('loadConfig: a missing file means the defaults; a broken one is a ConfigError naming the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'netagent-cfg-'));
  const missing = loadConfig(join(dir, 'nope.json'));
  assert.is(missing.fromFile, false);
  assert.is(missing.config.profile, DEFAULT_CONFIG.profile);
  const f = join(dir, 'c.json');
  writeFileSync(f, '{ "profile": ');
  assert.throws(() => loadConfig(f), (e: unknown) => e instanceof ConfigError && /c\.json: not valid JSON/.test((e as Error).message));
  writeFileSync(f, '{ "profile": "bogus" }');
  assert.throws(() => loadConfig(f), (e: unknown) => e instanceof ConfigError && /profile must be one of/.test((e as Error).message));
  writeFileSync(f, '{ "profile": "router-routed" }');
  try {
    assert.is(loadConfig(f).config.profile, 'router-routed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
