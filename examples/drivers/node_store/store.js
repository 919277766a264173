#!/usr/bin/env node
// A Node.js offset store of its own layout, as a lance-offsets driver store (docs/drivers.md).
//
// Layout: <dir>/<topic_id>_<consumer_id>.json, each {"topic":"7","consumer":"1","offset":"42"}
// and a newline. Offsets stay decimal strings from the request to the file and back: a JS
// Number holds integers exactly only up to 2^53, and offsets go to 2^64-1 (BigInt checks the
// ranges). A save writes a unique temporary file, fsyncs it, renames it over the key's file and
// fsyncs the directory: each save and delete is one atomic rename or unlink, so handles in
// several processes need no lock. Node's standard library only.
//
// --lossy gives the realistic defect: the offset kept as a JSON number, as JSON.stringify and
// JSON.parse keep it by default, which rounds everything above 2^53.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');

const U32 = (1n << 32n) - 1n;
const U64 = (1n << 64n) - 1n;
const lossy = process.argv.includes('--lossy');
let dir = null;
let temps = 0;

class Failure extends Error {
  constructor(kind, message, file) {
    super(message);
    this.kind = kind;
    this.file = file;
  }
}

function fromError(error) {
  if (error instanceof Failure) return error;
  const failure = new Failure('io', error.message, error.path);
  failure.errno = error.code;
  return failure;
}

// A protocol number: a decimal string within max, returned in its canonical spelling.
function number(request, name, max) {
  const text = request[name];
  if (typeof text !== 'string' || !/^[0-9]+$/.test(text)) {
    throw new Failure('invalid_argument', `${name} must be a non-negative decimal string, got ${JSON.stringify(text)}`);
  }
  const value = BigInt(text);
  if (value > max) throw new Failure('invalid_argument', `${name} must be in 0..${max}, got ${text}`);
  return value.toString();
}

function keyOf(request) {
  return [number(request, 'topic_id', U32), number(request, 'consumer_id', U64)];
}

function fileOf(topic, consumer) {
  return path.join(dir, `${topic}_${consumer}.json`);
}

function syncDir() {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function read(file, topic, consumer) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (error.code === 'ENOENT') return null;
    throw error;
  }
  let record;
  try {
    record = JSON.parse(text);
  } catch (error) {
    throw new Failure('corrupt', `corrupt offset file ${file}: not JSON (${error.message})`, file);
  }
  const offset = record === null ? undefined : record.offset;
  const spelled = typeof offset === 'number' ? String(BigInt(Math.round(offset))) : offset;
  if (!text.endsWith('\n') || record.topic !== topic || record.consumer !== consumer ||
      typeof spelled !== 'string' || !/^[0-9]+$/.test(spelled)) {
    throw new Failure('corrupt', `corrupt offset file ${file}: ${JSON.stringify(text.slice(0, 60))}`, file);
  }
  return spelled;
}

function writeSynced(file, text) {
  const fd = fs.openSync(file, 'wx');
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function save(topic, consumer, offset) {
  const record = { topic, consumer, offset: lossy ? Number(offset) : offset };
  const temp = path.join(dir, `.tmp-${process.pid}-${temps++}-${topic}_${consumer}`);
  try {
    writeSynced(temp, JSON.stringify(record) + '\n');
    fs.renameSync(temp, fileOf(topic, consumer));
  } catch (error) {
    try { fs.unlinkSync(temp); } catch (ignored) { /* it may not exist */ }
    throw error;
  }
  syncDir();
}

function remove(topic, consumer) {
  try {
    fs.unlinkSync(fileOf(topic, consumer));
  } catch (error) {
    if (error.code === 'ENOENT') return;
    throw error;
  }
  syncDir();
}

function listAll() {
  const rows = [];
  for (const name of fs.readdirSync(dir).sort()) {
    const match = /^(0|[1-9][0-9]*)_(0|[1-9][0-9]*)\.json$/.exec(name);
    if (!match || BigInt(match[1]) > U32 || BigInt(match[2]) > U64) continue;
    const offset = read(path.join(dir, name), match[1], match[2]);
    if (offset !== null) rows.push([match[1], match[2], offset]);
  }
  return rows;
}

function answer(request) {
  switch (request.op) {
    case 'open':
      dir = request.path;
      fs.mkdirSync(dir, { recursive: true });
      return { protocol: 1, capabilities: { persistent: true, shared: true, durable: true } };
    case 'load': {
      const [topic, consumer] = keyOf(request);
      return read(fileOf(topic, consumer), topic, consumer);
    }
    case 'save': {
      const [topic, consumer] = keyOf(request);
      save(topic, consumer, number(request, 'offset', U64));
      return null;
    }
    case 'delete': {
      const [topic, consumer] = keyOf(request);
      remove(topic, consumer);
      return null;
    }
    case 'list_all':
      return listAll();
    case 'close':
      return null;
    default:
      throw new Failure('invalid_argument', `unknown op ${JSON.stringify(request.op)}`);
  }
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on('line', (line) => {
  const request = JSON.parse(line);
  const reply = { id: request.id };
  try {
    reply.ok = answer(request);
  } catch (error) {
    const failure = fromError(error);
    reply.error = { kind: failure.kind, message: failure.message };
    if (failure.file) reply.error.path = failure.file;
    if (failure.errno) reply.error.errno = failure.errno;
  }
  fs.writeSync(1, JSON.stringify(reply) + '\n');
  if (request.op === 'close') process.exit(0);
});
