import type { JSX, TargetedMouseEvent } from 'preact';
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { type CallResult, type DevToken, fetchDevToken } from './api';
import { fetchManifest, findResource, type Manifest, resourceSlug } from './manifest';
import { type FormState, type KnownIds, rememberId } from './request';
import { ResourcePage } from './resource-page';
import { parseRoute, type Route, routeHref } from './route';
import { idPrefix, loadStored, type Session, SessionContext, store } from './session';

type Load = { kind: 'loading' } | { kind: 'error'; message: string } | { kind: 'ready'; manifest: Manifest };

/** Follows same-page links without a reload (plain clicks only: a middle click still opens a tab). */
function follow(navigate: (href: string) => void) {
  return (e: TargetedMouseEvent<HTMLAnchorElement>) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(e.currentTarget.getAttribute('href') ?? '/playground');
  };
}

function Sidebar({ manifest, route, navigate }: { manifest: Manifest; route: Route; navigate: (h: string) => void }) {
  const onClick = follow(navigate);
  return (
    <nav
      class="sidebar"
      aria-label="Modules and resources"
      // On a phone the list is a strip that scrolls sideways: the link the keyboard reaches is
      // brought whole into it (the browser leaves one it can partly see where it is).
      onFocusIn={(e) => (e.target as HTMLElement).scrollIntoView?.({ block: 'nearest', inline: 'nearest' })}
    >
      {manifest.modules.map((mod) => (
        <div class="module" key={mod.name}>
          <h2 class="module-name" title={mod.description}>
            {mod.name}
          </h2>
          <ul>
            {mod.resources.map((r) => {
              const slug = resourceSlug(r);
              const current = route.module === mod.name && route.resource === slug;
              return (
                <li key={r.path}>
                  <a
                    href={routeHref({ module: mod.name, resource: slug, op: null })}
                    aria-current={current ? 'page' : undefined}
                    onClick={onClick}
                  >
                    <span class="res-name">{r.name}</span>
                    <span class="res-slug">{slug}</span>
                  </a>
                </li>
              );
            })}
          </ul>
        </div>
      ))}
    </nav>
  );
}

function Overview({ manifest, navigate }: { manifest: Manifest; navigate: (h: string) => void }) {
  const onClick = follow(navigate);
  return (
    <article class="overview">
      <h1>Playground</h1>
      <p class="resource-desc">
        {manifest.platform.name} {manifest.platform.version}: every resource, its schema and SDK calls, and a console to
        call the API from this page.
      </p>
      {manifest.modules.map((mod) => (
        <section key={mod.name}>
          <h2>
            {mod.name} <code class="muted">{mod.client_namespace}</code>
          </h2>
          {mod.description && <p>{mod.description}</p>}
          <ul class="cards">
            {mod.resources.map((r) => (
              <li key={r.path}>
                <a
                  class="card"
                  href={routeHref({ module: mod.name, resource: resourceSlug(r), op: null })}
                  onClick={onClick}
                >
                  <strong>{r.name}</strong>
                  <code>{r.path}</code>
                  <span>{r.description}</span>
                </a>
              </li>
            ))}
          </ul>
        </section>
      ))}
    </article>
  );
}

export function App() {
  const [load, setLoad] = useState<Load>({ kind: 'loading' });
  const [route, setRoute] = useState<Route>(() => parseRoute(location.pathname, location.hash));
  const stored = useMemo(loadStored, []);
  const [token, setToken] = useState(stored.token);
  const [known, setKnown] = useState<KnownIds>(stored.known);
  const [forms, setForms] = useState<Record<string, FormState>>({});
  const [results, setResults] = useState<Record<string, CallResult>>({});
  const [devToken, setDevToken] = useState<Session['devToken']>('checking');
  const [devInfo, setDevInfo] = useState<DevToken | null>(null);
  const mainRef = useRef<HTMLElement>(null);
  const lastPath = useRef(location.pathname);

  const loadManifest = useCallback(() => {
    setLoad({ kind: 'loading' });
    fetchManifest().then(
      (manifest) => {
        setLoad({ kind: 'ready', manifest });
        // The manifest says whether this server mints dev tokens: no probe (a 404 on a
        // configured server, a token minted on every load of a local one).
        setDevToken(manifest.platform.dev_token ? 'available' : 'absent');
      },
      (err: Error) => setLoad({ kind: 'error', message: err.message }),
    );
  }, []);

  useEffect(loadManifest, []);
  useEffect(() => {
    const sync = () => setRoute(parseRoute(location.pathname, location.hash));
    addEventListener('popstate', sync);
    addEventListener('hashchange', sync);
    return () => {
      removeEventListener('popstate', sync);
      removeEventListener('hashchange', sync);
    };
  }, []);
  // Stored in the same turn as the render that shows the answer, before the page can be left: an
  // effect runs after the browser paints, so a page loaded right after an answer was shown (a
  // link, a typed address) could start from the ids known before it (a deleted row prefilled).
  useLayoutEffect(() => store(token, known), [token, known]);
  useEffect(() => {
    // A new page: move focus to it, as a full page load would.
    if (lastPath.current !== location.pathname) {
      lastPath.current = location.pathname;
      mainRef.current?.focus();
      scrollTo(0, 0);
    }
  }, [route.module, route.resource]);

  const navigate = useCallback((href: string) => {
    const url = new URL(href, location.href);
    if (url.href === location.href) return;
    if (url.pathname === location.pathname) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
    setRoute(parseRoute(url.pathname, url.hash));
  }, []);

  const session: Session = {
    token,
    setToken,
    devToken,
    devInfo,
    async useDevToken() {
      const t = await fetchDevToken();
      if ('token' in t) {
        setDevInfo(t);
        setToken(t.token);
        return null;
      }
      if (t.absent) setDevToken('absent');
      return t.error;
    },
    known,
    remember(body) {
      // A document, or a page of them: a row listed is a row seen. The page's first row is
      // remembered last, so an id or a reference prefilled next is the top row of the list.
      const data = (body as { data?: unknown } | null)?.data;
      const docs = Array.isArray(data) ? [...data].reverse() : [body];
      setKnown((known) => {
        let next = known;
        for (const doc of docs) {
          const id = (doc as { id?: unknown } | null)?.id;
          const prefix = typeof id === 'string' ? idPrefix(id) : null;
          if (prefix) next = rememberId(next, prefix, doc as { id: string; is_deleted?: unknown });
        }
        return next;
      });
    },
    forms,
    setForm: (key, form) => setForms((f) => ({ ...f, [key]: form })),
    results,
    setResult: (key, result) => setResults((r) => ({ ...r, [key]: result })),
    navigate,
  };

  let content: JSX.Element;
  // A resource's page names itself (ResourcePage); every other page is the Playground's.
  let title: string | null = 'Playground · EDM';
  if (load.kind === 'loading') {
    content = <p class="boot">Loading manifest…</p>;
  } else if (load.kind === 'error') {
    content = (
      <div class="boot-error" role="alert" data-testid="manifest-error">
        <h1>Could not load the manifest</h1>
        <p>{load.message}</p>
        <button type="button" class="primary" onClick={loadManifest}>
          Retry
        </button>
      </div>
    );
  } else if (route.module && route.resource) {
    const found = findResource(load.manifest, route.module, route.resource);
    title = found ? null : 'No such resource · Playground';
    content = found ? (
      <ResourcePage module={found.module} resource={found.resource} opName={route.op} />
    ) : (
      <div class="boot-error" role="alert">
        <h1>No such resource</h1>
        <p>
          The manifest has no resource <code>{`${route.module}/${route.resource}`}</code>. Pick one from the list.
        </p>
      </div>
    );
  } else {
    content = <Overview manifest={load.manifest} navigate={navigate} />;
  }

  useEffect(() => {
    if (title) document.title = title;
  }, [title]);

  return (
    <SessionContext.Provider value={session}>
      <div class="layout">
        <button type="button" class="skip" onClick={() => mainRef.current?.focus()}>
          Skip to content
        </button>
        <header class="topbar">
          <a class="brand" href="/playground" onClick={follow(navigate)}>
            Playground
          </a>
          {load.kind === 'ready' && (
            <span class="platform">
              {load.manifest.platform.name} <span class="muted">v{load.manifest.platform.version}</span>
            </span>
          )}
        </header>
        <aside class="side">
          {load.kind === 'ready' && <Sidebar manifest={load.manifest} route={route} navigate={navigate} />}
        </aside>
        <main id="main" ref={mainRef} tabIndex={-1}>
          {content}
        </main>
      </div>
    </SessionContext.Provider>
  );
}
