import { describe, expect, it } from "vitest"
import { Either } from "effect"
import { checkLauncherSpec } from "../src/JobMeta.js"
import type { JobMeta } from "../src/JobMeta.js"

const allowed = ["image", "shm_size"]
// built as a backend's validate receives it: not necessarily through the schema
const meta = (launcher_spec: unknown): JobMeta => ({ job_id: "job-1", launcher_spec } as JobMeta)

describe("checkLauncherSpec", () => {
  it("merges default with the site's entry (the site wins); other sites and modes are not looked at", () => {
    const spec = meta({
      default: { docker: { image: "a", shm_size: "1g" }, process: { command: ["x"], anything: 1 } },
      "site-1": { docker: { image: "b" } },
      "site-2": { docker: { privileged: true } }
    })
    expect(checkLauncherSpec(spec, "site-1", "docker", allowed)).toEqual(Either.right({ image: "b", shm_size: "1g" }))
  })

  it("no launcher_spec, or none for the mode: an empty spec", () => {
    expect(checkLauncherSpec({ job_id: "job-1" }, "site-1", "docker", allowed)).toEqual(Either.right({}))
    expect(checkLauncherSpec(meta(null), "site-1", "docker", allowed)).toEqual(Either.right({}))
    expect(checkLauncherSpec(meta({ "site-1": { process: {} } }), "site-1", "docker", allowed)).toEqual(Either.right({}))
  })

  it("a key outside the allowlist, in default or the site's entry: refused, the message naming every such key and the allowed keys", () => {
    const result = checkLauncherSpec(
      meta({ default: { docker: { image: "a", privileged: true } }, "site-1": { docker: { cap_add: ["ALL"], network: "host" } } }),
      "site-1",
      "docker",
      allowed
    )
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      expect(result.left.problems).toEqual([
        { kind: "notAllowed", path: "launcher_spec.default.docker.privileged" },
        { kind: "notAllowed", path: "launcher_spec.site-1.docker.cap_add" },
        { kind: "notAllowed", path: "launcher_spec.site-1.docker.network" }
      ])
      expect(result.left.message).toBe(
        "launcher_spec.default.docker.privileged, launcher_spec.site-1.docker.cap_add, launcher_spec.site-1.docker.network: not allowed; the keys allowed in launcher_spec.<site|default>.docker are: image, shm_size"
      )
    }
  })

  it("an entry that is not an object (a string, an array, null) is refused by its path, before the keys of the next", () => {
    for (const bad of ["image", ["a"], null, 3]) {
      const result = checkLauncherSpec(meta({ default: { slurm: bad }, "site-1": { slurm: { nice: 1 } } }), "site-1", "slurm", ["time"])
      expect(Either.isLeft(result) && result.left.problems).toEqual([
        { kind: "notAnObject", path: "launcher_spec.default.slurm" },
        { kind: "notAllowed", path: "launcher_spec.site-1.slurm.nice" }
      ])
      expect(Either.isLeft(result) && result.left.message).toBe(
        "launcher_spec.default.slurm must be an object; launcher_spec.site-1.slurm.nice: not allowed; the keys allowed in launcher_spec.<site|default>.slurm are: time"
      )
    }
  })

  it("checks keys, not values: an allowed key with any value passes through unchanged", () => {
    const result = checkLauncherSpec(meta({ "site-1": { docker: { image: { not: "a string" } } } }), "site-1", "docker", allowed)
    expect(result).toEqual(Either.right({ image: { not: "a string" } }))
  })
})
