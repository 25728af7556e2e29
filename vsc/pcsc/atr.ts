// Answer-to-Reset structure (ISO 7816-3 §8.2): TS, T0, interface byte groups, historical bytes,
// TCK. Pure. Used to describe a reader's card and to rebuild the ATR the guest is shown.

export interface InterfaceGroup {
  readonly ta?: number;
  readonly tb?: number;
  readonly tc?: number;
  /** TDi: high nibble says which bytes of the next group follow, low nibble is a protocol T. */
  readonly td?: number;
}

export interface ParsedAtr {
  readonly ts: number;
  /** groups[0] holds TA1..TD1, groups[1] TA2..TD2, ... */
  readonly groups: readonly InterfaceGroup[];
  readonly historical: Uint8Array;
  /** Present when a protocol other than T=0 is indicated. */
  readonly tck: number | undefined;
  /** Transmission protocols offered, in ATR order (T=0 when there is no TD1); T=15 is not one. */
  readonly protocols: readonly number[];
  /** Bytes after the last expected one (some readers pad ATRs). */
  readonly trailing: number;
}

export type AtrParseResult = { readonly ok: true; readonly atr: ParsedAtr } | { readonly ok: false; readonly reason: string };

/** T=15 carries global bytes, not a protocol. */
const GLOBAL_T = 15;

export function parseAtr(atr: Uint8Array): AtrParseResult {
  if (atr.length < 2) return { ok: false, reason: `an ATR has at least 2 bytes, got ${atr.length}` };
  const ts = atr[0] ?? 0;
  if (ts !== 0x3b && ts !== 0x3f) {
    return { ok: false, reason: `TS is ${ts.toString(16).padStart(2, '0')}, not 3B (direct) or 3F (inverse convention)` };
  }
  const t0 = atr[1] ?? 0;
  const groups: InterfaceGroup[] = [];
  const protocols: number[] = [];
  let needsTck = false;
  let pos = 2;
  let present = t0 >> 4;
  while (present !== 0) {
    const group: { ta?: number; tb?: number; tc?: number; td?: number } = {};
    for (const [bit, key] of [[1, 'ta'], [2, 'tb'], [4, 'tc'], [8, 'td']] as const) {
      if ((present & bit) === 0) continue;
      const value = atr[pos];
      if (value === undefined) return { ok: false, reason: `the ATR ends inside interface group ${groups.length + 1}` };
      group[key] = value;
      pos += 1;
    }
    groups.push(group);
    if (group.td === undefined) break;
    const t = group.td & 0x0f;
    if (t !== 0) needsTck = true;
    if (t !== GLOBAL_T && !protocols.includes(t)) protocols.push(t);
    present = group.td >> 4;
  }
  if (groups[0]?.td === undefined) protocols.unshift(0);
  const k = t0 & 0x0f;
  if (pos + k > atr.length) return { ok: false, reason: `T0 announces ${k} historical bytes but only ${atr.length - pos} follow` };
  const historical = atr.slice(pos, pos + k);
  pos += k;
  let tck: number | undefined;
  if (needsTck && pos < atr.length) tck = atr[pos++];
  return { ok: true, atr: { ts, groups, historical, tck, protocols, trailing: atr.length - pos } };
}

/** "T=0", "T=1", "T=0,T=1" for display. */
export function describeProtocols(protocols: readonly number[]): string {
  return protocols.map((t) => `T=${t}`).join(',');
}
