/**
 * The README's image recipe, run as printed (with other tags, so the images
 * other tests use are left alone) in a folder where `@flexec/core` is
 * installed: it must leave nothing in that folder (no rootfs.tar), send a
 * small build context (not the working directory), and build an image whose
 * node loads the worker runtime. Needs a Docker engine and the docker command.
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { dockerReady } from "./helpers.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const readme = fs.readFileSync(path.join(here, "..", "README.md"), "utf8")
const coreDir = path.resolve(here, "..", "..", "core")
const ready = dockerReady("packages/executor-docker/test/image-recipe.test.ts")
const hasDockerCli = spawnSync("docker", ["version"], { stdio: "ignore" }).status === 0

/** The recipe: the sh block that imports the base image. */
const recipe = /```sh no-run\n(#!\/bin\/sh\n[\s\S]*?docker import[\s\S]*?)```/.exec(readme)?.[1]

const tag = crypto.randomBytes(3).toString("hex")
const base = `flexec-node:recipe-base-${tag}`
const image = `flexec-node:recipe-${tag}`
const dirs: Array<string> = []
afterAll(() => {
  spawnSync("docker", ["rmi", "-f", image, base], { stdio: "ignore" })
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

if (ready && !hasDockerCli && process.env.FLEXEC_REQUIRE_DOCKER === "1") {
  throw new Error("image-recipe.test.ts: the docker command is missing (the recipe runs it); FLEXEC_REQUIRE_DOCKER=1 makes that a failure")
}

describe.skipIf(!ready || !hasDockerCli)("the README's image recipe [needs a Docker engine and the docker command: skipped without them, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("is in the README", () => {
    expect(recipe).toBeDefined()
  })

  it("builds an image that runs the worker runtime, leaves nothing behind, and sends only a small context", () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-recipe-"))
    dirs.push(cwd)
    // an installed @flexec/core, and something big in the working directory that must not be sent
    fs.mkdirSync(path.join(cwd, "node_modules", "@flexec"), { recursive: true })
    fs.symlinkSync(coreDir, path.join(cwd, "node_modules", "@flexec", "core"))
    fs.writeFileSync(path.join(cwd, "big.bin"), Buffer.alloc(20 * 1024 * 1024))
    const before = fs.readdirSync(cwd).sort()
    const out = spawnSync("sh", ["-c", recipe!], { cwd, env: { ...process.env, BASE: base, IMAGE: image }, encoding: "utf8", timeout: 300_000 })
    expect(out.status, `${out.stdout}\n${out.stderr}`).toBe(0)
    expect(fs.readdirSync(cwd).sort()).toEqual(before)
    const context = /Sending build context to Docker daemon\s+([\d.]+)([kMG]?B)/.exec(out.stdout + out.stderr)
    expect(context, out.stdout).not.toBeNull()
    const bytes = Number(context![1]) * ({ B: 1, kB: 1e3, MB: 1e6, GB: 1e9 } as Record<string, number>)[context![2]!]!
    expect(bytes).toBeLessThan(5e6)
    const run = execFileSync(
      "docker",
      ["run", "--rm", "--network", "none", "--user", "1000:1000", image, "node", "-e", "const w = require('@flexec/core/worker'); console.log(typeof w.runJob, require('node:fs').statSync('/tmp').mode.toString(8))"],
      { encoding: "utf8", timeout: 60_000 }
    )
    expect(run.trim()).toBe("function 41777")
  }, 320_000)
})
