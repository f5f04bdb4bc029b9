// Lamina Node.js runtime: resolve and load the handler named by _HANDLER,
// following the algorithm of AWS's Node.js runtime (nodejs18.x-22.x):
//
//   handler  = "<moduleRoot/><module>.<export path>"   e.g. "src/app.obj.handler"
//   1. "<root>/<moduleRoot>/<module>" exists as is         -> require()
//   2. nearest package.json is not "type":"module" and .js -> require()
//   3. nearest package.json is "type":"module" and .js     -> import()
//   4. .mjs -> import();  5. .cjs -> require()
//   6. otherwise require.resolve(module, {paths: [root, moduleRoot]}) -> require()
//      (this is what yields AWS's "Cannot find module 'x'\nRequire stack:" message)
//
// Errors: Runtime.MalformedHandlerName, Runtime.ImportModuleError
// (MODULE_NOT_FOUND only), Runtime.UserCodeSyntaxError (SyntaxError),
// Runtime.HandlerNotFound. Any other error thrown while the module is
// evaluated is passed through unchanged (AWS does the same; e.g. an ES module
// importing a missing package fails with errorType "Error",
// "Cannot find package 'x' imported from /var/task/index.mjs").

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL, fileURLToPath } from 'node:url';
import {
  HandlerNotFound,
  MalformedHandlerName,
  ImportModuleError,
  UserCodeSyntaxError,
} from './errors.mjs';

const runtimeRequire = createRequire(fileURLToPath(new URL('./index.mjs', import.meta.url)));
const FUNCTION_EXPR = /^([^.]*)\.(.*)$/;

function hasPackageJsonTypeModule(folder) {
  // Walk up to the nearest package.json; stop at node_modules or the root.
  for (;;) {
    if (folder.endsWith('/node_modules')) return false;
    const pj = path.join(folder, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        const pkg = JSON.parse(fs.readFileSync(pj, 'utf8'));
        if (pkg) return pkg.type === 'module';
      } catch (e) {
        console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`, e);
        return false;
      }
    }
    if (folder === '/' || folder === path.dirname(folder)) return false;
    folder = path.dirname(folder);
  }
}

function tryRequire(file) {
  return fs.existsSync(file) ? runtimeRequire(file) : undefined;
}

async function tryImport(file) {
  return fs.existsSync(file) ? await import(pathToFileURL(file).href) : undefined;
}

async function loadModule(appRoot, moduleRoot, moduleName) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);

  const extensionless = tryRequire(base);
  if (extensionless) return extensionless;

  const isEsm = hasPackageJsonTypeModule(path.dirname(base));
  if (!isEsm) {
    const cjs = tryRequire(base + '.js');
    if (cjs) return cjs;
  }

  const loaded =
    (isEsm && (await tryImport(base + '.js'))) ||
    (await tryImport(base + '.mjs')) ||
    tryRequire(base + '.cjs');
  if (loaded) return loaded;

  const resolved = runtimeRequire.resolve(moduleName, {
    paths: [appRoot, path.resolve(appRoot, moduleRoot)],
  });
  return runtimeRequire(resolved);
}

export async function loadHandler(appRoot, fullHandlerString) {
  if (typeof fullHandlerString !== 'string' || fullHandlerString === '') {
    throw new MalformedHandlerName('Bad handler');
  }
  if (fullHandlerString.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandlerString}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }

  const handlerString = path.basename(fullHandlerString);
  const moduleRoot = fullHandlerString.substring(0, fullHandlerString.indexOf(handlerString));
  const match = handlerString.match(FUNCTION_EXPR);
  if (!match) throw new MalformedHandlerName('Bad handler');
  const [, moduleName, handlerPath] = match;

  let userApp;
  try {
    userApp = await loadModule(appRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(e);
    if (e && e.code === 'MODULE_NOT_FOUND') throw new ImportModuleError(e);
    throw e;
  }

  const handlerFunc = handlerPath.split('.').reduce((obj, key) => obj && obj[key], userApp);
  if (!handlerFunc) {
    throw new HandlerNotFound(`${fullHandlerString} is undefined or not exported`);
  }
  if (typeof handlerFunc !== 'function') {
    throw new HandlerNotFound(`${fullHandlerString} is not a function`);
  }
  return handlerFunc;
}
