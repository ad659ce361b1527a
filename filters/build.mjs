// Compiles every filters/<name>/index.ts to filters/build/<name>.wasm + .wasm.map (release)
// and <name>.debug.wasm + .map (debug) with the AssemblyScript compiler's JS API, using the
// top-level asconfig.json. Both get a source map: Wisp maps a trapping filter's wasm stack
// back to file:line through the .wasm.map next to the .wasm (the module itself only gains a
// small sourceMappingURL section). Exits non-zero on any compile error.
//   node filters/build.mjs            all filters
//   node filters/build.mjs noop auth  only these
//   WISP_FILTERS_NO_DEBUG=1 ...       skip the debug builds
import asc from "assemblyscript/asc";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const filtersDir = dirname(fileURLToPath(import.meta.url));
const root = dirname(filtersDir);
const outDir = join(filtersDir, "build");
const rel = (p) => relative(root, p).split("\\").join("/");

const wanted = process.argv.slice(2);
const names = readdirSync(filtersDir)
  .filter((n) => n !== "build" && existsSync(join(filtersDir, n, "index.ts")))
  .filter((n) => wanted.length === 0 || wanted.includes(n))
  .sort();
if (wanted.length > 0 && names.length !== wanted.length) {
  const missing = wanted.filter((n) => !names.includes(n));
  console.error(`build-filters: no filters/<name>/index.ts for: ${missing.join(", ")}`);
  process.exit(1);
}

mkdirSync(outDir, { recursive: true });
const withDebug = !process.env.WISP_FILTERS_NO_DEBUG;
let failed = 0;

async function compile(name, target, outFile) {
  const args = [
    rel(join(filtersDir, name, "index.ts")),
    "--config", "asconfig.json",
    "--target", target,
    "--outFile", rel(outFile),
  ];
  args.push("--sourceMap");
  let stderr = "";
  const { error } = await asc.main(args, {
    stderr: { write(chunk) { stderr += String(chunk); return true; } },
    stdout: { write() { return true; } },
  });
  if (error) {
    failed++;
    console.error(`build-filters: ${name} (${target}) FAILED: ${error.message}\n${stderr}`);
    return false;
  }
  if (stderr.trim()) console.error(stderr.trim());
  if (target === "release") stripSourcesContent(`${outFile}.map`);
  return true;
}

/** A release map keeps only what maps a trap to file:line (Wisp holds it in memory per
 * loaded generation); the sources themselves (~95% of it) stay in the debug map. */
function stripSourcesContent(mapFile) {
  const map = JSON.parse(readFileSync(mapFile, "utf8"));
  delete map.sourcesContent;
  writeFileSync(mapFile, JSON.stringify(map));
}

const prevCwd = process.cwd();
process.chdir(root); // asconfig "use" paths and entry paths are relative to the repo root
try {
  for (const name of names) {
    const release = join(outDir, `${name}.wasm`);
    if (!(await compile(name, "release", release))) continue;
    let line = `${name.padEnd(12)} ${String(statSync(release).size).padStart(7)} B (+ .map)`;
    if (withDebug) {
      const debug = join(outDir, `${name}.debug.wasm`);
      if (await compile(name, "debug", debug)) line += `   debug ${statSync(debug).size} B (+ .map)`;
    }
    console.log(line);
  }
} finally {
  process.chdir(prevCwd);
}
if (failed > 0) {
  console.error(`build-filters: ${failed} build(s) failed`);
  process.exit(1);
}
console.log(`build-filters: ${names.length} filter(s) -> ${rel(outDir)}/`);
