// A private PostgreSQL cluster for the store cases: initdb into a temp dir, pg_ctl on a free
// port, stopped mid-case to simulate an outage, stopped by pid at the end. Never the shared
// Postgres on 5432. PostgreSQL refuses to run as root, so as root the tools run as `postgres`.

import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import { execFile, execFileSync } from "node:child_process";

import { freePort, RUN_DIR } from "./harness.js";

const PG_BIN = process.env.PG_BIN || "/usr/lib/postgresql/15/bin";
const asRoot = process.getuid?.() === 0;

function run(cmd, args, { timeout = 60000 } = {}) {
  const [file, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(cmd)} ${args.join(" ")}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const live = new Set();
process.on("exit", () => {
  // fast shutdown of anything still running, by pid
  for (const c of live) {
    c.thaw();
    const pid = c.pid;
    if (pid) {
      try {
        process.kill(pid, "SIGINT");
      } catch {
        /* gone */
      }
    }
  }
});

export class Cluster {
  /** initdb + start; resolves once it accepts connections. */
  static async create(name = "pg") {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `hostile-${name}-`));
    if (asRoot) {
      const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
      const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
      fs.chownSync(dir, uid, gid);
    }
    const c = new Cluster(dir, await freePort(), path.join(RUN_DIR, `${name}-postgres.log`));
    await run(path.join(PG_BIN, "initdb"), ["-D", c.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
    live.add(c);
    await c.start();
    return c;
  }

  constructor(dir, port, logPath) {
    this.dir = dir;
    this.data = path.join(dir, "data");
    this.port = port;
    this.logPath = logPath;
    if (asRoot) {
      fs.writeFileSync(logPath, "");
      fs.chownSync(logPath, Number(execFileSync("id", ["-u", "postgres"]).toString()), Number(execFileSync("id", ["-g", "postgres"]).toString()));
    }
  }

  url(db = "postgres") {
    return `postgres://postgres@127.0.0.1:${this.port}/${db}`;
  }

  /** The postmaster's pid (first line of postmaster.pid), or null when it is not running. */
  get pid() {
    try {
      return Number(fs.readFileSync(path.join(this.data, "postmaster.pid"), "utf8").split("\n")[0]);
    } catch {
      return null;
    }
  }

  start() {
    return run(path.join(PG_BIN, "pg_ctl"), [
      "-D", this.data, "-l", this.logPath, "-w", "-t", "30",
      "-o", `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c max_connections=50`,
      "start",
    ]);
  }

  /** pg_ctl stop: `fast` rolls back open transactions and disconnects every client. */
  stop(mode = "fast") {
    return run(path.join(PG_BIN, "pg_ctl"), ["-D", this.data, "-m", mode, "-w", "-t", "30", "stop"]);
  }

  /** The postmaster and its children (backends, writers): the processes of this cluster. */
  processes() {
    const root = this.pid;
    if (!root) return [];
    const kids = [];
    for (const d of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid === root) kids.push(Number(d));
      } catch {
        /* exited meanwhile */
      }
    }
    return [root, ...kids];
  }

  /** SIGSTOP every process of the cluster: connections stay open, nothing answers. */
  freeze() {
    this.frozen = this.processes();
    for (const pid of this.frozen) process.kill(pid, "SIGSTOP");
  }

  /** SIGCONT what freeze() stopped. */
  thaw() {
    for (const pid of this.frozen ?? []) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        /* gone */
      }
    }
    this.frozen = null;
  }

  /** Rows of `sql` (psql -At), one string per row. */
  async query(sql) {
    const out = await run("psql", ["-At", "-h", "127.0.0.1", "-p", String(this.port), "-U", "postgres", "-d", "postgres", "-c", sql]);
    return out.split("\n").filter((l) => l !== "");
  }

  /** Stops the postmaster by pid (SIGINT: fast shutdown), waits for it, removes the directory. */
  async destroy() {
    const pid = this.pid;
    if (pid) {
      try {
        process.kill(pid, "SIGINT");
      } catch {
        /* already gone */
      }
      const deadline = Date.now() + 30000;
      while (Date.now() < deadline) {
        try {
          process.kill(pid, 0);
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    live.delete(this);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
