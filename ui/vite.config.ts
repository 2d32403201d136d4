import { defineConfig } from "vite";

// The page is served by Tauri's custom protocol from ui/dist (and by tests/serve.mjs to
// Chromium for the accessibility checks and screenshots).
export default defineConfig({
  base: "./",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { target: "es2022", outDir: "dist", emptyOutDir: true, sourcemap: false },
  test: { include: ["src/**/*.test.ts"] },
} as Parameters<typeof defineConfig>[0]);
