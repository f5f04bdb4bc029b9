// The async queue (Lamina's operator API, /lamina/v1/async-events): events waiting, running and failed, with their
// errors; failed ones are kept for operators (Lamina's dead-letter store) and can be redriven one by one or all.
import { lamina, send } from './api.js';
import { h, mount, act, fmt } from './ui.js';
import { current } from './app.js';

const STATES = [['', 'All'], ['queued', 'Pending and retrying'], ['running', 'Running'], ['failed', 'Failed']];

export async function route(parts, params, token) {
  const state = params.get('state') || '';
  const query = [['limit', '500']];
  if (state) query.push(['state', state]);
  const events = await lamina('GET', '/lamina/v1/async-events', query);
  if (!current(token)) return;
  mount(
    h('h1', {}, 'Async queue'),
    h('p', { class: 'muted' }, `${events.Queued} queued or running, ${events.Failed} failed. Failed events are kept here after their retries (and any DLQ or on-failure destination) until redriven or purged; `, h('code', {}, 'lamina events'), ' does the same from a terminal.'),
    h('nav', { class: 'tabs', 'aria-label': 'States' }, STATES.map(([s, title]) => h('a', { href: `#/async${s ? '?state=' + s : ''}`, 'aria-current': s === state ? 'page' : null }, title))),
    asyncEventsTable(events, null));
}

/** The events of a listing with their errors; redrive and purge buttons for the failed ones (of `functionName`, or all). */
export function asyncEventsTable(events, functionName) {
  const failed = events.Events.filter(e => e.State === 'failed').length;
  const selection = functionName ? [['function', functionName]] : [['all', 'true']];
  const redriveAll = h('button', { type: 'button', id: 'redrive-all', disabled: !failed, onclick: () => act(redriveAll, async () => {
    const r = await lamina('POST', '/lamina/v1/async-events/redrive', selection);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
    return r;
  }, r => `Redrove ${r.Count} events`) }, functionName ? 'Redrive all failed of this function' : 'Redrive all failed');
  const purge = h('button', { type: 'button', class: 'danger', id: 'purge-failed', disabled: !failed, onclick: () => {
    if (!confirm('Delete the failed events for good?')) return;
    act(purge, async () => {
      const response = await send('lamina', 'DELETE', '/lamina/v1/async-events', { query: selection });
      window.dispatchEvent(new HashChangeEvent('hashchange'));
      return response.json();
    }, r => `Purged ${r.Count} events`);
  } }, 'Purge failed');
  if (!events.Events.length) {
    return [h('div', { class: 'actions' }, redriveAll, purge),
      h('div', { class: 'empty', id: 'async-empty' }, 'No async events here. Events appear while they wait or retry, and stay when they fail.')];
  }
  const row = e => {
    const redrive = e.State === 'failed' ? h('button', { type: 'button', class: 'redrive', 'data-id': e.Id, onclick: () => act(redrive, async () => {
      await lamina('POST', '/lamina/v1/async-events/redrive', [['id', e.Id]]);
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    }, 'Redriven: queued again') }, 'Redrive') : null;
    const payload = e.Payload !== undefined && e.Payload !== null ? fmt.json(e.Payload) : e.PayloadBase64 ? `(base64) ${e.PayloadBase64}` : '';
    return h('tr', { 'data-event': e.Id, 'data-state': e.State },
      h('td', {}, h('a', { href: `#/functions/${encodeURIComponent(e.FunctionName)}/async` }, e.FunctionName), e.Qualifier ? `:${e.Qualifier}` : ''),
      // A queued event that has run before is waiting to retry.
      h('td', {}, h('span', { class: `badge ${e.State}` }, e.State === 'queued' && e.Attempts > 0 ? 'retrying' : e.State), e.Condition ? h('div', { class: 'muted' }, e.Condition) : null),
      h('td', { class: 'num' }, e.Attempts),
      h('td', {}, fmt.time(e.CreatedAt), e.DueAt ? h('div', { class: 'muted' }, `next ${fmt.time(e.DueAt)}`) : null, e.FailedAt ? h('div', { class: 'muted' }, `failed ${fmt.time(e.FailedAt)}`) : null),
      h('td', {}, e.LastError ? h('pre', { class: 'event-error' }, e.LastError) : '', h('details', {}, h('summary', {}, 'Event'), h('pre', {}, payload))),
      h('td', {}, redrive));
  };
  return [
    h('div', { class: 'actions' }, redriveAll, purge),
    h('table', { id: 'async-events' },
      h('thead', {}, h('tr', {}, ['Function', 'State', 'Attempts', 'Times', 'Last error', ''].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, events.Events.map(row))),
  ];
}
