// Weighted random over the available endpoints: two passes (total weight, then the draw),
// no allocation.
import type { Endpoint } from '../endpoint.js';
import type { LoadBalancer, RandomSource } from './index.js';

export class RandomBalancer implements LoadBalancer {
  private readonly endpoints: readonly Endpoint[];
  private readonly random: RandomSource;

  constructor(endpoints: readonly Endpoint[], random: RandomSource) {
    this.endpoints = endpoints;
    this.random = random;
  }

  pick(_hashKey: string, exclude: Endpoint | null, now: number): Endpoint | null {
    const eps = this.endpoints;
    let total = 0;
    let last = -1;
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[i];
      if (ep === exclude || !ep.available(now)) continue;
      total += ep.weight;
      last = i;
    }
    if (last < 0) return exclude !== null && exclude.available(now) ? exclude : null;
    let draw = this.random() * total;
    for (let i = 0; i < last; i++) {
      const ep = eps[i];
      if (ep === exclude || !ep.available(now)) continue;
      draw -= ep.weight;
      if (draw < 0) return ep;
    }
    return eps[last];
  }
}
