/**
 * The whole conformance suite on a class-based launcher: its name and
 * capabilities are prototype getters and its `launch` and `running` prototype
 * methods, all reading a private field, so the suite's own wrappers of the
 * launcher (the recording of requests and handles) must delegate to the
 * instance rather than copy it or call its members with another `this`.
 */
import type { JobLauncher, JobMeta, LaunchRequest } from "@flexec/core"
import { Effect } from "effect"
import type { InMemoryLauncher } from "../src/index.js"
import { conformancePrograms, conformanceSuite, InMemoryJobLauncher } from "../src/index.js"

class ClassBasedLauncher implements JobLauncher {
  readonly #inner: InMemoryLauncher
  constructor(inner: InMemoryLauncher) {
    this.#inner = inner
  }
  get name() {
    return this.#inner.name
  }
  get capabilities() {
    return this.#inner.capabilities
  }
  launch(request: LaunchRequest): ReturnType<JobLauncher["launch"]> {
    return this.#inner.launch(request)
  }
  running(): number {
    return this.#inner.running()
  }
  // a prototype method using `this`: the engine calls it on the launcher
  validate(meta: JobMeta, site: string): ReturnType<NonNullable<JobLauncher["validate"]>> {
    return this.#inner.validate!(meta, site)
  }
}

conformanceSuite({
  name: "class-based",
  makeLauncher: () => Effect.map(InMemoryJobLauncher.make({ programs: conformancePrograms }), (inner) => new ClassBasedLauncher(inner))
})
