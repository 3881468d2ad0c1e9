/**
 * The pure parts of the Slurm backend, without a cluster: exit encodings (as
 * measured on Slurm 22.05), the queue and jobcomp formats, the job's spec and
 * the sbatch argv it becomes, and capabilities from `scontrol show config`.
 */
import type { JobMeta } from "@flexec/core"
import { describe, expect, it } from "vitest"
import { capabilitiesOf, parseShowConfig } from "../src/internal/clusterConfig.js"
import { exitOf, exitOfRawStatus, findJobCompExit, isTerminal, parseQueue } from "../src/internal/exit.js"
import { checkSlurmSpec, jobComment, ownedFlagsIn, parseComment, sbatchArgv } from "../src/internal/spec.js"
import { SlurmJobLauncher } from "../src/index.js"

describe("exit decoding", () => {
  it("squeue's exit_code is the raw wait status: 1792 is exit 7, 36608 exit 143, 9 SIGKILL, 15 SIGTERM", () => {
    expect(exitOfRawStatus("FAILED", 1792)).toEqual({ code: 7, signal: null, oomKilled: false, lost: false })
    expect(exitOfRawStatus("FAILED", 36608)).toEqual({ code: 143, signal: null, oomKilled: false, lost: false })
    expect(exitOfRawStatus("FAILED", 9)).toEqual({ code: null, signal: "SIGKILL", oomKilled: false, lost: false })
    expect(exitOfRawStatus("CANCELLED", 15)).toEqual({ code: null, signal: "SIGTERM", oomKilled: false, lost: false })
    expect(exitOfRawStatus("COMPLETED", 0)).toEqual({ code: 0, signal: null, oomKilled: false, lost: false })
  })

  it("OUT_OF_MEMORY (raw 253: made-up signal 125 with the core bit) is an OOM kill", () => {
    expect(exitOfRawStatus("OUT_OF_MEMORY", 253)).toEqual({ code: null, signal: "SIGKILL", oomKilled: true, lost: false })
    expect(exitOf("OUT_OF_MEMORY", 0, 125).oomKilled).toBe(true)
  })

  it("0:0 is a success only for COMPLETED: a job cancelled before it ran has no exit code", () => {
    expect(exitOfRawStatus("CANCELLED", 0)).toEqual({ code: null, signal: null, oomKilled: false, lost: false })
    expect(exitOf("NODE_FAIL", 0, 0).code).toBeNull()
    expect(exitOf("FAILED", 1, 0).code).toBe(1)
  })

  it("terminal and active states (COMPLETING is not over: processes are still being killed)", () => {
    for (const s of ["PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"]) expect(isTerminal(s), s).toBe(false)
    for (const s of ["COMPLETED", "FAILED", "CANCELLED", "OUT_OF_MEMORY", "TIMEOUT", "NODE_FAIL", "PREEMPTED"]) expect(isTerminal(s), s).toBe(true)
  })

  it("squeue rows: the comment is the last field and may hold '|'; junk lines are skipped", () => {
    expect(parseQueue("2|FAILED|1792|\n3|RUNNING|0|a=b;c|d|\nnot a row\n")).toEqual([
      { slurmId: "2", state: "FAILED", rawExit: 1792, comment: undefined },
      { slurmId: "3", state: "RUNNING", rawExit: 0, comment: "a=b;c|d" }
    ])
  })

  it("jobcomp: ExitCode=X:Y of the last line with that id AND that name (ids restart when a cluster is wiped)", () => {
    const text = [
      "JobId=4 UserId=root(0) GroupId=root(0) Name=flexec.a.old JobState=COMPLETED Partition=debug ExitCode=0:0 ",
      "JobId=4 UserId=root(0) GroupId=root(0) Name=flexec.a.job JobState=FAILED Partition=debug DerivedExitCode=0:0 ExitCode=7:0 ",
      "JobId=5 UserId=root(0) GroupId=root(0) Name=flexec.a.k JobState=FAILED Partition=debug ExitCode=0:9 "
    ].join("\n")
    expect(findJobCompExit(text, "4", "flexec.a.job")).toEqual({ code: 7, signal: null, oomKilled: false, lost: false })
    expect(findJobCompExit(text, "5", "flexec.a.k")?.signal).toBe("SIGKILL")
    expect(findJobCompExit(text, "4", "flexec.b.job")).toBeUndefined()
    expect(findJobCompExit(text, "40", "flexec.a.job")).toBeUndefined()
  })
})

const meta = (extra: Record<string, unknown>): JobMeta => ({ job_id: "j1", ...extra }) as JobMeta

describe("the job's Slurm options", () => {
  it("unknown launcher_spec.<site|default>.slurm keys are refused, each named, with the allowed ones", () => {
    const checked = checkSlurmSpec(meta({ launcher_spec: { default: { slurm: { partition: "debug", wrap: "x" } }, "site-1": { slurm: { exclusive: true } } } }), "site-1")
    expect(checked._tag).toBe("Left")
    const issues = (checked as { issues: string }).issues
    expect(issues).toContain("launcher_spec.default.slurm.wrap")
    expect(issues).toContain("launcher_spec.site-1.slurm.exclusive")
    expect(issues).toContain("partition, time, qos")
  })

  it("values are checked: a partition with a space, a time that is not a Slurm time, a negative nice, a bad memory", () => {
    for (const [spec, fragment] of [
      [{ launcher_spec: { default: { slurm: { partition: "debug --uid=0" } } } }, "slurm.partition"],
      [{ launcher_spec: { default: { slurm: { time: "tomorrow" } } } }, "slurm.time"],
      [{ launcher_spec: { default: { slurm: { nice: -5 } } } }, "slurm.nice"],
      [{ resource_spec: { "site-1": { memory: "lots" } } }, "resource_spec.site-1.memory"],
      [{ resource_spec: { "site-1": { num_of_gpus: 1.5 } } }, "num_of_gpus"]
    ] as const) {
      const checked = checkSlurmSpec(meta(spec), "site-1")
      expect(checked._tag, JSON.stringify(spec)).toBe("Left")
      expect((checked as { issues: string }).issues).toContain(fragment)
    }
  })

  it("the site's entry wins over default; other backends' modes are ignored", () => {
    const checked = checkSlurmSpec(
      meta({ launcher_spec: { default: { slurm: { partition: "a", time: 10 }, docker: { image: "x" } }, "site-1": { slurm: { partition: "b" } } } }),
      "site-1"
    )
    expect(checked).toEqual({ _tag: "Right", spec: { partition: "b", time: "10" } })
  })

  const argv = (spec: Parameters<typeof sbatchArgv>[0]["spec"], sbatchArgs: ReadonlyArray<string> = [], allocatedGpus = 0) =>
    sbatchArgv({
      spec,
      site: { partition: "site-part", account: "fl", qos: undefined, sbatchArgs },
      defaultMemoryBytes: 1024 ** 3,
      allocatedGpus,
      jobDir: "/ws/j1",
      stdoutFile: "/ws/j1/log.txt.stdout",
      stderrFile: "/ws/j1/log.txt.stderr",
      name: "flexec.i.j1",
      comment: "flexec.instance=i;flexec.job=j1",
      wrapper: "/rt/slurm/flexec-exec.sh",
      command: ["node", "main.js", "a b", "$HOME;x"]
    })

  it("sbatch argv: --mem always (the default when the job names none), CPUs, GPUs as gres, the argv unchanged after the wrapper", () => {
    const plain = argv({})
    expect(plain).toContain("--mem=1024M")
    expect(plain).toContain("--export=ALL")
    expect(plain).toContain("--parsable")
    expect(plain).toContain("--chdir=/ws/j1")
    expect(plain).toContain("--output=/ws/j1/log.txt.stdout")
    expect(plain).toContain("--error=/ws/j1/log.txt.stderr")
    expect(plain).toContain("--partition=site-part")
    expect(plain).toContain("--account=fl")
    expect(plain.slice(-5)).toEqual(["/rt/slurm/flexec-exec.sh", "node", "main.js", "a b", "$HOME;x"])
    expect(plain.some((a) => a.startsWith("--gres"))).toBe(false)
    const sized = argv({ memoryBytes: 256 * 1024 ** 2, cpus: 2, gpus: 2, partition: "gpu" })
    expect(sized).toEqual(expect.arrayContaining(["--mem=256M", "--cpus-per-task=2", "--gres=gpu:2", "--partition=gpu"]))
    expect(sized).not.toContain("--partition=site-part")
    expect(argv({}, [], 3)).toContain("--gres=gpu:3")
  })

  it("the site's sbatchArgs come first; flags the backend owns are refused there", () => {
    expect(argv({}, ["--exclusive"])[0]).toBe("--exclusive")
    expect(ownedFlagsIn(["--export=NONE", "-o", "x", "--exclusive", "--mem-per-cpu=1G", "-J"])).toEqual(["--export=NONE", "-o", "--mem-per-cpu=1G", "-J"])
    expect(() => SlurmJobLauncher.make({ sbatchArgs: ["--export=NONE"], slurmBin: "/nonexistent" })).toThrow(/sbatchArgs may not set --export=NONE/)
  })

  it("labels survive the comment (encoded), and no channel token ever goes into it", () => {
    const labels = { "flexec.instance": "inst;1=x", "flexec.job": "j1", "flexec.test-run": "r" }
    expect(parseComment(jobComment(labels))).toEqual(labels)
  })
})

describe("capabilities from scontrol show config", () => {
  const config = (lines: ReadonlyArray<string>) => parseShowConfig(["Configuration data as of now", ...lines].join("\n"))

  it("cgroup proctrack + task/cgroup + ConstrainRAMSpace: memory limit and OOM detection; gpus only with the gpu gres", () => {
    const confined = config(["ProctrackType           = proctrack/cgroup", "TaskPlugin              = task/affinity,task/cgroup", "ConstrainRAMSpace       = yes", "GresTypes               = (null)"])
    expect(capabilitiesOf(confined)).toMatchObject({ memoryLimit: true, oomDetection: true, gpus: false, signals: true, recover: true, adopt: true, logs: true })
    expect(capabilitiesOf({ ...confined, gresTypes: ["gpu"] }).gpus).toBe(true)
  })

  it("linuxproc, or cgroups without RAM confinement, or no answer: neither memory limit nor OOM detection", () => {
    expect(capabilitiesOf(config(["ProctrackType = proctrack/linuxproc", "TaskPlugin = task/none", "ConstrainRAMSpace = yes"])).memoryLimit).toBe(false)
    expect(capabilitiesOf(config(["ProctrackType = proctrack/cgroup", "TaskPlugin = task/cgroup", "ConstrainRAMSpace = no"])).oomDetection).toBe(false)
    expect(capabilitiesOf(undefined)).toMatchObject({ memoryLimit: false, oomDetection: false })
  })

  it("the jobcomp file only with jobcomp/filetxt", () => {
    expect(config(["JobCompType = jobcomp/filetxt", "JobCompLoc = /var/log/jobcomp.txt"]).jobCompFile).toBe("/var/log/jobcomp.txt")
    expect(config(["JobCompType = jobcomp/none", "JobCompLoc = /var/log/jobcomp.txt"]).jobCompFile).toBeUndefined()
  })
})
