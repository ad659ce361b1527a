// Reads a wasm module's type section (id 1) and import section (id 2) from its bytes, to learn
// the signature each imported function is declared with. Node 20 has no WebAssembly type
// reflection (WebAssembly.Module.imports gives names and kinds only), and a JS host function
// accepts any signature, so this is the only way to see that a module asks for
// env.proxy_log as (i64, f64) -> f32 before it runs and passes the host garbage.
// Every other section is skipped by its size. Binary format: WebAssembly Core Specification,
// "Binary Format" (LEB128 integers, vectors prefixed by their length).

export type ValueType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';

export interface FunctionSignature {
  readonly params: readonly ValueType[];
  readonly results: readonly ValueType[];
}

export interface FunctionImport {
  readonly module: string;
  readonly name: string;
  readonly signature: FunctionSignature;
}

/** The bytes are not a wasm module this reader understands (truncated, bad LEB128, an
 * unknown type form); the message says what and at which byte offset. */
export class WasmBinaryError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`${message} at byte offset ${offset}`);
    this.name = 'WasmBinaryError';
  }
}

const SECTION_CUSTOM = 0;
const SECTION_TYPE = 1;
const SECTION_IMPORT = 2;

const FUNC_TYPE_FORM = 0x60;

const IMPORT_FUNC = 0;
const IMPORT_TABLE = 1;
const IMPORT_MEMORY = 2;
const IMPORT_GLOBAL = 3;
const IMPORT_TAG = 4;

const VALUE_TYPES: ReadonlyMap<number, ValueType> = new Map<number, ValueType>([
  [0x7f, 'i32'],
  [0x7e, 'i64'],
  [0x7d, 'f32'],
  [0x7c, 'f64'],
  [0x7b, 'v128'],
  [0x70, 'funcref'],
  [0x6f, 'externref'],
]);

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A cursor over the module bytes; every read is bounds-checked against `end`. */
class ByteReader {
  pos: number;
  end: number;

  constructor(readonly bytes: Uint8Array, pos: number, end: number) {
    this.pos = pos;
    this.end = end;
  }

  byte(): number {
    if (this.pos >= this.end) throw new WasmBinaryError('unexpected end of data', this.pos);
    return this.bytes[this.pos++];
  }

  /** An unsigned LEB128 integer of at most 32 bits. */
  u32(): number {
    const start = this.pos;
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.byte();
      if (shift === 28 && (b & 0x70) !== 0) throw new WasmBinaryError('LEB128 integer larger than 32 bits', start);
      result += (b & 0x7f) * 2 ** shift; // not |=, which would turn bit 31 into a sign
      if ((b & 0x80) === 0) return result;
    }
    throw new WasmBinaryError('LEB128 integer longer than 5 bytes', start);
  }

  /** Skips an unsigned LEB128 integer of up to 64 bits (memory64 limits). */
  skipU64(): void {
    const start = this.pos;
    for (let i = 0; i < 10; i++) if ((this.byte() & 0x80) === 0) return;
    throw new WasmBinaryError('LEB128 integer longer than 10 bytes', start);
  }

  name(): string {
    const len = this.u32();
    const start = this.pos;
    if (len > this.end - start) throw new WasmBinaryError(`name of ${len} bytes runs past the end of its section`, start);
    this.pos += len;
    try {
      return strictUtf8.decode(this.bytes.subarray(start, start + len));
    } catch {
      throw new WasmBinaryError('name is not valid UTF-8', start);
    }
  }

  valueType(): ValueType {
    const at = this.pos;
    const code = this.byte();
    const t = VALUE_TYPES.get(code);
    if (t === undefined) throw new WasmBinaryError(`unsupported value type 0x${code.toString(16)}`, at);
    return t;
  }

  valueTypes(): ValueType[] {
    const n = this.u32();
    if (n > this.end - this.pos) throw new WasmBinaryError(`${n} value types run past the end of their section`, this.pos);
    const out: ValueType[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.valueType();
    return out;
  }

  /** Table and memory limits: a flags byte, the minimum, and the maximum when flag bit 0 is set. */
  skipLimits(): void {
    const flags = this.byte();
    this.skipU64();
    if ((flags & 1) !== 0) this.skipU64();
  }
}

function readTypeSection(r: ByteReader): FunctionSignature[] {
  const count = r.u32();
  const types: FunctionSignature[] = [];
  for (let i = 0; i < count; i++) {
    const at = r.pos;
    const form = r.byte();
    // Node 20 compiles no GC-proposal modules (rec/sub types), so only plain function types.
    if (form !== FUNC_TYPE_FORM) throw new WasmBinaryError(`type ${i} has unsupported form 0x${form.toString(16)}`, at);
    const params = r.valueTypes();
    const results = r.valueTypes();
    types.push({ params, results });
  }
  return types;
}

function readImportSection(r: ByteReader, types: readonly FunctionSignature[]): FunctionImport[] {
  const count = r.u32();
  const imports: FunctionImport[] = [];
  for (let i = 0; i < count; i++) {
    const module = r.name();
    const name = r.name();
    const at = r.pos;
    const kind = r.byte();
    switch (kind) {
      case IMPORT_FUNC: {
        const typeAt = r.pos;
        const index = r.u32();
        if (index >= types.length) {
          throw new WasmBinaryError(`import ${module}.${name} names type ${index}, but the module declares ${types.length} types`, typeAt);
        }
        imports.push({ module, name, signature: types[index] });
        break;
      }
      case IMPORT_TABLE:
        r.valueType();
        r.skipLimits();
        break;
      case IMPORT_MEMORY:
        r.skipLimits();
        break;
      case IMPORT_GLOBAL:
        r.valueType();
        r.byte(); // mutability
        break;
      case IMPORT_TAG:
        r.byte(); // attribute (0 = exception)
        r.u32(); // type index
        break;
      default:
        throw new WasmBinaryError(`import ${module}.${name} has unknown kind 0x${kind.toString(16)}`, at);
    }
  }
  return imports;
}

/**
 * Every function a module imports, in import order, with the signature it declares. Reads the
 * 8-byte header, then the sections up to the import section; a module without one imports
 * nothing. Throws WasmBinaryError when those bytes are malformed.
 */
export function readFunctionImports(bytes: Uint8Array): FunctionImport[] {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmBinaryError('not a wasm module (no \\0asm magic)', 0);
  }
  const r = new ByteReader(bytes, 8, bytes.length);
  let types: FunctionSignature[] = [];
  while (r.pos < bytes.length) {
    r.end = bytes.length;
    const id = r.byte();
    const size = r.u32();
    const start = r.pos;
    if (size > bytes.length - start) throw new WasmBinaryError(`section ${id} of ${size} bytes runs past the end of the module`, start);
    const end = start + size;
    if (id === SECTION_TYPE || id === SECTION_IMPORT) {
      r.end = end;
      if (id === SECTION_TYPE) {
        types = readTypeSection(r);
      } else {
        const imports = readImportSection(r, types);
        if (r.pos !== end) throw new WasmBinaryError(`import section has ${end - r.pos} bytes left over`, r.pos);
        return imports;
      }
      if (r.pos !== end) throw new WasmBinaryError(`type section has ${end - r.pos} bytes left over`, r.pos);
    } else if (id !== SECTION_CUSTOM && id > SECTION_IMPORT) {
      return []; // sections come in id order: past the import section, there is none
    }
    r.pos = end;
  }
  return [];
}

/** "(i32, i64) -> i32"; no results reads "-> ()", several "-> (i32, i32)". */
export function formatSignature(sig: FunctionSignature): string {
  const results = sig.results.length === 1 ? sig.results[0] : `(${sig.results.join(', ')})`;
  return `(${sig.params.join(', ')}) -> ${results}`;
}

export function sameSignature(a: FunctionSignature, b: FunctionSignature): boolean {
  return sameTypes(a.params, b.params) && sameTypes(a.results, b.results);
}

function sameTypes(a: readonly ValueType[], b: readonly ValueType[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
