// Light, dark, or the system's choice (prefers-color-scheme), remembered in localStorage. The CSS does
// the work; this only sets data-theme on <html>.
export type ThemeChoice = 'system' | 'light' | 'dark';

const KEY = 'spice-smartcard.theme';
const NEXT: Record<ThemeChoice, ThemeChoice> = { system: 'light', light: 'dark', dark: 'system' };

export function setupThemeToggle(button: HTMLButtonElement, storage: Storage): void {
  const stored = storage.getItem(KEY);
  let choice: ThemeChoice = stored === 'light' || stored === 'dark' ? stored : 'system';
  const apply = (): void => {
    if (choice === 'system') delete document.documentElement.dataset['theme'];
    else document.documentElement.dataset['theme'] = choice;
    button.textContent = `Theme: ${choice}`;
    button.setAttribute('aria-label', `Colour theme: ${choice}. Change it.`);
  };
  button.addEventListener('click', () => {
    choice = NEXT[choice];
    storage.setItem(KEY, choice);
    apply();
  });
  apply();
}
