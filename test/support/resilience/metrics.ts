// Reads a component's Prometheus endpoint: the sum of one metric's series whose labels match.

/**
 * Sum of `name`'s series (exact metric name as exported: counters end in `_total`; any labels that include
 * every `labels` pair). NaN when no series matches, so a misspelt name cannot pass for a zero.
 */
export async function scrape(port: number, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  let matched = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const l = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`))) {
      sum += Number(m[3]);
      matched = true;
    }
  }
  return matched ? sum : NaN;
}
