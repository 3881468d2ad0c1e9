// hello-job: a Node worker that runs a few "rounds" of pretend training.
// It loads the worker runtime without installing it: the process backend puts
// @flexec/core on NODE_PATH (ESM apps: `await import(process.env.FLEXEC_WORKER_MODULE)`).
const { runJob } = require("@flexec/core/worker")

/** Waits `ms`, or less if `signal` aborts. */
const pause = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener("abort", () => {
      clearTimeout(timer)
      resolve()
    }, { once: true })
  })

runJob({
  async run(ctx) {
    const rounds = Number(ctx.set.rounds ?? 5)
    const roundMs = Number(ctx.set.roundMs ?? 200)
    let skipped = 0
    for (let round = 1; round <= rounds; round++) {
      if (ctx.signal.aborted) {
        console.log(`aborted before round ${round}`)
        return 0
      }
      const task = ctx.taskSignal()
      console.log(`round ${round}/${rounds}`)
      await pause(roundMs, task)
      if (task.aborted && !ctx.signal.aborted) {
        skipped++
        console.log(`round ${round} aborted by abort_task`)
      }
      ctx.setStats("training", { round, of: rounds, skipped, loss: Number((1 / round).toFixed(3)) })
    }
    console.log("done")
    return 0
  },
  handlers: {
    hello: {
      greet: (message, ctx) => ({ greeting: `hello ${message.payload?.name ?? "you"}, from ${ctx.jobId} on ${ctx.clientName}` })
    }
  }
})
