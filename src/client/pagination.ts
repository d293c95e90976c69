/** The list envelope every list operation answers. */
export interface ListEnvelope<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
  next_cursor: string | null;
}

/**
 * One page of a list: the envelope's members, plus navigation. Iterating a page with
 * `for await` walks its items and then every following page's.
 */
export class Page<T> implements ListEnvelope<T>, AsyncIterable<T> {
  readonly object = 'list' as const;
  readonly data: T[];
  readonly has_more: boolean;
  readonly next_cursor: string | null;
  readonly #fetch: (cursor: string) => Promise<Page<T>>;

  constructor(envelope: ListEnvelope<T>, fetch: (cursor: string) => Promise<Page<T>>) {
    this.data = envelope.data;
    this.has_more = envelope.has_more;
    this.next_cursor = envelope.next_cursor;
    this.#fetch = fetch;
  }

  /**
   * Whether another page follows this one.
   *
   * @example
   * const page = await client.okr.objectives.list({ limit: 10 });
   * if (page.hasNextPage()) console.log('more to come');
   */
  hasNextPage(): boolean {
    return this.has_more && this.next_cursor !== null;
  }

  /**
   * Fetches the page after this one, with the same parameters.
   *
   * @example
   * let page = await client.okr.objectives.list({ limit: 10 });
   * while (page.hasNextPage()) page = await page.getNextPage();
   */
  async getNextPage(): Promise<Page<T>> {
    if (this.next_cursor === null || !this.has_more) throw new Error('This is the last page');
    return this.#fetch(this.next_cursor);
  }

  /**
   * Every item of this page and of each page after it, fetched as iteration reaches it.
   *
   * @example
   * const page = await client.okr.cycles.list({ limit: 50 });
   * for await (const cycle of page) console.log(cycle.name);
   */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    let page: Page<T> = this;
    for (;;) {
      yield* page.data;
      if (!page.hasNextPage()) return;
      page = await page.getNextPage();
    }
  }
}

/**
 * What `list()` answers: await it for the first page, or `for await` it to walk every item
 * across pages. The first page is requested once, on first use.
 */
export class PagePromise<T> implements PromiseLike<Page<T>>, AsyncIterable<T> {
  #page: Promise<Page<T>> | undefined;
  readonly #load: () => Promise<Page<T>>;

  constructor(load: () => Promise<Page<T>>) {
    this.#load = load;
  }

  #first(): Promise<Page<T>> {
    this.#page ??= this.#load();
    return this.#page;
  }

  /**
   * Resolves to the first page.
   *
   * @example
   * const { data, has_more, next_cursor } = await client.okr.keyResults.list({ limit: 20 });
   */
  // biome-ignore lint/suspicious/noThenProperty: PagePromise is deliberately awaitable.
  then<A = Page<T>, B = never>(
    onfulfilled?: ((page: Page<T>) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#first().then(onfulfilled, onrejected);
  }

  /**
   * Handles a failure to fetch the first page.
   *
   * @example
   * const page = await client.okr.cycles.list().catch(() => null);
   */
  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<Page<T> | B> {
    return this.#first().catch(onrejected);
  }

  /**
   * Runs a callback once the first page has been fetched or has failed.
   *
   * @example
   * await client.okr.cycles.list().finally(() => spinner.stop());
   */
  finally(onfinally?: (() => void) | null): Promise<Page<T>> {
    return this.#first().finally(onfinally);
  }

  /**
   * Every item across every page, each page fetched when iteration reaches it.
   *
   * @example
   * for await (const kr of client.okr.keyResults.list({ status: ['at_risk', 'off_track'] })) {
   *   console.log(kr.title, kr.progress_pct);
   * }
   */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    yield* await this.#first();
  }
}
