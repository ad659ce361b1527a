// The proxy-wasm body callbacks, for filters that read or rewrite bodies. Re-export them
// next to the main callbacks:
//   export * from "@wisp/sdk-as/assembly/exports";
//   export * from "@wisp/sdk-as/assembly/exports-body";
// Without them a host (Wisp checks the exports) streams bodies past the filter at no cost.

import { httpContext } from "./registry";
import { enter, leave } from "./runtime";

export function proxy_on_request_body(contextId: u32, bodySize: u32, endOfStream: u32): u32 {
  enter();
  const ctx = httpContext(contextId);
  const status: u32 = ctx !== null ? ctx.onRequestBody(bodySize, endOfStream != 0) : 0;
  leave();
  return status;
}

export function proxy_on_response_body(contextId: u32, bodySize: u32, endOfStream: u32): u32 {
  enter();
  const ctx = httpContext(contextId);
  const status: u32 = ctx !== null ? ctx.onResponseBody(bodySize, endOfStream != 0) : 0;
  leave();
  return status;
}
