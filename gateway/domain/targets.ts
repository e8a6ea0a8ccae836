// Where a service's replicas are: a static list of host:port, or a DNS name (a Kubernetes headless Service)
// whose addresses are looked up again periodically.

export type TargetSpec = { kind: 'static'; addresses: string[] } | { kind: 'dns'; host: string; port: number } | { kind: 'none' };

export function parseTargets(text: string): TargetSpec {
  const items = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) return { kind: 'none' };
  const dns = items.filter((i) => i.startsWith('dns:'));
  if (dns.length > 0) {
    if (items.length > 1) throw new Error('a dns: target must be the only one');
    const m = /^dns:(?:\/\/[^/]*\/)?([^:/]+):(\d+)$/.exec(dns[0]!);
    if (!m) throw new Error(`"${dns[0]}" is not dns:///name:port`);
    return { kind: 'dns', host: m[1]!, port: checkPort(Number(m[2]), dns[0]!) };
  }
  for (const a of items) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s/[\]]+):(\d+)$/.exec(a);
    if (!m) throw new Error(`"${a}" is not host:port`);
    checkPort(Number(m[2]), a);
  }
  return { kind: 'static', addresses: [...new Set(items)] };
}

function checkPort(p: number, where: string): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`"${where}" has no valid port`);
  return p;
}

/** host:port for an address returned by a DNS lookup (IPv6 in brackets). */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
