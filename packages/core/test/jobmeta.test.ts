import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import { decodeJobMeta, launcherSpecFor } from "../src/JobMeta.js"

const decode = (text: string) => Effect.runSync(Effect.either(decodeJobMeta("job-1", JSON.parse(text))))

describe("job meta", () => {
  it("refuses a __proto__ key at any depth (it would turn inherited keys into the job's own)", () => {
    // found by fuzz.meta.test.ts: seed -320020692
    const top = decode('{"__proto__":{"job_id":{"toString":null}}}')
    expect(top._tag === "Left" && top.left._tag).toBe("InvalidJobMeta")
    const nested = decode('{"launcher_spec":{"__proto__":{"default":{"process":{"command":["x"]}}}}}')
    expect(nested._tag === "Left" && nested.left.message).toContain('meta.launcher_spec: the key "__proto__"')
  })

  it("launcher_spec: default merged with the site's entry, the site wins; other sites and modes ignored", () => {
    const meta = decode(
      '{"launcher_spec":{"default":{"docker":{"image":"a","shm_size":"1g"}},"site-1":{"docker":{"image":"b"}},"site-2":{"docker":{"image":"c"}}}}'
    )
    expect(meta._tag).toBe("Right")
    if (meta._tag === "Right") {
      expect(launcherSpecFor(meta.right, "site-1", "docker")).toEqual({ image: "b", shm_size: "1g" })
      expect(launcherSpecFor(meta.right, "site-1", "process")).toBeUndefined()
    }
  })
})
