// Lamina Node.js runtime: console patching, as AWS's Node.js runtime does it.
//
// Text format (default): every console call writes ONE line to stdout:
//   <ISO-8601 time>\t<requestId>\t<LEVEL>\t<util.format(args)>\n
// Newlines inside the message are written as "\r" (exactly what AWS's runtime
// does when logging to stdout), so a multi-line message stays one line for a
// line-oriented log collector.  Outside an invocation the request id prints as
// "undefined", like on AWS.
//
// JSON format (AWS_LAMBDA_LOG_FORMAT=JSON): one JSON object per line with
// timestamp, level, requestId, message (+ errorType/errorMessage/stackTrace).
//
// AWS_LAMBDA_LOG_LEVEL (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) filters console.*.

import util from 'node:util';
import { intoError, toFormatted } from './errors.mjs';

const REQUEST_ID = Symbol.for('aws.lambda.runtime.requestId');
const TENANT_ID = Symbol.for('aws.lambda.runtime.tenantId');

export function setCurrentRequestId(id) {
  globalThis[REQUEST_ID] = id;
}
export function setCurrentTenantId(id) {
  globalThis[TENANT_ID] = id;
}

const LEVELS = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };

const stdout = process.stdout;
const NL = /\n/g;

function writeText(level, args) {
  let msg = util.format(...args);
  if (msg.indexOf('\n') !== -1) msg = msg.replace(NL, '\r');
  stdout.write(`${new Date().toISOString()}\t${globalThis[REQUEST_ID]}\t${level}\t${msg}\n`);
}

function jsonErrorReplacer(_key, value) {
  if (value instanceof Error) {
    return Object.assign(
      {
        errorType: value?.constructor?.name ?? 'UnknownError',
        errorMessage: value.message,
        stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
      },
      value,
    );
  }
  return value;
}

function writeJson(level, args) {
  const record = {
    timestamp: new Date().toISOString(),
    level,
    requestId: globalThis[REQUEST_ID],
  };
  const tenant = globalThis[TENANT_ID];
  if (tenant !== undefined && tenant !== null) record.tenantId = tenant;
  let line;
  if (args.length === 1) {
    record.message = args[0];
    try {
      line = JSON.stringify(record, jsonErrorReplacer);
    } catch {
      record.message = util.format(args[0]);
      line = JSON.stringify(record);
    }
  } else {
    record.message = util.format(...args);
    for (const p of args) {
      if (p instanceof Error) {
        record.errorType = p?.constructor?.name ?? 'UnknownError';
        record.errorMessage = p.message;
        record.stackTrace = typeof p.stack === 'string' ? p.stack.split('\n') : [];
        break;
      }
    }
    line = JSON.stringify(record);
  }
  if (line.indexOf('\n') !== -1) line = line.replace(NL, '\r');
  stdout.write(line + '\n');
}

const isJson = (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
const write = isJson ? writeJson : writeText;
const minLevel = LEVELS[(process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase()] || LEVELS.TRACE;

function levelFn(name) {
  if (LEVELS[name] < minLevel) return function () {};
  return function (...args) {
    write(name, args);
  };
}

const errorLog = levelFn('ERROR');

export function patchConsole() {
  setCurrentRequestId(undefined);
  console.trace = levelFn('TRACE');
  console.debug = levelFn('DEBUG');
  console.info = levelFn('INFO');
  console.log = console.info;
  console.warn = levelFn('WARN');
  console.error = errorLog;
  console.fatal = levelFn('FATAL');
}

/**
 * Log a runtime-detected error the way AWS does:
 *   text:  <time>\t<id>\tERROR\t<title> \t{"errorType":..,"errorMessage":..,"stack":[..]}
 *   JSON:  {"timestamp",..,"level":"ERROR","message":{errorType,errorMessage,stackTrace,..}}
 */
export function logError(title, err) {
  if (isJson) errorLog(intoError(err));
  else errorLog(title, toFormatted(intoError(err)));
}
