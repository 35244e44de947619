// Import (the file is the request body; the import runs as a task on the server, with progress)
// and export (a plain download of /api/export).
import { api, errorText, waitTask } from './common.js';

document.getElementById('import-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const file = document.getElementById('import-file').files[0];
  const out = document.getElementById('import-result');
  const bar = document.getElementById('import-progress');
  if (!file) return;
  const params = new URLSearchParams({ name: file.name, format: document.getElementById('import-format').value });
  const me = document.getElementById('import-me').value.trim();
  const tags = document.getElementById('import-tags').value.trim();
  if (me) params.set('me', me);
  if (tags) params.set('tags', tags);
  out.textContent = 'uploading…';
  const r = await api('POST', `/api/import?${params}`, file);
  if (r.status !== 202) { out.textContent = `not imported: ${errorText(r)}`; return; }
  bar.hidden = false;
  const t = await waitTask(r.data.task, (p) => { if (p.total) { bar.max = p.total; bar.value = p.done; } out.textContent = 'importing…'; });
  bar.hidden = true;
  if (t.status !== 'done') { out.textContent = `not imported: ${t.error}`; return; }
  out.replaceChildren();
  for (const f of t.result.files) {
    const p = document.createElement('p');
    let text = `${f.file} (${f.format}): ${f.added} added, ${f.updated} updated, ${f.unchanged} unchanged, ${f.bad} bad`;
    if (f.error) text += ` — error: ${f.error}`;
    if (f.me_missing) text += ` — ${f.me_missing}`;
    for (const [why, n] of Object.entries(f.dropped || {})) text += `; ${n} dropped: ${why}`;
    for (const ex of f.bad_examples || []) text += `\n  ${ex}`;
    p.textContent = text;
    out.append(p);
  }
  const total = document.createElement('p');
  total.textContent = `The dataset holds ${t.result.conversations} chats.`;
  out.append(total);
});
