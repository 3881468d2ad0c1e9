/**
 * "Checked in CI for broken examples": every fenced code block of README.md,
 * packages/*\/README.md and docs/*.md whose info string is `ts check` or
 * `js check` (also `typescript check`, `javascript check`) is type-checked with
 * the TypeScript compiler API (and examples/<name>/README.md) against the built packages (`@flexec/*` resolve
 * through node_modules to their dist/*.d.ts). A snippet that does not compile
 * fails its test.
 *
 * A checked snippet is a complete module: ts → `.mts`; js → `.mjs`, or `.cjs`
 * when it uses `require(` and no `import`. JS is checked with `checkJs` (not
 * strict about implicit any). `FLEXEC_CHECK_ALL_SNIPPETS=1` checks every ts/js
 * block, marked or not, to find candidates.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"
import { describe, expect, it } from "vitest"
import { repoRoot } from "./support.js"

interface Snippet {
  readonly doc: string
  readonly line: number
  readonly lang: "ts" | "js"
  readonly code: string
  readonly file: string
}

const all = process.env.FLEXEC_CHECK_ALL_SNIPPETS === "1"

const docs = (): Array<string> => {
  const list = ["README.md"]
  for (const pkg of fs.readdirSync(path.join(repoRoot, "packages")).sort()) {
    if (fs.existsSync(path.join(repoRoot, "packages", pkg, "README.md"))) list.push(`packages/${pkg}/README.md`)
  }
  for (const doc of fs.readdirSync(path.join(repoRoot, "docs")).sort()) if (doc.endsWith(".md")) list.push(`docs/${doc}`)
  for (const ex of fs.readdirSync(path.join(repoRoot, "examples")).sort()) {
    if (fs.existsSync(path.join(repoRoot, "examples", ex, "README.md"))) list.push(`examples/${ex}/README.md`)
  }
  return list
}

/** The checked fenced blocks of one markdown file (indented fences too). */
export const extractSnippets = (doc: string, text: string): Array<Snippet> => {
  const snippets: Array<Snippet> = []
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(ts|typescript|js|javascript)(?:\s+(.*))?$/.exec(lines[i]!)
    if (!open) continue
    const indent = open[1]!
    const lang = open[2]!.startsWith("t") ? "ts" : "js"
    const checked = (open[3] ?? "").split(/\s+/).includes("check")
    const body: Array<string> = []
    let j = i + 1
    for (; j < lines.length && lines[j]!.trim() !== "```"; j++) body.push(lines[j]!.startsWith(indent) ? lines[j]!.slice(indent.length) : lines[j]!)
    if (checked || all) {
      const code = body.join("\n") + "\n"
      const ext = lang === "ts" ? "mts" : /\brequire\(/.test(code) && !/^\s*import\s/m.test(code) ? "cjs" : "mjs"
      const name = `${doc.replace(/[/.]/g, "_")}_L${i + 1}.${ext}`
      snippets.push({ doc, line: i + 1, lang, code, file: path.join(repoRoot, "examples", "test", ".snippets", name) })
    }
    i = j
  }
  return snippets
}

const snippets = docs().flatMap((doc) => extractSnippets(doc, fs.readFileSync(path.join(repoRoot, doc), "utf8")))

/** Type-checks all snippets in one program; returns the formatted diagnostics of each file. */
const check = (list: ReadonlyArray<Snippet>): Map<string, string> => {
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2022.d.ts"],
    types: ["node"],
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    esModuleInterop: true,
    skipLibCheck: true,
    allowJs: true,
    checkJs: true,
    noEmit: true
  }
  const virtual = new Map(list.map((s) => [s.file, s.code]))
  const host = ts.createCompilerHost(options)
  const { fileExists, readFile, getSourceFile } = host
  host.fileExists = (f) => virtual.has(f) || fileExists.call(host, f)
  host.readFile = (f) => virtual.get(f) ?? readFile.call(host, f)
  host.getSourceFile = (f, lang, onError, create) => {
    const code = virtual.get(f)
    return code !== undefined ? ts.createSourceFile(f, code, lang, true) : getSourceFile.call(host, f, lang, onError, create)
  }
  const program = ts.createProgram([...virtual.keys()], options, host)
  const result = new Map<string, string>()
  for (const s of list) {
    const source = program.getSourceFile(s.file)!
    const diagnostics = [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)].filter(
      // JS snippets are not held to noImplicitAny (7xxx codes); everything else counts.
      (d) => s.lang === "ts" || d.code < 7000 || d.code >= 8000
    )
    result.set(
      s.file,
      diagnostics
        .map((d) => {
          const { line } = d.start !== undefined ? source.getLineAndCharacterOfPosition(d.start) : { line: -1 }
          return `${s.doc}:${s.line + 1 + line}: TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`
        })
        .join("\n")
    )
  }
  return result
}

describe("checked doc snippets compile against the built packages", () => {
  it("the docs carry checked snippets (the convention is in use)", () => {
    expect(snippets.length).toBeGreaterThanOrEqual(5)
  })

  const results = check(snippets)
  for (const s of snippets) {
    it(`${s.doc}:${s.line} (${s.lang})`, () => {
      expect(results.get(s.file)).toBe("")
    })
  }

  it("a snippet that does not compile is reported with its doc line", () => {
    const [broken] = extractSnippets("BROKEN.md", "x\n```ts check\nimport { createProcessExecutor } from \"@flexec/executor-process\"\nawait createProcessExecutor({ clientName: 1 })\n```\n")
    expect(broken).toBeDefined()
    expect(check([broken!]).get(broken!.file)).toMatch(/^BROKEN\.md:4: TS2353 /)
  })
})
