// The notifications client of the Bitwarden web vault and desktop app, in Node:
// @microsoft/signalr with the MessagePack hub protocol, negotiation skipped, WebSockets only,
// the access token from accessTokenFactory (in Node, sent as an Authorization header).
//
//   node signalr-listen.mjs https://vault.example.com      (then commands on stdin, see report.mjs)
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

import { emit, fail, now, readCommands } from "./report.mjs";

const base = process.argv[2];
if (!base) fail("usage: node signalr-listen.mjs <server url>");

let token = null;
let connection = null;

function connect() {
  connection = new signalR.HubConnectionBuilder()
    .withUrl(`${base}/notifications/hub`, {
      accessTokenFactory: () => token,
      skipNegotiation: true,
      transport: signalR.HttpTransportType.WebSockets,
    })
    .withHubProtocol(new MessagePackHubProtocol())
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  connection.on("ReceiveMessage", (message) =>
    emit({ event: "message", target: "ReceiveMessage", arguments: [message], receivedAt: now() }));
  connection.onclose((error) => emit({ event: "closed", error: error ? String(error) : null }));
  return connection.start().then(() => emit({ event: "connected" }), fail);
}

readCommands({
  onToken: async (value) => {
    token = value;
    if (!connection) await connect();
  },
  onStop: async () => {
    if (connection) await connection.stop();
    process.exit(0);
  },
});
