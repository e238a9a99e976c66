// The json-transform work as a sandboxed processor file: BullMQ's child
// processes and worker threads import its default export, and bullpen runs
// it built by bullpen build. SpiderMonkey in WebAssembly has no
// JIT, so this is where bullpen's JavaScript is furthest from Node's.
import { transform } from './transform.mjs';

export default async function process(job) {
  return transform(job.data);
}
