/**
 * The backend conformance suite.
 *
 * @since 0.1.0
 */
export * from "./suite.js"
export * from "./groups.js"
export type { ConformanceContext, ConformanceOptions, ConformanceTimeouts, Harness, HarnessOptions, LauncherContext, LauncherFactory, StaleRecordContext } from "./harness.js"
export { makeContext as makeConformanceContext, processesOfJob, processesOfRun, runTest as runConformanceTest, testRunLabel } from "./harness.js"
export { conformanceEchoFixture, conformanceFloodFixture, conformanceJobFacts, conformanceJobFixture, conformancePrograms, conformanceProgramSource, conformanceTopics, deployConformanceJob } from "./program.js"
export type { ConformanceFixture } from "./program.js"
