// Line-oriented Unix socket client for the VM's agent and QMP sockets, which QEMU creates a
// moment after it starts: connectUnix retries until they exist or the VM is gone.
import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { GuestVmError } from './guest-vm-types.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


export class LineSocket {
  private buf = '';
  private closedFlag = false;
  constructor(
    readonly socket: Socket,
    onLine: (line: string) => void,
    onClose: () => void,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).replace(/\r$/, '');
        this.buf = this.buf.slice(nl + 1);
        onLine(line);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closedFlag = true;
      onClose();
    });
  }
  get closed(): boolean {
    return this.closedFlag;
  }
  write(line: string): void {
    if (!this.closedFlag) this.socket.write(line + '\n');
  }
  destroy(): void {
    this.socket.destroy();
  }
}

export async function connectUnix(path: string, deadline: number, alive: () => boolean): Promise<Socket> {
  let lastErr = '';
  while (Date.now() < deadline && alive()) {
    if (existsSync(path)) {
      try {
        return await new Promise<Socket>((res, rej) => {
          const s = connect(path);
          s.once('connect', () => {
            s.removeAllListeners('error');
            res(s);
          });
          s.once('error', rej);
        });
      } catch (e) {
        lastErr = e instanceof Error ? e.message : String(e);
      }
    }
    await sleep(20);
  }
  throw new GuestVmError(`cannot connect ${path}${lastErr ? `: ${lastErr}` : ''}`);
}
