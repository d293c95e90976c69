import { Fragment } from 'preact';
import { limitsText, type ManifestField, requiredUnlessText } from './manifest';

function defaultText(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : JSON.stringify(value);
}

/**
 * The reference table of a resource's fields: name (* = always present), type and enum values,
 * notes. `body`: the fields of an operation's body instead (a check-in's), which a call sends.
 */
export function SchemaTable({ fields, body = false }: { fields: ManifestField[]; body?: boolean }) {
  return (
    <>
      {body ? (
        <p class="legend">
          <span class="pill pill-required">required</span> must be sent · the others may be left out
        </p>
      ) : (
        <p class="legend">
          <span class="req" aria-hidden="true">
            *
          </span>{' '}
          always present in responses · <span class="pill pill-required">required</span> must be sent on create ·{' '}
          <span class="pill">read-only</span> set by the server
        </p>
      )}
      {/* A scroll region the keyboard can reach and a screen reader names: in a narrow window the
          table scrolls sideways, its notes out of the keyboard's reach otherwise. */}
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must take the focus. */}
      <section class="table-scroll" tabIndex={0} aria-label={body ? 'Body fields table' : 'Schema fields table'}>
        <table class="schema" data-testid={body ? 'body-table' : 'schema-table'}>
          <thead>
            <tr>
              <th scope="col">Field</th>
              <th scope="col">Type</th>
              <th scope="col">Notes</th>
            </tr>
          </thead>
          <tbody>
            {fields.map((f) => (
              <tr key={f.name} data-field={f.name} class={f.platform ? 'platform' : undefined}>
                <th scope="row" class="field-name">
                  <code>{f.name}</code>
                  {f.always_present && (
                    <abbr class="req" title="always present">
                      *
                    </abbr>
                  )}
                </th>
                <td class="field-type">
                  <span class="type">{f.type}</span>
                  {f.enum && f.enum.length > 0 && (
                    <span class="enum" data-testid="enum-values">
                      {f.enum.map((v, i, all) => (
                        // Each value keeps its separator, so a line never starts with "|".
                        <Fragment key={v}>
                          <span class="enum-value">{i < all.length - 1 ? `${v} |` : v}</span>
                          {i < all.length - 1 ? ' ' : ''}
                        </Fragment>
                      ))}
                    </span>
                  )}
                </td>
                <td class="field-notes">
                  <span class="notes">{f.notes}</span>
                  {limitsText(f) && (
                    <span class="limits" data-testid="field-limits">
                      {limitsText(f)}
                    </span>
                  )}
                  {f.default_rule && (
                    <span class="default-rule" data-testid="default-rule">
                      Default: {f.default_rule}
                    </span>
                  )}
                  <span class="pills">
                    {f.required && (
                      <span class="pill pill-required">
                        {f.required_unless ? `required ${requiredUnlessText(f)}` : 'required'}
                      </span>
                    )}
                    {f.computed ? (
                      <span class="pill">computed</span>
                    ) : (
                      f.read_only && <span class="pill">read-only</span>
                    )}
                    {f.write_only && <span class="pill">write-only</span>}
                    {f.ref && <span class="pill">→ {f.ref}_…</span>}
                    {f.default !== null && f.default !== undefined && (
                      <span class="pill">default {defaultText(f.default)}</span>
                    )}
                  </span>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}
