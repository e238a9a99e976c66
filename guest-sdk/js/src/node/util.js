// Node's `util`, the parts processors use: format and inspect (for
// messages), promisify, inherits, deprecate, isDeepStrictEqual, types, and
// the engine's TextEncoder and TextDecoder. The build maps `util` and
// `node:util` here.

/** Node's `util.inspect(value)`, plainly: JSON where it can be. */
export function inspect(value) {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return `[Function: ${value.name || '(anonymous)'}]`;
  if (typeof value === 'symbol' || value === undefined) return String(value);
  if (value instanceof Error) return value.stack ?? `${value.name}: ${value.message}`;
  try {
    return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(value);
  } catch {
    return '[Circular]';
  }
}

/** Node's `util.format(format, ...args)`: %s %d %i %f %j %o %O %%. */
export function format(first, ...args) {
  if (typeof first !== 'string') return [first, ...args].map(inspect).join(' ');
  let rest = args;
  const text = first.replace(/%([sdifjoO%])/g, (match, code) => {
    if (code === '%') return '%';
    if (rest.length === 0) return match;
    const [value, ...others] = rest;
    rest = others;
    switch (code) {
      case 's':
        return typeof value === 'string' ? value : inspect(value);
      case 'd':
      case 'i':
        return String(code === 'i' ? parseInt(value, 10) : Number(value));
      case 'f':
        return String(parseFloat(value));
      default:
        return code === 'j' ? JSON.stringify(value) : inspect(value);
    }
  });
  return [text, ...rest.map((v) => (typeof v === 'string' ? v : inspect(v)))].join(' ');
}

/** Node's `util.promisify(fn)`: a callback-last function as one returning a promise. */
export function promisify(fn) {
  if (typeof fn !== 'function') throw new TypeError('The "original" argument must be of type function');
  return function (...args) {
    return new Promise((resolve, reject) => {
      fn.call(this, ...args, (error, value) => (error ? reject(error) : resolve(value)));
    });
  };
}

/** Node's `util.inherits(constructor, superConstructor)`. */
export function inherits(constructor, superConstructor) {
  Object.setPrototypeOf(constructor.prototype, superConstructor.prototype);
  Object.setPrototypeOf(constructor, superConstructor);
  constructor.super_ = superConstructor;
}

/** Node's `util.deprecate(fn, message)`: warns once, on the host's log. */
export function deprecate(fn, message) {
  let warned = false;
  return function (...args) {
    if (!warned) {
      warned = true;
      console.warn(`DeprecationWarning: ${message}`);
    }
    return fn.apply(this, args);
  };
}

/** Node's `util.isDeepStrictEqual(a, b)`, for JSON-like values, Dates and typed arrays. */
export function isDeepStrictEqual(a, b) {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (a instanceof Date) return a.getTime() === b.getTime();
  if (ArrayBuffer.isView(a)) return a.length === b.length && a.every((v, i) => v === b[i]);
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && isDeepStrictEqual(a[k], b[k]));
}

export const types = {
  isDate: (v) => v instanceof Date,
  isRegExp: (v) => v instanceof RegExp,
  isPromise: (v) => v instanceof Promise,
  isUint8Array: (v) => v instanceof Uint8Array,
  isTypedArray: (v) => ArrayBuffer.isView(v) && !(v instanceof DataView),
  isNativeError: (v) => v instanceof Error,
};

export const TextEncoder = globalThis.TextEncoder;
export const TextDecoder = globalThis.TextDecoder;

export default {
  TextDecoder,
  TextEncoder,
  deprecate,
  format,
  inherits,
  inspect,
  isDeepStrictEqual,
  promisify,
  types,
};
