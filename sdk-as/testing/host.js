// @wisp/sdk-as/testing: a small synchronous proxy-wasm ABI 0.2.1 host to unit-test a built
// filter without a proxy: header maps, properties, shared data with CAS, metrics, local
// responses and logs, time under the test's control. It follows the spec's memory
// conventions (returned data is allocated through proxy_on_memory_allocate), so a filter
// that passes here talks the same ABI as on Wisp or Envoy. Plain JS + host.d.ts so a filter
// project can use it from node:test without a build step.
import { readFileSync } from 'node:fs';
/** Compiles a .wasm file. */
export function loadModule(path) {
    return new WebAssembly.Module(readFileSync(path));
}
const OK = 0, NOT_FOUND = 1, BAD_ARGUMENT = 2, CAS_MISMATCH = 8, EMPTY = 7;
/** Shared KV with CAS, shared by several FilterHosts like Wisp's workers share a SAB. */
export class SharedStore {
    data = new Map();
    nextCas = 1;
    /** Called on every read: lets a test play "another worker wrote in between". */
    onGet = null;
    casMismatches = 0;
    get(key) {
        const v = this.data.get(key);
        if (this.onGet)
            this.onGet(key);
        return v;
    }
    /** Rewrites a key with its own bytes and a new cas, as a concurrent writer would. */
    touch(key) {
        const cur = this.data.get(key);
        if (cur)
            this.data.set(key, { value: cur.value, cas: this.nextCas++ });
    }
    set(key, value, cas) {
        const cur = this.data.get(key);
        if (cas !== 0 && (cur === undefined || cur.cas !== cas)) {
            this.casMismatches++;
            return CAS_MISMATCH;
        }
        this.data.set(key, { value: value.slice(), cas: this.nextCas++ });
        return OK;
    }
}
export class FilterHost {
    shared;
    logs = [];
    properties = new Map();
    metrics = new Map();
    metricIds = [];
    pluginConfig = '';
    vmConfig = '';
    nowNs = 1700000000000000000n;
    tickPeriodMs = 0;
    requestHeaders = [];
    responseHeaders = [];
    localResponse = null;
    httpCalls = [];
    requestTrailers = [];
    responseTrailers = [];
    requestBody = new Uint8Array(0);
    responseBody = new Uint8Array(0);
    httpCallResponseHeaders = [];
    httpCallResponseTrailers = [];
    httpCallResponseBody = new Uint8Array(0);
    /** queue id → items; names → ids */
    queues = new Map();
    queueIds = new Map();
    /** how many times the filter called proxy_done */
    doneCalls = 0;
    instance;
    exports;
    nextContextId = 2;
    rootId = 1;
    constructor(module, shared = new SharedStore()) {
        this.shared = shared;
        const env = this.envImports();
        const wasi = this.wasiImports();
        this.instance = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi });
        this.exports = this.instance.exports;
        if (this.exports._initialize)
            this.exports._initialize();
    }
    /** Creates the root context, starts the VM and configures; returns proxy_on_configure. */
    start(config) {
        this.pluginConfig = config;
        this.exports.proxy_on_context_create(this.rootId, 0);
        if (!this.exports.proxy_on_vm_start(this.rootId, Buffer.byteLength(this.vmConfig)))
            return false;
        return this.exports.proxy_on_configure(this.rootId, Buffer.byteLength(config)) !== 0;
    }
    tick() { this.exports.proxy_on_tick(this.rootId); }
    newStream() {
        const id = this.nextContextId++;
        this.exports.proxy_on_context_create(id, this.rootId);
        return id;
    }
    onRequestHeaders(id, headers, eos = true) {
        this.requestHeaders = headers.map(([k, v]) => [k, v]);
        this.localResponse = null;
        return this.exports.proxy_on_request_headers(id, headers.length, eos ? 1 : 0);
    }
    onResponseHeaders(id, headers, eos = true) {
        this.responseHeaders = headers.map(([k, v]) => [k, v]);
        return this.exports.proxy_on_response_headers(id, headers.length, eos ? 1 : 0);
    }
    onRequestBody(id, body, eos = true) {
        this.requestBody = Buffer.from(body);
        return this.exports.proxy_on_request_body(id, this.requestBody.length, eos ? 1 : 0);
    }
    onRequestTrailers(id, trailers) {
        this.requestTrailers = trailers.map(([k, v]) => [k, v]);
        return this.exports.proxy_on_request_trailers(id, trailers.length);
    }
    onResponseBody(id, body, eos = true) {
        this.responseBody = Buffer.from(body);
        return this.exports.proxy_on_response_body(id, this.responseBody.length, eos ? 1 : 0);
    }
    onResponseTrailers(id, trailers) {
        this.responseTrailers = trailers.map(([k, v]) => [k, v]);
        return this.exports.proxy_on_response_trailers(id, trailers.length);
    }
    /** Answers an http call made with proxy_http_call (headers empty = the call failed). */
    httpCallResponse(token, headers, body = '', trailers = [], contextId = this.rootId) {
        this.httpCallResponseHeaders = headers.map(([k, v]) => [k, v]);
        this.httpCallResponseTrailers = trailers.map(([k, v]) => [k, v]);
        this.httpCallResponseBody = Buffer.from(body);
        this.exports.proxy_on_http_call_response(contextId, token, headers.length, this.httpCallResponseBody.length, trailers.length);
    }
    /** Tells the root context an item is waiting on a queue. */
    queueReady(queueId) { this.exports.proxy_on_queue_ready(this.rootId, queueId); }
    /** on_done; when it returns true (or the filter called proxy_done inside), on_log + on_delete. */
    finish(id) {
        const before = this.doneCalls;
        if (this.exports.proxy_on_done(id) || this.doneCalls > before) {
            this.exports.proxy_on_log(id);
            this.exports.proxy_on_delete(id);
        }
    }
    /** One request through both phases; returns the local response if the filter sent one. */
    request(reqHeaders, status = 200, respHeaders = []) {
        const id = this.newStream();
        const action = this.onRequestHeaders(id, reqHeaders);
        const local = this.localResponse;
        let responseAction = -1;
        if (local === null)
            responseAction = this.onResponseHeaders(id, [[':status', String(status)], ...respHeaders]);
        this.finish(id);
        return { action, local, responseAction };
    }
    header(pairs, name) {
        return pairs.find(([k]) => k === name)?.[1];
    }
    errors() { return this.logs.filter((l) => l.level >= 4).map((l) => l.message); }
    // ---- memory helpers ----
    get mem() { return new Uint8Array(this.exports.memory.buffer); }
    get view() { return new DataView(this.exports.memory.buffer); }
    str(ptr, len) { return Buffer.from(this.mem.subarray(ptr, ptr + len)).toString('utf8'); }
    bytes(ptr, len) { return this.mem.slice(ptr, ptr + len); }
    giveBytes(data, retPtr, retLen) {
        const ptr = data.length === 0 ? 0 : this.exports.proxy_on_memory_allocate(data.length);
        if (data.length > 0)
            this.mem.set(data, ptr);
        this.view.setUint32(retPtr, ptr, true);
        this.view.setUint32(retLen, data.length, true);
        return OK;
    }
    giveString(s, retPtr, retLen) {
        return this.giveBytes(Buffer.from(s, 'utf8'), retPtr, retLen);
    }
    map(type) {
        switch (type) {
            case 0: return this.requestHeaders;
            case 1: return this.requestTrailers;
            case 2: return this.responseHeaders;
            case 3: return this.responseTrailers;
            case 6: return this.httpCallResponseHeaders;
            case 7: return this.httpCallResponseTrailers;
            default: return [];
        }
    }
    setMap(type, pairs) {
        switch (type) {
            case 0: this.requestHeaders = pairs; break;
            case 1: this.requestTrailers = pairs; break;
            case 2: this.responseHeaders = pairs; break;
            case 3: this.responseTrailers = pairs; break;
        }
    }
    buffer(type) {
        switch (type) {
            case 0: return this.requestBody;
            case 1: return this.responseBody;
            case 4: return this.httpCallResponseBody;
            case 6: return Buffer.from(this.vmConfig, 'utf8');
            case 7: return Buffer.from(this.pluginConfig, 'utf8');
            default: return null;
        }
    }
    static serialize(pairs) {
        const parts = pairs.map(([k, v]) => [Buffer.from(k), Buffer.from(v)]);
        let size = 4 + 8 * parts.length;
        for (const [k, v] of parts)
            size += k.length + v.length + 2;
        const out = Buffer.alloc(size);
        out.writeUInt32LE(parts.length, 0);
        let at = 4;
        for (const [k, v] of parts) {
            out.writeUInt32LE(k.length, at);
            out.writeUInt32LE(v.length, at + 4);
            at += 8;
        }
        for (const [k, v] of parts) {
            k.copy(out, at);
            at += k.length + 1;
            v.copy(out, at);
            at += v.length + 1;
        }
        return out;
    }
    static deserialize(buf) {
        if (buf.length < 4)
            return [];
        const b = Buffer.from(buf);
        const n = b.readUInt32LE(0);
        const out = [];
        let data = 4 + 8 * n;
        for (let i = 0; i < n; i++) {
            const kl = b.readUInt32LE(4 + 8 * i), vl = b.readUInt32LE(8 + 8 * i);
            const k = b.subarray(data, data + kl).toString();
            data += kl + 1;
            const v = b.subarray(data, data + vl).toString();
            data += vl + 1;
            out.push([k, v]);
        }
        return out;
    }
    envImports() {
        const h = this;
        return {
            proxy_log(level, ptr, len) { h.logs.push({ level, message: h.str(ptr, len) }); return OK; },
            proxy_get_log_level(ret) { h.view.setUint32(ret, 0, true); return OK; },
            proxy_get_current_time_nanoseconds(ret) { h.view.setBigUint64(ret, h.nowNs, true); return OK; },
            proxy_set_tick_period_milliseconds(ms) { h.tickPeriodMs = ms; return OK; },
            proxy_get_buffer_bytes(type, start, max, retPtr, retLen) {
                const all = h.buffer(type);
                if (all === null)
                    return NOT_FOUND;
                if (start > all.length)
                    return BAD_ARGUMENT;
                return h.giveBytes(all.subarray(start, start + Math.min(max >>> 0, all.length)), retPtr, retLen);
            },
            proxy_set_buffer_bytes(type, start, size, vp, vl) {
                if (type !== 0 && type !== 1)
                    return NOT_FOUND;
                const cur = h.buffer(type);
                const value = h.bytes(vp, vl);
                const at = Math.min(start >>> 0, cur.length);
                const next = Buffer.concat([cur.subarray(0, at), value, cur.subarray(Math.min(cur.length, at + (size >>> 0)))]);
                if (type === 0)
                    h.requestBody = next;
                else
                    h.responseBody = next;
                return OK;
            },
            proxy_get_header_map_pairs(type, retPtr, retLen) {
                return h.giveBytes(FilterHost.serialize(h.map(type)), retPtr, retLen);
            },
            proxy_set_header_map_pairs(type, ptr, len) {
                h.setMap(type, FilterHost.deserialize(h.bytes(ptr, len)));
                return OK;
            },
            proxy_get_header_map_value(type, kp, kl, retPtr, retLen) {
                const key = h.str(kp, kl);
                const found = h.map(type).find(([k]) => k === key);
                return found ? h.giveString(found[1], retPtr, retLen) : NOT_FOUND;
            },
            proxy_add_header_map_value(type, kp, kl, vp, vl) {
                h.map(type).push([h.str(kp, kl), h.str(vp, vl)]);
                return OK;
            },
            proxy_replace_header_map_value(type, kp, kl, vp, vl) {
                const key = h.str(kp, kl);
                const rest = h.map(type).filter(([k]) => k !== key);
                rest.push([key, h.str(vp, vl)]);
                h.setMap(type, rest);
                return OK;
            },
            proxy_remove_header_map_value(type, kp, kl) {
                const key = h.str(kp, kl);
                h.setMap(type, h.map(type).filter(([k]) => k !== key));
                return OK;
            },
            proxy_get_header_map_size(type, ret) {
                h.view.setUint32(ret, FilterHost.serialize(h.map(type)).length, true);
                return OK;
            },
            proxy_get_property(pp, pl, retPtr, retLen) {
                const path = h.str(pp, pl).split('\0').join('.');
                const v = h.properties.get(path);
                return v === undefined ? NOT_FOUND : typeof v === 'string' ? h.giveString(v, retPtr, retLen) : h.giveBytes(v, retPtr, retLen);
            },
            proxy_set_property(pp, pl, vp, vl) {
                h.properties.set(h.str(pp, pl).split('\0').join('.'), h.str(vp, vl));
                return OK;
            },
            proxy_send_local_response(status, dp, dl, bp, bl, hp, hl) {
                h.localResponse = { status, details: h.str(dp, dl), body: h.str(bp, bl), headers: FilterHost.deserialize(h.bytes(hp, hl)) };
                return OK;
            },
            proxy_continue_stream() { return OK; },
            proxy_close_stream() { return OK; },
            proxy_get_shared_data(kp, kl, retPtr, retLen, retCas) {
                const cur = h.shared.get(h.str(kp, kl));
                if (cur === undefined)
                    return NOT_FOUND;
                h.view.setUint32(retCas, cur.cas, true);
                return h.giveBytes(cur.value, retPtr, retLen);
            },
            proxy_set_shared_data(kp, kl, vp, vl, cas) {
                return h.shared.set(h.str(kp, kl), h.bytes(vp, vl), cas);
            },
            proxy_register_shared_queue(np, nl, ret) {
                const name = h.str(np, nl);
                let id = h.queueIds.get(name);
                if (id === undefined) {
                    id = h.queueIds.size + 1;
                    h.queueIds.set(name, id);
                    h.queues.set(id, []);
                }
                h.view.setUint32(ret, id, true);
                return OK;
            },
            proxy_resolve_shared_queue() { return NOT_FOUND; },
            proxy_enqueue_shared_queue(id, vp, vl) {
                const q = h.queues.get(id);
                if (!q)
                    return NOT_FOUND;
                q.push(h.bytes(vp, vl));
                return OK;
            },
            proxy_dequeue_shared_queue(id, retPtr, retLen) {
                const q = h.queues.get(id);
                if (!q)
                    return NOT_FOUND;
                const item = q.shift();
                return item === undefined ? EMPTY : h.giveBytes(item, retPtr, retLen);
            },
            proxy_http_call(cp, cl, hp, hl, _bp, _bl, _tp, _tl, timeout, ret) {
                h.httpCalls.push({ cluster: h.str(cp, cl), headers: FilterHost.deserialize(h.bytes(hp, hl)), timeout });
                h.view.setUint32(ret, h.httpCalls.length, true);
                return OK;
            },
            proxy_define_metric(type, np, nl, ret) {
                const name = h.str(np, nl);
                let id = h.metricIds.indexOf(name);
                if (id < 0) {
                    id = h.metricIds.push(name) - 1;
                    h.metrics.set(name, { type, value: 0n });
                }
                h.view.setUint32(ret, id, true);
                return OK;
            },
            proxy_increment_metric(id, delta) {
                const m = h.metrics.get(h.metricIds[id]);
                if (!m)
                    return NOT_FOUND;
                m.value += delta;
                return OK;
            },
            proxy_record_metric(id, value) {
                const m = h.metrics.get(h.metricIds[id]);
                if (!m)
                    return NOT_FOUND;
                m.value = value;
                return OK;
            },
            proxy_get_metric(id, ret) {
                const m = h.metrics.get(h.metricIds[id]);
                if (!m)
                    return NOT_FOUND;
                h.view.setBigUint64(ret, m.value, true);
                return OK;
            },
            proxy_set_effective_context() { return OK; },
            proxy_done() { h.doneCalls++; return OK; },
            proxy_call_foreign_function() { return NOT_FOUND; },
            proxy_get_buffer_status() { return NOT_FOUND; },
            proxy_get_status() { return NOT_FOUND; },
        };
    }
    wasiImports() {
        return {
            fd_write() { return 8; },
            clock_time_get() { return 58; },
            random_get() { return 0; },
            environ_sizes_get() { return 0; },
            environ_get() { return 0; },
            args_sizes_get() { return 0; },
            args_get() { return 0; },
            proc_exit() { throw new Error('proc_exit'); },
        };
    }
}
export const ACTION_CONTINUE = 0;
export const ACTION_PAUSE = 1;
