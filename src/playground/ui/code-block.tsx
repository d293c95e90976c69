import { useEffect, useRef, useState } from 'preact/hooks';

/** What the last Copy did: wrote the clipboard, or (no clipboard here) selected the code. */
type Copied = 'no' | 'copied' | 'selected';

/**
 * A code sample with a copy button. Where the page may not write the clipboard (a plain-HTTP
 * address other than localhost, or a browser that refuses), Copy selects the code instead and
 * says to press Ctrl+C; either outcome is announced.
 */
export function CodeBlock({ code, label, testId }: { code: string; label: string; testId?: string }) {
  const [copied, setCopied] = useState<Copied>('no');
  const pre = useRef<HTMLPreElement>(null);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  const show = (outcome: Copied, ms: number) => {
    setCopied(outcome);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => setCopied('no'), ms);
  };
  const copy = async () => {
    try {
      if (!navigator.clipboard) throw new Error('no clipboard in this context');
      await navigator.clipboard.writeText(code);
      show('copied', 1500);
    } catch {
      const selection = window.getSelection();
      if (pre.current && selection) selection.selectAllChildren(pre.current);
      show('selected', 6000);
    }
  };
  return (
    <div class="code">
      <div class="code-head">
        <span>{label}</span>
        <span role="status" class="copy-status">
          {copied === 'copied' ? `${label} copied` : copied === 'selected' ? 'Selected: press Ctrl+C (⌘C) to copy' : ''}
        </span>
        <button type="button" class="link-button" onClick={copy} aria-label={`Copy ${label}`}>
          {copied === 'copied' ? 'Copied' : 'Copy'}
        </button>
      </div>
      <pre data-testid={testId} ref={pre}>
        <code>{code}</code>
      </pre>
    </div>
  );
}
