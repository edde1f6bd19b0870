// A whole class on the official socket.io-client for pytest: one Node process, one client per
// member, each with socket.io-client's own options (default reconnection unless told otherwise)
// and doing what the lesson app does: joining the lesson on every connect, reconnects included.
// JSON lines on stdout, diagnostics on stderr only (driver.mjs drives a single client instead).
//
// argv[2]: {"url": "http://host:port", "opts": {...socket.io-client options},
//           "members": [{"name": "u1", "join": {...join_lesson request}}, ...]}
// Events: connect {name, id}, joined {name, sid, ack} (the ack of the join sent on that connect),
//   disconnect {name, reason}, connect_error {name, message}.
// Commands on stdin: {"op": "close"} closes every client (no reconnection after it).
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const { url, opts = {}, members } = JSON.parse(process.argv[2]);

function write(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

const sockets = members.map(({ name, join }) => {
  // forceNew: every member has an Engine.IO connection of its own, as separate browsers do
  const socket = io(url, { forceNew: true, ...opts });
  socket.on("connect", () => {
    const sid = socket.id;
    write({ type: "connect", name, id: sid });
    socket.emit("join_lesson", join, (ack) => write({ type: "joined", name, sid, ack }));
  });
  socket.on("disconnect", (reason) => write({ type: "disconnect", name, reason }));
  socket.on("connect_error", (err) => write({ type: "connect_error", name, message: err.message }));
  return socket;
});

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.op === "close") {
    for (const socket of sockets) socket.close();
  } else {
    process.stderr.write(`classroom: unknown command ${line}\n`);
  }
});
// pytest closing stdin (or dying) ends the class.
process.stdin.on("end", () => process.exit(0));
