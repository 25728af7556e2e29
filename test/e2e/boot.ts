/**
 * Boot the e2e guest by hand and run commands in it.
 *
 *   npm run build && node dist/test/e2e/boot.js [options]
 *
 * Options:
 *   --sockets N           N readers on TCP socket chardevs (default: one spicevmc reader)
 *   --usb uhci|ehci|xhci  USB host controller (default uhci)
 *   --port N              plain SPICE port (default: a free port)
 *   --password PW         SPICE ticket
 *   --tls                 also a TLS port, with a throwaway CA (its path is printed)
 *   --qxl                 add a qxl-vga display (needed by spice-gtk clients, not by ours)
 *   --pcscd-args A,B      guest pcscd arguments (default -d; -d,-a logs APDUs to /tmp/pcscd.log)
 *   --keep                keep the run directory (console.log, cmdline.txt) after exit
 *
 * Then every line typed is run in the guest (busybox sh with the agent.sh helpers: readers,
 * reader_count, card_present, wait_card, wait_no_card, pcscd_log ...). Special lines:
 *   :console   console so far      :events   boot milestones      :cmd   the QEMU command line
 *   :qmp COMMAND [JSON-ARGS]       :quit (or Ctrl-D / Ctrl-C)     powers the guest off
 */
import { createInterface } from 'node:readline';
import { bootGuestVm, type BootGuestOptions, type GuestVm, type UsbController } from './guest-vm.js';

function parseArgs(argv: string[]): BootGuestOptions {
  const opts: BootGuestOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '--sockets':
        opts.smartcard = { sockets: Number(value()) };
        break;
      case '--usb': {
        const v = value();
        if (v !== 'uhci' && v !== 'ehci' && v !== 'xhci') throw new Error(`bad --usb ${v}`);
        opts.usb = v satisfies UsbController;
        break;
      }
      case '--port':
        opts.spicePort = Number(value());
        break;
      case '--password':
        opts.spicePassword = value();
        break;
      case '--tls':
        opts.tls = true;
        break;
      case '--qxl':
        opts.display = 'qxl';
        break;
      case '--pcscd-args':
        opts.pcscdArgs = value().split(',');
        break;
      case '--keep':
        opts.keepRunDir = true;
        break;
      case '-h':
      case '--help':
        console.log('usage: node dist/test/e2e/boot.js [--sockets N] [--usb uhci|ehci|xhci] [--port N] [--password PW] [--tls] [--qxl] [--pcscd-args -d,-a] [--keep]');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a}`);
    }
  }
  return opts;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const vm: GuestVm = await bootGuestVm({ ...opts, onProgress: (l) => console.error(l) });
  const ready = vm.event('pcscd-ready');
  console.log(`guest up in ${Date.now() - t0} ms (pcscd-ready ${ready?.hostMs ?? '?'} ms after spawn, readers=${ready?.fields.readers ?? '?'})`);
  console.log(`run dir:      ${vm.runDir}`);
  if (vm.spicePort !== null) console.log(`SPICE:        127.0.0.1:${vm.spicePort}${vm.spicePassword !== null ? ' (password set)' : ''}`);
  if (vm.tlsPort !== null) console.log(`SPICE TLS:    127.0.0.1:${vm.tlsPort}${vm.caCertFile ? ` (CA ${vm.caCertFile})` : ''}`);
  vm.socketPorts.forEach((p, i) => console.log(`reader ${i}:     ccid-card-passthru on tcp 127.0.0.1:${p}`));
  console.log('type guest commands; :console :events :cmd :qmp CMD [JSON] :quit');

  let closing = false;
  const quit = async (): Promise<void> => {
    if (closing) return;
    closing = true;
    const r = await vm.shutdown();
    console.log(`shutdown: ${r.how} (${r.ms} ms)`);
    process.exit(0);
  };
  process.on('SIGINT', () => void quit());

  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: 'guest> ' });
  rl.prompt();
  for await (const line of rl) {
    const cmd = line.trim();
    try {
      if (cmd === '') {
        // nothing
      } else if (cmd === ':quit' || cmd === ':q') {
        break;
      } else if (cmd === ':console') {
        process.stdout.write(vm.console);
      } else if (cmd === ':events') {
        for (const e of vm.events) console.log(`${String(e.hostMs).padStart(6)} ms  ${e.name}  uptime=${e.uptimeMs} ${JSON.stringify(e.fields)}`);
      } else if (cmd === ':cmd') {
        console.log(vm.commandLine);
      } else if (cmd.startsWith(':qmp ')) {
        const [, name, ...rest] = cmd.split(' ');
        const args = rest.length ? (JSON.parse(rest.join(' ')) as Record<string, unknown>) : undefined;
        console.log(JSON.stringify(await vm.qmp(name ?? '', args), null, 2));
      } else {
        const r = await vm.run(cmd, { timeoutMs: 600_000 });
        process.stdout.write(r.stdout);
        process.stderr.write(r.stderr);
        console.log(`[rc=${r.rc} guest ${r.ms} ms, round trip ${r.hostMs} ms]`);
      }
    } catch (e) {
      console.error(e instanceof Error ? e.message : String(e));
    }
    if (vm.exited) break;
    rl.prompt();
  }
  await quit();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
