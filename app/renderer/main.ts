// The page: connect to the bridge with the token from the URL fragment, load a snapshot, follow
// events, and keep each region drawn. Reconnects (with a fresh snapshot) when the socket drops.
import { DESKTOP_API_KEY, type DesktopApi } from '../shared/desktop-api.js';
import { summarize } from '../shared/describe.js';
import { cardOptions } from './card-choice.js';
import { openLink } from './client-adapter.js';
import { ConnectView } from './connect-view.js';
import { controlUrlFor, errorText, tokenFromFragment, type ControlLink } from './control-link.js';
import { byId } from './dom.js';
import { drawLog } from './log-view.js';
import { OpenDefaultsView } from './open-defaults-view.js';
import { drawReaders } from './readers-view.js';
import { SessionsView } from './sessions-view.js';
import { SoftCardsView } from './softcards-view.js';
import { applyEvent, emptyView, fromSnapshot, type BridgeView, type ViewChange } from './store.js';
import { setupThemeToggle } from './theme.js';

const RECONNECT_MS = 2000;

const desktop = (window as unknown as Record<string, DesktopApi | undefined>)[DESKTOP_API_KEY];
const bridgeState = byId('bridge-state', HTMLElement);
const announcer = byId('announce', HTMLElement);
let link: ControlLink | undefined;
let view: BridgeView = emptyView();

function announce(text: string): void {
  announcer.textContent = text;
}

const sessionsView = new SessionsView(byId('sessions', HTMLElement), { link: () => link, readers: () => view.readers, desktop, announce });
/** Proxy sessions added here whose viewer the desktop app starts once they listen, as for a .vv opened from the OS. */
const viewerWanted = new Set<string>();
new ConnectView({
  link: () => link,
  sessionNames: () => new Set(view.sessions.keys()),
  desktop,
  announce,
  storage: localStorage,
  added: (status) => {
    if (desktop !== undefined && status.mode === 'proxy') viewerWanted.add(status.name);
  },
});

function startViewerWhenListening(): void {
  if (desktop === undefined) return;
  for (const name of viewerWanted) {
    const s = view.sessions.get(name);
    if (s === undefined) viewerWanted.delete(name);
    else if (s.phase === 'listening' && s.proxy !== undefined) {
      viewerWanted.delete(name);
      void desktop.launchViewer(name).then((problem) => {
        if (problem !== undefined) sessionsView.showError(name, problem);
      });
    }
  }
}
new SoftCardsView(() => link);
/** Electron only: a browser has no app to open files and links from the OS. */
const openDefaultsView = desktop !== undefined ? new OpenDefaultsView(desktop, () => view.readers) : undefined;
setupThemeToggle(byId('theme-toggle', HTMLButtonElement), localStorage);
const logOnlyProblems = byId('log-problems-only', HTMLInputElement);
logOnlyProblems.addEventListener('change', () => draw('log'));
document.addEventListener('spice-smartcard:redraw', () => draw('sessions'));

function draw(change: ViewChange | 'all'): void {
  if (change === 'all' || change === 'sessions') {
    sessionsView.draw(view.sessions);
    startViewerWhenListening();
    const summary = summarize(view.sessions.values());
    document.title = `${summary.text} — spice-smartcard`;
  }
  if (change === 'counters') for (const s of view.sessions.values()) sessionsView.drawCounters(s);
  if (change === 'all' || change === 'readers') {
    drawReaders(byId('readers', HTMLElement), view.readers, view.pcsc);
    cardOptions(byId('card-source', HTMLSelectElement), view.readers);
    openDefaultsView?.drawReaders();
  }
  if (change === 'all' || change === 'log') drawLog(byId('log', HTMLElement), view.log, logOnlyProblems.checked);
}

async function start(): Promise<void> {
  const token = tokenFromFragment(location.hash);
  if (token === undefined) {
    bridgeState.textContent =
      'No access token: open this page with the address serve printed (it ends in #token=…), or from the desktop app. The token is in the connection file, readable only by you.';
    bridgeState.dataset['state'] = 'bad';
    return;
  }
  bridgeState.textContent = 'Connecting to the bridge…';
  bridgeState.dataset['state'] = 'busy';
  try {
    const opened = await openLink(controlUrlFor(location), token);
    // Events that arrive while the snapshot is on its way are applied after it.
    const early: Array<() => void> = [];
    let ready = false;
    const follow = <E extends Parameters<ControlLink['on']>[0]>(type: E): void =>
      opened.on(type, (data) => {
        const apply = (): void => {
          const change = applyEvent(view, type, data);
          if (change !== undefined) draw(change);
        };
        if (ready) apply();
        else early.push(apply);
      });
    follow('session');
    follow('session.removed');
    follow('counters');
    follow('readers');
    follow('log');
    opened.onClosed((reason) => {
      link = undefined;
      bridgeState.textContent = `Lost the bridge (${reason}); reconnecting…`;
      bridgeState.dataset['state'] = 'bad';
      setTimeout(() => void start(), RECONNECT_MS);
    });
    const [snapshot, tail] = await Promise.all([opened.request('status.get', {}), opened.request('log.tail', {})]);
    view = fromSnapshot(snapshot, tail.lines);
    ready = true;
    for (const apply of early) apply();
    link = opened;
    bridgeState.textContent = `Connected to the bridge ${snapshot.bridge.version}`;
    bridgeState.dataset['state'] = 'ok';
    draw('all');
  } catch (error) {
    // A browser cannot see why a WebSocket was refused: a stale token and a stopped bridge look alike.
    bridgeState.textContent =
      desktop !== undefined
        ? `Cannot reach the bridge (${errorText(error)}). Retrying… When the app has restarted it, this page reloads by itself with your sessions.`
        : `Cannot reach the bridge (${errorText(error)}). Retrying… If this goes on, the bridge has stopped or restarted with a new token: open the address it printed again.`;
    bridgeState.dataset['state'] = 'bad';
    setTimeout(() => void start(), RECONNECT_MS);
  }
}

draw('all');
void start();
