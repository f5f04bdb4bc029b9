// AWS Signature Version 4 in the browser: the header form for API calls and the query form (presigned URLs) for S3
// downloads. WebCrypto's SHA-256 and HMAC where the page is a secure context (https, localhost, 127.0.0.1); a small
// pure-JavaScript SHA-256 elsewhere (a server reached over plain http by another name), so signing never depends on it.
const encoder = new TextEncoder();
const subtle = globalThis.crypto && globalThis.crypto.subtle;

function toBytes(data) {
  if (typeof data === 'string') return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(0);
}

function hex(bytes) {
  return Array.from(new Uint8Array(bytes), b => b.toString(16).padStart(2, '0')).join('');
}

export async function sha256(data) {
  const bytes = toBytes(data);
  return subtle ? new Uint8Array(await subtle.digest('SHA-256', bytes)) : sha256Js(bytes);
}

export async function sha256Hex(data) { return hex(await sha256(data)); }

async function hmac(key, data) {
  const keyBytes = toBytes(key);
  const bytes = toBytes(data);
  if (!subtle) return hmacJs(keyBytes, bytes);
  const k = await subtle.importKey('raw', keyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, bytes));
}

/** RFC 2104 HMAC over sha256Js, for pages without crypto.subtle. */
export function hmacJs(keyBytes, bytes) {
  const block = keyBytes.length > 64 ? sha256Js(keyBytes) : keyBytes;
  const padded = new Uint8Array(64); padded.set(block);
  const inner = new Uint8Array(64 + bytes.length), outer = new Uint8Array(96);
  for (let i = 0; i < 64; i++) { inner[i] = padded[i] ^ 0x36; outer[i] = padded[i] ^ 0x5c; }
  inner.set(bytes, 64);
  outer.set(sha256Js(inner), 64);
  return sha256Js(outer);
}

// SigV4's encoding: every byte but A-Z a-z 0-9 - _ . ~ as %XX (upper case); '/' kept when asked.
export function uriEncode(value, keepSlash = false) {
  let out = '';
  for (const b of encoder.encode(String(value))) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~]/.test(c) || (keepSlash && c === '/')) out += c;
    else out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** The path of a URL from its segments, each encoded (what the request sends and S3 signs as is). */
export function pathOf(...segments) {
  return '/' + segments.map(s => uriEncode(s)).join('/');
}

function canonicalQuery(pairs) {
  return pairs.map(([k, v]) => [uriEncode(k), uriEncode(v ?? '')])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => k + '=' + v).join('&');
}

function amzDate(now) {
  return now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

async function signingKey(secret, day, region, service) {
  let key = await hmac('AWS4' + secret, day);
  key = await hmac(key, region);
  key = await hmac(key, service);
  return hmac(key, 'aws4_request');
}

/**
 * Signs a request: returns the headers to send (the given ones plus X-Amz-Date, x-amz-content-sha256 and
 * Authorization). `path` is the path as sent (already encoded); S3 signs it as is, other services encode it once more.
 * `payloadHash` overrides the body's hash (S3 uploads use UNSIGNED-PAYLOAD).
 */
export async function signRequest({ method, path, query = [], headers = {}, body, service, credentials, region, payloadHash }) {
  const date = amzDate(new Date());
  const day = date.slice(0, 8);
  const all = { ...headers, host: location.host, 'x-amz-date': date };
  all['x-amz-content-sha256'] = payloadHash || await sha256Hex(body ?? '');
  const names = Object.keys(all).map(n => n.toLowerCase()).sort();
  const lower = {};
  for (const [k, v] of Object.entries(all)) lower[k.toLowerCase()] = String(v).trim().replace(/ +/g, ' ');
  const canonicalPath = service === 's3' ? path : uriEncode(path, true);
  const canonical = [method, canonicalPath, canonicalQuery(query),
    names.map(n => n + ':' + lower[n]).join('\n') + '\n', names.join(';'), all['x-amz-content-sha256']].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, await sha256Hex(canonical)].join('\n');
  const signature = hex(await hmac(await signingKey(credentials.secretAccessKey, day, region, service), toSign));
  const sent = { ...headers, 'X-Amz-Date': date, 'x-amz-content-sha256': all['x-amz-content-sha256'] };
  sent.Authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  return sent;
}

/** A presigned GET URL (S3's query form, UNSIGNED-PAYLOAD), valid for `expires` seconds. */
export async function presign({ path, query = [], service, credentials, region, expires = 900 }) {
  const date = amzDate(new Date());
  const day = date.slice(0, 8);
  const scope = `${day}/${region}/${service}/aws4_request`;
  const pairs = [...query, ['X-Amz-Algorithm', 'AWS4-HMAC-SHA256'], ['X-Amz-Credential', `${credentials.accessKeyId}/${scope}`],
    ['X-Amz-Date', date], ['X-Amz-Expires', String(expires)], ['X-Amz-SignedHeaders', 'host']];
  const canonicalPath = service === 's3' ? path : uriEncode(path, true);
  const canonical = ['GET', canonicalPath, canonicalQuery(pairs), 'host:' + location.host + '\n', 'host', 'UNSIGNED-PAYLOAD'].join('\n');
  const toSign = ['AWS4-HMAC-SHA256', date, scope, await sha256Hex(canonical)].join('\n');
  const signature = hex(await hmac(await signingKey(credentials.secretAccessKey, day, region, service), toSign));
  return path + '?' + canonicalQuery([...pairs, ['X-Amz-Signature', signature]]);
}

/** The query string of `pairs` as sent (encoded the way SigV4 canonicalises it). */
export function queryString(pairs) {
  return pairs.length ? '?' + pairs.map(([k, v]) => uriEncode(k) + '=' + uriEncode(v ?? '')).join('&') : '';
}

// FIPS 180-4 SHA-256, for pages that are not a secure context (no crypto.subtle there).
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

export function sha256Js(bytes) {
  const length = bytes.length;
  const blocks = Math.ceil((length + 9) / 64);
  const m = new Uint8Array(blocks * 64);
  m.set(bytes); m[length] = 0x80;
  const view = new DataView(m.buffer);
  view.setUint32(m.length - 8, Math.floor(length / 0x20000000));
  view.setUint32(m.length - 4, (length << 3) >>> 0);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let b = 0; b < blocks; b++) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(b * 64 + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, bb, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = bb; bb = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]);
  return out;
}
