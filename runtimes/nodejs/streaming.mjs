// Lamina Node.js runtime: response streaming (awslambda.streamifyResponse).
// Loaded only when the handler was wrapped with awslambda.streamifyResponse.
//
// As AWS: handler(event, responseStream, context) must return a promise.
// The response is POSTed to /runtime/invocation/{id}/response with
//   Lambda-Runtime-Function-Response-Mode: streaming
//   Transfer-Encoding: chunked
//   Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body
//   Content-Type: application/octet-stream (or what setContentType() /
//                 awslambda.HttpResponseStream.from() chose)
// A failure after the stream was opened is reported in the HTTP trailers:
// error type, and base64 of the error JSON body.

import { headerSafe } from './client.mjs';
import { NodeJsExit } from './errors.mjs';

const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');

class InvalidStreamingOperation extends Error {}
InvalidStreamingOperation.prototype.name = 'Runtime.InvalidStreamingOperation';

function createResponseStream(api, id, highWaterMark) {
  const options = {
    method: 'POST',
    path: `/2018-06-01/runtime/invocation/${encodeURIComponent(id)}/response`,
    headers: {
      'Lambda-Runtime-Function-Response-Mode': 'streaming',
      'Transfer-Encoding': 'chunked',
      Trailer: 'Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body',
      'Content-Type': 'application/octet-stream',
    },
  };
  if (typeof highWaterMark === 'number' && !Number.isNaN(highWaterMark)) {
    options.highWaterMark = highWaterMark;
  }
  const req = api.client.rawRequest(options);

  const responseDone = new Promise((resolve, reject) => {
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  responseDone.catch(() => {}); // observed by the caller; never an unhandled rejection

  const origWrite = req.write;
  const origEnd = req.end;
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    if (typeof req._onBeforeFirstWrite === 'function') {
      req._onBeforeFirstWrite((chunk) => origWrite.call(req, chunk));
    }
  };
  req.write = function (chunk, encoding, cb) {
    start();
    return origWrite.call(this, chunk, encoding, cb);
  };
  req.end = function (chunk, encoding, cb) {
    start();
    return origEnd.call(this, chunk, encoding, cb);
  };
  req.setContentType = (contentType) => {
    if (started || req.headersSent) {
      throw new InvalidStreamingOperation('Cannot set content-type, too late.');
    }
    req.setHeader('Content-Type', contentType);
  };

  const fail = (err) => {
    if (!req.writableEnded) {
      const body = api.toRapidResponse(err);
      req.addTrailers({
        'Lambda-Runtime-Function-Error-Type': headerSafe(body.errorType),
        'Lambda-Runtime-Function-Error-Body': Buffer.from(JSON.stringify(body)).toString('base64'),
      });
      origEnd.call(req);
    }
    return responseDone;
  };

  return { req, responseDone, fail };
}

export function invokeStreaming(api, handler, id, h, body) {
  const inv = { id, reported: false };
  api.setCurrent(inv);
  const { req, responseDone, fail } = createResponseStream(api, id, handler[HANDLER_HIGHWATERMARK]);

  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    inv.reported = true;
    api.setBeforeExitHook(null);
    responseDone.then(
      (res) => {
        if (res.status >= 300) {
          api.diag(`streamed response for ${id} returned ${res.status}: ${res.body.toString('utf8')}`);
        }
        api.nextInvocation();
      },
      (err) => {
        api.diag(`streamed response for ${id} failed: ${err && err.message}`);
        api.nextInvocation();
      },
    );
  };
  const failWith = (err) => {
    if (finished) return;
    api.logError('Invoke Error', err);
    fail(err);
    finish();
  };
  // Used by the process-level uncaughtException/unhandledRejection hooks.
  inv.reportFatal = (err) => {
    fail(err);
    return responseDone;
  };
  api.setBeforeExitHook(() => failWith(new NodeJsExit()));

  let result;
  try {
    const event = api.parseEvent(body);
    let waits = true;
    const context = Object.assign(
      {
        get callbackWaitsForEmptyEventLoop() {
          return waits;
        },
        set callbackWaitsForEmptyEventLoop(v) {
          waits = v;
        },
      },
      api.buildContextData(id, h),
    );
    result = handler(event, req, context);
  } catch (err) {
    failWith(err);
    return;
  }
  if (!result || typeof result.then !== 'function') {
    failWith('Streaming does not support non-async handlers.');
    return;
  }
  result.then(
    (value) => {
      if (value !== undefined) console.warn('Streaming handlers ignore return values.');
      if (!req.writableEnded) {
        failWith('Response stream is not finished.');
        return;
      }
      finish();
    },
    (err) => failWith(err),
  );
}
