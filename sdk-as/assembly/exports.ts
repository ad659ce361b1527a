// The proxy-wasm ABI 0.2.1 callbacks. A filter's entry file re-exports them in one line:
//   export * from "@wisp/sdk-as/assembly/exports";
// Each callback finds the context by id and calls the author's method.
// Body callbacks live in exports-body.ts: a host streams bodies past a filter that does not
// export them, so only a filter that overrides onRequestBody/onResponseBody adds that line.

import { BaseContext, HttpContext, RootContext, takeCaller } from "./context";
import { createContext, deleteContext, httpContext, rootContext } from "./registry";
import { hostAllocate, setEffectiveContext } from "./hostcalls";
// The abort/trace/seed replacements that asconfig's "use" points at, and the collector's
// enter/leave (every callback but proxy_on_memory_allocate runs between them).
import { enter, leave } from "./runtime";

export function proxy_abi_version_0_2_1(): void {}

/** The host writes returned data here; hostcalls.ts copies and releases it right away. */
export function proxy_on_memory_allocate(size: usize): usize {
  return hostAllocate(size);
}

export function proxy_on_context_create(contextId: u32, parentContextId: u32): void {
  enter();
  createContext(contextId, parentContextId);
  leave();
}

export function proxy_on_vm_start(rootContextId: u32, vmConfigSize: u32): bool {
  enter();
  const root = rootContext(rootContextId);
  let ok = false;
  if (root !== null) {
    root.vmConfigSize = vmConfigSize;
    ok = root.onVmStart(vmConfigSize);
  }
  leave();
  return ok;
}

export function proxy_on_configure(rootContextId: u32, configSize: u32): bool {
  enter();
  const root = rootContext(rootContextId);
  let ok = false;
  if (root !== null) {
    root.pluginConfigSize = configSize;
    ok = root.onConfigure(configSize);
  }
  leave();
  return ok;
}

export function proxy_on_tick(rootContextId: u32): void {
  enter();
  const root = rootContext(rootContextId);
  if (root !== null) root.onTick();
  leave();
}

export function proxy_on_queue_ready(rootContextId: u32, queueId: u32): void {
  enter();
  const root = rootContext(rootContextId);
  if (root !== null) root.onQueueReady(queueId);
  leave();
}

export function proxy_on_request_headers(contextId: u32, numHeaders: u32, endOfStream: u32): u32 {
  enter();
  const ctx = httpContext(contextId);
  const status: u32 = ctx !== null ? ctx.onRequestHeaders(numHeaders, endOfStream != 0) : 0;
  leave();
  return status;
}

export function proxy_on_request_trailers(contextId: u32, numTrailers: u32): u32 {
  enter();
  const ctx = httpContext(contextId);
  const status: u32 = ctx !== null ? ctx.onRequestTrailers(numTrailers) : 0;
  leave();
  return status;
}

export function proxy_on_response_headers(contextId: u32, numHeaders: u32, endOfStream: u32): u32 {
  enter();
  const ctx = httpContext(contextId);
  const status: u32 = ctx !== null ? ctx.onResponseHeaders(numHeaders, endOfStream != 0) : 0;
  leave();
  return status;
}

export function proxy_on_response_trailers(contextId: u32, numTrailers: u32): u32 {
  enter();
  const ctx = httpContext(contextId);
  const status: u32 = ctx !== null ? ctx.onResponseTrailers(numTrailers) : 0;
  leave();
  return status;
}

function anyContext(id: u32): BaseContext | null {
  const http = httpContext(id);
  if (http !== null) return http;
  const root = rootContext(id);
  if (root !== null) return root;
  return null;
}

// contextId is the root's on Envoy and Wisp; the answer goes to the context that made the call,
// made effective first so its header and stream calls act on its request (as on Envoy). A
// stream deleted while its call was out gets nothing.
export function proxy_on_http_call_response(contextId: u32, token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {
  enter();
  const caller = takeCaller(token);
  const ctx = caller !== null ? caller : anyContext(contextId);
  if (ctx !== null && anyContext(ctx.id) === ctx) {
    if (ctx.id != contextId) setEffectiveContext(ctx.id);
    ctx.onHttpCallResponse(token, numHeaders, bodySize, numTrailers);
  }
  leave();
}

export function proxy_on_log(contextId: u32): void {
  enter();
  const ctx = anyContext(contextId);
  if (ctx !== null) ctx.onLog();
  leave();
}

export function proxy_on_done(contextId: u32): bool {
  enter();
  const ctx = anyContext(contextId);
  const finished = ctx !== null ? ctx.onDone() : true;
  leave();
  return finished;
}

export function proxy_on_delete(contextId: u32): void {
  enter();
  deleteContext(contextId);
  leave();
}
