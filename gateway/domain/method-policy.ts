// Per-method settings written as `key=value` lists (deadlines, size limits). A key is `*`, a service
// (`maas.vision.v1.VisionService/*`, or its short name `VisionService/*`), a method name (`Generate`) or
// both (`GenerationService/Generate`); the most specific key wins.

export type MethodTable<T> = Map<string, T>;

export function parseMethodTable<T>(text: string, parseValue: (v: string) => T): MethodTable<T> {
  const out: MethodTable<T> = new Map();
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = item.lastIndexOf('=');
    if (eq <= 0) throw new Error(`"${item}" is not key=value`);
    out.set(item.slice(0, eq).trim(), parseValue(item.slice(eq + 1).trim()));
  }
  return out;
}

/** The value for a full method path (`/pkg.Service/Method` or `pkg.Service/Method`), or the fallback. */
export function lookupMethod<T>(table: MethodTable<T>, path: string, fallback: T): T {
  const full = path.startsWith('/') ? path.slice(1) : path;
  const slash = full.lastIndexOf('/');
  const service = full.slice(0, slash);
  const method = full.slice(slash + 1);
  const short = service.slice(service.lastIndexOf('.') + 1);
  for (const key of [full, `${short}/${method}`, method, `${service}/*`, `${short}/*`, '*']) {
    const v = table.get(key);
    if (v !== undefined) return v;
  }
  return fallback;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `30s`, `500ms`, `5m`, `1h`, a bare number of milliseconds; `0` means none. Returns milliseconds. */
export function parseDuration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(v);
  if (!m) throw new Error(`"${v}" is not a duration (30s, 500ms, 5m, 0)`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1000, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 };

/** `4MiB`, `512KiB`, `1MB`, a bare number of bytes. */
export function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(v);
  const unit = SIZE_UNITS[(m?.[2] ?? '').toLowerCase()];
  if (!m || unit === undefined) throw new Error(`"${v}" is not a size (4MiB, 512KiB, bytes)`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (bytes <= 0) throw new Error(`"${v}" must be larger than 0`);
  return bytes;
}
