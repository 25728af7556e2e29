// PC/SC readers on this machine: card present, ATR, and which session forwards each one.
import type { PcscStatus, ReaderInfo } from '../../src/control/schema.js';
import { h, redraw } from './dom.js';

export function drawReaders(region: HTMLElement, readers: readonly ReaderInfo[], pcsc: PcscStatus): void {
  const status = pcsc.available
    ? h('p', { id: 'pcsc-status' }, `PC/SC service running; ${readers.length} reader${readers.length === 1 ? '' : 's'}.`)
    : h('p', { id: 'pcsc-status', class: 'advice' }, pcsc.problem?.message ?? 'The PC/SC service (pcscd) is not reachable: readers cannot be used; soft and demo cards still work.');
  if (readers.length === 0) {
    redraw(region, status);
    return;
  }
  redraw(
    region,
    status,
    h('ul', { class: 'readers' },
      ...readers.map((r) =>
        h('li', { class: 'reader' },
          h('strong', {}, r.name),
          h('span', {}, r.cardPresent ? ' · card present' : ' · no card'),
          r.atr !== undefined && h('span', { class: 'mono' }, ` · ATR ${r.atr}`),
          h('span', {}, r.usedBy.length > 0 ? ` · goes to ${r.usedBy.join(', ')}` : ' · not used by any session'),
        ),
      ),
    ),
  );
}
