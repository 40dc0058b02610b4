/**
 * GPT-2's reversible byte ↔ unicode-character table (`bytes_to_unicode` in openai/gpt-2 encoder.py).
 *
 * Byte-level BPE works on bytes, but tokenizer.json stores tokens as strings. Every byte is mapped
 * to one printable character: the 188 printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to
 * themselves, the other 68 (controls, space, 0x7F–0xA0, 0xAD) to U+0100 + n in byte order. So a
 * space becomes 'Ġ' (U+0120) and a newline 'Ċ' (U+010A). The 256 byte tokens get ids 0..255 in
 * the order of their characters' code points, which is exactly GPT-2's (and r50k_base's) order.
 */

function buildTables(): { byteToChar: string[]; charToByte: Map<string, number>; byteOrder: number[] } {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const byteToChar: string[] = new Array(256);
  const charToByte = new Map<string, number>();
  for (let i = 0; i < 256; i++) {
    const ch = String.fromCharCode(cs[i]);
    byteToChar[bs[i]] = ch;
    charToByte.set(ch, bs[i]);
  }
  return { byteToChar, charToByte, byteOrder: bs };
}

const TABLES = buildTables();

/** BYTE_TO_CHAR[b] is the character that stands for byte b in token strings. */
export const BYTE_TO_CHAR: readonly string[] = TABLES.byteToChar;
/** Inverse of BYTE_TO_CHAR. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = TABLES.charToByte;
/** BYTE_ORDER[i] = the byte whose token has id i among the 256 byte tokens (GPT-2 order). */
export const BYTE_ORDER: readonly number[] = TABLES.byteOrder;

/** The token string for a byte sequence. */
export function bytesToTokenString(bytes: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]];
  return s;
}

/** The bytes a byte-level token string stands for; throws if a character is not in the table. */
export function tokenStringToBytes(token: string): Uint8Array {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token[i]);
    if (b === undefined) {
      throw new Error(`token ${JSON.stringify(token)} has character ${JSON.stringify(token[i])} outside the byte-level alphabet`);
    }
    out[i] = b;
  }
  return out;
}
