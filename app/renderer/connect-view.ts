// "Connect to a VM": a .vv file (file input, or the native dialog in the desktop app) or a typed URI,
// the mode, the card; then `session.add`. Recent URIs are offered again.
import type { CardSourceSpec, SessionMode, SessionSpec, SessionStatus } from '../../src/control/schema.js';
import type { DesktopApi } from '../shared/desktop-api.js';
import { chosenCard, choiceFor } from './card-spec.js';
import type { ControlLink } from './control-link.js';
import { errorText } from './control-link.js';
import { byId, h, redraw } from './dom.js';
import { sessionNameFor } from '../shared/session-name.js';
import { loadRecent, rememberable, rememberRecent, type RecentConnection } from './recent.js';

interface PendingVv {
  fileName: string;
  content: string;
  /** The desktop app removed the file after reading it, as its delete-this-file=1 asked. */
  deleted?: boolean;
}

export interface ConnectViewDeps {
  link: () => ControlLink | undefined;
  sessionNames: () => ReadonlySet<string>;
  desktop: DesktopApi | undefined;
  announce: (text: string) => void;
  storage: Storage;
  /** A session was added from this form. */
  added: (status: SessionStatus) => void;
}

export class ConnectView {
  private pendingVv: PendingVv | undefined;
  private readonly form = byId('connect-form', HTMLFormElement);
  private readonly fileInput = byId('vv-file', HTMLInputElement);
  private readonly fileName = byId('vv-file-name', HTMLElement);
  private readonly uriInput = byId('target-uri', HTMLInputElement);
  private readonly cardSelect = byId('card-source', HTMLSelectElement);
  private readonly softPath = byId('card-path', HTMLInputElement);
  private readonly error = byId('connect-error', HTMLElement);
  private readonly submit = byId('connect-submit', HTMLButtonElement);

  constructor(private readonly deps: ConnectViewDeps) {
    this.fileInput.addEventListener('change', () => void this.readChosenFile());
    this.uriInput.addEventListener('input', () => {
      if (this.uriInput.value.trim() !== '') this.clearVv();
    });
    this.cardSelect.addEventListener('change', () => this.showSoftPath());
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.connect();
    });
    const pick = byId('vv-pick', HTMLButtonElement);
    if (deps.desktop !== undefined) {
      // The native dialog can honour delete-this-file; the browser's file input cannot touch the file.
      const desktop = deps.desktop;
      pick.hidden = false;
      this.fileInput.closest('.file-field')?.setAttribute('hidden', '');
      pick.addEventListener('click', () => void this.pickNative(desktop));
    }
    this.showSoftPath();
    this.drawRecent();
  }

  private showSoftPath(): void {
    byId('card-path-field', HTMLElement).hidden = this.cardSelect.value !== 'soft';
  }

  private async readChosenFile(): Promise<void> {
    const file = this.fileInput.files?.[0];
    if (file === undefined) return;
    if (file.size > 1024 * 1024) {
      this.showError(`${file.name} is too large for a .vv file (over 1 MiB): choose the file your VM portal gave you.`);
      return;
    }
    this.setVv({ fileName: file.name, content: await file.text() });
  }

  private async pickNative(desktop: DesktopApi): Promise<void> {
    try {
      const picked = await desktop.pickVvFile();
      if (picked !== undefined) this.setVv(picked);
    } catch (error) {
      this.showError(errorText(error));
    }
  }

  private setVv(vv: PendingVv): void {
    this.pendingVv = vv;
    this.uriInput.value = '';
    this.fileName.textContent = `Chosen: ${vv.fileName}${vv.deleted === true ? ' (read and deleted, as the file asks: its ticket works once)' : ''}`;
    this.showError('');
  }

  private clearVv(): void {
    this.pendingVv = undefined;
    this.fileInput.value = '';
    this.fileName.textContent = '';
  }

  private mode(): SessionMode {
    const checked = this.form.querySelector<HTMLInputElement>('input[name="mode"]:checked');
    return checked?.value === 'connect' ? 'connect' : 'proxy';
  }

  private showError(text: string): void {
    this.error.textContent = text;
  }

  async connect(): Promise<void> {
    const link = this.deps.link();
    if (link === undefined) {
      this.showError('Not connected to the bridge yet; wait until the header says it is connected.');
      return;
    }
    const card = chosenCard(this.cardSelect.value, this.softPath.value);
    if (typeof card === 'string') {
      this.showError(card);
      this.softPath.focus();
      return;
    }
    const vv = this.pendingVv;
    const target = vv?.fileName ?? this.uriInput.value.trim();
    if (target === '') {
      this.showError('Open a .vv file or type a spice:// URI first.');
      this.uriInput.focus();
      return;
    }
    const mode = this.mode();
    const spec: SessionSpec = { name: sessionNameFor(target, this.deps.sessionNames()), mode, target, card };
    this.submit.disabled = true;
    this.showError('');
    try {
      const status = await link.request('session.add', vv !== undefined ? { spec, vv: vv.content } : { spec });
      this.deps.announce(`Session ${status.name} added.`);
      this.deps.added(status);
      if (vv === undefined && rememberable(target)) {
        rememberRecent(this.deps.storage, { target, mode, card, usedAt: Date.now() });
        this.drawRecent();
      }
      this.clearVv();
      this.uriInput.value = '';
      document.getElementById(`s-${status.name}-heading`)?.focus();
    } catch (error) {
      this.showError(errorText(error));
    } finally {
      this.submit.disabled = false;
    }
  }

  private drawRecent(): void {
    const list = loadRecent(this.deps.storage);
    const region = byId('recent', HTMLElement);
    if (list.length === 0) {
      redraw(region);
      return;
    }
    redraw(
      region,
      h('h3', { id: 'recent-heading' }, 'Recent'),
      h('ul', { class: 'recent', 'aria-labelledby': 'recent-heading' }, ...list.map((r, i) => h('li', {}, this.recentButton(r, i)))),
    );
  }

  private recentButton(recent: RecentConnection, index: number): HTMLButtonElement {
    return h(
      'button',
      {
        type: 'button',
        id: `recent-${index}`,
        class: 'link-button',
        onclick: () => this.useRecent(recent.target, recent.mode, recent.card),
      },
      `${recent.target} (${recent.mode === 'proxy' ? 'with my viewer' : 'standalone'})`,
    );
  }

  private useRecent(target: string, mode: SessionMode, card: CardSourceSpec): void {
    this.clearVv();
    this.uriInput.value = target;
    const radio = this.form.querySelector<HTMLInputElement>(`input[name="mode"][value="${mode}"]`);
    if (radio !== null) radio.checked = true;
    this.cardSelect.value = choiceFor(card);
    if (card.kind === 'soft') this.softPath.value = card.path;
    this.showSoftPath();
    this.submit.focus();
  }
}
