// Finds stop sequences in generated text across token boundaries. Text that could be the beginning of a
// stop sequence is held back until the next tokens show whether it is; a matched stop sequence and
// everything after it never reach the caller.

export class StopMatcher {
  private pending = '';
  /** The stop sequence that matched, once one has. */
  matched: string | undefined;
  private readonly longest: number;

  constructor(private readonly stops: readonly string[]) {
    this.longest = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** Adds decoded text; returns the part that is safe to emit now. After a match, returns the text before it. */
  push(text: string): string {
    if (this.matched !== undefined) return '';
    if (this.stops.length === 0) return text;
    this.pending += text;
    let at = -1;
    for (const stop of this.stops) {
      const i = this.pending.indexOf(stop);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        this.matched = stop;
      }
    }
    if (at >= 0) {
      const out = this.pending.slice(0, at);
      this.pending = '';
      return out;
    }
    const hold = this.heldBack();
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return out;
  }

  /** At the end of generation: whatever was held back (no stop sequence completed). */
  flush(): string {
    const out = this.matched === undefined ? this.pending : '';
    this.pending = '';
    return out;
  }

  /** Length of the longest suffix of the pending text that is a proper prefix of a stop sequence. */
  private heldBack(): number {
    const text = this.pending;
    for (let n = Math.min(text.length, this.longest - 1); n > 0; n--) {
      const suffix = text.slice(text.length - n);
      if (this.stops.some((s) => s.length > n && s.startsWith(suffix))) return n;
    }
    return 0;
  }
}
