// A small element builder: the views build DOM nodes directly (no HTML strings, so nothing the bridge
// reports is ever parsed as markup) and redraw a region while keeping keyboard focus where it was.

type Child = Node | string | number | undefined | null | false;
type Handler = (event: Event) => void;
export type Attrs = Record<string, string | number | boolean | undefined | Handler>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === 'function') {
      element.addEventListener(key.replace(/^on/, '').toLowerCase(), value);
    } else if (value === true) {
      element.setAttribute(key, '');
    } else {
      element.setAttribute(key, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    parent.appendChild(typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child);
  }
}

/**
 * Replaces a region's content. Focus inside it moves to the new element with the same id (every
 * control has one), so a keyboard user is not thrown back to the top when an event arrives.
 */
export function redraw(region: HTMLElement, ...children: Child[]): void {
  const active = document.activeElement;
  const focusedId = active instanceof HTMLElement && region.contains(active) ? active.id : '';
  region.replaceChildren();
  append(region, children);
  if (focusedId !== '') {
    // Gone (a removed session): the region's own heading takes focus rather than the page's top.
    const again = document.getElementById(focusedId) ?? fallbackFocus(region);
    again?.focus();
  }
}

function fallbackFocus(region: HTMLElement): HTMLElement | null {
  const labelledBy = region.closest('section')?.getAttribute('aria-labelledby');
  const heading = labelledBy ? document.getElementById(labelledBy) : null;
  if (heading !== null && !heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
  return heading;
}

export function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`the page has no ${type.name} #${id}`);
  return element;
}

/** Ids for controls that belong to a session (names are [A-Za-z0-9._-], so they are safe in ids). */
export function sessionId(name: string, what: string): string {
  return `s-${name}-${what}`;
}
