// A card forwarded into a SPICE session: the smartcard channel (type 8) carries one VSC message in
// each SPICE message 101, little-endian, and the CardForwarder drives the reader on it.
import { EventEmitter } from 'node:events';
import type { SpiceChannel } from '../../spice/channel.js';
import { ChannelType, SmartcardMsg, SmartcardMsgc } from '../../spice/constants.js';
import { SpiceError } from '../../spice/errors.js';
import type { SpiceSession } from '../../spice/session.js';
import type { Card } from '../../vsc/card.js';
import { decodeVscMessage, encodeVscMessage } from '../../vsc/codec.js';
import { missingSmartcardAdvice, takenSmartcardAdvice } from '../smartcard-advice.js';
import { CardForwarder } from './card-forwarder.js';

export type SpiceCardLinkEvents = {
  /** The smartcard channel is gone; `error` says why when it was not our own stop. */
  closed: [error: SpiceError | undefined];
};

export interface SpiceCardLinkOptions {
  replyTimeoutMs?: number;
  signal?: AbortSignal;
  /** Sees the forwarder before it sends anything (a trace must record the first ReaderAdd). */
  beforeStart?: (forwarder: CardForwarder) => void;
}

export class SpiceCardLink extends EventEmitter<SpiceCardLinkEvents> {
  readonly forwarder: CardForwarder;
  readonly channel: SpiceChannel;
  private stopping = false;
  private closedWith: SpiceError | undefined | null = null;

  /** Opens the smartcard channel of the session and starts forwarding the card on it. */
  static async open(session: SpiceSession, card: Card, options: SpiceCardLinkOptions = {}): Promise<SpiceCardLink> {
    if (!session.hasChannel(ChannelType.SMARTCARD, 0)) throw new SpiceError('channel-missing', missingSmartcardAdvice());
    const channel = await session.openChannel(ChannelType.SMARTCARD, 0, options.signal);
    return new SpiceCardLink(channel, card, options);
  }

  /** Forwards the card on a smartcard channel linked elsewhere (the proxy links it into a viewer's session). */
  static attach(channel: SpiceChannel, card: Card, options: SpiceCardLinkOptions = {}): SpiceCardLink {
    return new SpiceCardLink(channel, card, options);
  }

  private constructor(channel: SpiceChannel, card: Card, options: SpiceCardLinkOptions) {
    super();
    this.channel = channel;
    this.forwarder = new CardForwarder({
      card,
      mode: 'spice',
      send: (message) => {
        if (channel.isOpen) channel.send(SmartcardMsgc.DATA, encodeVscMessage(message, 'le'));
      },
      ...(options.replyTimeoutMs !== undefined ? { replyTimeoutMs: options.replyTimeoutMs } : {}),
    });
    channel.on('message', (type, body) => {
      if (type !== SmartcardMsg.DATA) {
        this.forwarder.emit('warning', 'unexpected-message', `smartcard channel: message ${type} ignored`);
        return;
      }
      const decoded = decodeVscMessage(body, 'le');
      if (!decoded.ok) {
        this.forwarder.emit('warning', 'bad-vsc-message', `smartcard channel: ${decoded.error.text}; message ignored`);
        return;
      }
      this.forwarder.receive(decoded.message);
    });
    channel.on('close', (error) => this.onChannelClosed(error));
    this.forwarder.on('finished', (state) => {
      if (state === 'refused') this.fail(new SpiceError('channel-taken', takenSmartcardAdvice()));
      else if (state === 'failed' && !this.stopping) this.fail(new SpiceError('protocol', 'The smartcard link failed (see the error above); the smartcard channel was closed.'));
    });
    options.beforeStart?.(this.forwarder);
    channel.start();
    this.forwarder.start();
  }

  get isOpen(): boolean {
    return this.closedWith === null;
  }

  /** Removes the card and the reader in the VM, then closes the channel. */
  async stop(): Promise<void> {
    if (this.closedWith !== null) return;
    this.stopping = true;
    if (this.channel.isOpen) await this.forwarder.stop();
    await this.channel.close();
    this.forwarder.detach();
  }

  /** The session is already gone: close the channel without removing the card first. */
  async drop(): Promise<void> {
    if (this.closedWith !== null) return;
    this.stopping = true;
    await this.channel.close();
    this.forwarder.detach();
  }

  private fail(error: SpiceError): void {
    if (this.closedWith !== null) return;
    this.closedWith = error;
    this.forwarder.detach();
    void this.channel.close();
    this.emit('closed', error);
  }

  private onChannelClosed(error: SpiceError | undefined): void {
    if (this.closedWith !== null) return;
    this.forwarder.detach();
    if (this.stopping) {
      this.closedWith = undefined;
      this.emit('closed', undefined);
      return;
    }
    // spice-server answers a second smartcard link into one session with OK and then EOF.
    const taken = this.forwarder.state === 'adding' || this.forwarder.state === 'idle';
    this.closedWith = taken ? new SpiceError('channel-taken', takenSmartcardAdvice()) : (error ?? new SpiceError('network', 'The server closed the smartcard channel: the VM stopped, or another client took over its SPICE session. Connect again once the VM is back.'));
    this.emit('closed', this.closedWith);
  }
}
