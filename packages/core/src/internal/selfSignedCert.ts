/**
 * A self-signed X.509 certificate made with `node:crypto` alone: an ECDSA
 * P-256 key pair and a v3 certificate (DER written here; Node can parse
 * certificates but not make them). Jobs pin the certificate by its SHA-256,
 * so it carries no extensions and no name a client would check.
 */
import { Buffer } from "node:buffer"
import * as crypto from "node:crypto"

/** A PEM private key and its certificate. */
export interface KeyAndCert {
  readonly key: string
  readonly cert: string
}

// --- a minimal DER writer (definite lengths; the few types a certificate needs) ---

const tlv = (tag: number, content: Buffer): Buffer => {
  const n = content.length
  let length: Buffer
  if (n < 0x80) length = Buffer.from([n])
  else {
    const bytes: Array<number> = []
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
    length = Buffer.from([0x80 | bytes.length, ...bytes])
  }
  return Buffer.concat([Buffer.from([tag]), length, content])
}

const sequence = (...items: ReadonlyArray<Buffer>): Buffer => tlv(0x30, Buffer.concat(items))
const set = (...items: ReadonlyArray<Buffer>): Buffer => tlv(0x31, Buffer.concat(items))
const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 | n, content)
const utf8 = (text: string): Buffer => tlv(0x0c, Buffer.from(text, "utf8"))
const bitString = (bytes: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), bytes]))

/** A non-negative INTEGER from big-endian bytes (a leading 0 when the high bit is set). */
const integer = (bytes: Buffer): Buffer => {
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0 && (bytes[start + 1]! & 0x80) === 0) start++
  const trimmed = bytes.subarray(start)
  return tlv(0x02, (trimmed[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed)
}

const oid = (dotted: string): Buffer => {
  const parts = dotted.split(".").map(Number)
  const bytes: Array<number> = [40 * parts[0]! + parts[1]!]
  for (const part of parts.slice(2)) {
    const chunk: Array<number> = [part & 0x7f]
    for (let v = Math.floor(part / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f))
    bytes.push(...chunk)
  }
  return tlv(0x06, Buffer.from(bytes))
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 4.1.2.5). */
const time = (date: Date): Buffer => {
  const iso = date.toISOString() // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "")
  const year = date.getUTCFullYear()
  return year < 2050 ? tlv(0x17, Buffer.from(`${digits.slice(2)}Z`, "ascii")) : tlv(0x18, Buffer.from(`${digits}Z`, "ascii"))
}

const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
const COMMON_NAME = "2.5.4.3"

/**
 * Makes a fresh ECDSA P-256 key and a self-signed certificate for it, valid
 * from an hour ago for `validDays` days, named `CN=<commonName>`.
 */
export const makeSelfSignedCert = (commonName: string, validDays = 3650): KeyAndCert => {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" })
  const name = sequence(set(sequence(oid(COMMON_NAME), utf8(commonName))))
  const algorithm = sequence(oid(ECDSA_WITH_SHA256))
  const serial = crypto.randomBytes(16)
  serial[0] = (serial[0]! & 0x7f) | 0x01 // positive, non-zero, 16 bytes
  const now = Date.now()
  const tbs = sequence(
    explicit(0, integer(Buffer.from([2]))), // v3
    integer(serial),
    algorithm,
    name,
    sequence(time(new Date(now - 3600_000)), time(new Date(now + validDays * 86_400_000))),
    name,
    publicKey.export({ type: "spki", format: "der" })
  )
  const signature = crypto.sign("sha256", tbs, privateKey) // DER-encoded ECDSA-Sig-Value
  const der = sequence(tbs, algorithm, bitString(signature))
  const base64 = der.toString("base64").replace(/.{1,64}/g, "$&\n")
  return {
    key: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    cert: `-----BEGIN CERTIFICATE-----\n${base64}-----END CERTIFICATE-----\n`
  }
}

/** The SHA-256 of a certificate's DER bytes, 64 lowercase hex digits (what jobs pin). */
export const certSha256 = (cert: crypto.X509Certificate): string => crypto.createHash("sha256").update(cert.raw).digest("hex")
