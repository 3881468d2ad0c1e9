/**
 * Fuzzing what a job controls before anything is launched (fast-check): job
 * meta, job ids and client names. Arbitrary input either decodes to a valid
 * value or fails with the typed error; nothing throws or dies, and a valid id
 * cannot leave the workspace. (The Docker launcher's `validate` is fuzzed in
 * packages/executor-docker/test/security.test.ts; the resource managers'
 * concurrent invariant in resource-managers.property.test.ts.)
 * `FLEXEC_FUZZ_LONG=1` multiplies the counts by 50.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import fc from "fast-check"
import * as path from "node:path"
import { decodeClientName, decodeJobId, IdPattern } from "../src/JobId.js"
import { decodeJobMeta, launcherSpecFor, mergeWithDeployed, protectedKeys, resourceSpecFor } from "../src/JobMeta.js"

const LONG = process.env.FLEXEC_FUZZ_LONG === "1"
const scale = (n: number) => (LONG ? n * 50 : n)
const counts = { cases: 0, valid: 0, refused: 0, untyped: 0 }
afterAll(() => {
  console.log(
    `fuzz: meta cases=${counts.cases} valid=${counts.valid} refused-typed=${counts.refused} untyped-failures=${counts.untyped}${LONG ? " (long)" : ""}`
  )
})

/** Runs `effect`; a success, or a failure with one of `tags`; anything else (a throw, a defect) is counted and fails. */
const typed = <A>(effect: () => Effect.Effect<A, { readonly _tag: string }>, tags: ReadonlyArray<string>): Exit.Exit<A, { readonly _tag: string }> => {
  counts.cases++
  let exit: Exit.Exit<A, { readonly _tag: string }>
  try {
    exit = Effect.runSyncExit(effect())
  } catch (error) {
    counts.untyped++
    throw error
  }
  if (Exit.isSuccess(exit)) counts.valid++
  else if (exit.cause._tag === "Fail" && tags.includes(exit.cause.error._tag)) counts.refused++
  else {
    counts.untyped++
    throw new Error(`not a typed failure: ${String(exit.cause)}`)
  }
  return exit
}

const keyArb = fc.oneof(
  fc.constantFrom("job_id", "resource_spec", "launcher_spec", "scope", "study", "byoc", "default", "site-1", "docker", "process", "__proto__", "constructor", "toString"),
  fc.string({ maxLength: 8 })
)
/** JSON with the keys flexec reads (and prototype names) over-represented. */
const jsonArb: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, -1, 1.5, "", "x", "job-1"),
    fc.string({ maxLength: 10 }),
    fc.double(),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(keyArb, tie("value"), { maxKeys: 4 })
  )
})).value
/** Parsed from JSON text (so `__proto__` becomes an own key, as in a real meta.json). */
const metaArb = fc.oneof(jsonArb, fc.dictionary(keyArb, jsonArb, { maxKeys: 6 })).map((v) => JSON.parse(JSON.stringify(v ?? null)) as unknown)

describe("fuzz: job meta and ids", () => {
  it("arbitrary JSON meta decodes or fails with InvalidJobMeta; the per-site views never throw", () => {
    fc.assert(
      fc.property(metaArb, fc.constantFrom("site-1", "default", "other"), (input, site) => {
        const exit = typed(() => decodeJobMeta("job-1", input), ["InvalidJobMeta"])
        if (Exit.isSuccess(exit)) {
          const meta = exit.value
          expect(meta.job_id === undefined || meta.job_id === null || meta.job_id === "job-1").toBe(true)
          for (const mode of ["docker", "process", "__proto__"]) {
            const spec = launcherSpecFor(meta, site, mode)
            expect(spec === undefined || (typeof spec === "object" && spec !== null)).toBe(true)
          }
          expect(typeof resourceSpecFor(meta, site)).toBe("object")
        }
      }),
      { numRuns: scale(8_000) }
    )
  })

  it("merging a given meta with the deployed one: equal protected keys pass, a drift fails with JobMetaMismatch naming the key; byoc only from the deployed meta", () => {
    fc.assert(
      fc.property(fc.dictionary(keyArb, jsonArb, { maxKeys: 6 }), fc.dictionary(keyArb, jsonArb, { maxKeys: 6 }), fc.boolean(), (a, b, allowByoc) => {
        const deployed = Effect.runSyncExit(decodeJobMeta("job-1", JSON.parse(JSON.stringify(a))))
        if (Exit.isFailure(deployed)) return
        const given = JSON.parse(JSON.stringify(b)) as Record<string, unknown>
        const exit = typed(() => mergeWithDeployed("job-1", deployed.value, given, allowByoc), ["JobMetaMismatch"])
        if (Exit.isSuccess(exit)) {
          const merged = exit.value as Record<string, unknown>
          for (const key of protectedKeys) expect(JSON.stringify(merged[key] ?? null)).toBe(JSON.stringify(deployed.value[key] ?? null))
          if (merged.byoc !== undefined) expect(allowByoc && deployed.value.byoc === true).toBe(true)
        } else if (exit.cause._tag === "Fail") {
          expect(protectedKeys as ReadonlyArray<string>).toContain((exit.cause.error as unknown as { key: string }).key)
        }
      }),
      { numRuns: scale(4_000) }
    )
  })

  it("arbitrary values as job ids and client names: valid ones stay one plain directory inside the workspace, the rest fail typed", () => {
    const idArb = fc.oneof(
      fc.anything({ withNullPrototype: true, withBigInt: true, withMap: true, withSet: true, withBoxedValues: true, withTypedArray: true }),
      fc.string({ maxLength: 140 }),
      fc.constantFrom("..", ".", "../x", "a/../../etc", "/etc/passwd", "a\0b", "startup", "local", "a..", ".hidden", "x".repeat(128), "x".repeat(129), "a\nb", "é")
    )
    const workspace = "/ws/root"
    fc.assert(
      fc.property(idArb, (value) => {
        const decoders: ReadonlyArray<readonly [(v: unknown) => Effect.Effect<string, { readonly _tag: string }>, string]> = [
          [decodeJobId, "InvalidJobId"],
          [decodeClientName, "InvalidClient"]
        ]
        for (const [decode, tag] of decoders) {
          const exit = typed(() => decode(value), [tag])
          if (Exit.isSuccess(exit)) {
            const id = exit.value as string
            expect(IdPattern.test(id)).toBe(true)
            const dir = path.join(workspace, id)
            expect(path.dirname(dir)).toBe(workspace)
            expect(path.basename(dir)).toBe(id)
            expect(id === "." || id === ".." || id.includes("/") || id.includes("\0")).toBe(false)
          }
        }
      }),
      { numRuns: scale(8_000) }
    )
  })
})
