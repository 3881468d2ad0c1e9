/**
 * Docs that run as printed: every fenced code block of README.md, docs/*.md,
 * packages/*\/README.md and examples/*\/README.md says in its info string
 * whether it runs, and those that do are run.
 *
 * - `run` (js / ts): a program. It is written to `examples/test/.snippets/<doc>_L<line>/`
 *   (ts is transpiled; `@flexec/*` and `effect` resolve to the built packages) and run with
 *   `node`, its working directory holding `main.js` (the doc's last `job` block before it)
 *   and, for an example's README, the example's files. It must exit 0 within 90 s.
 *   A snippet deploys its own job (into a temporary workspace), as a site would.
 * - `job` (js): a job's `app/main.js`. It is deployed into a job folder (meta.json + app/)
 *   and run with `flexec run`; it must end with return code 0.
 * - `no-run`: cannot run on its own — shell lines, another language, a fragment or an
 *   interface listing, a test file for vitest, a snippet that needs an image of your own.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"
import { describe, expect, it } from "vitest"
import { repoRoot } from "./support.js"

interface Block {
  readonly doc: string
  readonly line: number
  readonly lang: string
  readonly marks: ReadonlyArray<string>
  readonly code: string
}

const docs = (): Array<string> => {
  const list = ["README.md"]
  for (const doc of fs.readdirSync(path.join(repoRoot, "docs")).sort()) if (doc.endsWith(".md")) list.push(`docs/${doc}`)
  for (const dir of ["packages", "examples"]) {
    for (const name of fs.readdirSync(path.join(repoRoot, dir)).sort()) {
      if (fs.existsSync(path.join(repoRoot, dir, name, "README.md"))) list.push(`${dir}/${name}/README.md`)
    }
  }
  return list
}

/** Every fenced block of a markdown text (indented fences too), with its info string's words. */
export const blocksOf = (doc: string, text: string): Array<Block> => {
  const blocks: Array<Block> = []
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(.*)$/.exec(lines[i]!)
    if (!open) continue
    const indent = open[1]!
    const [lang = "", ...marks] = open[2]!.trim().split(/\s+/).filter((w) => w !== "")
    const body: Array<string> = []
    let j = i + 1
    for (; j < lines.length && lines[j]!.trim() !== "```"; j++) body.push(lines[j]!.startsWith(indent) ? lines[j]!.slice(indent.length) : lines[j]!)
    blocks.push({ doc, line: i + 1, lang, marks, code: body.join("\n") + "\n" })
    i = j
  }
  return blocks
}

const all = docs().flatMap((doc) => blocksOf(doc, fs.readFileSync(path.join(repoRoot, doc), "utf8")))
const runMarks = ["run", "job", "no-run"]
const bin = path.join(repoRoot, "packages", "cli", "dist", "bin.cjs")
const snippetsDir = path.join(repoRoot, "examples", "test", ".snippets")

/** Runs `argv` in `cwd`; resolves with its exit code (or signal) and output, or kills it after `ms`. */
const run = (argv: ReadonlyArray<string>, cwd: string, ms: number) =>
  new Promise<{ code: number | string; output: string }>((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (c: Buffer) => void (output += c.toString()))
    child.stderr.on("data", (c: Buffer) => void (output += c.toString()))
    const timer = setTimeout(() => {
      output += `\n(killed after ${ms} ms)`
      child.kill("SIGTERM")
    }, ms)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? signal ?? -1, output })
    })
  })

const isCode = (b: Block) => /^(js|ts|javascript|typescript)$/.test(b.lang)
const nameOf = (b: Block) => `${b.doc.replace(/[/.]/g, "_")}_L${b.line}`

/** The program of a `run` block: ts transpiled to an ES module, js as it is (CommonJS when it uses require). */
const programOf = (b: Block): { file: string; text: string } => {
  if (b.lang.startsWith("t")) {
    const out = ts.transpileModule(b.code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } })
    return { file: "snippet.mjs", text: out.outputText }
  }
  const cjs = /\brequire\(/.test(b.code) && !/^\s*import\s/m.test(b.code)
  return { file: cjs ? "snippet.cjs" : "snippet.mjs", text: b.code }
}

describe("every doc code block says whether it runs", () => {
  it("each block's info string has run, job or no-run (see this file's header)", () => {
    const unmarked = all.filter((b) => b.marks.filter((m) => runMarks.includes(m)).length !== 1).map((b) => `${b.doc}:${b.line} \`\`\`${b.lang} ${b.marks.join(" ")}`)
    expect(unmarked).toEqual([])
  })

  it("run and job blocks are JavaScript or TypeScript; job blocks JavaScript", () => {
    const wrong = all.filter((b) => (b.marks.includes("run") && !isCode(b)) || (b.marks.includes("job") && !/^(js|javascript)$/.test(b.lang)))
    expect(wrong.map((b) => `${b.doc}:${b.line}`)).toEqual([])
  })

  it("the docs have runnable blocks (the convention is in use)", () => {
    expect(all.filter((b) => b.marks.includes("run")).length).toBeGreaterThanOrEqual(5)
    expect(all.filter((b) => b.marks.includes("job")).length).toBeGreaterThanOrEqual(2)
  })
})

describe("doc code blocks run as printed", () => {
  fs.rmSync(snippetsDir, { recursive: true, force: true })
  for (const [index, b] of all.entries()) {
    if (b.marks.includes("job")) {
      it(`${b.doc}:${b.line} (a job, through flexec run) ends with return code 0`, async () => {
        const dir = path.join(snippetsDir, nameOf(b), "job")
        fs.mkdirSync(path.join(dir, "app"), { recursive: true })
        fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify({ job_id: "doc-job" }))
        fs.writeFileSync(path.join(dir, "app", "main.js"), b.code)
        const { code, output } = await run([process.execPath, bin, "run", dir], repoRoot, 90_000)
        expect(code, output).toBe(0)
      }, 120_000)
    }
    if (b.marks.includes("run")) {
      it(`${b.doc}:${b.line} (${b.lang}) runs to exit 0`, async () => {
        const dir = path.join(snippetsDir, nameOf(b))
        fs.mkdirSync(dir, { recursive: true })
        const example = /^examples\/([^/]+)\/README\.md$/.exec(b.doc)?.[1]
        if (example !== undefined) {
          fs.cpSync(path.join(repoRoot, "examples", example), dir, { recursive: true, filter: (src) => !src.endsWith("README.md") })
        }
        const job = all.slice(0, index).filter((o) => o.doc === b.doc && o.marks.includes("job")).at(-1)
        if (job !== undefined) fs.writeFileSync(path.join(dir, "main.js"), job.code)
        const program = programOf(b)
        fs.writeFileSync(path.join(dir, program.file), program.text)
        const { code, output } = await run([process.execPath, program.file], dir, 90_000)
        expect(code, output).toBe(0)
      }, 120_000)
    }
  }
})
