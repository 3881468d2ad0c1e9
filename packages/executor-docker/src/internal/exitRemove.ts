/**
 * The last resort when the parent exits without closing its executor: one
 * process `'exit'` listener (installed while a guarded container exists) that
 * force-removes every such container through the Engine API and removes its
 * channel directory. An `'exit'` listener cannot wait for a socket, so the
 * requests run in a short-lived helper process (`spawnSync`, bounded); there
 * is no grace period here: the orderly abort is the executor's `close()`.
 *
 * @internal
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"

/** A container the hook removes on exit. */
export interface ExitRemoveEntry {
  readonly socketPath: string
  readonly containerId: string
  readonly channelDir: string | undefined
}

/** How long the helper may take for all of them. */
const helperTimeoutMs = 10_000

/** The helper: `DELETE /containers/<id>?force=true` for each id, over the engine's unix socket. */
const helper = `
const http = require("node:http")
const [socketPath, ...ids] = process.argv.slice(1)
let left = ids.length
const done = () => { if (--left === 0) process.exit(0) }
for (const id of ids) {
  const req = http.request({ socketPath, method: "DELETE", path: "/containers/" + encodeURIComponent(id) + "?force=true&v=true", timeout: 8000 }, (res) => { res.resume(); res.on("end", done) })
  req.on("timeout", () => req.destroy())
  req.on("error", done)
  req.end()
}
`

const live = new Set<ExitRemoveEntry>()

const onExit = (): void => {
  const bySocket = new Map<string, Array<string>>()
  for (const entry of live) bySocket.set(entry.socketPath, [...(bySocket.get(entry.socketPath) ?? []), entry.containerId])
  for (const [socketPath, ids] of bySocket) {
    try {
      spawnSync(process.execPath, ["-e", helper, socketPath, ...ids], { stdio: "ignore", timeout: helperTimeoutMs })
    } catch {
      // the next parent of the instance reaps what is left
    }
  }
  for (const entry of live) {
    try {
      if (entry.channelDir !== undefined) fs.rmSync(entry.channelDir, { recursive: true, force: true })
    } catch {
      // the others still go
    }
  }
  live.clear()
}

/** Removes `entry`'s container if the process exits before the returned function is called. */
export const removeOnExit = (entry: ExitRemoveEntry): (() => void) => {
  if (live.size === 0) process.on("exit", onExit)
  live.add(entry)
  return () => {
    if (live.delete(entry) && live.size === 0) process.off("exit", onExit)
  }
}
