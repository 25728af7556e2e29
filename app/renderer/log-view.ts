// The bridge's log lines, newest last; the bridge never puts a password, PIN or key in them.
import type { LogLine } from '../../src/control/schema.js';
import { h, redraw } from './dom.js';

export function drawLog(region: HTMLElement, lines: readonly LogLine[], onlyProblems: boolean): void {
  const shown = onlyProblems ? lines.filter((l) => l.level === 'warn' || l.level === 'error') : lines;
  const stick = region.scrollTop + region.clientHeight >= region.scrollHeight - 8;
  redraw(
    region,
    ...shown.map((l) =>
      h('div', { class: `log-line level-${l.level}` },
        h('time', { datetime: new Date(l.time).toISOString() }, new Date(l.time).toLocaleTimeString()),
        ` ${l.level.padEnd(5)} `,
        l.session !== undefined && `[${l.session}] `,
        l.message,
      ),
    ),
  );
  if (stick) region.scrollTop = region.scrollHeight;
}
