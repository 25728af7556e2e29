// The desktop app's "open with" setting: how a .vv file or link from the OS is opened (mode and
// card). Only in the desktop app: main keeps it, the page reads and saves it through the preload.
import type { ReaderInfo } from '../../src/control/schema.js';
import type { DesktopApi, OpenDefaults } from '../shared/desktop-api.js';
import { cardOptions } from './card-choice.js';
import { chosenCard, choiceFor } from './card-spec.js';
import { byId, h } from './dom.js';

export class OpenDefaultsView {
  private readonly form = byId('open-defaults-form', HTMLFormElement);
  private readonly cardSelect = byId('open-card-source', HTMLSelectElement);
  private readonly softPath = byId('open-card-path', HTMLInputElement);
  private readonly status = byId('open-defaults-status', HTMLElement);
  private readonly save = byId('open-defaults-save', HTMLButtonElement);
  /** The saved choice, kept selectable while readers come and go. */
  private savedChoice: string | undefined;

  constructor(
    private readonly desktop: DesktopApi,
    private readonly readers: () => readonly ReaderInfo[],
  ) {
    byId('open-defaults-panel', HTMLElement).hidden = false;
    this.cardSelect.addEventListener('change', () => this.showSoftPath());
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.submit();
    });
    this.drawReaders();
    void this.load();
  }

  /** Readers changed: the card choice offers them, keeping what is selected. */
  drawReaders(): void {
    const selected = this.cardSelect.value;
    cardOptions(this.cardSelect, this.readers());
    // A reader (or glob) that is not plugged in now is still a valid setting: it stays selectable.
    for (const choice of new Set([this.savedChoice, selected])) {
      if (choice === undefined || !choice.startsWith('reader:') || [...this.cardSelect.options].some((o) => o.value === choice)) continue;
      this.cardSelect.append(h('option', { value: choice }, `Reader: ${choice.slice('reader:'.length)}`));
    }
    if (selected !== '' && this.cardSelect.value !== selected) this.cardSelect.value = selected;
    this.showSoftPath();
  }

  private async load(): Promise<void> {
    try {
      const defaults = await this.desktop.getOpenDefaults();
      if (defaults !== undefined) this.show(defaults);
    } catch {
      this.status.textContent = 'The saved setting could not be read; the app uses its defaults.';
    }
  }

  private show(defaults: OpenDefaults): void {
    const radio = this.form.querySelector<HTMLInputElement>(`input[name="open-mode"][value="${defaults.mode}"]`);
    if (radio !== null) radio.checked = true;
    this.savedChoice = choiceFor(defaults.card);
    if (defaults.card.kind === 'soft') this.softPath.value = defaults.card.path;
    this.drawReaders();
    this.cardSelect.value = this.savedChoice;
    this.showSoftPath();
  }

  private showSoftPath(): void {
    byId('open-card-path-field', HTMLElement).hidden = this.cardSelect.value !== 'soft';
  }

  private async submit(): Promise<void> {
    const card = chosenCard(this.cardSelect.value, this.softPath.value);
    if (typeof card === 'string') {
      this.status.textContent = card;
      this.softPath.focus();
      return;
    }
    const checked = this.form.querySelector<HTMLInputElement>('input[name="open-mode"]:checked');
    const defaults: OpenDefaults = { mode: checked?.value === 'connect' ? 'connect' : 'proxy', card };
    this.save.disabled = true;
    try {
      const problem = await this.desktop.setOpenDefaults(defaults);
      if (problem === undefined) {
        this.savedChoice = choiceFor(card);
        this.status.textContent = 'Saved: files and links you open from now on use this.';
      } else {
        this.status.textContent = problem;
      }
    } catch (error) {
      this.status.textContent = `Not saved: ${error instanceof Error ? error.message : String(error)}`;
    } finally {
      this.save.disabled = false;
    }
  }
}
