// misbehave: a JavaScript processor that does what processors must not, so
// tests can check that the host survives it, and that grants hold.
//
// Data: {"mode": M} with M one of
// - spin: loops forever (ended by the time budget);
// - allocate: grows an array without end (ended by the memory cap);
// - throw-string / throw-object: throws a value that is not an Error;
// - reject: returns a promise rejected with an Error after a timer;
// - fetch: fetches `url` and completes with {status, body};
// - rate-limit: throws RateLimitError, after worker.rateLimit(`ms`) when
//   `ms` is given;
// - count: completes with {count: N}, N the attempts this instance has run
//   (a global: 1 in a fresh instance);
// - ok: completes with "fine".
import { RateLimitError, worker } from 'bullpen';

let runs = 0;

export async function process(job) {
  const { mode, url, ms } = job.data ?? {};
  switch (mode) {
    case 'spin':
      for (;;) {}
    case 'allocate': {
      const hoard = [];
      for (;;) hoard.push(new Array(1 << 16).fill(hoard.length));
    }
    case 'throw-string':
      throw 'a string, not an Error';
    case 'throw-object':
      throw { code: 42 };
    case 'reject':
      await new Promise((resolve) => setTimeout(resolve, 5));
      throw new TypeError('rejected after a timer');
    case 'fetch': {
      const response = await fetch(url);
      return { status: response.status, body: await response.text() };
    }
    case 'rate-limit':
      if (ms !== undefined) await worker.rateLimit(ms);
      throw new RateLimitError();
    case 'count':
      runs += 1;
      return { count: runs };
    case 'ok':
      return 'fine';
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}
