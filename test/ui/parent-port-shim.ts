// Loaded with `node --import` before app/bridge/utility-entry.js: gives a plain Node child process the
// `process.parentPort` an Electron utility process has, carried over the child_process IPC channel.
// Like Electron's, it queues messages until a 'message' listener is registered.
import { EventEmitter } from 'node:events';

interface ShimPort extends EventEmitter {
  postMessage(message: unknown): void;
}

const port = new EventEmitter() as ShimPort;
const queued: unknown[] = [];
port.postMessage = (message: unknown) => {
  process.send?.(message);
};
port.on('newListener', (event: string) => {
  if (event === 'message') setImmediate(() => queued.splice(0).forEach((m) => port.emit('message', { data: m, ports: [] })));
});
process.on('message', (message: unknown) => {
  if (port.listenerCount('message') === 0) queued.push(message);
  else port.emit('message', { data: message, ports: [] });
});
Object.defineProperty(process, 'parentPort', { value: port });
