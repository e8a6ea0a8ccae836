// Who is calling and what they may do. Credentials arrive as `authorization: Bearer <credential>` (gRPC
// metadata or HTTP header): a JWT (three dot-separated parts, verified with jose against a secret or a JWKS
// file) or an API key (compared by its sha256 with the configured hashes; keys themselves are never stored).
// Verified credentials are cached until they expire, so the call path costs one map lookup.
import { createHash } from 'node:crypto';
import { createLocalJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { PermissionDeniedError, UnauthenticatedError } from '../../services/runtime/errors.js';
import type { Rate } from './limits.js';

export const SCOPES = ['infer', 'registry:read', 'registry:write'] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  /** API key name or JWT subject: the unit of rate limiting. */
  name: string;
  scopes: ReadonlySet<string>;
  /** A per-key rate that overrides the default. */
  rate?: Rate;
}

export interface ApiKey {
  name: string;
  /** Lowercase hex sha256 of the key. */
  sha256: string;
  scopes: string[];
  rate?: Rate;
}

export interface JwtSettings {
  /** HMAC secret (HS256/384/512). */
  secret?: string;
  /** A JWKS document (public keys). */
  jwks?: { keys: object[] };
  issuer?: string;
  audience?: string;
}

export const ANONYMOUS: Principal = { name: '', scopes: new Set(SCOPES) };

const CACHE_LIMIT = 10_000;

export class Authenticator {
  private readonly keys = new Map<string, ApiKey>();
  private readonly jwtKey: Uint8Array | JWTVerifyGetKey | undefined;
  /** Verified credentials (the raw header value) with when they stop being valid. */
  private readonly cache = new Map<string, { principal: Principal; until: number }>();

  constructor(
    apiKeys: ApiKey[],
    private readonly jwt: JwtSettings = {},
  ) {
    for (const k of apiKeys) {
      if (!/^[0-9a-f]{64}$/.test(k.sha256)) throw new Error(`API key "${k.name}": sha256 must be 64 lowercase hex digits`);
      for (const s of k.scopes) if (!(SCOPES as readonly string[]).includes(s)) throw new Error(`API key "${k.name}": unknown scope "${s}" (${SCOPES.join(', ')})`);
      this.keys.set(k.sha256, k);
    }
    this.jwtKey = jwt.jwks ? createLocalJWKSet(jwt.jwks as Parameters<typeof createLocalJWKSet>[0]) : jwt.secret ? new TextEncoder().encode(jwt.secret) : undefined;
  }

  /** The caller behind an `authorization` value; throws UNAUTHENTICATED. Synchronous when cached. */
  authenticate(authorization: string | undefined, now = Date.now()): Principal | Promise<Principal> {
    if (!authorization) throw new UnauthenticatedError('this gateway needs credentials: send `authorization: Bearer <API key or JWT>`');
    const hit = this.cache.get(authorization);
    if (hit && hit.until > now) return hit.principal;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!m) throw new UnauthenticatedError('the authorization header must be `Bearer <API key or JWT>`');
    const credential = m[1]!;
    if (credential.split('.').length === 3 && this.jwtKey) return this.verifyJwt(authorization, credential, now);
    const key = this.keys.get(createHash('sha256').update(credential).digest('hex'));
    if (!key) throw new UnauthenticatedError('the API key is not valid');
    const principal: Principal = { name: `key:${key.name}`, scopes: new Set(key.scopes), rate: key.rate };
    this.remember(authorization, principal, now + 60_000);
    return principal;
  }

  private async verifyJwt(authorization: string, token: string, now: number): Promise<Principal> {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.jwtKey as Uint8Array, {
        issuer: this.jwt.issuer || undefined,
        audience: this.jwt.audience || undefined,
        currentDate: new Date(now),
      }));
    } catch (err) {
      throw new UnauthenticatedError(`the bearer token is not valid: ${(err as Error).message}`);
    }
    const raw = payload.scope ?? payload.scp;
    const scopes = Array.isArray(raw) ? raw.map(String) : typeof raw === 'string' ? raw.split(/\s+/).filter(Boolean) : [];
    const principal: Principal = { name: `jwt:${payload.sub ?? ''}`, scopes: new Set(scopes) };
    this.remember(authorization, principal, Math.min(payload.exp ? payload.exp * 1000 : Infinity, now + 300_000));
    return principal;
  }

  private remember(authorization: string, principal: Principal, until: number): void {
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(authorization, { principal, until });
  }
}

/** Throws PERMISSION_DENIED unless the principal holds the scope. */
export function authorize(principal: Principal, scope: Scope): void {
  if (!principal.scopes.has(scope)) throw new PermissionDeniedError(`this call needs the scope "${scope}"`, { metadata: { scope } });
}

/** `name:sha256:scope scope` entries of MAAS_GATEWAY_API_KEYS. */
export function parseApiKeyList(items: string[]): ApiKey[] {
  return items.map((item) => {
    const first = item.indexOf(':');
    const second = item.indexOf(':', first + 1);
    if (first <= 0 || second < 0) throw new Error(`"${item}" is not name:sha256:scopes`);
    return { name: item.slice(0, first), sha256: item.slice(first + 1, second).toLowerCase(), scopes: item.slice(second + 1).split(/\s+/).filter(Boolean) };
  });
}

/** The keys of an API key file (`{ keys: [...] }` or a bare list). */
export function parseApiKeyFile(doc: unknown): ApiKey[] {
  const list = Array.isArray(doc) ? doc : (doc as { keys?: unknown })?.keys;
  if (!Array.isArray(list)) throw new Error('expected `keys: [...]`');
  return list.map((k: Record<string, unknown>, i) => {
    if (typeof k.name !== 'string' || typeof k.sha256 !== 'string' || !Array.isArray(k.scopes)) throw new Error(`keys[${i}] needs name, sha256 and scopes`);
    const rps = Number(k.rate_limit_rps ?? 0);
    const burst = Number(k.rate_limit_burst ?? 0) || Math.max(1, Math.ceil(rps));
    return { name: k.name, sha256: k.sha256.toLowerCase(), scopes: k.scopes.map(String), rate: rps > 0 ? { rps, burst } : undefined };
  });
}

/** The sha256 hex to write in the configuration for a key. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}
