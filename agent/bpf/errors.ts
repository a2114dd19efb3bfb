// BpfError: what every failing libbpf / bpf() call in the agent turns into.
// It names the call, the errno (number and name), the link when one is
// involved, and a hint saying what a person can do about it.
import { errnoName } from '../core/errno.js';

// The names come from core/errno.ts (one table for the whole agent); re-exported
// here because libbpf.ts and the tests know errnoName by this address.
export { errnoName } from '../core/errno.js';

export interface LinkInfo { ifindex: number; name?: string }

export class BpfError extends Error {
  readonly call: string;
  readonly errno: number;
  readonly code: string;
  readonly link: LinkInfo | undefined;
  readonly hint: string | undefined;

  constructor(call: string, errno: number, opts: { link?: LinkInfo; hint?: string; detail?: string } = {}) {
    const n = Math.abs(errno);
    const code = errnoName(n);
    const where = opts.link ? (opts.link.name ? ` on ${opts.link.name} (ifindex ${opts.link.ifindex})` : ` on ifindex ${opts.link.ifindex}`) : '';
    const detail = opts.detail ? ` ${opts.detail}` : '';
    const hint = opts.hint ? `: ${opts.hint}` : '';
    super(`${call}${where} failed with ${code} (${n})${detail}${hint}`);
    this.name = 'BpfError';
    this.call = call;
    this.errno = n;
    this.code = code;
    this.link = opts.link;
    this.hint = opts.hint;
  }
}
