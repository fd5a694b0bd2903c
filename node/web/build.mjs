// Builds dist/: one bundled, minified app.js (no third-party runtime code at all), the page
// and the style sheet. `npm run build`; the Makefile runs it before installing swarmd.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const here = new URL(".", import.meta.url);
const dist = new URL("dist/", here);
await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [new URL("src/main.js", here).pathname],
  outfile: new URL("app.js", dist).pathname,
  bundle: true,
  format: "esm",
  minify: true,
  sourcemap: true,
  target: ["chrome120"],
  logLevel: "warning",
});
for (const name of ["index.html", "app.css"]) {
  await copyFile(new URL(`src/${name}`, here), new URL(name, dist));
}
