// Smooth weighted round robin (nginx): every pick adds each candidate's weight to its
// running score, takes the highest score, and subtracts the total weight from the winner.
// Weights 5,1,1 give a a b a c a a rather than a a a a a b c, and the sequence is exact.
import type { Endpoint } from '../endpoint.js';
import type { LoadBalancer } from './index.js';

export class RoundRobinBalancer implements LoadBalancer {
  private readonly endpoints: readonly Endpoint[];
  private readonly scores: Float64Array;

  constructor(endpoints: readonly Endpoint[]) {
    this.endpoints = endpoints;
    this.scores = new Float64Array(endpoints.length);
  }

  pick(_hashKey: string, exclude: Endpoint | null, now: number): Endpoint | null {
    const eps = this.endpoints;
    const scores = this.scores;
    let best = -1;
    let total = 0;
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[i];
      if (ep === exclude || !ep.available(now)) continue;
      const score = scores[i] + ep.weight;
      scores[i] = score;
      total += ep.weight;
      if (best < 0 || score > scores[best]) best = i;
    }
    if (best < 0) return exclude !== null && exclude.available(now) ? exclude : null;
    scores[best] -= total;
    return eps[best];
  }
}
