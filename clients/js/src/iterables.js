// Paged reads as async iterables: each page is one request; the next one is asked for when the
// consumer has taken the previous page, so reading a long stream holds one page at a time.

/**
 * An async iterable over pages fetched by `fetchPage(cursor)`, which answers
 * `{items, next}`: `next` null ends the iteration.
 */
export class PagedIterable {
  /**
   * @param {(cursor: unknown) => Promise<{items: unknown[], next: unknown}>} fetchPage
   * @param {unknown} first the first cursor
   * @param {number} limit most items to yield
   */
  constructor(fetchPage, first, limit = Infinity) {
    this.fetchPage = fetchPage;
    this.first = first;
    this.limit = limit;
  }

  async *[Symbol.asyncIterator]() {
    let cursor = this.first;
    let left = this.limit;
    while (cursor !== null && left > 0) {
      const { items, next } = await this.fetchPage(cursor, left);
      for (const item of items) {
        if (left <= 0) return;
        left -= 1;
        yield item;
      }
      cursor = items.length === 0 ? null : next;
    }
  }

  /** Every item, as an array. */
  async toArray() {
    const out = [];
    for await (const item of this) out.push(item);
    return out;
  }
}
