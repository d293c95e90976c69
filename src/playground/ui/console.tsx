import type { TargetedKeyboardEvent } from 'preact';
import { useContext, useRef, useState } from 'preact/hooks';
import { sendCall } from './call';
import { CodeBlock } from './code-block';
import { type ManifestHeader, type ManifestOperation, type ManifestResource, viaSdk } from './manifest';
import {
  buildRequest,
  defaultParam,
  emptyForm,
  exampleBodyText,
  type FormState,
  splitChoices,
  toggleChoice,
} from './request';
import { ResponseView, responseSummary } from './response-view';
import { formKey, SessionContext } from './session';
import { curlSnippet, sdkSnippet } from './snippets';

/** What the console says under each header field. */
const HEADER_HINTS: Record<ManifestHeader, { placeholder: string; hint: string }> = {
  'If-Match': {
    placeholder: 'e.g. "3"',
    hint: 'Write only if the row is still at this version (its ETag); else 412. Empty: not sent.',
  },
  'Idempotency-Key': {
    placeholder: 'made up when empty',
    hint: 'Send the same key again to get the first answer replayed instead of a second write.',
  },
};

/** Query parameters shown before the "more parameters" fold. */
const VISIBLE_QUERY = 6;

export const domId = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '-');

function TokenField() {
  const session = useContext(SessionContext);
  const [busy, setBusy] = useState(false);
  const [devError, setDevError] = useState<string | null>(null);
  if (!session) return null;
  const { token, setToken, devToken, devInfo } = session;
  const useDev = async () => {
    if (busy) return;
    setBusy(true);
    setDevError(null);
    try {
      setDevError(await session.useDevToken());
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="field token-field">
      <label for="token">Token</label>
      <div class="token-row">
        <input
          id="token"
          class="mono"
          type="text"
          value={token}
          placeholder="A bearer JWT with sub, tenant_id and exp"
          autocomplete="off"
          spellcheck={false}
          // A pasted `Bearer eyJ…` header value is the token after its scheme.
          onInput={(e) => setToken(e.currentTarget.value.trim().replace(/^Bearer\s+/i, ''))}
        />
        {devToken === 'available' && (
          // aria-disabled, not disabled: a disabled button drops the keyboard's focus to the page.
          <button type="button" class="secondary" onClick={useDev} aria-disabled={busy}>
            Use dev token
          </button>
        )}
      </div>
      {devError && (
        <p class="field-error" role="alert" data-testid="dev-token-error">
          {devError}
        </p>
      )}
      {/* A status region, there before the token arrives, so a screen reader says what the button
          did (a token for which tenant, until when) where a sighted user sees it appear. */}
      <div role="status" data-testid="dev-token-status">
        {devInfo && devInfo.token === token && (
          <p class="hint" data-testid="dev-token-info">
            Dev token for tenant <code>{devInfo.tenant_id}</code>, sub <code>{devInfo.sub}</code>, until{' '}
            {devInfo.expires_at.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC')}. For a quarter of demo OKRs in this
            tenant, run{' '}
            <code data-testid="seed-command">
              edm seed{devInfo.tenant_id === 'dev' ? '' : ` --tenant ${devInfo.tenant_id}`}
            </code>{' '}
            beside the server.
          </p>
        )}
      </div>
      {!token ? (
        <p class="hint">
          {devToken === 'available' ? (
            'This local server mints development tokens: use the button.'
          ) : (
            <>
              Mint one with <code>edm token --tenant T --sub usr-…</code> and paste it here.
            </>
          )}
        </p>
      ) : null}
    </div>
  );
}

function QueryInput({
  id,
  param,
  value,
  onValue,
  error,
}: {
  id: string;
  param: ManifestOperation['query'][number];
  value: string;
  onValue: (v: string) => void;
  /** What the last answer said of this parameter (a problem's errors[] names it), if anything. */
  error?: string | undefined;
}) {
  // The server's word on the parameter, then its hint, read out with the input.
  const describedBy = [error ? `${id}-error` : '', param.description ? `${id}-hint` : ''].filter(Boolean).join(' ');
  const options = param.enum ?? (param.type === 'boolean' ? ['true', 'false'] : null);
  if (options && param.multiple) {
    // Any of several values (`status=at_risk,off_track`): a checkbox per value.
    const chosen = new Set(splitChoices(value));
    return (
      <fieldset class="field choices-field" id={id}>
        <legend class="label">
          <code>{param.name}</code> <span class="muted">{param.type}, any of</span>
        </legend>
        <div class="choices">
          {options.map((o) => (
            <label key={o} class="choice">
              <input
                type="checkbox"
                value={o}
                checked={chosen.has(o)}
                onChange={(e) => onValue(toggleChoice(value, o, e.currentTarget.checked, options))}
              />{' '}
              <code>{o}</code>
            </label>
          ))}
        </div>
        {param.description && <p class="hint">{param.description}</p>}
      </fieldset>
    );
  }
  return (
    <div class="field">
      <label for={id}>
        <code>{param.name}</code> <span class="muted">{param.type}</span>
      </label>
      {options ? (
        <select
          id={id}
          value={value}
          aria-invalid={error ? 'true' : undefined}
          aria-describedby={describedBy || undefined}
          onChange={(e) => onValue(e.currentTarget.value)}
        >
          <option value="">—</option>
          {options.map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      ) : (
        <input
          id={id}
          type="text"
          value={value}
          inputMode={param.type === 'integer' || param.type === 'number' ? 'decimal' : undefined}
          autocomplete="off"
          spellcheck={false}
          aria-invalid={error ? 'true' : undefined}
          aria-describedby={describedBy || undefined}
          onInput={(e) => onValue(e.currentTarget.value)}
        />
      )}
      {error && (
        <p class="field-error" id={`${id}-error`}>
          {error}
        </p>
      )}
      {param.description && (
        <p class="hint" id={`${id}-hint`}>
          {param.description}
        </p>
      )}
    </div>
  );
}

/** The console of one operation: parameters, body, token, Send, the answer, and the call as SDK code and curl. */
export function Console({ resource, op }: { resource: ManifestResource; op: ManifestOperation }) {
  const session = useContext(SessionContext);
  const formRef = useRef<HTMLFormElement>(null);
  const responseRef = useRef<HTMLElement>(null);
  const [sending, setSending] = useState(false);
  const [invalid, setInvalid] = useState<string | null>(null);
  // What the status line announces: set once per answered call, and empty when the console is
  // drawn again (another tab and back), so a stored answer shown again is not read out again.
  const [announced, setAnnounced] = useState('');
  /** The answer that last opened "More parameters" for a parameter it refused (see below). */
  const foldOpenedFor = useRef<unknown>(null);
  if (!session) return null;
  const key = formKey(resource.path, op.name);
  const form = session.forms[key] ?? emptyForm();
  const built = buildRequest(op, resource, form, session.known);
  const baseUrl = location.origin;
  const result = session.results[key];
  const base = domId(`${resource.module}-${resource.name}-${op.name}`);
  const pathNames = built.pathValues.map((p) => p.name);

  const update = (next: Partial<FormState>) => {
    setInvalid(null);
    session.setForm(key, { ...form, ...next });
  };

  const send = async (e?: Event) => {
    e?.preventDefault();
    if (sending) return;
    if (built.missing.length > 0) {
      setInvalid(`Fill in ${built.missing.join(', ')} first.`);
      document.getElementById(`${base}-p-${built.missing[0]}`)?.focus();
      return;
    }
    if (built.paramError) {
      setInvalid(built.paramError);
      if (built.paramErrorAt) document.getElementById(`${base}-p-${built.paramErrorAt}`)?.focus();
      return;
    }
    if (built.bodyError) {
      setInvalid(built.bodyError);
      document.getElementById(`${base}-body`)?.focus();
      return;
    }
    if (built.headerError) {
      setInvalid(built.headerError);
      if (built.headerErrorAt) document.getElementById(`${base}-h-${domId(built.headerErrorAt)}`)?.focus();
      return;
    }
    setSending(true);
    try {
      // One attempt: the console shows what the server answered, a 429 or 503 too (with its
      // Retry-After), not a retry's answer seconds later. The SDK snippet's client retries.
      const res = await sendCall(op, built, session.token, { maxRetries: 0 });
      session.setResult(key, res);
      // The same words as the last answer's (a second Send): a changed text, so it is read again.
      const summary = responseSummary(res);
      setAnnounced((last) => (last === summary ? `${summary}\u00a0` : summary));
      if (res.status !== null && res.status < 300) session.remember(res.body);
      // The answer sits below the form and its snippets: where its top is out of sight (below
      // the window, as on a phone; or above it, under the top bar, after reading down a long
      // list), bring the top into view; where it shows already, nothing moves.
      requestAnimationFrame(() => {
        const top = responseRef.current?.getBoundingClientRect().top;
        if (top !== undefined && (top > window.innerHeight - 48 || top < 64)) {
          responseRef.current?.scrollIntoView({ block: 'start' });
        }
      });
    } finally {
      setSending(false);
    }
  };

  const onKeyDown = (e: TargetedKeyboardEvent<HTMLFormElement>) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) void send(e);
  };

  const pick = (row: { id: string; is_deleted?: unknown }) => {
    const { id } = row;
    // As it was listed: a deleted row is an id to get or restore, not a reference to prefill.
    session.remember({ id, is_deleted: row.is_deleted });
    const get = resource.operations.find((o) => o.name === 'get');
    if (!get) return;
    const getKey = formKey(resource.path, get.name);
    session.setForm(getKey, { ...(session.forms[getKey] ?? emptyForm()), params: { id } });
    session.navigate(`#${get.name}`);
    // The picked row's button is gone with the list: the keyboard goes on at the get's Send.
    const getBase = domId(`${resource.module}-${resource.name}-${get.name}`);
    requestAnimationFrame(() => document.getElementById(`${getBase}-send`)?.focus());
  };

  // The parameters the last answer refused: a problem's errors[] names a parameter by its name
  // (a body member by a JSON Pointer, shown with the body's problem).
  const refused = new Map<string, string>();
  if (result && result.status !== null && result.status >= 400) {
    const errors = (result.body as { errors?: unknown } | null)?.errors;
    for (const e of Array.isArray(errors) ? errors : []) {
      const { path, message } = (e ?? {}) as { path?: unknown; message?: unknown };
      if (typeof path === 'string' && !path.startsWith('/') && typeof message === 'string') refused.set(path, message);
    }
  }
  const visible = op.query.slice(0, VISIBLE_QUERY);
  const folded = op.query.slice(VISIBLE_QUERY);
  const queryInput = (param: ManifestOperation['query'][number]) => (
    <QueryInput
      key={param.name}
      id={`${base}-q-${domId(param.name)}`}
      param={param}
      value={form.query[param.name] ?? ''}
      onValue={(v) => update({ query: { ...form.query, [param.name]: v } })}
      error={refused.get(param.name)}
    />
  );
  const bodyText = form.body ?? exampleBodyText(op, resource, session.known);

  return (
    <form class="console" ref={formRef} onSubmit={send} onKeyDown={onKeyDown} aria-label={`Console: ${op.name}`}>
      <div class="console-grid">
        <div class="console-request">
          <TokenField />
          {pathNames.length > 0 && (
            <fieldset>
              <legend>Path</legend>
              {pathNames.map((name) => (
                <div class="field" key={name}>
                  <label for={`${base}-p-${name}`}>
                    <code>{name}</code> <span class="pill pill-required">required</span>
                  </label>
                  <input
                    id={`${base}-p-${name}`}
                    class="mono"
                    type="text"
                    value={form.params[name] ?? defaultParam(resource, name, session.known)}
                    placeholder={`${resource.id_prefix}_…`}
                    autocomplete="off"
                    spellcheck={false}
                    onInput={(e) => update({ params: { ...form.params, [name]: e.currentTarget.value } })}
                  />
                </div>
              ))}
            </fieldset>
          )}
          {op.query.length > 0 && (
            <fieldset>
              <legend>Query</legend>
              <div class="query-grid">{visible.map(queryInput)}</div>
              {folded.length > 0 && (
                <details
                  class="more-params"
                  // An answer that refused a parameter in here opens it, once: the mark at its
                  // input is then in sight (and in the reading order), not behind a closed fold.
                  ref={(fold) => {
                    if (fold && result !== foldOpenedFor.current && folded.some((p) => refused.has(p.name))) {
                      fold.open = true;
                      foldOpenedFor.current = result;
                    }
                  }}
                >
                  <summary>More parameters ({folded.length})</summary>
                  <div class="query-grid">{folded.map(queryInput)}</div>
                </details>
              )}
            </fieldset>
          )}
          {op.headers.length > 0 && (
            <fieldset>
              <legend>Headers</legend>
              <div class="query-grid">
                {op.headers.map((name) => (
                  <div class="field" key={name}>
                    <label for={`${base}-h-${domId(name)}`}>
                      <code>{name}</code>
                    </label>
                    <input
                      id={`${base}-h-${domId(name)}`}
                      class="mono"
                      type="text"
                      value={form.headers?.[name] ?? ''}
                      placeholder={HEADER_HINTS[name].placeholder}
                      autocomplete="off"
                      spellcheck={false}
                      aria-invalid={built.headerErrorAt === name ? 'true' : undefined}
                      aria-describedby={
                        built.headerErrorAt === name ? `${base}-h-error` : `${base}-h-${domId(name)}-hint`
                      }
                      onInput={(e) => update({ headers: { ...form.headers, [name]: e.currentTarget.value } })}
                    />
                    <p class="hint" id={`${base}-h-${domId(name)}-hint`}>
                      {HEADER_HINTS[name].hint}
                    </p>
                  </div>
                ))}
              </div>
              {built.headerError && (
                <p class="field-error" id={`${base}-h-error`}>
                  {built.headerError}
                </p>
              )}
            </fieldset>
          )}
          {op.has_body && (
            <div class="field body-field">
              <div class="label-row">
                <label for={`${base}-body`}>Body (JSON)</label>
                {form.body !== undefined && (
                  <button
                    type="button"
                    class="link-button"
                    onClick={() => {
                      update({ body: undefined });
                      // The button goes with the edit it undoes: the keyboard goes on in the body.
                      document.getElementById(`${base}-body`)?.focus();
                    }}
                  >
                    Reset to example
                  </button>
                )}
              </div>
              <textarea
                id={`${base}-body`}
                class="mono"
                spellcheck={false}
                rows={Math.min(18, Math.max(4, bodyText.split('\n').length + 1))}
                value={bodyText}
                aria-invalid={built.bodyError ? 'true' : undefined}
                aria-describedby={built.bodyError ? `${base}-body-error` : undefined}
                onInput={(e) => update({ body: e.currentTarget.value })}
              />
              {built.bodyError && (
                <p class="field-error" id={`${base}-body-error`}>
                  {built.bodyError}
                </p>
              )}
            </div>
          )}
          <div class="send-row">
            <button type="submit" class="primary" aria-disabled={sending} data-testid="send" id={`${base}-send`}>
              {sending ? 'Sending…' : 'Send'}
            </button>
            <span class="hint">
              <kbd>Ctrl</kbd>+<kbd>Enter</kbd>
            </span>
            {invalid && (
              <span class="field-error" role="alert">
                {invalid}
              </span>
            )}
          </div>
        </div>
        <div class="console-code">
          <CodeBlock
            label={viaSdk(op) ? 'SDK' : 'fetch'}
            code={sdkSnippet(op, resource, built, baseUrl)}
            testId="sdk-snippet"
          />
          <CodeBlock label="curl" code={curlSnippet(op, built, baseUrl)} testId="curl-snippet" />
          {viaSdk(op) && (
            <p class="hint" data-testid="token-hint">
              Both read the token from <code>EDM_TOKEN</code>: run <code>export EDM_TOKEN=…</code> with the token above
              first.
            </p>
          )}
        </div>
      </div>
      {/* Not a live region: read out, the whole answer is thousands of characters. The status line says it in a few words. */}
      <section class="console-response" aria-labelledby={`${base}-response-title`} ref={responseRef}>
        <h3 class="block-title" id={`${base}-response-title`}>
          Response
        </h3>
        <p class="visually-hidden" role="status" aria-atomic="true" data-testid="response-announce">
          {announced}
        </p>
        {result ? (
          <ResponseView result={result} resource={resource} onPick={op.response === 'list' ? pick : null} />
        ) : (
          <p class="muted">Send the request to see the status, timing, headers and body.</p>
        )}
      </section>
    </form>
  );
}
