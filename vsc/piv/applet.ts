// The PIV card application (NIST SP 800-73-4) as a state machine over complete commands.
// Bytes in, bytes out: keys, PIN checks and data objects come in through small interfaces,
// so the applet itself does no I/O and tests can check it against node:crypto.
// Length parsing, chaining and GET RESPONSE are the ISO front end's job (iso7816/command-processor.ts).

import type { CommandApdu } from '../iso7816/apdu.js';
import { IsoCommandProcessor, statusOnly, type ApduHandler, type AppletResponse, type CommandProcessorOptions } from '../iso7816/command-processor.js';
import { defaultChunkPolicy } from '../iso7816/response-chaining.js';
import { SW } from '../iso7816/status-words.js';
import { PivIns } from './constants.js';
import type { PivCredentials } from './credentials.js';
import { applicationPropertyTemplate } from './data-objects.js';
import { generalAuthenticate } from './general-authenticate.js';
import { getData, type PivDataObjects } from './get-data.js';
import type { PivKeyOperations } from './key-operations.js';
import { changeReferenceData, resetRetryCounter, verify } from './pin-commands.js';
import { PivSecurityState } from './security-state.js';
import { select } from './select.js';

export interface PivAppletOptions {
  readonly objects: PivDataObjects;
  readonly keys: PivKeyOperations;
  readonly credentials: PivCredentials;
  /** The application label in SELECT's answer; hosts show it (OpenSC: "PIV-II card" plus label). */
  readonly label?: string;
  /** Random bytes for the 9B challenge OpenSC uses as C_GenerateRandom; absent: 9B is refused with 6A86. */
  readonly random?: (length: number) => Uint8Array;
}

export const DEFAULT_PIV_LABEL = 'spice-smartcard soft PIV';

export class PivApplet implements ApduHandler {
  readonly #objects: PivDataObjects;
  readonly #keys: PivKeyOperations;
  readonly #credentials: PivCredentials;
  readonly #propertyTemplate: Uint8Array;
  readonly #random: ((length: number) => Uint8Array) | undefined;
  readonly #security = new PivSecurityState();

  constructor(options: PivAppletOptions) {
    this.#objects = options.objects;
    this.#keys = options.keys;
    this.#credentials = options.credentials;
    this.#propertyTemplate = applicationPropertyTemplate(options.label ?? DEFAULT_PIV_LABEL);
    this.#random = options.random;
  }

  /** Card reset: the PIN must be verified again. */
  reset(): void {
    this.#security.clear();
  }

  handleNow(command: CommandApdu): AppletResponse | undefined {
    switch (command.ins) {
      case PivIns.SELECT:
        return select(command, this.#propertyTemplate);
      case PivIns.GET_DATA:
        return getData(command, this.#objects);
      case PivIns.VERIFY:
      case PivIns.CHANGE_REFERENCE_DATA:
      case PivIns.RESET_RETRY_COUNTER:
      case PivIns.GENERAL_AUTHENTICATE:
        // PIN checks (scrypt, a file write) and key operations: only through handle().
        return undefined;
      default:
        return statusOnly(SW.INS_NOT_SUPPORTED);
    }
  }

  async handle(command: CommandApdu): Promise<AppletResponse> {
    switch (command.ins) {
      case PivIns.VERIFY:
        return verify(command, this.#credentials, this.#security);
      case PivIns.CHANGE_REFERENCE_DATA:
        return changeReferenceData(command, this.#credentials, this.#security);
      case PivIns.RESET_RETRY_COUNTER:
        return resetRetryCounter(command, this.#credentials, this.#security);
      case PivIns.GENERAL_AUTHENTICATE:
        return generalAuthenticate(command, this.#keys, this.#security, this.#random);
      default:
        return this.handleNow(command) ?? statusOnly(SW.INS_NOT_SUPPORTED);
    }
  }
}

/** A PIV applet behind the ISO 7816-4 front end: raw command APDU in, raw response out. */
export class PivCardEngine {
  readonly #applet: PivApplet;
  readonly #processor: IsoCommandProcessor;

  /** `processorOptions.chunkPolicy` defaults to the bridge's (CCID-safe) policy, not plain ISO. */
  constructor(options: PivAppletOptions, processorOptions: CommandProcessorOptions = {}) {
    this.#applet = new PivApplet(options);
    // This engine is what a guest's reader talks to, so its answers must survive QEMU's usb-ccid.
    this.#processor = new IsoCommandProcessor(this.#applet, { ...processorOptions, chunkPolicy: processorOptions.chunkPolicy ?? defaultChunkPolicy });
  }

  /** Power-up or re-insertion: security status and any half-done exchange are forgotten. */
  reset(): void {
    this.#applet.reset();
    this.#processor.reset();
  }

  transmit(apdu: Uint8Array): Promise<Uint8Array> {
    return this.#processor.process(apdu);
  }

  /** `transmit` without the promise when the answer needs no I/O (see IsoCommandProcessor.answer). */
  answer(apdu: Uint8Array): Uint8Array | Promise<Uint8Array> {
    return this.#processor.answer(apdu);
  }
}
