// Where the worker under test is: WORKER_URL (http://HOST:PORT, no trailing
// path) and WORKER_MODEL (a model name it serves, Ready). The suites fail
// loudly when they are missing rather than skip: a skipped client test
// proves nothing.
export const WORKER_URL = (process.env.WORKER_URL ?? '').replace(/\/+$/, '');
export const WORKER_MODEL = process.env.WORKER_MODEL ?? '';
if (!WORKER_URL || !WORKER_MODEL) {
  throw new Error('set WORKER_URL (e.g. http://127.0.0.1:8081) and WORKER_MODEL to run these tests');
}

// The worker's own per-replica stats (GET /stats), for checks the client
// libraries cannot make (a cancelled stream leaves nothing in flight).
export async function inFlight() {
  const res = await fetch(`${WORKER_URL}/stats?model=${encodeURIComponent(WORKER_MODEL)}`);
  const body = await res.json();
  return body.replicas.reduce((n, r) => n + r.in_flight, 0);
}

export async function waitFor(cond, timeoutMs = 10000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
