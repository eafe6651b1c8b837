// Bundles js/app.js → dist/app.js (ES2019, IIFE, minified, with a source map)
// and copies css/app.css → dist/app.css. `node build.mjs --watch` rebuilds
// on change.
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

function copyCss(){
  copyFileSync(join(root, "css/app.css"), join(dist, "app.css"))
}

mkdirSync(dist, {recursive: true})
if(watching){
  const ctx = await esbuild.context(options)
  await ctx.watch()
  copyCss()
  watch(join(root, "css"), () => { try { copyCss(); console.log("copied css/app.css") } catch(e){ console.error(e) } })
  console.log(`watching; output in ${dist}`)
} else {
  await esbuild.build(options)
  copyCss()
  console.log(`built ${join(dist, "app.js")} and ${join(dist, "app.css")}`)
}
