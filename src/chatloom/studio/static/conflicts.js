// The conflicts page: keep ours or take theirs, one conflict at a time.
import { api, errorText } from './common.js';

document.addEventListener('click', async (event) => {
  const button = event.target.closest('button.resolve');
  if (!button) return;
  const card = button.closest('.conflict-card');
  const out = card.querySelector('.result');
  const r = await api('POST', `/api/conflicts/${encodeURIComponent(card.dataset.id)}/resolve`, { how: button.dataset.how });
  if (r.status === 200) {
    out.textContent = `resolved (${r.data.resolved}); the next sync carries it`;
    card.querySelectorAll('button').forEach((b) => { b.disabled = true; });
  } else out.textContent = `not resolved: ${errorText(r)}`;
});
