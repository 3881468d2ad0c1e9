/**
 * `@flexec/testing`: mocks, worker fixtures, the reference in-memory backend,
 * and the backend conformance suite.
 *
 * @module @flexec/testing
 * @since 0.1.0
 */
export * from "./mocks.js"
export * from "./fixtures.js"
export * from "./InMemoryJobLauncher.js"
export * from "./BrokenLaunchers.js"
export * from "./conformance/index.js"
export * from "./requireEngine.js"
export * from "./waitUntil.js"
