// Resident memory of other processes, sampled from /proc/<pid>/status while a test drives load at them.
import { readFileSync } from 'node:fs';

/** VmRSS of a process in bytes, or NaN once it is gone. */
export function rssOf(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(text)?.[1] ?? NaN) * 1024;
  } catch {
    return NaN;
  }
}

export interface MemorySampler {
  /** Highest VmRSS seen per pid so far, in bytes. */
  peak(pid: number): number;
  stop(): void;
}

/** Samples every pid's VmRSS every `everyMs` until stopped. */
export function sampleMemory(pids: number[], everyMs = 100): MemorySampler {
  const peaks = new Map<number, number>();
  const sample = () => {
    for (const pid of pids) {
      const rss = rssOf(pid);
      if (!Number.isNaN(rss)) peaks.set(pid, Math.max(peaks.get(pid) ?? 0, rss));
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    peak: (pid) => peaks.get(pid) ?? NaN,
    stop: () => {
      sample();
      clearInterval(timer);
    },
  };
}

export const MiB = 1024 * 1024;
