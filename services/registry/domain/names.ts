// What names the registry accepts. Model names, aliases and tag keys end up in URLs, cache folders of model
// services and log lines, so they are kept to a small safe alphabet; file names are relative paths that can
// never climb out of the folder they are written into.
import { InvalidArgumentError } from '../../runtime/errors.js';
import type { Tags } from './types.js';

const NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;
const ALIAS = /^[a-z][a-z0-9._-]{0,127}$/;
const PATH_SEGMENT = /^[A-Za-z0-9._@+=-]{1,128}$/;
const MAX_PATH = 512;
const MAX_DEPTH = 8;
const MAX_TAGS = 64;
const MAX_TAG_VALUE = 256;
const MAX_TEXT = 4096;

/** A model name (also used for tag keys): lowercase letters, digits, `.`, `_`, `-`; starts with a letter or digit; ≤ 128. */
export function checkName(field: string, value: string): string {
  if (!NAME.test(value)) {
    throw InvalidArgumentError.field(field, `"${clip(value)}" is not a valid name: use 1 to 128 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit`);
  }
  return value;
}

/** An alias: like a name but starting with a letter, so `name:3` and `name@prod` can never be confused. */
export function checkAlias(field: string, value: string): string {
  if (!ALIAS.test(value)) {
    throw InvalidArgumentError.field(field, `"${clip(value)}" is not a valid alias: use 1 to 128 lowercase letters, digits, ".", "_" or "-", starting with a letter`);
  }
  return value;
}

/**
 * A file name inside a version: a relative path of plain segments (`model.onnx`, `det/model.onnx`). Absolute
 * paths, `.` and `..` segments, backslashes, empty segments and control characters are refused.
 */
export function checkFilePath(field: string, value: string): string {
  const bad = (why: string) => InvalidArgumentError.field(field, `"${clip(value)}" is not a valid file name: ${why}`);
  if (value.length === 0) throw bad('it is empty');
  if (value.length > MAX_PATH) throw bad(`it is longer than ${MAX_PATH} characters`);
  if (value.startsWith('/')) throw bad('it must be relative');
  const segments = value.split('/');
  if (segments.length > MAX_DEPTH) throw bad(`it is nested deeper than ${MAX_DEPTH} levels`);
  for (const s of segments) {
    if (s === '' ) throw bad('it has an empty path segment');
    if (s === '.' || s === '..') throw bad('"." and ".." segments are not allowed');
    if (!PATH_SEGMENT.test(s)) throw bad('use letters, digits and . _ - @ + = in each segment, separated by "/"');
  }
  return value;
}

export function checkVersionNumber(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw InvalidArgumentError.field(field, 'must be a version number (1 or more)');
  return value;
}

export function checkTags(field: string, tags: Tags): Tags {
  const entries = Object.entries(tags);
  if (entries.length > MAX_TAGS) throw InvalidArgumentError.field(field, `at most ${MAX_TAGS} tags`);
  for (const [k, v] of entries) {
    checkName(`${field}[${k}]`, k);
    if (v.length > MAX_TAG_VALUE) throw InvalidArgumentError.field(`${field}[${k}]`, `tag values are at most ${MAX_TAG_VALUE} characters`);
  }
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function checkText(field: string, value: string, max = MAX_TEXT): string {
  if (value.length > max) throw InvalidArgumentError.field(field, `at most ${max} characters`);
  return value;
}

export function checkSha256(field: string, value: string): string {
  if (!/^[0-9a-f]{64}$/.test(value)) throw InvalidArgumentError.field(field, 'must be 64 lowercase hex digits (sha256) or empty');
  return value;
}

function clip(s: string): string {
  const printable = s.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 80 ? `${printable.slice(0, 77)}...` : printable;
}
