// Route matching: an ordered table per listener, first match wins (Envoy's virtual-host
// routes without the virtual-host layer). Everything that can be decided at config time is
// compiled here, so a request pays for string compares, not for parsing the config.
import type { HeaderMatch, QueryMatch, RouteConfig } from '../config/types.js';

class CompiledHeaderMatch {
  readonly name: string;
  readonly present: boolean | undefined;
  readonly exact: string | undefined;
  readonly regex: RegExp | undefined;
  constructor(m: HeaderMatch | QueryMatch, lowerName: boolean) {
    this.name = lowerName ? m.name.toLowerCase() : m.name;
    this.present = m.present;
    this.exact = m.exact;
    this.regex = m.regex === undefined ? undefined : new RegExp(`^(?:${m.regex})$`);
  }

  /** value: undefined when the header/parameter is absent. */
  test(value: string | undefined): boolean {
    if (this.present === false) return value === undefined;
    if (value === undefined) return false;
    if (this.exact !== undefined && value !== this.exact) return false;
    if (this.regex !== undefined && !this.regex.test(value)) return false;
    return true;
  }
}

/** Value of a header in a flat [name, value, ...] list with lower-case names. */
export function headerValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

/** Value of one query parameter (decoded), or undefined when absent. */
export function queryValue(query: string, name: string): string | undefined {
  if (query === '') return undefined;
  let start = 0;
  while (start <= query.length) {
    let end = query.indexOf('&', start);
    if (end === -1) end = query.length;
    const eq = query.indexOf('=', start);
    const keyEnd = eq === -1 || eq > end ? end : eq;
    if (safeDecode(query.slice(start, keyEnd)) === name) {
      return keyEnd === end ? '' : safeDecode(query.slice(keyEnd + 1, end));
    }
    start = end + 1;
  }
  return undefined;
}

function safeDecode(s: string): string {
  if (s.indexOf('%') === -1 && s.indexOf('+') === -1) return s;
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** Host header without the port, lower-cased. IPv6 literals keep their brackets. */
export function hostWithoutPort(host: string): string {
  let end = host.length;
  const colon = host.lastIndexOf(':');
  if (colon !== -1 && host.indexOf(']', colon) === -1) end = colon;
  const h = end === host.length ? host : host.slice(0, end);
  return h.toLowerCase();
}

export class CompiledRoute {
  readonly name: string;
  readonly config: RouteConfig;
  private readonly hostExact: Set<string> | null;
  private readonly hostSuffixes: string[]; // ".example.com" for "*.example.com"
  private readonly methods: Set<string> | null;
  private readonly path: string | undefined;
  private readonly prefix: string | undefined;
  private readonly regex: RegExp | undefined;
  private readonly headers: CompiledHeaderMatch[];
  private readonly query: CompiledHeaderMatch[];

  constructor(config: RouteConfig) {
    this.name = config.name;
    this.config = config;
    const m = config.match;
    const hosts = m.host ?? [];
    const exact = hosts.filter((h) => !h.startsWith('*.')).map((h) => h.toLowerCase());
    this.hostExact = hosts.length === 0 ? null : new Set(exact);
    this.hostSuffixes = hosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1).toLowerCase());
    this.methods = m.methods && m.methods.length > 0 ? new Set(m.methods.map((x) => x.toUpperCase())) : null;
    this.path = m.path;
    this.prefix = m.prefix;
    this.regex = m.regex === undefined ? undefined : new RegExp(`^(?:${m.regex})$`);
    this.headers = (m.headers ?? []).map((h) => new CompiledHeaderMatch(h, true));
    this.query = (m.query ?? []).map((q) => new CompiledHeaderMatch(q, false));
  }

  /** host: already without port and lower-cased; path: without the query. */
  matches(method: string, host: string, path: string, query: string, headers: readonly string[]): boolean {
    if (this.hostExact !== null && !this.hostExact.has(host) && !this.matchesSuffix(host)) return false;
    if (this.methods !== null && !this.methods.has(method)) return false;
    if (this.path !== undefined && path !== this.path) return false;
    if (this.prefix !== undefined && !path.startsWith(this.prefix)) return false;
    if (this.regex !== undefined && !this.regex.test(path)) return false;
    for (let i = 0; i < this.headers.length; i++) {
      const h = this.headers[i]!;
      if (!h.test(headerValue(headers, h.name))) return false;
    }
    for (let i = 0; i < this.query.length; i++) {
      const q = this.query[i]!;
      if (!q.test(queryValue(query, q.name))) return false;
    }
    return true;
  }

  private matchesSuffix(host: string): boolean {
    for (let i = 0; i < this.hostSuffixes.length; i++) {
      const s = this.hostSuffixes[i]!;
      // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
      if (host.length > s.length && host.endsWith(s)) return true;
    }
    return false;
  }

  /** The upstream path after a prefix rewrite (query kept as is). */
  rewritePath(path: string): string {
    const rw = this.config.rewrite?.prefix;
    if (rw === undefined) return path;
    const matched = this.prefix ?? (this.path !== undefined ? this.path : '');
    if (matched !== '' && path.startsWith(matched)) {
      const rest = path.slice(matched.length);
      // Avoid "//" when both sides carry the slash, like Envoy's prefix_rewrite users expect.
      if (rw.endsWith('/') && rest.startsWith('/')) return rw + rest.slice(1);
      if (rw === '' && !rest.startsWith('/')) return '/' + rest;
      return rw + rest;
    }
    return path;
  }
}

export class Router {
  readonly routes: CompiledRoute[];
  constructor(routes: readonly RouteConfig[]) {
    this.routes = routes.map((r) => new CompiledRoute(r));
  }

  match(method: string, host: string, path: string, query: string, headers: readonly string[]): CompiledRoute | null {
    const routes = this.routes;
    for (let i = 0; i < routes.length; i++) {
      const r = routes[i]!;
      if (r.matches(method, host, path, query, headers)) return r;
    }
    return null;
  }
}
