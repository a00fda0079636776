'use strict';
// The node.js peer of examples/hello: node's own cluster module, W workers each serving
// "hello world" with http.createServer on one shared port.
//
//   node bench/node/cluster-hello.js [WORKERS] [PORT]
//
// WORKERS and PORT may also come from the environment (WORKERS, PORT); PORT 0 (the default)
// picks a free port. Once every worker has emitted 'listening', the primary prints one line to
// stderr, in the same shape as cluster2's:
//
//   ready app=0.0.0.0:PORT workers=PID,PID,...
//
// SIGTERM or SIGINT stops the workers and exits 0 (1 if they did not stop within 5 s).

const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');

function intArg(index, env, fallback) {
  const raw = process.argv[index] ?? process.env[env];
  if (raw === undefined || raw === '') return fallback;
  const n = Number.parseInt(raw, 10);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`error: ${env} must be a non-negative integer, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

if (cluster.isPrimary) {
  const workers = Math.max(1, intArg(2, 'WORKERS', os.availableParallelism()));
  const port = intArg(3, 'PORT', 0);
  let listening = 0;
  let ready = false;
  let stopping = false;

  cluster.on('listening', (worker, address) => {
    listening += 1;
    if (!ready && listening === workers) {
      ready = true;
      const pids = Object.values(cluster.workers).map((w) => w.process.pid);
      process.stderr.write(`ready app=0.0.0.0:${address.port} workers=${pids.join(',')}\n`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) {
      console.error(`worker ${worker.process.pid} exited (${signal || code}) before stop; exiting`);
      stop(1);
    }
  });

  function stop(code) {
    if (stopping) return;
    stopping = true;
    const timer = setTimeout(() => {
      for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
      process.exit(1);
    }, 5000);
    timer.unref();
    cluster.disconnect(() => process.exit(code));
  }
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));

  for (let i = 0; i < workers; i += 1) {
    cluster.fork({ PORT: String(port) });
  }
} else {
  // Ctrl-C in a terminal reaches the whole process group: the primary handles it and stops
  // the workers through cluster.disconnect().
  process.on('SIGINT', () => {});
  http
    .createServer((req, res) => {
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end('hello world');
    })
    .listen(Number(process.env.PORT), '0.0.0.0');
}
