// Session names for targets opened from a file, a link or the page: readable (the host or file name) and
// within the bridge's name rule [A-Za-z0-9._-]{1,64}.

/** A session name from a target: its host or file name, made unique among the names in use. */
export function sessionNameFor(target: string, taken: ReadonlySet<string>): string {
  let base = target.replace(/^[a-z+]+:\/\//i, '').replace(/[/?#].*$/, '').replace(/\.vv$/i, '');
  const slash = Math.max(target.lastIndexOf('/'), target.lastIndexOf('\\'));
  if (/\.vv$/i.test(target)) base = target.slice(slash + 1).replace(/\.vv$/i, '');
  base = base.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 56) || 'vm';
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) {
    const candidate = `${base}-${i}`;
    if (!taken.has(candidate)) return candidate;
  }
}
