// JSON for display. Events' data is stored byte for byte, so the console shows it as sent:
// numbers keep their text (JavaScript would round 12345678901234567890 and print 1.10 as 1.1)
// and object keys keep their order (JavaScript objects put integer-like keys first). Hence a
// small parser of its own instead of JSON.parse.

/** A JSON number, kept as its source text. */
export class JsonNumber {
  constructor(text) { this.text = text; }
  valueOf() { return Number(this.text); }
  toString() { return this.text; }
}

/** A JSON object: its members in source order (duplicates kept, as sent), and its text. */
export class JsonObject {
  constructor(entries, text = '', start = 0, end = 0) {
    this.entries = entries;
    this.text = text;
    this.start = start;
    this.end = end;
  }

  /** The object exactly as it appeared in the parsed text. */
  get source() { return this.text.slice(this.start, this.end); }

  /** The last member named `key` (as JSON.parse would keep), or undefined. */
  get(key) {
    for (let i = this.entries.length - 1; i >= 0; i -= 1) {
      if (this.entries[i][0] === key) return this.entries[i][1];
    }
    return undefined;
  }
}

/** Nesting deeper than this is refused rather than risking the stack. */
const MAX_DEPTH = 512;

/** Parses JSON text into strings, booleans, null, JsonNumber, arrays and JsonObject. */
export function parseJson(text) {
  const parser = new Parser(text);
  parser.space();
  const value = parser.value(0);
  parser.space();
  if (parser.at < text.length) parser.fail('unexpected text after the value');
  return value;
}

/** A field of a record as a JavaScript number (versions, positions, times). */
export function num(value) {
  return value instanceof JsonNumber ? Number(value.text) : value;
}

/** A field of a record as a string (ids, types). */
export function str(value) {
  return typeof value === 'string' ? value : value === undefined ? '' : compactText(value);
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

class Parser {
  constructor(text) { this.text = text; this.at = 0; }

  fail(message) { throw new SyntaxError(`JSON: ${message} at offset ${this.at}`); }

  space() {
    while (this.at < this.text.length && ' \t\n\r'.includes(this.text[this.at])) this.at += 1;
  }

  match(pattern) {
    pattern.lastIndex = this.at;
    const found = pattern.exec(this.text);
    if (!found) return null;
    this.at = pattern.lastIndex;
    return found[0];
  }

  literal(word, value) {
    if (!this.text.startsWith(word, this.at)) this.fail('unexpected character');
    this.at += word.length;
    return value;
  }

  value(depth) {
    if (depth > MAX_DEPTH) this.fail('nested too deeply');
    switch (this.text[this.at]) {
      case '{': return this.object(depth);
      case '[': return this.array(depth);
      case '"': return this.string();
      case 't': return this.literal('true', true);
      case 'f': return this.literal('false', false);
      case 'n': return this.literal('null', null);
      default: {
        const text = this.match(NUMBER);
        if (text === null) this.fail('unexpected character');
        return new JsonNumber(text);
      }
    }
  }

  string() {
    const text = this.match(STRING);
    if (text === null) this.fail('bad string');
    return JSON.parse(text);
  }

  array(depth) {
    this.at += 1;
    const items = [];
    this.space();
    if (this.text[this.at] === ']') { this.at += 1; return items; }
    for (;;) {
      this.space();
      items.push(this.value(depth + 1));
      this.space();
      const next = this.text[this.at++];
      if (next === ']') return items;
      if (next !== ',') this.fail('expected , or ]');
    }
  }

  object(depth) {
    const start = this.at;
    this.at += 1;
    const entries = [];
    const done = () => new JsonObject(entries, this.text, start, this.at);
    this.space();
    if (this.text[this.at] === '}') { this.at += 1; return done(); }
    for (;;) {
      this.space();
      if (this.text[this.at] !== '"') this.fail('expected a key');
      const key = this.string();
      this.space();
      if (this.text[this.at++] !== ':') this.fail('expected :');
      this.space();
      entries.push([key, this.value(depth + 1)]);
      this.space();
      const next = this.text[this.at++];
      if (next === '}') return done();
      if (next !== ',') this.fail('expected , or }');
    }
  }
}

const INDENT = '  ';

/** Pretty-printed JSON text, two-space indent. */
export function prettyText(value) {
  const out = [];
  walk(value, '', (text) => out.push(text), true);
  return out.join('');
}

/** One-line JSON text. */
export function compactText(value) {
  const out = [];
  walk(value, '', (text) => out.push(text), false);
  return out.join('');
}

/** Pretty-printed JSON as a <pre>, with spans classed by token kind for highlighting. */
export function prettyNode(value) {
  const pre = document.createElement('pre');
  pre.className = 'json';
  walk(value, '', (text, kind) => {
    if (!kind) {
      pre.append(text);
      return;
    }
    const span = document.createElement('span');
    span.className = `j-${kind}`;
    span.textContent = text;
    pre.append(span);
  }, true);
  return pre;
}

function walk(value, indent, emit, pretty) {
  if (value === null) return emit('null', 'literal');
  if (value instanceof JsonNumber) return emit(value.text, 'number');
  switch (typeof value) {
    case 'number': return emit(String(value), 'number');
    case 'boolean': return emit(String(value), 'literal');
    case 'string': return emit(JSON.stringify(value), 'string');
    default: break;
  }
  const inner = indent + INDENT;
  const open = (bracket) => emit(pretty ? `${bracket}\n` : bracket);
  const close = (bracket) => emit(pretty ? `${indent}${bracket}` : bracket);
  const separator = (last) => emit(pretty ? (last ? '\n' : ',\n') : (last ? '' : ','));
  if (Array.isArray(value)) {
    if (value.length === 0) return emit('[]');
    open('[');
    value.forEach((item, index) => {
      if (pretty) emit(inner);
      walk(item, inner, emit, pretty);
      separator(index + 1 === value.length);
    });
    return close(']');
  }
  const entries = value instanceof JsonObject ? value.entries : Object.entries(value);
  if (entries.length === 0) return emit('{}');
  open('{');
  entries.forEach(([key, item], index) => {
    if (pretty) emit(inner);
    emit(JSON.stringify(key), 'key');
    emit(pretty ? ': ' : ':');
    walk(item, inner, emit, pretty);
    separator(index + 1 === entries.length);
  });
  return close('}');
}
