// The proxy with a card: a ProxyServer for the viewer and a CardInjector that follows the
// sessions it reports. What `proxy` and `open` run.
import { createTransport, type DialPlan } from '../../spice/transport.js';
import type { Card } from '../../vsc/card.js';
import { CardInjector } from './card-injector.js';
import { Credentials } from './credentials.js';
import { ProxyServer } from './proxy-server.js';

export interface CardProxyOptions {
  plan: DialPlan;
  secureChannels: ReadonlySet<number> | 'all';
  /** The upstream password when the user gave one; undefined to learn it from the viewer. */
  knownPassword: string | undefined;
  /** A one-time password for the viewer (see credentials.ts). */
  viewerToken?: string;
  card: Card;
  host: string;
  port: number;
  keepSmartcard?: boolean;
}

export class CardProxy {
  private constructor(
    readonly server: ProxyServer,
    readonly injector: CardInjector,
  ) {}

  static async start(options: CardProxyOptions): Promise<CardProxy> {
    const transport = createTransport(options.plan);
    const credentials = new Credentials({
      ...(options.knownPassword !== undefined ? { knownPassword: options.knownPassword } : {}),
      ...(options.viewerToken !== undefined ? { viewerToken: options.viewerToken } : {}),
    });
    const server = await ProxyServer.listen({
      transport,
      secureChannels: options.secureChannels,
      credentials,
      host: options.host,
      port: options.port,
      ...(options.keepSmartcard !== undefined ? { keepSmartcard: options.keepSmartcard } : {}),
    });
    const injector = new CardInjector({ transport, secureChannels: options.secureChannels, card: options.card });
    server.on('session', (s) => injector.inject(s.sessionId, s.password));
    server.on('session-ended', (sessionId) => injector.sessionEnded(sessionId));
    return new CardProxy(server, injector);
  }

  /** Removes the card from the VM first (while the session is still up), then closes the viewer's connections. */
  async close(): Promise<void> {
    await this.injector.stop();
    await this.server.close();
  }
}
