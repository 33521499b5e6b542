import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// Stable file names (no content hashes, no timestamps): CI rebuilds the bundle from the
// lock file and fails if it differs from the one shipped in greenlight/console/static/.
export default defineConfig({
  plugins: [preact({ devtoolsInProd: false, prefreshEnabled: false })],
  base: "/console/",
  build: {
    outDir: "../greenlight/console/static/app",
    emptyOutDir: true,
    sourcemap: false,
    modulePreload: false,
    rollupOptions: {
      input: "src/main.tsx",
      output: {
        entryFileNames: "console.js",
        chunkFileNames: "[name].js",
        assetFileNames: "console.[ext]",
      },
    },
  },
});
