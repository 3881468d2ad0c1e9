// A result row of the table. `bar`: { op: "<=" | ">=", value } applied to `ratio`.
export const row = ({ id, what, flexec, raw, ratio, bar, note }) => {
  const pass = bar === undefined || !Number.isFinite(ratio) ? (bar === undefined ? undefined : false) : bar.op === "<=" ? ratio <= bar.value : ratio >= bar.value
  return { id, what, flexec, raw, ratio, bar, pass, note: note ?? "" }
}
