// Server-sent events for streamed completions: `data: <json>\n\n` per chunk and `data: [DONE]` at the end,
// written with backpressure (a slow reader slows the generation stream instead of filling memory).
import type { ServerResponse } from 'node:http';

export class EventStream {
  private started = false;

  constructor(private readonly res: ServerResponse) {}

  get hasStarted(): boolean {
    return this.started;
  }

  start(): void {
    this.started = true;
    this.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    this.res.flushHeaders();
  }

  async send(data: unknown): Promise<void> {
    if (this.res.destroyed) return;
    if (!this.res.write(`data: ${JSON.stringify(data)}\n\n`)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.res.off('drain', done);
          this.res.off('close', done);
          resolve();
        };
        this.res.once('drain', done);
        this.res.once('close', done);
      });
    }
  }

  end(): void {
    if (this.res.destroyed) return;
    this.res.end('data: [DONE]\n\n');
  }
}
