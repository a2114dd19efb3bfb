// Hears every nftables change the kernel announces (NETLINK_NETFILTER,
// multicast group NFNLGRP_NFTABLES: `nft flush ruleset`, a deleted set
// element, a rule added to our chain, ...) and tells which ones touched our
// table and came from another program. Idle, this costs nothing: no timer,
// no listing; a foreign change costs one whole-table reload.
import { NetlinkSocket } from './netlink/socket.js';
import { parseAttrs, parseMessages, type NlMsg } from './netlink/codec.js';
import type { Logger } from './log.js';

const NETLINK_NETFILTER = 12;
const NFNLGRP_NFTABLES = 7;
const NFNL_SUBSYS_NFTABLES = 10;
const NFPROTO_INET = 1;
const NFT_MSG_NEWGEN = 15;
// NFT_MSG_NEW/DEL of tables, chains, rules, sets, set elements, objects,
// flowtables: all carry the table's name as attribute 1 (NFTA_TABLE_NAME,
// NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE, ...).
const TABLE_ATTR = 1;
const MSG_NAMES: Record<number, string> = {
  0: 'new table', 2: 'delete table', 3: 'new chain', 5: 'delete chain', 6: 'new rule', 8: 'delete rule',
  9: 'new set', 11: 'delete set', 12: 'new element', 14: 'delete element', 18: 'new object', 20: 'delete object',
};

export interface ForeignChange {
  /** What was done, e.g. 'delete element'. */
  what: string;
  /** The netlink port id of the program that did it (its pid, for most single-socket tools like nft). */
  portId: number;
}

/** Which messages of a notification datagram are foreign changes to `inet table` (pure; tested without root). */
export function foreignChanges(msgs: NlMsg[], table: string, ownPortId: number | null): ForeignChange[] {
  const out: ForeignChange[] = [];
  for (const m of msgs) {
    if (m.type >> 8 !== NFNL_SUBSYS_NFTABLES) continue;
    const kind = m.type & 0xff;
    if (kind === NFT_MSG_NEWGEN || m.payload.length < 4) continue;
    if (ownPortId !== null && m.pid === ownPortId) continue; // our own transaction
    if (m.payload[0] !== NFPROTO_INET) continue;
    const attrs = parseAttrs(m.payload.subarray(4));
    if (!attrs.ok) continue;
    const name = attrs.value.get(TABLE_ATTR);
    if (!name) continue;
    const nul = name.indexOf(0);
    if (name.subarray(0, nul < 0 ? name.length : nul).toString('utf8') !== table) continue;
    out.push({ what: MSG_NAMES[kind] ?? `message ${kind}`, portId: m.pid });
  }
  return out;
}

export class NftWatch {
  private sock: NetlinkSocket | null;

  /**
   * `onChange`: a foreign change to our table (called per datagram);
   * `onLost`: notifications were dropped (ENOBUFS): what happened is unknown.
   * Throws when the socket cannot be opened (the caller falls back to polling).
   */
  constructor(table: string, ownPortId: () => number | null, log: Logger, onChange: (c: ForeignChange[]) => void, onLost: () => void) {
    const sock = NetlinkSocket.open({ protocol: NETLINK_NETFILTER, log });
    const err = sock.addMembership(NFNLGRP_NFTABLES);
    if (err) {
      sock.close();
      throw new Error(`cannot subscribe to nftables notifications: ${err.code}`);
    }
    sock.unref();
    sock.on('message', (buf: Buffer) => {
      const changes = foreignChanges(parseMessages(buf).msgs, table, ownPortId());
      if (changes.length) onChange(changes);
    });
    sock.on('overflow', onLost);
    sock.on('error', (e: Error) => log.warn({ err: e.message }, 'nftables notification socket error'));
    this.sock = sock;
  }

  close(): void {
    this.sock?.close();
    this.sock = null;
  }
}
