// The proxy-wasm ABI 0.2.1 callbacks. A filter's entry file re-exports them in one line:
//   export * from "@wisp/sdk-as/assembly/exports";
// Each callback finds the context by id and calls the author's method.
// Body callbacks live in exports-body.ts: a host streams bodies past a filter that does not
// export them, so only a filter that overrides onRequestBody/onResponseBody adds that line.

import { BaseContext, HttpContext, RootContext } from "./context";
import { createContext, deleteContext, httpContext, rootContext } from "./registry";
import { hostAllocate } from "./hostcalls";
// Pulls in the abort/trace/seed replacements that asconfig's "use" points at.
import "./runtime";

export function proxy_abi_version_0_2_1(): void {}

/** The host writes returned data here; hostcalls.ts copies and releases it right away. */
export function proxy_on_memory_allocate(size: usize): usize {
  return hostAllocate(size);
}

export function proxy_on_context_create(contextId: u32, parentContextId: u32): void {
  createContext(contextId, parentContextId);
}

export function proxy_on_vm_start(rootContextId: u32, vmConfigSize: u32): bool {
  const root = rootContext(rootContextId);
  if (root === null) return false;
  root.vmConfigSize = vmConfigSize;
  return root.onVmStart(vmConfigSize);
}

export function proxy_on_configure(rootContextId: u32, configSize: u32): bool {
  const root = rootContext(rootContextId);
  if (root === null) return false;
  root.pluginConfigSize = configSize;
  return root.onConfigure(configSize);
}

export function proxy_on_tick(rootContextId: u32): void {
  const root = rootContext(rootContextId);
  if (root !== null) root.onTick();
}

export function proxy_on_queue_ready(rootContextId: u32, queueId: u32): void {
  const root = rootContext(rootContextId);
  if (root !== null) root.onQueueReady(queueId);
}

export function proxy_on_request_headers(contextId: u32, numHeaders: u32, endOfStream: u32): u32 {
  const ctx = httpContext(contextId);
  return ctx !== null ? ctx.onRequestHeaders(numHeaders, endOfStream != 0) : 0;
}

export function proxy_on_request_trailers(contextId: u32, numTrailers: u32): u32 {
  const ctx = httpContext(contextId);
  return ctx !== null ? ctx.onRequestTrailers(numTrailers) : 0;
}

export function proxy_on_response_headers(contextId: u32, numHeaders: u32, endOfStream: u32): u32 {
  const ctx = httpContext(contextId);
  return ctx !== null ? ctx.onResponseHeaders(numHeaders, endOfStream != 0) : 0;
}

export function proxy_on_response_trailers(contextId: u32, numTrailers: u32): u32 {
  const ctx = httpContext(contextId);
  return ctx !== null ? ctx.onResponseTrailers(numTrailers) : 0;
}

function anyContext(id: u32): BaseContext | null {
  const http = httpContext(id);
  if (http !== null) return http;
  const root = rootContext(id);
  if (root !== null) return root;
  return null;
}

export function proxy_on_http_call_response(contextId: u32, token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {
  const ctx = anyContext(contextId);
  if (ctx !== null) ctx.onHttpCallResponse(token, numHeaders, bodySize, numTrailers);
}

export function proxy_on_log(contextId: u32): void {
  const ctx = anyContext(contextId);
  if (ctx !== null) ctx.onLog();
}

export function proxy_on_done(contextId: u32): bool {
  const ctx = anyContext(contextId);
  return ctx !== null ? ctx.onDone() : true;
}

export function proxy_on_delete(contextId: u32): void {
  deleteContext(contextId);
}
