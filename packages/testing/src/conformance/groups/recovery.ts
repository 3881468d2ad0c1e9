/**
 * The recovery group (capabilities recover and adopt): what a dead parent left
 * is found, reaped or adopted, and only that.
 *
 * @since 0.1.0
 */
import { makeJobExecutor, Message } from "@flexec/core"
import { Effect, Either, Exit, Option, Scope } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { expect, it } from "../../internal/vitest.js"
import { fixtureFacts } from "../../fixtures.js"
import { mockClient } from "../../mocks.js"
import type { LauncherContext } from "../context.js"
import { testRunLabel } from "../context.js"
import { pollUntil } from "../pollUntil.js"
import { conformanceEchoFixture, conformanceJobFixture, conformanceTopics } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, testWith, withCaps } from "./register.js"
import { within, check, isTruthfulDeath, show, treeGone } from "./probes.js"
import { orphanOf, recoverWith, killBehindTheBack } from "./orphans.js"

/** Recovery (capability recover): what a dead parent left is found, reaped or adopted, and only that. */
export const recoveryTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "recovery", (caps) => {
    testWith(common, caps, "recover", "a SIGTERM-ignoring job left by a dead parent is reaped by the next executor of the instance", (h) =>
      Effect.gen(function* () {
        const orphan = yield* orphanOf(h, "rec", conformanceJobFixture, ["stubborn"])
        const { found, launcher } = yield* recoverWith(h, orphan)
        const scope2 = yield* Scope.make()
        const e2 = yield* makeJobExecutor({ ...orphan.base, launcher, recover: "reap" }).pipe(Scope.extend(scope2))
        yield* check(found.some((j) => j.jobId === orphan.jobId), `recover() did not report the orphan ${orphan.jobId} (found ${show(found.map((j) => j.jobId))})`)
        expect((yield* e2.recovered).map((r) => [r.jobId, r.action])).toContainEqual([orphan.jobId, "reaped"])
        yield* pollUntil("the reaped orphan to be gone", () => orphan.real.poll.pipe(Effect.map(Option.isSome)), common.timeouts.eventMs).pipe(
          Effect.mapError(() => new Error(`the reaped orphan, which ignores SIGTERM, still runs ${common.timeouts.eventMs} ms after recovery: reaping must escalate to SIGKILL`))
        )
        if (caps.processes === true) yield* treeGone(h, orphan.jobId, "recovery (the reaped orphan's processes)")
        yield* Scope.close(scope2, Exit.void)
        yield* orphan.dispose
      }))

    testWith(common, caps, ["recover", "processes"], "a recovered job killed behind the backend's back comes out lost (or as the death its scheduler recorded), not as a clean exit", (h) =>
      Effect.gen(function* () {
        const orphan = yield* orphanOf(h, "lost", conformanceEchoFixture)
        const { found, launcher } = yield* recoverWith(h, orphan)
        const recovered = yield* within(common.timeouts.eventMs, "recover() did not return", launcher.recover!(orphan.context.instanceId))
        const job = recovered.find((j) => j.jobId === orphan.jobId)
        yield* check(job !== undefined, `recover() did not report the live orphan ${orphan.jobId} (found ${show(found.map((j) => j.jobId))})`)
        yield* killBehindTheBack(orphan.jobId)
        const exit = yield* within(common.timeouts.eventMs, "the recovered handle's wait did not resolve after its job was killed", job!.handle.wait)
        // a process backend has no record of it: lost; a scheduler that recorded the kill reports that death
        yield* check(isTruthfulDeath(exit), `a recovered job killed behind the backend's back came out ${show(exit)}: it must come out lost, or as the death really recorded (a signal or a non-zero code), never as a clean exit`)
        yield* orphan.dispose
      }))

    testWith(common, caps, "recover", "recover(A) reports A's orphans and never B's", (h) =>
      Effect.gen(function* () {
        const a = yield* orphanOf(h, "a", conformanceEchoFixture)
        const b = yield* orphanOf(h, "b", conformanceEchoFixture)
        for (const [mine, other] of [[a, b], [b, a]] as const) {
          const { launcher } = yield* recoverWith(h, mine)
          const ids = (yield* within(common.timeouts.eventMs, "recover() did not return", launcher.recover!(mine.context.instanceId))).map((j): string => j.jobId)
          yield* check(!ids.includes(other.jobId), `recover(${mine.context.instanceId}) returned ${other.jobId}, a job of instance ${other.context.instanceId}`)
          yield* check(ids.includes(mine.jobId), `recover(${mine.context.instanceId}) did not return its own orphan ${mine.jobId} (got ${show(ids)})`)
        }
        yield* a.dispose
        yield* b.dispose
      }))

    const staleName = "a stale record whose pid now belongs to an unrelated process is not claimed, and that process survives recovery"
    if (common.staleRecord === undefined) {
      it.skip(`${staleName} [skipped: capabilities.recover=${String(caps.recover)}, capabilities.processes=${String(caps.processes ?? false)}; needs the backend's staleRecord hook (conformanceSuite option)]`, () => undefined)
    } else {
      const hook = common.staleRecord
      testWith(common, caps, ["recover", "processes"], staleName, (h) =>
        Effect.gen(function* () {
          const unrelated = yield* Effect.acquireRelease(
            Effect.sync(() => cp.spawn(process.execPath, ["-e", "setInterval(() => {}, 1 << 30)"], { stdio: "ignore", detached: true, env: { PATH: process.env.PATH ?? "" } })),
            (child) => Effect.sync(() => child.kill("SIGKILL"))
          )
          yield* h.until("the unrelated process to run", () => unrelated.pid !== undefined && fs.existsSync(`/proc/${unrelated.pid}`))
          const context: LauncherContext = { runId: common.runId, instanceId: `${h.instanceId}-stale`, runtimeDir: path.join(h.runtimeDir, "..", "rt-stale") }
          fs.mkdirSync(context.runtimeDir, { recursive: true })
          const jobId = h.newJobId("stale")
          const wrote = hook({ ...context, jobId, pid: unrelated.pid! })
          if (Effect.isEffect(wrote)) yield* wrote
          else if (wrote !== undefined) yield* Effect.promise(() => Promise.resolve(wrote))
          const { found, launcher } = yield* recoverWith(h, { context })
          const scope2 = yield* Scope.make()
          yield* makeJobExecutor({
            client: mockClient(),
            runtimeDir: context.runtimeDir,
            instanceId: context.instanceId,
            graceMs: common.timeouts.graceMs,
            killTimeoutMs: common.timeouts.killTimeoutMs,
            ...common.executorOptions,
            labels: { ...common.executorOptions.labels, [testRunLabel]: common.runId },
            launcher,
            recover: "reap"
          }).pipe(Scope.extend(scope2))
          yield* check(!found.some((j) => j.jobId === jobId), `recover() claimed ${jobId}, whose recorded pid ${unrelated.pid} belongs to an unrelated process`)
          yield* Scope.close(scope2, Exit.void)
          yield* check(unrelated.exitCode === null && unrelated.signalCode === null, `recovery ended the unrelated process ${unrelated.pid} (${unrelated.signalCode ?? unrelated.exitCode}) named by a stale record`)
        }))
    }

    testWith(common, caps, "adopt", "recover: \"adopt\" keeps a dead parent's job: Recovered adopted, sendToJob reaches it, its completion is reported", (h) =>
      Effect.gen(function* () {
        const orphan = yield* orphanOf(h, "adopt", conformanceEchoFixture)
        const { launcher } = yield* recoverWith(h, orphan)
        const scope2 = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope2, Exit.void))
        const e2 = yield* makeJobExecutor({ ...orphan.base, launcher, recover: "adopt" }).pipe(Scope.extend(scope2))
        expect((yield* e2.recovered).map((r) => [r.jobId, r.action]), "the adopting executor's recovery records").toContainEqual([orphan.jobId, "adopted"])
        const payload = { adopted: orphan.jobId }
        const askOnce = e2.sendToJob({ jobId: orphan.jobId, channel: fixtureFacts.channel, topic: conformanceTopics.echo, message: Message.make(payload), timeout: "2 seconds" })
        let reply = yield* Effect.either(askOnce)
        yield* pollUntil("the adopted job to answer", () => (Either.isRight(reply) ? true : Effect.either(askOnce).pipe(Effect.map((r) => ((reply = r), Either.isRight(r))))), common.timeouts.eventMs).pipe(
          Effect.mapError(() => new Error(`the adopted job never answered sendToJob: ${Either.isLeft(reply) ? String(reply.left) : ""}`))
        )
        expect(Either.getOrThrow(reply).payload).toEqual(payload)
        yield* e2.abortApp(orphan.jobId)
        const outcome = yield* within(common.timeouts.eventMs, "the adopted job's completion was not reported", e2.awaitCompletion(orphan.jobId))
        expect(outcome.returnCode).toBe(9)
        yield* pollUntil("the adopted job to be gone", () => orphan.real.poll.pipe(Effect.map(Option.isSome)), common.timeouts.eventMs).pipe(
          Effect.mapError(() => new Error("the adopted job still runs after its abort was reported"))
        )
        yield* Scope.close(scope2, Exit.void)
        yield* orphan.dispose
      }))

    testWith(common, caps, ["adopt", "processes"], "an adopted job that vanishes comes out lost (127) (or as the death its scheduler recorded), not as a clean exit", (h) =>
      Effect.gen(function* () {
        const orphan = yield* orphanOf(h, "vanish", conformanceEchoFixture)
        const { launcher } = yield* recoverWith(h, orphan)
        const scope2 = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope2, Exit.void))
        const e2 = yield* makeJobExecutor({ ...orphan.base, launcher, recover: "adopt" }).pipe(Scope.extend(scope2))
        expect((yield* e2.jobs).map((j) => j.jobId)).toContain(orphan.jobId)
        yield* killBehindTheBack(orphan.jobId)
        const outcome = yield* within(common.timeouts.eventMs, "the vanished adopted job's completion was not reported", e2.awaitCompletion(orphan.jobId))
        yield* check(isTruthfulDeath(outcome.exit), `an adopted job that vanished came out ${show(outcome.exit)}: it must come out lost, or as the death really recorded, never as a clean exit`)
        // lost is the unknown end (127); a recorded death of a started job is an execution error (1)
        expect(outcome.returnCode, `the return code of an adopted job that vanished with ${show(outcome.exit)}`).toBe(outcome.exit.lost ? 127 : 1)
        yield* Scope.close(scope2, Exit.void)
        yield* orphan.dispose
      }))
  })
}
