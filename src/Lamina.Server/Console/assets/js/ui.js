// DOM helpers, formatting, charts (inline SVG) and a store-only zip writer. No framework, no innerHTML with data.
const SVG = 'http://www.w3.org/2000/svg';

/** Creates an element: h('a', { href: '#/x', onclick: fn }, 'text', child, [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el && !tag.startsWith('svg:')) el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces `el`'s children (arrays flattened, null and false left out). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function mount(...children) {
  const main = document.getElementById('main');
  main.replaceChildren();
  append(main, children);
}

/** A table of `rows` with `columns` [{ title, cell(row), num }]; the `empty` message when there are none. */
export function table(columns, rows, empty, attrs = {}) {
  if (!rows.length) return h('div', { class: 'empty' }, empty);
  return h('table', attrs,
    h('thead', {}, h('tr', {}, columns.map(c => h('th', { class: c.num ? 'num' : null, scope: 'col' }, c.title)))),
    h('tbody', {}, rows.map(r => h('tr', {}, columns.map(c => h('td', { class: c.num ? 'num' : null }, c.cell(r)))))));
}

export function props(pairs) {
  return h('dl', { class: 'props' }, pairs.filter(p => p).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

export function toast(message, isError = false) {
  const box = document.getElementById('toast');
  const el = h('div', { class: isError ? 'error' : null, 'data-shown': Date.now() }, message);
  box.append(el);
  setTimeout(() => el.remove(), isError ? 8000 : 4000);
}

/** Drops the toasts of an earlier page (those shown in the last second belong to the action that navigated here). */
export function clearOldToasts() {
  for (const el of document.querySelectorAll('#toast div')) if (Date.now() - Number(el.dataset.shown) > 1000) el.remove();
}

export function errorBox(error) {
  return h('div', { class: 'empty error', role: 'alert' }, `${error.code ? error.code + ': ' : ''}${error.message}`);
}

/** Runs an action from a button: disables it meanwhile, shows a toast with the outcome. */
export async function act(button, fn, done) {
  if (button) button.disabled = true;
  try {
    const result = await fn();
    if (done) toast(typeof done === 'function' ? done(result) : done);
    return result;
  } catch (e) {
    toast(`${e.code ? e.code + ': ' : ''}${e.message}`, true);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function tabs(base, current, entries) {
  return h('nav', { class: 'tabs', 'aria-label': 'Sections' },
    entries.map(([id, title]) => h('a', { href: `${base}/${id}`, 'aria-current': id === current ? 'page' : null, 'data-tab': id }, title)));
}

export const fmt = {
  bytes(n) {
    if (n === undefined || n === null) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB']; let i = 0; let v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${i ? v.toFixed(1) : v} ${units[i]}`;
  },
  time(t) {
    if (t === undefined || t === null || t === '') return '—';
    const d = typeof t === 'number' ? new Date(t < 1e12 ? t * 1000 : t) : new Date(t);
    return isNaN(d) ? String(t) : d.toLocaleString();
  },
  json(v) { return JSON.stringify(v, null, 2); },
};

/** Base64 of bytes (for ZipFile) and text from base64 (for LogResult). */
export function base64(bytes) {
  let s = ''; for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
export function fromBase64Text(b64) {
  const bin = atob(b64); const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

// A zip of stored (uncompressed) files: enough for a function's source typed into the console.
const crcTable = new Uint32Array(256).map((_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c; });
function crc32(bytes) { let c = 0xffffffff; for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; }
export function zip(files) {
  const enc = new TextEncoder(); const parts = []; const central = []; let offset = 0;
  for (const [name, text] of Object.entries(files)) {
    const nameBytes = enc.encode(name); const data = typeof text === 'string' ? enc.encode(text) : text; const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true); local.setUint16(4, 20, true); local.setUint16(6, 0x0800, true);
    local.setUint16(12, 0x21, true); local.setUint32(14, crc, true); local.setUint32(18, data.length, true); local.setUint32(22, data.length, true);
    local.setUint16(26, nameBytes.length, true);
    const dir = new DataView(new ArrayBuffer(46));
    dir.setUint32(0, 0x02014b50, true); dir.setUint16(4, 0x0314, true); dir.setUint16(6, 20, true); dir.setUint16(8, 0x0800, true);
    dir.setUint16(14, 0x21, true); dir.setUint32(16, crc, true); dir.setUint32(20, data.length, true); dir.setUint32(24, data.length, true);
    dir.setUint16(28, nameBytes.length, true); dir.setUint32(38, (0o100644 << 16) >>> 0, true); dir.setUint32(42, offset, true);
    parts.push(new Uint8Array(local.buffer), nameBytes, data);
    central.push(new Uint8Array(dir.buffer), nameBytes);
    offset += 30 + nameBytes.length + data.length;
  }
  const centralSize = central.reduce((n, p) => n + p.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true); end.setUint16(8, central.length / 2, true); end.setUint16(10, central.length / 2, true);
  end.setUint32(12, centralSize, true); end.setUint32(16, offset, true);
  const all = [...parts, ...central, new Uint8Array(end.buffer)];
  const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0)); let at = 0;
  for (const p of all) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * A line chart of per-minute samples: `series` [{ name, color, value(sample) }] over `samples` [{ Timestamp }].
 * Points with a null value are left out (a minute with no invocation has no duration).
 */
export function chart(title, samples, series, unit = '') {
  const W = 360, H = 150, L = 52, R = 8, T = 8, B = 20;
  const values = samples.flatMap(s => series.map(x => x.value(s))).filter(v => v !== null && v !== undefined);
  const max = Math.max(1, ...values);
  const x = i => L + (samples.length <= 1 ? 0 : (i * (W - L - R)) / (samples.length - 1));
  const y = v => T + (H - T - B) * (1 - v / max);
  const svg = h('svg:svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, preserveAspectRatio: 'none' },
    h('svg:line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
    h('svg:line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    h('svg:text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, round(max) + unit),
    h('svg:text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, '0'),
    samples.length ? [
      h('svg:text', { x: L, y: H - 4 }, clock(samples[0].Timestamp)),
      h('svg:text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, clock(samples[samples.length - 1].Timestamp)),
    ] : []);
  for (const s of series) {
    let d = '';
    const points = [];
    samples.forEach((sample, i) => {
      const v = s.value(sample);
      if (v === null || v === undefined) return;
      d += `${d ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      if (v > 0) points.push(h('svg:circle', { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: s.color, class: 'point', 'data-series': s.name, 'data-value': v },
        h('svg:title', {}, `${clock(sample.Timestamp)} ${s.name}: ${round(v)}${unit}`)));
    });
    if (d) svg.append(h('svg:path', { d, fill: 'none', stroke: s.color, 'stroke-width': 1.5 }));
    svg.append(...points);
  }
  return h('figure', { class: 'chart', 'data-chart': title },
    h('h3', {}, title),
    svg,
    h('div', { class: 'legend' }, series.map(s => {
      const swatch = h('i');
      swatch.style.background = s.color; // CSSOM, which the page's CSP allows (inline style attributes it does not)
      const last = [...samples].reverse().map(s.value).find(v => v !== null && v !== undefined);
      return h('span', {}, swatch, `${s.name}${last !== undefined ? ` (now ${round(last)}${unit})` : ''}`);
    })));
}

function round(v) { return v >= 100 ? Math.round(v) : Math.round(v * 100) / 100; }
function clock(t) { const d = new Date(t); return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }); }
