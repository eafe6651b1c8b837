// Bundles js/app.js → dist/app.js (ES2019, IIFE, minified, with a source map)
// and copies css/app.css → dist/app.css; bundles the admin dashboard,
// dashboard/dashboard.js (phoenix + uPlot) → dist/dashboard/dashboard.js and,
// from the CSS it imports, dist/dashboard/dashboard.css. `node build.mjs
// --watch` rebuilds on change.
import * as esbuild from "esbuild"
import {copyFileSync, mkdirSync, watch} from "node:fs"
import {dirname, join} from "node:path"
import {fileURLToPath} from "node:url"

const root = dirname(fileURLToPath(import.meta.url))
const dist = join(root, "dist")
const watching = process.argv.includes("--watch")

const options = {
  entryPoints: [join(root, "js/app.js")],
  outfile: join(dist, "app.js"),
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2019",
  sourcemap: true,
  minify: true,
  legalComments: "linked",
  logLevel: "info"
}

// The dashboard served on the admin listener (framework/src/dashboard/): its
// own bundle, so the watch page does not carry a chart library.
const dashboard = {
  ...options,
  entryPoints: [join(root, "dashboard/dashboard.js")],
  outfile: join(dist, "dashboard/dashboard.js"),
}

function copyCss(){
  copyFileSync(join(root, "css/app.css"), join(dist, "app.css"))
}

mkdirSync(dist, {recursive: true})
if(watching){
  const ctx = await esbuild.context(options)
  await ctx.watch()
  const dashboardCtx = await esbuild.context(dashboard)
  await dashboardCtx.watch()
  copyCss()
  watch(join(root, "css"), () => { try { copyCss(); console.log("copied css/app.css") } catch(e){ console.error(e) } })
  console.log(`watching; output in ${dist}`)
} else {
  await esbuild.build(options)
  await esbuild.build(dashboard)
  copyCss()
  console.log(`built ${join(dist, "app.js")}, ${join(dist, "app.css")} and ${join(dist, "dashboard")}/`)
}
