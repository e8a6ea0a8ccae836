// Waiting in tests for something another process, thread or timer makes true: poll, and fail with a message
// naming what did not happen rather than hang until the test's own timeout.

/** Resolves once `check` holds (polled every 10 ms); rejects after `timeoutMs` naming `what`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
