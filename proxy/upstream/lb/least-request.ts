// Least request. Equal weights: power of two random choices, the one with fewer requests in
// flight wins (ties go to the first draw). Unequal weights: Envoy's dynamic weight
// weight / (active + 1), drawn at random in proportion to it (Envoy feeds the same weight to
// an EDF scheduler; a proportional draw gives the same long-run shares without keeping a
// scheduler in sync with every active++/--). With nothing in flight this is exactly
// weighted random, so configured weights hold.
import type { Endpoint } from '../endpoint.js';
import type { LoadBalancer, RandomSource } from './index.js';

export class LeastRequestBalancer implements LoadBalancer {
  private readonly endpoints: readonly Endpoint[];
  private readonly random: RandomSource;
  /** Effective weights of the current pick, reused between picks. */
  private readonly effective: Float64Array;

  constructor(endpoints: readonly Endpoint[], random: RandomSource) {
    this.endpoints = endpoints;
    this.random = random;
    this.effective = new Float64Array(endpoints.length);
  }

  pick(_hashKey: string, exclude: Endpoint | null, now: number): Endpoint | null {
    const eps = this.endpoints;
    const eff = this.effective;
    let count = 0;
    let last = -1;
    let firstWeight = -1;
    let equalWeights = true;
    let total = 0;
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[i];
      if (ep === exclude || !ep.available(now)) {
        eff[i] = -1;
        continue;
      }
      if (firstWeight < 0) firstWeight = ep.weight;
      else if (ep.weight !== firstWeight) equalWeights = false;
      const w = ep.weight / (ep.active + 1);
      eff[i] = w;
      total += w;
      count++;
      last = i;
    }
    if (count === 0) return exclude !== null && exclude.available(now) ? exclude : null;
    if (count === 1) return eps[last];
    if (equalWeights) {
      // Two distinct candidates by rank among the available ones.
      const a = Math.floor(this.random() * count);
      let b = Math.floor(this.random() * (count - 1));
      if (b >= a) b++;
      const first = this.nth(a);
      const second = this.nth(b);
      return second.active < first.active ? second : first;
    }
    let draw = this.random() * total;
    for (let i = 0; i < last; i++) {
      const w = eff[i];
      if (w <= 0) continue;
      draw -= w;
      if (draw < 0) return eps[i];
    }
    return eps[last];
  }

  /** The rank-th available endpoint of this pick (unavailable ones are marked -1). */
  private nth(rank: number): Endpoint {
    const eff = this.effective;
    for (let i = 0; i < eff.length; i++) {
      if (eff[i] < 0) continue;
      if (rank === 0) return this.endpoints[i];
      rank--;
    }
    throw new Error('least_request: rank out of range');
  }
}
