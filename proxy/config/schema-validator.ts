// The JSON-schema pass of config validation, without ajv at runtime.
//
// `npx tsc -p . && node dist/proxy/config/schema-validator.js` precompiles schema.json with
// ajv's standalone code generator into schema-validator.generated.ts (run it after editing
// the schema). Starting Wisp then neither loads ajv nor compiles the schema: that compile took
// 0.3–0.8 s, and its allocation burst grew the main thread's young generation for good
// (idle RSS 77 → 67 MB without it; docs/memory.md). The generated code is what ajv.compile
// would have built with the same options, so errors are the same objects, message for message.
// A generated file from another schema is never used: the hash differs and ajv compiles here.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import nodePath from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Ajv as AjvClass, ValidateFunction } from 'ajv';
import schema from './schema.json' with { type: 'json' };
import { SCHEMA_SHA256, validate as precompiled } from './schema-validator.generated.js';

const require = createRequire(import.meta.url);

/** Identifies the schema a generated validator was built from. */
export function schemaHash(value: unknown = schema): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex');
}

/** The one ajv setup of the config schema; `source` keeps the code for standalone output. */
function newAjv(source: boolean): AjvClass {
  // Required here, not imported: only a stale generated file or the generator needs ajv.
  const { Ajv } = require('ajv') as typeof import('ajv');
  const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true, code: { source, esm: true } });
  // Annotation only: the sentence to show when a value fails its type/pattern/range.
  ajv.addKeyword({ keyword: 'x-message', schemaType: 'string' });
  return ajv;
}

/** Whether the generated validator was built from the current schema.json. */
export function generatedIsCurrent(): boolean {
  return SCHEMA_SHA256 === schemaHash();
}

/** A validator compiled by ajv now (what the generated one must equal). */
export function compileSchemaValidator(): ValidateFunction {
  return newAjv(false).compile(schema);
}

let validator: ValidateFunction | undefined;

/** The config schema's validator: the precompiled one when current, else compiled once here. */
export function schemaValidator(): ValidateFunction {
  validator ??= generatedIsCurrent() ? (precompiled as unknown as ValidateFunction) : compileSchemaValidator();
  return validator;
}

/** The text of schema-validator.generated.ts for the current schema.json. */
export function generatedValidatorSource(): string {
  const ajv = newAjv(true);
  const standalone = require('ajv/dist/standalone') as typeof import('ajv/dist/standalone/index.js');
  const code = standalone.default(ajv, ajv.compile(schema));
  return [
    '// @ts-nocheck',
    '// GENERATED from proxy/config/schema.json by `node dist/proxy/config/schema-validator.js`; do not edit.',
    // ajv's ESM output still calls require() for its runtime helpers (ucs2length).
    "import { createRequire } from 'node:module';",
    'const require = createRequire(import.meta.url);',
    `export const SCHEMA_SHA256 = '${schemaHash()}';`,
    code.replace(/^"use strict";/, ''),
    '',
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === nodePath.resolve(process.argv[1])) {
  // dist/proxy/config/schema-validator.js → proxy/config/schema-validator.generated.ts
  const root = nodePath.resolve(nodePath.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const out = nodePath.join(root, 'proxy', 'config', 'schema-validator.generated.ts');
  writeFileSync(out, generatedValidatorSource());
  process.stdout.write(`wrote ${out}\n`);
}
