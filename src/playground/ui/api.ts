/** One HTTP exchange as the console shows it. */
export interface CallResult {
  /** null when no answer came (the server could not be reached). */
  status: number | null;
  statusText: string;
  /** Milliseconds from sending to the whole body read. */
  ms: number;
  headers: [string, string][];
  bodyText: string;
  /** The parsed JSON body, when it is JSON. */
  body: unknown;
  /** A failure that is not an HTTP answer (network, or the SDK refusing the call). */
  error: string | null;
  /** How many HTTP attempts the call took (the SDK retries 429/503). */
  attempts: number;
}

/** One HTTP attempt as seen on the wire. */
export interface Exchange {
  status: number;
  statusText: string;
  headers: [string, string][];
  ms: number;
  bodyText: string;
}

/**
 * A fetch that records every exchange, so the console can show the raw status, headers and
 * timing of a call made through the SDK.
 */
export function recordingFetch(log: Exchange[], base: typeof fetch = (i, n) => fetch(i, n)): typeof fetch {
  return async (input, init) => {
    const started = performance.now();
    const res = await base(input, init);
    const bodyText = await res.clone().text();
    log.push({
      status: res.status,
      statusText: res.statusText,
      headers: [...res.headers.entries()],
      ms: Math.round(performance.now() - started),
      bodyText,
    });
    return res;
  };
}

function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Turns the recorded exchanges (and any thrown error) into what the console shows. */
export function toResult(log: Exchange[], error: unknown, notSent = false): CallResult {
  const last = log[log.length - 1];
  // Status 0: a redirect answered to a write, which a browser shows as opaque (no status, no
  // headers) and the SDK does not follow: what the SDK says of it is the answer to show.
  if (!last || (last.status === 0 && error instanceof Error)) {
    const why = error instanceof Error ? error.message : String(error ?? 'the request failed');
    return {
      status: null,
      statusText: '',
      ms: 0,
      headers: [],
      bodyText: '',
      body: undefined,
      // `notSent`: refused before it was sent, which is no silence from the server.
      error: notSent ? `Not sent: ${why}` : last ? `Not followed: ${why}` : `No answer: ${why}`,
      attempts: log.length,
    };
  }
  return { ...last, body: parseJson(last.bodyText), error: null, attempts: log.length };
}

export interface DevToken {
  token: string;
  tenant_id: string;
  sub: string;
  expires_at: string;
}

/** Why no dev token came: `absent` when the server does not mint them (it answered 404). */
export interface DevTokenRefusal {
  error: string;
  absent: boolean;
}

/**
 * Asks the local server's loopback-only dev-token endpoint for a token. A failure says why; only
 * a 404 means the server mints none (a server that did not answer may be restarting).
 */
export async function fetchDevToken(): Promise<DevToken | DevTokenRefusal> {
  let res: Response;
  try {
    res = await fetch('/api/v1/dev/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: '{}',
    });
  } catch (err) {
    return { error: `No answer from the server (${(err as Error).message}): is it running?`, absent: false };
  }
  const body = parseJson(await res.text().catch(() => '')) as Partial<DevToken> & { detail?: unknown };
  if (res.ok && typeof body?.token === 'string') return body as DevToken;
  if (res.status === 404) {
    return { error: 'This server no longer mints development tokens: paste a token instead.', absent: true };
  }
  const detail = typeof body?.detail === 'string' ? `: ${body.detail}` : '';
  return { error: `The server answered ${res.status}${detail}`, absent: false };
}
