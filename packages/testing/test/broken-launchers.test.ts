/**
 * The broken-launcher wrappers of `@flexec/testing` on a class-based launcher:
 * its members live on its prototype (methods and getters) and its state in
 * private fields, so a wrapper that copied it (`{ ...launcher }`) would lose
 * them, and one that called its methods with another `this` would throw. Each
 * wrapper must keep them, called on the instance itself; its handles too.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Capabilities, JobExit, JobHandle, JobLauncher, JobMeta, LaunchRequest, RecoveredJob, TerminateOptions } from "@flexec/core"
import { BackendUnavailable, InvalidJobMeta, LaunchFailed, makeJobExecutor } from "@flexec/core"
import type { Option } from "effect"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { InMemoryLauncher } from "../src/index.js"
import {
  brokenCall,
  brokenMessage,
  deployJob,
  handleWithout,
  InMemoryJobLauncher,
  launchFailingAfter,
  launchWithoutHandle,
  mapHandles,
  mockClient,
  waitHangsAfterTerminate,
  waitUnavailableAfterTerminate
} from "../src/index.js"

/** A handle whose members are prototype getters and a method over a private field. */
class ClassHandle implements JobHandle {
  readonly #inner: JobHandle
  #terminates = 0
  constructor(inner: JobHandle) {
    this.#inner = inner
  }
  get jobId() {
    return this.#inner.jobId
  }
  get poll(): Effect.Effect<Option.Option<JobExit>, BackendUnavailable> {
    return this.#inner.poll
  }
  get wait(): Effect.Effect<JobExit, BackendUnavailable> {
    return this.#inner.wait
  }
  terminate(options?: TerminateOptions): Effect.Effect<void> {
    this.#terminates++
    return this.#inner.terminate(options)
  }
  terminates(): number {
    return this.#terminates
  }
}

/** A launcher whose members live on its prototype and whose state is private. */
class ClassLauncher implements JobLauncher {
  readonly #inner: InMemoryLauncher
  #launches = 0
  #validations = 0
  readonly handles: Array<ClassHandle> = []
  constructor(inner: InMemoryLauncher) {
    this.#inner = inner
  }
  get name() {
    return "class-launcher"
  }
  get capabilities(): Capabilities {
    return { ...this.#inner.capabilities, recover: true }
  }
  launch(request: LaunchRequest): ReturnType<JobLauncher["launch"]> {
    this.#launches++
    return Effect.map(this.#inner.launch(request), (h) => {
      const handle = new ClassHandle(h)
      this.handles.push(handle)
      return handle
    })
  }
  validate(_meta: JobMeta, _site: string): Effect.Effect<void, InvalidJobMeta> {
    this.#validations++
    return Effect.void
  }
  recover(_instanceId: string): Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable> {
    return Effect.succeed([])
  }
  running(): number {
    return this.#inner.running()
  }
  counts() {
    return { launches: this.#launches, validations: this.#validations }
  }
}

const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/** An executor over `wrap(launcher)`, with a workspace, on the live clock with short durations. */
const setup = (wrap: (launcher: ClassLauncher) => JobLauncher) =>
  Effect.gen(function* () {
    const workspace = yield* tempDir("flx-cls-ws-")
    const runtimeDir = yield* tempDir("flx-cls-rt-")
    const original = new ClassLauncher(yield* InMemoryJobLauncher.make())
    const launcher = wrap(original)
    const executor = yield* makeJobExecutor({ client: mockClient(), launcher, runtimeDir, graceMs: 200, killTimeoutMs: 300, backendSlackMs: 1_000 })
    const start = (jobId: string, fixture: "exit-with" | "ignore-abort", args: ReadonlyArray<number> = []) =>
      Effect.gen(function* () {
        const job = yield* deployJob({ workspace, jobId, clientName: mockClient().clientName, fixture, args })
        yield* executor.startApp({ jobId, jobMeta: job.meta, args: { workspace, set: job.set } })
      })
    return { original, launcher, executor, start }
  })

/** Every wrapper of BrokenLaunchers, by name. */
const wrappers: ReadonlyArray<readonly [string, (l: ClassLauncher) => JobLauncher]> = [
  ["mapHandles", (l) => mapHandles(l, (h) => h)],
  ["brokenCall terminate", (l) => brokenCall(l, "terminate", "hang")],
  ["brokenCall wait", (l) => brokenCall(l, "wait", "hang")],
  ["brokenCall poll", (l) => brokenCall(l, "poll", "hang")],
  ["brokenCall recover", (l) => brokenCall(l, "recover", "hang")],
  ["brokenCall validate", (l) => brokenCall(l, "validate", "hang")],
  ["waitHangsAfterTerminate", (l) => waitHangsAfterTerminate(l)],
  ["waitUnavailableAfterTerminate", (l) => waitUnavailableAfterTerminate(l)],
  ["launchWithoutHandle", (l) => launchWithoutHandle(l)],
  ["handleWithout", (l) => handleWithout(l, ["poll"])],
  ["launchFailingAfter", (l) => launchFailingAfter(l, 0)]
]

describe("BrokenLaunchers on a class-based launcher (members on its prototype, state in private fields)", () => {
  for (const [name, wrap] of wrappers) {
    it.scoped(`${name} keeps the launcher's prototype members, called on the instance itself`, () =>
      Effect.gen(function* () {
        const original = new ClassLauncher(yield* InMemoryJobLauncher.make())
        const wrapped = wrap(original) as ClassLauncher
        expect(wrapped.name, "the name getter").toBe("class-launcher")
        expect(wrapped.capabilities, "the capabilities getter").toEqual(original.capabilities)
        expect(typeof wrapped.launch, "launch").toBe("function")
        expect(wrapped.running(), "an extra method reading a private field").toBe(0)
        if (name !== "brokenCall validate") {
          yield* wrapped.validate({} as JobMeta, "site-1")
          expect(original.counts().validations, "validate ran on the instance").toBe(1)
        }
        if (name !== "brokenCall recover") expect(yield* wrapped.recover("i-1")).toEqual([])
        expect(wrapped.counts(), "a method of the instance, through the wrapper").toEqual(original.counts())
        expect(({ ...wrapped } as unknown as JobLauncher).name, "a spread of the wrapper keeps the members").toBe("class-launcher")
      }))
  }

  it.scopedLive("a job runs to its outcome through each wrapper of its handles (class-based handles keep their getters and methods)", () =>
    Effect.gen(function* () {
      for (const [name, wrap] of [
        ["mapHandles", (l: ClassLauncher) => mapHandles(l, (h) => h)],
        ["handleWithout poll", (l: ClassLauncher) => handleWithout(l, ["poll"])],
        ["waitHangsAfterTerminate", (l: ClassLauncher) => waitHangsAfterTerminate(l)],
        ["waitUnavailableAfterTerminate", (l: ClassLauncher) => waitUnavailableAfterTerminate(l)]
      ] as const) {
        const { original, executor, start } = yield* setup(wrap)
        yield* start("exit-0", "exit-with", [0])
        const outcome = yield* executor.awaitCompletion("exit-0").pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`${name}: no completion`) }))
        expect(outcome, name).toMatchObject({ returnCode: 0, exit: { code: 0, signal: null, lost: false } })
        expect(original.counts(), `${name}: launched and validated on the instance`).toEqual({ launches: 1, validations: 1 })
        expect(original.running(), name).toBe(0)
      }
    }))

  it.scopedLive("a broken terminate of a class-based handle: abortApp of a job that ignores the abort returns, the handle's own terminate is never called", () =>
    Effect.gen(function* () {
      const { original, executor, start } = yield* setup((l) => brokenCall(l, "terminate", "defect"))
      yield* start("abort-1", "ignore-abort")
      const handle = original.handles[0]
      expect(handle, "the instance launched the job").toBeDefined()
      yield* executor.abortApp("abort-1")
      const outcome = yield* executor.awaitCompletion("abort-1")
      expect([9, 127]).toContain(outcome.returnCode)
      expect(handle!.terminates(), "the broken terminate replaced the handle's own").toBe(0)
    }))

  it.scopedLive("a broken validate of a class-based launcher: LaunchFailed naming the backend by its name getter, nothing launched", () =>
    Effect.gen(function* () {
      const { original, executor, start } = yield* setup((l) => brokenCall(l, "validate", "defect"))
      const error = yield* Effect.flip(start("bad-1", "exit-with", [0]))
      expect(error).toBeInstanceOf(LaunchFailed)
      expect((error as LaunchFailed).message).toContain(`backend "class-launcher"`)
      expect(String((error as LaunchFailed).message)).toContain(brokenMessage("validate"))
      expect(original.counts().launches).toBe(0)
      expect(yield* executor.jobs).toEqual([])
    }))
})
