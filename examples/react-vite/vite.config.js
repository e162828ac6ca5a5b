import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The SPA runs on http://localhost:5173 and calls moat cross-origin at
// MOAT_URL (default http://localhost:4001): same host, so the browser sends
// moat's SameSite=Strict session cookie with credentials: "include".
export default defineConfig({
  plugins: [react()],
  server: {
    host: "localhost",
    port: Number(process.env.EXAMPLE_PORT ?? 5173),
    strictPort: true,
  },
  define: {
    "import.meta.env.MOAT_URL": JSON.stringify(process.env.MOAT_URL ?? "http://localhost:4001"),
  },
  // Pre-bundled at start, so the first page load is not reloaded by the optimizer.
  optimizeDeps: { include: ["react", "react-dom/client", "react/jsx-runtime", "react/jsx-dev-runtime"] },
  // The @moat-bff packages are linked from clients/js: one React, one client.
  resolve: { dedupe: ["react", "react-dom", "@moat-bff/client"] },
});
