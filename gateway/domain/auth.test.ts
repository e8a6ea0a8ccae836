import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { PermissionDeniedError, UnauthenticatedError } from '../../services/runtime/errors.js';
import { Admission } from './admission.js';
import { Authenticator, authorize, hashApiKey, parseApiKeyFile, parseApiKeyList } from './auth.js';

const secret = 'test-secret-of-enough-length-for-hs256!';
const sign = (claims: Record<string, unknown>, exp = '5m') =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setIssuedAt().setExpirationTime(exp).sign(new TextEncoder().encode(secret));

describe('Authenticator', () => {
  const keys = parseApiKeyList([`ci:${hashApiKey('key-ci')}:infer registry:read`]);

  it('accepts an API key by its hash and returns its scopes', async () => {
    const a = new Authenticator(keys);
    const p = await a.authenticate('Bearer key-ci');
    expect(p.name).toBe('key:ci');
    expect([...p.scopes].sort()).toEqual(['infer', 'registry:read']);
  });

  it('refuses a missing header, a malformed one and an unknown key with UNAUTHENTICATED', () => {
    const a = new Authenticator(keys);
    expect(() => a.authenticate(undefined)).toThrow(UnauthenticatedError);
    expect(() => a.authenticate('Basic abc')).toThrow(UnauthenticatedError);
    expect(() => a.authenticate('Bearer nope')).toThrow(UnauthenticatedError);
  });

  it('verifies HS256 JWTs with scopes from the scope claim, and rejects expired or foreign ones', async () => {
    const a = new Authenticator([], { secret, issuer: 'maas-test' });
    const good = await new SignJWT({ scope: 'infer registry:write' }).setProtectedHeader({ alg: 'HS256' }).setSubject('bob').setIssuer('maas-test').setExpirationTime('5m').sign(new TextEncoder().encode(secret));
    const p = await a.authenticate(`Bearer ${good}`);
    expect(p.name).toBe('jwt:bob');
    expect(p.scopes.has('registry:write')).toBe(true);
    const noIssuer = await sign({ scope: 'infer' });
    await expect(Promise.resolve().then(() => a.authenticate(`Bearer ${noIssuer}`))).rejects.toThrow(/iss/);
    const expired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setIssuer('maas-test').setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(new TextEncoder().encode(secret));
    await expect(Promise.resolve().then(() => a.authenticate(`Bearer ${expired}`))).rejects.toThrow(UnauthenticatedError);
  });

  it('verifies tokens signed by a key of a JWKS document', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    const a = new Authenticator([], { jwks: { keys: [jwk] } });
    const token = await new SignJWT({ scp: ['infer'] }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setSubject('svc').setExpirationTime('5m').sign(privateKey);
    expect((await a.authenticate(`Bearer ${token}`)).scopes.has('infer')).toBe(true);
  });

  it('answers a repeated credential from its cache without verifying again', async () => {
    const a = new Authenticator([], { secret });
    const header = `Bearer ${await sign({ scope: 'infer' })}`;
    await a.authenticate(header);
    expect(a.authenticate(header)).not.toBeInstanceOf(Promise);
  });

  it('refuses keys configured with a bad hash or an unknown scope', () => {
    expect(() => new Authenticator([{ name: 'x', sha256: 'abc', scopes: [] }])).toThrow(/sha256/);
    expect(() => new Authenticator([{ name: 'x', sha256: hashApiKey('k'), scopes: ['admin'] }])).toThrow(/scope/);
  });

  it('reads key files with per-key rate limits', () => {
    const [k] = parseApiKeyFile({ keys: [{ name: 'batch', sha256: hashApiKey('b'), scopes: ['infer'], rate_limit_rps: 5 }] });
    expect(k!.rate).toEqual({ rps: 5, burst: 5 });
  });
});

describe('authorize and Admission', () => {
  it('denies a missing scope with PERMISSION_DENIED', () => {
    expect(() => authorize({ name: 'k', scopes: new Set(['infer']) }, 'registry:write')).toThrow(PermissionDeniedError);
  });

  it('limits each caller to its rate with a retry delay, and everyone to the concurrency limit', () => {
    const adm = new Admission({ authenticator: new Authenticator(parseApiKeyList([`a:${hashApiKey('a')}:infer`])), rate: { rps: 1, burst: 1 }, maxConcurrentCalls: 1 });
    const p = adm.authenticate('Bearer a') as { name: string; scopes: Set<string> };
    adm.check(p, 'infer');
    expect(() => adm.check(p, 'infer')).toThrow(expect.objectContaining({ kind: 'overloaded', reason: 'RATE_LIMITED' }));
    adm.acquire();
    expect(() => adm.acquire()).toThrow(expect.objectContaining({ kind: 'overloaded', reason: 'GATEWAY_CONCURRENCY_LIMIT' }));
    adm.release();
    adm.acquire();
  });

  it('lets everything through when auth is off', () => {
    const adm = new Admission({ authenticator: undefined, rate: { rps: 1, burst: 1 }, maxConcurrentCalls: 0 });
    const p = adm.authenticate(undefined) as { name: string; scopes: Set<string> };
    for (let i = 0; i < 5; i++) adm.check(p, 'registry:write');
  });
});
