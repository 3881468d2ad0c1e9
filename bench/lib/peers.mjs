// The peers a user would pick instead of flexec (execa, @effect/platform's
// Command, fork() IPC, vscode-jsonrpc, dockerode): their versions, the rotated
// rounds all contenders of one figure are sampled in, and the rows of the
// peer table (p50, p99, ratio to raw, ratio to flexec) and of the bars
// "flexec ≤ 1.0× the best peer doing the same work".
import * as fs from "node:fs"
import * as path from "node:path"
import { benchDir, median, pct } from "./common.mjs"
import { row } from "./row.mjs"

/** The installed version of package `name` as bench resolves it (node_modules, walking up). */
export const versionOf = (name) => {
  for (let dir = benchDir; ; dir = path.dirname(dir)) {
    const file = path.join(dir, "node_modules", name, "package.json")
    if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, "utf8")).version
    if (path.dirname(dir) === dir) return "?"
  }
}

/**
 * Samples every side `warm` times, then `n` rounds, each round running every
 * side once in an order rotated by one per round (A B C, B C A, C A B, …): no
 * side always goes first or follows the same one. `sides` maps a name to an
 * async function returning one sample; returns the samples by name.
 * @param {{ warm: number, n: number }} counts
 * @param {Record<string, () => Promise<number>>} sides
 * @returns {Promise<Record<string, Array<number>>>}
 */
export const rounds = async ({ warm, n }, sides) => {
  const names = Object.keys(sides)
  const out = Object.fromEntries(names.map((k) => [k, []]))
  for (let i = 0; i < warm; i++) for (const k of names) await sides[k]()
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < names.length; j++) {
      const k = names[(i + j) % names.length]
      out[k].push(await sides[k]())
    }
  }
  return out
}

/**
 * A contender of one figure: `samples` are times (ms) unless `perSecond` turns
 * them into a rate (`unitsPerSample` / seconds), `fmt` prints a value.
 * @typedef {{ who: string, version: string, samples: Array<number> }} Contender
 */

/**
 * The peer table's rows of one figure: every contender's p50 and p99 with its
 * ratio to raw and to flexec (of the p50s; for a rate, of the rates).
 * @param {{ id: string, figure: string, contenders: Array<Contender>, fmt: (x: number) => string,
 *   rate?: (ms: number) => number, note?: string }} args
 */
export const peerRows = ({ id, figure, contenders, fmt, rate }) => {
  const value = (c, p) => (rate ? rate(pct(c.samples, p)) : pct(c.samples, p))
  const raw = contenders.find((c) => c.who === "raw")
  const flexec = contenders.find((c) => c.who.startsWith("flexec"))
  return contenders.map((c) => ({
    peer: true,
    id,
    figure,
    who: c.who,
    version: c.version,
    p50: fmt(value(c, 50)),
    p99: fmt(value(c, 99)),
    xRaw: raw ? value(c, 50) / value(raw, 50) : NaN,
    xFlexec: flexec ? value(c, 50) / value(flexec, 50) : NaN,
    n: c.samples.length
  }))
}

/**
 * The bar row "flexec ≤ 1.0× the best peer doing the same work" (of the p50
 * times; for a rate, `rate` makes it flexec's time / the best peer's time all
 * the same). The note names the best peer, and says so when it wins.
 * @param {{ id: string, what: string, flexec: Contender, peers: Array<Contender>, fmt: (x: number) => string,
 *   rate?: (ms: number) => number, bar?: number, note?: string }} args
 */
export const bestPeerRow = ({ id, what, flexec, peers, fmt, rate, bar = 1.0, note }) => {
  const show = (c) => fmt(rate ? rate(median(c.samples)) : median(c.samples))
  const best = [...peers].sort((a, b) => median(a.samples) - median(b.samples))[0]
  const ratio = median(flexec.samples) / median(best.samples)
  const verdict = ratio <= bar ? `best peer ${best.who} ${best.version}` : `**${best.who} ${best.version} wins** (${show(best)} vs flexec's ${show(flexec)}, flexec ${((ratio - 1) * 100).toFixed(0)} % slower)`
  return row({
    id,
    what: `${what}: flexec vs the best peer`,
    flexec: show(flexec),
    raw: `${show(best)} (${best.who})`,
    ratio,
    bar: { op: "<=", value: bar },
    note: [verdict, rate ? "ratio of times per transfer (= inverse of the rates)" : "ratio of p50s", note].filter(Boolean).join("; ")
  })
}

/**
 * The spread of a ratio over the run: the samples (taken in rounds, so index i
 * of `a` and `b` come from the same round) cut into `blocks` consecutive
 * blocks, and `ratio(median of a's block, median of b's block)` in each;
 * returns the lowest and highest.
 * @param {Array<number>} a
 * @param {Array<number>} b
 * @param {(x: number, y: number) => number} ratio
 */
export const spreadOf = (a, b, ratio, blocks = 5) => {
  const size = Math.max(1, Math.floor(Math.min(a.length, b.length) / blocks))
  const rs = []
  for (let i = 0; i + size <= Math.min(a.length, b.length); i += size) rs.push(ratio(median(a.slice(i, i + size)), median(b.slice(i, i + size))))
  return { min: Math.min(...rs), max: Math.max(...rs), blocks: rs.length, size }
}
