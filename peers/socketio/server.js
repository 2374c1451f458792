// duplex's Socket.IO peer: a chat server that relays `chat` events, the way the Socket.IO
// tutorials teach it, so duplex's loadgen can measure Socket.IO beside duplex and nchan.
//
//   node server.js [--port N] [--mode all|others|direct] [--ping-interval MS]
//
// Listens on 127.0.0.1:N (0, the default, picks a free port) and prints
//   socketio listening on http://127.0.0.1:PORT
// when ready (--ping-interval sets Engine.IO's pingInterval, default 25000, so a test can see
// the server's pings without waiting 25 s). SIGTERM or SIGINT closes every socket and exits 0.
//
// A client connects with the handshake query `room=<room>&client=<id>` (the loadgen's ids,
// e.g. c3). It joins the room and a private room named after its id. It emits
//   socket.emit("chat", {body, to?, echo?}, ack)
// and every recipient gets `chat` with {from, body}; the ack answers {ok: true, recipients}.
// Who receives it, as Socket.IO's three broadcast forms:
//   - everyone in the room, sender included:      io.to(room).emit        (mode "all")
//   - everyone in the room but the sender:         socket.broadcast.to(room).emit (mode "others",
//                                                  or echo: false on the message)
//   - only client `to`:                            socket.to(to).emit      (mode "direct",
//                                                  or to: "<id>" on the message)
// --mode sets the form for messages that say neither (default "all"). `body` is relayed
// unchanged: it carries the loadgen's stamp.
//
// Transports are Socket.IO's defaults: HTTP long-polling and WebSocket, with upgrades; the
// client chooses. GET /healthz answers 200 ok (anything else not Socket.IO's is a 404).
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const ROOM = /^[A-Za-z0-9_-]{1,64}$/;
const MODES = ["all", "others", "direct"];

function parseArgs(argv) {
  const opts = { port: 0, mode: "all", pingInterval: 25000 };
  for (let i = 0; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]];
    if (key === "--port" && /^\d+$/.test(value ?? "") && Number(value) < 65536) {
      opts.port = Number(value);
    } else if (key === "--mode" && MODES.includes(value)) {
      opts.mode = value;
    } else if (key === "--ping-interval" && /^\d+$/.test(value ?? "") && Number(value) > 0) {
      opts.pingInterval = Number(value);
    } else {
      console.error(
        `server.js: bad argument ${key} ${value ?? ""} (expected --port 0..65535, --mode ${MODES.join("|")}, --ping-interval MS)`,
      );
      process.exit(2);
    }
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

const httpServer = http.createServer((req, res) => {
  // Socket.IO answers its own path (/socket.io/) before this handler sees it.
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
  } else {
    res
      .writeHead(404, { "content-type": "text/plain" })
      .end("not a Socket.IO chat endpoint: connect to /socket.io/\n");
  }
});

const io = new Server(httpServer, {
  // No browser pages are served from elsewhere; the loadgen sends no Origin.
  cors: undefined,
  // Room for large payloads in one polling answer under load (Socket.IO's default is 1 MB).
  maxHttpBufferSize: 1e6,
  pingInterval: opts.pingInterval,
});

const privateRoom = (id) => `client:${id}`;

io.on("connection", (socket) => {
  const { room, client } = socket.handshake.query;
  if (typeof room !== "string" || !ROOM.test(room) || typeof client !== "string" || !ROOM.test(client)) {
    socket.emit("error", { error: "handshake query needs room=<room> and client=<id>, each [A-Za-z0-9_-]{1,64}" });
    socket.disconnect(true);
    return;
  }
  socket.join(room);
  socket.join(privateRoom(client));

  socket.on("chat", (message, ack) => {
    const reply = typeof ack === "function" ? ack : () => {};
    if (message === null || typeof message !== "object" || typeof message.body !== "string") {
      reply({ ok: false, error: "chat needs {body: string, to?: string, echo?: boolean}" });
      return;
    }
    const relayed = { from: client, body: message.body };
    let form = opts.mode;
    if (typeof message.to === "string") form = "direct";
    else if (message.echo === false) form = "others";
    if (form === "direct") {
      const to = typeof message.to === "string" ? message.to : client;
      socket.to(privateRoom(to)).emit("chat", relayed);
    } else if (form === "others") {
      socket.broadcast.to(room).emit("chat", relayed);
    } else {
      io.to(room).emit("chat", relayed);
    }
    reply({ ok: true });
  });
});

function shutdown() {
  io.close(() => process.exit(0));
  // io.close waits for the HTTP server; do not let a stuck client keep us alive.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

httpServer.on("error", (err) => {
  console.error(`server.js: cannot listen on 127.0.0.1:${opts.port}: ${err.message}`);
  process.exit(1);
});
httpServer.listen(opts.port, "127.0.0.1", () => {
  console.log(`socketio listening on http://127.0.0.1:${httpServer.address().port}`);
});
