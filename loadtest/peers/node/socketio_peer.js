// A Node.js socket.io server (benchmark peer for Frys): room emit.
//
// Events: `join(ch, ack)` puts the socket in room `ch`; `echo(ack)` is a round trip;
// `pub(ch, data)` emits `m(data)` to the room with `io.to(ch).emit`. WebSocket transport
// only. The heartbeat is stretched so that a benchmark counting bytes sees no heartbeat
// packets mid-run.
//
// Usage: node socketio_peer.js PORT [HOST] [PING_INTERVAL_MS]
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2]);
const host = process.argv[3] || '127.0.0.1';
const pingInterval = Number(process.argv[4] || 600000);

const server = http.createServer();
const io = new Server(server, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  pingInterval,
  pingTimeout: pingInterval,
  maxHttpBufferSize: 1 << 20,
  serveClient: false,
  cors: { origin: '*' },
});
io.on('connection', (socket) => {
  socket.on('join', (ch, ack) => {
    socket.join(ch);
    if (typeof ack === 'function') ack(true);
  });
  socket.on('echo', (ack) => {
    if (typeof ack === 'function') ack(true);
  });
  socket.on('pub', (ch, data) => {
    io.to(ch).emit('m', data);
  });
});
server.listen({ host, port, backlog: 4096 }, () =>
  console.log(`socket.io peer listening on ${host}:${port}`));
