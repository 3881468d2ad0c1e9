// A peer of the RTT measurement: vscode-jsonrpc over a unix socket (the path in
// BENCH_SOCK), the same kind of socket the raw baseline and flexec use. Serves
// the request "echo" (its params back); exits when the parent closes the socket.
"use strict"
const net = require("node:net")
const rpc = require("vscode-jsonrpc/node")
const socket = net.createConnection(process.env.BENCH_SOCK)
socket.on("connect", () => {
  const connection = rpc.createMessageConnection(new rpc.SocketMessageReader(socket), new rpc.SocketMessageWriter(socket))
  connection.onRequest("echo", (params) => params)
  connection.listen()
})
socket.on("error", () => {})
socket.on("close", () => process.exit(0))
