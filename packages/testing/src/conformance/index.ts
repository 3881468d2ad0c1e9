/**
 * The backend conformance suite.
 *
 * @since 0.1.0
 */
export * from "./suite.js"
export * from "./groups/index.js"
export type { ConformanceContext, ConformanceOptions, ConformanceTimeouts, LauncherContext, LauncherFactory, StaleRecordContext } from "./context.js"
export { makeContext as makeConformanceContext, testRunLabel } from "./context.js"
export type { Harness, HarnessOptions } from "./harness.js"
export { runTest as runConformanceTest } from "./harness.js"
export { processesOfJob, processesOfRun } from "./processes.js"
export { conformanceEchoFixture, conformanceFloodFixture, conformanceJobFacts, conformanceJobFixture, conformancePrograms, conformanceProgramSource, conformanceTopics, deployConformanceJob } from "./program.js"
export type { ConformanceFixture } from "./program.js"
