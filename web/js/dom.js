// Small helpers for the page's elements.

export const el = (id) => document.getElementById(id);

/** A `<dl>` of [label, text] rows. */
export function kvList(rows) {
  const dl = document.createElement('dl');
  dl.className = 'kv';
  for (const [k, v] of rows) dl.append(Object.assign(document.createElement('dt'), { textContent: k }), Object.assign(document.createElement('dd'), { textContent: v }));
  return dl;
}

/**
 * Sizes `canvas` to fill `wrap` (at least `minWidth` × `minHeight` CSS px)
 * at the screen's pixel ratio, and writes `width`, `height` and `ratio`
 * into `view`.
 */
export function fitCanvas(canvas, wrap, view, minWidth, minHeight) {
  const box = wrap.getBoundingClientRect();
  view.width = Math.max(minWidth, box.width);
  view.height = Math.max(minHeight, box.height);
  view.ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(view.width * view.ratio);
  canvas.height = Math.round(view.height * view.ratio);
}
