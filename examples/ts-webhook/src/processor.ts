// A webhook that signs what it sends. Each job is an order event: checked
// with zod, then POSTed as JSON to the queue's WEBHOOK_URL with
// `x-signature: sha256=<hex>`, an HMAC-SHA256 of the exact body keyed by the
// granted secret WEBHOOK_SECRET, so the receiver can tell the body came from
// us unchanged (GitHub's and Stripe's webhooks sign the same way). The
// answer decides the job's fate, as examples/webhook does in Rust.
import { createHmac, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { RateLimitError, UnrecoverableError, worker, type Job } from 'bullpen';

export const OrderEvent = z.object({
  type: z.enum(['order.created', 'order.paid', 'order.cancelled']),
  orderId: z.string().min(1),
  totalCents: z.number().int().nonnegative(),
});
export type OrderEvent = z.infer<typeof OrderEvent>;

export interface Delivered {
  status: number;
  delivery: string;
}

/** The `x-signature` of `body` under `secret`. */
export function sign(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export async function process(job: Job<unknown, Delivered>): Promise<Delivered> {
  const event = OrderEvent.safeParse(job.data);
  if (!event.success) {
    // No retry can fix a malformed event: it fails for good, saying why.
    const why = event.error.issues.map((issue) => `${issue.path.join('.') || 'data'}: ${issue.message}`);
    throw new UnrecoverableError(`not an order event: ${why.join('; ')}`);
  }
  // `process` is this function: Node's is globalThis.process. Its env holds
  // only what the queue grants (environment, secrets).
  const { WEBHOOK_URL: url, WEBHOOK_SECRET: secret } = globalThis.process.env;
  if (!url || !secret) {
    throw new UnrecoverableError('the queue grants no WEBHOOK_URL (environment) or WEBHOOK_SECRET (secrets)');
  }
  const delivery = randomUUID();
  const body = JSON.stringify({ delivery, job: job.id, event: event.data });
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-delivery': delivery, 'x-signature': sign(body, secret) },
    body,
  });
  if (response.status === 429) {
    const seconds = Number(response.headers.get('retry-after') ?? '1');
    await worker.rateLimit(1000 * (Number.isFinite(seconds) ? seconds : 1));
    throw new RateLimitError();
  }
  if (response.status >= 500) throw new Error(`the webhook answered ${response.status}`); // retried
  if (!response.ok) throw new UnrecoverableError(`the webhook refused the event: ${response.status}`);
  await job.log(`delivered ${delivery}`);
  return { status: response.status, delivery };
}
