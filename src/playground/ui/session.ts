import { createContext } from 'preact';
import type { CallResult, DevToken } from './api';
import type { FormState, KnownIds } from './request';

/** What the console remembers across operations and resources while the tab is open. */
export interface Session {
  token: string;
  setToken(token: string): void;
  /** Whether the serving origin offers the loopback dev-token endpoint. */
  devToken: 'checking' | 'available' | 'absent';
  devInfo: DevToken | null;
  /** Fetches a dev token into the token field; resolves to why it could not, or null. */
  useDevToken(): Promise<string | null>;
  known: KnownIds;
  /** Records the id of a document the API answered, so later forms are prefilled with it. */
  remember(body: unknown): void;
  forms: Readonly<Record<string, FormState>>;
  setForm(key: string, form: FormState): void;
  results: Readonly<Record<string, CallResult>>;
  setResult(key: string, result: CallResult): void;
  navigate(href: string): void;
}

export const SessionContext = createContext<Session | null>(null);

const TOKEN_KEY = 'edm.playground.token';
const IDS_KEY = 'edm.playground.ids';

/** sessionStorage may be unavailable (privacy modes): the console then simply forgets on reload. */
export function loadStored(): { token: string; known: KnownIds } {
  try {
    const ids = JSON.parse(sessionStorage.getItem(IDS_KEY) ?? '{}') as unknown;
    return {
      token: sessionStorage.getItem(TOKEN_KEY) ?? '',
      known: typeof ids === 'object' && ids !== null ? (ids as KnownIds) : {},
    };
  } catch {
    return { token: '', known: {} };
  }
}

export function store(token: string, known: KnownIds): void {
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(IDS_KEY, JSON.stringify(known));
  } catch {
    // Not persisted: fine for a scratch console.
  }
}

/** The id prefix of a document id: `kr` for `kr_01J…`. */
export function idPrefix(id: string): string | null {
  const i = id.indexOf('_');
  return i > 0 ? id.slice(0, i) : null;
}

export const formKey = (resourcePath: string, op: string) => `${resourcePath} ${op}`;
