import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { runCli, stackFrame } from "./helpers.js"

const withoutDockerHost = () => {
  const env = { ...process.env }
  delete env.DOCKER_HOST
  return env
}

describe("flexec doctor", () => {
  it("prints the Node version, a Docker line, GPUs, the runtime dir, and exits 0", async () => {
    const { code, stdout } = await runCli(["doctor"], 30_000, withoutDockerHost())
    expect(code).toBe(0)
    expect(stdout).toContain(`node      ${process.version}`)
    expect(stdout).toMatch(/^(ok|warn)\s+docker\s+engine (reachable|unreachable) at unix:\/\/\/var\/run\/docker\.sock/m)
    expect(stdout).toMatch(/^(ok|info)\s+gpus\s+/m)
    expect(stdout).toMatch(/^ok\s+runtime\s+runtime dir .*flexec-.*job socket path \d+ bytes \(limit 107\)/m)
    expect(stdout).toMatch(/ca-certs/)
    if (!fs.existsSync("/var/run/docker.sock")) expect(stdout).toMatch(/engine unreachable/)
  })

  it("says the engine is reachable when the socket answers (this machine has one)", async () => {
    if (!fs.existsSync("/var/run/docker.sock")) {
      if (process.env.FLEXEC_REQUIRE_DOCKER === "1") throw new Error("FLEXEC_REQUIRE_DOCKER=1 but /var/run/docker.sock is missing")
      console.warn("\n*** SKIPPING the reachable-engine doctor check: no /var/run/docker.sock ***\n")
      return
    }
    const { stdout } = await runCli(["doctor"], 30_000, withoutDockerHost())
    expect(stdout).toMatch(/^ok\s+docker\s+engine reachable at unix:\/\/\/var\/run\/docker\.sock: \S+ \(API [\d.]+\)/m)
  })

  it("with DOCKER_HOST at a missing socket: unreachable, with a fix, and still exit 0", async () => {
    const { code, stdout } = await runCli(["doctor"], 30_000, { ...process.env, DOCKER_HOST: "unix:///nonexistent.sock" })
    expect(code).toBe(0)
    expect(stdout).toMatch(/^warn\s+docker\s+engine unreachable at unix:\/\/\/nonexistent\.sock \(ENOENT/m)
    expect(stdout).toMatch(/fix: DOCKER_HOST=unix:\/\/\/nonexistent\.sock: point it at a running engine/)
  })

  it("NODE_EXTRA_CA_CERTS set in the parent: warns that jobs do not inherit it", async () => {
    const { stdout } = await runCli(["doctor"], 30_000, { ...process.env, NODE_EXTRA_CA_CERTS: "/nonexistent/ca.pem" })
    expect(stdout).toMatch(/^warn\s+ca-certs\s+NODE_EXTRA_CA_CERTS=\/nonexistent\/ca\.pem is set here, but jobs do not inherit it/m)
    expect(stdout).toMatch(/fix: .*inheritEnv/)
  })
})

describe("flexec doctor: the job channel's reachability", () => {
  it("unix (the default): a job reached the channel's unix socket, and its folder is removed after", async () => {
    const { code, stdout } = await runCli(["doctor"], 30_000)
    expect(code).toBe(0)
    const line = /^ok\s+reach\s+unix job channel: a job reached it at unix:\/\/(\S+)$/m.exec(stdout)
    expect(line, stdout).not.toBeNull()
    // <tmpdir>/flexec-doctor-ch-XXXXXX/ch/ch.sock: the doctor's own folder is gone
    const folder = path.dirname(path.dirname(line![1]!))
    expect(path.basename(folder)).toMatch(/^flexec-doctor-ch-/)
    expect(fs.existsSync(folder)).toBe(false)
  })

  it("--channel tls: a job reached tls://127.0.0.1:<port> and the certificate matched the pin; the port is closed after", async () => {
    const { code, stdout } = await runCli(["doctor", "--channel", "tls"], 30_000)
    expect(code).toBe(0)
    const line = /^ok\s+reach\s+tls job channel: a job reached it at tls:\/\/127\.0\.0\.1:(\d+) \(certificate SHA-256 [0-9a-f]{16}… matched the pin\)$/m.exec(stdout)
    expect(line, stdout).not.toBeNull()
    // the doctor closed its listener: the port refuses now
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port: Number(line![1]) })
      s.once("connect", () => (s.destroy(), resolve(false)))
      s.once("error", () => resolve(true))
    })
    expect(refused).toBe(true)
  })

  it("--channel tcp --advertise-host that does not resolve: a fail line naming ENOTFOUND, with a fix, and exit 1", async () => {
    const { code, stdout } = await runCli(["doctor", "--channel", "tcp", "--advertise-host", "no-such-host.invalid"], 30_000)
    expect(code).toBe(1)
    expect(stdout).toMatch(/^fail\s+reach\s+tcp job channel: cannot connect to tcp:\/\/no-such-host\.invalid:\d+: ENOTFOUND/m)
    expect(stdout).toMatch(/fix: check that the advertised host resolves/)
  })
})

describe("flexec", () => {
  it("--help lists the commands and exits 0", async () => {
    const { code, stdout } = await runCli(["--help"])
    expect(code).toBe(0)
    for (const c of ["run", "doctor", "conformance"]) expect(stdout).toContain(c)
  })

  it("run --help: plain text (no ANSI escapes, also with NO_COLOR), usage `flexec run`, every option with its default, no filler", async () => {
    for (const env of [process.env, { ...process.env, NO_COLOR: "1" }]) {
      const { code, stdout } = await runCli(["run", "--help"], 60_000, env)
      expect(code).toBe(0)
      expect(stdout).not.toContain("\x1b[")
      expect(stdout.split("\n")[0]).toBe("usage: flexec run [options] <job-dir>")
      for (const [option, dflt] of [["--backend process|docker", "process"], ["--site <name>", "site-1"], ["--grace <s>", "10"], ["--start-timeout <s>", "60"]] as const) {
        expect(stdout).toMatch(new RegExp(`^  ${option.replace(/[|]/g, "\\|")}\\s+.*\\(default: ${dflt}\\)$`, "m"))
      }
      for (const o of ["--workspace", "--image", "--command", "--json", "--verbose"]) expect(stdout).toContain(o)
      expect(stdout).not.toMatch(/A user-defined piece of text|This setting is optional|A floating point number/)
    }
  })

  it("doctor --help and conformance --help read `flexec <command>`", async () => {
    expect((await runCli(["doctor", "--help"])).stdout.split("\n")[0]).toBe("usage: flexec doctor [options]")
    expect((await runCli(["conformance", "--help"])).stdout.split("\n")[0]).toBe("usage: flexec conformance [options] <module>")
  })

  it("an unknown option is named as the culprit, wherever it stands: exit 2", async () => {
    for (const args of [["run", "--bogus", "examples/hello-job"], ["run", "examples/hello-job", "--bogus"], ["run", "--bogus=1", "x"]]) {
      const { code, stdout, stderr } = await runCli(args)
      expect(code).toBe(2)
      expect(stdout).toBe("")
      expect(stderr.trim()).toBe("error: unknown option --bogus for flexec run (flexec run --help lists its options)")
    }
  })

  it("a bad option value is a usage error: exit 2, no stack trace", async () => {
    const { code, stderr } = await runCli(["run", "x", "--backend", "kubernetes"])
    expect(code).toBe(2)
    expect(stderr).not.toMatch(stackFrame)
  })

  it("conformance runs @flexec/testing's runner (a module that does not exist: exit 2, says so)", async () => {
    const { code, stdout } = await runCli(["conformance", "/nonexistent/launcher.mjs"])
    expect(code).toBe(2)
    expect(stdout).toContain("flexec-conformance: cannot find /nonexistent/launcher.mjs")
  })

  it("conformance on a module without makeLauncher: one line saying so, exit 2, no empty table", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-conf-"))
    try {
      const mod = path.join(dir, "not-a-launcher.mjs")
      fs.writeFileSync(mod, "export const name = 'x'\nexport const helper = () => 1\n")
      const { code, stdout, stderr } = await runCli(["conformance", mod])
      expect(code).toBe(2)
      expect(stdout).not.toMatch(/0 passed/)
      expect(stderr.trim()).toBe(`error: ${mod} exports no makeLauncher (nor a default launcher factory); it exports helper, name: export makeLauncher = (ctx) => launcher; the suite did not run`)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
