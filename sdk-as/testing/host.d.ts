/** Compiles a .wasm file. */
export declare function loadModule(path: string): WebAssembly.Module;
/** Shared KV with CAS, shared by several FilterHosts like Wisp's workers share a SAB. */
export declare class SharedStore {
    readonly data: Map<string, {
        value: Uint8Array;
        cas: number;
    }>;
    private nextCas;
    /** Called on every read: lets a test play "another worker wrote in between". */
    onGet: ((key: string) => void) | null;
    casMismatches: number;
    get(key: string): {
        value: Uint8Array;
        cas: number;
    } | undefined;
    /** Rewrites a key with its own bytes and a new cas, as a concurrent writer would. */
    touch(key: string): void;
    set(key: string, value: Uint8Array, cas: number): number;
}
export interface LocalResponse {
    status: number;
    body: string;
    headers: [string, string][];
    details: string;
}
type Pairs = [string, string][];
export declare class FilterHost {
    readonly shared: SharedStore;
    readonly logs: {
        level: number;
        message: string;
    }[];
    readonly properties: Map<string, string | Uint8Array>;
    readonly metrics: Map<string, {
        type: number;
        value: bigint;
    }>;
    private readonly metricIds;
    pluginConfig: string;
    vmConfig: string;
    nowNs: bigint;
    tickPeriodMs: number;
    requestHeaders: Pairs;
    responseHeaders: Pairs;
    localResponse: LocalResponse | null;
    httpCalls: {
        cluster: string;
        headers: Pairs;
        timeout: number;
    }[];
    requestTrailers: Pairs;
    responseTrailers: Pairs;
    requestBody: Uint8Array;
    responseBody: Uint8Array;
    httpCallResponseHeaders: Pairs;
    httpCallResponseTrailers: Pairs;
    httpCallResponseBody: Uint8Array;
    /** queue id → items; names → ids */
    readonly queues: Map<number, Uint8Array[]>;
    readonly queueIds: Map<string, number>;
    /** how many times the filter called proxy_done */
    doneCalls: number;
    readonly instance: WebAssembly.Instance;
    private readonly exports;
    private nextContextId;
    readonly rootId = 1;
    constructor(module: WebAssembly.Module, shared?: SharedStore);
    /** Creates the root context, starts the VM and configures; returns proxy_on_configure. */
    start(config: string): boolean;
    tick(): void;
    newStream(): number;
    onRequestHeaders(id: number, headers: Pairs, eos?: boolean): number;
    onResponseHeaders(id: number, headers: Pairs, eos?: boolean): number;
    onRequestBody(id: number, body: string | Uint8Array, eos?: boolean): number;
    onRequestTrailers(id: number, trailers: Pairs): number;
    onResponseBody(id: number, body: string | Uint8Array, eos?: boolean): number;
    onResponseTrailers(id: number, trailers: Pairs): number;
    /** Answers an http call made with proxy_http_call (headers empty = the call failed). */
    httpCallResponse(token: number, headers: Pairs, body?: string | Uint8Array, trailers?: Pairs, contextId?: number): void;
    /** Tells the root context an item is waiting on a queue. */
    queueReady(queueId: number): void;
    /** on_done; when it returns true (or the filter called proxy_done inside), on_log + on_delete. */
    finish(id: number): void;
    /** One request through both phases; returns the local response if the filter sent one. */
    request(reqHeaders: Pairs, status?: number, respHeaders?: Pairs): {
        action: number;
        local: LocalResponse | null;
        responseAction: number;
    };
    header(pairs: Pairs, name: string): string | undefined;
    errors(): string[];
    private get mem();
    private get view();
    private str;
    private bytes;
    private giveBytes;
    private giveString;
    private map;
    private setMap;
    private buffer;
    static serialize(pairs: Pairs): Uint8Array;
    static deserialize(buf: Uint8Array): Pairs;
    private envImports;
    private wasiImports;
}
export declare const ACTION_CONTINUE = 0;
export declare const ACTION_PAUSE = 1;

