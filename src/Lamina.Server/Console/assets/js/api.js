// Lamina's public APIs as the AWS SDKs call them, signed in the browser. Credentials are entered once and kept in
// sessionStorage (this tab only, gone when it closes); nothing else is stored about them.
import { signRequest, presign, queryString, pathOf, uriEncode } from './sigv4.js';

const KEY = 'lamina.console.credentials';

export function credentials() {
  try { return JSON.parse(sessionStorage.getItem(KEY) || 'null'); } catch { return null; }
}
export function saveCredentials(c) { sessionStorage.setItem(KEY, JSON.stringify(c)); }
export function forgetCredentials() { sessionStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, code, message) { super(message || code || `HTTP ${status}`); this.status = status; this.code = code; }
}

/** Sends a signed request; returns the Response (throws ApiError on a status of 400 or more). */
export async function send(service, method, path, { query = [], headers = {}, body, payloadHash } = {}) {
  const c = credentials();
  if (!c) throw new ApiError(0, 'NoCredentials', 'Sign in first');
  const signed = await signRequest({ method, path, query, headers, body, service, credentials: c, region: c.region, payloadHash });
  const response = await fetch(path + queryString(query), { method, headers: signed, body, cache: 'no-store', credentials: 'omit' });
  if (response.status >= 400) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  const text = await response.text();
  let code = response.headers.get('x-amzn-ErrorType') || '', message = '';
  try {
    const json = JSON.parse(text);
    code = code || json.__type || json.Type || json.code || '';
    message = json.message || json.Message || json.errorMessage || '';
  } catch {
    const xml = new DOMParser().parseFromString(text, 'application/xml');
    code = code || xml.querySelector('Code')?.textContent || '';
    message = xml.querySelector('Message')?.textContent || '';
  }
  code = code.split(':')[0].split('#').pop();
  return new ApiError(response.status, code, message || `${code || 'Error'} (HTTP ${response.status})`);
}

async function json(response) {
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

/** The Lambda REST API (and API Gateway's, which has the same shape): JSON in, JSON out. */
export async function rest(service, method, path, { query = [], body } = {}) {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const headers = text === undefined ? {} : { 'Content-Type': 'application/json' };
  return json(await send(service, method, path, { query, headers, body: text }));
}

export const lambda = (method, path, options) => rest('lambda', method, path, options);

/** awsJson protocols: CloudWatch Logs, EventBridge, DynamoDB, SQS. */
const targets = {
  logs: ['Logs_20140328', '1.1'], events: ['AWSEvents', '1.1'], dynamodb: ['DynamoDB_20120810', '1.0'], sqs: ['AmazonSQS', '1.0'],
};
export async function target(service, operation, payload = {}) {
  const [prefix, version] = targets[service];
  const headers = { 'Content-Type': `application/x-amz-json-${version}`, 'X-Amz-Target': `${prefix}.${operation}` };
  return json(await send(service, 'POST', '/', { headers, body: JSON.stringify(payload) }));
}

/** The Query protocol (SNS, CloudFormation): form in, XML out (a Document). */
async function query(service, version, action, params) {
  const form = new URLSearchParams({ Action: action, Version: version, ...params }).toString();
  const response = await send(service, 'POST', '/', { headers: { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8' }, body: form });
  return new DOMParser().parseFromString(await response.text(), 'application/xml');
}
export const sns = (action, params = {}) => query('sns', '2010-03-31', action, params);
export const cloudformation = (action, params = {}) => query('cloudformation', '2010-05-15', action, params);

/** S3's REST-XML API; `path` from pathOf(bucket, ...key). */
export async function s3(method, path, { query = [], headers = {}, body } = {}) {
  const payloadHash = body instanceof Blob ? 'UNSIGNED-PAYLOAD' : undefined;
  return send('s3', method, path, { query, headers, body, payloadHash });
}
export async function s3Xml(method, path, options) {
  const response = await s3(method, path, options);
  return new DOMParser().parseFromString(await response.text(), 'application/xml');
}
export async function s3Presigned(bucket, key) {
  const c = credentials();
  return presign({ path: pathOf(bucket, ...key.split('/')), service: 's3', credentials: c, region: c.region });
}

/** Lamina's operator API (/lamina/v1/…), signed for the service "lamina" like the `lamina events` command. */
export const lamina = (method, path, query = []) => rest('lamina', method, path, { query });

export { pathOf, uriEncode };

/** The children named `name` of an XML element, as text. */
export function xmlText(node, name) { return node.getElementsByTagName(name)[0]?.textContent ?? ''; }

/** The `member` elements of the list `name` directly under `node` (not those of lists nested in its members). */
export function xmlMembers(node, name) {
  const list = [...node.children].find(c => c.localName === name);
  return list ? [...list.children].filter(c => c.localName === 'member') : [];
}

/** The text of the element `name` directly under `node`. */
export function xmlChild(node, name) { return [...node.children].find(c => c.localName === name)?.textContent ?? ''; }
