#!/usr/bin/env node
// A native-solc look-alike over solc-js (wasm), for machines where native solc can't be downloaded.
// Speaks what ape-solidity (py-solc-x), forge and slither use: `--version` and `--standard-json`
// (input on stdin), resolving file imports from --base-path / --include-path / the working folder.
'use strict';
const fs = require('fs');
const path = require('path');

const solcModule = process.env.ICHAIN_SOLCJS_MODULE || path.join(__dirname, 'node_modules', 'solc');
const solc = require(solcModule);

const args = process.argv.slice(2);
const roots = [];
for (let i = 0; i < args.length; i++) {
  if ((args[i] === '--base-path' || args[i] === '--include-path') && args[i + 1]) roots.push(args[++i]);
}
roots.push(process.cwd());

function nativeVersion() {
  // solc-js says e.g. 0.8.28+commit.7893614a.Emscripten.clang; tools parse the native form.
  return solc.version().replace(/\.Emscripten\.clang$/, '.Linux.g++');
}

if (args.includes('--version') || args.includes('-v')) {
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' + nativeVersion() + '\n');
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('solc-wrapper: only --version and --standard-json are supported\n');
  process.exit(2);
}

function findImports(importPath) {
  for (const root of roots) {
    const candidate = path.resolve(root, importPath);
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, 'utf8') };
  }
  return { error: 'File not found: ' + importPath };
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  process.stdout.write(solc.compile(input, { import: findImports }));
});
