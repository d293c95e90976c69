import { describe, expect, it } from 'vitest';
import { parseRoute, routeHref } from './route';

describe('playground routes', () => {
  it('reads module, resource and operation from a deep link', () => {
    expect(parseRoute('/playground/okr/key-results', '#create')).toEqual({
      module: 'okr',
      resource: 'key-results',
      op: 'create',
    });
    expect(parseRoute('/playground/okr/key-results/', '#checkIns.create').op).toBe('checkIns.create');
  });

  it('reads the bare page and unknown paths as the overview', () => {
    expect(parseRoute('/playground', '')).toEqual({ module: null, resource: null, op: null });
    expect(parseRoute('/playground/', '#')).toEqual({ module: null, resource: null, op: null });
    expect(parseRoute('/elsewhere', '')).toEqual({ module: null, resource: null, op: null });
  });

  it('writes links the parser reads back', () => {
    const route = { module: 'okr', resource: 'key-results', op: 'checkIns.create' };
    const href = routeHref(route);
    expect(href).toBe('/playground/okr/key-results#checkIns.create');
    const url = new URL(href, 'http://127.0.0.1');
    expect(parseRoute(url.pathname, url.hash)).toEqual(route);
    expect(routeHref({ module: null, resource: null, op: null })).toBe('/playground');
  });
});
