// Shared by every page: requests with the CSRF header, the status line, the shortcut list.
// Chat text only ever enters the page through textContent and form values, never as HTML.

export const csrf = document.querySelector('meta[name="csrf"]').content;

export async function api(method, url, body, headers = {}) {
  const init = { method, headers: { 'X-CSRF-Token': csrf, ...headers } };
  if (body !== undefined) {
    if (body instanceof Blob || body instanceof ArrayBuffer) init.body = body;
    else { init.body = JSON.stringify(body); init.headers['Content-Type'] = 'application/json'; }
  }
  const response = await fetch(url, init);
  let data = null;
  const type = response.headers.get('content-type') || '';
  if (type.includes('json')) data = await response.json();
  else data = { error: await response.text() };
  return { response, status: response.status, data };
}

export function errorText(result) {
  const d = result.data || {};
  return typeof d.detail === 'string' ? d.detail : d.error || `HTTP ${result.status}`;
}

export function status(text) {
  document.getElementById('status').textContent = text;
}

export async function waitTask(id, onProgress) {
  for (;;) {
    const r = await api('GET', `/api/tasks/${id}`);
    if (r.status !== 200) throw new Error(errorText(r));
    if (onProgress) onProgress(r.data);
    if (r.data.status !== 'running') return r.data;
    await new Promise((ok) => setTimeout(ok, 300));
  }
}

export function isTyping(event) {
  const t = event.target;
  return t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
}

async function newChat() {
  const r = await api('POST', '/api/chats', { messages: [{ role: 'user', content: '' }] });
  if (r.status === 201) location.href = `/chat/${encodeURIComponent(r.data.id)}`;
  else status(`not created: ${errorText(r)}`);
}

document.getElementById('new-chat').addEventListener('click', newChat);
document.getElementById('help-button').addEventListener('click', () => document.getElementById('help').showModal());
document.addEventListener('keydown', (event) => {
  if (isTyping(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === '?') { event.preventDefault(); document.getElementById('help').showModal(); }
});
if (new URLSearchParams(location.search).get('new') === '1') newChat();
