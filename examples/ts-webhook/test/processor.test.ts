// The processor's own tests: `npm test`, in Node, without Redis or a
// network: `fetch` is replaced by a receiver that checks the signature as a
// real one would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { UnrecoverableError } from 'bullpen';
import { testJob } from 'bullpen/testing';
import { process } from '../src/processor.ts';

const SECRET = 'not-a-real-secret';
globalThis.process.env.WEBHOOK_URL = 'https://hooks.example.com/orders';
globalThis.process.env.WEBHOOK_SECRET = SECRET;

function receiver(status: number) {
  const received: { headers: Headers; body: string }[] = [];
  globalThis.fetch = (async (_url: string, init: RequestInit) => {
    received.push({ headers: new Headers(init.headers), body: String(init.body) });
    return new Response('', { status });
  }) as typeof fetch;
  return received;
}

test('an event is sent signed with the secret', async () => {
  const received = receiver(200);
  const event = { type: 'order.paid', orderId: 'A-1', totalCents: 599 };
  const job = testJob(event);
  const delivered = await process(job);
  assert.equal(delivered.status, 200);
  const [{ headers, body }] = received;
  const expected = createHmac('sha256', SECRET).update(body).digest('hex');
  assert.equal(headers.get('x-signature'), `sha256=${expected}`);
  assert.deepEqual(JSON.parse(body).event, event);
  assert.deepEqual(job.logs, [`delivered ${delivered.delivery}`]);
});

test('a malformed event fails for good, naming the field', async () => {
  receiver(200);
  await assert.rejects(
    process(testJob({ type: 'order.paid', orderId: '', totalCents: 1 })),
    (error: Error) => error instanceof UnrecoverableError && error.message.includes('orderId'),
  );
});

test('a 5xx is retried, a 4xx is not', async () => {
  receiver(503);
  await assert.rejects(process(testJob({ type: 'order.created', orderId: 'B', totalCents: 0 })), /answered 503/);
  receiver(410);
  await assert.rejects(process(testJob({ type: 'order.created', orderId: 'B', totalCents: 0 })), UnrecoverableError);
});
