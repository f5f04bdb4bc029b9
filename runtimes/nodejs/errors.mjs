// Lamina Node.js runtime: error types and error-body formatting.
//
// Error types and messages follow AWS's Node.js runtime interface client
// (aws-lambda-nodejs-runtime-interface-client, the runtime behind nodejs18.x-22.x).

import util from 'node:util';

function runtimeErrorClass(shortName) {
  const cls = class extends Error {};
  Object.defineProperty(cls, 'name', { value: shortName });
  // AWS sets the name on the prototype, so the stack header reads "Runtime.X: msg".
  cls.prototype.name = `Runtime.${shortName}`;
  return cls;
}

export const HandlerNotFound = runtimeErrorClass('HandlerNotFound');
export const MalformedHandlerName = runtimeErrorClass('MalformedHandlerName');
export const JSONStringifyError = runtimeErrorClass('JSONStringifyError');

export class ImportModuleError extends Error {
  constructor(original) {
    // AWS: message is String(originalError), e.g.
    // "Error: Cannot find module 'index'\nRequire stack:\n- /var/runtime/..."
    super(String(original));
  }
}
ImportModuleError.prototype.name = 'Runtime.ImportModuleError';

export class UserCodeSyntaxError extends Error {
  constructor(original) {
    super(String(original));
    // Keep the original stack: for CommonJS it starts with "file:line\n<code>\n^"
    // which is the only place the location of the syntax error is shown.
    if (original && typeof original.stack === 'string') this.stack = original.stack;
  }
}
UserCodeSyntaxError.prototype.name = 'Runtime.UserCodeSyntaxError';

export class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
UnhandledPromiseRejection.prototype.name = 'Runtime.UnhandledPromiseRejection';

export class NodeJsExit extends Error {
  constructor() {
    super(
      'The Lambda runtime client detected an unexpected Node.js exit code. This is most commonly caused by a Promise that was never settled. For more information, see https://nodejs.org/docs/latest/api/process.html#exit-codes',
    );
  }
}
NodeJsExit.prototype.name = 'Runtime.NodeJsExit';

function isErrorLike(obj) {
  return (
    obj &&
    typeof obj.name === 'string' &&
    typeof obj.message === 'string' &&
    typeof obj.stack === 'string' &&
    obj.name !== '' &&
    obj.stack !== ''
  );
}

/**
 * Body for POST .../error and .../init/error.
 * AWS's Node client sends {errorType, errorMessage, trace}; the Runtime API
 * spec names the array stackTrace, so both are sent (same array).
 * Non-Error values are reported as AWS does: errorType = typeof value,
 * errorMessage = String(value), empty trace.
 */
export function toRapidResponse(error) {
  try {
    if (util.types.isNativeError(error) || isErrorLike(error)) {
      let type = error.name;
      if (typeof type !== 'string' || type === '') {
        type = (error.constructor && error.constructor.name) || 'Error';
      }
      const trace = typeof error.stack === 'string' ? error.stack.split('\n') : [];
      return {
        errorType: type,
        errorMessage: typeof error.message === 'string' ? error.message : String(error.message),
        trace,
        stackTrace: trace,
      };
    }
    return {
      errorType: typeof error,
      errorMessage: String(error),
      trace: [],
      stackTrace: [],
    };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      trace: [],
      stackTrace: [],
    };
  }
}

export function intoError(err) {
  if (err instanceof Error) return err;
  return new Error(String(err));
}

// JSON.stringify replacer used for the "Invoke Error \t{...}" log line: makes
// name/message/code/stack (non-enumerable on Error) visible, stack as lines.
function withEnumerableProperties(_key, value) {
  if (value instanceof Error) {
    const ret = Object.assign(
      { errorType: value.name, errorMessage: value.message, code: value.code },
      value,
    );
    if (typeof value.stack === 'string') ret.stack = value.stack.split('\n');
    return ret;
  }
  return value;
}

/** "\t" + JSON of the error, as in AWS's text-format error log lines. */
export function toFormatted(error) {
  try {
    return '\t' + JSON.stringify(error, withEnumerableProperties);
  } catch {
    return '\t' + JSON.stringify(toRapidResponse(error));
  }
}
