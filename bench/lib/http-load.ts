// HTTP load for the GraphQL query scenarios: autocannon's programmatic API, fixed connections for a
// fixed time, reporting completed requests per second and latency percentiles.
import autocannon from 'autocannon';

export interface HttpLoadOptions {
  url: string;
  body: string;
  headers?: Record<string, string>;
  connections: number;
  durationS: number;
}

export interface HttpLoadResult {
  /** 2xx responses per second over the run. */
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** Socket errors, timeouts and non-2xx responses. */
  failed: number;
}

export async function httpLoad(o: HttpLoadOptions): Promise<HttpLoadResult> {
  const r = await autocannon({
    url: o.url,
    method: 'POST',
    connections: o.connections,
    duration: o.durationS,
    timeout: 10,
    headers: { 'content-type': 'application/json', ...o.headers },
    body: o.body,
  });
  const durationS = r.duration || o.durationS;
  return { rps: r['2xx'] / durationS, p50Ms: r.latency.p50, p99Ms: r.latency.p99, requests: r.requests.total, failed: r.errors + r.timeouts + r.non2xx };
}

/** One request, for checking a contender's answer before loading it. */
export async function postJson(url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, json: await res.json() };
}

/** `--cpu-prof` for the Vigil process when BENCH_CPU_PROF names a directory (profiles are written at exit). */
export const profileArgs = (): string[] => (process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []);
