// SELECT 00 A4 04 00 <AID> (SP 800-73-4 part 2 §3.1.1). The PIV application is the card's only
// and default application; selecting it again keeps the security status (OpenSC flags cards
// that lose it on SELECT as buggy). A failed selection leaves PIV selected, as ISO 7816-4 says.

import type { CommandApdu } from '../iso7816/apdu.js';
import { statusOnly, type AppletResponse } from '../iso7816/command-processor.js';
import { SW } from '../iso7816/status-words.js';
import { NIST_RID, PIV_AID } from './constants.js';

const SELECT_BY_DF_NAME = 0x04;
const RETURN_FCI = 0x00;
const NO_RESPONSE_DATA = 0x0c;
/** P1 values that select by file identifier or path: there is no file system, so 6A82. */
const FILE_SELECTIONS = new Set([0x00, 0x01, 0x02, 0x03, 0x08, 0x09]);

/** ISO 7816-4 partial DF name selection: any right-truncation of the AID down to the RID. */
export function isPivAidPrefix(aid: Uint8Array): boolean {
  if (aid.length < NIST_RID.length || aid.length > PIV_AID.length) return false;
  return aid.every((b, i) => b === PIV_AID[i]);
}

export function select(command: CommandApdu, propertyTemplate: Uint8Array): AppletResponse {
  if (command.p1 !== SELECT_BY_DF_NAME) {
    return statusOnly(FILE_SELECTIONS.has(command.p1) ? SW.FILE_NOT_FOUND : SW.WRONG_P1P2);
  }
  if (command.p2 !== RETURN_FCI && command.p2 !== NO_RESPONSE_DATA) return statusOnly(SW.WRONG_P1P2);
  if (!isPivAidPrefix(command.data)) return statusOnly(SW.FILE_NOT_FOUND);
  return command.p2 === NO_RESPONSE_DATA ? statusOnly(SW.OK) : { sw: SW.OK, data: propertyTemplate };
}
