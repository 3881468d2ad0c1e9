/** examples/hello-job/run.mjs (what `npm run example` runs) ends in Success. */
import * as path from "node:path"
import { expect, it } from "vitest"
import { examplesDir, runNode } from "./support.js"

it("npm run example: hello-job starts, answers, stops and succeeds", async () => {
  const { code, out } = await runNode(path.join(examplesDir, "hello-job", "run.mjs"))
  expect(out).toMatch(/started\n/)
  expect(out).toContain("job says: hello operator, from hello-job on site-1")
  expect(out).toMatch(/ stopped\n/)
  expect(out).toMatch(/completed return code 0, exit code 0, signal none/)
  expect(out).toMatch(/Success\n$/)
  expect(code).toBe(0)
})
