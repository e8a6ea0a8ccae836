// The admin token for write RPCs. Reads stay open inside the mesh; writes need `authorization: Bearer <t>`
// when MAAS_REGISTRY_ADMIN_TOKEN is set. Compared in constant time, never logged.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { PermissionDeniedError, UnauthenticatedError } from '../runtime/errors.js';

/** A check that throws UNAUTHENTICATED without a bearer token and PERMISSION_DENIED with a wrong one. */
export function adminTokenCheck(token: string): (metadata: Metadata) => void {
  if (token === '') return () => undefined;
  const expected = digest(token);
  return (metadata) => {
    const header = metadata.get('authorization')[0];
    const value = typeof header === 'string' ? header : header?.toString();
    const match = value ? /^Bearer\s+(\S+)\s*$/i.exec(value) : null;
    if (!match) throw new UnauthenticatedError('this registry needs the admin token for changes: send `authorization: Bearer <token>`');
    if (!timingSafeEqual(digest(match[1]!), expected)) throw new PermissionDeniedError('the admin token is not valid for this registry');
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
