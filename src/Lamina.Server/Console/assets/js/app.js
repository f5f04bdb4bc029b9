// The console's shell: sign-in, the navigation and a hash router (#/section/...), so every view has a URL that
// reloads and works with the browser's back button.
import { credentials, saveCredentials, forgetCredentials, lambda } from './api.js';
import { h, mount, errorBox, clearOldToasts } from './ui.js';
import * as functions from './functions.js';
import * as services from './services.js';
import * as asyncQueue from './async.js';

const routes = {
  functions: functions.route,
  async: asyncQueue.route,
  queues: services.queues,
  topics: services.topics,
  rules: services.rules,
  buckets: services.buckets,
  tables: services.tables,
  apis: services.apis,
  stacks: services.stacks,
};

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [pathPart, queryPart = ''] = raw.split('?');
  const parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(queryPart) };
}

let generation = 0;
/** Whether the view that started at `token` is still the one shown (slow loads must not overwrite a newer view). */
export function current(token) { return token === generation; }

async function render() {
  const token = ++generation;
  window.dispatchEvent(new Event('lamina:leave'));
  clearOldToasts();
  const { parts, params } = parseHash();
  const section = parts[0] || 'functions';
  document.querySelectorAll('#nav a').forEach(a => a.setAttribute('aria-current', a.dataset.section === section ? 'page' : 'false'));
  renderWho();
  if (!credentials()) { signIn(); return; }
  const view = routes[section];
  if (!view) { mount(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/functions' }, 'Functions'))); return; }
  try {
    await view(parts.slice(1), params, token);
  } catch (e) {
    if (!current(token)) return;
    if (e.status === 403 && /token|signature|Authentication/i.test(`${e.code} ${e.message}`)) {
      mount(h('h1', {}, 'Access denied'), errorBox(e), h('p', {}, 'The server refused these credentials. ',
        h('button', { onclick: () => { forgetCredentials(); render(); } }, 'Sign in again')));
      return;
    }
    mount(h('h1', {}, 'Something went wrong'), errorBox(e));
  }
  document.title = `${document.querySelector('main h1')?.textContent || 'Console'} · Lamina`;
}

function renderWho() {
  const c = credentials();
  document.getElementById('who').replaceChildren(...(c ? [`${c.accessKeyId} · ${c.region}`,
    h('button', { type: 'button', onclick: () => { forgetCredentials(); render(); } }, 'Sign out')] : []));
}

function signIn() {
  const id = h('input', { id: 'access-key-id', name: 'accessKeyId', autocomplete: 'username', required: true, size: 32 });
  const secret = h('input', { id: 'secret-access-key', name: 'secretAccessKey', type: 'password', autocomplete: 'current-password', required: true, size: 48 });
  const region = h('input', { id: 'region', name: 'region', value: 'us-east-1', required: true });
  const status = h('p', { role: 'status' });
  const form = h('form', { class: 'grid', onsubmit: async e => {
    e.preventDefault();
    const c = { accessKeyId: id.value.trim(), secretAccessKey: secret.value, region: region.value.trim() };
    saveCredentials(c);
    status.textContent = 'Checking…';
    try {
      await lambda('GET', '/2015-03-31/functions/', { query: [['MaxItems', '1']] });
      render();
    } catch (err) {
      forgetCredentials();
      status.replaceChildren(errorBox(err));
    }
  } },
  h('label', { for: 'access-key-id' }, 'Access key id'), id,
  h('label', { for: 'secret-access-key' }, 'Secret access key'), secret,
  h('label', { for: 'region' }, 'Region'), region,
  h('div', { class: 'full actions' }, h('button', { class: 'primary', type: 'submit', id: 'sign-in' }, 'Sign in')));
  mount(h('section', { class: 'signin' },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'The console calls Lamina\'s APIs from this page, signed with an access key (SigV4), as the AWS CLI does. ',
      'The key is kept for this tab only (sessionStorage).'),
    h('p', { class: 'muted' }, 'Keys come from ', h('code', {}, './lamina keys create'),
      '. A server with no keys (listening on loopback only) accepts any key id and secret.'),
    form, status));
  id.focus();
}

// The skip link moves focus without touching the hash (the router owns it).
document.querySelector('.skip').addEventListener('click', e => { e.preventDefault(); document.getElementById('main').focus(); });
window.addEventListener('hashchange', render);
render();
