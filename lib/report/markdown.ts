/**
 * The Markdown the report embeds (docs/METHOD.md) as HTML: headings, paragraphs, `-` and `1.`
 * lists (continuation lines indented), pipe tables, `code`, **bold**, *italic*, [links](url).
 * Everything else is text, escaped. Headings shift down by `headingShift` levels.
 */

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Inline markup of one block of text (code spans first, so their content stays literal). */
export function inlineMarkdown(text: string): string {
  return text
    .split(/(`[^`]+`)/)
    .map((part) => {
      if (part.startsWith('`') && part.endsWith('`') && part.length > 1) return `<code>${escapeHtml(part.slice(1, -1))}</code>`;
      return escapeHtml(part)
        .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, '<a href="$2">$1</a>')
        .replace(/\*\*([^*]+)\*\*/g, '<b>$1</b>')
        .replace(/(^|[^*\w])\*([^*\s][^*]*)\*(?=[^*\w]|$)/g, '$1<i>$2</i>');
    })
    .join('');
}

function tableHtml(lines: string[]): string {
  const cells = (l: string) => l.trim().replace(/^\||\|$/g, '').split(/(?<!\\)\|/).map((c) => inlineMarkdown(c.trim().replace(/\\\|/g, '|')));
  const [head, , ...body] = lines;
  return `<table class="compact"><thead><tr>${cells(head).map((c) => `<th>${c}</th>`).join('')}</tr></thead><tbody>${body
    .map((l) => `<tr>${cells(l).map((c) => `<td>${c}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

const LIST_ITEM = /^(-|\d+\.) /;

function listHtml(lines: string[]): string {
  const items: string[] = [];
  for (const l of lines) {
    if (LIST_ITEM.test(l)) items.push(l.replace(LIST_ITEM, ''));
    else items[items.length - 1] += ` ${l.trim()}`;
  }
  const tag = /^\d+\./.test(lines[0]) ? 'ol' : 'ul';
  return `<${tag}>${items.map((i) => `<li>${inlineMarkdown(i)}</li>`).join('')}</${tag}>`;
}

/** Markdown → HTML (the subset above). */
export function markdownToHtml(md: string, headingShift = 0): string {
  const blocks: string[] = [];
  const lines = md.replace(/\r\n/g, '\n').split('\n');
  for (let i = 0; i < lines.length; ) {
    const line = lines[i];
    const heading = /^(#{1,6}) (.*)$/.exec(line);
    if (line.trim() === '') {
      i++;
    } else if (heading) {
      const level = Math.min(6, heading[1].length + headingShift);
      blocks.push(`<h${level}>${inlineMarkdown(heading[2])}</h${level}>`);
      i++;
    } else {
      // A run of lines up to a blank line or a heading; a list or a table starts its own block.
      const start = i;
      const kind = line.startsWith('|') ? 'table' : LIST_ITEM.test(line) ? 'list' : 'p';
      i++;
      while (i < lines.length && lines[i].trim() !== '' && !/^#{1,6} /.test(lines[i])) {
        const next = lines[i];
        if (kind === 'p' && (LIST_ITEM.test(next) || next.startsWith('|'))) break;
        if (kind === 'list' && !LIST_ITEM.test(next) && !next.startsWith(' ')) break;
        if (kind === 'table' && !next.startsWith('|')) break;
        i++;
      }
      const chunk = lines.slice(start, i);
      if (kind === 'table') blocks.push(tableHtml(chunk));
      else if (kind === 'list') blocks.push(listHtml(chunk));
      else blocks.push(`<p>${inlineMarkdown(chunk.join(' '))}</p>`);
    }
  }
  return blocks.join('\n');
}
