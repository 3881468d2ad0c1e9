/**
 * Recovery: the instance's live jobs found in `squeue` by the labels in their
 * comment, matched with the job records under the runtime directory (records
 * of jobs that are over, or not this instance's, are removed), each given a
 * handle with no scope owning it.
 *
 * @internal
 */
import { Effect, Option } from "effect"
import type { Duration } from "effect"
import * as path from "node:path"
import type { SlurmCli } from "./cli.js"
import { unavailable } from "./cli.js"
import { decodeJobId, defaultRuntimeDir } from "./core.js"
import type { BackendUnavailable, RecoveredJob } from "./core.js"
import { isTerminal, parseQueue } from "./exit.js"
import { makeHandle } from "./handle.js"
import type { Poller } from "./poller.js"
import { readRecords, removeRecord } from "./record.js"
import type { JobRecord } from "./record.js"
import { jobName, parseComment } from "./spec.js"

/** What recovery needs of the launcher. */
export interface RecoverDeps {
  readonly cli: SlurmCli
  readonly poller: Poller
  /** The instance's runtime directory (default: the engine's default for the instance). */
  readonly runtimeDir: string | undefined
  /** SIGTERM → SIGKILL for recovered jobs, which carry no request. */
  readonly killTimeout: Duration.Duration
}

/** The launcher's `recover` (without the check that the cluster answered at start). */
export const makeRecover = (deps: RecoverDeps): ((instanceId: string) => Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable>) => {
  const { cli, poller } = deps
  return (instanceId) =>
    Effect.gen(function* () {
      const runtimeDir = path.resolve(deps.runtimeDir ?? defaultRuntimeDir("slurm", instanceId))
      // one call: every job of this user; ours are those whose comment names this instance
      const listed = yield* cli.run("squeue", ["-h", "--me", "-t", "all", "-O", "JobID:|,State:|,exit_code:|,Name:|,Comment:|"]).pipe(
        Effect.map((out) => out.stdout),
        Effect.mapError(unavailable)
      )
      interface Row { readonly slurmId: string; readonly state: string; readonly name: string; readonly labels: Readonly<Record<string, string>> }
      const rows: Array<Row> = []
      for (const line of listed.split("\n")) {
        const [id, state, raw, name, ...comment] = line.split("|")
        if (id === undefined || state === undefined || raw === undefined || name === undefined) continue
        const parsed = parseQueue(`${id}|${state}|${raw}|`)[0]
        if (parsed === undefined) continue
        const labels = parseComment(comment.join("|").replace(/\|$/, "").trim())
        if (labels["flexec.instance"] !== instanceId) continue
        rows.push({ slurmId: parsed.slurmId, state: parsed.state, name: name.trim(), labels })
      }
      const live = rows.filter((r) => !isTerminal(r.state))
      const records = new Map<string, { readonly file: string; readonly record: JobRecord }>()
      for (const entry of readRecords(runtimeDir)) {
        const r = entry.record
        const row = r._tag === "Right" ? live.find((l) => l.slurmId === r.right.slurmJobId) : undefined
        // a record whose job is over, is another's, or was reused by another job: gone
        if (r._tag === "Left" || row === undefined || r.right.instanceId !== instanceId || row.name !== r.right.name) {
          removeRecord(entry.file)
          continue
        }
        records.set(r.right.slurmJobId, { file: entry.file, record: r.right })
      }
      const found: Array<RecoveredJob> = []
      for (const row of live) {
        const jobId = yield* decodeJobId(row.labels["flexec.job"]).pipe(Effect.option)
        if (Option.isNone(jobId) || row.name !== jobName(instanceId, jobId.value)) continue
        const kept = records.get(row.slurmId)
        const watch = yield* poller.watch(row.slurmId, row.name)
        if (kept !== undefined) watch.onExit.push(() => removeRecord(kept.file))
        // no scope owns a recovered job: once its end is seen it is forgotten
        watch.onExit.push(() => poller.unwatch(watch))
        const handle = yield* makeHandle(cli, poller, {
          jobId: jobId.value,
          slurmId: row.slurmId,
          watch,
          killTimeout: deps.killTimeout,
          fork: Effect.forkDaemon,
          info: { slurmJobId: row.slurmId, slurmJobName: row.name, ...(kept !== undefined ? { logFile: kept.record.logFile } : {}) }
        })
        found.push({
          jobId: jobId.value,
          instanceId,
          handle,
          // without its record (the parent died between sbatch and the write) it can only be reaped
          ...(kept !== undefined ? { channelToken: kept.record.channelToken, channelDir: kept.record.channelDir } : {})
        })
      }
      return found
    })
}
