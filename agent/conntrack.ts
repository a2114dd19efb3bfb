// Connection tracking entries of a client that went away, deleted through
// ctnetlink (NETLINK_NETFILTER, IPCTNL_MSG_CT_DELETE) on a socket of our own:
// no `conntrack -D` process per link. One request per client: the kernel
// (5.19 and later) flushes every entry whose original source is the client's
// address when the delete carries a CTA_FILTER naming only that field. That
// covers the client's masqueraded connections and its DNS (DNAT) alike.
// Why purge at all: entries outlive their link by up to 5 days (TCP
// established), and a new client VM given the same address would inherit the
// old one's connections (replies, NAT bindings).
import { NetlinkSocket } from './netlink/socket.js';
import { attr, attrNested, attrU32, decodeError, encodeMsg, parseMessages } from './netlink/codec.js';
import * as C from './netlink/constants.js';
import { ip4ToBytes, readIp4 } from './core/ipv4.js';
import type { Logger } from './log.js';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const AF_INET = 2;
// enum ctattr_type, ctattr_tuple, ctattr_ip, ctattr_filter (linux/netfilter/nfnetlink_conntrack.h)
const CTA_TUPLE_ORIG = 1, CTA_FILTER = 25;
const CTA_TUPLE_IP = 1, CTA_IP_V4_SRC = 1;
const CTA_FILTER_ORIG_FLAGS = 1, CTA_FILTER_REPLY_FLAGS = 2;
const CTA_FILTER_FLAG_CTA_IP_SRC = 1 << 0;

/** The ctnetlink request that deletes every entry whose original source is `address` (pure; tested without root). */
export function purgeRequest(address: string, seq: number): Buffer {
  const a = readIp4(address);
  if (!a.ok) throw new Error(`conntrack: ${JSON.stringify(address)} is not an IPv4 address: ${a.error}`);
  const nfgenmsg = Buffer.from([AF_INET, 0 /* NFNETLINK_V0 */, 0, 0]);
  return encodeMsg((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, C.NLM_F_REQUEST | C.NLM_F_ACK, seq, nfgenmsg, [
    attrNested(CTA_TUPLE_ORIG, [attrNested(CTA_TUPLE_IP, [attr(CTA_IP_V4_SRC, ip4ToBytes(a.value))])]),
    // The filter's byte order: host (nla_get_u32), like every u32 the codec writes.
    attrNested(CTA_FILTER, [attrU32(CTA_FILTER_ORIG_FLAGS, CTA_FILTER_FLAG_CTA_IP_SRC), attrU32(CTA_FILTER_REPLY_FLAGS, 0)]),
  ]);
}

/** Deletes conntrack entries by client address; one socket, opened on first use. */
export class Conntrack {
  private sock: NetlinkSocket | null = null;
  private seq = 1;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  constructor(private readonly log: Logger, private readonly timeoutMs = 3000) {}

  /** Deletes every entry whose original source is `address` (the client's own address). */
  purgeSource(address: string): Promise<void> {
    const seq = this.seq++;
    let req: Buffer;
    try {
      req = purgeRequest(address, seq);
    } catch (e) {
      return Promise.reject(e);
    }
    const sock = this.socket();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new Error(`conntrack: deleting the entries of ${address}: no answer from the kernel within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(seq, { resolve, reject: (e) => reject(new Error(`conntrack: deleting the entries of ${address} failed: ${e.message}; check that nf_conntrack_netlink is loaded (modprobe nf_conntrack_netlink)`)), timer });
      const r = sock.send(req);
      if (typeof r !== 'number') this.settle(seq, new Error(r.code));
    });
  }

  close(): void {
    for (const seq of [...this.pending.keys()]) this.settle(seq, new Error('closed'));
    this.sock?.close();
    this.sock = null;
  }

  private socket(): NetlinkSocket {
    if (this.sock) return this.sock;
    const sock = NetlinkSocket.open({ protocol: NETLINK_NETFILTER, log: this.log });
    sock.unref(); // an idle socket keeps nobody alive
    sock.on('message', (buf: Buffer) => {
      for (const m of parseMessages(buf).msgs) {
        if (m.type !== C.NLMSG_ERROR) continue;
        const e = decodeError(m);
        // ENOENT: nothing matched (no entry of that client): that is success too.
        const errno = e.ok ? e.value.errno : -1;
        this.settle(m.seq, errno === 0 || errno === 2 ? null : new Error(e.ok ? `errno ${errno}${e.value.extack ? ` (${e.value.extack})` : ''}` : e.error));
      }
    });
    sock.on('error', (e: Error) => this.log.warn({ err: e.message }, 'conntrack socket error'));
    return (this.sock = sock);
  }

  private settle(seq: number, err: Error | null): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve();
  }
}
