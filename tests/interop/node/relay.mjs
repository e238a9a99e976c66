// BullMQ's own Relay, as a user's Node process uses it, beside bullpen's
// Relay node (tests/relay.rs).
//
//   REDIS_URL=... node relay.mjs publish <topic> <data as JSON> [retain ms]
//     prints { mid, nodes, endpoints }
//   REDIS_URL=... node relay.mjs listen <pattern> <count> <ready key>
//     subscribes, then sets the Redis key <ready key> (for the test to
//     publish), and prints the first <count> messages it hears (within 20 s)
//     as a JSON array of { topic, data, retained }.
//   REDIS_URL=... node relay.mjs queue-pause|queue-resume <queue>
//     BullMQ's global Queue.pause() / resume() (not the Relay's); prints {}.
//
// With CLUSTER_NODES (host:port,...) and PREFIX instead of REDIS_URL, the
// same on a Redis Cluster (ioredis `Cluster`).
import { Queue, Relay } from 'bullmq';
import IORedis, { Cluster } from 'ioredis';

const [mode, ...args] = process.argv.slice(2);
const clusterNodes = process.env.CLUSTER_NODES?.split(',').map((hostPort) => {
  const [host, port] = hostPort.split(':');
  return { host, port: Number(port) };
});
const url = clusterNodes ? undefined : new URL(process.env.REDIS_URL);
const connection = clusterNodes ? new Cluster(clusterNodes) : { host: url.hostname, port: Number(url.port) };
const prefix = process.env.PREFIX;
const relay = new Relay({ connection, name: 'interop', ...(prefix ? { prefix } : {}) });
await relay.waitUntilReady();

if (mode === 'publish') {
  const [topic, data, retain] = args;
  const published = await relay.publish(topic, JSON.parse(data), { retain: Number(retain ?? 0) });
  console.log(JSON.stringify(published));
} else if (mode === 'listen') {
  const [pattern, count, readyKey] = args;
  const heard = [];
  const done = new Promise((resolve) => {
    relay.subscribe(pattern, ({ topic, data, retained }) => {
      heard.push({ topic, data, retained });
      if (heard.length >= Number(count)) resolve();
    }).then(async () => {
      const redis = clusterNodes ? new Cluster(clusterNodes) : new IORedis(connection);
      await redis.set(readyKey, '1');
      await redis.quit();
    });
  });
  await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 20_000))]);
  console.log(JSON.stringify(heard));
} else if (mode === 'queue-pause' || mode === 'queue-resume') {
  const queue = new Queue(args[0], { connection, ...(prefix ? { prefix } : {}) });
  await (mode === 'queue-pause' ? queue.pause() : queue.resume());
  await queue.close();
  console.log('{}');
} else {
  console.error(`unknown mode ${mode}`);
  process.exitCode = 2;
}
await relay.close();
if (clusterNodes) await connection.quit();
