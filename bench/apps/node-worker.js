// The hello worker shared by the Node cluster and PM2 adapters: answers `Worker: <pid>`
// (keep-alive unless the client says `Connection: close`), tells the harness it is ready
// by creating $READY_DIR/<pid> once it listens, and stops gracefully on `stopSignal`.
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

function serve(stopSignal) {
  const body = `Worker: ${process.pid}`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  server.listen(parseInt(process.env.PORT, 10), process.env.HOST || '127.0.0.1', () => {
    if (process.env.READY_DIR) fs.writeFileSync(path.join(process.env.READY_DIR, String(process.pid)), '');
  });
  // server.close() also closes idle keep-alive connections (Node >= 19).
  process.on(stopSignal, () => server.close(() => process.exit(0)));
}

module.exports = { serve };
if (require.main === module) serve(process.env.STOP_SIGNAL || 'SIGINT'); // PM2 stops apps with SIGINT
