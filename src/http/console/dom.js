// Small DOM helpers. Everything from the server is put in the page as text, never as HTML.

/** `h('td', {class: 'num', onclick: f}, 'text', child)`: an element. */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`no element #${id}`);
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function show(node, visible) {
  node.classList.toggle('hidden', !visible);
}

/** Microseconds since the epoch as `2026-11-28 12:34:56.789012` (UTC). */
export function formatTime(epochUs) {
  if (typeof epochUs !== 'number' || !Number.isFinite(epochUs)) return '';
  const ms = Math.floor(epochUs / 1000);
  const micros = String(Math.floor(epochUs % 1_000_000)).padStart(6, '0');
  const iso = new Date(ms).toISOString(); // 2026-11-28T12:34:56.789Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${micros}`;
}

/** `1234567` as `1,234,567`. */
export function formatCount(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value.toLocaleString('en-US') : '–';
}

/** A short message for an error, as shown in the page. */
export function describeError(error) {
  if (error && error.code) return `${error.code}: ${error.detail ?? error.message}`;
  return String(error?.message ?? error);
}

/** Puts `message` in `node`, classed as an error or not. */
export function say(node, message, isError = false) {
  node.textContent = message;
  node.classList.toggle('error', isError);
}
