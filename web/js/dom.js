// Small helpers for the page's elements.

export const el = (id) => document.getElementById(id);

/** A `<dl>` of [label, text] rows. */
export function kvList(rows) {
  const dl = document.createElement('dl');
  dl.className = 'kv';
  for (const [k, v] of rows) dl.append(Object.assign(document.createElement('dt'), { textContent: k }), Object.assign(document.createElement('dd'), { textContent: v }));
  return dl;
}
