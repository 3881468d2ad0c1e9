/**
 * The doctor's channel check: opens a real job channel through the transport
 * the doctor was asked for (`unix`, `tcp` or `tls`), connects to its URL from
 * this process as a job would (`connectParent`; over TLS pinned by the
 * listener's `FLEXEC_CHANNEL_CERT_SHA256`), says hello, and waits until the
 * channel admits it. Everything is closed after.
 *
 * @internal
 */
import { CERT_PIN_ENV, ChannelTransport, openJobChannel } from "@flexec/core"
import type { ChannelOption } from "@flexec/core"
import { connectParent } from "@flexec/core/worker"
import { Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Duplex } from "node:stream"

/** One doctor line (the shape of the doctor's `Check`). */
export interface ChannelCheck {
  readonly level: "ok" | "fail"
  readonly name: string
  readonly detail: string
  readonly fix?: string
}

/** What `doctor --channel` accepts. */
export type ChannelChoice = "unix" | "tcp" | "tls"

/** The executor option `channel` for a choice, with an optional advertised host. */
export const channelOptionOf = (choice: ChannelChoice, advertiseHost: Option.Option<string>): ChannelOption =>
  choice === "unix"
    ? { transport: "unix" }
    : { transport: "tcp", ...(choice === "tls" ? { tls: true } : {}), ...(Option.isSome(advertiseHost) ? { advertiseHost: advertiseHost.value } : {}) }

/** A hello frame as the worker runtime writes it: `u32 length | u32 header length | header JSON`. */
const helloFrame = (jobId: string, token: string): Buffer => {
  const header = Buffer.from(JSON.stringify({ kind: "hello", version: 1, jobId, token }), "utf8")
  const frame = Buffer.allocUnsafe(8 + header.length)
  frame.writeUInt32BE(4 + header.length, 0)
  frame.writeUInt32BE(header.length, 4)
  header.copy(frame, 8)
  return frame
}

const describe = (e: unknown): string => {
  const err = e as NodeJS.ErrnoException | undefined
  return err?.code !== undefined ? `${err.code}: ${err.message}` : String(err?.message ?? e)
}

/** The `reach` check (the job channel's reachability); never fails (a failure is a `fail` line). */
export const channelCheck = (choice: ChannelChoice, advertiseHost: Option.Option<string>, timeoutMs = 5000): Effect.Effect<ChannelCheck> => {
  const name = "reach"
  const jobId = "doctor"
  const token = randomBytes(16).toString("hex")
  return Effect.scoped(
    Effect.gen(function* () {
      const parent = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "flexec-doctor-ch-"))),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
      )
      // a TLS certificate of the check's own, in its temporary folder
      const transport = yield* ChannelTransport.fromOption(channelOptionOf(choice, advertiseHost), { runtimeDir: parent, adopt: false })
      const channel = yield* openJobChannel({ jobId, token, dir: path.join(parent, "ch"), onRequest: () => Option.none() }).pipe(
        Effect.provideService(ChannelTransport, transport),
        Effect.mapError((e) => `could not listen: ${e.reason}`)
      )
      const url = channel.info.url
      const pin = channel.info.env?.[CERT_PIN_ENV]
      const socket = yield* Effect.acquireRelease(
        Effect.try({ try: (): Duplex => connectParent(url, pin !== undefined ? { certSha256: pin } : {}), catch: (e) => `cannot connect to ${url}: ${describe(e)}` }),
        (s) => Effect.sync(() => s.destroy())
      )
      const failed = Effect.async<never, string>((resume) => {
        const onError = (e: unknown) => resume(Effect.fail(`cannot connect to ${url}: ${describe(e)}`))
        socket.once("error", onError)
        socket.once("close", () => resume(Effect.fail(`${url} closed the connection before admitting the hello`)))
        return Effect.sync(() => socket.removeAllListeners("error").on("error", () => {}))
      })
      socket.write(helloFrame(jobId, token))
      yield* Effect.raceFirst(channel.awaitConnected, failed).pipe(
        Effect.timeoutFail({ duration: timeoutMs, onTimeout: () => `${url} did not admit a job's hello within ${timeoutMs} ms` })
      )
      return {
        level: "ok",
        name,
        detail: `${choice} job channel: a job reached it at ${url}${pin !== undefined ? ` (certificate SHA-256 ${pin.slice(0, 16)}… matched the pin)` : ""}`
      } satisfies ChannelCheck
    })
  ).pipe(
    Effect.catchAll((reason) =>
      Effect.succeed<ChannelCheck>({
        level: "fail",
        name,
        detail: `${choice} job channel: ${reason}`,
        fix: choice === "unix"
          ? "set TMPDIR to a short, writable folder (e.g. TMPDIR=/tmp)"
          : "check that the advertised host resolves and reaches this machine (--advertise-host), and that no firewall drops the port"
      })
    )
  )
}
