import { conformancePrograms, conformanceSuite, InMemoryJobLauncher } from "../src/index.js"

conformanceSuite({
  name: "in-memory",
  makeLauncher: () => InMemoryJobLauncher.make({ programs: conformancePrograms })
})
