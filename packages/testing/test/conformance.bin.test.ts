/**
 * flexec-conformance, once, end to end: built to a scratch directory, run on a
 * tiny module exporting the in-memory launcher; the table and the JUnit file.
 */
import { execFile, execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { formatTable, parseArgs, rowsOf } from "../src/conformance/cli.js"

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const outDir = path.join(packageDir, ".conformance-bin-test")

afterAll(() => fs.rmSync(outDir, { recursive: true, force: true }))

describe("flexec-conformance", () => {
  it("parses its arguments", () => {
    expect(parseArgs(["./m.js", "--junit", "r.xml"])).toEqual({ module: "./m.js", junit: "r.xml" })
    expect(parseArgs(["./m.js"])).toEqual({ module: "./m.js", junit: undefined })
    expect(typeof parseArgs([])).toBe("string")
    expect(typeof parseArgs(["a", "b"])).toBe("string")
  })

  it("tables tasks: group, test, status, skip reason", () => {
    const rows = rowsOf([
      {
        type: "suite",
        name: "file",
        tasks: [
          {
            type: "suite",
            name: "x",
            tasks: [
              {
                type: "suite",
                name: "outcomes",
                tasks: [
                  { type: "test", name: "ok", result: { state: "pass" } },
                  { type: "test", name: "oom [skipped: capabilities.oomDetection=false]", mode: "skip" },
                  { type: "test", name: "bad", result: { state: "fail", errors: [{ message: "boom\nmore" }] } }
                ]
              }
            ]
          }
        ]
      }
    ])
    expect(rows).toEqual([
      { group: "outcomes", test: "ok", status: "pass", reason: "" },
      { group: "outcomes", test: "oom", status: "skip", reason: "capabilities.oomDetection=false" },
      { group: "outcomes", test: "bad", status: "fail", reason: "boom" }
    ])
    expect(formatTable(rows)).toMatch(/1 passed, 1 failed, 1 skipped/)
  })

  let built = false
  const build = () => {
    if (built) return
    const tsup = path.resolve(packageDir, "../../node_modules/.bin/tsup")
    execFileSync(tsup, ["src/index.ts", "src/bin.ts", "--no-config", "--format", "esm,cjs", "--out-dir", outDir, "--silent",
      "--external", "@flexec/core", "--external", "@flexec/core/worker", "--external", "vitest", "--external", "vitest/node", "--external", "effect"], { cwd: packageDir, stdio: "pipe" })
    built = true
  }
  const runBin = async (file: string, body: string, junit: string) => {
    build()
    const moduleFile = path.join(outDir, file)
    fs.writeFileSync(moduleFile, `import { InMemoryJobLauncher, conformancePrograms } from ${JSON.stringify(pathToFileURL(path.join(outDir, "index.js")).href)}\n${body}`)
    return new Promise<{ code: number; stdout: string }>((resolve) =>
      execFile(process.execPath, [path.join(outDir, "bin.cjs"), moduleFile, "--junit", junit], { cwd: packageDir, timeout: 170_000 }, (error, stdout) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout })
      )
    )
  }

  it("runs the suite on a module exporting the in-memory launcher: a table, exit 0, JUnit XML", async () => {
    const junit = path.join(outDir, "junit.xml")
    const { code, stdout } = await runBin(
      "my-launcher.mjs",
      `export const name = "tiny"\nexport const makeLauncher = () => InMemoryJobLauncher.make({ programs: conformancePrograms })\n`,
      junit
    )
    expect(stdout).toMatch(/lifecycle\s+.*\s+pass/)
    expect(stdout).toMatch(/oom.*skip\s+capabilities\.oomDetection=false/)
    expect(stdout).toMatch(/ 0 failed, \d+ skipped/)
    expect(code, stdout).toBe(0)
    const xml = fs.readFileSync(junit, "utf8")
    expect(xml).toMatch(/<testsuites/)
    expect(xml).toMatch(/lifecycle/)
  }, 180_000)

  it("on a broken launcher: exit 1, and the table and the JUnit failure name the broken promise", async () => {
    const junit = path.join(outDir, "junit-broken.xml")
    const { code, stdout } = await runBin(
      "broken-launcher.mjs",
      "import { Effect } from \"effect\"\n" +
        "export const name = \"accepts-any-spec\"\n" +
        "export const makeLauncher = () => Effect.map(InMemoryJobLauncher.make({ programs: conformancePrograms }), (l) => ({ ...l, validate: () => Effect.void }))\n",
      junit
    )
    expect(code, stdout).toBe(1)
    const promise = "an unknown key under launcher_spec.default.<launcher.name> is refused"
    expect(stdout).toMatch(/ 1 failed, /)
    expect(stdout).toContain(`broken promise "${promise}`)
    const xml = fs.readFileSync(junit, "utf8")
    const failure = /<testcase[^>]*name="([^"]*)"[^>]*>\s*<failure message="([^"]*)"/.exec(xml)
    expect(failure, xml.slice(0, 2000)).not.toBeNull()
    expect(failure![1]).toContain(promise.replace(/</g, "&lt;").replace(/>/g, "&gt;"))
    expect(failure![2]).toContain("broken promise &quot;")
  }, 180_000)
})
