// The status report (`netagent status`): every link with its role, state,
// addresses, XDP program and error, from the model (what the kernel has) and
// the reconciler (what state each link is in, and why), and its traffic as
// the XDP programs counted it (effects).
//
// One rule for the last error: it is the first problem that still exists
// (shared ones first: the forwarder, nftables, a refused config, a failed
// dump; then failed links in ifindex order), and null when nothing is wrong.
// Nothing is sticky: once fixed, it is gone from the report.
import type { Config } from '../config.js';
import type { InterfaceStatus, LinkTraffic, StatusReport } from '../status.js';
import type { LinkCounters } from '../bpf/forwarder.js';
import { VERSION } from '../version.js';
import type { Model } from './model.js';
import type { Reconciler } from './reconciler.js';
import type { KernelEffects } from './effects.js';

export interface ReportSources {
  config: Config;
  model: Model;
  reconciler: Reconciler;
  effects: KernelEffects;
  ready: boolean;
  startedAt: number;
  /** A config change that was refused (the last good one runs), while the file stays that way. */
  configProblem: string | null;
}

export function buildReport(s: ReportSources): StatusReport {
  const p = s.reconciler.current();
  const traffic = s.effects.nicCounters();
  const interfaces: InterfaceStatus[] = [...s.model.allLinks()]
    .sort((a, b) => a.ifindex - b.ifindex)
    .map((l) => {
      const lp = p?.links.get(l.ifindex);
      const st = s.reconciler.status(l.ifindex);
      const x = s.model.xdpOf(l.ifindex);
      const state = st?.state ?? 'pending';
      const dhcpProblem = lp?.uplink ? s.effects.dhcp.problem(l.name) : null;
      return {
        name: l.name,
        ifindex: l.ifindex,
        mac: l.mac,
        role: lp?.role ?? 'ignored',
        state,
        addresses: s.model.addresses(l.ifindex).map((a) => a.cidr),
        xdp: x && x.program && x.mode !== 'hw' ? { program: x.program, mode: x.mode, id: x.id } : null,
        error: state === 'failed' ? st!.why : null,
        note: dhcpProblem ?? s.model.warning(l.ifindex) ?? lp?.note ?? null,
        why: st?.why ?? 'not planned yet',
        up: l.up,
        mtu: l.mtu,
        traffic: trafficOf(traffic.get(l.ifindex)),
      };
    });
  const shared = [
    s.effects.forwarderProblem(),
    s.effects.firewall.lastError,
    s.effects.resolvConf.lastError,
    s.configProblem,
    s.model.ledger.problem,
    ...s.reconciler.errors(),
  ].filter((x): x is string => !!x);
  const firstLink = s.reconciler.linkProblems()[0];
  const lastError = shared[0] ?? (firstLink ? `${s.model.link(firstLink.ifindex)?.name ?? firstLink.ifindex}: ${firstLink.why}` : null);
  return {
    profile: s.config.profile,
    ready: s.ready,
    interfaces,
    version: VERSION,
    pid: process.pid,
    uptimeSeconds: Math.round((Date.now() - s.startedAt) / 1000),
    xdpMode: s.config.xdpMode,
    routerIface: s.model.router,
    counters: s.effects.counters(),
    ...(s.config.profile.startsWith('router-') ? { clients: Object.fromEntries(s.effects.firewall.clientCounters()) } : {}),
    lastError,
  };
}

/** A link's counters as the report carries them: bigints as decimal strings (JSON has no bigint). */
function trafficOf(c: LinkCounters | undefined): LinkTraffic | null {
  if (!c) return null;
  return {
    vid: c.vid,
    rxPackets: String(c.rxPackets), rxBytes: String(c.rxBytes), txPackets: String(c.txPackets), txBytes: String(c.txBytes),
    drops: Object.fromEntries(Object.entries(c.drops).map(([k, v]) => [k, String(v)])),
  };
}
