// IPC channel names between the preload and main: the only things the page may ask of main.
export const IPC = {
  pickVv: 'spice-smartcard:pick-vv',
  launchViewer: 'spice-smartcard:launch-viewer',
  getOpenDefaults: 'spice-smartcard:get-open-defaults',
  setOpenDefaults: 'spice-smartcard:set-open-defaults',
} as const;
