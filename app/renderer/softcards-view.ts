// Soft PIV cards: show one, create one, import a PKCS#12 into a slot. Files are on the bridge's
// machine (the same machine in the desktop app). The optional PIN seals the keys at rest; using the
// card asks for the PIN in the guest, never here.
import type { RequestParams, SoftCardInfo } from '../../src/control/schema.js';
import type { ControlLink } from './control-link.js';
import { errorText } from './control-link.js';
import { byId, h, redraw } from './dom.js';

type Slot = '9a' | '9c' | '9d' | '9e';
const SLOTS: readonly Slot[] = ['9a', '9c', '9d', '9e'];

export class SoftCardsView {
  private readonly result = byId('softcard-result', HTMLElement);

  constructor(private readonly link: () => ControlLink | undefined) {
    byId('softcard-show-form', HTMLFormElement).addEventListener('submit', (event) => {
      event.preventDefault();
      const path = byId('softcard-show-path', HTMLInputElement).value.trim();
      void this.run((l) => l.request('softcard.show', { path }));
    });
    byId('softcard-create-form', HTMLFormElement).addEventListener('submit', (event) => {
      event.preventDefault();
      const form = event.currentTarget as HTMLFormElement;
      const slots = SLOTS.filter((slot) => form.querySelector<HTMLInputElement>(`input[name="create-slot"][value="${slot}"]`)?.checked === true);
      const key = byId('softcard-create-key', HTMLSelectElement).value;
      const pin = byId('softcard-create-pin', HTMLInputElement);
      const params: RequestParams<'softcard.create'> = {
        path: byId('softcard-create-path', HTMLInputElement).value.trim(),
        subject: byId('softcard-create-subject', HTMLInputElement).value.trim(),
        key: key === 'p256' || key === 'p384' ? key : 'rsa2048',
        slots: slots.length > 0 ? slots : (['9a'] as Slot[]),
        ...(pin.value !== '' ? { pin: pin.value } : {}),
      };
      pin.value = '';
      void this.run((l) => l.request('softcard.create', params));
    });
    byId('softcard-import-form', HTMLFormElement).addEventListener('submit', (event) => {
      event.preventDefault();
      void this.importP12();
    });
  }

  private async importP12(): Promise<void> {
    const file = byId('softcard-import-file', HTMLInputElement).files?.[0];
    if (file === undefined) {
      this.show(undefined, 'Choose a PKCS#12 (.p12 or .pfx) file.');
      return;
    }
    const p12Password = byId('softcard-import-password', HTMLInputElement);
    const pin = byId('softcard-import-pin', HTMLInputElement);
    const slotValue = byId('softcard-import-slot', HTMLSelectElement).value;
    const slot = SLOTS.find((s) => s === slotValue) ?? '9a';
    const params = {
      path: byId('softcard-import-path', HTMLInputElement).value.trim(),
      slot,
      p12: new Uint8Array(await file.arrayBuffer()),
      p12Password: p12Password.value,
      ...(pin.value !== '' ? { pin: pin.value } : {}),
    };
    p12Password.value = '';
    pin.value = '';
    await this.run((l) => l.request('softcard.import', params));
  }

  private async run(request: (link: ControlLink) => Promise<SoftCardInfo>): Promise<void> {
    const link = this.link();
    if (link === undefined) return;
    try {
      this.show(await request(link));
    } catch (error) {
      this.show(undefined, errorText(error));
    }
  }

  private show(info: SoftCardInfo | undefined, error?: string): void {
    if (info === undefined) {
      redraw(this.result, h('p', { class: 'error', role: 'alert' }, error ?? ''));
      return;
    }
    redraw(
      this.result,
      h('h3', {}, info.label !== '' ? `${info.label} (${info.path})` : info.path),
      h('p', {}, `PIN tries left: ${info.pinTriesLeft} · PUK tries left: ${info.pukTriesLeft}`),
      h('ul', {}, ...info.slots.map((s) => h('li', {}, h('span', { class: 'mono' }, s.slot), ` ${s.algorithm} · ${s.subject} · until ${s.notAfter}`))),
    );
  }
}
