// Maps proxy-wasm context ids to the author's objects. A root context is chosen by its
// root_id (the host's `plugin_root_id` property) when several are registered, else the one
// registered factory is used.

import { HttpContext, RootContext } from "./context";
import { getPropertyString, log } from "./hostcalls";
import { LogLevel } from "./types";

export type RootFactory = (id: u32) => RootContext;

class RootRegistration {
  constructor(public factory: RootFactory, public rootId: string) {}
}

const registrations = new Array<RootRegistration>();
const roots = new Map<u32, RootContext>();
const streams = new Map<u32, HttpContext>();
// The last stream looked up: a request's callbacks arrive in runs on one context (create +
// request headers, then done + log + delete), so most lookups skip the Map's hashing.
let lastId: u32 = 0;
let lastStream: HttpContext | null = null;

/** Call once at the top level of the filter's entry file:
 *  registerRootContext((id: u32): RootContext => new MyRoot(id), "my_filter"); */
export function registerRootContext(factory: RootFactory, rootId: string = ""): void {
  registrations.push(new RootRegistration(factory, rootId));
}

function pickFactory(): RootFactory | null {
  const n = registrations.length;
  if (n == 0) return null;
  if (n == 1) return registrations[0].factory;
  const wanted = getPropertyString(["plugin_root_id"]);
  const id = wanted !== null ? wanted : "";
  for (let i = 0; i < n; i++) {
    if (registrations[i].rootId == id) return registrations[i].factory;
  }
  return registrations[0].factory;
}

// The root a stream's context is created under: nearly always the same one.
let lastRootId: u32 = 0;
let lastRoot: RootContext | null = null;

function parentRoot(parentId: u32): RootContext | null {
  const cached = lastRoot;
  if (cached !== null && parentId == lastRootId) return cached;
  if (!roots.has(parentId)) return null;
  const root = roots.get(parentId);
  lastRootId = parentId;
  lastRoot = root;
  return root;
}

export function createContext(id: u32, parentId: u32): void {
  if (parentId == 0) {
    const factory = pickFactory();
    // A module without registrations still works: every request passes.
    const root = factory !== null ? factory(id) : new RootContext(id);
    roots.set(id, root);
    if (id == lastRootId) lastRoot = null;
    return;
  }
  const root = parentRoot(parentId);
  if (root === null) {
    log(LogLevel.Error, "proxy_on_context_create: unknown root context " + parentId.toString());
    return;
  }
  const ctx = root.createHttpContext(id);
  streams.set(id, ctx);
  lastId = id;
  lastStream = ctx;
}

export function rootContext(id: u32): RootContext | null {
  return roots.has(id) ? roots.get(id) : null;
}

export function httpContext(id: u32): HttpContext | null {
  if (id == lastId && lastStream !== null) return lastStream;
  if (!streams.has(id)) return null;
  const ctx = streams.get(id);
  lastId = id;
  lastStream = ctx;
  return ctx;
}

/** Puts another object in place of a stream's context (exports-network.ts swaps in the
 * holder of a connection's NetworkContext, so on_done/on_log/on_delete reach it). */
export function replaceHttpContext(id: u32, ctx: HttpContext): void {
  streams.set(id, ctx);
  if (id == lastId) lastStream = ctx;
}

export function deleteContext(id: u32): void {
  const stream = httpContext(id);
  if (stream !== null) {
    stream.onDelete();
    streams.delete(id);
    // After onDelete: a lookup made inside it would have cached the context again.
    if (id == lastId) lastStream = null;
  } else if (roots.has(id)) {
    roots.get(id).onDelete();
    roots.delete(id);
    if (id == lastRootId) lastRoot = null;
  }
}
