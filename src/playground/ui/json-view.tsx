import type { JSX } from 'preact';
import { memo } from 'preact/compat';

const TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

/**
 * Pretty JSON with keys, strings, numbers and literals coloured (built as nodes, never as HTML).
 * Drawn again only for another value: a 200-row page is ~13,000 nodes, too many to rebuild on
 * every keystroke in the console's fields.
 */
export const JsonView = memo(function JsonView({
  value,
  testId,
  label,
}: {
  value: unknown;
  testId?: string;
  /** The scroller's name: it takes the focus, so the keyboard can scroll a long body. */
  label: string;
}) {
  const text = JSON.stringify(value, null, 2) ?? '';
  const parts: (string | JSX.Element)[] = [];
  let last = 0;
  for (const m of text.matchAll(TOKEN)) {
    const at = m.index ?? 0;
    if (at > last) parts.push(text.slice(last, at));
    const cls = m[1] ? (m[2] ? 'j-key' : 'j-str') : m[3] ? 'j-lit' : 'j-num';
    parts.push(
      <span class={cls} key={at}>
        {m[1] ?? m[0]}
      </span>,
    );
    if (m[1] && m[2]) parts.push(m[2]);
    last = at + m[0].length;
  }
  parts.push(text.slice(last));
  return (
    // biome-ignore lint/a11y/noNoninteractiveTabindex lint/a11y/useSemanticElements: a scroller, focusable and named.
    <pre class="json" data-testid={testId} role="region" aria-label={label} tabIndex={0}>
      <code>{parts}</code>
    </pre>
  );
});
