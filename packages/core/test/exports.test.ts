import { describe, expect, it } from "vitest"
import { spawnSync } from "node:child_process"
import * as path from "node:path"

const root = path.resolve(__dirname, "..")
const node = (args: Array<string>) => spawnSync(process.execPath, args, { cwd: root, encoding: "utf8", env: { PATH: process.env.PATH } })

// These check the built package (dist/), as a user imports it: `npm test` builds first.
describe("package exports", () => {
  it("ESM: @flexec/core, @flexec/core/promise and @flexec/core/worker", () => {
    const r = node([
      "--input-type=module",
      "-e",
      `import { makeJobExecutor, ClientExecutor, InvalidJobId, JobReturnCode } from "@flexec/core"
       import { toPromiseExecutor } from "@flexec/core/promise"
       import { runJob, ConfigError } from "@flexec/core/worker"
       console.log([typeof makeJobExecutor, typeof ClientExecutor, typeof InvalidJobId, JobReturnCode.Aborted, typeof toPromiseExecutor, typeof runJob, typeof ConfigError].join(","))`
    ])
    expect(r.stderr).toBe("")
    expect(r.stdout.trim()).toBe("function,function,function,9,function,function,function")
  })

  it("CJS: the same names through require", () => {
    const r = node([
      "-e",
      `const core = require("@flexec/core"); const p = require("@flexec/core/promise"); const w = require("@flexec/core/worker")
       console.log([typeof core.makeJobExecutor, typeof core.ClientExecutor, core.JobReturnCode.InfrastructureError, typeof p.toPromiseExecutor, typeof w.runJob, typeof w.UnsafeComponentError].join(","))`
    ])
    expect(r.stderr).toBe("")
    expect(r.stdout.trim()).toBe("function,function,104,function,function,function")
  })

  it("the worker entry loads no Effect", () => {
    const r = node([
      "-e",
      `require("@flexec/core/worker"); const loaded = Object.keys(require.cache).filter((f) => f.includes("node_modules/effect")); console.log(loaded.length)`
    ])
    expect(r.stderr).toBe("")
    expect(r.stdout.trim()).toBe("0")
  })
})
