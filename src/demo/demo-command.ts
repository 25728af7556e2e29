// `npm run demo [-- --reader NAME]`: the whole product at work on one machine. Builds (or reuses)
// the tiny Linux VM, boots it under QEMU with spice-server and a USB CCID reader, forwards the
// demo card (or a real card) with the real `spice-smartcard connect`, and reports what the
// guest's own pcscd and OpenSC see. Everything it started is stopped at the end or on Ctrl-C.
// Exit status: 0 every check passed (skipped ones allowed), 1 a check failed or the demo could
// not run (the reason and the fix are printed), 2 usage, 130 interrupted.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { DEMO_CARD_PIN } from '../../vsc/soft-card/demo-card.js';
import { canPrompt, promptPassword } from '../cli/prompt.js';
import { BridgeProcess, type BridgeEventLine } from './bridge-process.js';
import { buildGuest, findQemu, GuestBuildError, type GuestImages } from './guest-image.js';
import { checkAtr, checkCertificates, checkReader, checkSignature, type DemoCheck } from './guest-checks.js';
import type { GuestVm } from './guest-vm-types.js';
import { bootGuestVm } from './guest-vm.js';
import { checkDemoPrerequisites, prerequisitesAdvice } from './prerequisites.js';
import { Progress, seconds } from './progress.js';
import { allPassed, formatReport, type DemoSetup } from './report.js';

const USAGE = `Usage: npm run demo [-- --reader NAME]

Builds (or reuses) a tiny Linux VM, boots it under QEMU with a SPICE smartcard device, forwards
the built-in demo PIV card into it with "spice-smartcard connect", and reports what the VM's own
pcscd and OpenSC see: the reader, the card's ATR, its certificates, a signature made in the VM.

  --reader NAME   forward the card in a local PC/SC reader instead (exact name or glob). Its PIN
                  for the signature check comes from SPICE_SMARTCARD_PIN or a prompt; without
                  one the signature check is skipped (a guessed PIN would cost a try).

Exit status: 0 every check passed, 1 a check failed or the demo could not run, 2 usage, 130 interrupted.`;

export interface DemoIo {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

/** How long the bridge may take to put the card in: a real card may still have to be inserted. */
const CARD_WAIT_MS = { demo: 60_000, reader: 180_000 };
/** Bound of the clean-up after the run or a Ctrl-C; a second Ctrl-C does not wait at all. */
const CLEANUP_MS = 20_000;

class DemoStopped extends Error {}

class DemoFailure extends Error {
  constructor(
    readonly what: string,
    message: string,
  ) {
    super(message);
  }
}

interface Running {
  vm?: GuestVm;
  bridge?: BridgeProcess;
}

export async function runDemo(args: string[], io: DemoIo = { out: process.stdout, err: process.stderr }): Promise<number> {
  let values: { reader?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({ args, options: { reader: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }));
  } catch (e) {
    io.err.write(`${e instanceof Error ? e.message : String(e)}\n\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    io.out.write(`${USAGE}\n`);
    return 0;
  }
  const reader = values.reader;
  if (reader !== undefined && reader.trim() === '') {
    io.err.write(`--reader needs a reader name or a glob such as "Yubico*".\n`);
    return 2;
  }

  const progress = new Progress(io.err);
  progress.say(`spice-smartcard demo: ${reader === undefined ? 'the demo PIV card' : `the card in "${reader}"`}, forwarded into a tiny Linux VM over SPICE`);
  const prerequisites = await checkDemoPrerequisites({ reader: reader !== undefined });
  if (prerequisites.missingPackages.length > 0 || prerequisites.problems.length > 0) {
    progress.say(prerequisitesAdvice(prerequisites));
    return 1;
  }
  const pin = reader === undefined ? DEMO_CARD_PIN : await realCardPin(reader, progress);

  const controller = new AbortController();
  const running: Running = {};
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts += 1;
    if (interrupts === 1) {
      progress.say('Stopping everything the demo started …');
      controller.abort();
      return;
    }
    // A second Ctrl-C: no more waiting. Exiting kills QEMU too (it dies with this process).
    running.bridge?.kill();
    progress.say('Second interrupt: exiting now.');
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const steps = runSteps(reader, pin, progress, running, controller.signal);
    // Ctrl-C goes straight to the clean-up: a step may be waiting on the guest for many seconds.
    steps.catch(() => undefined);
    const checks = await Promise.race([steps, whenAborted(controller.signal)]);
    io.out.write(formatReport(checks.setup, checks.results));
    return allPassed(checks.results) ? 0 : 1;
  } catch (e) {
    if (e instanceof DemoStopped || controller.signal.aborted) {
      progress.say('Interrupted.');
      return 130;
    }
    progress.say(failureText(e));
    return 1;
  } finally {
    await stopAll(running, progress);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function whenAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new DemoStopped()), { once: true }));
}

async function realCardPin(reader: string, progress: Progress): Promise<string | undefined> {
  const fromEnv = process.env['SPICE_SMARTCARD_PIN'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (!canPrompt()) return undefined;
  progress.say('The signature check logs in to the card in the VM. A wrong PIN costs one of its tries.');
  const answer = await promptPassword(`PIN of the card in "${reader}" (Enter to skip the signature check): `).catch(() => '');
  return answer === '' ? undefined : answer;
}

interface StepsResult {
  setup: DemoSetup;
  results: DemoCheck[];
}

async function runSteps(reader: string | undefined, pin: string | undefined, progress: Progress, running: Running, signal: AbortSignal): Promise<StepsResult> {
  const stopped = (): void => {
    if (signal.aborted) throw new DemoStopped();
  };

  progress.start('[1/4] VM image (Debian kernel, busybox, pcscd, OpenSC; built once into .cache/guest)');
  let images: GuestImages;
  try {
    images = await buildGuest({
      signal,
      onProgress: (line) => {
        if (!/cache is fresh/.test(line)) progress.detail(line.replace(/^\[build-guest [^\]]*\]\s*/, ''));
      },
    });
  } catch (e) {
    stopped();
    throw e;
  }
  progress.done(images.cached ? `cached (${seconds(images.ms)})` : `built in ${seconds(images.ms)}`);
  stopped();

  progress.start('[2/4] Booting the VM under QEMU: spice-server, USB CCID reader, pcscd in the guest');
  const vm = await bootGuestVm({ images, signal, name: 'spice-smartcard-demo' });
  running.vm = vm;
  const bootMs = vm.event('agent-ready')?.hostMs;
  progress.done(`up${bootMs !== undefined ? ` in ${seconds(bootMs)}` : ''}: SPICE on 127.0.0.1:${vm.spicePort}`);
  stopped();

  const uri = `spice://127.0.0.1:${vm.spicePort}`;
  const cardArgs = reader === undefined ? ['--demo-card'] : ['--reader', reader];
  const bridge = new BridgeProcess(['connect', uri, ...cardArgs]);
  running.bridge = bridge;
  progress.start(`[3/4] Forwarding the card: ${bridge.commandLine}`);
  const stopNotices = bridge.onEvent((e) => {
    if (e.event === 'notice' && typeof e['message'] === 'string') progress.detail(e['message']);
  });
  const started = Date.now();
  let inserted: BridgeEventLine;
  try {
    inserted = await bridge.waitForEvent('card-inserted', reader === undefined ? CARD_WAIT_MS.demo : CARD_WAIT_MS.reader, signal);
    await vm.waitFor('card_present', 30_000);
  } catch (e) {
    stopped();
    throw new DemoFailure('forward the card', e instanceof Error ? e.message : String(e));
  } finally {
    stopNotices();
  }
  progress.done(`card inserted in the VM (${seconds(Date.now() - started)})`);
  stopped();

  progress.start("[4/4] Checking what the VM's own software sees");
  const results: DemoCheck[] = [];
  results.push(await checkReader(vm));
  stopped();
  const atr = typeof inserted['atr'] === 'string' ? inserted['atr'] : undefined;
  results.push(await checkAtr(vm, atr));
  stopped();
  const certs = await checkCertificates(vm);
  results.push(certs.check);
  stopped();
  results.push(await checkSignature(vm, certs.certificates, { pin, showPin: reader === undefined }));
  stopped();
  results.push(await checkRemoval(vm, bridge));
  progress.done(`done (${results.filter((r) => r.status === 'ok').length}/${results.length} ok)`);

  const linked = bridge.events.find((e) => e.event === 'linked');
  const session = typeof linked?.['sessionId'] === 'number' ? ` (session 0x${linked['sessionId'].toString(16).padStart(8, '0')})` : '';
  return {
    setup: {
      vm: `${qemuVersion()} (${vm.qemuArgs.includes('kvm') ? 'KVM' : 'TCG'}), kernel ${vm.event('init')?.fields['kernel'] ?? '?'}, USB CCID reader on the SPICE smartcard channel`,
      bridge: `$ ${bridge.commandLine}`,
      bridgeState: `linked${session}, reader added, card inserted; ${bridge.apdus} APDUs forwarded`,
    },
    results,
  };
}

/** Ctrl-C to the bridge, as a user stops it: the card must leave the VM and the bridge exit 0. */
async function checkRemoval(vm: GuestVm, bridge: BridgeProcess): Promise<DemoCheck> {
  const started = Date.now();
  const commands = ['opensc-tool --list-readers'];
  const code = await bridge.stop();
  const gone = await vm.waitFor('! card_present', 20_000).then(
    () => true,
    () => false,
  );
  const ms = Date.now() - started;
  const base = { id: 'removal' as const, title: 'removal', details: [], commands, ms };
  if (code === 0 && gone) return { ...base, status: 'ok', summary: `connect stopped (Ctrl-C, exit 0): the card left the VM; the reader stays (it is the VM's USB device)` };
  const why = [code !== 0 ? `connect exited with status ${code ?? 'unknown'} (${bridge.reason()})` : '', gone ? '' : 'the VM still sees a card'].filter((t) => t !== '');
  return { ...base, status: 'failed', summary: why.join('; ') };
}

function qemuVersion(): string {
  const qemu = findQemu();
  if (qemu === null) return 'QEMU';
  const r = spawnSync(qemu, ['--version'], { encoding: 'utf8', timeout: 5_000 });
  return (r.stdout ?? '').split('\n')[0]?.replace(/^QEMU emulator version /, 'QEMU ').trim() || 'QEMU';
}

/** Stops the bridge and the VM, each bounded; never throws. */
async function stopAll(running: Running, progress: Progress): Promise<void> {
  const work = (async () => {
    if (running.bridge?.running) await running.bridge.stop(5_000).catch(() => undefined);
    if (running.vm && !running.vm.exited) await running.vm.shutdown().catch(() => undefined);
  })();
  let timer: NodeJS.Timeout | undefined;
  const bounded = await Promise.race([work.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), CLEANUP_MS)))]);
  clearTimeout(timer);
  if (!bounded) {
    running.bridge?.kill();
    progress.say('Clean-up took too long: the bridge was killed; the VM dies with this process.');
  } else if (running.vm) {
    progress.say('Stopped the bridge and the VM.');
  }
}

function failureText(e: unknown): string {
  if (e instanceof GuestBuildError) {
    if (e.missingPackages.length > 0) return prerequisitesAdvice({ missingPackages: e.missingPackages, problems: [] });
    return `The VM image could not be built:\n${e.message}`;
  }
  if (e instanceof DemoFailure) return `The demo could not ${e.what}: ${e.message}`;
  const message = e instanceof Error ? e.message : String(e);
  const hint = /spice/i.test(message) && /not support|unknown option|invalid option/i.test(message)
    ? '\nThis QEMU has no SPICE support. On Ubuntu 24.04 and later: apt-get install qemu-system-modules-spice.'
    : '';
  return `The demo could not run: ${message}${hint}`;
}
