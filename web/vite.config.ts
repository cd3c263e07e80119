/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// The controller serves index.html at / and the bundle under /assets/: absolute paths work.
export default defineConfig({
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, target: "es2022" },
  // JSX goes through Preact's automatic runtime (no plugin needed).
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  server: { host: "127.0.0.1" },
  test: { include: ["test/**/*.test.ts"], environment: "node" },
});
