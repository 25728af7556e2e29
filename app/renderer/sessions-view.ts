// One panel per session: what it is, its phase with the reason and what to do, the card and whether
// the VM acknowledged reader and card, live APDU counters, the password prompt, and its buttons.
import type { ReaderInfo, SessionStatus } from '../../src/control/schema.js';
import type { DesktopApi } from '../shared/desktop-api.js';
import { canEject, describeCardSource, describeMode, describeSession, formatSw } from '../shared/describe.js';
import type { ControlLink } from './control-link.js';
import { errorText } from './control-link.js';
import { cardOptions } from './card-choice.js';
import { choiceFor, chosenCard } from './card-spec.js';
import { h, redraw, sessionId } from './dom.js';

export interface SessionsViewDeps {
  link: () => ControlLink | undefined;
  readers: () => readonly ReaderInfo[];
  desktop: DesktopApi | undefined;
  announce: (text: string) => void;
}

export class SessionsView {
  /** Per-session error from the last button, shown until the next action. */
  private readonly actionErrors = new Map<string, string>();
  private lastPhases = new Map<string, string>();
  /** What the user has chosen but not yet applied in a session's card form, kept across redraws. */
  private readonly cardDrafts = new Map<string, { choice: string; path: string }>();

  constructor(
    private readonly region: HTMLElement,
    private readonly deps: SessionsViewDeps,
  ) {}

  draw(sessions: ReadonlyMap<string, SessionStatus>): void {
    if (sessions.size === 0) {
      redraw(this.region, h('p', { class: 'empty' }, 'No sessions yet: open a .vv file or type a URI above.'));
      this.lastPhases = new Map();
      return;
    }
    const phases = new Map<string, string>();
    for (const s of sessions.values()) {
      const said = describeSession(s).label;
      phases.set(s.name, said);
      const before = this.lastPhases.get(s.name);
      if (before !== undefined && before !== said) this.deps.announce(`${s.name}: ${said}`);
    }
    this.lastPhases = phases;
    redraw(this.region, ...[...sessions.values()].map((s) => this.panel(s)));
  }

  /** Shows a problem under a session until its next action. */
  showError(name: string, text: string): void {
    this.actionErrors.set(name, text);
    this.deps.announce(`${name}: ${text}`);
    document.dispatchEvent(new CustomEvent('spice-smartcard:redraw'));
  }

  /** Counters change many times a second: only their text is touched. */
  drawCounters(status: SessionStatus): void {
    const set = (what: string, text: string): void => {
      const el = document.getElementById(sessionId(status.name, what));
      if (el !== null) el.textContent = text;
    };
    set('answered', String(status.counters.answered));
    set('failed', String(status.counters.failed));
    set('sw', formatSw(status.counters.lastSw));
  }

  private panel(s: SessionStatus): HTMLElement {
    const text = describeSession(s);
    const id = (what: string): string => sessionId(s.name, what);
    const yes = (v: boolean): string => (v ? 'yes' : 'no');
    const error = this.actionErrors.get(s.name);
    return h(
      'article',
      { class: `session tone-${text.tone}`, 'aria-labelledby': id('heading'), 'data-session': s.name },
      h('header', { class: 'session-head' },
        h('h3', { id: id('heading'), tabindex: -1 }, s.name),
        h('span', { class: `badge tone-${text.tone}`, id: id('phase'), 'data-phase': s.phase }, text.label),
      ),
      h('p', { class: 'target' }, `${s.target} · ${describeMode(s.mode)}`),
      text.advice !== undefined && h('p', { class: 'advice', id: id('advice') }, text.advice),
      wantsPassword(s) && this.passwordForm(s),
      h('dl', { class: 'facts' },
        fact('Card', `${describeCardSource(s.card.source)} (${s.card.present ? 'present' : 'not present'})`, id('card')),
        fact('Reader in the VM', yes(s.vm.readerAdded), id('reader-added')),
        fact('Card in the VM', yes(s.vm.cardInserted), id('card-inserted')),
        s.card.atr !== undefined && fact('ATR', s.card.atr, id('atr'), 'mono'),
        fact('APDUs answered', String(s.counters.answered), id('answered')),
        fact('APDUs failed', String(s.counters.failed), id('failed')),
        fact('Last status word', formatSw(s.counters.lastSw), id('sw'), 'mono'),
        s.proxy !== undefined && fact('Viewer address', s.proxy.uri, id('proxy-uri'), 'mono'),
        s.proxy !== undefined && fact('Viewers', String(s.proxy.viewers)),
        s.reconnects > 0 && fact('Reconnections', String(s.reconnects)),
      ),
      error !== undefined && h('p', { class: 'error', role: 'alert', id: id('error') }, error),
      h('div', { class: 'actions' }, ...this.buttons(s)),
      this.cardForm(s),
    );
  }

  private buttons(s: SessionStatus): Array<HTMLElement> {
    const id = (what: string): string => sessionId(s.name, what);
    const buttons: HTMLElement[] = [];
    const running = s.phase !== 'stopped' && s.phase !== 'failed';
    if (canEject(s.card.source) && running) {
      buttons.push(
        s.card.present
          ? this.button(id('eject'), 'Eject card', `Take the card out of ${s.name}`, () => this.act(s.name, 'Card ejected', (l) => l.request('session.insert', { name: s.name, present: false })))
          : this.button(id('insert'), 'Insert card', `Put the card back into ${s.name}`, () => this.act(s.name, 'Card inserted', (l) => l.request('session.insert', { name: s.name, present: true }))),
      );
    }
    if (s.mode === 'proxy' && s.proxy !== undefined) {
      const desktop = this.deps.desktop;
      buttons.push(
        desktop !== undefined
          ? this.button(id('viewer'), 'Open viewer', `Open ${s.name} in the SPICE viewer`, () => void this.launch(desktop, s.name))
          : // In a browser, the system's spice:// handler (remote-viewer) opens the proxy's address.
            h('a', { href: s.proxy.uri, id: id('viewer'), class: 'button-link', 'aria-label': `Open ${s.name} in the SPICE viewer` }, 'Open viewer'),
      );
    }
    buttons.push(
      running
        ? this.button(id('stop'), 'Stop', `Stop ${s.name}: card and reader leave the VM`, () => this.act(s.name, 'Stopped', (l) => l.request('session.stop', { name: s.name })))
        : this.button(id('start'), 'Start', `Start ${s.name}`, () => this.act(s.name, 'Starting', (l) => l.request('session.start', { name: s.name }))),
      this.button(id('remove'), 'Remove', `Remove ${s.name}`, () => this.act(s.name, 'Removed', (l) => l.request('session.remove', { name: s.name }))),
    );
    return buttons;
  }

  /** Which card goes to this VM: any reader, the demo card, a soft card file, or none. */
  private cardForm(s: SessionStatus): HTMLFormElement {
    const id = (what: string): string => sessionId(s.name, what);
    const draft = this.cardDrafts.get(s.name) ?? { choice: choiceFor(s.card.source), path: s.card.source.kind === 'soft' ? s.card.source.path : '' };
    const select = h('select', { id: id('card-choice') });
    cardOptions(select, this.deps.readers());
    select.value = draft.choice;
    const path = h('input', { type: 'text', id: id('card-path'), autocomplete: 'off', spellcheck: 'false', 'aria-label': `Soft card file for ${s.name}`, placeholder: 'soft card file', value: draft.path });
    path.hidden = select.value !== 'soft';
    const remember = (): void => {
      this.cardDrafts.set(s.name, { choice: select.value, path: path.value });
      path.hidden = select.value !== 'soft';
    };
    select.addEventListener('change', remember);
    path.addEventListener('input', remember);
    const form = h(
      'form',
      { class: 'card-form', 'aria-label': `Card for ${s.name}` },
      h('label', { for: id('card-choice') }, 'Card for this VM'),
      select,
      path,
      h('button', { type: 'submit', id: id('card-submit') }, 'Use this card'),
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const card = chosenCard(select.value, path.value);
      if (typeof card === 'string') {
        this.actionErrors.set(s.name, card);
        document.dispatchEvent(new CustomEvent('spice-smartcard:redraw'));
        return;
      }
      this.cardDrafts.delete(s.name);
      this.act(s.name, 'Card changed', (l) => l.request('session.card', { name: s.name, card }));
    });
    return form;
  }

  private passwordForm(s: SessionStatus): HTMLFormElement {
    const id = (what: string): string => sessionId(s.name, what);
    const input = h('input', { type: 'password', id: id('password'), autocomplete: 'off', required: true, 'aria-describedby': id('advice') });
    const form = h(
      'form',
      { class: 'password-form', 'aria-label': `SPICE password for ${s.name}` },
      h('label', { for: id('password') }, 'SPICE password'),
      input,
      h('button', { type: 'submit', id: id('password-submit') }, 'Link'),
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const password = input.value;
      input.value = '';
      this.act(s.name, 'Password sent', (l) => l.request('session.password', { name: s.name, password }));
    });
    return form;
  }

  private button(id: string, label: string, ariaLabel: string, onclick: () => void): HTMLButtonElement {
    return h('button', { type: 'button', id, 'aria-label': ariaLabel, onclick }, label);
  }

  private act(name: string, done: string, run: (link: ControlLink) => Promise<unknown>): void {
    const link = this.deps.link();
    if (link === undefined) return;
    this.actionErrors.delete(name);
    run(link).then(
      () => this.deps.announce(`${name}: ${done}`),
      (error: unknown) => this.showError(name, errorText(error)),
    );
  }

  private async launch(desktop: DesktopApi, name: string): Promise<void> {
    const problem = await desktop.launchViewer(name);
    if (problem !== undefined) this.showError(name, problem);
  }
}

/** Missing password, or one the server refused: either way the user can give one here. */
export function wantsPassword(s: SessionStatus): boolean {
  return s.phase === 'needs-password' || (s.phase === 'failed' && s.problem?.code === 'auth');
}

/** One term and its value, grouped so the grid keeps them together (a div inside dl is valid HTML). */
function fact(term: string, value: string, id?: string, cls?: string): HTMLDivElement {
  return h('div', { class: 'fact' }, h('dt', {}, term), h('dd', { id, class: cls }, value));
}
