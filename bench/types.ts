// One figure of a benchmark run. Ratios are rows too (unit 'x'), measured side by side in the same run.
export interface BenchResult {
  /** The component or subject: registry, embeddings, gateway, ... */
  group: string;
  /** What was measured, e.g. "service, 64 clients, 1 input/request". */
  name: string;
  value: number;
  /** Unit: 'sentences/s', 'ms', 'MB/s', 'x', ... */
  unit: string;
  /** The goal or context, e.g. "goal ≥ 1.5x". */
  note?: string;
}

export type Bench = () => Promise<BenchResult[]>;
