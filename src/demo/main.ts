#!/usr/bin/env node
// Entry point of `npm run demo` (see demo-command.ts).
import { runDemo } from './demo-command.js';

process.exitCode = await runDemo(process.argv.slice(2));
// Everything the demo started is stopped by now; a stray handle must not keep the process alive.
setTimeout(() => process.exit(), 2_000).unref();
