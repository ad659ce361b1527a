// The baseline: the load goes straight to the upstream, no proxy in between.
import type { RunningTarget, Target, TargetContext } from './target.js';

export const directTarget: Target = {
  name: 'direct',
  unavailable: () => null,
  async start(ctx: TargetContext): Promise<RunningTarget> {
    // The upstream is shared by every target and outlives them all; nothing to stop here.
    // Its memory is not a proxy's memory, so no RSS is reported.
    return { port: ctx.upstreamPort, proc: null, stop: async () => {} };
  },
};
