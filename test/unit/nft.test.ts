import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { renderRuleset, setDelta } from '../../agent/nft.js';

test('the ruleset: one table of ours, replaced atomically, forward chain failing closed', () => {
  const r = renderRuleset('netagent', { peers: [], uplinks: ['eth0'], clients: ['vm1', 'vm2'] });
  assert.ok(r.startsWith('add table inet netagent\ndelete table inet netagent\ntable inet netagent {'));
  assert.match(r, /set clients \{\n    type ifname\n    elements = \{ "vm1", "vm2" \}/);
  assert.match(r, /hook forward priority filter; policy drop;/);
  assert.match(r, /ct state established,related accept/);
  assert.match(r, /iifname @clients oifname @uplinks accept/);
  assert.match(r, /iifname @clients oifname @uplinks counter masquerade/);
  assert.not.match(renderRuleset('t', { peers: [], uplinks: [], clients: [] }), /elements/);
});

test('names nft cannot quote safely are left out (fail closed)', () => {
  const r = renderRuleset('t', { peers: [], uplinks: ['eth0'], clients: ['ok1', 'bad"x', 'a b'] });
  assert.match(r, /elements = \{ "ok1" \}/);
});

test('set deltas: only what changed, deletions first', () => {
  const have = { uplinks: new Set(['eth0']), clients: new Set(['vm1', 'vm2']) };
  assert.is(setDelta('t', have, { peers: [], uplinks: ['eth0'], clients: ['vm1', 'vm2'] }), '');
  assert.is(
    setDelta('t', have, { peers: [], uplinks: ['eth0'], clients: ['vm2', 'vm3'] }),
    'delete element inet t clients { "vm1" }\nadd element inet t clients { "vm3" }\n',
  );
  assert.is(setDelta('t', have, { peers: [], uplinks: [], clients: ['vm1', 'vm2'] }), 'delete element inet t uplinks { "eth0" }\n');
});

test.run();
