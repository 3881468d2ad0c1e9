/**
 * The groups of the conformance suite, one module each. Each registers its own
 * vitest `describe` and can run alone: `lifecycleTests(common)`,
 * `messagingTests(common)`, ...
 *
 * @since 0.1.0
 */
import { lifecycleTests } from "./lifecycle.js"
import { messagingTests } from "./messaging.js"
import { controlTests } from "./control.js"
import { outcomesTests } from "./outcomes.js"
import { handlersTests } from "./handlers.js"
import { resourcesTests } from "./resources.js"
import { isolationTests } from "./isolation.js"
import { logsTests } from "./logs.js"
import { treeTests } from "./tree.js"
import { handleTests } from "./handle.js"
import { environmentTests } from "./environment.js"
import { recoveryTests } from "./recovery.js"
import { launchAbortTests } from "./launchAbort.js"
import { validateTests } from "./validate.js"

export type { GroupInput } from "./register.js"
export {
  lifecycleTests,
  messagingTests,
  controlTests,
  outcomesTests,
  handlersTests,
  resourcesTests,
  isolationTests,
  logsTests,
  treeTests,
  handleTests,
  environmentTests,
  recoveryTests,
  launchAbortTests,
  validateTests
}

/** Every group, in order. */
export const allGroups = [
  lifecycleTests,
  messagingTests,
  controlTests,
  outcomesTests,
  handlersTests,
  resourcesTests,
  isolationTests,
  logsTests,
  treeTests,
  handleTests,
  environmentTests,
  recoveryTests,
  launchAbortTests,
  validateTests
] as const
