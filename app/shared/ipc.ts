// IPC channel names between the preload and main: the only two things the page may ask of main.
export const IPC = {
  pickVv: 'spice-smartcard:pick-vv',
  launchViewer: 'spice-smartcard:launch-viewer',
} as const;
