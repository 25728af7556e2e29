#!/usr/bin/env node
// Entry point of the spice-smartcard command (package.json "bin").
import { reportError, run } from './app.js';

process.on('unhandledRejection', (e) => {
  process.exitCode = reportError(e);
});
process.exitCode = await run(process.argv.slice(2));
// One-shot commands end when their work is done; a socket the server keeps half-open must not keep
// the process alive.
setTimeout(() => process.exit(), 3_000).unref();
