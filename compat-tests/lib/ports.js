// A free TCP port on 127.0.0.1, for the suites and benches that start their own server (or an
// example, or a throwaway Postgres): the kernel picks one, we release it, the child binds it.

import { createServer } from "node:net";

/** Resolves to a port nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
