import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { ProcessJobLauncher } from "../src/ProcessJobLauncher.js"
import { InvalidJobMeta } from "../src/internal/core.js"
import type { JobMeta } from "../src/internal/core.js"

const launcher = ProcessJobLauncher.make()
const check = (meta: JobMeta) => Effect.either(launcher.validate(meta, "site-1"))

describe("validate", () => {
  it.effect("accepts a meta without a process mode, and other backends' modes", () =>
    Effect.gen(function* () {
      expect((yield* check({ job_id: "j" }))._tag).toBe("Right")
      expect((yield* check({ job_id: "j", launcher_spec: { "site-1": { docker: { privileged: true } } } }))._tag).toBe("Right")
      expect((yield* check({ job_id: "j", launcher_spec: { default: { process: {} } } }))._tag).toBe("Right")
    }))

  it.effect("accepts a job command with byoc", () =>
    Effect.gen(function* () {
      const meta: JobMeta = { job_id: "j", byoc: true, launcher_spec: { "site-1": { process: { command: ["python3", "{appDir}/main.py"] } } } }
      expect((yield* check(meta))._tag).toBe("Right")
    }))

  it.effect("refuses a job command without byoc, naming the key", () =>
    Effect.gen(function* () {
      for (const [where, meta] of [
        ["launcher_spec.site-1.process.command", { job_id: "j", launcher_spec: { "site-1": { process: { command: ["sh"] } } } }],
        ["launcher_spec.default.process.command", { job_id: "j", byoc: false, launcher_spec: { default: { process: { command: ["sh"] } } } }]
      ] as const) {
        const error = yield* Effect.flip(launcher.validate(meta, "site-1"))
        expect(error).toBeInstanceOf(InvalidJobMeta)
        expect(error.jobId).toBe("j")
        expect(error.issues).toContain(where)
        expect(error.issues).toContain("byoc")
      }
    }))

  it.effect("refuses a command that is not a non-empty array of strings", () =>
    Effect.gen(function* () {
      for (const command of [[], "sh -c x", ["sh", 1], null]) {
        const error = yield* Effect.flip(
          launcher.validate({ job_id: "j", byoc: true, launcher_spec: { "site-1": { process: { command } } } }, "site-1")
        )
        expect(error.issues).toContain("launcher_spec.site-1.process.command: must be a non-empty array of strings")
      }
    }))

  it.effect("refuses unknown keys, naming them and the allowed ones", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        launcher.validate(
          { job_id: "j", byoc: true, launcher_spec: { default: { process: { env: {} } }, "site-1": { process: { shell: true } } } },
          "site-1"
        )
      )
      expect(error.issues).toContain("launcher_spec.default.process.env")
      expect(error.issues).toContain("launcher_spec.site-1.process.shell")
      expect(error.issues).toMatch(/allowed .*: command$/)
    }))

  it.effect("ignores another site's entry", () =>
    Effect.gen(function* () {
      expect((yield* check({ job_id: "j", launcher_spec: { "site-2": { process: { command: ["sh"] } } } }))._tag).toBe("Right")
    }))
})
