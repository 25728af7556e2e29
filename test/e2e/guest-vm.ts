// The tests' entry point to the tiny Linux VM, which lives in product code (src/demo/) because
// `npm run demo` boots it too; the guest's own files are in guest/ at the top of the repository.
export * from '../../src/demo/guest-image.js';
export * from '../../src/demo/guest-vm-types.js';
export * from '../../src/demo/guest-vm.js';
export { freePorts } from '../../src/demo/qemu-command.js';
export { which } from '../../src/host-command.js';
