/**
 * `flexec run --backend docker` against the real engine, with the test image
 * (`bash scripts/build-test-image.sh`). Skips loudly without a usable engine,
 * except with FLEXEC_REQUIRE_DOCKER=1 (CI), where it fails.
 */
import { dockerProblem, resolveEndpoint } from "@flexec/executor-docker"
import { engineReady } from "@flexec/testing"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { helloJob, runCli } from "./helpers.js"

const image = process.env.FLEXEC_TEST_IMAGE ?? "flexec-node:test"
const socketPath = resolveEndpoint().socketPath ?? "/var/run/docker.sock"

const ready = engineReady({
  file: "packages/cli/test/docker.test.ts",
  problem: await Effect.runPromise(dockerProblem({ socketPath, image })),
  what: `usable Docker engine at ${socketPath}`,
  how: "start one with `bash scripts/docker-up.sh && bash scripts/build-test-image.sh`"
})

describe.skipIf(!ready)("flexec run --backend docker [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("runs examples/hello-job in a container: the job's log and return code 0", async () => {
    const { code, stdout, stderr } = await runCli(["run", helloJob, "--backend", "docker", "--image", image], 120_000)
    expect(stderr).toBe("")
    expect(code).toBe(0)
    expect(stdout).toMatch(/starting\s+hello-job on site-1 \(docker backend/)
    expect(stdout).toMatch(/\] started$/m)
    expect(stdout).toContain("| round 5/5")
    expect(stdout).toMatch(/outcome\s+return code 0 \(success\); exit code 0, signal none/)
  })

  it("without an image anywhere: one line saying where to set it (and --image), exit 104", async () => {
    const { code, stdout, stderr } = await runCli(["run", helloJob, "--backend", "docker"], 120_000)
    expect(code).toBe(104)
    expect(stdout).not.toContain("outcome")
    expect(stderr.trim().split("\n")).toEqual([expect.stringMatching(/^error: could not launch job 'hello-job': no image.*\(pass --image <image>\)$/)])
  })
})
