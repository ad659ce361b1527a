// A table from stream id to the state kept for it while it lives: one set and one delete per
// request, so it must not make garbage that outlives the request.
//
// Why not a Map: a Map's hash table is replaced every few dozen set/delete pairs, and a
// retired table keeps a pointer to its successor (for iterators still walking it). When one
// retired table happens to be promoted to the old generation, it keeps the next one alive
// through every young-generation GC, which keeps the next, and every entry they hold: all
// requests since the last full GC get promoted. Measured with one filter on a route under
// wrk -c50: a third of the main thread's young generation survived each scavenge, scavenges
// took 3–4 ms instead of 0.5, and the old generation needed a full GC every ~0.7 s (none with
// this table).
//
// Ids are handed out in increasing order, so `id & mask` spreads live ids over the slots. A
// slot taken by an older id that is still alive (a long request, a WebSocket) gives its slot
// to the newcomer and moves to `overflow`, a Map that then holds only long-lived entries and
// so changes rarely. The slots double when half of them are taken.

// An empty slot's key: NaN equals no id (negative ids included: the worker's sniff streams
// count down from -1), so a lookup needs one comparison.
const EMPTY = NaN;
const INITIAL_SLOTS = 1024;

export class IdTable<T> {
  private keys: Float64Array;
  private values: (T | undefined)[];
  private mask: number;
  /** Entries in slots (overflow not counted). */
  private used = 0;
  private readonly overflow = new Map<number, T>();

  constructor(slots = INITIAL_SLOTS) {
    const n = slotCount(slots);
    this.keys = new Float64Array(n).fill(EMPTY);
    this.values = new Array<T | undefined>(n).fill(undefined);
    this.mask = n - 1;
  }

  get size(): number {
    return this.used + this.overflow.size;
  }

  get(id: number): T | undefined {
    const i = id & this.mask;
    if (this.keys[i] === id) return this.values[i];
    return this.overflow.size === 0 ? undefined : this.overflow.get(id);
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** `id` must be an integer of magnitude below 2^53. */
  set(id: number, value: T): void {
    const i = id & this.mask;
    const held = this.keys[i];
    if (held === id) {
      this.values[i] = value;
      return;
    }
    if (this.overflow.size !== 0) this.overflow.delete(id);
    if (held === held) {
      // The older id moves out of the way: it has lived for a whole turn of the slots.
      this.overflow.set(held, this.values[i] as T);
      this.used--;
    }
    this.keys[i] = id;
    this.values[i] = value;
    this.used++;
    if (this.used * 2 > this.keys.length) this.grow();
  }

  delete(id: number): boolean {
    const i = id & this.mask;
    if (this.keys[i] === id) {
      this.keys[i] = EMPTY;
      this.values[i] = undefined;
      this.used--;
      return true;
    }
    return this.overflow.size !== 0 && this.overflow.delete(id);
  }

  /** Every entry, in no particular order (shutdown and failure paths, not per request). */
  entries(): Array<[number, T]> {
    const out: Array<[number, T]> = [];
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] === this.keys[i]) out.push([this.keys[i], this.values[i] as T]);
    for (const e of this.overflow) out.push(e);
    return out;
  }

  private grow(): void {
    const keys = this.keys;
    const values = this.values;
    const n = keys.length * 2;
    this.keys = new Float64Array(n).fill(EMPTY);
    this.values = new Array<T | undefined>(n).fill(undefined);
    this.mask = n - 1;
    this.used = 0;
    for (let i = 0; i < keys.length; i++) if (keys[i] === keys[i]) this.set(keys[i], values[i] as T);
  }
}

function slotCount(wanted: number): number {
  let n = 16;
  while (n < wanted) n *= 2;
  return n;
}
