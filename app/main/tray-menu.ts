// The tray's tooltip and menu from the sessions the bridge reports. Pure: the menu is a template.
import type { MenuItemConstructorOptions } from 'electron';
import type { SessionStatus } from '../../src/control/schema.js';
import { describeSession, summarize, type Tone } from '../shared/describe.js';

export interface TrayState {
  tooltip: string;
  tone: Tone;
  menu: MenuItemConstructorOptions[];
}

/** Sessions listed in the menu; more are summarised in one line. */
const MENU_SESSIONS = 10;

export function trayState(sessions: readonly SessionStatus[], bridgeUp: boolean, actions: { show(): void; quit(): void }): TrayState {
  const summary = bridgeUp ? summarize(sessions) : { text: 'Bridge starting', tone: 'busy' as const };
  const items: MenuItemConstructorOptions[] = sessions.slice(0, MENU_SESSIONS).map((s) => ({ label: `${s.name}: ${describeSession(s).label}`, enabled: false }));
  if (sessions.length > MENU_SESSIONS) items.push({ label: `and ${sessions.length - MENU_SESSIONS} more`, enabled: false });
  return {
    tooltip: `spice-smartcard: ${summary.text}`,
    tone: summary.tone,
    menu: [
      { label: summary.text, enabled: false },
      ...items,
      { type: 'separator' },
      { label: 'Show window', click: () => actions.show() },
      { label: 'Quit (cards leave the VMs)', click: () => actions.quit() },
    ],
  };
}
