import type { TargetedKeyboardEvent } from 'preact';
import { useContext, useEffect, useRef } from 'preact/hooks';
import { CodeBlock } from './code-block';
import { Console, domId } from './console';
import { type ManifestModule, type ManifestOperation, type ManifestResource, viaSdk } from './manifest';
import { buildRequest, emptyForm, type KnownIds } from './request';
import { SchemaTable } from './schema-table';
import { SessionContext } from './session';
import { type Arg, clientSetup, sdkCall, signedFetch } from './snippets';

export function MethodBadge({ method }: { method: string }) {
  return <span class={`method method-${method.toLowerCase()}`}>{method}</span>;
}

/** One line of SDK code per operation, from the manifest's example (fetch for a signed one, which has no SDK method). */
function operationSnippet(op: ManifestOperation, resource: ManifestResource, known: KnownIds): string {
  const built = buildRequest(op, resource, emptyForm(), known);
  if (!viaSdk(op)) return signedFetch(op, resource, built, `${op.path}?tenant_id=…&signature=…`);
  const args: Arg[] = built.pathValues.map((p) => ({ code: p.name }));
  if (op.has_body) args.push({ value: built.body ?? {} });
  const call = sdkCall(op, resource, args);
  if (op.name !== 'list') return call;
  return `${call}\nfor await (const item of ${op.client_method}()) console.log(item.id);`;
}

function OperationTabs({
  ops,
  active,
  onSelect,
}: {
  ops: ManifestOperation[];
  active: ManifestOperation;
  onSelect: (op: ManifestOperation, focus: boolean) => void;
}) {
  const onKeyDown = (e: TargetedKeyboardEvent<HTMLDivElement>) => {
    const i = ops.indexOf(active);
    const next =
      e.key === 'ArrowRight'
        ? ops[(i + 1) % ops.length]
        : e.key === 'ArrowLeft'
          ? ops[(i - 1 + ops.length) % ops.length]
          : e.key === 'Home'
            ? ops[0]
            : e.key === 'End'
              ? ops[ops.length - 1]
              : null;
    if (!next) return;
    e.preventDefault();
    onSelect(next, true);
  };
  return (
    <div class="tabs" role="tablist" aria-label="Operations" onKeyDown={onKeyDown}>
      {ops.map((op) => {
        const selected = op === active;
        return (
          <button
            key={op.name}
            type="button"
            role="tab"
            id={`tab-${domId(op.name)}`}
            aria-selected={selected}
            aria-controls="operation-panel"
            tabIndex={selected ? 0 : -1}
            class={selected ? 'tab active' : 'tab'}
            onClick={() => onSelect(op, false)}
          >
            {op.name}
          </button>
        );
      })}
    </div>
  );
}

/** What the seed page shows for a resource, plus a console per operation. */
export function ResourcePage({
  module,
  resource,
  opName,
}: {
  module: ManifestModule;
  resource: ManifestResource;
  opName: string | null;
}) {
  const session = useContext(SessionContext);
  const focusTab = useRef<string | null>(null);
  const ops = resource.operations;
  const active = ops.find((o) => o.name === opName) ?? ops[0];

  useEffect(() => {
    // The tab the keyboard moved to, once it is the one selected: with arrow presses a frame apart,
    // a render of an earlier press's tab must not take the focus to that one and drop the later.
    if (focusTab.current && focusTab.current === active?.name) {
      document.getElementById(`tab-${domId(active.name)}`)?.focus();
      focusTab.current = null;
    }
  });
  useEffect(() => {
    document.title = `${resource.name} · Playground`;
  }, [resource.name]);

  if (!session) return null;
  const select = (op: ManifestOperation, focus: boolean) => {
    // The operation chosen already: no navigation renders again, so its tab is focused here.
    if (op === active) {
      if (focus) document.getElementById(`tab-${domId(op.name)}`)?.focus();
      return;
    }
    focusTab.current = focus ? op.name : null;
    session.navigate(`#${op.name}`);
  };
  const setup = clientSetup(location.origin).join('\n');

  return (
    <article class="resource" data-testid="resource-page">
      <header class="resource-head">
        <p class="eyebrow">
          {module.name} · schema v{resource.schema_version} · ids <code>{resource.id_prefix}_…</code>
        </p>
        <h1>{resource.name}</h1>
        <p class="resource-path">
          <code>{resource.path}</code>
        </p>
        <p class="resource-desc">{resource.description}</p>
      </header>

      {active ? (
        <section class="operations" aria-labelledby="operations-title">
          {/* The console's Response (an h3) sits under this heading, as Schema and API do under theirs. */}
          <h2 id="operations-title" class="visually-hidden">
            Operations
          </h2>
          <OperationTabs ops={ops} active={active} onSelect={select} />
          <div
            class="tab-panel"
            role="tabpanel"
            id="operation-panel"
            aria-labelledby={`tab-${domId(active.name)}`}
            data-op={active.name}
          >
            <p class="op-line">
              <MethodBadge method={active.method} />
              <code class="op-path">{active.path}</code>
            </p>
            <p class="op-summary">
              {active.summary} <span class="muted">→ {active.success_status}</span>
            </p>
            {active.body_fields && (
              <details class="op-body-fields">
                <summary>Body fields</summary>
                <SchemaTable fields={active.body_fields} body />
              </details>
            )}
            <Console key={`${resource.path} ${active.name}`} resource={resource} op={active} />
          </div>
        </section>
      ) : (
        <p class="muted">This resource declares no operations.</p>
      )}

      <section class="schema-section" aria-labelledby="schema-title">
        <h2 id="schema-title">Schema</h2>
        <SchemaTable fields={resource.fields} />
      </section>

      <section class="api-section" aria-labelledby="api-title">
        <h2 id="api-title">API</h2>
        <p class="namespace">
          <code data-testid="client-namespace">{resource.client_namespace}.*</code>
        </p>
        <CodeBlock label="Set-up" code={setup} />
        <dl class="op-snippets">
          {ops.map((op) => (
            <div key={op.name} class="op-snippet">
              <dt>
                <a
                  href={`#${op.name}`}
                  onClick={(e) => {
                    e.preventDefault();
                    // The console is far above this section: its tab, focused, is brought into view
                    // (and a keyboard or a screen reader is taken there too).
                    select(op, true);
                  }}
                >
                  <code>{viaSdk(op) ? op.client_method.replace(/^client\./, '') : `${op.name} (signed URL)`}</code>
                </a>
                <span class="muted">
                  {' '}
                  {op.method} {op.path.replace(resource.path, '') || '/'} — {op.summary}
                </span>
              </dt>
              <dd>
                <pre>
                  <code>{operationSnippet(op, resource, session.known)}</code>
                </pre>
              </dd>
            </div>
          ))}
        </dl>
        <p class="hint">
          List parameters: sort by {resource.list.sortable.join(', ')} (default{' '}
          <code>{resource.list.default_sort}</code>
          ); filter by {filterParameters(resource).join(', ')}; limit {resource.list.default_limit} by default,{' '}
          {resource.list.max_limit} at most.
        </p>
      </section>
    </article>
  );
}

/** The list's filters by the names a query takes (`tag`, not the field `tags`; ranges once). */
function filterParameters(resource: ManifestResource): string[] {
  const list = resource.operations.find((op) => op.name === 'list');
  const paging = new Set(['limit', 'cursor', 'sort', 'q', 'include_deleted']);
  const names = (list?.query ?? []).map((p) => p.name.replace(/\[\w+\]$/, '')).filter((n) => !paging.has(n));
  return names.length > 0 ? [...new Set(names)] : resource.list.filterable;
}
