// noop: lets every request and response through untouched. The benchmark baseline for the
// cost of running a proxy-wasm filter at all.
export * from "../../sdk-as/assembly/exports";
import { RootContext, registerRootContext } from "../../sdk-as/assembly/index";

// The base RootContext creates a base HttpContext whose callbacks all return Continue.
registerRootContext((id: u32): RootContext => new RootContext(id), "noop");
