import type { CallResult } from './api';
import { JsonView } from './json-view';
import { hasProgress, ProgressBar, ProgressSummary, StatusBadge } from './kr-view';
import type { ManifestResource } from './manifest';

const REASONS: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

interface Problem {
  title?: string;
  detail?: string;
  code?: string;
  request_id?: string;
  errors?: { path?: string; code?: string; message?: string }[];
}

function isProblem(result: CallResult): boolean {
  const type = result.headers.find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? '';
  return (result.status ?? 0) >= 400 && (type.includes('problem+json') || typeof result.body === 'object');
}

/** `200 OK`, `412 Precondition Failed`: the status and its reason, as the status line shows them. */
function statusLine(result: CallResult & { status: number }): string {
  const { status } = result;
  return `${status} ${result.statusText && result.statusText !== 'OK' ? result.statusText : (REASONS[status] ?? '')}`.trim();
}

/**
 * What the console announces once a call is answered, in a few words (the whole answer, read
 * out, would be thousands of characters): `200 OK, 9 items, 17 ms`, `400 Bad Request:
 * validation_failed, 1 field error`, `Not sent: …`.
 */
export function responseSummary(result: CallResult): string {
  if (result.status === null) return result.error ?? 'No answer';
  const line = statusLine(result as CallResult & { status: number });
  const body = result.body;
  if (isProblem(result) && typeof body === 'object' && body !== null) {
    const { code, title, errors } = body as Problem;
    const fields = Array.isArray(errors) && errors.length > 0 ? `, ${plural(errors.length, 'field error')}` : '';
    return `${line}: ${code ?? title ?? 'error'}${fields}`;
  }
  const data = typeof body === 'object' && body !== null ? (body as { data?: unknown }).data : undefined;
  const items = result.status < 300 && Array.isArray(data) ? `, ${plural(data.length, 'item')}` : '';
  return `${line}${items}, ${result.ms} ms`;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Not a live region: the console's status line announces a new answer once; a stored one shown again is not. */
function ProblemPanel({ problem }: { problem: Problem }) {
  return (
    <div class="problem" data-testid="problem">
      <p class="problem-head">
        <strong>{problem.title ?? 'Error'}</strong>
        {problem.code && <code>{problem.code}</code>}
      </p>
      {problem.detail && <p class="problem-detail">{problem.detail}</p>}
      {Array.isArray(problem.errors) && problem.errors.length > 0 && (
        <ul class="field-errors" data-testid="field-errors">
          {problem.errors.map((e, i) => (
            <li key={`${e.path}-${i}`}>
              <code class="field-path">{e.path || '(body)'}</code> {e.message}
              {e.code && <span class="muted"> · {e.code}</span>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

type Row = Record<string, unknown>;

function ListRows({
  rows,
  resource,
  onPick,
}: {
  rows: Row[];
  resource: ManifestResource;
  onPick: ((row: { id: string; is_deleted?: unknown }) => void) | null;
}) {
  if (rows.length === 0) return <p class="muted">The list is empty.</p>;
  const titleField = resource.title_field;
  // Rows of the resource show their title; items of another list (check-ins) their value and time.
  const titled = rows.some((r) => titleField in r);
  const withAt = !titled && rows.some((r) => 'at' in r);
  const withStatus = rows.some((r) => 'status' in r);
  const withProgress = rows.some((r) => 'progress_pct' in r);
  return (
    // A scroller: reachable and named for the keyboard, which scrolls it with the arrow keys.
    // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must take the focus.
    <section class="table-scroll" aria-label="Listed rows" tabIndex={0}>
      <table class="data rows" data-testid="list-rows">
        <thead>
          <tr>
            <th scope="col">id</th>
            <th scope="col">{titled ? titleField : 'value'}</th>
            {withAt && <th scope="col">at</th>}
            {withStatus && <th scope="col">status</th>}
            {withProgress && <th scope="col">progress</th>}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => {
            const id = String(r.id ?? r.at ?? i);
            return (
              <tr key={id} data-id={id}>
                <td>
                  {onPick && typeof r.id === 'string' ? (
                    <button
                      type="button"
                      class="link-button mono"
                      onClick={() => onPick(r as { id: string; is_deleted?: unknown })}
                      title="Open with get"
                    >
                      {id}
                    </button>
                  ) : (
                    <code>{id}</code>
                  )}
                </td>
                <td>{String((titled ? r[titleField] : r.value) ?? '')}</td>
                {withAt && (
                  <td>
                    <code>{String(r.at ?? '')}</code>
                  </td>
                )}
                {withStatus && (
                  <td>
                    <StatusBadge status={r.status} />
                  </td>
                )}
                {withProgress && (
                  <td class="cell-progress">
                    <ProgressBar pct={r.progress_pct} label={`Progress of ${id}`} />
                  </td>
                )}
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

/** Status, timing, headers and pretty body of the last call of an operation. */
export function ResponseView({
  result,
  resource,
  onPick,
}: {
  result: CallResult;
  resource: ManifestResource;
  onPick: ((row: { id: string; is_deleted?: unknown }) => void) | null;
}) {
  if (result.status === null) {
    return (
      <div class="problem" data-testid="response-error">
        {result.error}
      </div>
    );
  }
  const status = result.status;
  const cls = status < 300 ? 'ok' : status < 400 ? 'redirect' : status < 500 ? 'client' : 'server';
  const body = result.body;
  const list =
    typeof body === 'object' && body !== null && Array.isArray((body as { data?: unknown }).data)
      ? ((body as { data: Row[] }).data as Row[])
      : null;
  const requestId = result.headers.find(([k]) => k.toLowerCase() === 'x-request-id')?.[1];
  return (
    <div class="response" data-testid="response">
      <p class="status-line">
        <span class={`status status-${cls}`} data-testid="response-status">
          {statusLine({ ...result, status })}
        </span>
        <span class="timing" data-testid="response-time">
          {result.ms} ms
        </span>
        {result.attempts > 1 && <span class="muted">{result.attempts} attempts</span>}
        {requestId && <code class="muted request-id">{requestId}</code>}
      </p>
      {isProblem(result) && typeof body === 'object' && body !== null && <ProblemPanel problem={body as Problem} />}
      {status < 300 && list && <ListRows rows={list} resource={resource} onPick={onPick} />}
      {status < 300 && !list && hasProgress(body) && <ProgressSummary doc={body} titleField={resource.title_field} />}
      <details class="headers" data-testid="response-headers">
        <summary>Headers ({result.headers.length})</summary>
        <table class="data">
          <tbody>
            {result.headers.map(([k, v]) => (
              <tr key={k}>
                <th scope="row">
                  <code>{k}</code>
                </th>
                <td>
                  <code>{v}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
      <div class="body-block">
        <p class="block-label">Body</p>
        {body !== undefined ? (
          <JsonView value={body} testId="response-body" label="Response body" />
        ) : (
          // biome-ignore lint/a11y/noNoninteractiveTabindex lint/a11y/useSemanticElements: a scroller, focusable and named.
          <pre class="json" data-testid="response-body" role="region" aria-label="Response body" tabIndex={0}>
            <code>{result.bodyText || '(empty)'}</code>
          </pre>
        )}
      </div>
    </div>
  );
}
