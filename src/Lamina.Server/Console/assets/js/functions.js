// Functions: the list, creation, and one function's pages (configuration, test, monitoring, logs, versions and
// aliases, concurrency, triggers, policy, async events).
import { lambda, lamina, target, rest, s3Xml, pathOf, xmlText } from './api.js';
import { h, fill, mount, table, props, toast, errorBox, act, tabs, fmt, base64, fromBase64Text, zip, chart } from './ui.js';
import { current } from './app.js';
import { asyncEventsTable } from './async.js';

const F = name => `/2015-03-31/functions/${encodeURIComponent(name)}`;
const enc = encodeURIComponent;

export async function route(parts, params, token) {
  if (parts.length === 0) return list(token);
  if (parts[0] === 'new' && parts.length === 1) return create();
  return page(parts[0], parts[1] || 'overview', params, token);
}

async function listAll(path, key, query = []) {
  const items = [];
  let marker;
  do {
    const page = await lambda('GET', path, { query: marker ? [...query, ['Marker', marker]] : query });
    items.push(...(page[key] || []));
    marker = page.NextMarker;
  } while (marker);
  return items;
}

async function list(token) {
  const [functions, totals] = await Promise.all([
    listAll('/2015-03-31/functions/', 'Functions'),
    lamina('GET', '/lamina/v1/metrics/functions', [['minutes', '60']]),
  ]);
  if (!current(token)) return;
  const byName = Object.fromEntries((totals.Functions || []).map(t => [t.FunctionName, t]));
  functions.sort((a, b) => a.FunctionName.localeCompare(b.FunctionName));
  mount(
    h('h1', {}, 'Functions'),
    h('div', { class: 'actions' }, h('a', { class: 'button primary', href: '#/functions/new', id: 'create-function' }, 'Create function')),
    table([
      { title: 'Name', cell: f => h('a', { href: `#/functions/${enc(f.FunctionName)}` }, f.FunctionName) },
      { title: 'Runtime', cell: f => f.Runtime || f.PackageType },
      { title: 'Memory', num: true, cell: f => `${f.MemorySize} MB` },
      { title: 'Last modified', cell: f => fmt.time(f.LastModified) },
      { title: 'Invocations (1 h)', num: true, cell: f => byName[f.FunctionName]?.Invocations ?? 0 },
      { title: 'Errors (1 h)', num: true, cell: f => { const n = byName[f.FunctionName]?.Errors ?? 0; return n ? h('span', { class: 'error' }, n) : 0; } },
    ], functions, h('span', {}, 'No functions yet. ', h('a', { href: '#/functions/new' }, 'Create one'),
      ', or deploy with ', h('code', {}, 'aws lambda create-function --endpoint-url ' + location.origin), '.'), { id: 'functions' }));
}

const templates = {
  python: ['lambda_function.py', 'lambda_function.lambda_handler',
    'import json\n\n\ndef lambda_handler(event, context):\n    print("event:", json.dumps(event))\n    return {"statusCode": 200, "body": json.dumps({"hello": event.get("name", "world")})}\n'],
  nodejs: ['index.mjs', 'index.handler',
    'export const handler = async (event, context) => {\n  console.log("event:", JSON.stringify(event));\n  return { statusCode: 200, body: JSON.stringify({ hello: event.name ?? "world" }) };\n};\n'],
};

function create() {
  const name = h('input', { id: 'function-name', required: true, pattern: '[A-Za-z0-9_\\-]{1,64}', size: 40 });
  const runtime = h('select', { id: 'runtime' }, ['python3.12', 'python3.13', 'python3.11', 'nodejs22.x', 'nodejs20.x', 'nodejs18.x'].map(r => h('option', { value: r }, r)));
  const handler = h('input', { id: 'handler', required: true });
  const memory = h('input', { id: 'memory', type: 'number', min: 128, max: 10240, value: 128 });
  const timeout = h('input', { id: 'timeout', type: 'number', min: 1, max: 900, value: 3 });
  const role = h('input', { id: 'role', required: true, value: 'arn:aws:iam::000000000000:role/lambda-role', size: 50 });
  const file = h('span', { class: 'muted' });
  const code = h('textarea', { id: 'code', class: 'code', spellcheck: 'false', 'aria-label': 'Function code' });
  const upload = h('input', { id: 'zip-file', type: 'file', accept: '.zip,application/zip' });
  const status = h('div', { role: 'status' });
  const family = () => (runtime.value.startsWith('python') ? 'python' : 'nodejs');
  let last = null;
  const applyTemplate = () => {
    const [f, hd, src] = templates[family()];
    if (last === null || code.value === templates[last][2]) code.value = src;
    if (last === null || handler.value === templates[last][1]) handler.value = hd;
    file.textContent = f;
    last = family();
  };
  runtime.addEventListener('change', applyTemplate);
  const submit = h('button', { class: 'primary', type: 'submit', id: 'create' }, 'Create function');
  const form = h('form', { class: 'grid', onsubmit: async e => {
    e.preventDefault();
    await act(submit, async () => {
      const bytes = upload.files[0] ? new Uint8Array(await upload.files[0].arrayBuffer()) : zip({ [templates[family()][0]]: code.value });
      const body = {
        FunctionName: name.value.trim(), Runtime: runtime.value, Handler: handler.value.trim(), Role: role.value.trim(),
        MemorySize: Number(memory.value), Timeout: Number(timeout.value), Code: { ZipFile: base64(bytes) },
      };
      const created = await lambda('POST', '/2015-03-31/functions', { body });
      location.hash = `#/functions/${enc(created.FunctionName)}/test`;
      return created;
    }, c => `Created ${c.FunctionName}`);
  } },
  h('label', { for: 'function-name' }, 'Name'), name,
  h('label', { for: 'runtime' }, 'Runtime'), runtime,
  h('label', { for: 'handler' }, 'Handler'), handler,
  h('label', { for: 'memory' }, 'Memory (MB)'), memory,
  h('label', { for: 'timeout' }, 'Timeout (s)'), timeout,
  h('label', { for: 'role' }, 'Execution role'), role,
  h('label', { for: 'code' }, 'Code'), h('div', {}, h('div', { class: 'muted' }, 'File ', file, ' (zipped in this page)'), code),
  h('label', { for: 'zip-file' }, 'Or a .zip'), upload,
  h('div', { class: 'full actions' }, submit, h('a', { href: '#/functions' }, 'Cancel')));
  applyTemplate();
  mount(h('p', { class: 'crumbs' }, h('a', { href: '#/functions' }, 'Functions'), ' / new'), h('h1', {}, 'Create function'), form, status);
  name.focus();
}

const TABS = [['overview', 'Configuration'], ['test', 'Test'], ['monitor', 'Monitor'], ['logs', 'Logs'], ['versions', 'Versions and aliases'],
  ['concurrency', 'Concurrency'], ['triggers', 'Triggers'], ['permissions', 'Permissions'], ['async', 'Async events']];

async function page(name, tab, params, token) {
  const fn = await lambda('GET', F(name));
  if (!current(token)) return;
  const config = fn.Configuration;
  const views = { overview, test, monitor, logs, versions, concurrency, triggers, permissions, async: asyncTab };
  const view = views[tab] || overview;
  const body = h('section', { id: 'tab-body' }, h('p', { class: 'muted' }, 'Loading…'));
  mount(
    h('p', { class: 'crumbs' }, h('a', { href: '#/functions' }, 'Functions'), ' / ', name),
    h('h1', {}, name),
    tabs(`#/functions/${enc(name)}`, tab in views ? tab : 'overview', TABS),
    body);
  const content = await view(fn, config, params, token);
  if (current(token)) fill(body, content);
}

function overview(fn, c) {
  const env = Object.entries(c.Environment?.Variables || {});
  const rows = h('tbody');
  const addRow = (k = '', v = '') => {
    const key = h('input', { value: k, 'aria-label': 'Variable name', class: 'env-key' });
    const value = h('input', { value: v, 'aria-label': 'Variable value', class: 'env-value', size: 40 });
    const tr = h('tr', {}, h('td', {}, key), h('td', {}, value), h('td', {}, h('button', { type: 'button', onclick: () => tr.remove() }, 'Remove')));
    rows.append(tr);
  };
  env.forEach(([k, v]) => addRow(k, v));
  const save = h('button', { class: 'primary', type: 'submit', id: 'save-env' }, 'Save variables');
  const envForm = h('form', { onsubmit: e => {
    e.preventDefault();
    const variables = {};
    rows.querySelectorAll('tr').forEach(tr => { const k = tr.querySelector('.env-key').value.trim(); if (k) variables[k] = tr.querySelector('.env-value').value; });
    act(save, () => lambda('PUT', `${F(c.FunctionName)}/configuration`, { body: { Environment: { Variables: variables } } }), 'Environment saved');
  } },
  h('table', { id: 'environment' }, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Value'), h('th', {}))), rows),
  h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => addRow() }, 'Add variable'), save));
  const del = h('button', { class: 'danger', type: 'button', onclick: () => {
    if (!confirm(`Delete function ${c.FunctionName} and all its versions?`)) return;
    act(del, async () => { await lambda('DELETE', F(c.FunctionName)); location.hash = '#/functions'; }, 'Deleted');
  } }, 'Delete function');
  return [
    props([
      ['ARN', c.FunctionArn], ['Runtime', c.Runtime], ['Handler', c.Handler], ['Memory', `${c.MemorySize} MB`], ['Timeout', `${c.Timeout} s`],
      ['Ephemeral storage', c.EphemeralStorage ? `${c.EphemeralStorage.Size} MB` : null], ['Architectures', (c.Architectures || []).join(', ')],
      ['Role', c.Role], ['State', c.State], ['Last modified', fmt.time(c.LastModified)], ['Code', `${fmt.bytes(c.CodeSize)}, SHA-256 ${c.CodeSha256}`],
      ['Dead-letter queue', c.DeadLetterConfig?.TargetArn], ['Revision', c.RevisionId],
    ]),
    h('div', { class: 'actions' }, fn.Code?.Location ? h('a', { class: 'button', href: fn.Code.Location, download: `${c.FunctionName}.zip`, id: 'download-code' }, 'Download code (.zip)') : null, del),
    h('h2', {}, 'Environment variables'), envForm,
    h('h2', {}, 'Layers'),
    table([{ title: 'Layer version ARN', cell: l => l.Arn }, { title: 'Size', num: true, cell: l => fmt.bytes(l.CodeSize) }],
      c.Layers || [], 'No layers. Add them with aws lambda update-function-configuration --layers.'),
    fn.Tags && Object.keys(fn.Tags).length ? [h('h2', {}, 'Tags'), props(Object.entries(fn.Tags))] : [],
  ];
}

// Saved test events live in this browser (localStorage), per function, as the Lambda console's private test events do.
const eventsKey = name => `lamina.console.test-events.${name}`;
const savedEvents = name => { try { return JSON.parse(localStorage.getItem(eventsKey(name)) || '{}'); } catch { return {}; } };

export function parseReport(log) {
  const line = (log.match(/^REPORT .*$/m) || [''])[0];
  const pick = re => (line.match(re) || [])[1];
  return {
    duration: pick(/\bDuration: ([\d.]+) ms/), billed: pick(/Billed Duration: (\d+) ms/), memorySize: pick(/Memory Size: (\d+) MB/),
    memoryUsed: pick(/Max Memory Used: (\d+) MB/), init: pick(/Init Duration: ([\d.]+) ms/),
  };
}

function test(fn, c) {
  const name = c.FunctionName;
  const select = h('select', { id: 'saved-events', 'aria-label': 'Saved test events' });
  const eventName = h('input', { id: 'event-name', value: 'test', 'aria-label': 'Event name', size: 20 });
  const editor = h('textarea', { id: 'event-json', class: 'code', spellcheck: 'false', 'aria-label': 'Test event (JSON)' }, '{\n  "name": "Lamina"\n}');
  const qualifier = h('input', { id: 'qualifier', placeholder: '$LATEST', size: 12, 'aria-label': 'Qualifier' });
  const result = h('div', { id: 'invoke-result', 'aria-live': 'polite' });
  const fill = () => {
    const events = savedEvents(name);
    select.replaceChildren(h('option', { value: '' }, Object.keys(events).length ? 'Saved events…' : 'No saved events'),
      ...Object.keys(events).sort().map(k => h('option', { value: k }, k)));
  };
  select.addEventListener('change', () => {
    const events = savedEvents(name);
    if (select.value in events) { eventName.value = select.value; editor.value = events[select.value]; }
  });
  const parsed = () => { try { JSON.parse(editor.value); return true; } catch (e) { toast(`The event is not JSON: ${e.message}`, true); return false; } };
  const save = h('button', { type: 'button', id: 'save-event', onclick: () => {
    if (!parsed()) return;
    const events = savedEvents(name); events[eventName.value.trim() || 'test'] = editor.value;
    localStorage.setItem(eventsKey(name), JSON.stringify(events)); fill(); select.value = eventName.value.trim() || 'test';
    toast('Test event saved');
  } }, 'Save event');
  const invoke = h('button', { class: 'primary', type: 'button', id: 'invoke', onclick: () => parsed() && act(invoke, async () => {
    const query = qualifier.value.trim() ? [['Qualifier', qualifier.value.trim()]] : [];
    const { send } = await import('./api.js');
    const started = performance.now();
    const response = await send('lambda', 'POST', `${F(name)}/invocations`, {
      query, headers: { 'X-Amz-Invocation-Type': 'RequestResponse', 'X-Amz-Log-Type': 'Tail', 'Content-Type': 'application/json' }, body: editor.value });
    const text = await response.text();
    const error = response.headers.get('X-Amz-Function-Error');
    const log = response.headers.get('X-Amz-Log-Result') ? fromBase64Text(response.headers.get('X-Amz-Log-Result')) : '';
    const r = parseReport(log);
    let pretty = text; try { pretty = fmt.json(JSON.parse(text)); } catch { /* not JSON: shown as is */ }
    result.replaceChildren(h('div', { class: `result${error ? ' failed' : ''}` },
      h('h2', {}, error ? `Failed (${error})` : 'Succeeded'),
      props([['Status', response.status], ['Executed version', response.headers.get('X-Amz-Executed-Version')],
        ['Duration', r.duration ? `${r.duration} ms` : null], ['Billed duration', r.billed ? `${r.billed} ms` : null],
        ['Memory', r.memoryUsed ? `${r.memoryUsed} MB used of ${r.memorySize} MB` : null], r.init ? ['Init duration', `${r.init} ms`] : null,
        ['Round trip', `${Math.round(performance.now() - started)} ms`]]),
      h('h3', {}, 'Response'), h('pre', { id: 'invoke-response' }, pretty),
      h('h3', {}, 'Log tail'), h('pre', { id: 'invoke-log', class: 'log' }, log || '(none)')));
  }) }, 'Invoke');
  const invokeAsync = h('button', { type: 'button', id: 'invoke-async', onclick: () => parsed() && act(invokeAsync, async () => {
    const { send } = await import('./api.js');
    const query = qualifier.value.trim() ? [['Qualifier', qualifier.value.trim()]] : [];
    const response = await send('lambda', 'POST', `${F(name)}/invocations`, { query, headers: { 'X-Amz-Invocation-Type': 'Event', 'Content-Type': 'application/json' }, body: editor.value });
    result.replaceChildren(h('div', { class: 'result' }, h('h2', {}, 'Queued'),
      props([['Status', response.status], ['Request id', response.headers.get('x-amzn-RequestId')]]),
      h('p', {}, 'Follow it in the ', h('a', { href: `#/functions/${enc(name)}/logs` }, 'logs'), ' and the ', h('a', { href: `#/functions/${enc(name)}/async` }, 'async events'), '.')));
  }) }, 'Invoke async');
  fill();
  return [
    h('div', { class: 'actions' }, select, h('label', { for: 'event-name' }, 'Name'), eventName, save),
    editor,
    h('div', { class: 'actions' }, invoke, invokeAsync, h('label', { for: 'qualifier' }, 'Qualifier'), qualifier),
    result,
  ];
}

async function monitor(fn, c, params, token) {
  const minutes = params.get('minutes') || '60';
  const holder = h('div', { class: 'charts', id: 'charts' });
  const stamp = h('p', { class: 'muted', id: 'charts-updated' });
  const draw = async () => {
    const s = await lamina('GET', `/lamina/v1/metrics/functions/${enc(c.FunctionName)}`, [['minutes', minutes]]);
    const x = s.Samples;
    holder.replaceChildren(
      chart('Invocations', x, [{ name: 'Invocations', color: '#0b63c5', value: p => p.Invocations }, { name: 'Errors', color: '#b42318', value: p => p.Errors }]),
      chart('Duration', x, [{ name: 'p50', color: '#137333', value: p => p.DurationP50 }, { name: 'p99', color: '#a15c00', value: p => p.DurationP99 }], ' ms'),
      chart('Throttles', x, [{ name: 'Throttles', color: '#b42318', value: p => p.Throttles }]),
      chart('Cold starts', x, [{ name: 'Cold starts', color: '#6941c6', value: p => p.ColdStarts }]),
      chart('Concurrent executions', x, [{ name: 'Max in minute', color: '#0b63c5', value: p => p.ConcurrencyMax }]));
    stamp.textContent = `One point per minute over the last ${minutes} minutes; ${s.ConcurrentExecutions} running now. Updated ${new Date().toLocaleTimeString()}.`;
  };
  await draw();
  // Refreshed while the tab is shown; the router's leave event stops it.
  const timer = setInterval(() => { if (current(token)) draw().catch(() => {}); }, 10000);
  window.addEventListener('lamina:leave', () => clearInterval(timer), { once: true });
  const base = `#/functions/${enc(c.FunctionName)}/monitor`;
  return [
    h('div', { class: 'actions' }, 'Range:', h('a', { href: `${base}?minutes=60`, 'aria-current': minutes === '60' ? 'page' : null }, '1 hour'),
      h('a', { href: `${base}?minutes=180`, 'aria-current': minutes === '180' ? 'page' : null }, '3 hours'),
      h('button', { type: 'button', id: 'refresh-charts', onclick: e => act(e.target, draw) }, 'Refresh')),
    stamp, holder,
    h('p', { class: 'muted' }, 'From the server\'s memory (GET /lamina/v1/metrics/functions/NAME): a restart starts them afresh. Prometheus text at ', h('code', {}, '/metrics'), '.'),
  ];
}

async function logs(fn, c, params, token) {
  const group = `/aws/lambda/${c.FunctionName}`;
  const filter = h('input', { id: 'log-filter', size: 40, placeholder: 'Filter pattern, e.g. ERROR or "hello"', value: params.get('filter') || '', 'aria-label': 'Filter pattern' });
  const live = h('input', { id: 'log-live', type: 'checkbox', checked: true });
  const rows = h('tbody');
  const state = h('p', { class: 'muted', id: 'log-state' });
  const seen = new Set();
  let since = Date.now() - 3600_000;
  const view = h('table', { id: 'log-events', class: 'log' }, h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Stream'), h('th', {}, 'Message'))), rows);
  const poll = async () => {
    // FilterLogEvents answers 400 for a group that does not exist yet: ask for it first (the page stays error-free).
    const groups = await target('logs', 'DescribeLogGroups', { logGroupNamePrefix: group });
    if (!(groups.logGroups || []).some(g => g.logGroupName === group)) { state.textContent = 'No logs yet: the log group appears with the first invocation.'; return; }
    let nextToken;
    do {
      const request = { logGroupName: group, startTime: since, limit: 500, interleaved: true };
      if (filter.value.trim()) request.filterPattern = filter.value.trim();
      if (nextToken) request.nextToken = nextToken;
      const page = await target('logs', 'FilterLogEvents', request);
      for (const e of page.events || []) {
        if (seen.has(e.eventId)) continue;
        seen.add(e.eventId);
        rows.append(h('tr', {}, h('td', {}, new Date(e.timestamp).toLocaleTimeString()), h('td', {}, e.logStreamName.slice(-12)), h('td', {}, h('pre', {}, e.message.trimEnd()))));
        since = Math.max(since, e.timestamp);
      }
      nextToken = page.nextToken;
    } while (nextToken);
    state.textContent = seen.size ? `${seen.size} events in ${group}${live.checked ? ', following' : ''}.` : `No events in ${group} match.`;
  };
  const restart = () => { rows.replaceChildren(); seen.clear(); since = Date.now() - 3600_000; poll().catch(e => state.replaceChildren(errorBox(e))); };
  filter.addEventListener('keydown', e => { if (e.key === 'Enter') { e.preventDefault(); restart(); } });
  await poll();
  const timer = setInterval(() => { if (live.checked && current(token)) poll().catch(() => {}); }, 2000);
  window.addEventListener('lamina:leave', () => clearInterval(timer), { once: true });
  return [
    h('div', { class: 'actions' }, filter, h('button', { type: 'button', id: 'apply-filter', onclick: restart }, 'Filter'),
      h('label', {}, live, ' Live (every 2 s)')),
    h('p', { class: 'muted' }, 'Log group ', h('code', {}, group), ', the last hour. The pattern uses CloudWatch Logs\' filter syntax.'),
    state, view,
  ];
}

async function versions(fn, c, params, token) {
  const name = c.FunctionName;
  const [vs, aliases] = await Promise.all([listAll(`${F(name)}/versions`, 'Versions'), listAll(`${F(name)}/aliases`, 'Aliases')]);
  const description = h('input', { id: 'version-description', placeholder: 'Description', 'aria-label': 'Version description' });
  const publish = h('button', { type: 'button', id: 'publish-version', onclick: () => act(publish, async () => {
    const v = await lambda('POST', `${F(name)}/versions`, { body: { Description: description.value } });
    location.reload(); return v;
  }, v => `Published version ${v.Version}`) }, 'Publish version');
  const numbered = vs.filter(v => v.Version !== '$LATEST').map(v => v.Version);
  const aliasName = h('input', { id: 'alias-name', placeholder: 'Alias name', 'aria-label': 'Alias name' });
  const aliasVersion = h('select', { id: 'alias-version', 'aria-label': 'Alias version' }, ['$LATEST', ...numbered].map(v => h('option', { value: v }, v)));
  const createAlias = h('button', { type: 'button', id: 'create-alias', onclick: () => act(createAlias, async () => {
    await lambda('POST', `${F(name)}/aliases`, { body: { Name: aliasName.value.trim(), FunctionVersion: aliasVersion.value } });
    location.reload();
  }, 'Alias created') }, 'Create alias');
  const aliasRow = a => {
    const [[extra, weight] = ['', 0]] = Object.entries(a.RoutingConfig?.AdditionalVersionWeights || {});
    const primary = h('select', { 'aria-label': `${a.Name} version` }, ['$LATEST', ...numbered].map(v => h('option', { value: v, selected: v === a.FunctionVersion }, v)));
    const second = h('select', { 'aria-label': `${a.Name} second version` }, [h('option', { value: '' }, '(none)'), ...numbered.map(v => h('option', { value: v, selected: v === extra }, v))]);
    const pct = h('input', { type: 'number', min: 0, max: 100, step: 1, value: Math.round(weight * 100), 'aria-label': `${a.Name} weight of the second version (%)`, class: 'weight' });
    const save = h('button', { type: 'button', onclick: () => act(save, () => lambda('PUT', `${F(name)}/aliases/${enc(a.Name)}`, { body: {
      FunctionVersion: primary.value,
      RoutingConfig: { AdditionalVersionWeights: second.value && Number(pct.value) > 0 ? { [second.value]: Number(pct.value) / 100 } : {} },
    } }), `Alias ${a.Name} saved`) }, 'Save');
    return h('tr', { 'data-alias': a.Name }, h('td', {}, a.Name), h('td', {}, primary), h('td', {}, second, ' ', pct, ' %'), h('td', {}, save));
  };
  return [
    h('h2', {}, 'Versions'),
    table([{ title: 'Version', cell: v => v.Version }, { title: 'Description', cell: v => v.Description || '' },
      { title: 'Last modified', cell: v => fmt.time(v.LastModified) }, { title: 'Code SHA-256', cell: v => h('code', {}, v.CodeSha256) }], vs, 'No versions.', { id: 'versions' }),
    h('div', { class: 'actions' }, description, publish),
    h('h2', {}, 'Aliases'),
    aliases.length
      ? h('table', { id: 'aliases' }, h('thead', {}, h('tr', {}, ['Alias', 'Version', 'Weighted second version', ''].map(t => h('th', {}, t)))), h('tbody', {}, aliases.map(aliasRow)))
      : h('div', { class: 'empty' }, 'No aliases. Publish a version, then point an alias at it; an alias can split traffic between two versions by weight.'),
    h('div', { class: 'actions' }, aliasName, aliasVersion, createAlias),
  ];
}

async function concurrency(fn, c) {
  const name = c.FunctionName;
  const [reserved, provisioned, series] = await Promise.all([
    lambda('GET', `/2019-09-30/functions/${enc(name)}/concurrency`),
    lambda('GET', `/2019-09-30/functions/${enc(name)}/provisioned-concurrency`, { query: [['List', 'ALL']] }),
    lamina('GET', `/lamina/v1/metrics/functions/${enc(name)}`, [['minutes', '1']]),
  ]);
  const value = h('input', { id: 'reserved', type: 'number', min: 0, value: reserved.ReservedConcurrentExecutions ?? '', 'aria-label': 'Reserved concurrency' });
  const save = h('button', { type: 'button', id: 'save-reserved', onclick: () => act(save, async () => {
    if (value.value === '') await lambda('DELETE', `/2017-10-31/functions/${enc(name)}/concurrency`);
    else await lambda('PUT', `/2017-10-31/functions/${enc(name)}/concurrency`, { body: { ReservedConcurrentExecutions: Number(value.value) } });
  }, 'Reserved concurrency saved') }, 'Save');
  const qualifier = h('input', { id: 'pc-qualifier', placeholder: 'Alias or version', 'aria-label': 'Provisioned qualifier' });
  const amount = h('input', { id: 'pc-amount', type: 'number', min: 1, 'aria-label': 'Provisioned concurrency' });
  const put = h('button', { type: 'button', id: 'save-provisioned', onclick: () => act(put, async () => {
    await lambda('PUT', `/2019-09-30/functions/${enc(name)}/provisioned-concurrency`, { query: [['Qualifier', qualifier.value.trim()]], body: { ProvisionedConcurrentExecutions: Number(amount.value) } });
    location.reload();
  }, 'Provisioned concurrency requested') }, 'Set provisioned');
  return [
    props([['Running now', String(series.ConcurrentExecutions)], ['Reserved', reserved.ReservedConcurrentExecutions ?? 'none (the account\'s unreserved pool)']]),
    h('h2', {}, 'Reserved concurrency'),
    h('div', { class: 'actions' }, value, save, h('span', { class: 'muted' }, 'Empty removes the reservation; 0 stops all invocations.')),
    h('h2', {}, 'Provisioned concurrency'),
    table([{ title: 'Qualifier', cell: p => p.FunctionArn.split(':').pop() }, { title: 'Requested', num: true, cell: p => p.RequestedProvisionedConcurrentExecutions },
      { title: 'Available', num: true, cell: p => p.AvailableProvisionedConcurrentExecutions }, { title: 'Status', cell: p => p.Status }],
    provisioned.ProvisionedConcurrencyConfigs || [], 'No provisioned concurrency: every environment starts on demand.'),
    h('div', { class: 'actions' }, qualifier, amount, put),
  ];
}

async function triggers(fn, c) {
  const arn = c.FunctionArn;
  const matches = a => typeof a === 'string' && (a === arn || a.startsWith(arn + ':'));
  const section = async (title, load) => {
    try { return [h('h2', {}, title), await load()]; } catch (e) { return [h('h2', {}, title), errorBox(e)]; }
  };
  const parts = await Promise.all([
    section('Function URLs', async () => {
      const urls = await lambda('GET', `/2021-10-31/functions/${enc(c.FunctionName)}/urls`);
      return table([{ title: 'URL', cell: u => h('a', { href: u.FunctionUrl }, u.FunctionUrl) }, { title: 'Auth', cell: u => u.AuthType }, { title: 'Qualifier', cell: u => u.FunctionArn.split(':').length > 7 ? u.FunctionArn.split(':').pop() : '$LATEST' }],
        urls.FunctionUrlConfigs || [], 'No function URL.');
    }),
    section('Event source mappings', async () => {
      const m = await lambda('GET', '/2015-03-31/event-source-mappings/', { query: [['FunctionName', c.FunctionName]] });
      return table([{ title: 'Source', cell: x => x.EventSourceArn }, { title: 'State', cell: x => x.State }, { title: 'Batch size', num: true, cell: x => x.BatchSize }, { title: 'UUID', cell: x => x.UUID }],
        m.EventSourceMappings || [], 'No event source mappings (SQS queues, DynamoDB streams).');
    }),
    section('EventBridge rules', async () => {
      const rules = (await target('events', 'ListRules', {})).Rules || [];
      const hits = [];
      for (const r of rules) {
        const t = (await target('events', 'ListTargetsByRule', { Rule: r.Name, EventBusName: r.EventBusName })).Targets || [];
        if (t.some(x => matches(x.Arn))) hits.push(r);
      }
      return table([{ title: 'Rule', cell: r => r.Name }, { title: 'Bus', cell: r => r.EventBusName }, { title: 'Schedule or pattern', cell: r => r.ScheduleExpression || r.EventPattern }, { title: 'State', cell: r => r.State }],
        hits, 'No rules target this function.');
    }),
    section('S3 notifications', async () => {
      const buckets = [...(await s3Xml('GET', '/')).getElementsByTagName('Bucket')].map(b => xmlText(b, 'Name'));
      const hits = [];
      for (const b of buckets) {
        const doc = await s3Xml('GET', pathOf(b), { query: [['notification', '']] });
        for (const cfg of doc.getElementsByTagName('CloudFunctionConfiguration')) {
          if (matches(xmlText(cfg, 'CloudFunction'))) hits.push({ bucket: b, events: [...cfg.getElementsByTagName('Event')].map(e => e.textContent).join(', ') });
        }
      }
      return table([{ title: 'Bucket', cell: x => h('a', { href: `#/buckets/${enc(x.bucket)}` }, x.bucket) }, { title: 'Events', cell: x => x.events }], hits, 'No bucket notifies this function.');
    }),
    section('API routes', async () => {
      const hits = [];
      for (const api of (await rest('apigateway', 'GET', '/v2/apis')).items || []) {
        const integrations = ((await rest('apigateway', 'GET', `/v2/apis/${api.apiId}/integrations`)).items || []).filter(i => matches(i.integrationUri) || (i.integrationUri || '').includes(arn));
        if (!integrations.length) continue;
        const ids = new Set(integrations.map(i => `integrations/${i.integrationId}`));
        for (const r of (await rest('apigateway', 'GET', `/v2/apis/${api.apiId}/routes`)).items || []) {
          if (ids.has(r.target)) hits.push({ api: `${api.name} (HTTP ${api.apiId})`, route: r.routeKey, endpoint: api.apiEndpoint });
        }
      }
      for (const api of (await rest('apigateway', 'GET', '/restapis')).item || []) {
        const resources = (await rest('apigateway', 'GET', `/restapis/${api.id}/resources`, { query: [['embed', 'methods'], ['limit', '500']] })).item || [];
        for (const r of resources) {
          for (const [method, m] of Object.entries(r.resourceMethods || {})) {
            if ((m.methodIntegration?.uri || '').includes(arn)) hits.push({ api: `${api.name} (REST ${api.id})`, route: `${method} ${r.path}` });
          }
        }
      }
      return table([{ title: 'API', cell: x => x.api }, { title: 'Route', cell: x => x.route }, { title: 'Endpoint', cell: x => x.endpoint || '' }], hits, 'No API Gateway route integrates this function.');
    }),
  ]);
  return parts.flat();
}

async function permissions(fn, c) {
  let policy;
  try {
    policy = await lambda('GET', `${F(c.FunctionName)}/policy`);
  } catch (e) {
    if (e.status !== 404) throw e;
    return h('div', { class: 'empty' }, 'No resource-based policy: only this account may invoke the function. Add statements with aws lambda add-permission.');
  }
  const doc = JSON.parse(policy.Policy);
  return [
    table([{ title: 'Sid', cell: s => s.Sid }, { title: 'Principal', cell: s => JSON.stringify(s.Principal) }, { title: 'Action', cell: s => [s.Action].flat().join(', ') },
      { title: 'Condition', cell: s => (s.Condition ? JSON.stringify(s.Condition) : '') }], doc.Statement || [], 'No statements.'),
    h('h3', {}, 'Policy document'), h('pre', {}, fmt.json(doc)),
  ];
}

async function asyncTab(fn, c, params, token) {
  const name = c.FunctionName;
  const [configs, events] = await Promise.all([
    lambda('GET', `/2019-09-25/functions/${enc(name)}/event-invoke-config/list`),
    lamina('GET', '/lamina/v1/async-events', [['function', name], ['limit', '200']]),
  ]);
  return [
    h('h2', {}, 'Asynchronous invocation'),
    table([{ title: 'Qualifier', cell: x => x.FunctionArn.split(':').length > 7 ? x.FunctionArn.split(':').pop() : '$LATEST' },
      { title: 'Retries', num: true, cell: x => x.MaximumRetryAttempts ?? 2 }, { title: 'Maximum age', num: true, cell: x => `${x.MaximumEventAgeInSeconds ?? 21600} s` },
      { title: 'On success', cell: x => x.DestinationConfig?.OnSuccess?.Destination || '' }, { title: 'On failure', cell: x => x.DestinationConfig?.OnFailure?.Destination || '' }],
    configs.FunctionEventInvokeConfigs || [], 'Defaults: 2 retries, events kept up to 6 hours, no destinations.'),
    h('h2', {}, 'Events'),
    asyncEventsTable(events, name),
  ];
}
