import { describe, expect, it } from "vitest"
import { notYetImplemented } from "../src/index.js"

describe("@flexec/cli", () => {
  it("is a placeholder until the flexec command lands", () => {
    expect(notYetImplemented).toBe(true)
  })
})
