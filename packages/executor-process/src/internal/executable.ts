/**
 * Finds the program a job's argv[0] names, the way execvp would, but against
 * the job's own PATH (never the parent's), so the launch can fail with a
 * reason that names the path before anything is spawned.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as path from "node:path"

/** The program to run, or why there is none. */
export type Resolved = { readonly _tag: "Found"; readonly path: string } | { readonly _tag: "Missing"; readonly reason: string }

const problemOf = (file: string): string | undefined => {
  let stat: fs.Stats
  try {
    stat = fs.statSync(file)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    return code === "ENOENT" || code === "ENOTDIR" ? `${file} does not exist` : `${file} cannot be read (${code ?? String(e)})`
  }
  if (stat.isDirectory()) return `${file} is a directory`
  if (!stat.isFile()) return `${file} is not a regular file`
  try {
    fs.accessSync(file, fs.constants.X_OK)
  } catch {
    return `${file} is not executable`
  }
  return undefined
}

/**
 * Resolves `program` (argv[0]): a name with a `/` is taken relative to `cwd`; a
 * bare name is looked up in `searchPath` (the job's PATH; empty entries are
 * skipped rather than meaning the current directory).
 */
export const resolveExecutable = (program: string, cwd: string, searchPath: string | undefined): Resolved => {
  if (program.length === 0) return { _tag: "Missing", reason: "the command's program (argv[0]) is empty" }
  if (program.includes("\0")) return { _tag: "Missing", reason: "the command's program (argv[0]) contains a NUL byte" }
  if (program.includes("/")) {
    const file = path.resolve(cwd, program)
    const problem = problemOf(file)
    return problem === undefined ? { _tag: "Found", path: file } : { _tag: "Missing", reason: `cannot run ${problem}` }
  }
  const dirs = (searchPath ?? "").split(path.delimiter).filter((d) => d.length > 0)
  if (dirs.length === 0) {
    return { _tag: "Missing", reason: `cannot run '${program}': the job's PATH is empty, give an absolute path` }
  }
  let firstProblem: string | undefined
  for (const dir of dirs) {
    const file = path.resolve(cwd, dir, program)
    const problem = problemOf(file)
    if (problem === undefined) return { _tag: "Found", path: file }
    if (firstProblem === undefined && !problem.endsWith("does not exist")) firstProblem = problem
  }
  return {
    _tag: "Missing",
    reason:
      firstProblem !== undefined
        ? `cannot run '${program}': ${firstProblem}`
        : `cannot run '${program}': not found on the job's PATH (${dirs.join(path.delimiter)})`
  }
}
