// The chat list: j/k or arrows move, Enter opens, x selects, / searches; bulk actions act on the
// selected rows or on everything the current query finds (a background task on the server).
import { api, errorText, isTyping, status, waitTask } from './common.js';

const rows = () => [...document.querySelectorAll('#chats tbody tr[data-id]')];
let current = -1;

function focusRow(i) {
  const all = rows();
  if (!all.length) return;
  current = Math.max(0, Math.min(all.length - 1, i));
  all.forEach((r, j) => r.classList.toggle('current', j === current));
  all[current].focus();
  all[current].scrollIntoView({ block: 'nearest' });
}

function selected() {
  return rows().filter((r) => r.querySelector('.pick').checked).map((r) => r.dataset.id);
}

function updateCount() {
  const whole = document.getElementById('whole-query').checked;
  document.getElementById('selected-count').textContent = whole ? 'the whole query' : `${selected().length} selected`;
}

document.addEventListener('keydown', (event) => {
  if (event.key === '/' && !isTyping(event)) { event.preventDefault(); document.getElementById('search').focus(); return; }
  if (isTyping(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === 'j' || event.key === 'ArrowDown') { event.preventDefault(); focusRow(current + 1); }
  else if (event.key === 'k' || event.key === 'ArrowUp') { event.preventDefault(); focusRow(current - 1); }
  else if ((event.key === 'Enter' || event.key === 'e') && current >= 0) {
    event.preventDefault(); rows()[current].querySelector('.title a').click();
  } else if (event.key === 'x' && current >= 0) {
    const box = rows()[current].querySelector('.pick'); box.checked = !box.checked; updateCount();
  }
});

document.getElementById('select-page').addEventListener('change', (event) => {
  rows().forEach((r) => { r.querySelector('.pick').checked = event.target.checked; });
  updateCount();
});
document.getElementById('chats').addEventListener('change', (event) => {
  if (event.target.classList.contains('pick')) updateCount();
});
document.getElementById('whole-query').addEventListener('change', updateCount);

document.getElementById('bulk-apply').addEventListener('click', async () => {
  const action = document.getElementById('bulk-action').value;
  const value = document.getElementById('bulk-value').value.trim();
  const whole = document.getElementById('whole-query').checked;
  const out = document.getElementById('bulk-result');
  const query = Object.fromEntries(new URLSearchParams(document.getElementById('bulk').dataset.query));
  const ids = selected();
  if (action === 'export') {
    const params = new URLSearchParams(whole ? query : {});
    if (!whole && !ids.length) { out.textContent = 'select chats first (x, or the boxes)'; return; }
    if (!whole) ids.forEach((id) => params.append('id', id));
    if (value) params.set('format', value);
    location.href = `/api/export?${params}`;
    return;
  }
  if (!whole && !ids.length) { out.textContent = 'select chats first (x, or the boxes)'; return; }
  if (action === 'delete' && !confirm(whole ? 'Delete every chat this query finds? (each can be undone)' : `Delete ${ids.length} chats?`)) return;
  out.textContent = 'working…';
  const r = await api('POST', '/api/bulk', whole ? { action, value, query } : { action, value, ids });
  let result = r.data;
  if (r.status === 202) {
    result = await waitTask(r.data.task, (t) => { out.textContent = `working… ${t.done}${t.total ? ' of ' + t.total : ''}`; });
    if (result.status === 'failed') { out.textContent = `failed: ${result.error}`; return; }
    result = result.result;
  } else if (r.status !== 200) { out.textContent = `failed: ${errorText(r)}`; return; }
  out.textContent = `${action}: ${result.changed} of ${result.matched} changed`;
  status('reload to see the changes');
  setTimeout(() => location.reload(), 600);
});
