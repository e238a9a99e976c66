// BullMQ's own `Backoffs.calculate` on the cases in the file BACKOFF_CASES
// names (JSON: [{type, delay, jitter, attemptsMade, random}]), with
// `Math.random` giving each case's `random`; prints the delays as a JSON
// array.
import { readFileSync } from 'node:fs';
import { Backoffs } from 'bullmq';

const cases = JSON.parse(readFileSync(process.env.BACKOFF_CASES, 'utf8'));
const delays = cases.map(({ type, delay, jitter, attemptsMade, random }) => {
  Math.random = () => random;
  return Backoffs.calculate({ type, delay, jitter }, attemptsMade);
});
console.log(JSON.stringify(delays));
