// The gateway's routing table, built from the services' descriptors (gen/descriptors.binpb), so a new RPC in
// a contract is routed without gateway code: for each public method, which pool of replicas serves it, where
// the model reference sits in its request (field numbers, found by type), whether it may be retried, which
// scope it needs, its default deadline and its request size limit.
import { readFileSync } from 'node:fs';
import { loadFileDescriptorSetFromBuffer, type PackageDefinition } from '@grpc/proto-loader';
import type { Scope } from '../domain/auth.js';
import type { ModelTaskName } from '../domain/catalog.js';
import { lookupMethod, type MethodTable } from '../domain/method-policy.js';

export type CallKind = 'unary' | 'server_stream' | 'client_stream' | 'bidi';

export interface MethodRoute {
  /** `/maas.embeddings.v1.EmbeddingService/Embed` */
  path: string;
  service: string;
  method: string;
  kind: CallKind;
  /** Name of the replica pool that serves it. */
  pool: string;
  /** Field numbers from the request message down to its ModelRef; undefined for methods not routed by model. */
  modelRefPath: number[] | undefined;
  /** Tasks a model named in the request must have (others are FAILED_PRECONDITION at the gateway). */
  tasks: readonly ModelTaskName[] | undefined;
  idempotent: boolean;
  scope: Scope;
  /** Used when the caller sets no deadline; 0: none. */
  defaultDeadlineMs: number;
  maxRequestBytes: number;
  /** Watch-like calls: no concurrency slot, no default deadline, ended at drain. */
  longLived: boolean;
  /** Served without credentials or limits (health, reflection: the gateway's own server). */
  open?: boolean;
}

/** A public service the gateway fronts, and the pool of replicas behind it. */
export interface PublicService {
  service: string;
  pool: string;
  /** Tasks of the models this service serves; set for services routed by model. */
  tasks?: readonly ModelTaskName[];
  /** The scope a method needs. */
  scope(method: string): Scope;
}

const REGISTRY_READS = /^(Get|List|Resolve|Download|Watch)/;

export const PUBLIC_SERVICES: readonly PublicService[] = [
  { service: 'maas.registry.v1.ModelRegistryService', pool: 'registry', scope: (m) => (REGISTRY_READS.test(m) ? 'registry:read' : 'registry:write') },
  { service: 'maas.embeddings.v1.EmbeddingService', pool: 'embeddings', tasks: ['embedding'], scope: () => 'infer' },
  { service: 'maas.generation.v1.GenerationService', pool: 'generation', tasks: ['generation'], scope: () => 'infer' },
  { service: 'maas.vision.v1.VisionService', pool: 'vision', tasks: ['ocr', 'image_classification'], scope: () => 'infer' },
];

export interface TablePolicy {
  defaultDeadlines: MethodTable<number>;
  maxRequestBytes: MethodTable<number>;
  /** Used for methods the size table does not name. */
  fallbackMaxRequestBytes: number;
  longLived: string[];
}

const DESCRIPTORS = new URL('../../gen/descriptors.binpb', import.meta.url);

/** The descriptors of every contract in proto/ (plus extra ones, such as a test's own service). */
export function loadDescriptors(extra?: PackageDefinition): PackageDefinition {
  return { ...loadFileDescriptorSetFromBuffer(readFileSync(DESCRIPTORS), { keepCase: true }), ...extra };
}

interface FieldDescriptor {
  name: string;
  number: number;
  type: string;
  typeName: string;
  label: string;
}

type MethodDescriptor = {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestType: { type: { name: string; field: FieldDescriptor[] } };
  options?: { idempotency_level?: string };
};

const MODEL_REF = 'maas.common.v1.ModelRef';

/** Routes for each method of each public service present in the descriptors. */
export function buildMethodTable(descriptors: PackageDefinition, services: readonly PublicService[], policy: TablePolicy): Map<string, MethodRoute> {
  const table = new Map<string, MethodRoute>();
  for (const svc of services) {
    const def = descriptors[svc.service] as Record<string, MethodDescriptor> | undefined;
    if (!def || 'format' in def) continue;
    const pkg = svc.service.slice(0, svc.service.lastIndexOf('.'));
    for (const [name, m] of Object.entries(def)) {
      const kind: CallKind = m.requestStream ? (m.responseStream ? 'bidi' : 'client_stream') : m.responseStream ? 'server_stream' : 'unary';
      const scope = svc.scope(name);
      const level = m.options?.idempotency_level;
      const longLived = policy.longLived.includes(name) || policy.longLived.includes(m.path.slice(1));
      table.set(m.path, {
        path: m.path,
        service: svc.service,
        method: name,
        kind,
        pool: svc.pool,
        modelRefPath: svc.tasks ? findModelRef(descriptors, pkg, m.requestType.type.field, 2) : undefined,
        tasks: svc.tasks,
        // Declared idempotency wins; otherwise everything but registry writes is free of side effects.
        idempotent: level === 'NO_SIDE_EFFECTS' || level === 'IDEMPOTENT' || (level !== undefined && level !== 'IDEMPOTENCY_UNKNOWN' ? false : scope !== 'registry:write'),
        scope,
        defaultDeadlineMs: longLived ? 0 : lookupMethod(policy.defaultDeadlines, m.path, 0),
        maxRequestBytes: lookupMethod(policy.maxRequestBytes, m.path, policy.fallbackMaxRequestBytes),
        longLived,
      });
    }
  }
  return table;
}

/** Field numbers leading to the first ModelRef field, breadth first, at most `depth` messages deep. */
function findModelRef(descriptors: PackageDefinition, pkg: string, fields: FieldDescriptor[], depth: number): number[] | undefined {
  const direct = fields.find((f) => f.type === 'TYPE_MESSAGE' && f.label !== 'LABEL_REPEATED' && resolveType(descriptors, pkg, f.typeName) === MODEL_REF);
  if (direct) return [direct.number];
  if (depth <= 1) return undefined;
  for (const f of fields) {
    if (f.type !== 'TYPE_MESSAGE' || f.label === 'LABEL_REPEATED') continue;
    const full = resolveType(descriptors, pkg, f.typeName);
    const inner = full ? (descriptors[full] as { type?: { field?: FieldDescriptor[] } } | undefined)?.type?.field : undefined;
    if (!inner) continue;
    const rest = findModelRef(descriptors, full!.slice(0, full!.lastIndexOf('.')), inner, depth - 1);
    if (rest) return [f.number, ...rest];
  }
  return undefined;
}

/** Protobuf scoping: a relative type name is looked up from the innermost enclosing package outwards. */
function resolveType(descriptors: PackageDefinition, pkg: string, typeName: string): string | undefined {
  if (typeName.startsWith('.')) return descriptors[typeName.slice(1)] ? typeName.slice(1) : undefined;
  const parts = pkg.split('.');
  for (let i = parts.length; i >= 0; i--) {
    const candidate = [...parts.slice(0, i), typeName].join('.');
    if (descriptors[candidate]) return candidate;
  }
  return undefined;
}
