// The dataset's settings: languages, the tag vocabulary, the tokenizer and template the token
// counts use, and the LLM endpoint (a key's name, never a key).
import { api, errorText } from './common.js';

const values = JSON.parse(document.getElementById('settings-data').textContent);
const $ = (id) => document.getElementById(id);
const ep = values.endpoint || {};
$('s-languages').value = (values.languages || []).join(', ');
$('s-tags').value = (values.tags || []).join(', ');
$('s-tokenizer').value = values.tokenizer || '';
$('s-template').value = values.template || '';
$('s-endpoint-name').value = ep.name || '';
$('s-base-url').value = ep.base_url || '';
$('s-model').value = ep.model || '';
$('s-key').value = ep.key || '';
$('s-key-env').value = ep.key_env || '';
$('s-temperature').value = ep.temperature ?? '';
$('s-max-tokens').value = ep.max_tokens ?? '';
$('s-extra-body').value = ep.extra_body ? JSON.stringify(ep.extra_body) : '';

const list = (id) => $(id).value.split(',').map((s) => s.trim()).filter(Boolean);

$('settings-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const out = $('settings-result');
  let extra = {};
  try { extra = $('s-extra-body').value.trim() ? JSON.parse($('s-extra-body').value) : {}; }
  catch (err) { out.textContent = `extra body: ${err.message}`; return; }
  const endpoint = {
    name: $('s-endpoint-name').value || null, base_url: $('s-base-url').value.trim() || null, model: $('s-model').value.trim() || null,
    key: $('s-key').value.trim() || null, key_env: $('s-key-env').value.trim() || null,
    temperature: $('s-temperature').value === '' ? null : Number($('s-temperature').value),
    max_tokens: $('s-max-tokens').value === '' ? null : Number($('s-max-tokens').value), extra_body: extra,
  };
  const any = Object.values(endpoint).some((v) => v !== null && !(typeof v === 'object' && !Object.keys(v).length));
  const body = { languages: list('s-languages'), tags: list('s-tags'), tokenizer: $('s-tokenizer').value.trim(),
                 template: $('s-template').value.trim(), endpoint: any ? endpoint : null };
  const r = await api('PUT', '/api/settings', body);
  out.textContent = r.status === 200 ? 'saved' : `not saved: ${errorText(r)}`;
});
