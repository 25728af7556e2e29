// GET DATA 00 CB 3F FF, data 5C <tag> (SP 800-73-4 part 2 §3.1.2). Objects are stored complete
// (53 {...} or 7E {...}) and answered as they are; absent objects are 6A82.

import type { CommandApdu } from '../iso7816/apdu.js';
import { statusOnly, type AppletResponse } from '../iso7816/command-processor.js';
import { SW } from '../iso7816/status-words.js';
import { TlvError, decodeSingleTlv } from '../iso7816/tlv.js';
import { TAG_LIST_TAG } from './constants.js';

/** Read-only view of the card's data objects, keyed by tag (0x7E, 0x5FC102, ...). */
export interface PivDataObjects {
  get(tag: number): Uint8Array | undefined;
}

function requestedTag(data: Uint8Array): number | undefined {
  try {
    const list = decodeSingleTlv(data);
    if (list.tag !== TAG_LIST_TAG || list.value.length < 1 || list.value.length > 3) return undefined;
    return list.value.reduce((tag, b) => tag * 0x100 + b, 0);
  } catch (error) {
    if (error instanceof TlvError) return undefined;
    throw error;
  }
}

export function getData(command: CommandApdu, objects: PivDataObjects): AppletResponse {
  if (command.p1 !== 0x3f || command.p2 !== 0xff) return statusOnly(SW.WRONG_P1P2);
  const tag = requestedTag(command.data);
  if (tag === undefined) return statusOnly(SW.WRONG_DATA);
  const object = objects.get(tag);
  return object === undefined ? statusOnly(SW.FILE_NOT_FOUND) : { sw: SW.OK, data: object };
}
