// Lamina Node.js runtime: Runtime API client (2018-06-01).
//
// One keep-alive connection (Agent keepAlive, maxSockets 1), no client
// timeouts (GET /next is a long poll). Every POST carries Content-Length
// (never chunked). A request that fails on a *reused* socket with
// ECONNRESET/EPIPE (the server closed the idle connection just as we wrote)
// is retried once on a fresh connection.

import http from 'node:http';

const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';

function parseHostPort(value) {
  if (!value) throw new Error('AWS_LAMBDA_RUNTIME_API is not set');
  const i = value.lastIndexOf(':');
  let host = i > 0 ? value.slice(0, i) : value;
  const port = i > 0 ? parseInt(value.slice(i + 1), 10) : 80;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return [host, port];
}

// Header values must be visible ASCII; anything else would make http throw.
export function headerSafe(v) {
  const s = String(v);
  return /^[\x20-\x7e]*$/.test(s) ? s : s.replace(/[^\x20-\x7e]/g, '?');
}

export class RuntimeClient {
  constructor(hostPort) {
    const [host, port] = parseHostPort(hostPort);
    this.host = host;
    this.port = port;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  _request(method, path, body, headers, retry = true, fresh = false) {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: this.host, port: this.port, method, path, headers, agent: fresh ? false : this.agent },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode,
              headers: res.headers,
              body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks),
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', (err) => {
        if (retry && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          resolve(this._request(method, path, body, headers, false));
        } else {
          reject(err);
        }
      });
      req.end(body);
    });
  }

  /** GET /runtime/invocation/next -> {status, headers (lower-case keys), body: Buffer} */
  next(headers) {
    return this._request('GET', '/2018-06-01/runtime/invocation/next', undefined, headers);
  }

  // fresh: use a separate, one-off connection.  Needed when a GET /next may be
  // outstanding on the kept-alive one (a fatal error between invocations),
  // since with maxSockets 1 the POST would otherwise queue behind it forever.
  _postJson(path, bodyString, extraHeaders, fresh = false) {
    const buf = Buffer.from(bodyString, 'utf8');
    const headers = { 'Content-Type': 'application/json', 'Content-Length': buf.length };
    if (extraHeaders) Object.assign(headers, extraHeaders);
    return this._request('POST', path, buf, headers, true, fresh);
  }

  postResponse(id, bodyString) {
    return this._postJson(
      `/2018-06-01/runtime/invocation/${encodeURIComponent(id)}/response`,
      bodyString,
    );
  }

  postError(id, errorBody, fresh = false) {
    return this._postJson(
      `/2018-06-01/runtime/invocation/${encodeURIComponent(id)}/error`,
      JSON.stringify(errorBody),
      { [ERROR_TYPE_HEADER]: headerSafe(errorBody.errorType) },
      fresh,
    );
  }

  postInitError(errorBody, fresh = false) {
    return this._postJson(
      '/2018-06-01/runtime/init/error',
      JSON.stringify(errorBody),
      { [ERROR_TYPE_HEADER]: headerSafe(errorBody.errorType) },
      fresh,
    );
  }

  /** Raw request for the response-streaming path (chunked POST with trailers). */
  rawRequest(options) {
    return http.request({ host: this.host, port: this.port, agent: this.agent, ...options });
  }
}
