import { useState } from 'preact/hooks';

/** A code sample with a copy button. */
export function CodeBlock({ code, label, testId }: { code: string; label: string; testId?: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(code);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      setCopied(false);
    }
  };
  return (
    <div class="code">
      <div class="code-head">
        <span>{label}</span>
        <button type="button" class="link-button" onClick={copy} aria-label={`Copy ${label}`}>
          {copied ? 'Copied' : 'Copy'}
        </button>
      </div>
      <pre data-testid={testId}>
        <code>{code}</code>
      </pre>
    </div>
  );
}
