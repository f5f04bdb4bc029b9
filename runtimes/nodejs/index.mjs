// Lamina managed runtime for Node.js (nodejs18.x .. nodejs22.x).
//
// Launched by the server as:  /usr/bin/node /var/runtime/nodejs/index.mjs
// with cwd /var/task.  Talks to the Lambda Runtime API 2018-06-01 at
// http://$AWS_LAMBDA_RUNTIME_API and behaves like AWS's Node.js runtime
// (aws-lambda-nodejs-runtime-interface-client) for the classic, one
// invocation-at-a-time model.  Only Node built-ins are used.
//
// Environment read: AWS_LAMBDA_RUNTIME_API (required), _HANDLER (required),
// LAMBDA_TASK_ROOT (default: cwd), AWS_LAMBDA_FUNCTION_NAME,
// AWS_LAMBDA_FUNCTION_VERSION, AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
// AWS_LAMBDA_LOG_GROUP_NAME, AWS_LAMBDA_LOG_STREAM_NAME (context fields),
// AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_LOG_LEVEL (logging),
// AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA (don't define globalThis.awslambda).
//
// Invocation semantics (as AWS):
//  * event = JSON.parse(body).  An EMPTY body is treated as {} (Lamina choice;
//    AWS never hands the runtime an empty body).  Invalid JSON fails the
//    invocation with the SyntaxError (errorType "SyntaxError"), as on AWS.
//  * handler(event, context, callback) is called; then
//      - a returned promise/thenable decides the result (resolve -> response,
//        reject -> error), without waiting for the event loop;
//      - callback(err, result) / context.done/succeed/fail: first call wins;
//        callback waits for the event loop to drain when
//        context.callbackWaitsForEmptyEventLoop is true (default);
//      - Lamina addition: a handler declared with fewer than 3 parameters that
//        synchronously returns a non-undefined, non-promise value has that
//        value used as the result (AWS ignores it and returns null);
//      - otherwise, once the event loop is empty: null is returned, or, if the
//        handler returned a promise that never settled, Runtime.NodeJsExit.
//  * result -> JSON.stringify (undefined -> null).  If that throws the
//    invocation fails with errorType "Runtime.JSONStringifyError", message
//    "Unable to stringify response body" (the name used by AWS's current
//    runtime client; its older JS client reported the same message as "Error").
//  * uncaughtException during an invocation -> the error is posted for that
//    invocation, process exits 129.  unhandledRejection -> posted as
//    Runtime.UnhandledPromiseRejection, exit 128 (AWS's codes).  Before the
//    first invocation has started both go to /runtime/init/error instead.
//  * init failure -> logged as "Uncaught Exception", POST /runtime/init/error,
//    exit 129 (what AWS's runtime ends up doing).

import { RuntimeClient } from './client.mjs';
import { patchConsole, logError, setCurrentRequestId, setCurrentTenantId } from './logging.mjs';
import { loadHandler } from './loader.mjs';
import {
  toRapidResponse,
  UnhandledPromiseRejection,
  NodeJsExit,
  JSONStringifyError,
} from './errors.mjs';

// _X_AMZN_TRACE_ID is each invocation's trace header, as AWS's runtime sets it (the X-Ray SDK reads it; a child process
// started with the default environment inherits it). Setting it on process.env calls setenv, and glibc keeps every
// value setenv was ever given for good (a caller of getenv may still hold the old one): a new trace header per
// invocation grew a warm environment by ~150 bytes an invocation until its memory limit ended it. So process.env is a
// Proxy of the real one that keeps this variable in JavaScript, and passes every other variable through (its setters
// included: TZ still resets the time zone). Native code's getenv and a worker thread's process.env do not see it.
const TRACE_KEY = '_X_AMZN_TRACE_ID';
const realEnv = process.env;
let traceVariable = realEnv[TRACE_KEY];
if (traceVariable !== undefined) delete realEnv[TRACE_KEY];
const traceDescriptor = () =>
  traceVariable === undefined ? undefined : { value: traceVariable, writable: true, enumerable: true, configurable: true };
process.env = new Proxy(realEnv, {
  get: (target, key) => (key === TRACE_KEY ? traceVariable : Reflect.get(target, key)),
  set(target, key, value) {
    if (key !== TRACE_KEY) return Reflect.set(target, key, value);
    traceVariable = String(value); // process.env's own coercion
    return true;
  },
  has: (target, key) => (key === TRACE_KEY ? traceVariable !== undefined : Reflect.has(target, key)),
  deleteProperty(target, key) {
    if (key !== TRACE_KEY) return Reflect.deleteProperty(target, key);
    traceVariable = undefined;
    return true;
  },
  ownKeys(target) {
    const keys = Reflect.ownKeys(target);
    if (traceVariable !== undefined) keys.push(TRACE_KEY);
    return keys;
  },
  getOwnPropertyDescriptor: (target, key) => (key === TRACE_KEY ? traceDescriptor() : Reflect.getOwnPropertyDescriptor(target, key)),
  defineProperty(target, key, descriptor) {
    if (key !== TRACE_KEY) return Reflect.defineProperty(target, key, descriptor);
    if (!('value' in descriptor) || descriptor.configurable === false) return false; // as process.env refuses them
    traceVariable = String(descriptor.value);
    return true;
  },
});
const env = process.env;

function diag(msg) {
  // Runtime diagnostics (not user logs): raw line on stderr.
  process.stderr.write(`Lamina runtime: ${msg}\n`);
}

patchConsole();

let client;
try {
  client = new RuntimeClient(env.AWS_LAMBDA_RUNTIME_API);
} catch (e) {
  diag(e.message);
  process.exit(1);
}

const TASK_ROOT = env.LAMBDA_TASK_ROOT || process.cwd();
const FUNCTION_NAME = env.AWS_LAMBDA_FUNCTION_NAME;
const FUNCTION_VERSION = env.AWS_LAMBDA_FUNCTION_VERSION;
const MEMORY_SIZE = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
const LOG_GROUP = env.AWS_LAMBDA_LOG_GROUP_NAME;
const LOG_STREAM = env.AWS_LAMBDA_LOG_STREAM_NAME;

const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');

let handler = null;
let streaming = null; // streaming module, when the handler is streamified
let dying = false;
let current = null; // state of the invocation in progress
let beforeExitHook = null;

// ---------------------------------------------------------------------------
// process-level hooks

process.on('beforeExit', () => {
  const hook = beforeExitHook;
  beforeExitHook = null;
  if (hook) hook();
});

function fatal(title, err, exitCode) {
  logError(title, err);
  if (dying) return;
  dying = true;
  const body = toRapidResponse(err);
  let p;
  if (current === null) {
    // No invocation has started yet: as on AWS this is an init failure.
    p = client.postInitError(body, true);
  } else if (current && !current.reported) {
    current.reported = true;
    p = current.reportFatal ? current.reportFatal(err) : client.postError(current.id, body, true);
  } else {
    p = Promise.resolve();
  }
  const exit = () => process.exit(exitCode);
  p.then(exit, exit);
  setTimeout(exit, 2000).unref(); // don't hang if the Runtime API never answers
}

process.on('uncaughtException', (err) => fatal('Uncaught Exception', err, 129));
process.on('unhandledRejection', (reason, promise) =>
  fatal('Unhandled Promise Rejection', new UnhandledPromiseRejection(reason, promise), 128),
);

if (env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA !== '1' && env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA !== 'true') {
  globalThis.awslambda = {
    streamifyResponse(fn, options) {
      fn[HANDLER_STREAMING] = 'response';
      if (typeof options?.highWaterMark === 'number') {
        fn[HANDLER_HIGHWATERMARK] = parseInt(options.highWaterMark, 10);
      }
      return fn;
    },
    HttpResponseStream: class HttpResponseStream {
      static from(underlyingStream, prelude) {
        underlyingStream.setContentType('application/vnd.awslambda.http-integration-response');
        const metadata = JSON.stringify(prelude);
        underlyingStream._onBeforeFirstWrite = (write) => {
          write(metadata);
          write(new Uint8Array(8));
        };
        return underlyingStream;
      }
    },
  };
}

// ---------------------------------------------------------------------------
// invocation loop

let nextFailures = 0;

// The first /next tells Lamina how long the handler's own Init took (its cold-start phases).
let firstNextHeaders;

function nextInvocation() {
  if (dying) return;
  const headers = firstNextHeaders;
  firstNextHeaders = undefined;
  client.next(headers).then(onInvocation, (err) => {
    firstNextHeaders = headers;
    onNextError(err);
  });
}

function onNextError(err) {
  nextFailures += 1;
  if (nextFailures > 5) {
    diag(`GET /runtime/invocation/next failed: ${err && err.message}; exiting`);
    process.exit(1);
  }
  setTimeout(nextInvocation, 20 * nextFailures);
}

function onInvocation(res) {
  nextFailures = 0;
  if (res.status === 500 && res.body.includes('is shutting down')) {
    // Lamina ends the environment (function deleted or updated, idle, server stopping): nothing to report in the
    // function's log, where Lambda's frozen environments write nothing either.
    process.exit(0);
  }
  if (res.status !== 200) {
    diag(`GET /runtime/invocation/next returned ${res.status}: ${res.body.toString('utf8')}; exiting`);
    process.exit(1);
  }
  const h = res.headers;
  const id = h['lambda-runtime-aws-request-id'];
  if (!id) {
    diag('invocation without Lambda-Runtime-Aws-Request-Id; exiting');
    process.exit(1);
  }
  setCurrentRequestId(id);
  const tenantId = h['lambda-runtime-aws-tenant-id'];
  setCurrentTenantId(tenantId);
  traceVariable = h['lambda-runtime-trace-id'] || undefined;

  if (streaming) streaming.invokeStreaming(runtimeApi, handler, id, h, res.body);
  else invoke(id, h, res.body);
}

function afterPost(inv, what) {
  return [
    (res) => {
      if (res.status >= 300) {
        diag(`${what} for ${inv.id} returned ${res.status}: ${res.body.toString('utf8')}`);
      }
      nextInvocation();
    },
    (err) => {
      diag(`${what} for ${inv.id} failed: ${err && err.message}`);
      nextInvocation();
    },
  ];
}

function parseJsonHeader(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

export function parseEvent(body) {
  return body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
}

export function buildContextData(id, h) {
  const deadline = Number(h['lambda-runtime-deadline-ms']);
  return {
    functionVersion: FUNCTION_VERSION,
    functionName: FUNCTION_NAME,
    memoryLimitInMB: MEMORY_SIZE,
    logGroupName: LOG_GROUP,
    logStreamName: LOG_STREAM,
    clientContext: parseJsonHeader(h['lambda-runtime-client-context'], 'ClientContext'),
    identity: parseJsonHeader(h['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
    invokedFunctionArn: h['lambda-runtime-invoked-function-arn'],
    awsRequestId: id,
    tenantId: h['lambda-runtime-aws-tenant-id'],
    getRemainingTimeInMillis() {
      return deadline - Date.now();
    },
  };
}

function invoke(id, h, body) {
  const inv = { id, reported: false };
  current = inv;
  let finished = false; // first call of callback/done/succeed/fail wins
  let waitForEmptyEventLoop = true;
  let returnedThenable = false;

  const postError = (err) => {
    if (inv.reported) return;
    inv.reported = true;
    beforeExitHook = null;
    logError('Invoke Error', err);
    client.postError(id, toRapidResponse(err), false, true).then(...afterPost(inv, 'POST error'));
  };

  const complete = (result) => {
    if (inv.reported) {
      console.error(
        'Invocation has already been reported as done. Cannot call complete more than once per invocation.',
      );
      return;
    }
    let json;
    try {
      json = JSON.stringify(result === undefined ? null : result);
    } catch {
      postError(new JSONStringifyError('Unable to stringify response body'));
      return;
    }
    if (json === undefined) json = 'null'; // functions, symbols
    inv.reported = true;
    beforeExitHook = null;
    client.postResponse(id, json, true).then(...afterPost(inv, 'POST response'));
  };

  const callback = (err, result) => {
    if (finished) return;
    finished = true;
    if (err !== undefined && err !== null) {
      postError(err);
    } else if (!waitForEmptyEventLoop) {
      complete(result);
    } else {
      beforeExitHook = () => setImmediate(() => complete(result));
    }
  };
  const done = (err, result) => {
    if (finished) return;
    finished = true;
    if (err !== undefined && err !== null) postError(err);
    else complete(result);
  };
  const succeed = (result) => done(null, result);
  const fail = (err) => done(err === undefined || err === null ? 'handled' : err);

  // Default: nothing reported by the time the event loop drains.
  beforeExitHook = () => {
    if (finished || inv.reported) return;
    finished = true;
    if (returnedThenable) postError(new NodeJsExit());
    else complete(null);
  };

  let result;
  try {
    const event = parseEvent(body);
    const context = Object.assign(
      {
        get callbackWaitsForEmptyEventLoop() {
          return waitForEmptyEventLoop;
        },
        set callbackWaitsForEmptyEventLoop(value) {
          waitForEmptyEventLoop = value;
        },
        succeed,
        fail,
        done,
      },
      buildContextData(id, h),
    );
    result = handler(event, context, callback);
  } catch (err) {
    callback(err);
    return;
  }

  if (result !== null && result !== undefined && typeof result.then === 'function') {
    returnedThenable = true;
    try {
      result.then(succeed, fail);
    } catch (err) {
      fail(err);
    }
  } else if (result !== undefined && handler.length < 3) {
    succeed(result);
  }
}

// Hooks the streaming module needs from the core loop.
const runtimeApi = {
  client,
  logError,
  toRapidResponse,
  buildContextData,
  parseEvent,
  nextInvocation,
  diag,
  setCurrent(inv) {
    current = inv;
  },
  setBeforeExitHook(fn) {
    beforeExitHook = fn;
  },
};

// ---------------------------------------------------------------------------
// init

async function init() {
  const handlerInitStarted = performance.now();
  try {
    handler = await loadHandler(TASK_ROOT, env._HANDLER);
    if (handler[HANDLER_STREAMING] !== undefined && handler[HANDLER_STREAMING] !== false && handler[HANDLER_STREAMING] !== null) {
      if (handler[HANDLER_STREAMING] !== 'response') {
        const e = new Error('Only response streaming is supported.');
        e.name = 'Runtime.MalformedStreamingHandler';
        throw e;
      }
      streaming = await import('./streaming.mjs');
    }
  } catch (err) {
    logError('Uncaught Exception', err);
    if (dying) return; // a fatal error is already being reported; it exits
    dying = true;
    try {
      await client.postInitError(toRapidResponse(err));
    } catch (postErr) {
      diag(`POST /runtime/init/error failed: ${postErr && postErr.message}`);
    }
    process.exit(129);
  }
  firstNextHeaders = { 'Lamina-Handler-Init-Ms': (performance.now() - handlerInitStarted).toFixed(3) };
  nextInvocation();
}

init();
