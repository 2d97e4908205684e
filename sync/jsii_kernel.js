'use strict';
// jsii's kernel (lib/program.js) speaks its line protocol on fd 3. jsii-runtime.js, the
// script jsii starts by default, is a second Node process that only relays its own
// stdin/stdout to that fd. Loading the kernel here with fd 3 mapped onto stdin/stdout
// drops the relay: one Node process instead of two (~60 MB) and one hop less per call.
// sync/jsii_kernel.py puts this file next to the kernel and points JSII_RUNTIME at it.
const fs = require('fs');

const readSync = fs.readSync;
const writeSync = fs.writeSync;
fs.readSync = (fd, ...args) => readSync(fd === 3 ? 0 : fd, ...args);
fs.writeSync = (fd, ...args) => writeSync(fd === 3 ? 1 : fd, ...args);

// stdout now carries the protocol: whatever JavaScript prints goes to stderr (jsii's
// Python side copies that to its own stderr). Replacing the getter also keeps Node from
// ever opening a (non-blocking) stream on fd 1.
Object.defineProperty(process, 'stdout', { configurable: true, get: () => process.stderr });

require('./lib/program.js');
