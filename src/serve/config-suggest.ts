// "Did you mean" for misspelt keys: the config file and the control API share camelCase keys, and the
// commonest mistakes are another casing convention (password_file, listen-any) or a typo.

function normalise(key: string): string {
  return key.replace(/[-_\s]/g, '').toLowerCase();
}

/** Edit distance, bounded: anything beyond `limit` is reported as limit + 1. */
function distance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  // Levenshtein plus adjacent transpositions ("paht" → "path" is one edit).
  let older: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) value = Math.min(value, older[j - 2]! + 1);
      current.push(value);
      rowMin = Math.min(rowMin, value);
    }
    if (rowMin > limit) return limit + 1;
    older = previous;
    previous = current;
  }
  return previous[b.length]!;
}

/** The known key `key` was most likely meant to be, if any is close enough to say so. */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  const n = normalise(key);
  const sameLetters = known.find((k) => normalise(k) === n);
  if (sameLetters !== undefined) return sameLetters;
  const limit = n.length <= 4 ? 1 : 2;
  let best: { key: string; d: number } | undefined;
  for (const candidate of known) {
    const d = distance(n, normalise(candidate), limit);
    if (d <= limit && (best === undefined || d < best.d)) best = { key: candidate, d };
  }
  if (best !== undefined) return best.key;
  // A truncated or misspelt start of a longer key: "pasword" for passwordFile, "host" for hostSubject.
  if (n.length < 4) return undefined;
  const prefixed = known.filter((k) => distance(n, normalise(k).slice(0, n.length), 1) <= 1);
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/** `unknown key` with a did-you-mean when one fits, else the list of keys allowed here. */
export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const suggestion = suggestKey(key, known);
  if (suggestion !== undefined) return `unknown key; did you mean "${suggestion}"?`;
  return `unknown key; allowed here: ${known.join(', ')}`;
}
