/**
 * The logs group: every line reaches `handle.logs` (capability logs) and the
 * job log file; output never blocks a job.
 *
 * @since 0.1.0
 */
import { Effect, Stream } from "effect"
import * as fs from "node:fs"
import { expect } from "../../internal/vitest.js"
import type { Harness } from "../harness.js"
import { pollUntil } from "../pollUntil.js"
import { conformanceFloodFixture, conformanceJobFacts, conformanceJobFixture } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, test, testWith, withCaps } from "./register.js"
import { within, completion, check, exitOf, show, requestOf, handleOf, ask } from "./probes.js"

/** Logs: every line reaches `handle.logs` (capability logs) and the job log file; output never blocks a job. */
export const logsTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "logs", (caps) => {
    /** Starts conformance-job, subscribes to its logs, makes it print its lines and exit; returns what was seen. */
    const printed = (h: Harness) =>
      Effect.gen(function* () {
        const jobId = yield* h.start(conformanceJobFixture)
        yield* h.waitEvent("Started", jobId)
        const handle = handleOf(h, jobId)
        yield* check(handle.logs !== undefined, "capabilities.logs is true but the handle has no logs")
        const lines: Array<{ readonly stream: string; readonly line: string }> = []
        let ended = false
        yield* Stream.runForEach(handle.logs!, (l) => Effect.sync(() => void lines.push({ stream: l.stream, line: l.line }))).pipe(
          Effect.ensuring(Effect.sync(() => void (ended = true))),
          Effect.forkScoped
        )
        // the subscription is live once a line the job logs after it shows up
        yield* pollUntil(
          "a line of the job on handle.logs",
          () => ask(h, jobId, conformanceJobFacts.topics.hello).pipe(Effect.map(() => lines.some((l) => l.line.startsWith("conformance-job: hello")))),
          common.timeouts.eventMs
        ).pipe(Effect.mapError(() => new Error(`no line the job logged reached handle.logs within ${common.timeouts.eventMs} ms`)))
        yield* ask(h, jobId, conformanceJobFacts.topics.print)
        const exit = yield* within(common.timeouts.eventMs, "the job did not exit after printing", handleOf(h, jobId).wait)
        expect(exit, "the printing job's exit").toEqual(exitOf(0, null))
        return { jobId, lines, ended: () => ended }
      })

    testWith(common, caps, "logs", "handle.logs holds every line with its stream label, the last one without a newline too, and ends after the exit", (h) =>
      Effect.gen(function* () {
        const { ended, lines } = yield* printed(h)
        yield* pollUntil("the logs stream to end", ended, common.timeouts.logsEndMs).pipe(
          Effect.mapError(() => new Error(`the logs stream did not end within ${common.timeouts.logsEndMs} ms after the job exited`))
        )
        for (const want of conformanceJobFacts.printed) {
          const got = lines.find((l) => l.line === want.line)
          yield* check(got !== undefined, `the line ${show(want.line)} (${want.stream}) is missing from handle.logs (got ${show(lines.slice(-6))})`)
          yield* check(got!.stream === want.stream, `the line ${show(want.line)} is labelled ${got!.stream}, not ${want.stream}`)
        }
      }))

    testWith(common, caps, "logs", "paths.logFile holds the job's output, the last line too", (h) =>
      Effect.gen(function* () {
        const { jobId } = yield* printed(h)
        yield* completion(h, jobId)
        const file = requestOf(h, jobId).paths.logFile
        const want = conformanceJobFacts.printed.map((p) => p.line)
        const read = () => [file, `${file}.1`, `${file}.2`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, "utf8")).join("\n")
        yield* pollUntil("the job log to hold the output", () => want.every((l) => read().includes(l)), common.timeouts.logsEndMs).pipe(
          Effect.mapError(() => new Error(`${file} lacks ${show(want.filter((l) => !read().includes(l)))}: the job's output must go to paths.logFile`))
        )
      }))

    test(common, "a job that writes more than 1 MiB of output and ends normally exits (its output is drained)", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start(conformanceFloodFixture)
        const outcome = yield* within(
          common.timeouts.eventMs,
          "a job that wrote 1.5 MiB did not end: its output is not drained (a full pipe blocks it)",
          h.executor.awaitCompletion(jobId)
        )
        expect(outcome.exit, "the writing job's exit").toEqual(exitOf(0, null))
      }))
  })
}
