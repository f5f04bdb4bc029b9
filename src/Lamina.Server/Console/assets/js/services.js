// The other services' pages: queues (SQS), topics (SNS), rules (EventBridge), buckets (S3), tables (DynamoDB),
// APIs (API Gateway) and stacks (CloudFormation).
import { target, sns, cloudformation, s3, s3Xml, s3Presigned, rest, pathOf, xmlText, xmlMembers, xmlChild } from './api.js';
import { h, mount, table, props, act, errorBox, fmt, toast } from './ui.js';
import { current } from './app.js';

const enc = encodeURIComponent;

export async function queues(parts, params, token) {
  if (parts[0]) return queue(parts[0], token);
  const urls = (await target('sqs', 'ListQueues', { MaxResults: 1000 })).QueueUrls || [];
  const rows = await Promise.all(urls.map(async url => ({ url, a: (await target('sqs', 'GetQueueAttributes', { QueueUrl: url, AttributeNames: ['All'] })).Attributes || {} })));
  if (!current(token)) return;
  mount(h('h1', {}, 'Queues'),
    table([
      { title: 'Name', cell: q => h('a', { href: `#/queues/${enc(q.url.split('/').pop())}` }, q.url.split('/').pop()) },
      { title: 'Available', num: true, cell: q => q.a.ApproximateNumberOfMessages },
      { title: 'In flight', num: true, cell: q => q.a.ApproximateNumberOfMessagesNotVisible },
      { title: 'Delayed', num: true, cell: q => q.a.ApproximateNumberOfMessagesDelayed },
      { title: 'Dead-letter target', cell: q => (q.a.RedrivePolicy ? JSON.parse(q.a.RedrivePolicy).deadLetterTargetArn?.split(':').pop() : '') },
    ], rows, h('span', {}, 'No queues. Create one with ', h('code', {}, 'aws sqs create-queue'), '.'), { id: 'queues' }));
}

async function queue(name, token) {
  const { QueueUrl: url } = await target('sqs', 'GetQueueUrl', { QueueName: name });
  const a = (await target('sqs', 'GetQueueAttributes', { QueueUrl: url, AttributeNames: ['All'] })).Attributes || {};
  if (!current(token)) return;
  const body = h('textarea', { id: 'message-body', class: 'code', 'aria-label': 'Message body' }, '{"hello": "queue"}');
  const messages = h('div', { id: 'messages' });
  const sendButton = h('button', { type: 'button', class: 'primary', id: 'send-message', onclick: () => act(sendButton, () => {
    const request = { QueueUrl: url, MessageBody: body.value };
    if (name.endsWith('.fifo')) { request.MessageGroupId = 'console'; request.MessageDeduplicationId = String(Date.now()); }
    return target('sqs', 'SendMessage', request);
  }, r => `Sent ${r.MessageId}`) }, 'Send message');
  const peek = h('button', { type: 'button', id: 'peek', onclick: () => act(peek, async () => {
    const r = await target('sqs', 'ReceiveMessage', { QueueUrl: url, MaxNumberOfMessages: 10, VisibilityTimeout: 0, WaitTimeSeconds: 0, AttributeNames: ['All'] });
    messages.replaceChildren(table([{ title: 'Message id', cell: m => m.MessageId }, { title: 'Receives', num: true, cell: m => m.Attributes?.ApproximateReceiveCount },
      { title: 'Body', cell: m => h('pre', {}, m.Body) }], r.Messages || [], 'No messages available.'));
  }) }, 'Peek (up to 10)');
  mount(h('p', { class: 'crumbs' }, h('a', { href: '#/queues' }, 'Queues'), ' / ', name), h('h1', {}, name),
    props(Object.entries(a).sort()),
    h('h2', {}, 'Send a message'), body, h('div', { class: 'actions' }, sendButton),
    h('h2', {}, 'Messages'), h('p', { class: 'muted' }, 'Peeking receives with a visibility timeout of 0: the messages stay available, their receive counts grow.'),
    h('div', { class: 'actions' }, peek), messages);
}

export async function topics(parts, params, token) {
  const arns = [];
  let next = '';
  do {
    const doc = await sns('ListTopics', next ? { NextToken: next } : {});
    arns.push(...[...doc.getElementsByTagName('TopicArn')].map(e => e.textContent));
    next = xmlText(doc, 'NextToken');
  } while (next);
  const rows = await Promise.all(arns.map(async arn => {
    const doc = await sns('ListSubscriptionsByTopic', { TopicArn: arn });
    return { arn, subs: [...doc.getElementsByTagName('member')].map(m => `${xmlText(m, 'Protocol')}: ${xmlText(m, 'Endpoint')}`) };
  }));
  if (!current(token)) return;
  mount(h('h1', {}, 'Topics'),
    table([{ title: 'Topic', cell: t => t.arn.split(':').pop() }, { title: 'ARN', cell: t => t.arn },
      { title: 'Subscriptions', cell: t => (t.subs.length ? h('ul', {}, t.subs.map(s => h('li', {}, s))) : h('span', { class: 'muted' }, 'none')) }],
    rows, h('span', {}, 'No topics. Create one with ', h('code', {}, 'aws sns create-topic'), '.'), { id: 'topics' }));
}

export async function rules(parts, params, token) {
  const buses = (await target('events', 'ListEventBuses', {})).EventBuses || [{ Name: 'default' }];
  const all = [];
  for (const bus of buses) {
    for (const r of (await target('events', 'ListRules', { EventBusName: bus.Name })).Rules || []) {
      const t = (await target('events', 'ListTargetsByRule', { Rule: r.Name, EventBusName: bus.Name })).Targets || [];
      all.push({ ...r, bus: bus.Name, targets: t });
    }
  }
  if (!current(token)) return;
  mount(h('h1', {}, 'Rules'),
    table([{ title: 'Rule', cell: r => r.Name }, { title: 'Bus', cell: r => r.bus }, { title: 'State', cell: r => r.State },
      { title: 'Schedule or pattern', cell: r => (r.ScheduleExpression ? h('code', {}, r.ScheduleExpression) : h('pre', {}, r.EventPattern || '')) },
      { title: 'Targets', cell: r => (r.targets.length ? h('ul', {}, r.targets.map(t => h('li', {}, `${t.Id}: `, targetLink(t.Arn)))) : h('span', { class: 'muted' }, 'none')) }],
    all, h('span', {}, 'No rules. Create one with ', h('code', {}, 'aws events put-rule'), '.'), { id: 'rules' }));
}

function targetLink(arn) {
  const p = arn.split(':');
  if (p[2] === 'lambda' && p[5] === 'function') return h('a', { href: `#/functions/${enc(p[6])}` }, arn);
  if (p[2] === 'sqs') return h('a', { href: `#/queues/${enc(p[5])}` }, arn);
  return arn;
}

export async function buckets(parts, params, token) {
  if (parts[0]) return bucket(parts[0], params.get('prefix') || '', token);
  const doc = await s3Xml('GET', '/');
  const list = [...doc.getElementsByTagName('Bucket')].map(b => ({ name: xmlText(b, 'Name'), created: xmlText(b, 'CreationDate') }));
  if (!current(token)) return;
  mount(h('h1', {}, 'Buckets'),
    table([{ title: 'Bucket', cell: b => h('a', { href: `#/buckets/${enc(b.name)}` }, b.name) }, { title: 'Created', cell: b => fmt.time(b.created) }],
      list, h('span', {}, 'No buckets. Create one with ', h('code', {}, 'aws s3 mb s3://NAME'), '.'), { id: 'buckets' }));
}

async function bucket(name, prefix, token) {
  const folders = [], objects = [];
  let continuation = '';
  do {
    const query = [['list-type', '2'], ['delimiter', '/'], ['prefix', prefix]];
    if (continuation) query.push(['continuation-token', continuation]);
    const doc = await s3Xml('GET', pathOf(name), { query });
    folders.push(...[...doc.getElementsByTagName('CommonPrefixes')].map(p => xmlText(p, 'Prefix')));
    objects.push(...[...doc.getElementsByTagName('Contents')].map(c => ({ key: xmlText(c, 'Key'), size: Number(xmlText(c, 'Size')), modified: xmlText(c, 'LastModified') })));
    continuation = xmlText(doc, 'IsTruncated') === 'true' ? xmlText(doc, 'NextContinuationToken') : '';
  } while (continuation);
  const links = await Promise.all(objects.map(o => s3Presigned(name, o.key)));
  if (!current(token)) return;
  const here = p => `#/buckets/${enc(name)}${p ? '?prefix=' + enc(p) : ''}`;
  const crumbs = [h('a', { href: '#/buckets' }, 'Buckets'), ' / ', h('a', { href: here('') }, name)];
  let acc = '';
  for (const part of prefix.split('/').filter(Boolean)) { acc += part + '/'; crumbs.push(' / ', h('a', { href: here(acc) }, part)); }
  const file = h('input', { type: 'file', id: 'upload-file', multiple: true, 'aria-label': 'Files to upload' });
  const upload = h('button', { type: 'button', class: 'primary', id: 'upload', onclick: () => act(upload, async () => {
    if (!file.files.length) throw new Error('Choose a file first');
    for (const f of file.files) {
      await s3('PUT', pathOf(name, ...(prefix + f.name).split('/')), { headers: { 'Content-Type': f.type || 'application/octet-stream' }, body: f });
    }
    window.dispatchEvent(new HashChangeEvent('hashchange'));
    return file.files.length;
  }, n => `Uploaded ${n} file${n === 1 ? '' : 's'}`) }, 'Upload');
  const remove = o => {
    const b = h('button', { type: 'button', class: 'danger', onclick: () => {
      if (!confirm(`Delete ${o.key}?`)) return;
      act(b, async () => { await s3('DELETE', pathOf(name, ...o.key.split('/'))); window.dispatchEvent(new HashChangeEvent('hashchange')); }, 'Deleted');
    } }, 'Delete');
    return b;
  };
  const rows = [...folders.map(f => ({ folder: f })), ...objects.map((o, i) => ({ ...o, link: links[i] }))];
  mount(h('p', { class: 'crumbs' }, crumbs), h('h1', {}, name),
    h('div', { class: 'actions' }, h('label', { for: 'upload-file' }, `Upload to ${prefix || '/'}`), file, upload),
    table([
      { title: 'Name', cell: r => (r.folder ? h('a', { href: here(r.folder) }, r.folder.slice(prefix.length)) : r.key.slice(prefix.length)) },
      { title: 'Size', num: true, cell: r => (r.folder ? '' : fmt.bytes(r.size)) },
      { title: 'Last modified', cell: r => (r.folder ? '' : fmt.time(r.modified)) },
      { title: '', cell: r => (r.folder ? '' : [h('a', { href: r.link, download: r.key.split('/').pop(), class: 'download' }, 'Download'), ' ', remove(r)]) },
    ], rows, prefix ? 'Nothing under this prefix.' : 'This bucket is empty. Upload a file above.', { id: 'objects' }));
}

export async function tables(parts, params, token) {
  if (parts[0]) return dynamoTable(parts[0], token);
  const names = [];
  let start;
  do {
    const r = await target('dynamodb', 'ListTables', start ? { ExclusiveStartTableName: start } : {});
    names.push(...(r.TableNames || []));
    start = r.LastEvaluatedTableName;
  } while (start);
  const described = await Promise.all(names.map(n => target('dynamodb', 'DescribeTable', { TableName: n })));
  if (!current(token)) return;
  mount(h('h1', {}, 'Tables'),
    table([{ title: 'Table', cell: d => h('a', { href: `#/tables/${enc(d.Table.TableName)}` }, d.Table.TableName) },
      { title: 'Keys', cell: d => d.Table.KeySchema.map(k => `${k.AttributeName} (${k.KeyType})`).join(', ') },
      { title: 'Items', num: true, cell: d => d.Table.ItemCount }, { title: 'Status', cell: d => d.Table.TableStatus }],
    described, h('span', {}, 'No tables. Create one with ', h('code', {}, 'aws dynamodb create-table'), '.'), { id: 'tables' }));
}

/** An attribute value ({"S": "x"}, {"N": "1"}, {"M": {…}}, …) as text. */
function attr(v) {
  if (!v) return '';
  const [type, value] = Object.entries(v)[0];
  if (type === 'S' || type === 'N') return value;
  if (type === 'BOOL') return String(value);
  if (type === 'NULL') return 'null';
  if (type === 'B') return `(binary ${value.length} base64)`;
  if (type === 'L') return '[' + value.map(attr).join(', ') + ']';
  if (type === 'M') return '{' + Object.entries(value).map(([k, x]) => `${k}: ${attr(x)}`).join(', ') + '}';
  return `${type}: ${JSON.stringify(value)}`;
}

async function dynamoTable(name, token) {
  const { Table: t } = await target('dynamodb', 'DescribeTable', { TableName: name });
  if (!current(token)) return;
  const filter = h('input', { id: 'scan-filter', size: 50, placeholder: 'e.g. #s = :s', 'aria-label': 'Filter expression' });
  const names = h('input', { id: 'scan-names', size: 50, placeholder: '{"#s": "status"}', 'aria-label': 'Expression attribute names (JSON)' });
  const values = h('input', { id: 'scan-values', size: 50, placeholder: '{":s": {"S": "open"}}', 'aria-label': 'Expression attribute values (JSON)' });
  const results = h('div', { id: 'scan-results' });
  let lastKey = null;
  const scan = async (more = false) => {
    const request = { TableName: name, Limit: 100 };
    if (filter.value.trim()) request.FilterExpression = filter.value.trim();
    if (names.value.trim()) request.ExpressionAttributeNames = JSON.parse(names.value);
    if (values.value.trim()) request.ExpressionAttributeValues = JSON.parse(values.value);
    if (more && lastKey) request.ExclusiveStartKey = lastKey;
    const r = await target('dynamodb', 'Scan', request);
    lastKey = r.LastEvaluatedKey || null;
    const items = r.Items || [];
    const keys = t.KeySchema.map(k => k.AttributeName);
    const columns = [...new Set([...keys, ...items.flatMap(i => Object.keys(i))])];
    results.replaceChildren(
      h('p', { class: 'muted' }, `${r.Count} items matched of ${r.ScannedCount} scanned${lastKey ? '; more remain' : ''}.`),
      table(columns.map(c => ({ title: c, cell: i => attr(i[c]) })), items, 'No items match.', { id: 'items' }),
      lastKey ? h('button', { type: 'button', onclick: e => act(e.target, () => scan(true)) }, 'Next page') : '');
  };
  const run = h('button', { type: 'submit', class: 'primary', id: 'scan' }, 'Scan');
  mount(h('p', { class: 'crumbs' }, h('a', { href: '#/tables' }, 'Tables'), ' / ', name), h('h1', {}, name),
    props([['ARN', t.TableArn], ['Keys', t.KeySchema.map(k => `${k.AttributeName} (${k.KeyType})`).join(', ')], ['Items', t.ItemCount],
      ['Billing', t.BillingModeSummary?.BillingMode || 'PROVISIONED'], ['Stream', t.LatestStreamArn || 'none'],
      ['Indexes', [...(t.GlobalSecondaryIndexes || []), ...(t.LocalSecondaryIndexes || [])].map(i => i.IndexName).join(', ') || 'none']]),
    h('h2', {}, 'Scan'),
    h('form', { class: 'grid', onsubmit: e => { e.preventDefault(); act(run, () => scan(false)); } },
      h('label', { for: 'scan-filter' }, 'Filter expression'), filter,
      h('label', { for: 'scan-names' }, 'Attribute names'), names,
      h('label', { for: 'scan-values' }, 'Attribute values'), values,
      h('div', { class: 'full actions' }, run)),
    results);
  await scan(false).catch(e => results.replaceChildren(errorBox(e)));
}

export async function apis(parts, params, token) {
  const http = (await rest('apigateway', 'GET', '/v2/apis')).items || [];
  const httpRows = await Promise.all(http.map(async a => ({ a, routes: (await rest('apigateway', 'GET', `/v2/apis/${a.apiId}/routes`)).items || [] })));
  const restApis = (await rest('apigateway', 'GET', '/restapis')).item || [];
  const restRows = await Promise.all(restApis.map(async a => ({ a, resources: (await rest('apigateway', 'GET', `/restapis/${a.id}/resources`, { query: [['limit', '500']] })).item || [] })));
  if (!current(token)) return;
  mount(h('h1', {}, 'APIs'),
    h('h2', {}, 'HTTP APIs'),
    table([{ title: 'Name', cell: x => x.a.name }, { title: 'Id', cell: x => x.a.apiId }, { title: 'Endpoint', cell: x => x.a.apiEndpoint },
      { title: 'Routes', cell: x => h('ul', {}, x.routes.map(r => h('li', {}, r.routeKey, r.target ? h('span', { class: 'muted' }, ` → ${r.target}`) : ''))) }],
    httpRows, h('span', {}, 'No HTTP APIs. Create one with ', h('code', {}, 'aws apigatewayv2 create-api'), '.'), { id: 'http-apis' }),
    h('h2', {}, 'REST APIs'),
    table([{ title: 'Name', cell: x => x.a.name }, { title: 'Id', cell: x => x.a.id },
      { title: 'Resources', cell: x => h('ul', {}, x.resources.map(r => h('li', {}, `${Object.keys(r.resourceMethods || {}).join(',') || '—'} ${r.path}`))) }],
    restRows, h('span', {}, 'No REST APIs. Import one with ', h('code', {}, 'aws apigateway import-rest-api'), '.'), { id: 'rest-apis' }));
}

export async function stacks(parts, params, token) {
  if (parts[0]) return stack(parts[0], token);
  const summaries = [];
  let next = '';
  do {
    const doc = await cloudformation('ListStacks', next ? { NextToken: next } : {});
    const result = doc.documentElement.getElementsByTagName('ListStacksResult')[0];
    summaries.push(...xmlMembers(result, 'StackSummaries').map(m => ({
      name: xmlChild(m, 'StackName'), status: xmlChild(m, 'StackStatus'), reason: xmlChild(m, 'StackStatusReason'),
      created: xmlChild(m, 'CreationTime'), updated: xmlChild(m, 'LastUpdatedTime'), deleted: xmlChild(m, 'DeletionTime'),
    })));
    next = xmlChild(result, 'NextToken');
  } while (next);
  if (!current(token)) return;
  const live = summaries.filter(s => s.status !== 'DELETE_COMPLETE');
  mount(h('h1', {}, 'Stacks'),
    table([
      { title: 'Stack', cell: s => h('a', { href: `#/stacks/${enc(s.name)}` }, s.name) },
      { title: 'Status', cell: s => h('span', { class: statusClass(s.status) }, s.status) },
      { title: 'Created', cell: s => fmt.time(s.created) },
      { title: 'Updated', cell: s => fmt.time(s.updated) },
      { title: 'Reason', cell: s => s.reason },
    ], live, h('span', {}, 'No stacks. Deploy a SAM template with ', h('code', {}, './lamina deploy'), ' or ',
      h('code', {}, 'aws cloudformation deploy'), '.'), { id: 'stacks' }));
}

function statusClass(status) {
  return /FAILED|ROLLBACK/.test(status) ? 'badge failed' : /IN_PROGRESS/.test(status) ? 'badge running' : 'badge';
}

async function stack(name, token) {
  const described = await cloudformation('DescribeStacks', { StackName: name });
  const s = described.documentElement.getElementsByTagName('Stacks')[0]?.getElementsByTagName('member')[0];
  const resources = [];
  let next = '';
  do {
    const doc = await cloudformation('ListStackResources', next ? { StackName: name, NextToken: next } : { StackName: name });
    const result = doc.documentElement.getElementsByTagName('ListStackResourcesResult')[0];
    resources.push(...xmlMembers(result, 'StackResourceSummaries'));
    next = xmlChild(result, 'NextToken');
  } while (next);
  const eventsDoc = await cloudformation('DescribeStackEvents', { StackName: name });
  const events = xmlMembers(eventsDoc.documentElement.getElementsByTagName('DescribeStackEventsResult')[0], 'StackEvents');
  if (!current(token)) return;
  const status = xmlChild(s, 'StackStatus');
  mount(h('p', { class: 'crumbs' }, h('a', { href: '#/stacks' }, 'Stacks'), ' / ', name), h('h1', {}, name),
    props([['Status', h('span', { class: statusClass(status) }, status)], ['Reason', xmlChild(s, 'StackStatusReason') || null],
      ['Stack id', xmlChild(s, 'StackId')], ['Description', xmlChild(s, 'Description') || null],
      ['Created', fmt.time(xmlChild(s, 'CreationTime'))], ['Updated', fmt.time(xmlChild(s, 'LastUpdatedTime') || null)]]),
    h('h2', {}, 'Outputs'),
    table([{ title: 'Key', cell: o => xmlChild(o, 'OutputKey') }, { title: 'Value', cell: o => xmlChild(o, 'OutputValue') },
      { title: 'Export', cell: o => xmlChild(o, 'ExportName') }, { title: 'Description', cell: o => xmlChild(o, 'Description') }],
    xmlMembers(s, 'Outputs'), 'This stack has no outputs.', { id: 'stack-outputs' }),
    h('h2', {}, 'Parameters'),
    table([{ title: 'Key', cell: p => xmlChild(p, 'ParameterKey') }, { title: 'Value', cell: p => xmlChild(p, 'ParameterValue') }],
      xmlMembers(s, 'Parameters'), 'This stack has no parameters.', { id: 'stack-parameters' }),
    h('h2', {}, 'Resources'),
    table([{ title: 'Logical id', cell: r => xmlChild(r, 'LogicalResourceId') },
      { title: 'Type', cell: r => xmlChild(r, 'ResourceType') },
      { title: 'Physical id', cell: r => resourceLink(xmlChild(r, 'ResourceType'), xmlChild(r, 'PhysicalResourceId')) },
      { title: 'Status', cell: r => h('span', { class: statusClass(xmlChild(r, 'ResourceStatus')) }, xmlChild(r, 'ResourceStatus')) },
      { title: 'Reason', cell: r => xmlChild(r, 'ResourceStatusReason') }],
    resources, 'This stack has no resources.', { id: 'stack-resources' }),
    h('h2', {}, 'Events'),
    table([{ title: 'Time', cell: e => fmt.time(xmlChild(e, 'Timestamp')) }, { title: 'Logical id', cell: e => xmlChild(e, 'LogicalResourceId') },
      { title: 'Type', cell: e => xmlChild(e, 'ResourceType') },
      { title: 'Status', cell: e => h('span', { class: statusClass(xmlChild(e, 'ResourceStatus')) }, xmlChild(e, 'ResourceStatus')) },
      { title: 'Reason', cell: e => xmlChild(e, 'ResourceStatusReason') }],
    events, 'No events.', { id: 'stack-events' }));
}

/** A stack resource's physical id, linked to its page in the console where it has one. */
function resourceLink(type, id) {
  const pages = { 'AWS::Lambda::Function': 'functions', 'AWS::SQS::Queue': 'queues', 'AWS::S3::Bucket': 'buckets', 'AWS::DynamoDB::Table': 'tables' };
  if (!pages[type] || !id) return id;
  const name = type === 'AWS::SQS::Queue' ? id.split('/').pop() : id;
  return h('a', { href: `#/${pages[type]}/${enc(name)}` }, id);
}

export { toast };
