// The dashboard's on-demand work: counting the tokens of the chats not counted yet, and the
// duplicates the build's dedup finds. Each runs as a task on the server; results are text.
import { api, errorText, waitTask } from './common.js';

const count = document.getElementById('count-all');
if (count) count.addEventListener('click', async () => {
  const state = document.getElementById('count-state');
  const r = await api('POST', '/api/count-tokens');
  if (r.status !== 202) { state.textContent = errorText(r); return; }
  const t = await waitTask(r.data.task, (p) => { state.textContent = `counting… ${p.done} of ${p.total || '?'}`; });
  state.textContent = t.status === 'done' ? 'counted' : `failed: ${t.error}`;
  if (t.status === 'done') location.reload();
});

document.getElementById('find-duplicates').addEventListener('click', async () => {
  const state = document.getElementById('dup-state');
  const out = document.getElementById('dup-result');
  const r = await api('POST', '/api/duplicates');
  if (r.status !== 202) { state.textContent = errorText(r); return; }
  const t = await waitTask(r.data.task, (p) => { state.textContent = `reading… ${p.done} of ${p.total || '?'}`; });
  if (t.status !== 'done') { state.textContent = `failed: ${t.error}`; return; }
  const d = t.result;
  state.textContent = `${d.exact_groups} exact groups (${d.exact_extra} extra copies), ${d.near_groups} near groups (${d.near_extra} extra)`;
  out.replaceChildren();
  for (const [name, groups] of [['exact', d.exact], ['near', d.near]]) {
    if (!groups.length) continue;
    const h = document.createElement('h3');
    h.textContent = `${name} duplicates (the first of each group is the one the build keeps)`;
    const ol = document.createElement('ol');
    for (const g of groups) {
      const li = document.createElement('li');
      g.forEach((id, i) => {
        const a = document.createElement('a');
        a.href = `/chat/${encodeURIComponent(id)}`;
        a.textContent = id;
        li.append(a);
        if (i < g.length - 1) li.append(' · ');
      });
      ol.append(li);
    }
    out.append(h, ol);
  }
});
