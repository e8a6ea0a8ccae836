// Reading the optional scalar fields of an OpenAI request body. A number must fit the protobuf field it goes
// to: a value the wire cannot carry (a max_tokens of 1e12 into a uint32) is the caller's mistake, named as
// such, rather than a serialization failure inside the gateway.
import { InvalidArgumentError } from '../../services/runtime/errors.js';

export type Body = Record<string, unknown>;

export const UINT32_MAX = 4_294_967_295;

export function optionalNumber(body: Body, key: string): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw InvalidArgumentError.field(key, 'must be a number');
  return v;
}

/** An integer in [min, max] (by default a uint32's range), or undefined when absent or null. */
export function optionalInt(body: Body, key: string, min = 0, max = UINT32_MAX): number | undefined {
  const v = optionalNumber(body, key);
  if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw InvalidArgumentError.field(key, `must be an integer from ${min} to ${max}`);
  return v;
}

export function optionalBoolean(body: Body, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw InvalidArgumentError.field(key, 'must be true or false');
  return v;
}
