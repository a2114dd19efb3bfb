// The one typed configuration of netagent: every tunable (profiles, MAC
// prefixes, paths, timeouts) lives here with its default, and the config file
// is validated against it. Unknown keys and bad values are errors that name
// the key, so a typo at 2 a.m. is caught instead of silently ignored.
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatCidr4, readCidr4 } from './core/ipv4.js';
import { checkVidPins } from './core/vid.js';
import { normalizeMac, normalizeMacPrefix } from './core/mac.js';
import { PROFILES, XDP_MODES, type ProfileName, type XdpModeSetting } from './core/vocab.js';

// Defined in core/vocab.ts; re-exported for the callers that know them from here.
export { PROFILES, XDP_MODES, type ProfileName, type XdpModeSetting } from './core/vocab.js';

export interface MacPrefixes {
  /** `02:01:*`: the router link (xdp-forwarder), a client link (router-routed). */
  routerLink: string;
  /** `0a:b3:ec:*`: an inter-VM link whose last three octets encode an IPv4 address. */
  interVm: string;
  /** `02:00:*`: the client end of a link, seen from inside a client VM. */
  clientLink: string;
}

export interface Config {
  profile: ProfileName;
  xdpMode: XdpModeSetting;
  /** Accept MAC-encoded addresses outside 100.64.0.0/10. */
  allowPublicAddresses: boolean;
  /** Detach our XDP programs when the agent exits. Off: forwarding survives a restart. */
  detachOnExit: boolean;
  macPrefixes: MacPrefixes;
  /** Interface names (exact, or with `*` wildcards) netagent never touches. */
  ignoreInterfaces: string[];
  /** Link kinds (IFLA_INFO_KIND) that are never physical NICs: virtual devices of the VM itself. */
  ignoreKinds: string[];
  /** client profile: addresses for `02:00:*` links, by MAC (e.g. "02:00:00:00:00:07": "100.64.0.7/31"). */
  clientAddresses: Record<string, string>;
  /**
   * xdp-forwarder: VLAN IDs pinned per NIC, by MAC or name pattern (`*`,
   * `?`): e.g. { "eth*": 10, "wlan0": 20 } makes wired the router's
   * preferred uplink (it picks the lowest VID with a live RA).
   */
  vidPins: Record<string, number>;
  /** rtnetlink protocol number that marks the routes netagent owns (so it can find and remove stale ones). */
  routeProtocol: number;
  /** Router profiles: run a DHCP client on each uplink. */
  uplinkDhcp: boolean;
  /** The DHCP client command; `{ifname}` is replaced by the uplink's name. */
  dhcpCommand: string[];
  /**
   * Write resolv.conf: in the client profile it names the client's gateway
   * (the net VM answers DNS there); in router profiles, the resolvers the
   * uplinks' DHCP leases named. Off by default: the machine's own file is
   * left alone unless asked (the VM image turns it on).
   */
  writeResolvConf: boolean;
  /** Where writeResolvConf writes (an absolute path). */
  resolvConfPath: string;
  /** Name of the nftables table (family inet) netagent owns in router profiles. */
  nftTable: string;
  /** A full re-dump and reconcile this often, catching drift nothing told us about (0: never). */
  resyncIntervalMs: number;
  /** Timeout for one netlink request. */
  requestTimeoutMs: number;
  /** Event socket receive buffer, bytes (SO_RCVBUFFORCE). */
  eventBufferBytes: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
}

/** Where things are; set by command-line flags, not by the config file. */
export interface Paths {
  config: string;
  socket: string;
  /** What netagent changed on links (daemon/ledger.ts): in /run, so it outlives a restart and not a reboot. */
  state: string;
  bpfDir: string;
  pinDir: string;
}

const here = dirname(fileURLToPath(import.meta.url)); // dist/agent

/** BPF objects: the build output when run from the repository, else the installed location. */
function defaultBpfDir(): string {
  const repoBuild = join(here, '..', '..', 'build', 'bpf');
  return existsSync(join(repoBuild, 'physical.o')) ? repoBuild : '/usr/lib/netagent/bpf';
}

export const DEFAULT_PATHS: Paths = {
  config: '/etc/netagent/config.json',
  socket: '/run/netagent/control.sock',
  state: '/run/netagent/state.json',
  get bpfDir() { return defaultBpfDir(); },
  pinDir: '/sys/fs/bpf',
};

export const DEFAULT_CONFIG: Readonly<Config> = Object.freeze({
  profile: 'xdp-forwarder',
  xdpMode: 'skb',
  allowPublicAddresses: false,
  detachOnExit: false,
  macPrefixes: Object.freeze({ routerLink: '02:01', interVm: '0a:b3:ec', clientLink: '02:00' }),
  ignoreInterfaces: [],
  ignoreKinds: [
    'bridge', 'bond', 'team', 'dummy', 'vxlan', 'geneve', 'wireguard', 'ifb', 'ipip', 'sit', 'gre',
    'gretap', 'ip6tnl', 'ip6gre', 'ip6gretap', 'vti', 'vti6', 'nlmon', 'vrf', 'macsec', 'ipvlan',
    'macvlan', 'macvtap', 'vlan', 'tun', 'wwan', 'xfrm',
  ],
  clientAddresses: {},
  vidPins: {},
  routeProtocol: 199,
  uplinkDhcp: true,
  // -R: release the lease when stopped, so no address or route is left behind.
  dhcpCommand: ['udhcpc', '-f', '-R', '-i', '{ifname}', '-s', '/usr/lib/netagent/udhcpc.script'],
  writeResolvConf: false,
  resolvConfPath: '/etc/resolv.conf',
  nftTable: 'netagent',
  resyncIntervalMs: 60_000,
  requestTimeoutMs: 3_000,
  eventBufferBytes: 4 * 1024 * 1024,
  logLevel: 'info',
}) as Config;

export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`config ${file}: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

type Check = (v: unknown, key: string) => string | null;
const str = (allowed?: readonly string[]): Check => (v, key) =>
  typeof v !== 'string'
    ? `${key} must be a string`
    : allowed && !allowed.includes(v)
      ? `${key} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')} (got ${JSON.stringify(v)})`
      : null;
const bool: Check = (v, key) => (typeof v === 'boolean' ? null : `${key} must be true or false`);
const int = (min: number, max: number): Check => (v, key) =>
  Number.isInteger(v) && (v as number) >= min && (v as number) <= max ? null : `${key} must be an integer in ${min}..${max}`;
const strList = (nonEmpty = false): Check => (v, key) =>
  !Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')
    ? `${key} must be a list of non-empty strings`
    : nonEmpty && v.length === 0 ? `${key} must not be empty` : null;

const CHECKS: Record<Exclude<keyof Config, 'macPrefixes' | 'clientAddresses' | 'vidPins'>, Check> = {
  profile: str(PROFILES),
  xdpMode: str(XDP_MODES),
  allowPublicAddresses: bool,
  detachOnExit: bool,
  ignoreInterfaces: strList(),
  ignoreKinds: strList(),
  routeProtocol: int(5, 255), // below 5 are the kernel's own (RTPROT_KERNEL, BOOT, STATIC...)
  uplinkDhcp: bool,
  dhcpCommand: strList(true),
  writeResolvConf: bool,
  resolvConfPath: (v, key) => (typeof v === 'string' && /^\/[^\0]*[^/]$/.test(v) ? null : `${key} must be an absolute file path like "/etc/resolv.conf"`),
  nftTable: (v, key) => (typeof v === 'string' && /^[A-Za-z_][A-Za-z0-9_-]{0,31}$/.test(v) ? null : `${key} must be a valid nftables table name`),
  resyncIntervalMs: int(0, 86_400_000),
  requestTimeoutMs: int(10, 600_000),
  eventBufferBytes: int(4096, 1 << 30),
  logLevel: str(LOG_LEVELS),
};

/**
 * Validates a parsed config object and merges it over the defaults.
 * Returns the config, or the list of problems (each naming its key).
 */
export function parseConfig(raw: unknown): { config: Config; problems: [] } | { config: null; problems: string[] } {
  const problems: string[] = [];
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { config: null, problems: ['the config must be a JSON object'] };
  }
  const cfg: Config = structuredClone(DEFAULT_CONFIG) as Config;
  for (const [key, value] of Object.entries(raw)) {
    if (key === 'macPrefixes') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        problems.push('macPrefixes must be an object');
        continue;
      }
      for (const [k, v] of Object.entries(value)) {
        if (!Object.hasOwn(cfg.macPrefixes, k)) problems.push(`unknown key macPrefixes.${k} (known: ${Object.keys(cfg.macPrefixes).join(', ')})`);
        else {
          const prefix = typeof v === 'string' ? normalizeMacPrefix(v) : null;
          if (prefix === null) problems.push(`macPrefixes.${k} must be a MAC prefix like "02:01" (got ${JSON.stringify(v)})`);
          else cfg.macPrefixes[k as keyof MacPrefixes] = prefix;
        }
      }
    } else if (key === 'clientAddresses') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        problems.push('clientAddresses must be an object of MAC -> CIDR');
        continue;
      }
      cfg.clientAddresses = {};
      for (const [key, cidr] of Object.entries(value)) {
        const mac = normalizeMac(key);
        // The same parser the rules and the netlink codec use: what passes here, the kernel is asked for.
        const c = typeof cidr === 'string' ? readCidr4(cidr, { prefix: 'required' }) : null;
        if (mac === null) problems.push(`clientAddresses: key ${JSON.stringify(key)} is not a MAC address like "02:00:00:00:00:07"`);
        else if (!c?.ok) problems.push(`clientAddresses.${key} must be an IPv4 CIDR like "100.64.0.3/31" (got ${JSON.stringify(cidr)}${c ? `: ${c.error}` : ''})`);
        else if (Object.hasOwn(cfg.clientAddresses, mac)) problems.push(`clientAddresses.${key}: ${mac} is given twice`);
        else cfg.clientAddresses[mac] = formatCidr4(c.value); // the same text: the strict form has one spelling
      }
    } else if (key === 'vidPins') {
      if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'number')) {
        problems.push('vidPins must be an object of MAC or name pattern -> VLAN ID (a number)');
        continue;
      }
      const pins: Record<string, number> = {};
      for (const [k, v] of Object.entries(value as Record<string, number>)) pins[normalizeMac(k) ?? k] = v;
      const bad = checkVidPins(pins);
      if (bad.length) problems.push(...bad.map((b) => `vidPins: ${b}`));
      else cfg.vidPins = pins;
    } else if (Object.hasOwn(CHECKS, key)) {
      const problem = CHECKS[key as keyof typeof CHECKS](value, key);
      if (problem) problems.push(problem);
      else (cfg as unknown as Record<string, unknown>)[key] = Array.isArray(value) ? [...value] : value;
    } else {
      problems.push(`unknown key ${JSON.stringify(key)} (known: ${[...Object.keys(CHECKS), 'macPrefixes', 'clientAddresses', 'vidPins'].sort().join(', ')})`);
    }
  }
  return problems.length ? { config: null, problems } : { config: cfg, problems: [] };
}

/**
 * Reads the config file. A missing file means the embedded defaults
 * (profile xdp-forwarder); an unreadable or invalid one is a ConfigError.
 */
export function loadConfig(file: string): { config: Config; fromFile: boolean } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { config: structuredClone(DEFAULT_CONFIG) as Config, fromFile: false };
    throw new ConfigError(file, [`cannot read it: ${(e as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(file, [`not valid JSON: ${(e as Error).message}`]);
  }
  const r = parseConfig(raw);
  if (!r.config) throw new ConfigError(file, r.problems);
  return { config: r.config, fromFile: true };
}
