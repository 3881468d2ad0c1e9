// A result row of the table. `bar`: { op: "<=" | ">=", value } applied to `ratio`.
/**
 * @param {{ id: string, what: string, flexec: string, raw: string, ratio: number,
 *   bar?: { op: "<=" | ">=", value: number }, note?: string }} fields
 */
export const row = ({ id, what, flexec, raw, ratio, bar, note }) => {
  const pass = bar === undefined || !Number.isFinite(ratio) ? (bar === undefined ? undefined : false) : bar.op === "<=" ? ratio <= bar.value : ratio >= bar.value
  return { id, what, flexec, raw, ratio, bar, pass, note: note ?? "" }
}
