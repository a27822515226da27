import { defineConfig } from 'vitest/config';

// `npm run dev` serves the portal with hot reload and forwards the API and the embedded SFU's
// signaling to a Conclave running on 127.0.0.1:8080 (`cargo run --release`).
export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true, target: 'es2022' },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/rtc': { target: 'ws://127.0.0.1:8080', ws: true },
    },
  },
  test: { environment: 'jsdom', include: ['src/**/*.test.{ts,tsx}'] },
});
