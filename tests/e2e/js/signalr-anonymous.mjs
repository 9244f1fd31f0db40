// The anonymous hub client of the Bitwarden clients' login with device, in Node: a device that
// is not signed in waits for the answer to its auth request. @microsoft/signalr with MessagePack,
// negotiation skipped, WebSockets only, no access token: the auth request id is the Token.
//
//   node signalr-anonymous.mjs https://vault.example.com   (then {"token": "<auth request id>"} on stdin)
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

import { emit, fail, now, readCommands } from "./report.mjs";

const base = process.argv[2];
if (!base) fail("usage: node signalr-anonymous.mjs <server url>");

let connection = null;

readCommands({
  onToken: async (requestId) => {
    if (connection) return;
    connection = new signalR.HubConnectionBuilder()
      .withUrl(`${base}/notifications/anonymous-hub?Token=${encodeURIComponent(requestId)}`, {
        skipNegotiation: true,
        transport: signalR.HttpTransportType.WebSockets,
      })
      .withHubProtocol(new MessagePackHubProtocol())
      .configureLogging(signalR.LogLevel.Warning)
      .build();
    // spelled so by the clients
    connection.on("AuthRequestResponseRecieved", (message) =>
      emit({ event: "message", target: "AuthRequestResponseRecieved", arguments: [message], receivedAt: now() }));
    connection.onclose((error) => emit({ event: "closed", error: error ? String(error) : null }));
    await connection.start().then(() => emit({ event: "connected" }), fail);
  },
  onStop: async () => {
    if (connection) await connection.stop();
    process.exit(0);
  },
});
