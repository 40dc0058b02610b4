/** The Markdown subset the report embeds (docs/METHOD.md). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { inlineMarkdown, markdownToHtml } from '../../../lib/report/markdown.ts';

describe('markdownToHtml', () => {
  it('headings, paragraphs, lists with continuation lines, tables, inline markup; text escaped', () => {
    const md = [
      '# Title',
      '',
      'A *short* paragraph with `a < b` and **bold**,',
      'on two lines; see [the docs](docs/X.md).',
      '- one',
      '  continued',
      '- two',
      '',
      '1. first',
      '',
      '| a | b |',
      '| --- | --- |',
      '| x \\| y | <z> |',
    ].join('\n');
    expect(markdownToHtml(md, 1).split('\n')).toEqual([
      '<h2>Title</h2>',
      '<p>A <i>short</i> paragraph with <code>a &lt; b</code> and <b>bold</b>, on two lines; see <a href="docs/X.md">the docs</a>.</p>',
      '<ul><li>one continued</li><li>two</li></ul>',
      '<ol><li>first</li></ol>',
      '<table class="compact"><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>x | y</td><td>&lt;z&gt;</td></tr></tbody></table>',
    ]);
  });

  it('leaves products and code spans alone', () => {
    expect(inlineMarkdown('z_pre ∘ |W_dec g| * 2 and `s = a * b * c`')).toBe('z_pre ∘ |W_dec g| * 2 and <code>s = a * b * c</code>');
  });

  it('renders docs/METHOD.md with every section', () => {
    const md = readFileSync(path.resolve(__dirname, '../../../docs/METHOD.md'), 'utf8');
    const html = markdownToHtml(md);
    const headings = md.split('\n').filter((l) => l.startsWith('## ')).length;
    expect((html.match(/<h2>/g) ?? []).length).toBe(headings);
    expect(html).toContain('<table class="compact">');
    expect(html).not.toMatch(/\*\*|`/);
  });
});
