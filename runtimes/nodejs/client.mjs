// Lamina Node.js runtime: Runtime API client (2018-06-01).
//
// One kept-alive socket with a small hand-written HTTP/1.1 client: every
// request is one write, every response is parsed from the socket's bytes
// (Content-Length or chunked). node:http cost several times more CPU per
// invocation (measured: 765 vs 1,854 warm invocations/s at 16 connections);
// the Python and .NET clients are written the same way. GET /next is a long
// poll, so there is no client timeout. A request that fails on a *reused*
// socket (the server closed the idle connection just as we wrote) is retried
// once on a fresh one. The response-streaming path keeps node:http (chunked
// requests with trailers), on connections of its own. An invocation's response
// (or error) and the next GET /next go out in one write (HTTP/1.1 pipelining):
// one system call and one wake-up fewer on each side per invocation.

import http from 'node:http';
import net from 'node:net';

const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

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

  _request(method, path, body, headers, retry = true, fresh = false, thenNext = false) {
    const connection = fresh ? new RawConnection(this.host, this.port) : (this.connection ??= new RawConnection(this.host, this.port));
    const following = thenNext && !fresh ? `GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\n\r\n` : undefined;
    let head = `${method} ${path} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\n`;
    let hasLength = false;
    if (headers) {
      for (const name of Object.keys(headers)) {
        head += `${name}: ${headerSafe(headers[name])}\r\n`;
        if (name.toLowerCase() === 'content-length') hasLength = true;
      }
    }
    if (!hasLength && (body != null || method !== 'GET')) {
      head += `Content-Length: ${body == null ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.length}\r\n`;
    }
    if (fresh) head += 'Connection: close\r\n';
    head += '\r\n';
    this.pipelinedNext = null;
    const sent = connection.request(head, body, following);
    if (following) this.pipelinedNext = connection.takeFollowing();
    return sent.then(
      (res) => {
        if (fresh) connection.close();
        return res;
      },
      (err) => {
        if (fresh) connection.close();
        if (retry && err.reused && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          return this._request(method, path, body, headers, false, fresh, thenNext);
        }
        throw err;
      },
    );
  }

  /** GET /runtime/invocation/next -> {status, headers (lower-case keys), body: Buffer} */
  next(headers) {
    const pipelined = this.pipelinedNext;
    if (pipelined) {
      // Sent behind the last response; if that connection failed, ask again on a new one.
      this.pipelinedNext = null;
      return pipelined.catch(() => this._request('GET', '/2018-06-01/runtime/invocation/next', undefined, headers));
    }
    return this._request('GET', '/2018-06-01/runtime/invocation/next', undefined, headers);
  }

  // fresh: use a separate, one-off connection.  Needed when a GET /next may be
  // outstanding on the kept-alive one (a fatal error between invocations),
  // since with maxSockets 1 the POST would otherwise queue behind it forever.
  // thenNext: the next GET /next goes out in the same write; next() then returns its answer.
  _postJson(path, bodyString, extraHeaders, fresh = false, thenNext = false) {
    const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(bodyString) };
    if (extraHeaders) Object.assign(headers, extraHeaders);
    return this._request('POST', path, bodyString, headers, true, fresh, thenNext);
  }

  postResponse(id, bodyString, thenNext = false) {
    return this._postJson(
      `/2018-06-01/runtime/invocation/${encodeURIComponent(id)}/response`,
      bodyString,
      undefined,
      false,
      thenNext,
    );
  }

  postError(id, errorBody, fresh = false, thenNext = false) {
    return this._postJson(
      `/2018-06-01/runtime/invocation/${encodeURIComponent(id)}/error`,
      JSON.stringify(errorBody),
      { [ERROR_TYPE_HEADER]: headerSafe(errorBody.errorType) },
      fresh,
      thenNext,
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

// One socket, one request at a time (the runtime never overlaps its calls on it).
class RawConnection {
  constructor(host, port) {
    this.host = host;
    this.port = port;
    this.socket = null;
    this.buffer = Buffer.alloc(0);
    this.pending = null;
    this.queued = null; // the pipelined request's callbacks, answered after pending
    this.following = null;
    this.used = false;
  }

  // payload: a string (UTF-8), bytes, or none. following: a second request head (no body) written with this one; its
  // answer is takeFollowing()'s promise. Heads are encoded as UTF-8 either way, so a string payload goes out with them
  // as one string: one encoding straight into the write, no buffers to join.
  request(head, payload, following) {
    if (this.socket === null) this._connect();
    const reused = this.used;
    this.used = true;
    // Referenced only while a request is outstanding: an idle kept-alive socket must not keep the event loop alive
    // (the runtime relies on the loop emptying: callbackWaitsForEmptyEventLoop, a promise that never settles).
    this.socket.ref();
    if (following) {
      this.following = new Promise((resolve, reject) => {
        this.queued = { resolve, reject, reused: true };
      });
      this.following.catch(() => {}); // read later by next(): never an unhandled rejection meanwhile
    }
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, reused };
      if (payload == null || typeof payload === 'string') {
        this.socket.write(following ? head + (payload ?? '') + following : head + (payload ?? ''), 'utf8');
        return;
      }
      const parts = [Buffer.from(head, 'utf8')];
      if (payload.length) parts.push(payload);
      if (following) parts.push(Buffer.from(following, 'utf8'));
      this.socket.write(parts.length === 1 ? parts[0] : Buffer.concat(parts));
    });
  }

  takeFollowing() {
    const following = this.following;
    this.following = null;
    return following;
  }

  close() {
    if (this.socket !== null) this.socket.destroy();
    this.socket = null;
  }

  _connect() {
    const socket = net.connect({ host: this.host, port: this.port, noDelay: true });
    socket.on('data', (chunk) => {
      // Chunks are joined only once enough bytes for the response are there (a 6 MB event arrives in many
      // chunks; joining on each would copy it over and over).
      this.chunks.push(chunk);
      this.received += chunk.length;
      if (this.received < this.needed) return;
      this.buffer = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
      this.chunks = [this.buffer];
      this._parse();
    });
    socket.on('error', (err) => this._fail(socket, err));
    socket.on('close', () => this._fail(socket, Object.assign(new Error('the Runtime API closed the connection'), { code: 'ECONNRESET' })));
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    this.chunks = [];
    this.received = 0;
    this.needed = 0;
    this.used = false;
  }

  _fail(socket, err) {
    if (socket !== this.socket) return;
    this.socket = null;
    const pending = this.pending;
    const queued = this.queued;
    this.pending = null;
    this.queued = null;
    if (pending) {
      err.reused = pending.reused;
      pending.reject(err);
    }
    if (queued) queued.reject(Object.assign(new Error(err.message), { code: err.code ?? 'ECONNRESET', reused: true }));
  }

  // Completes the pending request once its whole response is buffered.
  _parse() {
    if (this.pending === null) return;
    const end = this.buffer.indexOf(HEAD_END);
    if (end < 0) return;
    const text = this.buffer.toString('latin1', 0, end);
    const status = parseInt(text.slice(text.indexOf(' ') + 1), 10);
    const headers = Object.create(null); // a header named like an Object.prototype member is a header
    let at = text.indexOf('\r\n') + 2;
    while (at > 1 && at < text.length) {
      let lineEnd = text.indexOf('\r\n', at);
      if (lineEnd < 0) lineEnd = text.length;
      const colon = text.indexOf(':', at);
      if (colon > at && colon < lineEnd) {
        const name = text.slice(at, colon).trim().toLowerCase();
        const value = text.slice(colon + 1, lineEnd).trim();
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      }
      at = lineEnd + 2;
    }
    let body;
    let rest;
    if (headers['transfer-encoding'] && /chunked/i.test(headers['transfer-encoding'])) {
      const chunks = [];
      let at = end + 4;
      for (;;) {
        const lineEnd = this.buffer.indexOf('\r\n', at);
        if (lineEnd < 0) return;
        const size = parseInt(this.buffer.toString('latin1', at, lineEnd), 16);
        if (Number.isNaN(size)) {
          const socket = this.socket;
          this._fail(socket, new Error('malformed chunked response from the Runtime API'));
          socket?.destroy();
          return;
        }
        if (this.buffer.length < lineEnd + 2 + size + 2) return;
        if (size === 0) {
          // Trailers, if any, end with an empty line.
          const trailerEnd = this.buffer.indexOf('\r\n', lineEnd + 2);
          if (trailerEnd < 0) return;
          rest = trailerEnd + 2;
          break;
        }
        chunks.push(this.buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
        at = lineEnd + 2 + size + 2;
      }
      body = Buffer.concat(chunks);
    } else {
      const length = parseInt(headers['content-length'] ?? '0', 10);
      if (this.buffer.length < end + 4 + length) {
        this.needed = end + 4 + length;
        return;
      }
      body = this.buffer.subarray(end + 4, end + 4 + length);
      rest = end + 4 + length;
    }
    this.buffer = rest < this.buffer.length ? this.buffer.subarray(rest) : Buffer.alloc(0);
    this.chunks = this.buffer.length ? [this.buffer] : [];
    this.received = this.buffer.length;
    this.needed = 0;
    const pending = this.pending;
    this.pending = this.queued; // a pipelined request's answer comes next
    this.queued = null;
    if (headers.connection && /close/i.test(headers.connection)) {
      const orphan = this.pending;
      this.pending = null;
      this.close();
      orphan?.reject(Object.assign(new Error('the Runtime API closed the connection'), { code: 'ECONNRESET', reused: true }));
    } else if (this.pending === null) this.socket?.unref();
    // No copy: the bytes are this response's own (each read gets a new buffer from Node, concat makes another).
    pending.resolve({ status, headers, body });
    if (this.pending !== null && this.buffer.length > 0) this._parse(); // its answer may be in already
  }
}
