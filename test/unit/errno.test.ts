import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { errnoName, errnoNumber, errnoText } from '../../agent/core/errno.js';
import { errnoName as bpfErrnoName } from '../../agent/bpf/errors.js';
import { NetlinkError } from '../../agent/netlink/rtnl.js';
import { loadAddon } from '../../agent/netlink/socket.js';

test('names are glibc\'s, for plain, negative, aliased and kernel-internal numbers', () => {
  assert.is(errnoName(22), 'EINVAL');
  assert.is(errnoName(-22), 'EINVAL');
  assert.is(errnoName(95), 'EOPNOTSUPP', 'not libuv\'s ENOTSUP');
  assert.is(errnoName(11), 'EAGAIN', 'not EWOULDBLOCK');
  assert.is(errnoName(35), 'EDEADLK');
  assert.is(errnoName(105), 'ENOBUFS');
  assert.is(errnoName(121), 'EREMOTEIO', 'missing from os.constants.errno');
  assert.is(errnoName(524), 'ENOTSUPP');
  assert.is(errnoName(4007), 'LIBBPF_ERRNO__VERIFY');
  assert.is(errnoName(9999), 'E9999');
});

test('numbers by name, texts by number', () => {
  assert.is(errnoNumber('ETIMEDOUT'), 110);
  assert.is(errnoNumber('ENOTSUPP'), 524);
  assert.is(errnoNumber('EWOULDBLOCK'), 11);
  assert.throws(() => errnoNumber('EFOO'), /EFOO is not an errno name/);
  assert.is(errnoText(22), 'invalid argument');
  assert.is(errnoText(9999), 'errno 9999');
});

test('BpfError and NetlinkError name an errno the same way', () => {
  for (const n of [1, 11, 22, 95, 105, 110, 524]) {
    assert.is(bpfErrnoName(n), errnoName(n));
    assert.is(new NetlinkError('test', n).code, errnoName(n), String(n));
  }
});

test('the netlink addon (glibc strerrorname_np) names every errno it knows as we do', () => {
  const addon = loadAddon();
  let compared = 0;
  for (let n = 1; n <= 200; n++) {
    const theirs = addon.errnoName(n);
    if (theirs === 'EUNKNOWN') continue; // glibc has no name: we say E<n>
    assert.is(errnoName(n), theirs, String(n));
    compared++;
  }
  assert.ok(compared > 120, `compared ${compared}`);
});

test.run();
