// Drives one official socket.io-client Manager (one Engine.IO connection, any number of
// namespaces) for pytest: JSON-line commands on stdin, JSON-line events on stdout.
// Binary values travel as {"$bin": "<base64>"} both ways. Diagnostics go to stderr only.
//
// Commands:
//   {"op": "connect", "url": "http://host:port", "ns": "/", "opts": {...}, "auth": {...}}
//       the first connect creates the Manager with `opts` (transports, upgrade, ...);
//       later ones open another namespace on the same Manager.
//   {"op": "emit", "ns": "/", "event": "name", "args": [...], "ref": "r1"}
//       with "ref", the ack arrives as {"type": "ack", "ref": "r1", "args": [...]}.
//   {"op": "reply", "ns": "/", "event": "name", "args": [...]}
//       answers every later server event `name` that asks for an ack with `args`.
//   {"op": "disconnect", "ns": "/"}
//
// Events: open {transport} (Engine.IO session up), upgrade {transport}, ping (a server
//   heartbeat), connect {ns, id, transport}, connect_error {ns, message, data},
//   disconnect {ns, reason}, event {ns, name, args, ack}, ack {ref, args}.
import { createInterface } from "node:readline";
import { Manager } from "socket.io-client";

let manager = null;
const sockets = new Map();
const replies = new Map(); // "ns event" -> ack args

function write(message) {
  process.stdout.write(JSON.stringify(encode(message)) + "\n");
}

function encode(value) {
  if (ArrayBuffer.isView(value)) {
    return { $bin: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") };
  }
  if (value instanceof ArrayBuffer) return { $bin: Buffer.from(value).toString("base64") };
  if (Array.isArray(value)) return value.map(encode);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encode(v)]));
  }
  return value;
}

function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$bin") return Buffer.from(value.$bin, "base64");
    return Object.fromEntries(keys.map((k) => [k, decode(value[k])]));
  }
  return value;
}

function connect({ url, ns = "/", opts = {}, auth }) {
  if (!manager) {
    // No reconnection: a disconnect must stay observable with its original reason.
    manager = new Manager(url, { reconnection: false, ...opts });
    // "open" comes before any upgrade probe, so it names the transport the session started on.
    manager.on("open", () => write({ type: "open", transport: manager.engine.transport.name }));
    manager.engine.on("upgrade", (transport) => write({ type: "upgrade", transport: transport.name }));
    manager.on("ping", () => write({ type: "ping" }));
  }
  const socket = manager.socket(ns, auth === undefined ? {} : { auth });
  sockets.set(ns, socket);
  socket.on("connect", () =>
    write({ type: "connect", ns, id: socket.id, transport: manager.engine.transport.name }),
  );
  socket.on("connect_error", (err) =>
    write({ type: "connect_error", ns, message: err.message, data: err.data ?? null }),
  );
  socket.on("disconnect", (reason) => write({ type: "disconnect", ns, reason }));
  socket.onAny((name, ...args) => {
    const ack = typeof args.at(-1) === "function" ? args.pop() : null;
    write({ type: "event", ns, name, args, ack: ack !== null });
    const reply = replies.get(`${ns} ${name}`);
    if (ack && reply) ack(...reply);
  });
}

function emit({ ns = "/", event, args = [], ref }) {
  const socket = sockets.get(ns);
  if (ref === undefined) socket.emit(event, ...args);
  else socket.emit(event, ...args, (...ackArgs) => write({ type: "ack", ref, args: ackArgs }));
}

const commands = {
  connect,
  emit,
  reply: ({ ns = "/", event, args = [] }) => replies.set(`${ns} ${event}`, args),
  disconnect: ({ ns = "/" }) => sockets.get(ns).disconnect(),
};

createInterface({ input: process.stdin }).on("line", (line) => {
  try {
    const command = decode(JSON.parse(line));
    commands[command.op](command);
  } catch (err) {
    process.stderr.write(`driver: bad command ${line}: ${err.stack}\n`);
  }
});
// pytest closing stdin (or dying) ends the driver.
process.stdin.on("end", () => process.exit(0));
