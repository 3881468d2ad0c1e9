/**
 * examples/embed: both embedding programs run the hello job to success as
 * separate Node processes (as a site would run them).
 */
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { examplesDir, runNode } from "./support.js"

describe("examples/embed", () => {
  for (const name of ["embed-promise.mjs", "embed-effect.mjs"]) {
    it(`${name} runs the hello job to success`, async () => {
      const { code, out } = await runNode(path.join(examplesDir, "embed", name))
      expect(out).toContain("job says: hello embedder, from embedded-hello on site-1")
      expect(out).toMatch(/completed: return code 0, exit \{"code":0,"signal":null/)
      expect(code).toBe(0)
    })
  }
})
