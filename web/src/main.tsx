// Entry: one API client for the page (it holds the CSRF token in memory only).
import { render } from "preact";
import { ApiClient } from "./api/client";
import { App } from "./views/App";
import "./styles.css";

const root = document.getElementById("app");
if (root) render(<App api={new ApiClient()} />, root);
