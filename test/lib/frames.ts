// Ethernet / 802.1Q frame builders for the XDP tests, a seeded PRNG, and a
// reference model of what `physical` and `router` must do with a frame.
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
/** IEEE "local experimental" ethertype: nothing else on a test link uses it, so captures filter on it. */
export const ETH_P_TEST = 0x88b5;

export function mac(s: string): Buffer {
  const b = Buffer.from(s.split(':').map((x) => parseInt(x, 16)));
  if (b.length !== 6) throw new Error(`bad MAC ${s}`);
  return b;
}

/** dst, src, ethertype, payload (a Buffer, or a length filled with a counting pattern). */
export function ethFrame(opts: { dst?: string; src?: string; type?: number; payload?: Buffer | number } = {}): Buffer {
  const hdr = Buffer.alloc(14);
  mac(opts.dst ?? '02:00:00:00:00:02').copy(hdr, 0);
  mac(opts.src ?? '02:00:00:00:00:01').copy(hdr, 6);
  hdr.writeUInt16BE(opts.type ?? ETH_P_TEST, 12);
  const p = opts.payload ?? 46;
  const payload = typeof p === 'number' ? Buffer.from(Array.from({ length: p }, (_, i) => i & 0xff)) : p;
  return Buffer.concat([hdr, payload]);
}

/** The frame with one tag (tpid, tci) inserted after the MAC addresses. */
export function withTag(frame: Buffer, tci: number, tpid = ETH_P_8021Q): Buffer {
  const tag = Buffer.alloc(4);
  tag.writeUInt16BE(tpid, 0);
  tag.writeUInt16BE(tci & 0xffff, 2);
  return Buffer.concat([frame.subarray(0, 12), tag, frame.subarray(12)]);
}

/** The frame with its outer tag (4 bytes after the MACs) removed. */
export function withoutTag(frame: Buffer): Buffer {
  return Buffer.concat([frame.subarray(0, 12), frame.subarray(16)]);
}

export const hex = (b: Buffer): string => b.toString('hex');

/** mulberry32: small, fast, deterministic; good enough to pick test frames. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

export type Verdict = 'drop' | 'redirect';
export interface Expected { verdict: Verdict; counter: string; out?: Buffer }

/** What `physical` must do (SPEC + bpf/physical.c), for frames the kernel accepts (>= 14 bytes). */
export function expectPhysical(frame: Buffer, ingress: number, routerIfaceSet: boolean): Expected {
  if (frame.length < 14) return { verdict: 'drop', counter: 'physical_drop_short' };
  if (ingress < 1 || ingress > 4095) return { verdict: 'drop', counter: 'physical_drop_ifindex' };
  if (!routerIfaceSet) return { verdict: 'drop', counter: 'physical_drop_no_router' };
  return { verdict: 'redirect', counter: 'physical_forwarded', out: withTag(frame, ingress) };
}

/** What `router` must do with a frame arriving on the router link `ingress`, given the allowlist. */
export function expectRouter(frame: Buffer, ingress: number, allowed: ReadonlySet<number>): Expected {
  if (frame.length < 14) return { verdict: 'drop', counter: 'router_drop_short' };
  const tpid = frame.readUInt16BE(12);
  if (tpid !== ETH_P_8021Q && tpid !== ETH_P_8021AD) return { verdict: 'drop', counter: 'router_drop_untagged' };
  if (frame.length < 18) return { verdict: 'drop', counter: 'router_drop_short' };
  const tci = frame.readUInt16BE(14);
  if (tci & 0xf000) return { verdict: 'drop', counter: 'router_drop_pcp_dei' };
  const vid = tci & 0xfff;
  if (vid === ingress) return { verdict: 'drop', counter: 'router_drop_vid_self' };
  if (!allowed.has(vid)) return { verdict: 'drop', counter: 'router_drop_vid_unknown' };
  return { verdict: 'redirect', counter: 'router_forwarded', out: withoutTag(frame) };
}
