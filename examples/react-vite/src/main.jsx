import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { MoatProvider } from "@moat-bff/react";
import { App } from "./App.jsx";

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <MoatProvider baseUrl={import.meta.env.MOAT_URL}>
      <App />
    </MoatProvider>
  </StrictMode>,
);
