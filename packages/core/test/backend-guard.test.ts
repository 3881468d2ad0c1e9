/** What the engine accepts as a launch's error: its own classes, or fields that decode into them. */
import { describe, expect, it } from "@effect/vitest"
import { Cause } from "effect"
import { BackendUnavailable, ImageNotFound, LaunchFailed } from "../src/Errors.js"
import type { JobId } from "../src/JobId.js"
import { launchErrorOf } from "../src/internal/backendGuard.js"

const jobId = "job-1" as JobId

describe("launchErrorOf", () => {
  it("keeps the declared errors as they are", () => {
    const own = new ImageNotFound({ jobId, image: "img:1" })
    expect(launchErrorOf("b", jobId, Cause.fail(own))).toBe(own)
  })

  it("decodes a launch error from another copy of the package (a plain object with the tag and fields) into ours", () => {
    const foreign = { _tag: "BackendUnavailable", backend: "docker", detail: "engine gone" }
    const error = launchErrorOf("b", jobId, Cause.fail(foreign))
    expect(error).toBeInstanceOf(BackendUnavailable)
    expect(error).toMatchObject({ backend: "docker", detail: "engine gone" })
  })

  it("a tag without its fields, another failure or a defect is LaunchFailed naming the backend and what it got", () => {
    const tagOnly = launchErrorOf("b", jobId, Cause.fail({ _tag: "LaunchFailed" }))
    expect(tagOnly).toBeInstanceOf(LaunchFailed)
    expect(tagOnly).toMatchObject({ jobId: "job-1", reason: 'backend "b": launch failed with an undeclared error: {"_tag":"LaunchFailed"}' })
    expect(launchErrorOf("b", jobId, Cause.fail("nope"))).toMatchObject({ _tag: "LaunchFailed", reason: 'backend "b": launch failed with an undeclared error: nope' })
    expect(launchErrorOf("b", jobId, Cause.die(new Error("boom")))).toMatchObject({ _tag: "LaunchFailed", reason: 'backend "b": launch threw a defect: boom' })
  })
})
