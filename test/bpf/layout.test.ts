// The koffi struct layouts in agent/bpf/libbpf.ts must match what a C
// compiler makes of the installed headers (/usr/include/bpf = libbpf 1.1.2,
// linux/bpf.h), and COUNTER_NAMES must mirror enum xdp_counter in bpf/common.h.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { EXPECTED_LAYOUT, KOFFI_TYPES, layoutMismatches } from '../../agent/bpf/libbpf.js';
import { COUNTER_NAMES } from '../../agent/bpf/forwarder.js';
import { ROOT, run } from '../lib/sandbox.js';

type Layout = Record<string, { size: number; offsets: Record<string, number> }>;

/** Compiles and runs a C program printing sizeof/offsetof for every struct and field we declare. */
function cLayout(): Layout {
  const dir = mkdtempSync(join(tmpdir(), 'netagent-layout-'));
  try {
    const lines: string[] = [];
    for (const [name, exp] of Object.entries(EXPECTED_LAYOUT)) {
      const fields = Object.keys(exp.offsets)
        .map((f) => `printf("\\"${f}\\":%zu,", offsetof(struct ${name}, ${f}));`)
        .join(' ');
      lines.push(`printf("\\"${name}\\":{\\"size\\":%zu,\\"offsets\\":{", sizeof(struct ${name})); ${fields} printf("\\"_\\":0}},");`);
    }
    const src = `#include <stddef.h>
#include <stdio.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
int main(void) { printf("{"); ${lines.join('\n')} printf("\\"_\\":0}\\n"); return 0; }
`;
    writeFileSync(join(dir, 'layout.c'), src);
    run('gcc', ['-Wall', '-Werror', '-o', join(dir, 'layout'), join(dir, 'layout.c')]);
    const out = JSON.parse(run(join(dir, 'layout'), [])) as Record<string, unknown>;
    delete out._;
    for (const v of Object.values(out) as { offsets: Record<string, number> }[]) delete v.offsets._;
    return out as Layout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('koffi layouts agree with the constants (the start-up check passes)', () => {
  assert.equal(layoutMismatches(), []);
});

test('the constants agree with gcc on the installed libbpf 1.1.2 / linux headers', () => {
  const c = cLayout();
  for (const [name, exp] of Object.entries(EXPECTED_LAYOUT)) {
    const got = c[name]!;
    assert.ok(got, `gcc printed ${name}`);
    if (exp.size !== null) assert.is(got.size, exp.size, `sizeof(struct ${name})`);
    else assert.ok(got.size >= koffi.sizeof(KOFFI_TYPES[name as keyof typeof EXPECTED_LAYOUT]), `our ${name} head fits in the real struct`);
    for (const [field, off] of Object.entries(exp.offsets)) {
      assert.is(got.offsets[field], off, `offsetof(struct ${name}, ${field})`);
      assert.is(koffi.offsetof(KOFFI_TYPES[name as keyof typeof EXPECTED_LAYOUT], field), got.offsets[field], `koffi offset of ${name}.${field}`);
    }
  }
});

test('COUNTER_NAMES mirrors enum xdp_counter in bpf/common.h, in order', () => {
  const src = readFileSync(join(ROOT, 'bpf', 'common.h'), 'utf8');
  const body = /enum xdp_counter \{([\s\S]*?)\};/.exec(src)?.[1];
  assert.ok(body, 'enum xdp_counter found');
  const names = [...body!.matchAll(/^\s*CNT_([A-Z0-9_]+)/gm)].map((m) => m[1]!).filter((n) => n !== '_MAX');
  assert.equal(names.map((n) => n.toLowerCase()), [...COUNTER_NAMES]);
});

test.run();
