// The .vv file `open` hands the viewer: it points at the proxy, asks for no smartcard (the proxy
// brings the card), carries no upstream password (only the proxy's one-time viewer token) and asks
// to be deleted once read.
export interface ViewerFileOptions {
  host: string;
  port: number;
  /** What the viewer sends as its password: the proxy's viewer token. */
  password?: string;
  title?: string;
}

/** GLib key-file value escaping: backslash, control characters, and a leading space. */
export function escapeKeyFileValue(value: string): string {
  let out = value.replace(/[\\\n\r\t]/g, (c) => ({ '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' })[c]!);
  if (out.startsWith(' ')) out = `\\s${out.slice(1)}`;
  return out;
}

export function viewerFileText(options: ViewerFileOptions): string {
  const lines = ['[virt-viewer]', 'type=spice', `host=${options.host}`, `port=${options.port}`];
  if (options.password !== undefined) lines.push(`password=${escapeKeyFileValue(options.password)}`);
  if (options.title !== undefined) lines.push(`title=${escapeKeyFileValue(options.title)}`);
  lines.push('enable-smartcard=0', 'delete-this-file=1', '');
  return lines.join('\n');
}
