// Node's cluster IPC, the peer of the emitter benchmark: round trips primary -> worker ->
// primary with process.send, one-way throughput to the worker, then round trips worker ->
// primary -> worker started by the worker. Prints one JSON line.
'use strict';
const cluster = require('cluster');
const ROUND_TRIPS = Number(process.argv[2] || 20000);
const MESSAGES = Number(process.argv[3] || 500000);

if (cluster.isPrimary) {
  const worker = cluster.fork();
  worker.once('online', () => {
    const latencies = [];
    let i = 0;
    let sentAt = 0n;
    const ping = () => { sentAt = process.hrtime.bigint(); worker.send({ t: 'ping', i }); };
    worker.on('message', (m) => {
      if (m.t === 'pong') {
        if (i >= 2000) latencies.push(Number(process.hrtime.bigint() - sentAt) / 1000);
        i += 1;
        if (i < ROUND_TRIPS + 2000) return ping();
        latencies.sort((a, b) => a - b);
        const pick = (q) => latencies[Math.floor((latencies.length - 1) * q)];
        const rtt = { p50: pick(0.5), p99: pick(0.99) };
        const start = process.hrtime.bigint();
        let sent = 0;
        const flood = () => {
          // Respect back-pressure like the emitter does: stop when send() says the pipe is full.
          while (sent < MESSAGES) {
            sent += 1;
            if (!worker.send({ t: 'flood' })) { setImmediate(flood); return; }
          }
          worker.send({ t: 'end' });
        };
        let oneWay = 0;
        worker.on('message', (c) => {
          if (c.t === 'count') {
            oneWay = c.n / (Number(process.hrtime.bigint() - start) / 1e9);
            worker.send({ t: 'wrtt', n: ROUND_TRIPS });
          } else if (c.t === 'wping') {
            worker.send({ t: 'wpong', i: c.i });
          } else if (c.t === 'wrtt-done') {
            console.log(JSON.stringify({
              rtt_p50_us: rtt.p50, rtt_p99_us: rtt.p99, one_way_per_sec: oneWay,
              worker_rtt_p50_us: c.p50, worker_rtt_p99_us: c.p99,
            }));
            worker.kill();
            process.exit(0);
          }
        });
        flood();
      }
    });
    ping();
  });
} else {
  let n = 0;
  // Worker-originated round trips: the worker pings the primary and waits for its answer.
  let w = { total: 0, i: 0, sentAt: 0n, latencies: [] };
  const wping = () => { w.sentAt = process.hrtime.bigint(); process.send({ t: 'wping', i: w.i }); };
  process.on('message', (m) => {
    if (m.t === 'ping') process.send({ t: 'pong', i: m.i });
    else if (m.t === 'flood') n += 1;
    else if (m.t === 'end') process.send({ t: 'count', n });
    else if (m.t === 'wrtt') { w.total = m.n + 2000; wping(); }
    else if (m.t === 'wpong') {
      if (w.i >= 2000) w.latencies.push(Number(process.hrtime.bigint() - w.sentAt) / 1000);
      w.i += 1;
      if (w.i < w.total) return wping();
      w.latencies.sort((a, b) => a - b);
      const pick = (q) => w.latencies[Math.floor((w.latencies.length - 1) * q)];
      process.send({ t: 'wrtt-done', p50: pick(0.5), p99: pick(0.99) });
    }
  });
}
