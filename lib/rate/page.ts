/** The rating page (one static HTML file; it learns latents only from /api/items, which hides their SAE). */
export const RATE_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rate latents</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; max-width: 860px; margin: 24px auto; padding: 0 12px; color: #222; }
.ctx { font-family: ui-monospace, monospace; white-space: pre-wrap; background: #f6f6f6; padding: 6px 8px; margin: 4px 0; border-radius: 4px; }
.tok { border-radius: 2px; }
.tok.hit { outline: 2px solid #c0392b; font-weight: bold; }
.promoted span { font-family: ui-monospace, monospace; background: #eef5ff; padding: 1px 5px; margin-right: 6px; border-radius: 3px; }
button.score { font-size: 18px; width: 48px; height: 40px; margin-right: 6px; }
#status { margin-top: 10px; min-height: 1.4em; }
#status.err { color: #b00; }
.muted { color: #777; font-size: 13px; }
</style></head>
<body>
<h1>Rate latents</h1>
<p class="muted">Each card is one latent of a sparse autoencoder: the contexts where it activates most (the activating token outlined, shading = activation) and the tokens it promotes. Rate how clearly one simple concept explains it: 1 = no pattern, 5 = one clear, specific concept. Keys 1–5 rate and go to the next latent.</p>
<p><label>Your name <input id="rater" maxlength="64" placeholder="rater"></label> <span id="progress" class="muted"></span></p>
<div id="card"></div>
<p><label>Label (optional) <input id="label" maxlength="200" size="40" placeholder="e.g. plural nouns"></label></p>
<p id="buttons"></p>
<div id="status"></div>
<script>
const $ = (id) => document.getElementById(id);
let items = [], pos = 0;
const rater = $('rater');
rater.value = localStorage.getItem('rater') || '';
rater.addEventListener('change', () => localStorage.setItem('rater', rater.value.trim()));
function esc(s) { return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]); }
function show() {
  $('progress').textContent = items.length ? 'latent ' + Math.min(pos + 1, items.length) + ' of ' + items.length : '';
  if (pos >= items.length) { $('card').innerHTML = '<p><b>All latents rated. Thank you.</b></p>'; return; }
  const it = items[pos];
  const max = Math.max(1e-9, ...it.contexts.flatMap((c) => c.acts));
  const ctx = it.contexts.map((c) => '<div class="ctx">' + c.tokens.map((t, i) => {
    const a = Math.max(0, c.acts[i]) / max;
    return '<span class="tok' + (i === c.at ? ' hit' : '') + '" style="background: rgba(255,140,0,' + a.toFixed(2) + ')">' + esc(t) + '</span>';
  }).join('') + '</div>').join('');
  const prom = it.promoted.length ? '<p class="promoted">Promotes: ' + it.promoted.map((t) => '<span>' + esc(JSON.stringify(t)) + '</span>').join('') + '</p>' : '';
  $('card').innerHTML = '<h2 data-item="' + it.id + '">Latent ' + it.n + '</h2>' + ctx + prom;
}
async function rate(score) {
  if (pos >= items.length) return;
  const name = rater.value.trim();
  if (!name) { status('Enter your name first.', true); rater.focus(); return; }
  localStorage.setItem('rater', name);
  const res = await fetch('/api/rate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rater: name, item: items[pos].id, score, label: $('label').value.trim() }) });
  const j = await res.json();
  if (!res.ok) { status('Not saved: ' + j.error, true); return; }
  status('Saved ' + score + (j.queued ? ' (queued: a pipeline run holds the store; written when it ends)' : '') + '.', false);
  $('label').value = '';
  pos++;
  localStorage.setItem('pos', String(pos));
  show();
}
function status(msg, err) { $('status').textContent = msg; $('status').className = err ? 'err' : ''; }
$('buttons').innerHTML = [1, 2, 3, 4, 5].map((s) => '<button class="score" data-score="' + s + '">' + s + '</button>').join('');
$('buttons').addEventListener('click', (e) => { const s = e.target.dataset && e.target.dataset.score; if (s) rate(Number(s)); });
document.addEventListener('keydown', (e) => {
  if (e.target && e.target.tagName === 'INPUT') { if (e.key === 'Enter') e.target.blur(); return; }
  if (/^[1-5]$/.test(e.key)) rate(Number(e.key));
});
fetch('/api/items').then((r) => r.json()).then((j) => { items = j.items; pos = Math.min(Number(localStorage.getItem('pos') || 0), items.length); show(); });
</script>
</body></html>
`;
