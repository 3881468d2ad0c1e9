/** What the engine accepts as a launch's error: its own classes, or fields that decode into them. */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect } from "effect"
import { makeJobExecutor } from "../src/JobExecutor.js"
import type { JobLauncher } from "../src/JobLauncher.js"
import { deploy, tempDir } from "./support/setup.js"
import { BackendUnavailable, ImageNotFound, LaunchFailed } from "../src/Errors.js"
import type { JobId } from "../src/JobId.js"
import { launchErrorOf } from "../src/internal/backendGuard.js"

const jobId = "job-1" as JobId

describe("launchErrorOf", () => {
  it("keeps the declared errors as they are", () => {
    const own = new ImageNotFound({ jobId, image: "img:1" })
    expect(launchErrorOf("b", jobId, Cause.fail(own))).toBe(own)
  })

  it("decodes a launch error from another copy of the package (a plain object with the tag and fields) into ours", () => {
    const foreign = { _tag: "BackendUnavailable", backend: "docker", detail: "engine gone" }
    const error = launchErrorOf("b", jobId, Cause.fail(foreign))
    expect(error).toBeInstanceOf(BackendUnavailable)
    expect(error).toMatchObject({ backend: "docker", detail: "engine gone" })
  })

  it("a tag without its fields, another failure or a defect is LaunchFailed naming the backend and what it got", () => {
    const tagOnly = launchErrorOf("b", jobId, Cause.fail({ _tag: "LaunchFailed" }))
    expect(tagOnly).toBeInstanceOf(LaunchFailed)
    expect(tagOnly).toMatchObject({ jobId: "job-1", reason: 'backend "b": launch failed with an undeclared error: {"_tag":"LaunchFailed"}' })
    expect(launchErrorOf("b", jobId, Cause.fail("nope"))).toMatchObject({ _tag: "LaunchFailed", reason: 'backend "b": launch failed with an undeclared error: nope' })
    expect(launchErrorOf("b", jobId, Cause.die(new Error("boom")))).toMatchObject({ _tag: "LaunchFailed", reason: 'backend "b": launch threw a defect: boom' })
  })
})

describe("a class-based launcher", () => {
  it.scoped("its validate and recover are called on it (a prototype method's `this` is the launcher)", () =>
    Effect.gen(function* () {
      const calls: Array<string> = []
      class Launcher {
        readonly name = "class"
        readonly #tag = "mine"
        readonly capabilities = { signals: true, oomDetection: false, recover: true, adopt: false, logs: false }
        validate() {
          calls.push(`validate ${this.#tag}`)
          return Effect.void
        }
        recover() {
          calls.push(`recover ${this.#tag}`)
          return Effect.succeed([])
        }
        launch(): ReturnType<JobLauncher["launch"]> {
          return Effect.die("not launched here")
        }
      }
      const workspace = yield* tempDir("flexec-ws-")
      const runtimeDir = yield* tempDir("flexec-rt-")
      const executor = yield* makeJobExecutor({ client: { clientName: "site-1" }, launcher: new Launcher(), runtimeDir })
      deploy(workspace, "job-1")
      yield* Effect.exit(executor.startApp({ jobId: "job-1", args: { workspace } }))
      expect(calls).toEqual(["recover mine", "validate mine"])
    }))
})
