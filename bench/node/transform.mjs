// The work of the `json-transform` guest (examples/json-transform), written
// as a Node developer would, for BullMQ's in-process worker: the same
// summary, the same top 3, the same FNV-1a digest of the sorted records.

const scratch = new DataView(new ArrayBuffer(8));
const encoder = new TextEncoder();

// FNV-1a 64-bit over 16-bit limbs (JS numbers stay exact below 2^53).
function fnv1a(records) {
  let v0 = 0x2325, v1 = 0x8422, v2 = 0x9ce4, v3 = 0xcbf2;
  const step = (byte) => {
    v0 ^= byte;
    const t0 = v0 * 0x1b3;
    const t1 = v1 * 0x1b3 + (t0 >>> 16);
    const t2 = v2 * 0x1b3 + v0 * 0x100 + (t1 >>> 16);
    const t3 = v3 * 0x1b3 + v1 * 0x100 + (t2 >>> 16);
    v0 = t0 & 0xffff; v1 = t1 & 0xffff; v2 = t2 & 0xffff; v3 = t3 & 0xffff;
  };
  for (const record of records) {
    for (const byte of encoder.encode(record.name)) step(byte);
    scratch.setFloat64(0, record.value, true);
    for (let i = 0; i < 8; i++) step(scratch.getUint8(i));
  }
  const hex = (v) => v.toString(16).padStart(4, '0');
  return hex(v3) + hex(v2) + hex(v1) + hex(v0);
}

function summarise(records) {
  const byTag = new Map();
  let total = 0;
  for (const record of records) {
    total += record.value;
    for (const tag of record.tags ?? []) {
      let stats = byTag.get(tag);
      if (!stats) {
        stats = { count: 0, sum: 0, min: Infinity, max: -Infinity };
        byTag.set(tag, stats);
      }
      stats.count += 1;
      stats.sum += record.value;
      stats.min = Math.min(stats.min, record.value);
      stats.max = Math.max(stats.max, record.value);
    }
  }
  const sorted = [...records].sort(
    (a, b) => b.value - a.value || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const by_tag = {};
  for (const tag of [...byTag.keys()].sort()) by_tag[tag] = byTag.get(tag);
  return {
    count: records.length,
    total,
    mean: records.length ? total / records.length : 0,
    by_tag,
    top: sorted.slice(0, 3).map((r) => r.name),
    digest: fnv1a(sorted),
  };
}

export function transform(data) {
  const rounds = data.rounds ?? 1;
  let summary = summarise(data.records);
  for (let i = 1; i < rounds; i++) summary = summarise(data.records);
  return summary;
}
