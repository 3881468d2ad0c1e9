/**
 * The batched status poller against scripted Slurm answers (a `slurmBin` whose
 * squeue prints what the test wrote): the cases the real cluster only reaches
 * after `MinJobAge` (300 s here) or when its controller is down. What the
 * scripts print is what Slurm 22.05 printed on the project's machine.
 */
import { Duration, Effect, Either, Option } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { waitUntil } from "@flexec/testing"
import { afterAll, describe, expect, it } from "vitest"
import { makeCli } from "../src/internal/cli.js"
import { parseShowConfig } from "../src/internal/clusterConfig.js"
import { makePoller } from "../src/internal/poller.js"
import { tempDir } from "./helpers.js"

const root = tempDir("flexec-slurm-poller-")
afterAll(() => fs.rmSync(root, { recursive: true, force: true }))

/** A slurmBin whose squeue prints `<dir>/out` and `<dir>/err` and exits `<dir>/rc`, logging its argv. */
const scripted = () => {
  const dir = fs.mkdtempSync(path.join(root, "bin-"))
  const f = (name: string) => path.join(dir, name)
  fs.writeFileSync(
    f("squeue"),
    `#!/bin/sh\necho "$*" >> '${f("calls")}'\ncat '${f("out")}'\ncat '${f("err")}' >&2\nexit $(cat '${f("rc")}')\n`,
    { mode: 0o755 }
  )
  const answer = (out: string, rc = 0, err = "") => {
    fs.writeFileSync(f("out"), out)
    fs.writeFileSync(f("err"), err)
    fs.writeFileSync(f("rc"), String(rc))
  }
  answer("")
  return { dir, answer, calls: () => fs.readFileSync(f("calls"), "utf8").split("\n").filter((l) => l !== "") }
}

const setup = () => {
  const bin = scripted()
  const jobComp = path.join(bin.dir, "jobcomp.txt")
  fs.writeFileSync(jobComp, "")
  const config = parseShowConfig(`JobCompType = jobcomp/filetxt\nJobCompLoc = ${jobComp}\n`)
  const poller = makePoller({ cli: makeCli({ slurmBin: bin.dir, timeoutMs: 5_000 }), interval: Duration.millis(20), config: () => config })
  return { bin, jobComp, poller }
}

describe("the status poller", () => {
  it("one squeue for every watched job; RUNNING is no exit; a terminal row's raw status is decoded", () =>
    Effect.runPromise(
      Effect.gen(function* () {
        const { bin, poller } = setup()
        bin.answer("11|RUNNING|0|\n12|PENDING|0|\n")
        const a = yield* poller.watch("11", "flexec.i.a")
        const b = yield* poller.watch("12", "flexec.i.b")
        // the poller's first tick has asked squeue about both jobs (no sleep: wait for the call itself)
        yield* Effect.promise(() => waitUntil("the poller's first squeue call", () => (fs.existsSync(path.join(bin.dir, "calls")) && bin.calls().length > 0 ? true : undefined), 5_000, 10))
        expect(Option.isNone(a.exit) && Option.isNone(b.exit)).toBe(true)
        expect(bin.calls().every((c) => c === "-h -t all -j 11,12 -O JobID:|,State:|,exit_code:|")).toBe(true)
        bin.answer("11|FAILED|1792|\n12|OUT_OF_MEMORY|253|\n")
        expect(yield* poller.wait(a)).toEqual({ code: 7, signal: null, oomKilled: false, lost: false })
        expect(yield* poller.wait(b)).toMatchObject({ oomKilled: true })
        expect(poller.live()).toBe(0)
      })
    ))

  it("a job squeue forgot (its record aged out): its jobcomp line if there is one, else lost", () =>
    Effect.runPromise(
      Effect.gen(function* () {
        const { bin, jobComp, poller } = setup()
        fs.writeFileSync(jobComp, "JobId=21 UserId=root(0) GroupId=root(0) Name=flexec.i.c JobState=FAILED Partition=debug ExitCode=0:9 \n")
        // every id unknown: squeue says so and exits 1
        bin.answer("", 1, "slurm_load_jobs error: Invalid job id specified\n")
        const c = yield* poller.watch("21", "flexec.i.c")
        const d = yield* poller.watch("22", "flexec.i.d")
        expect(yield* poller.wait(c)).toEqual({ code: null, signal: "SIGKILL", oomKilled: false, lost: false })
        expect(yield* poller.wait(d)).toEqual({ code: null, signal: null, oomKilled: false, lost: true })
      })
    ))

  it("a controller that does not answer: wait fails with BackendUnavailable (the engine retries), and succeeds once it answers again", () =>
    Effect.runPromise(
      Effect.gen(function* () {
        const { bin, poller } = setup()
        bin.answer("", 1, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n")
        const e = yield* poller.watch("31", "flexec.i.e")
        const failed = yield* Effect.either(poller.wait(e))
        expect(Either.isLeft(failed) && failed.left._tag).toBe("BackendUnavailable")
        expect(Either.isLeft(failed) && failed.left.detail).toMatch(/squeue .*: slurm_load_jobs error: Unable to contact slurm controller/)
        expect(Option.isNone(e.exit)).toBe(true)
        bin.answer("31|COMPLETED|0|\n")
        expect(yield* poller.wait(e)).toEqual({ code: 0, signal: null, oomKilled: false, lost: false })
      })
    ))
})
