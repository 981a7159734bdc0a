// The page as the binary serves it, assembled the way build.rs does it:
// d3 (this repository's web/node_modules) inlined in place of its
// <script src> tag, and the import map replaced by one that maps each
// module of the js/ folder beside the page file to its text (a data: URL).
// For e2e/perf.mjs --page (a working copy, without a rebuild) and for the
// test that the binary serves exactly this (e2e/page.test.mjs). A page from
// before the modules has no import map: only d3 is inlined.
//
// Not a test itself: its name matches none of `node --test`'s patterns.

import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const D3_TAG = '<script src="node_modules/d3/dist/d3.min.js"></script>';
export const IMPORT_MAP_TAG = '<script type="importmap">{ "imports": { "icewatch/": "./js/" } }</script>';
const PREFIX = 'icewatch/';
const D3 = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'web', 'node_modules', 'd3', 'dist', 'd3.min.js');

/** The page of `file` (web/visage.html or a copy of it) as one self-contained text. */
export function assemblePage(file) {
  const page = readFileSync(file, 'utf8');
  if (page.split(D3_TAG).length !== 2) throw new Error(`${file} must have this line once: ${D3_TAG}`);
  const d3 = readFileSync(D3, 'utf8').replaceAll('</script', '<\\/script');
  let html = page.replace(D3_TAG, () => `<script>${d3}</script>`);
  if (page.includes(IMPORT_MAP_TAG)) {
    const dir = join(dirname(file), 'js');
    const imports = readdirSync(dir).filter((name) => name.endsWith('.js')).sort().map((name) => {
      const text = readFileSync(join(dir, name), 'utf8') + `\n//# sourceURL=${PREFIX}${name}\n`;
      return `"${PREFIX}${name}": "data:text/javascript;base64,${Buffer.from(text, 'utf8').toString('base64')}"`;
    });
    html = html.replace(IMPORT_MAP_TAG, () => `<script type="importmap">{ "imports": {\n${imports.join(',\n')}\n} }</script>`);
  }
  return html;
}
