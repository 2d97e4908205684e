'use strict';
// jsii's kernel (lib/program.js) speaks its line protocol on fd 3. jsii-runtime.js, the
// script jsii starts by default, is a second Node process that only relays its own
// stdin/stdout to that fd. Loading the kernel here with fd 3 mapped onto stdin/stdout
// drops the relay: one Node process instead of two, and one hop less per call.
// sync/render/node_runtime.py puts this file next to the kernel and points JSII_RUNTIME at it.
const fs = require('fs');
const v8 = require('v8');

// The kernel never frees what crossed into Python, and V8 grows its heap rather than
// collect while the kernel is busy: a full collection whenever GARBAGE_BYTES were
// allocated since the last one keeps the heap near what is alive (figures:
// docs/performance.md, "Design choices").
const GARBAGE_BYTES = 16 * 1024 * 1024;
v8.setFlagsFromString('--expose-gc');
const gc = require('vm').runInNewContext('gc');
let alive = 0;
function collectIfDue() {
  if (v8.getHeapStatistics().used_heap_size - alive > GARBAGE_BYTES) {
    gc();
    alive = v8.getHeapStatistics().used_heap_size;
  }
}

const readSync = fs.readSync;
const writeSync = fs.writeSync;
fs.readSync = (fd, ...args) => {
  if (fd !== 3) return readSync(fd, ...args);
  collectIfDue(); // between requests: the Python side is busy with the last answer
  return readSync(0, ...args);
};
fs.writeSync = (fd, ...args) => writeSync(fd === 3 ? 1 : fd, ...args);

// stdout now carries the protocol: whatever JavaScript prints goes to stderr (jsii's
// Python side copies that to its own stderr). Replacing the getter also keeps Node from
// ever opening a (non-blocking) stream on fd 1.
Object.defineProperty(process, 'stdout', { configurable: true, get: () => process.stderr });

require('./lib/program.js');
