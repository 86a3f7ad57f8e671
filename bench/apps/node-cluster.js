// Node's core `cluster` module, written the way its docs suggest: the primary forks N
// workers and forks a new one on every 'exit' (Node restarts nothing by itself).
// SIGTERM: stop forking, ask every worker to stop, exit once all are gone (7.5 s bound,
// as clutch's force-exit timeout). Scheduling policy: Node's default (round-robin in the
// primary) unless NODE_CLUSTER_SCHED_POLICY=none is set.
'use strict';
const cluster = require('node:cluster');
const { serve } = require('./node-worker');

if (cluster.isPrimary) {
  const workers = parseInt(process.env.WORKERS || '2', 10);
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', () => {
    if (!stopping) cluster.fork();
    else if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  process.on('SIGTERM', () => {
    stopping = true;
    if (Object.keys(cluster.workers).length === 0) process.exit(0);
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM');
    setTimeout(() => process.exit(4), 7500).unref();
  });
} else {
  serve('SIGTERM');
}
