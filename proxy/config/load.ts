// YAML (or a plain object) → validated, normalised WispConfig.
//
// Three passes, all of whose problems are reported together so a user fixes a config in
// one round: YAML syntax (stops here if broken), the JSON schema (shape, types, unknown
// keys), then the checks a schema cannot express (names that refer to each other,
// regexes, ports, files). Every problem carries the path as the user wrote it, and the
// line and column when the config came from a document.
//
// Friendlier input spellings are accepted ("host:port" strings, durations like "15s",
// sizes like "64KB", retry statuses inside `on`), and so is the normalised form itself:
// normalizeConfig(someWispConfig) returns an equal config, which keeps configs built in
// code (tests, the admin API) on the same validation path.

import fs from 'node:fs';
import os from 'node:os';
import nodePath from 'node:path';
import type { ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, isSeq, isPair, isScalar, isAlias, type Document, type Node } from 'yaml';
import { schemaValidator } from './schema-validator.js';
import { SNIFFED_PROTOCOLS } from './types.js';

/** Protocol names in tcp routes: what filters/sniff reports, or a custom filter's own. */
const PROTOCOL_NAME = /^[a-z0-9][a-z0-9._-]{0,31}$/;
import { parseDuration, parseSize } from './duration.js';
import { ConfigError, closestMatch, formatPath, type ConfigIssue } from './errors.js';
import type {
  AdminConfig, ClusterConfig, EndpointConfig, FailurePolicy, FilterConfig, HeaderMatch, HealthCheckConfig,
  LbPolicy, ListenerConfig, ListenerLimits, QueryMatch, RetryOn, RetryPolicy, RouteConfig, RouteMatch,
  TcpListenerConfig, TcpRouteConfig, TlsConfig, WispConfig,
} from './types.js';

export { ConfigError, type ConfigIssue } from './errors.js';

type Segment = string | number;
type Obj = Record<string, unknown>;

export interface LoadOptions {
  /** Check that TLS, wasm and token files exist (default true). */
  checkFiles?: boolean;
}

/** Parse and validate YAML text; `file` names it in errors and anchors relative paths. */
export function parseConfig(text: string, file: string, options: LoadOptions = {}): WispConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, merge: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((err) => {
      const pos = lineCounter.linePos(err.pos[0]);
      return { file, line: pos.line, column: pos.col, path: '(yaml)', message: err.message };
    }));
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    throw new ConfigError([{ file, path: '(yaml)', message: (err as Error).message }]);
  }
  return validate(raw, file, new DocumentLocator(doc, lineCounter), options);
}

/** Read a YAML (or JSON) config file and validate it. */
export function loadConfigFile(path: string, options: LoadOptions = {}): WispConfig {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file: path, path: '(root)', message: `cannot read the file: ${(err as Error).message}` }]);
  }
  return parseConfig(text, path, options);
}

/** Validate a config given as a plain object; issues have no line numbers. */
export function normalizeConfig(raw: unknown, file: string, options: LoadOptions = {}): WispConfig {
  return validate(raw, file, undefined, options);
}

// ---------------------------------------------------------------------------------------
// Validation driver

interface PendingIssue {
  segments: Segment[];
  message: string;
  /** Point at the key rather than its value (unknown keys). */
  atKey: boolean;
}

function validate(raw: unknown, file: string, locator: DocumentLocator | undefined, options: LoadOptions): WispConfig {
  if (raw === null || raw === undefined) {
    throw new ConfigError([{ file, path: '(root)', message: 'the config is empty: expected a mapping with at least `listeners`' }]);
  }
  const issues = schemaIssues(raw);
  const normalizer = new Normalizer(file, options.checkFiles ?? true);
  const config = normalizer.config(raw);
  // A field the schema already rejected needs no second complaint from the semantic pass.
  const seen = new Set(issues.map((i) => formatPath(i.segments)));
  for (const issue of normalizer.issues) {
    if (!seen.has(formatPath(issue.segments))) issues.push(issue);
  }
  if (issues.length === 0) return config;

  const out: ConfigIssue[] = [];
  const dedupe = new Set<string>();
  for (const issue of issues) {
    const path = formatPath(issue.segments);
    const key = `${path}\0${issue.message}`;
    if (dedupe.has(key)) continue;
    dedupe.add(key);
    const pos = locator?.locate(issue.segments, issue.atKey);
    out.push(pos ? { file, line: pos.line, column: pos.column, path, message: issue.message } : { file, path, message: issue.message });
  }
  out.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity) || (a.column ?? 0) - (b.column ?? 0));
  throw new ConfigError(out);
}

// ---------------------------------------------------------------------------------------
// Pass 2: the JSON schema, with ajv's errors rewritten into sentences

function schemaIssues(raw: unknown): PendingIssue[] {
  const validateFn = schemaValidator();
  if (validateFn(raw)) return [];
  const issues: PendingIssue[] = [];
  for (const err of validateFn.errors ?? []) {
    const issue = describeSchemaError(err, raw);
    if (issue) issues.push(issue);
  }
  return issues;
}

function describeSchemaError(err: ErrorObject, root: unknown): PendingIssue | undefined {
  const segments = pointerToSegments(err.instancePath, root);
  const parent = (err.parentSchema ?? {}) as Obj;
  const hint = typeof parent['x-message'] === 'string' ? parent['x-message'] : undefined;
  const got = describeValue(err.data);
  const issue = (message: string, atKey = false, extra?: string): PendingIssue => ({
    segments: extra === undefined ? segments : [...segments, extra], message, atKey,
  });
  const params = err.params as Obj;
  switch (err.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const allowed = Object.keys((parent.properties ?? {}) as Obj).filter((k) => k !== '$schema' && k !== 'source');
      const guess = closestMatch(key, allowed);
      const message = guess
        ? `unknown key "${key}" (did you mean "${guess}"?)`
        : `unknown key "${key}" (allowed: ${allowed.join(', ')})`;
      return issue(message, true, key);
    }
    case 'required':
      return issue(`missing required key "${String(params.missingProperty)}"`);
    case 'type':
      return issue(`${hint ?? `must be ${typeWords(params.type)}`} (got ${got})`);
    case 'enum':
      return issue(`must be one of ${(params.allowedValues as unknown[]).map(String).join(', ')} (got ${got})`);
    case 'pattern':
      return issue(`${hint ?? `must match ${String(params.pattern)}`} (got ${got})`);
    case 'minimum': case 'maximum': case 'exclusiveMinimum': case 'exclusiveMaximum': {
      const op = { minimum: '>=', maximum: '<=', exclusiveMinimum: '>', exclusiveMaximum: '<' }[err.keyword];
      return issue(`${hint ?? `must be ${op} ${String(params.limit)}`} (got ${got})`);
    }
    case 'minItems':
      return issue(`must have at least ${String(params.limit)} ${params.limit === 1 ? 'item' : 'items'}`);
    case 'minLength':
      return issue(params.limit === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters`);
    default:
      return issue(err.message ?? `fails ${err.keyword}`);
  }
}

function pointerToSegments(pointer: string, root: unknown): Segment[] {
  if (pointer === '') return [];
  const segments: Segment[] = [];
  let node = root;
  for (const part of pointer.slice(1).split('/')) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      const index = Number(key);
      segments.push(index);
      node = node[index];
    } else {
      segments.push(key);
      node = node !== null && typeof node === 'object' ? (node as Obj)[key] : undefined;
    }
  }
  return segments;
}

function typeWords(type: unknown): string {
  const words: Record<string, string> = {
    string: 'a string', number: 'a number', integer: 'an integer', boolean: 'true or false',
    object: 'a mapping', array: 'a list', null: 'empty',
  };
  const list = Array.isArray(type) ? type : String(type).split(',');
  return list.map((t) => words[t] ?? t).join(' or ');
}

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// ---------------------------------------------------------------------------------------
// Where a path is in the YAML document

class DocumentLocator {
  constructor(private readonly doc: Document, private readonly lines: LineCounter) {}

  /** Line/column of the deepest node along `segments` that exists. */
  locate(segments: readonly Segment[], atKey: boolean): { line: number; column: number } | undefined {
    let node: unknown = this.doc.contents;
    let offset = rangeStart(node);
    for (let i = 0; i < segments.length; i++) {
      if (isAlias(node)) node = node.resolve(this.doc);
      const seg = segments[i]!;
      const last = i === segments.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
        if (!pair) break;
        const keyOffset = rangeStart(pair.key);
        const valueOffset = rangeStart(pair.value);
        if ((last && atKey) || valueOffset === undefined) {
          offset = keyOffset ?? offset;
          break;
        }
        node = pair.value;
        offset = valueOffset;
      } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
        node = node.items[seg];
        offset = rangeStart(node) ?? offset;
      } else {
        break;
      }
    }
    if (offset === undefined) return undefined;
    const pos = this.lines.linePos(offset);
    return { line: pos.line, column: pos.col };
  }
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as Node | null | undefined)?.range;
  return range ? range[0] : undefined;
}

// ---------------------------------------------------------------------------------------
// Pass 3: defaults, friendly spellings → normalised values, cross-references

const DEFAULT_LISTENER_HOST = '0.0.0.0';
const DEFAULT_VIA = '1.1 wisp';
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);
const HOST_PATTERN = /^(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?$|^\[[0-9a-f:.]+\]$/;
const METHOD_PATTERN = /^[A-Z][A-Z0-9_-]*$/;
const HEADER_NAME_PATTERN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
function asObj(v: unknown): Obj | undefined {
  return isObj(v) ? v : undefined;
}
function asString(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
function asInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) ? v : undefined;
}
function asNumber(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
function asBool(v: unknown): boolean | undefined {
  return typeof v === 'boolean' ? v : undefined;
}
function asList(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
function asStringList(v: unknown): string[] | undefined {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return undefined;
}

/** A filter's config/vm_config as the bytes proxy_on_configure gets: strings as is, the rest as JSON. */
function configString(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

function regexError(source: string): string | undefined {
  try {
    new RegExp(source);
    return undefined;
  } catch (err) {
    const detail = (err as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '');
    return `invalid regex ${JSON.stringify(source)}: ${detail}`;
  }
}

function definedList(names: Iterable<string>): string {
  const list = [...names];
  return list.length === 0 ? 'none are defined' : `defined: ${list.join(', ')}`;
}

interface Bound {
  host: string;
  port: number;
  segments: Segment[];
  owner: string;
}

class Normalizer {
  readonly issues: PendingIssue[] = [];
  private readonly baseDir: string;

  constructor(private readonly file: string, private readonly checkFiles: boolean) {
    this.baseDir = nodePath.dirname(nodePath.resolve(file));
  }

  private report(segments: Segment[], message: string, atKey = false): void {
    this.issues.push({ segments, message, atKey });
  }

  config(raw: unknown): WispConfig {
    const root = asObj(raw) ?? {};
    const clusters = this.list(root.clusters, ['clusters'], (o, p) => this.cluster(o, p));
    const filters = this.list(root.filters, ['filters'], (o, p) => this.filter(o, p));
    this.uniqueNames(clusters, 'cluster');
    this.uniqueNames(filters, 'filter');
    const clusterNames = new Set(clusters.map((c) => c.value.name));
    const filterNames = new Set(filters.map((f) => f.value.name));

    const admin = this.admin(asObj(root.admin) ?? {}, ['admin']);
    const listeners = this.list(root.listeners, ['listeners'], (o, p) => this.listener(o, p, clusterNames, filterNames));
    this.uniqueNames(listeners, 'listener');
    // Routes of a listener whose name is taken already would only repeat that complaint
    // through their default names.
    const firstListeners = listeners.filter((l, i) => listeners.findIndex((o) => o.value.name === l.value.name) === i);
    this.uniqueNames(firstListeners.flatMap((l) => l.value.routes.map((r, i) => ({
      value: r, segments: [...l.segments, 'routes', i],
    }))), 'route');
    this.checkPorts(root, admin, listeners);
    this.checkHttpHandoffs(listeners);

    return {
      source: nodePath.resolve(this.file),
      admin: admin.value,
      workers: asInt(root.workers) ?? Math.max(1, os.availableParallelism() - 1),
      drain_timeout_ms: this.duration(root, 'drain_timeout', [], 15_000),
      listeners: listeners.map((l) => l.value),
      clusters: clusters.map((c) => c.value),
      filters: filters.map((f) => f.value),
    };
  }

  /** Normalise each mapping in a list, remembering where it came from; non-mappings were reported by the schema. */
  private list<T>(v: unknown, path: Segment[], each: (o: Obj, p: Segment[]) => T): { value: T; segments: Segment[] }[] {
    const out: { value: T; segments: Segment[] }[] = [];
    asList(v).forEach((item, i) => {
      const o = asObj(item);
      if (o) out.push({ value: each(o, [...path, i]), segments: [...path, i] });
    });
    return out;
  }

  private uniqueNames(items: { value: { name: string }; segments: Segment[] }[], kind: string): void {
    const first = new Map<string, Segment[]>();
    for (const item of items) {
      const prev = first.get(item.value.name);
      if (prev) this.report([...item.segments, 'name'], `duplicate ${kind} name "${item.value.name}" (also ${formatPath(prev)})`);
      else first.set(item.value.name, item.segments);
    }
  }

  // ----- durations and sizes: `timeout: 15s` or the normalised `timeout_ms: 15000`

  private duration(o: Obj, key: string, path: Segment[], fallback: number): number {
    return this.measure(o, key, '_ms', path, fallback, parseDuration);
  }

  private size(o: Obj, key: string, path: Segment[], fallback: number): number {
    return this.measure(o, key, '_bytes', path, fallback, parseSize);
  }

  private measure(o: Obj, key: string, suffix: string, path: Segment[], fallback: number, parse: (v: unknown) => number): number {
    const longKey = key + suffix;
    if (o[key] !== undefined && o[longKey] !== undefined) {
      this.report([...path, longKey], `give either ${key} or ${longKey}, not both`, true);
    }
    const used = o[key] !== undefined ? key : longKey;
    const value = o[used];
    if (value === undefined) return fallback;
    try {
      return parse(value);
    } catch (err) {
      this.report([...path, used], (err as Error).message);
      return fallback;
    }
  }

  // ----- addresses

  /** host/port from `address` ("host:port", ":port" or a port) or from `host` + `port`. */
  private hostPort(o: Obj, path: Segment[], defaultHost: string, defaultPort: number | undefined): { host: string; port: number } {
    let host = asString(o.host);
    let port = asInt(o.port);
    if (o.address !== undefined) {
      if (o.host !== undefined || o.port !== undefined) {
        this.report([...path, 'address'], 'give either address or host/port, not both');
      }
      const parsed = this.parseAddress(o.address, [...path, 'address'], true);
      if (parsed) {
        host = parsed.host || undefined;
        port = parsed.port;
      }
    } else if (port === undefined && defaultPort === undefined && o.port === undefined) {
      this.report(path, 'needs an address (like 0.0.0.0:8080) or a port');
    }
    return { host: stripBrackets(host ?? defaultHost), port: port ?? defaultPort ?? 0 };
  }

  private parseAddress(v: unknown, path: Segment[], portZeroOk: boolean): { host: string; port: number } | undefined {
    if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 65535 ? { host: '', port: v } : undefined;
    if (typeof v !== 'string') return undefined;
    const colon = v.lastIndexOf(':');
    if (colon < 0) return undefined; // the schema names the expected shape
    const port = Number(v.slice(colon + 1));
    if (!Number.isInteger(port) || port > 65535 || (port === 0 && !portZeroOk)) {
      this.report(path, `port must be ${portZeroOk ? 0 : 1}-65535 (got ${JSON.stringify(v)})`);
      return undefined;
    }
    return { host: stripBrackets(v.slice(0, colon)), port };
  }

  private checkPorts(root: Obj, admin: { value: AdminConfig; segments: Segment[] }, listeners: { value: ListenerConfig; segments: Segment[] }[]): void {
    const bound: Bound[] = [];
    const adminRaw = asObj(root.admin) ?? {};
    bound.push({
      host: admin.value.host, port: admin.value.port, owner: 'the admin API',
      segments: [...admin.segments, adminRaw.address !== undefined ? 'address' : 'port'],
    });
    const rawListeners = asList(root.listeners);
    for (const l of listeners) {
      const raw = asObj(rawListeners[l.segments[1] as number]) ?? {};
      const segments = [...l.segments, raw.address !== undefined ? 'address' : 'port'];
      bound.push({ host: l.value.host, port: l.value.port, owner: `listener "${l.value.name}"`, segments });
    }
    for (let i = 1; i < bound.length; i++) {
      const b = bound[i]!;
      if (b.port === 0) continue;
      for (let j = 0; j < i; j++) {
        const a = bound[j]!;
        if (a.port !== b.port) continue;
        if (a.host === b.host || WILDCARD_HOSTS.has(a.host) || WILDCARD_HOSTS.has(b.host)) {
          this.report(b.segments, `port ${b.port} on ${b.host} is already used by ${a.owner} (${formatPath(a.segments.slice(0, -1))})`);
          break;
        }
      }
    }
  }

  // ----- files

  private resolveFile(v: unknown, path: Segment[]): string {
    const given = asString(v) ?? '';
    const abs = nodePath.resolve(this.baseDir, given);
    if (this.checkFiles && given !== '') {
      const stat = fs.statSync(abs, { throwIfNoEntry: false });
      if (!stat) this.report(path, `file not found: ${given}${abs !== given ? ` (looked for ${abs})` : ''}`);
      else if (!stat.isFile()) this.report(path, `not a file: ${abs}`);
    }
    return abs;
  }

  // ----- admin

  private admin(o: Obj, path: Segment[]): { value: AdminConfig; segments: Segment[] } {
    const { host, port } = this.hostPort(o, path, '127.0.0.1', 9901);
    const admin: AdminConfig = { host, port };
    if (o.token !== undefined && o.token_file !== undefined) {
      this.report([...path, 'token_file'], 'give either token or token_file, not both', true);
    }
    const token = asString(o.token);
    if (token !== undefined) admin.token = token;
    else if (typeof o.token_file === 'string') {
      const abs = this.resolveFile(o.token_file, [...path, 'token_file']);
      if (fs.existsSync(abs) && fs.statSync(abs).isFile()) {
        const text = fs.readFileSync(abs, 'utf8').replace(/\r?\n$/, '');
        if (text === '') this.report([...path, 'token_file'], `token file is empty: ${abs}`);
        else admin.token = text;
      }
    }
    return { value: admin, segments: path };
  }

  // ----- listeners and routes

  private listener(o: Obj, path: Segment[], clusters: Set<string>, filters: Set<string>): ListenerConfig {
    const name = asString(o.name) ?? formatPath(path);
    const { host, port } = this.hostPort(o, path, DEFAULT_LISTENER_HOST, undefined);
    const tlsRaw = asObj(o.tls);
    const listener: ListenerConfig = {
      name, host, port,
      ...(tlsRaw ? { tls: this.tls(tlsRaw, [...path, 'tls']) } : {}),
      proxy_protocol: asBool(o.proxy_protocol) ?? false,
      access_log: asBool(o.access_log) ?? false,
      via: asString(o.via) ?? DEFAULT_VIA,
      limits: this.listenerLimits(asObj(o.limits) ?? {}, [...path, 'limits']),
      routes: [],
    };
    if (o.protocol === 'tcp') {
      listener.protocol = 'tcp';
      listener.tcp = this.tcpListener(asObj(o.tcp) ?? {}, [...path, 'tcp'], clusters, filters);
      if (o.tcp === undefined) this.report(path, 'a tcp listener needs a `tcp` block (at least `cluster`)');
      if (o.routes !== undefined && !(Array.isArray(o.routes) && o.routes.length === 0)) {
        this.report([...path, 'routes'], 'HTTP routes do not apply to a tcp listener; use tcp.routes', true);
      }
      if (tlsRaw) this.report([...path, 'tls'], 'a tcp listener passes TLS through and never terminates it; remove `tls`', true);
      return listener;
    }
    if (o.tcp !== undefined) this.report([...path, 'tcp'], 'only a listener with `protocol: tcp` takes a `tcp` block', true);
    if (o.routes === undefined) this.report(path, 'missing required key "routes"');
    else if (Array.isArray(o.routes) && o.routes.length === 0) this.report([...path, 'routes'], 'must have at least 1 item');
    asList(o.routes).forEach((r, i) => {
      const route = asObj(r);
      if (route) listener.routes.push(this.route(route, [...path, 'routes', i], name, i, clusters, filters));
    });
    return listener;
  }

  private tcpListener(o: Obj, path: Segment[], clusters: Set<string>, filters: Set<string>): TcpListenerConfig {
    const checkCluster = (v: unknown, p: Segment[]): string => {
      const c = asString(v) ?? '';
      if (!clusters.has(c)) {
        const guess = closestMatch(c, [...clusters]);
        this.report(p, `unknown cluster "${c}"${guess ? ` (did you mean "${guess}"?)` : ''}; ${definedList(clusters)}`);
      }
      return c;
    };
    let firstBytes = 1024;
    if (o.first_bytes !== undefined) {
      try {
        firstBytes = parseSize(o.first_bytes);
      } catch (err) {
        this.report([...path, 'first_bytes'], (err as Error).message);
      }
      if (firstBytes < 1 || firstBytes > 65536) this.report([...path, 'first_bytes'], `must be 1 byte to 64KB (got ${firstBytes})`);
    }
    const tcp: TcpListenerConfig = {
      routes: [],
      first_bytes: firstBytes,
      first_bytes_timeout_ms: this.duration(o, 'first_bytes_timeout', path, 1000),
      idle_timeout_ms: this.duration(o, 'idle_timeout', path, 3_600_000),
      connect_timeout_ms: this.duration(o, 'connect_timeout', path, 2000),
      sniff_inline: asBool(o.sniff_inline) ?? false,
    };
    if (tcp.sniff_inline && o.sniff === undefined) this.report([...path, 'sniff_inline'], 'runs the `sniff` filter on the main thread: name one with `sniff`');
    if (o.cluster !== undefined) tcp.cluster = checkCluster(o.cluster, [...path, 'cluster']);
    if (o.sniff !== undefined) {
      const f = asString(o.sniff) ?? '';
      if (!filters.has(f)) this.report([...path, 'sniff'], `unknown filter "${f}"; ${definedList(filters)}`);
      tcp.sniff = f;
    }
    if (o.filters !== undefined) {
      const names: string[] = (tcp.filters = []);
      asList(o.filters).forEach((v, i) => {
        const f = asString(v) ?? '';
        if (!filters.has(f)) this.report([...path, 'filters', i], `unknown filter "${f}"; ${definedList(filters)}`);
        names.push(f);
      });
    }
    asList(o.routes).forEach((r, i) => {
      const ro = asObj(r);
      if (!ro) return;
      const p = [...path, 'routes', i];
      const m = asObj(ro.match) ?? {};
      const route: TcpRouteConfig = { match: {} };
      if (ro.http_listener !== undefined) {
        // Checked against the listeners once all are read (checkHttpHandoffs).
        route.http_listener = asString(ro.http_listener) ?? '';
        if (ro.cluster !== undefined) this.report([...p, 'cluster'], 'give either cluster or http_listener, not both', true);
      } else if (ro.cluster === undefined) {
        this.report(p, 'needs a `cluster` (pipe the bytes) or an `http_listener` (serve HTTP/1 through that listener\'s routes)');
      } else {
        route.cluster = checkCluster(ro.cluster, [...p, 'cluster']);
      }
      const protocols = asStringList(m.protocol);
      if (protocols !== undefined) {
        route.match.protocol = protocols;
        protocols.forEach((proto, j) => {
          // Any sniff filter may name its own protocols (a team's custom one included):
          // accept a lower-case token, and name the built-in ones when it isn't one.
          if (!PROTOCOL_NAME.test(proto)) {
            this.report(typeof m.protocol === 'string' ? [...p, 'match', 'protocol'] : [...p, 'match', 'protocol', j],
              `must be a lower-case protocol name a sniff filter reports, e.g. ${SNIFFED_PROTOCOLS.join(', ')} (got ${JSON.stringify(proto)})`);
          }
        });
      }
      const sni = asStringList(m.sni);
      if (sni !== undefined) {
        route.match.sni = sni.map((h) => h.toLowerCase());
        route.match.sni.forEach((h, j) => {
          if (!HOST_PATTERN.test(h)) this.report([...p, 'match', 'sni', j], `must be a host name or "*.suffix" (got ${JSON.stringify(h)})`);
        });
      }
      const alpn = asStringList(m.alpn);
      if (alpn !== undefined) {
        route.match.alpn = alpn;
        alpn.forEach((id, j) => {
          if (id.length === 0 || id.length > 255 || id.includes(',')) {
            this.report(typeof m.alpn === 'string' ? [...p, 'match', 'alpn'] : [...p, 'match', 'alpn', j],
              `must be an ALPN protocol id of 1 to 255 characters without commas, like h2 or http/1.1 (got ${JSON.stringify(id)})`);
          }
        });
      }
      tcp.routes.push(route);
    });
    if (tcp.routes.length > 0 && tcp.sniff === undefined) {
      this.report([...path, 'routes'], 'routes match on what `sniff` finds: name a sniff filter (like the built-in filters/build/sniff.wasm)');
    }
    if (tcp.cluster === undefined && tcp.routes.length === 0 && Object.keys(o).length > 0) this.report(path, 'needs a `cluster` or `routes`');
    return tcp;
  }

  /** A tcp route's `http_listener` must name a plain-text HTTP listener of this config, and
   * the route must match HTTP/1 only (uWS speaks nothing else). */
  private checkHttpHandoffs(listeners: { value: ListenerConfig; segments: Segment[] }[]): void {
    const http = new Map<string, ListenerConfig>();
    for (const l of listeners) if (l.value.protocol !== 'tcp') http.set(l.value.name, l.value);
    for (const l of listeners) {
      l.value.tcp?.routes.forEach((route, i) => {
        const name = route.http_listener;
        if (name === undefined) return;
        const p = [...l.segments, 'tcp', 'routes', i];
        const target = http.get(name);
        if (target === undefined) {
          const isTcp = listeners.some((o) => o.value.name === name);
          const guess = closestMatch(name, [...http.keys()]);
          this.report([...p, 'http_listener'], isTcp
            ? `"${name}" is a tcp listener; http_listener must name an HTTP listener`
            : `unknown listener "${name}"${guess ? ` (did you mean "${guess}"?)` : ''}; HTTP listeners: ${http.size > 0 ? [...http.keys()].join(', ') : 'none'}`);
        } else if (target.tls !== undefined) {
          this.report([...p, 'http_listener'], `listener "${name}" terminates TLS; a sniffed connection is handed over as plain HTTP/1, so name a listener without tls`);
        }
        const protocols = route.match.protocol;
        if (protocols === undefined || protocols.length === 0 || protocols.some((proto) => proto !== 'http1')) {
          this.report([...p, 'match', 'protocol'], 'a route with http_listener takes HTTP/1.x only: match on `protocol: http1`');
        }
      });
    }
  }

  private listenerLimits(o: Obj, path: Segment[]): ListenerLimits {
    return {
      max_request_line_bytes: this.size(o, 'max_request_line', path, 8192),
      max_header_bytes: this.size(o, 'max_header', path, 65536),
      max_headers: asInt(o.max_headers) ?? 100,
      header_timeout_ms: this.duration(o, 'header_timeout', path, 10_000),
      body_timeout_ms: this.duration(o, 'body_timeout', path, 30_000),
      idle_timeout_ms: this.duration(o, 'idle_timeout', path, 60_000),
      max_body_bytes: this.size(o, 'max_body', path, 0),
    };
  }

  private tls(o: Obj, path: Segment[]): TlsConfig {
    const tls: TlsConfig = {
      cert: this.resolveFile(o.cert, [...path, 'cert']),
      key: this.resolveFile(o.key, [...path, 'key']),
      sni: [],
    };
    const passphrase = asString(o.passphrase);
    if (passphrase !== undefined) tls.passphrase = passphrase;
    const seen = new Map<string, number>();
    asList(o.sni).forEach((s, i) => {
      const entry = asObj(s);
      if (!entry) return;
      const p = [...path, 'sni', i];
      const hostname = (asString(entry.hostname) ?? '').toLowerCase();
      const prev = seen.get(hostname);
      if (prev !== undefined) this.report([...p, 'hostname'], `duplicate SNI hostname "${hostname}" (also ${formatPath([...path, 'sni', prev])})`);
      else seen.set(hostname, i);
      const sni: TlsConfig['sni'][number] = {
        hostname,
        cert: this.resolveFile(entry.cert, [...p, 'cert']),
        key: this.resolveFile(entry.key, [...p, 'key']),
      };
      const pass = asString(entry.passphrase);
      if (pass !== undefined) sni.passphrase = pass;
      tls.sni.push(sni);
    });
    return tls;
  }

  private route(o: Obj, path: Segment[], listener: string, index: number, clusters: Set<string>, filters: Set<string>): RouteConfig {
    const match = this.match(asObj(o.match) ?? {}, [...path, 'match']);
    const actions = (['cluster', 'direct_response', 'redirect'] as const).filter((k) => o[k] !== undefined);
    if (actions.length !== 1) {
      this.report(path, `needs exactly one of cluster, direct_response, redirect (got ${actions.length === 0 ? 'none' : actions.join(' and ')})`);
    }
    // Keys in the order RouteConfig declares them (readable dumps in /config).
    const route: RouteConfig = { name: asString(o.name) ?? `${listener}#${index}`, match } as RouteConfig;
    const cluster = asString(o.cluster);
    if (cluster !== undefined) {
      if (!clusters.has(cluster)) this.report([...path, 'cluster'], `unknown cluster "${cluster}" (${definedList(clusters)})`);
      route.cluster = cluster;
    }
    const direct = asObj(o.direct_response);
    if (direct) {
      route.direct_response = {
        status: asInt(direct.status) ?? 200,
        body: asString(direct.body) ?? '',
        content_type: asString(direct.content_type) ?? 'text/plain; charset=utf-8',
      };
    }
    const redirect = asObj(o.redirect);
    if (redirect) route.redirect = this.redirect(redirect, [...path, 'redirect'], match);
    const rewrite = asObj(o.rewrite);
    if (rewrite) {
      const value: NonNullable<RouteConfig['rewrite']> = {};
      const prefix = asString(rewrite.prefix);
      if (prefix !== undefined) {
        if (match.prefix === undefined) {
          this.report([...path, 'rewrite', 'prefix'], 'replaces the prefix the route matched, so match.prefix is required');
        }
        value.prefix = prefix;
      }
      const host = asString(rewrite.host);
      if (host !== undefined) value.host = host;
      route.rewrite = value;
    }
    route.timeout_ms = this.duration(o, 'timeout', path, 15_000);
    route.per_try_timeout_ms = this.duration(o, 'per_try_timeout', path, 0);
    route.retry = this.retry(asObj(o.retry), [...path, 'retry']);
    route.filters = [];
    const chain = new Set<string>();
    asList(o.filters).forEach((f, i) => {
      if (typeof f !== 'string') return;
      if (!filters.has(f)) this.report([...path, 'filters', i], `unknown filter "${f}" (${definedList(filters)})`);
      else if (chain.has(f)) this.report([...path, 'filters', i], `filter "${f}" is listed twice`);
      chain.add(f);
      route.filters.push(f);
    });
    return route;
  }

  private redirect(o: Obj, path: Segment[], match: RouteMatch): NonNullable<RouteConfig['redirect']> {
    const value: NonNullable<RouteConfig['redirect']> = { status: asInt(o.status) ?? 301 };
    for (const k of ['scheme', 'host', 'path', 'prefix'] as const) {
      const v = asString(o[k]);
      if (v !== undefined) value[k] = v;
    }
    if (value.scheme === undefined && value.host === undefined && value.path === undefined && value.prefix === undefined) {
      this.report(path, 'changes nothing: give scheme, host, path or prefix');
    }
    if (value.path !== undefined && value.prefix !== undefined) {
      this.report([...path, 'prefix'], 'give either path or prefix, not both');
    }
    if (value.prefix !== undefined && match.prefix === undefined) {
      this.report([...path, 'prefix'], 'replaces the prefix the route matched, so match.prefix is required');
    }
    return value;
  }

  private match(o: Obj, path: Segment[]): RouteMatch {
    // Filled in RouteMatch's key order; headers and query (always present) come last.
    const match = {} as RouteMatch;
    const hosts = asStringList(o.host);
    if (hosts) {
      match.host = hosts.map((h, i) => {
        const lower = h.toLowerCase();
        if (!HOST_PATTERN.test(lower)) {
          const p = typeof o.host === 'string' ? [...path, 'host'] : [...path, 'host', i];
          this.report(p, `must be a host like api.example.com or *.example.com, without a port (got ${JSON.stringify(h)})`);
        }
        return lower;
      });
    }
    for (const k of ['path', 'prefix'] as const) {
      const v = asString(o[k]);
      if (v !== undefined) match[k] = v;
    }
    const regex = asString(o.regex);
    if (regex !== undefined) {
      const problem = regexError(regex);
      if (problem) this.report([...path, 'regex'], problem);
      match.regex = regex;
    }
    const methods = asStringList(o.methods);
    if (methods) {
      match.methods = methods.map((m, i) => {
        const upper = m.toUpperCase();
        if (!METHOD_PATTERN.test(upper)) {
          const p = typeof o.methods === 'string' ? [...path, 'methods'] : [...path, 'methods', i];
          this.report(p, `must be an HTTP method like GET (got ${JSON.stringify(m)})`);
        }
        return upper;
      });
    }
    match.headers = this.valueMatches(o.headers, [...path, 'headers'], true);
    match.query = this.valueMatches(o.query, [...path, 'query'], false);
    return match;
  }

  private valueMatches(v: unknown, path: Segment[], isHeader: boolean): HeaderMatch[] | QueryMatch[] {
    const out: HeaderMatch[] = [];
    asList(v).forEach((item, i) => {
      const o = asObj(item);
      if (!o) return;
      const p = [...path, i];
      let name = asString(o.name) ?? '';
      if (isHeader) {
        name = name.toLowerCase();
        if (name !== '' && !HEADER_NAME_PATTERN.test(name)) {
          this.report([...p, 'name'], `must be a header name (got ${JSON.stringify(o.name)})`);
        }
      }
      const given = (['exact', 'regex', 'present'] as const).filter((k) => o[k] !== undefined);
      if (given.length > 1) this.report(p, `give only one of exact, regex, present (got ${given.join(' and ')})`);
      const m: HeaderMatch = { name };
      const exact = asString(o.exact);
      const regex = asString(o.regex);
      const present = asBool(o.present);
      if (regex !== undefined) {
        const problem = regexError(regex);
        if (problem) this.report([...p, 'regex'], problem);
      }
      if (exact !== undefined) m.exact = exact;
      else if (regex !== undefined) m.regex = regex;
      else m.present = present ?? true;
      out.push(m);
    });
    return out;
  }

  private retry(o: Obj | undefined, path: Segment[]): RetryPolicy {
    // Without a retry block, an idempotent request that could not connect is tried once more:
    // nothing reached the upstream, so the retry is always safe.
    if (!o) return { attempts: 1, on: ['connect-failure'], statuses: [], non_idempotent: false, budget_ratio: 1 };
    const on = new Set<RetryOn>();
    const statuses = new Set<number>();
    const rawOn = o.on === undefined ? ['connect-failure'] : asList(o.on);
    for (const item of rawOn) {
      if (typeof item === 'number') {
        statuses.add(item);
      } else if (item === '5xx') {
        for (let s = 500; s <= 599; s++) statuses.add(s);
      } else if (item === 'gateway-error') {
        statuses.add(502).add(503).add(504);
      } else if (item === 'connect-failure' || item === 'reset' || item === 'timeout' || item === 'status') {
        on.add(item);
      }
    }
    for (const s of asList(o.statuses)) if (typeof s === 'number') statuses.add(s);
    if (statuses.size > 0) on.add('status');
    else if (on.has('status')) {
      this.report([...path, 'on'], '"status" needs statuses to retry on: list them in `on` (like 503) or in `statuses`');
    }
    return {
      attempts: asInt(o.attempts) ?? 1,
      on: [...on],
      statuses: [...statuses].sort((a, b) => a - b),
      non_idempotent: asBool(o.non_idempotent) ?? false,
      budget_ratio: asNumber(o.budget_ratio) ?? 1,
    };
  }

  // ----- clusters

  private cluster(o: Obj, path: Segment[]): ClusterConfig {
    const lb = (asString(o.lb) ?? 'round_robin') as LbPolicy;
    const hashHeader = asString(o.hash_header);
    if (hashHeader !== undefined && lb !== 'ring_hash') {
      this.report([...path, 'hash_header'], `is only used with lb: ring_hash (lb is ${lb})`);
    }
    const hc = asObj(o.health_check);
    const limits = asObj(o.limits) ?? {};
    return {
      name: asString(o.name) ?? formatPath(path),
      endpoints: this.endpoints(o.endpoints, [...path, 'endpoints']),
      dns_refresh_ms: this.duration(o, 'dns_refresh', path, 30_000),
      lb,
      ...(hashHeader !== undefined ? { hash_header: hashHeader.toLowerCase() } : {}),
      ...(hc ? { health_check: this.healthCheck(hc, [...path, 'health_check']) } : {}),
      outlier: this.outlier(asObj(o.outlier) ?? {}, [...path, 'outlier']),
      limits: {
        max_connections: asInt(limits.max_connections) ?? 1024,
        max_pending: asInt(limits.max_pending) ?? 1024,
        max_requests: asInt(limits.max_requests) ?? 4096,
      },
      connect_timeout_ms: this.duration(o, 'connect_timeout', path, 2000),
      idle_timeout_ms: this.duration(o, 'idle_timeout', path, 60_000),
      max_idle_per_endpoint: asInt(o.max_idle_per_endpoint) ?? 1024,
    };
  }

  private endpoints(v: unknown, path: Segment[]): EndpointConfig[] {
    const out: EndpointConfig[] = [];
    const seen = new Map<string, number>();
    asList(v).forEach((item, i) => {
      const p = [...path, i];
      let ep: EndpointConfig | undefined;
      if (typeof item === 'string') {
        const a = this.parseAddress(item, p, false);
        if (a && a.host !== '') ep = { host: a.host, port: a.port, weight: 1 };
      } else if (isObj(item)) {
        const weight = asInt(item.weight) ?? 1;
        if (item.address !== undefined) {
          if (item.host !== undefined || item.port !== undefined) this.report([...p, 'address'], 'give either address or host/port, not both');
          const a = this.parseAddress(item.address, [...p, 'address'], false);
          if (a && a.host !== '') ep = { host: a.host, port: a.port, weight };
        } else if (item.host !== undefined || item.port !== undefined) {
          if (item.host === undefined) this.report(p, 'missing required key "host" (with port)');
          else if (item.port === undefined) this.report(p, 'missing required key "port" (with host)');
          else if (typeof item.host === 'string' && typeof item.port === 'number') {
            ep = { host: stripBrackets(item.host), port: item.port, weight };
          }
        } else {
          this.report(p, 'needs address ("host:port") or host and port');
        }
      }
      if (!ep) return;
      const key = `${ep.host}:${ep.port}`;
      const prev = seen.get(key);
      if (prev !== undefined) this.report(p, `duplicate endpoint ${key} (also ${formatPath([...path, prev])})`);
      else seen.set(key, i);
      out.push(ep);
    });
    return out;
  }

  private healthCheck(o: Obj, path: Segment[]): HealthCheckConfig {
    const statuses = new Set<number>();
    asList(o.expected_statuses).forEach((s, i) => {
      if (typeof s === 'number') statuses.add(s);
      else if (typeof s === 'string') {
        const [lo, hi] = s.split('-').map((x) => Number(x.trim()));
        if (lo === undefined || hi === undefined || !(lo <= hi)) {
          this.report([...path, 'expected_statuses', i], `range must go from low to high (got ${JSON.stringify(s)})`);
          return;
        }
        for (let x = lo; x <= hi; x++) statuses.add(x);
      }
    });
    const host = asString(o.host);
    return {
      path: asString(o.path) ?? '/',
      ...(host !== undefined ? { host } : {}),
      interval_ms: this.duration(o, 'interval', path, 5000),
      timeout_ms: this.duration(o, 'timeout', path, 1000),
      healthy_threshold: asInt(o.healthy_threshold) ?? 2,
      unhealthy_threshold: asInt(o.unhealthy_threshold) ?? 3,
      expected_statuses: [...statuses].sort((a, b) => a - b),
    };
  }

  private outlier(o: Obj, path: Segment[]): ClusterConfig['outlier'] {
    const outlier = {
      consecutive_5xx: asInt(o.consecutive_5xx) ?? 5,
      consecutive_connect_failure: asInt(o.consecutive_connect_failure) ?? 3,
      base_ejection_ms: this.duration(o, 'base_ejection', path, 30_000),
      max_ejection_ms: this.duration(o, 'max_ejection', path, 300_000),
      max_ejection_percent: asInt(o.max_ejection_percent) ?? 50,
    };
    if (outlier.base_ejection_ms > outlier.max_ejection_ms) {
      const key = o.max_ejection !== undefined || o.max_ejection_ms !== undefined ? (o.max_ejection !== undefined ? 'max_ejection' : 'max_ejection_ms')
        : (o.base_ejection !== undefined ? 'base_ejection' : 'base_ejection_ms');
      this.report([...path, key], `max_ejection (${outlier.max_ejection_ms} ms) is shorter than base_ejection (${outlier.base_ejection_ms} ms)`);
    }
    return outlier;
  }

  // ----- filters

  private filter(o: Obj, path: Segment[]): FilterConfig {
    return {
      name: asString(o.name) ?? formatPath(path),
      wasm: this.resolveFile(o.wasm, [...path, 'wasm']),
      config: configString(o.config),
      root_id: asString(o.root_id) ?? '',
      vm_config: configString(o.vm_config),
      failure: (asString(o.failure) ?? 'closed') as FailurePolicy,
      deadline_ms: this.duration(o, 'deadline', path, 50),
      max_memory_bytes: this.size(o, 'max_memory', path, 64 * 1024 * 1024),
      max_body_bytes: this.size(o, 'max_body', path, 1024 * 1024),
    };
  }
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

// ---------------------------------------------------------------------------------------
// Redaction for the admin /config endpoint

const REDACTED = '[redacted]';
const SECRET_NAME = /secret|password|token|key/i;

/**
 * A JSON-safe copy of `cfg` with secrets replaced by "[redacted]": admin.token, TLS
 * passphrases, and inside each filter's `config` and `vm_config`:
 * - JSON objects/arrays: the value of every key whose name matches
 *   /secret|password|token|key/i, at any depth (whole subtree when the value is an object);
 * - anything else (plain text, a JSON string or number): the whole string when it contains
 *   one of those words (e.g. "api_key=abc", a PEM "PRIVATE KEY" block), since its structure
 *   is unknown; text without them is shown as is.
 */
export function redactConfig(cfg: WispConfig): unknown {
  const copy = JSON.parse(JSON.stringify(cfg)) as WispConfig;
  if (copy.admin.token !== undefined) copy.admin.token = REDACTED;
  for (const l of copy.listeners) {
    if (!l.tls) continue;
    if (l.tls.passphrase !== undefined) l.tls.passphrase = REDACTED;
    for (const s of l.tls.sni) if (s.passphrase !== undefined) s.passphrase = REDACTED;
  }
  for (const f of copy.filters) {
    f.config = redactFilterConfig(f.config);
    f.vm_config = redactFilterConfig(f.vm_config);
  }
  return copy;
}

function redactFilterConfig(text: string): string {
  if (text === '') return text;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return SECRET_NAME.test(text) ? REDACTED : text;
  }
  if (parsed === null || typeof parsed !== 'object') return SECRET_NAME.test(text) ? REDACTED : text;
  return JSON.stringify(redactSecrets(parsed));
}

function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (value === null || typeof value !== 'object') return value;
  const out: Obj = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_NAME.test(k) ? REDACTED : redactSecrets(v);
  return out;
}
