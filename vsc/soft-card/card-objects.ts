// The PIV data objects of a soft card, built once from its document.

import { CERTIFICATE_TAG_OF_SLOT, PivObjectTag } from '../piv/constants.js';
import { cardCapabilityContainer, certificateObject, chuidObject, discoveryObject, keyHistoryObject } from '../piv/data-objects.js';
import { SOFT_CARD_FASC_N, encodeFascN } from '../piv/fasc-n.js';
import type { PivDataObjects } from '../piv/get-data.js';
import { SLOT_ID_OF, SLOT_NAMES } from './algorithms.js';
import type { CardDocument } from './card-file.js';

export function buildPivObjects(document: CardDocument): PivDataObjects {
  const objects = new Map<number, Uint8Array>([
    [PivObjectTag.DISCOVERY, discoveryObject()],
    [PivObjectTag.CHUID, chuidObject({ fascN: encodeFascN(SOFT_CARD_FASC_N), guid: Buffer.from(document.guid, 'hex'), expiry: document.expiry })],
    [PivObjectTag.CARD_CAPABILITY_CONTAINER, cardCapabilityContainer(Buffer.from(document.cardId, 'hex'))],
    [PivObjectTag.KEY_HISTORY, keyHistoryObject()],
  ]);
  for (const name of SLOT_NAMES) {
    const record = document.slots[name];
    if (record !== undefined) objects.set(CERTIFICATE_TAG_OF_SLOT[SLOT_ID_OF[name]], certificateObject(Buffer.from(record.certificate, 'base64')));
  }
  return objects;
}
