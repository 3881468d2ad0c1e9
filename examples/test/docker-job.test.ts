/**
 * examples/docker-job: the hello job in a container through createDockerExecutor,
 * once in the test image (flexec-node:test) and once in the image the example's
 * Dockerfile builds. Skips loudly without a usable engine, unless
 * FLEXEC_REQUIRE_DOCKER=1 (CI), where it fails.
 */
import { dockerProblem, makeDockerClient, resolveEndpoint } from "@flexec/executor-docker"
import { engineReady } from "@flexec/testing"
import { Duration, Effect } from "effect"
import { spawnSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { examplesDir, runNode } from "./support.js"

const testImage = process.env.FLEXEC_TEST_IMAGE ?? "flexec-node:test"
const baseImage = process.env.FLEXEC_BASE_IMAGE ?? "flexec-node:base"
const socketPath = resolveEndpoint().socketPath ?? "/var/run/docker.sock"
const client = makeDockerClient({ socketPath, timeout: Duration.seconds(5) })

const ready = engineReady({
  file: "examples/test/docker-job.test.ts",
  problem: await Effect.runPromise(dockerProblem({ socketPath, image: testImage })),
  what: `usable Docker engine at ${socketPath}`,
  how: "start one with `bash scripts/docker-up.sh && bash scripts/build-test-image.sh`"
})

const run = `${process.pid}-${crypto.randomBytes(3).toString("hex")}`
const containersOf = (instanceId: string) =>
  Effect.runPromise(client.listByLabels({ "flexec.instance": instanceId }).pipe(Effect.map((list) => list.length)))

const runExample = async (image: string, instanceId: string) => {
  const { code, out } = await runNode(path.join(examplesDir, "docker-job", "run.mjs"), 60_000, {
    ...process.env,
    FLEXEC_EXAMPLE_IMAGE: image,
    FLEXEC_INSTANCE_ID: instanceId,
    FLEXEC_CONTAINER_USER: process.env.FLEXEC_TEST_UID ? `${process.env.FLEXEC_TEST_UID}:${process.env.FLEXEC_TEST_GID ?? process.env.FLEXEC_TEST_UID}` : "1000:1000"
  })
  expect(out).toContain("job says: hello docker, from hello-job on site-1")
  expect(out).toMatch(/completed: return code 0, exit \{"code":0,"signal":null,"oomKilled":false/)
  expect(out).toMatch(/--- job log ---\nround 1\/3\nround 2\/3\nround 3\/3\ndone\n/)
  expect(code).toBe(0)
  expect(await containersOf(instanceId)).toBe(0) // removed once the outcome was read
}

describe.skipIf(!ready)("examples/docker-job [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  const built = `flexec-hello:example-${run}`
  afterAll(() => {
    spawnSync("docker", ["rmi", "-f", built], { stdio: "ignore" })
  })

  it(`runs the hello job to success in ${testImage}`, () => runExample(testImage, `ex-docker-${run}-a`))

  it("builds the example's Dockerfile FROM flexec-node:base and runs the hello job in it", async (ctx) => {
    const hasBase = await Effect.runPromise(client.imageExists(baseImage).pipe(Effect.orElseSucceed(() => false)))
    if (!hasBase) {
      if (process.env.FLEXEC_REQUIRE_DOCKER === "1") throw new Error(`${baseImage} is missing (bash scripts/build-test-image.sh)`)
      console.warn(`\n*** SKIPPING the Dockerfile build: ${baseImage} is missing (bash scripts/build-test-image.sh) ***\n`)
      return ctx.skip()
    }
    const build = spawnSync("bash", [path.join(examplesDir, "docker-job", "build-image.sh"), built], { encoding: "utf8", timeout: 60_000 })
    expect(build.status, build.stderr).toBe(0)
    await runExample(built, `ex-docker-${run}-b`)
  })
})
