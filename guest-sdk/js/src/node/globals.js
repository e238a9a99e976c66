// Node's `Buffer` global, for a processor (or a package it imports) that
// uses it without importing it: the build injects it where it is used.
export { Buffer } from 'buffer';
