// One link of a session, per mode: dial it with the session's card, watch it, close it. A dial
// either yields a LiveLink or throws; after that the observer hears of every forwarder the link
// runs the card on and of the link going down. The runner decides what happens next.
import { SpiceError } from '../../spice/errors.js';
import type { CardForwarder } from '../bridge/card-forwarder.js';
import { PassthruLink, parseEndpoint } from '../bridge/passthru-link.js';
import { SpiceCardLink } from '../bridge/spice-card-link.js';
import { resolveConnection, type ConnectionSpec } from '../connection-spec.js';
import type { LogLevel, SessionSpec } from '../control/schema.js';
import { openSession } from '../open-session.js';
import { CardProxy } from '../proxy/card-proxy.js';
import { isLoopbackHost, ListenAddressError, parseListenAddress, viewerUri } from '../proxy/listen-address.js';
import { takenSmartcardAdvice } from '../smartcard-advice.js';
import type { LinkCard } from './session-card.js';
import { SessionConfigError } from './session-problems.js';

export interface LinkObserver {
  /** A forwarder is about to run the card (before it sends anything, so a trace sees ReaderAdd). */
  forwarder(forwarder: CardForwarder): void;
  /** proxy: the viewer's session ended, or the card could not join it (the proxy listens on). */
  idle(error: SpiceError | undefined): void;
  /** The link is gone; the error says why. */
  down(error: unknown): void;
  note(level: LogLevel, text: string): void;
}

export interface ProxyInfo {
  listen: string;
  uri: string;
  viewers: () => number;
}

export interface LiveLink {
  /** Removes the card and the reader from the VM, then closes; bounded in time. */
  stop(): Promise<void>;
  /** The server is gone: close without the goodbye. */
  drop(): Promise<void>;
  proxy?: ProxyInfo;
}

export interface DialContext {
  spec: SessionSpec;
  /** The password given in memory; overrides spec.passwordFile. */
  password: string | undefined;
  card: LinkCard;
  signal: AbortSignal;
  observer: LinkObserver;
  /** Resolves the SPICE connection (default: sessionConnection on every dial). */
  connection?: () => Promise<ConnectionSpec>;
}

const CONNECT_TIMEOUT_MS = 10_000;

export function dialLink(context: DialContext): Promise<LiveLink> {
  switch (context.spec.mode) {
    case 'connect':
      return dialConnect(context);
    case 'passthru':
      return dialPassthru(context);
    case 'proxy':
      return dialProxy(context);
  }
}

/** The connection to the server as the spec names it, with the in-memory password if one was given. */
export async function sessionConnection(spec: SessionSpec, password: string | undefined): Promise<ConnectionSpec> {
  const connection = await resolveConnection({
    target: spec.target,
    ...(spec.passwordFile !== undefined ? { passwordFile: spec.passwordFile } : {}),
    ...(spec.caFile !== undefined ? { caFile: spec.caFile } : {}),
    ...(spec.hostSubject !== undefined ? { hostSubject: spec.hostSubject } : {}),
    // The bridge's own environment is not the session's: passwords come from the spec or the API only.
    env: {},
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
  });
  if (password !== undefined) {
    connection.password = password;
    connection.passwordSource = 'prompt';
  }
  return connection;
}

async function dialConnect({ spec, password, card, signal, observer, connection: resolve }: DialContext): Promise<LiveLink> {
  const connection = await (resolve?.() ?? sessionConnection(spec, password));
  signal.throwIfAborted();
  const session = await openSession(connection, {
    signal,
    log: (level, message) => observer.note(level === 'warn' ? 'warn' : 'debug', message),
    onNotify: (n) => observer.note('info', `Server notice: ${n.message}`),
  });
  let link: SpiceCardLink;
  try {
    link = await SpiceCardLink.open(session, card, { signal, beforeStart: (f) => observer.forwarder(f) });
  } catch (e) {
    await session.close();
    throw e;
  }
  let down = false;
  const goDown = (error: unknown): void => {
    if (down) return;
    down = true;
    observer.down(error);
  };
  link.once('closed', (error) => goDown(error ?? new SpiceError('network', 'The smartcard channel closed.')));
  session.once('closed', (error) => goDown(error ?? new SpiceError('network', 'The SPICE session closed: the VM stopped, or another client took it over.')));
  session.once('switch-host', (t) => goDown(new SpiceError('network', `The VM migrated to ${t.host} (port ${t.port}); the session connects again to its target.`)));
  return {
    async stop() {
      down = true;
      await link.stop();
      await session.close();
    },
    async drop() {
      down = true;
      await link.drop();
      await session.close();
    },
  };
}

async function dialPassthru({ spec, card, observer }: DialContext): Promise<LiveLink> {
  const endpoint = spec.target.startsWith('unix:') ? { host: '', port: 0, path: spec.target.slice(5) } : parseEndpoint(spec.target);
  if (endpoint === undefined) throw new SessionConfigError(`The passthru target "${spec.target}" is not HOST:PORT (IPv6: [::1]:PORT).`);
  let down = false;
  const goDown = (error: unknown): void => {
    if (down) return;
    down = true;
    observer.down(error);
  };
  const link = await PassthruLink.open(endpoint, card, {
    beforeStart: (forwarder) => {
      observer.forwarder(forwarder);
      // spice-server reports a taken channel by closing it; QEMU's socket answers ReaderAdd with a refusal.
      forwarder.on('finished', (state) => {
        if (state === 'refused') goDown(new SpiceError('channel-taken', takenSmartcardAdvice()));
      });
    },
  });
  // The socket can fail before open() returned (see PassthruLink.closeError).
  if (link.isOpen) link.once('closed', (error) => goDown(error ?? new SpiceError('network', `QEMU closed the smartcard socket ${link.where}.`)));
  else queueMicrotask(() => goDown(link.closeError ?? new SpiceError('network', `QEMU closed the smartcard socket ${link.where}.`)));
  return {
    async stop() {
      down = true;
      await link.stop();
    },
    async drop() {
      down = true;
      await link.stop();
    },
  };
}

async function dialProxy({ spec, password, card, observer, connection: resolve }: DialContext): Promise<LiveLink> {
  let address;
  try {
    address = parseListenAddress(spec.listen ?? '127.0.0.1:0');
  } catch (e) {
    if (e instanceof ListenAddressError) throw new SessionConfigError(`listen: ${e.message}`);
    throw e;
  }
  if (!isLoopbackHost(address.host) && spec.listenAny !== true) {
    throw new SessionConfigError(`listen ${spec.listen ?? ''} is not a loopback address; set listenAny to allow it.`);
  }
  const connection = await (resolve?.() ?? sessionConnection(spec, password));
  const proxy = await CardProxy.start({
    plan: connection.plan,
    secureChannels: connection.secureChannels,
    knownPassword: connection.passwordSource === 'none' ? undefined : connection.password,
    card,
    host: address.host,
    port: address.port,
  });
  let viewers = 0;
  proxy.server.on('viewer-channel', (e) => {
    if (e.channel !== 'main') return;
    if (e.state === 'opened') viewers += 1;
    else if (e.state === 'closed' || e.state === 'failed') viewers = Math.max(0, viewers - 1);
  });
  proxy.server.on('note', (level, text) => observer.note(level === 'warn' ? 'warn' : 'debug', text));
  proxy.injector.on('linked', ({ link }) => observer.forwarder(link.forwarder));
  proxy.injector.on('unlinked', (_id, error) => observer.idle(error));
  proxy.injector.on('failed', (_id, error) => observer.idle(error));
  const listening = proxy.server.address;
  return {
    proxy: { listen: `${listening.host}:${listening.port}`, uri: viewerUri(listening), viewers: () => viewers },
    stop: () => proxy.close(),
    drop: () => proxy.close(),
  };
}
