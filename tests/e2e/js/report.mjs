// What the listeners share: one JSON line per event on stdout, commands as JSON lines on stdin.
//
// stdin:  {"token": "<access token>"}   the token accessTokenFactory returns from now on
//         {"stop": true}                 close the connection and exit
// stdout: {"event": "connected"} | {"event": "message", "target", "arguments", "receivedAt"} |
//         {"event": "closed", "error"} | {"event": "failed", "error"}
// receivedAt is epoch milliseconds with a fraction, so the tests can compare it with the time
// a CLI command returned. Dates inside arguments print as ISO-8601 strings (Date.toJSON).
import { createInterface } from "node:readline";

export function now() {
  return performance.timeOrigin + performance.now();
}

export function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

export function readCommands({ onToken, onStop }) {
  const lines = createInterface({ input: process.stdin });
  lines.on("line", async (line) => {
    if (!line.trim()) return;
    const command = JSON.parse(line);
    if (command.token) await onToken(command.token);
    if (command.stop) await onStop();
  });
  lines.on("close", onStop);
}

export function fail(error) {
  emit({ event: "failed", error: String(error && error.stack ? error.stack : error) });
  process.exit(1);
}
