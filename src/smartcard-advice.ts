// What to tell a user whose VM offers no smartcard channel, or whose channel is held elsewhere.

export const SMARTCARD_DOMAIN_XML = `<controller type='ccid' index='0'/>
<smartcard mode='passthrough' type='spicevmc'/>`;

export function missingSmartcardAdvice(): string {
  return [
    'The server offers no smartcard channel. Either:',
    '  - the VM has no smartcard passthrough device. Add it to the domain XML (virsh edit VM, inside <devices>),',
    '    then shut the VM down and start it again:',
    ...SMARTCARD_DOMAIN_XML.split('\n').map((l) => `        ${l}`),
    '    (virt-manager: Add Hardware > Smartcard > Mode: Passthrough; oVirt: VM > Console > Smartcard enabled), or',
    "  - the hypervisor's QEMU or spice-server was built without smartcard support (libcacard). Proxmox VE's",
    '    QEMU is built that way: there, pass the reader to the VM with SPICE USB redirection instead.',
  ].join('\n');
}

export function takenSmartcardAdvice(): string {
  return (
    "The server accepted the smartcard link and closed it at once: another client of this session already holds the smartcard channel " +
    '(for example remote-viewer with smartcard enabled). Disable smartcard in that viewer (enable-smartcard=0) or use `spice-smartcard open`, ' +
    'which shares the viewer\'s session.'
  );
}
