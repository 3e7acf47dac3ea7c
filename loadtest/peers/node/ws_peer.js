// A Node.js `ws` broadcast server (benchmark peer for Frys).
//
// Protocol (the benchmark's `plain` dialect): text `hello` -> `ok`, `sub:CHANNEL` -> `ok`,
// `ping` -> `pong`; a binary frame [len(ch)][ch][payload] is broadcast as `payload` to every
// subscriber of `ch` with `client.send(payload)`, the broadcast idiom of the ws documentation.
//
// Usage: node ws_peer.js PORT [HOST]
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const host = process.argv[3] || '127.0.0.1';
const rooms = new Map();

const wss = new WebSocketServer({ host, port, path: '/ws', perMessageDeflate: false, backlog: 4096 });
wss.on('connection', (ws) => {
  const joined = [];
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      const n = data[0];
      const room = rooms.get(data.toString('utf8', 1, 1 + n));
      if (!room) return;
      const payload = data.subarray(1 + n);
      for (const client of room) {
        if (client.readyState === 1) client.send(payload, { binary: true });
      }
      return;
    }
    const text = data.toString();
    if (text.startsWith('sub:')) {
      const ch = text.slice(4);
      if (!rooms.has(ch)) rooms.set(ch, new Set());
      rooms.get(ch).add(ws);
      joined.push(ch);
      ws.send('ok');
    } else if (text === 'ping') {
      ws.send('pong');
    } else if (text === 'hello') {
      ws.send('ok');
    }
  });
  ws.on('close', () => {
    for (const ch of joined) {
      const room = rooms.get(ch);
      if (room) room.delete(ws);
    }
  });
  ws.on('error', () => {});
});
wss.on('listening', () => console.log(`ws peer listening on ${host}:${port}`));
