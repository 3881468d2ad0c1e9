/**
 * `@flexec/core`: the contract, the engine and the wire protocol of flexec.
 *
 * @module @flexec/core
 * @since 0.1.0
 */
export * from "./Errors.js"
export * from "./Status.js"
export * from "./JobId.js"
export * as Message from "./Message.js"
export type { Json, Headers, HeaderValue, Payload } from "./Message.js"
export * from "./JobMeta.js"
export * from "./JobLauncher.js"
export * from "./ResourceManager.js"
export * from "./ResourceManagerAdapter.js"
export * from "./PassthroughResourceManager.js"
export * from "./ListResourceManager.js"
export * from "./GpuResourceManager.js"
export * from "./GpuDiscovery.js"
export * from "./ClientExecutor.js"
export * from "./ExecutorOptions.js"
export * from "./JobExecutor.js"
export * from "./protocol/ChannelServer.js"
export * from "./protocol/ChannelTransport.js"
export type * from "./protocol/Transport.js"
export { unixTransport } from "./protocol/UnixTransport.js"
export { CERT_PIN_ENV, makeTcpTransport } from "./protocol/TcpTransport.js"
export type { TcpTlsOptions, TcpTransportOptions } from "./protocol/TcpTransport.js"
