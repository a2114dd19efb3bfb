// The daemon: wiring. Loads the config, opens the control socket (first, so a
// second agent stops before touching anything), the netlink sockets, the
// effects, the model and the reconciler; feeds events to the reconciler;
// signals readiness once coldplug is done; reloads the config on change and
// on SIGHUP; stops cleanly.
import { closeSync, existsSync, watch, writeSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from '../log.js';
import { loadConfig, type Config, type Paths } from '../config.js';
import { Rtnl, RtnlEvents, type AddrMsg, type LinkMsg, type RouteMsg } from '../netlink/rtnl.js';
import { ControlServer, type StatusReport } from '../status.js';
import { VERSION } from '../version.js';
import { Model } from './model.js';
import { Ledger } from './ledger.js';
import { Reconciler, errText } from './reconciler.js';
import { KernelEffects } from './effects.js';
import { buildReport } from './report.js';

/** How often what has no event is read back (SPEC: repaired within 5 s). */
const VERIFY_INTERVAL_MS = 2000;
/** A config file edit is read once the file has been quiet this long (an editor's several writes). */
const CONFIG_SETTLE_MS = 100;

export interface DaemonOptions {
  paths: Paths;
  notifyFd: number | null;
  log: Logger;
}

export class Daemon {
  private config!: Config;
  private rtnl!: Rtnl;
  private events!: RtnlEvents;
  private effects!: KernelEffects;
  private model!: Model;
  private reconciler!: Reconciler;
  private control!: ControlServer;
  private watcher: FSWatcher | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  private verifyTimer: NodeJS.Timeout | null = null;
  private ready = false;
  private readonly startedAt = Date.now();
  private configProblem: string | null = null;
  private stopped = false;

  constructor(private readonly opts: DaemonOptions) {}

  private get log(): Logger {
    return this.opts.log;
  }

  async start(): Promise<void> {
    const t0 = performance.now();
    const { paths } = this.opts;
    const { config, fromFile } = loadConfig(paths.config);
    this.config = config;
    this.applyLogLevel();
    this.log.info({ version: VERSION, profile: config.profile, xdpMode: config.xdpMode, config: fromFile ? paths.config : '(defaults)', paths }, 'netagent starting');

    this.control = new ControlServer(paths.socket, () => this.report(), this.log, () => this.reconciler);
    await this.control.listen();
    this.rtnl = Rtnl.open({ timeoutMs: config.requestTimeoutMs, log: this.log });
    this.effects = new KernelEffects(config, paths, this.rtnl, this.log, (ms) => this.reconciler.armRetry(ms));
    this.model = new Model(config.routeProtocol, (id) => this.effects.identify(id), new Ledger(paths.state, config.routeProtocol, this.log));
    this.effects.model = this.model;
    this.reconciler = new Reconciler(this.model, this.effects, config, this.log);

    // Subscribe before dumping, so nothing that happens during the dump is missed.
    this.events = RtnlEvents.open({ groups: ['link', 'ipv4-ifaddr', 'ipv4-route'], rcvbufBytes: config.eventBufferBytes, log: this.log });
    const m = this.model;
    this.events.on('link', (ev: { type: 'new' | 'del'; link: LinkMsg }) => this.reconciler.event(() => {
      const what = m.onLink(ev.type, ev.link);
      // `ethtool -K` announces only that some feature changed: one look at a NIC whose tag stripping we turned off.
      const l = ev.link;
      if (what === 'changed' && l.featuresChanged && m.offloadWatched(l.ifindex)) this.lookAtOffload(l.ifindex, l.name, 'was turned back on (ethtool -K)');
      if (what === 'appeared') this.log.debug({ link: ev.link.name, ifindex: ev.link.ifindex, mac: ev.link.mac }, 'link appeared');
    }));
    this.events.on('addr', (ev: { type: 'new' | 'del'; addr: AddrMsg }) => this.reconciler.event(() => m.onAddr(ev.type, ev.addr)));
    this.events.on('route', (ev: { type: 'new' | 'del'; route: RouteMsg }) => this.reconciler.event(() => m.onRoute(ev.type, ev.route)));
    this.events.on('overflow', () => {
      this.log.warn('netlink event socket overflowed (ENOBUFS): events were lost; re-dumping and reconciling');
      this.reconciler.requestDump();
    });
    this.events.on('error', (e: Error) => this.log.error({ err: e }, 'netlink event socket error'));

    this.effects.openForwarder();
    this.reconciler.requestDump();
    await this.reconciler.settle();
    // NICs adopted with our `physical` on them (a restart): was rx-vlan-offload
    // turned back on while we were away? One ethtool ioctl each.
    for (const n of this.model.offloadUnknown()) this.lookAtOffload(n.ifindex, n.name, 'is on (turned back on while netagent was not running)');
    await this.reconciler.settle();
    await this.effects.firewall.settled(); // ready means isolated too
    this.ready = true;
    this.notifyReady();
    this.log.info({ ms: Math.round(performance.now() - t0), links: this.model.size }, 'coldplug done: ready');

    this.armResync();
    // What has no event (BPF map entries) is read back often and cheaply;
    // the full re-dump (resyncIntervalMs) stays slow.
    this.verifyTimer = setInterval(() => this.reconciler.verify(), VERIFY_INTERVAL_MS);
    this.verifyTimer.unref();
    this.watchConfig();
  }

  /** One look at a NIC of ours: rx-vlan-offload on again is turned off by the next pass. */
  private lookAtOffload(ifindex: number, name: string, how: string): void {
    if (this.effects.offloadIsOn(name)) {
      this.log.warn({ link: name }, `${name}: rx-vlan-offload ${how}; turning it off again`);
      this.model.offloadTurnedOn(ifindex);
    } else {
      this.model.offloadKnownOff(ifindex);
    }
  }

  report(): StatusReport {
    return buildReport({
      config: this.config, model: this.model, reconciler: this.reconciler, effects: this.effects,
      ready: this.ready, startedAt: this.startedAt, configProblem: this.configProblem,
    });
  }

  // ------------------------------------------------------------ config

  /**
   * Watches the config file's directory (the file may not exist yet, and
   * editors replace files by rename) with one inotify watch, and reacts only
   * to the config file's name, once it has been quiet for 100 ms. Not
   * chokidar: it re-reads the whole directory (readdir + lstat of every entry)
   * on every event in it, ~2 ms of CPU per write when a log or socket shares
   * the directory (measured with bench/), for nothing.
   */
  private watchConfig(): void {
    const file = this.opts.paths.config;
    const dir = dirname(file);
    const name = basename(file);
    let timer: NodeJS.Timeout | null = null;
    try {
      this.watcher = watch(dir, { persistent: false }, (_event, filename) => {
        if (filename !== null && filename !== name) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(() => {
          timer = null;
          this.reloadConfig('file changed');
        }, CONFIG_SETTLE_MS);
      });
      this.watcher.on('error', (e) => this.log.warn({ err: errText(e), file }, 'the config file is no longer watched; edits need SIGHUP (s6-svc -h) or a restart'));
    } catch (e) {
      this.log.info({ dir, file, err: errText(e) }, `the config directory ${dir} cannot be watched (does it exist?): after creating ${file}, send SIGHUP (s6-svc -h) or restart`);
    }
  }

  /** Re-reads the config file (a change on disk, or SIGHUP from `s6-svc -h`). */
  reloadConfig(why: string): void {
    if (this.stopped || !this.reconciler) return;
    const file = this.opts.paths.config;
    // A config file that vanished (deleted, moved away, mid-rename) is not a
    // wish for the defaults: the last good config keeps running.
    if (!existsSync(file)) {
      this.configProblem = `the config file ${file} is gone; keeping the last good config (profile ${this.config.profile}) until it is back`;
      this.log.warn({ file, why }, this.configProblem);
      return;
    }
    let next: Config;
    try {
      next = loadConfig(file).config;
    } catch (e) {
      this.configProblem = `config change refused; keeping the last good config: ${errText(e)}`;
      this.log.error({ err: errText(e), why }, 'config change refused; keeping the last good config');
      return;
    }
    this.configProblem = null;
    if (JSON.stringify(next) === JSON.stringify(this.config)) return;
    const prev = this.config;
    this.config = next;
    this.applyLogLevel();
    this.effects.setConfig(next);
    if (prev.eventBufferBytes !== next.eventBufferBytes) this.log.warn('eventBufferBytes changes take effect at the next start');
    // What carries the old number stays ours until it is re-tagged or removed.
    if (prev.routeProtocol !== next.routeProtocol) this.model.setRouteProtocol(next.routeProtocol);
    if (prev.resyncIntervalMs !== next.resyncIntervalMs) this.armResync();
    this.log.info({ profile: next.profile, xdpMode: next.xdpMode, why }, 'config reloaded; reconciling');
    this.reconciler.setConfig(next);
  }

  private armResync(): void {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.resyncTimer = null;
    if (this.config.resyncIntervalMs <= 0) return;
    this.resyncTimer = setInterval(() => this.reconciler.requestDump(), this.config.resyncIntervalMs);
    this.resyncTimer.unref();
  }

  /** NETAGENT_LOG_LEVEL, when set, wins over the config file (a person debugging at the console). */
  private applyLogLevel(): void {
    this.log.level = process.env.NETAGENT_LOG_LEVEL || this.config.logLevel;
  }

  private notifyReady(): void {
    const fd = this.opts.notifyFd;
    if (fd === null) return;
    try {
      writeSync(fd, '\n');
      closeSync(fd);
    } catch (e) {
      this.log.warn({ err: errText(e), fd }, 'could not write the readiness notification');
    }
  }

  // ------------------------------------------------------------ shutdown

  /** Writes the ledger now (synchronous; at exit and on a crash). Never throws. */
  flushLedger(): void {
    try {
      this.model?.ledger.flush();
    } catch { /* the ledger reports its own write errors */ }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    if (this.verifyTimer) clearInterval(this.verifyTimer);
    this.watcher?.close();
    this.events?.close();
    await this.reconciler?.stop();
    if (this.config?.detachOnExit && this.model) {
      const ours = [...this.model.xdpEntries()].filter(([, x]) => x.program).map(([ifindex]) => ({ ifindex, name: this.model.link(ifindex)?.name ?? String(ifindex) }));
      this.effects.detachAll(ours);
    }
    try {
      await this.effects?.close();
    } finally {
      this.flushLedger();
    }
    this.rtnl?.close();
    await this.control?.close();
    this.log.info({ detached: !!this.config?.detachOnExit }, 'netagent stopped');
  }
}
