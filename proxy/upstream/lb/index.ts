// Load balancer selection. Every policy skips endpoints that are not available (unresolved,
// failing health checks, ejected) and, for retries, prefers an endpoint other than the
// previous try's one when another is available. When no endpoint is available a policy
// returns null and the request path answers 503: there is no Envoy-style panic mode
// (routing to everything when too few hosts are healthy), because sending traffic to hosts
// we know are failing only turns a fast 503 into a slow 502/504.
import type { LbPolicy } from '../../config/types.js';
import type { Endpoint } from '../endpoint.js';
import { RoundRobinBalancer } from './round-robin.js';
import { LeastRequestBalancer } from './least-request.js';
import { RandomBalancer } from './random.js';
import { RingHashBalancer } from './ring-hash.js';

export interface LoadBalancer {
  /** hashKey is only read by ring_hash; exclude is the previous try's endpoint or null. */
  pick(hashKey: string, exclude: Endpoint | null, now: number): Endpoint | null;
}

export type RandomSource = () => number;

export function createLoadBalancer(policy: LbPolicy, endpoints: readonly Endpoint[], random: RandomSource = Math.random): LoadBalancer {
  switch (policy) {
    case 'round_robin':
      return new RoundRobinBalancer(endpoints);
    case 'least_request':
      return new LeastRequestBalancer(endpoints, random);
    case 'random':
      return new RandomBalancer(endpoints, random);
    case 'ring_hash':
      return new RingHashBalancer(endpoints, random);
    default:
      throw new Error(`unknown lb policy ${String(policy)}`);
  }
}

export { RoundRobinBalancer, LeastRequestBalancer, RandomBalancer, RingHashBalancer };
