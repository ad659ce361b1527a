// Consistent hashing (ring hash, Karger et al.; Envoy's ring_hash): every endpoint owns
// 100 × weight points on a 32-bit ring, placed by hashing "host:port#i", so a point's
// position depends only on its endpoint's key. Removing or failing one endpoint moves only
// the keys that mapped to it; every other key stays where it was. A request key is hashed
// the same way and served by the first point at or after it (binary search); when that
// endpoint is unavailable the lookup walks on to the next point whose endpoint is.
import type { Endpoint } from '../endpoint.js';
import type { LoadBalancer, RandomSource } from './index.js';

/** Points per unit of weight. */
export const POINTS_PER_WEIGHT = 100;
/** Ring size cap: larger rings are scaled down proportionally (each endpoint keeps ≥ 1 point). */
export const MAX_RING_POINTS = 1 << 17;

/** FNV-1a over UTF-16 code units, finished with murmur3's fmix32 so nearby inputs
 * ("a#1", "a#2") land far apart on the ring. Non-cryptographic: keys are not secret. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class RingHashBalancer implements LoadBalancer {
  private readonly endpoints: readonly Endpoint[];
  private readonly random: RandomSource;
  /** Point positions, ascending. */
  private readonly hashes: Uint32Array;
  /** owners[j]: index into endpoints of the point at hashes[j]. */
  private readonly owners: Int32Array;

  constructor(endpoints: readonly Endpoint[], random: RandomSource) {
    this.endpoints = endpoints;
    this.random = random;
    let wanted = 0;
    for (const ep of endpoints) wanted += Math.max(0, ep.weight) * POINTS_PER_WEIGHT;
    const scale = wanted > MAX_RING_POINTS ? MAX_RING_POINTS / wanted : 1;
    const pointHashes: number[] = [];
    const pointOwners: number[] = [];
    for (let i = 0; i < endpoints.length; i++) {
      const ep = endpoints[i];
      if (ep.weight <= 0) continue;
      const n = Math.max(1, Math.round(ep.weight * POINTS_PER_WEIGHT * scale));
      for (let p = 0; p < n; p++) {
        pointHashes.push(hash32(`${ep.key}#${p}`));
        pointOwners.push(i);
      }
    }
    const order = pointHashes.map((_, j) => j);
    // Ties (two points on one position) are broken by endpoint key so the ring does not
    // depend on the order endpoints are listed in.
    order.sort((a, b) => pointHashes[a] - pointHashes[b] || cmp(endpoints[pointOwners[a]].key, endpoints[pointOwners[b]].key));
    this.hashes = new Uint32Array(order.length);
    this.owners = new Int32Array(order.length);
    for (let j = 0; j < order.length; j++) {
      this.hashes[j] = pointHashes[order[j]];
      this.owners[j] = pointOwners[order[j]];
    }
  }

  get ringSize(): number {
    return this.hashes.length;
  }

  pick(hashKey: string, exclude: Endpoint | null, now: number): Endpoint | null {
    const n = this.hashes.length;
    if (n === 0) return null;
    // Check first that the walk will find something, so it never circles the whole ring.
    let anyOther = false;
    for (let i = 0; i < this.endpoints.length; i++) {
      const ep = this.endpoints[i];
      if (ep !== exclude && ep.weight > 0 && ep.available(now)) {
        anyOther = true;
        break;
      }
    }
    if (!anyOther) return exclude !== null && exclude.available(now) ? exclude : null;
    // No key (no header, no client address): any point will do.
    const h = hashKey.length === 0 ? Math.floor(this.random() * 0x100000000) : hash32(hashKey);
    let j = this.lowerBound(h);
    for (let steps = 0; steps < n; steps++) {
      if (j === n) j = 0;
      const ep = this.endpoints[this.owners[j]];
      if (ep !== exclude && ep.available(now)) return ep;
      j++;
    }
    return null;
  }

  /** First point index with hashes[j] >= h (n when none). */
  private lowerBound(h: number): number {
    const hashes = this.hashes;
    let lo = 0;
    let hi = hashes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hashes[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
